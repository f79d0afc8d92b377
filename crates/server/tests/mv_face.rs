//! The seed-000 face speaks the original server's exact HTTP and WebSocket messages.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (
        status,
        resp.json()
            .await
            .unwrap_or(Value::String("<not json>".into())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mv_face_speaks_the_original_protocol() {
    let dir = TempDir::new().unwrap();
    let mv = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = mv.local_addr().unwrap();
    let server = common::start_with(dir.path(), |_| {}, Some(mv), None).await;
    let url = |p: &str| format!("http://{addr}{p}");
    use reqwest::Method as M;

    // The face's device is created at start; wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(M::GET, url("/state"), None).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "the mv device was not created");
        tokio::task::yield_now().await;
    }
    assert_eq!(
        call(M::GET, url("/state"), None).await,
        (StatusCode::OK, Value::Null)
    );
    assert_eq!(
        call(M::GET, url("/obs_state"), None).await,
        (StatusCode::OK, Value::Null)
    );

    // The WebSocket echoes text and pushes the combined state on every change.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::Text("hello".into())).await.unwrap();
    let mut next = async || -> String {
        let m = common::within(10, "a websocket message", ws.next())
            .await
            .unwrap()
            .unwrap();
        m.into_text().unwrap().to_string()
    };
    assert_eq!(next().await, "hello");

    // Blocking switch_on with the documented body answers null once done.
    let (s, v) = call(M::POST, url("/switch_on"), Some(json!({"delay": 0.2}))).await;
    assert_eq!((s, v), (StatusCode::OK, Value::Null));
    assert_eq!(next().await, r#"{"state": "BUSY", "obs_state": null}"#);
    assert_eq!(next().await, r#"{"state": "ON", "obs_state": "EMPTY"}"#);
    assert_eq!(call(M::GET, url("/state"), None).await.1, json!("ON"));

    // Background: answers at once; while it runs, commands are refused with 405 detail lists.
    let (s, v) = call(
        M::POST,
        url("/background_assign_resources"),
        // Long enough that the three refusals below (each one a log entry) fit on a slow machine.
        Some(json!({"delay": 1.5, "config": {"delay": 1.5}})),
    )
    .await;
    assert_eq!((s, v), (StatusCode::OK, Value::Null));
    assert_eq!(next().await, r#"{"state": "ON", "obs_state": "BUSY"}"#);
    for path in ["/configure", "/background_scan", "/switch_off"] {
        let (s, v) = call(
            M::POST,
            url(path),
            Some(json!({"delay": null, "config": null})),
        )
        .await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{path}: {v}");
        assert!(
            v["detail"][0].as_str().unwrap().contains("busy"),
            "{path}: {v}"
        );
    }
    assert_eq!(
        next().await,
        r#"{"state": "ON", "obs_state": "RESOURCING"}"#
    );
    assert_eq!(next().await, r#"{"state": "ON", "obs_state": "IDLE"}"#);

    // Not allowed from IDLE: 405; no-op: 200 and no change.
    let (s, v) = call(M::POST, url("/scan"), None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert!(
        v["detail"][0].as_str().unwrap().contains("not allowed"),
        "{v}"
    );
    assert_eq!(
        call(M::POST, url("/assign_resources"), None).await.0,
        StatusCode::OK
    );

    // Bodies as the original's pydantic models check them (its exact answers): a background
    // route needs one, `null` is none; a model's keys must be there; nothing starts.
    let missing_body = json!({"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}]});
    for body in [None, Some(Value::Null)] {
        let (s, v) = call(M::POST, url("/background_scan"), body).await;
        assert_eq!(
            (s, v),
            (StatusCode::UNPROCESSABLE_ENTITY, missing_body.clone())
        );
    }
    let (s, v) = call(M::POST, url("/background_scan"), Some(json!({}))).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": [
                {"type": "missing", "loc": ["body", "delay"], "msg": "Field required", "input": {}},
                {"type": "missing", "loc": ["body", "config"], "msg": "Field required", "input": {}}
            ]})
        )
    );
    let (s, v) = call(M::POST, url("/switch_off"), Some(json!({"config": {}}))).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": [{"type": "missing", "loc": ["body", "delay"], "msg": "Field required", "input": {"config": {}}}]})
        )
    );
    let (s, v) = call(M::POST, url("/configure"), Some(json!([0, {}]))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["detail"][0]["type"], "model_attributes_type");
    // A value of the wrong type is a 422 too (with a message of this face's own).
    let (s, v) = call(
        M::POST,
        url("/configure"),
        Some(json!({"delay": "soon", "config": null})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(call(M::GET, url("/obs_state"), None).await.1, json!("IDLE"));

    // Abort, which the original lists but never implemented.
    call(
        M::POST,
        url("/background_configure"),
        Some(json!({"delay": 30, "config": null})),
    )
    .await;
    assert_eq!(next().await, r#"{"state": "ON", "obs_state": "BUSY"}"#);
    assert_eq!(call(M::POST, url("/abort"), None).await.0, StatusCode::OK);
    assert_eq!(next().await, r#"{"state": "ON", "obs_state": "IDLE"}"#);
    assert_eq!(
        call(M::GET, url("/nothing"), None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(M::GET, url("/switch_on"), None).await,
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"detail": "Method Not Allowed"})
        )
    );
    server.stop().await;
}
