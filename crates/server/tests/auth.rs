//! With auth on, every mutating route and every socket refuses without a valid token (401),
//! a read-only token cannot mutate (403), reads stay public, and each face answers in its own
//! error shape.

mod common;

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use switchyard_client::Client;
use switchyard_server::auth::Auth;
use tempfile::TempDir;

const WRITE: &str = "write-token-0123456789";
const READ: &str = "read-token-0123456789";

async fn send(
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_mutations_and_sockets() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\nname = \"writer\"\ntoken = \"{WRITE}\"\naccess = \"write\"\n\n\
             [[tokens]]\nname = \"reader\"\ntoken = \"{READ}\"\naccess = \"read\"\n"
        ),
    )
    .unwrap();
    let auth = Arc::new(Auth::load(&file).unwrap());
    let mv = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mv_addr = mv.local_addr().unwrap();
    let server = common::start_with(
        dir.path().join("data").as_path(),
        |c| c.auth = Some(auth),
        Some(mv),
        None,
    )
    .await;
    let base = server.url();
    use reqwest::Method as M;

    // The mv face's device is created once the node leads; wait for it (reads are public).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while send(M::GET, format!("http://{mv_addr}/state"), None, None)
        .await
        .0
        != StatusCode::OK
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the mv device was not created"
        );
        tokio::task::yield_now().await;
    }

    // Phase 1: each mutating route: no token 401, read token 403, write token succeeds.
    let routes = [
        (
            M::POST,
            format!("{base}/v1/bank/accounts"),
            Some(r#"{"id": "a"}"#),
            "/v1",
        ),
        (
            M::POST,
            format!("{base}/v1/devices"),
            Some(r#"{"name": "sw", "type": "switch"}"#),
            "/v1",
        ),
        (
            M::POST,
            format!("{base}/api/beers"),
            Some(r#"{"tapId": 1, "volume": 500}"#),
            "altair",
        ),
        (M::DELETE, format!("{base}/api/beers/0"), None, "altair"),
        (
            M::POST,
            format!("http://{mv_addr}/background_switch_on"),
            Some(r#"{"delay": null}"#),
            "fastapi",
        ),
    ];
    for (method, url, body, style) in routes {
        let (s, v) = send(method.clone(), url.clone(), None, body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {url}: {v}");
        match style {
            "/v1" => assert_eq!(v["error"]["code"], "unauthorized", "{v}"),
            "altair" => assert_eq!(v["status"], 401, "{v}"),
            _ => assert!(v["detail"].is_string(), "{v}"),
        }
        let (s, _) = send(
            method.clone(),
            url.clone(),
            Some("not-a-known-token-at-all"),
            body,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {url} with an unknown token"
        );
        let (s, v) = send(method.clone(), url.clone(), Some(READ), body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {url}: {v}");
        let (s, v) = send(method.clone(), url.clone(), Some(WRITE), body).await;
        assert!(
            s.is_success(),
            "{method} {url} with the write token: {s} {v}"
        );
    }

    // Phase 2: reads stay public; health too.
    for url in [
        format!("{base}/v1/bank/accounts"),
        format!("{base}/api/beers"),
        format!("{base}/v1/health"),
    ] {
        assert_eq!(
            send(M::GET, url.clone(), None, None).await.0,
            StatusCode::OK,
            "{url}"
        );
    }

    // Phase 3: sockets need a token, by header or query.
    let ws = format!("ws://{}", server.api_addr);
    for path in ["/sockets/beers", "/v1/watch"] {
        let refused = tokio_tungstenite::connect_async(format!("{ws}{path}")).await;
        assert!(refused.is_err(), "{path} without a token");
        let ok = tokio_tungstenite::connect_async(format!("{ws}{path}?token={READ}")).await;
        assert!(ok.is_ok(), "{path} with a read token");
    }
    let mut w = Client::new(&base)
        .with_token(READ)
        .watch("bank/", Some(0))
        .await
        .unwrap();
    let first = common::within(10, "a watch event", w.next()).await.unwrap();
    assert!(matches!(first, switchyard_client::WatchItem::Event(_)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_can_require_a_token_and_an_event_stream_may_send_it_in_the_query() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "read_requires_token = true\n\n\
             [[tokens]]\nname = \"reader\"\ntoken = \"{READ}\"\naccess = \"read\"\n"
        ),
    )
    .unwrap();
    let auth = Arc::new(Auth::load(&file).unwrap());
    let server = common::start(dir.path().join("data").as_path(), |c| c.auth = Some(auth)).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let get = |url: String, accept: &'static str, bearer: bool| {
        let mut r = http.get(url).header("accept", accept);
        if bearer {
            r = r.bearer_auth(READ);
        }
        async move { r.send().await.unwrap().status() }
    };
    let accounts = format!("{base}/v1/bank/accounts");
    assert_eq!(get(accounts.clone(), "application/json", false).await, 401);
    assert_eq!(get(accounts.clone(), "application/json", true).await, 200);
    // A plain read may not carry its token in the URL.
    let in_query = format!("{accounts}?token={READ}");
    assert_eq!(get(in_query, "application/json", false).await, 401);
    // A log follow as server-sent events (the dashboard's EventSource) may: past the check,
    // the job is simply not there.
    let follow = format!("{base}/v1/jobs/99/logs?follow=true");
    assert_eq!(get(follow.clone(), "text/event-stream", false).await, 401);
    let with_token = format!("{follow}&token={READ}");
    assert_eq!(get(with_token, "text/event-stream", false).await, 404);
    server.stop().await;
}

#[test]
fn bad_token_files_are_refused_with_the_reason() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("tokens = []\n", "at least one token"),
        (
            "[[tokens]]\nname = \"x\"\ntoken = \"short\"\naccess = \"write\"\n",
            "at least 16",
        ),
        (
            "[[tokens]]\nname = \"x\"\ntoken = \"0123456789abcdefg\"\naccess = \"admin\"\n",
            "admin",
        ),
    ];
    for (text, want) in cases {
        let f = dir.path().join("t.toml");
        std::fs::write(&f, text).unwrap();
        let e = Auth::load(&f).unwrap_err();
        assert!(e.contains(want), "{text} => {e}");
    }
}
