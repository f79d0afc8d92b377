//! Wrong answers found by hand, each kept from coming back by a test named after it.

mod common;

use futures::StreamExt;
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_nested_100000_levels_deep_is_refused_and_the_state_still_reads() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/deployments"))
        .json(&serde_json::json!({"name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = http
        .put(format!("{base}/v1/deployments/web/document"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("128"),
        "{v}"
    );
    // 128 levels are kept and read back, pretty too.
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = http
        .put(format!("{base}/v1/deployments/web/document"))
        .header("content-type", "application/json")
        .body(ok.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .get(format!("{base}/v1/deployments/web/document"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

/// The gauge's value in a `/metrics` text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_altair_sockets_leave_the_watch_sessions_gauge() {
    let dir = TempDir::new().unwrap();
    let altair = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = altair.local_addr().unwrap();
    let server = common::start_with(dir.path(), |_| {}, None, Some(altair)).await;
    let metrics = format!("{}/metrics", server.url());
    for _ in 0..5 {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/sockets/beers"))
            .await
            .unwrap();
        ws.close(None).await.unwrap();
        while ws.next().await.is_some() {}
    }
    common::within(10, "the gauge to fall back to 0", async {
        loop {
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            if gauge(&text, "switchyard_watch_sessions") == Some(0.0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mv_face_refuses_a_delay_that_is_an_object_or_negative_even_for_a_no_op() {
    let dir = TempDir::new().unwrap();
    let mv = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = mv.local_addr().unwrap();
    let server = common::start_with(dir.path(), |_| {}, Some(mv), None).await;
    let http = reqwest::Client::new();
    let post = async |path: &str, body: serde_json::Value| {
        let r = http
            .post(format!("http://{addr}{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    common::within(10, "the mv device", async {
        while reqwest::get(format!("http://{addr}/state"))
            .await
            .unwrap()
            .status()
            != 200
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // On, so that another switch_on is a no-op.
    assert_eq!(
        post("/switch_on", serde_json::json!({"delay": 0})).await.0,
        200
    );
    for path in ["/switch_on", "/background_switch_on", "/assign_resources"] {
        for delay in [serde_json::json!({"a": 1}), serde_json::json!(-5)] {
            let body = serde_json::json!({ "delay": delay, "config": null });
            let (code, text) = post(path, body).await;
            assert_eq!(code, 422, "{path} delay {delay}: {text}");
        }
    }
    server.stop().await;
}
