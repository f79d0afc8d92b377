//! The /v1 conventions over real HTTP: status codes, error bodies naming the field, and
//! refused requests changing nothing.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_client::Client;
use tempfile::TempDir;

async fn call(method: reqwest::Method, url: &str, body: Option<&str>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_naming_the_field_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let client = Client::new(&base);
    client.open_account("alice", None).await.unwrap();
    client.credit("alice", 100, None).await.unwrap();
    let before = client.status().await.unwrap().revision;

    use reqwest::Method as M;
    let credit = format!("{base}/v1/bank/accounts/alice/credit");
    /// (method, url, body, expected status, expected code, field named in details)
    type Case<'a> = (
        M,
        String,
        Option<&'a str>,
        StatusCode,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            M::POST,
            credit.clone(),
            Some(r#"{"amount": -1}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("amount"),
        ),
        (
            M::POST,
            credit.clone(),
            Some(r#"{"amount": 1.5}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("amount"),
        ),
        (
            M::POST,
            credit.clone(),
            Some(r#"{"amount": "5"}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("amount"),
        ),
        (
            M::POST,
            credit.clone(),
            Some(r#"{"amount": 0}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("amount"),
        ),
        (
            M::POST,
            credit.clone(),
            Some(r#"{}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("amount"),
        ),
        (
            M::POST,
            credit.clone(),
            Some(r#"{"amount": 1, "extra": 2}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("extra"),
        ),
        (
            M::POST,
            credit.clone(),
            Some("not json"),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("body"),
        ),
        (
            M::POST,
            format!("{base}/v1/bank/accounts/bob/credit"),
            Some(r#"{"amount": 1}"#),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            M::POST,
            format!("{base}/v1/bank/accounts/alice/debit"),
            Some(r#"{"amount": 101}"#),
            StatusCode::CONFLICT,
            "insufficient_funds",
            None,
        ),
        (
            M::POST,
            format!("{base}/v1/bank/accounts"),
            Some(r#"{"id": "alice"}"#),
            StatusCode::CONFLICT,
            "conflict",
            None,
        ),
        (
            M::POST,
            format!("{base}/v1/bank/accounts"),
            Some(r#"{"id": "a b"}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("id"),
        ),
        (
            M::POST,
            format!("{base}/v1/bank/transfers"),
            Some(r#"{"from": "alice", "to": "alice", "amount": 1}"#),
            StatusCode::BAD_REQUEST,
            "invalid",
            Some("to"),
        ),
        (
            M::GET,
            format!("{base}/v1/bank/accounts/nobody"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            M::GET,
            format!("{base}/v1/nothing-here"),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            M::DELETE,
            format!("{base}/v1/bank/accounts"),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    for (method, url, body, status, code, field) in cases {
        let (got, v) = call(method.clone(), &url, body).await;
        assert_eq!(got, status, "{method} {url} {body:?}: {v}");
        assert_eq!(v["error"]["code"], code, "{method} {url} {body:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if let Some(f) = field {
            assert_eq!(
                v["error"]["details"]["field"], f,
                "{method} {url} {body:?}: {v}"
            );
        }
    }

    // Refused requests changed nothing: the balance, and no revision was used by bad input
    // (refusals that reach the log, like insufficient funds, use a revision but change no
    // object, so the account keeps its revision).
    let alice = client.account("alice").await.unwrap();
    assert_eq!(alice.balance, 100);
    assert!(alice.revision <= before);
    assert_eq!(client.accounts().await.unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_routes_answer_as_documented() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let (s, v) = call(reqwest::Method::GET, &format!("{base}/v1/health"), None).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"status": "ok"})));
    let (_, v) = call(reqwest::Method::GET, &format!("{base}/v1/status"), None).await;
    for k in [
        "node_id",
        "role",
        "term",
        "leader",
        "applied_index",
        "revision",
        "members",
    ] {
        assert!(v.get(k).is_some(), "status has {k}: {v}");
    }
    assert_eq!(v["role"], "leader");
    let (_, v) = call(reqwest::Method::GET, &format!("{base}/v1/cluster"), None).await;
    assert_eq!(v["leader"], 1);
    assert_eq!(v["members"][0]["voter"], true);
    // A write and a linearizable read, counted by the handles the node and its log writer
    // registered as they started.
    let (s, _) = call(
        reqwest::Method::POST,
        &format!("{base}/v1/bank/accounts"),
        Some(r#"{"id": "m"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/bank/accounts/m"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("switchyard_raft_applied_index"), "{text}");
    for name in [
        "switchyard_write_seconds_count ",
        "switchyard_log_commit_seconds_count ",
        "switchyard_log_commit_batch_size_count ",
    ] {
        assert!(text.contains(name), "{name} in {text}");
    }
    let reads = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"switchyard_linearizable_reads_total{path="sole_voter"} "#))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(reads.is_some_and(|n| n >= 1), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_route_with_its_schemas() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let (status, doc) = call(
        reqwest::Method::GET,
        &format!("{}/openapi.json", server.url()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("/v1/health", "get"),
        ("/v1/status", "get"),
        ("/v1/cluster", "get"),
        ("/metrics", "get"),
        ("/v1/watch", "get"),
        ("/v1/bank/accounts", "post"),
        ("/v1/bank/accounts", "get"),
        ("/v1/bank/accounts/{id}", "get"),
        ("/v1/bank/accounts/{id}/credit", "post"),
        ("/v1/bank/accounts/{id}/debit", "post"),
        ("/v1/bank/transfers", "post"),
        ("/v1/devices", "post"),
        ("/v1/devices", "get"),
        ("/v1/devices/{name}", "get"),
        ("/v1/devices/{name}", "delete"),
        ("/v1/device-types", "get"),
        ("/v1/devices/{name}/commands/{command}", "post"),
        ("/v1/devices/{name}/abort", "post"),
        ("/v1/devices/{name}/reset", "post"),
        ("/v1/devices/{name}/history", "get"),
        ("/v1/beers", "post"),
        ("/v1/beers", "get"),
        ("/v1/beers/{id}", "get"),
        ("/v1/beers/{id}", "delete"),
        // The API listener's other routes.
        ("/api/beers", "get"),
        ("/api/beers", "post"),
        ("/api/beers/{id}", "get"),
        ("/api/beers/{id}", "delete"),
        ("/sockets/beers", "get"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
        ("/", "get"),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
    }
    for schema in [
        "Account",
        "ErrorBody",
        "Status",
        "WatchMessage",
        "TransferRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_comes_from_the_binary_and_loads_nothing_from_elsewhere() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let r = reqwest::get(format!("{}/docs", server.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    // It reads the document next to it, and names no other place to load from.
    assert!(page.contains("fetch(\"openapi.json\")"), "{page}");
    for scheme in ["http://", "https://", "//cdn", "src=", "@import"] {
        assert!(!page.contains(scheme), "the page loads {scheme}...");
    }
    // Every answer of the document is described, and the shared errors have the error body.
    let (_, doc) = call(
        reqwest::Method::GET,
        &format!("{}/openapi.json", server.url()),
        None,
    )
    .await;
    let credit = &doc["paths"]["/v1/bank/accounts/{id}/credit"]["post"]["responses"];
    for status in ["400", "404", "413", "415", "503"] {
        assert_eq!(
            credit[status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{status}"
        );
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, answer) in op["responses"].as_object().unwrap() {
                assert!(
                    answer["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status}"
                );
            }
        }
    }
    let amount = &doc["components"]["schemas"]["Amount"]["properties"]["amount"];
    assert_eq!(amount["minimum"], 1, "{amount}");
    assert_eq!(amount["maximum"], 9007199254740991u64, "{amount}");
    server.stop().await;
}
