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
    common::await_mv_device(&format!("http://{addr}")).await;
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

/// The `{"error": {"code", "message"}}` body of a /v1 answer, checked to be that shape.
fn v1_error(status: reqwest::StatusCode, body: &str, want: u16, code: &str) -> serde_json::Value {
    assert_eq!(status.as_u16(), want, "{body}");
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not the JSON error shape ({e}): {body:?}"));
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_segment_that_is_not_utf8_is_a_json_400() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    for path in [
        "/v1/bank/accounts/%FF",
        "/v1/devices/%C3%28/history",
        "/api/beers/%FF",
    ] {
        let r = reqwest::get(format!("{}{path}", server.url()))
            .await
            .unwrap();
        let status = r.status();
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body = r.text().await.unwrap();
        if path.starts_with("/api/") {
            // The Altair routes answer in the original's shape.
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], status.as_u16(), "{v}");
            assert!(status.is_client_error(), "{path}: {status}");
        } else {
            v1_error(status, &body, 400, "invalid");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_a_json_413() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |c| c.max_body_bytes = 4096).await;
    let http = reqwest::Client::new();
    // No content-length: the limit is found while the body streams in. (Just over the limit,
    // so that the server has read everything when it answers and closes.)
    let chunks = (0..5).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024]));
    for path in [
        "/v1/bank/accounts",
        "/v1/devices/sw1/commands/switch_on",
        "/v1/deployments/web/document",
    ] {
        let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks.clone()));
        let r = http
            .request(
                if path.ends_with("document") {
                    reqwest::Method::PUT
                } else {
                    reqwest::Method::POST
                },
                format!("{}{path}", server.url()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        v1_error(status, &r.text().await.unwrap(), 413, "too_large");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_command_with_a_body_that_is_not_json_is_a_json_415() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = server_client(&server);
    client.create_device("sw1", "switch").await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/devices/sw1/commands/switch_on", server.url());
    let r = http
        .post(&url)
        .header("content-type", "text/plain")
        .body(r#"{"duration": 0}"#)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v = v1_error(status, &r.text().await.unwrap(), 415, "invalid");
    assert_eq!(v["error"]["details"]["field"], "Content-Type", "{v}");
    // Nothing ran; JSON, and no body at all, still work.
    let r = http
        .get(format!("{}/v1/devices/sw1", server.url()))
        .send()
        .await
        .unwrap();
    let device: serde_json::Value = r.json().await.unwrap();
    assert_eq!(device["state"], "OFF", "{device}");
    let r = http
        .post(&url)
        .json(&serde_json::json!({"duration": 0, "wait": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

fn server_client(server: &switchyard_server::Server) -> switchyard_client::Client {
    switchyard_client::Client::new(server.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_431_and_400_answers_carry_the_json_error_body() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let mut many = String::from("GET /v1/health HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let malformed = "GET /v1/health HTTP/1.1\r\nhost: 127.0.0.1\r\nbad header\r\n\r\n";
    let garbage = "\x01\x02 nonsense\r\n\r\n";
    for (request, want) in [(many.as_str(), 431), (malformed, 400), (garbage, 400)] {
        let (head, body) = common::raw_answer(server.api_addr, request.as_bytes()).await;
        let status_line = head.lines().next().unwrap_or_default();
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {want} ")),
            "{want}: {head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let status = reqwest::StatusCode::from_u16(want).unwrap();
        v1_error(status, &body, want, "invalid");
    }
    // The listener still serves.
    let r = reqwest::get(format!("{}/v1/health", server.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_above_2_pow_53_minus_1_is_refused_naming_amount() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/v1/bank/accounts"))
        .json(&serde_json::json!({"id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let credit = async |amount: &str| {
        http.post(format!("{base}/v1/bank/accounts/alice/credit"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"amount": {amount}}}"#))
            .send()
            .await
            .unwrap()
    };
    for too_big in ["9223372036854775808", "9007199254740992"] {
        let r = credit(too_big).await;
        let status = r.status();
        let v = v1_error(status, &r.text().await.unwrap(), 400, "invalid");
        assert_eq!(v["error"]["details"]["field"], "amount", "{v}");
    }
    // Nothing was credited; the largest amount is taken.
    let r = credit("9007199254740991").await;
    let account: serde_json::Value = r.json().await.unwrap();
    assert_eq!(account["balance"], 9007199254740991u64, "{account}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_on_metrics_has_a_help_line() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    // Some traffic, so that the request metrics exist.
    let client = server_client(&server);
    client.create_device("sw1", "switch").await.unwrap();
    let text = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(typed.contains(&"switchyard_http_requests_total"), "{text}");
    assert!(typed.contains(&"switchyard_raft_term"), "{text}");
    for name in typed {
        assert!(
            text.lines().any(|l| l
                .strip_prefix("# HELP ")
                .is_some_and(|h| h.split_whitespace().next() == Some(name))),
            "no # HELP for {name}:\n{text}"
        );
    }
    server.stop().await;
}

/// A POST of `body` to `path`: the status and the body's text.
async fn post(base: &str, path: &str, body: serde_json::Value) -> (reqwest::StatusCode, String) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_depend_on_state_are_404_or_409_not_400() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    // A device type that does not exist: 404 naming `type` (the body's form was right).
    let (status, body) = post(
        &base,
        "/v1/devices",
        serde_json::json!({"name": "x", "type": "toaster"}),
    )
    .await;
    let v = v1_error(status, &body, 404, "not_found");
    assert_eq!(v["error"]["details"]["field"], "type", "{v}");
    let (status, _) = post(
        &base,
        "/v1/devices",
        serde_json::json!({"name": "x", "type": "switch"}),
    )
    .await;
    assert_eq!(status, 201);
    // An action the deployment has no template for: 404, and no job is queued.
    let (status, _) = post(
        &base,
        "/v1/deployments",
        serde_json::json!({"name": "web", "actions": {"up": ["true"]}}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = post(
        &base,
        "/v1/deployments/web/actions/down",
        serde_json::json!({}),
    )
    .await;
    let v = v1_error(status, &body, 404, "not_found");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("up"),
        "{v}"
    );
    let jobs: serde_json::Value = reqwest::get(format!("{base}/v1/jobs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "{jobs}");
    // Leadership to a node that is not a voter: 409; to node 0 of a removal, 400 naming it.
    let (status, body) = post(
        &base,
        "/v1/cluster/leader",
        serde_json::json!({"node_id": 9}),
    )
    .await;
    v1_error(status, &body, 409, "conflict");
    let r = reqwest::Client::new()
        .delete(format!("{base}/v1/cluster/members/0"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v = v1_error(status, &r.text().await.unwrap(), 400, "invalid");
    assert_eq!(v["error"]["details"]["field"], "node_id", "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_whose_actions_could_not_run_is_refused_at_create() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    // The environment and labels its action jobs carry are checked when it is created, not
    // at its first action.
    for (body, field) in [
        (serde_json::json!({"name": "web", "env": {"": "x"}}), "env."),
        (
            serde_json::json!({"name": "web", "env": {"1A": "x"}}),
            "env.1A",
        ),
        (
            serde_json::json!({"name": "web", "labels": {"a b": "x"}}),
            "labels.a b",
        ),
    ] {
        let (status, text) = post(&base, "/v1/deployments", body).await;
        let v = v1_error(status, &text, 400, "invalid");
        assert_eq!(v["error"]["details"]["field"], field, "{v}");
    }
    let list: serde_json::Value = reqwest::get(format!("{base}/v1/deployments"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["deployments"].as_array().unwrap().len(), 0, "{list}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_altair_face_takes_a_tap_id_written_3_0_as_tap_3() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/beers"))
        .body(r#"{"tapId": 3.0, "volume": 450}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["beer"]["tapId"], 3, "{v}");
    // A fraction is still refused, in the original's shape.
    let r = reqwest::Client::new()
        .post(format!("{base}/api/beers"))
        .body(r#"{"tapId": 3.5, "volume": 450}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["status"], 400, "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_document_states_the_filters_and_bodies_the_server_checks() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let doc: serde_json::Value = common::get_json(format!("{}/openapi.json", server.url())).await;
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))["schema"]
            .clone()
    };
    let glasses = switchyard_core::beers::GLASSES.map(|g| g.0);
    assert_eq!(
        param("/v1/beers", "get", "type")["enum"],
        serde_json::json!(glasses)
    );
    let statuses: Vec<&str> = switchyard_core::jobs::Status::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        param("/v1/jobs", "get", "status")["enum"],
        serde_json::json!(statuses)
    );
    assert_eq!(
        param("/v1/runs/{id}/cells", "get", "status")["enum"],
        serde_json::json!(statuses)
    );
    assert_eq!(param("/v1/jobs", "get", "queue")["minLength"], 1);
    assert_eq!(
        param("/v1/cluster/members/{node_id}", "delete", "node_id")["minimum"],
        1
    );
    // The state document is any JSON value: a schema with no type.
    let body = &doc["paths"]["/v1/deployments/{name}/document"]["put"]["requestBody"];
    assert_eq!(
        body["content"]["application/json"]["schema"],
        serde_json::json!({}),
        "{body}"
    );
    // A followed log is a stream of `line` and `end` events.
    let sse = &doc["paths"]["/v1/jobs/{id}/logs"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert_eq!(
        sse["schema"]["properties"]["event"]["enum"],
        serde_json::json!(["line", "end"])
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["PourRequest"]["properties"]["volume"]["minimum"],
        100.0
    );
    assert_eq!(
        schemas["PourRequest"]["properties"]["volume"]["maximum"],
        1000.0
    );
    assert!(
        schemas["CreateRun"]["oneOf"].is_array(),
        "a matrix or funkytown's file"
    );
    // A run's exclude rules: none empty, funkytown's naming only its cells' dimensions.
    let exclude = &schemas["CreateRun"]["properties"]["exclude"];
    assert_eq!(exclude["items"]["minProperties"], 1, "{exclude}");
    let funkytown = &schemas["CreateRun"]["oneOf"][1]["properties"]["exclude"];
    let dims = switchyard_core::runs::FUNKYTOWN_DIMENSIONS;
    assert_eq!(
        funkytown["items"]["propertyNames"]["enum"],
        serde_json::json!(dims)
    );
    assert!(
        schemas["DeploymentStateRequest"]["anyOf"].is_array(),
        "failed_action only with failed"
    );
    server.stop().await;
}
