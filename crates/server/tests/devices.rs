//! Devices over HTTP: the busy race, refusals that change nothing, blocking vs background,
//! input errors, and a transition that completes at its due time across a restart.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_client::{Client, CommandStarted};
use switchyard_types::DeviceCommandRequest;
use tempfile::TempDir;

async fn post(url: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_switch_on_exactly_one_accepted_every_time() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    client.create_device("sw", "switch").await.unwrap();
    let url = format!("{}/v1/devices/sw/commands/switch_on", server.url());
    let http = reqwest::Client::new();
    for round in 0..20 {
        // A long transition, so that every request of the round meets it in flight.
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let r = http
                        .post(&url)
                        .json(&json!({"duration": 60}))
                        .send()
                        .await
                        .unwrap();
                    let status = r.status();
                    (status, r.json::<Value>().await.unwrap())
                })
            })
            .collect();
        let mut accepted = 0;
        let mut busy = 0;
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                StatusCode::ACCEPTED => accepted += 1,
                StatusCode::CONFLICT => {
                    assert_eq!(body["error"]["code"], "busy", "{body}");
                    assert_eq!(
                        body["error"]["details"]["transition"]["command"],
                        "switch_on"
                    );
                    busy += 1;
                }
                other => panic!("round {round}: unexpected {other}: {body}"),
            }
        }
        assert_eq!((accepted, busy), (1, 49), "round {round}");
        let d = client.reset_device("sw").await.unwrap();
        assert_eq!(d.state.as_deref(), Some("OFF"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing_and_inputs_are_checked() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let client = Client::new(&base);
    client.create_device("mv", "mv").await.unwrap();
    let before = client.device("mv").await.unwrap();
    let history_before = client.device_history("mv", 10, None).await.unwrap();

    let cmd = |c: &str| format!("{base}/v1/devices/mv/commands/{c}");
    let cases = [
        (
            cmd("assign_resources"),
            json!({}),
            StatusCode::CONFLICT,
            "not_allowed",
        ),
        (
            cmd("switch_on"),
            json!({"duration": -1}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            cmd("switch_on"),
            json!({"duration": 4000}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            cmd("switch_on"),
            json!({"duration": "1"}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            cmd("switch_on"),
            json!({"delay": 1}),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            cmd("explode"),
            json!({}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("{base}/v1/devices/nope/commands/switch_on"),
            json!({}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("{base}/v1/devices/mv/abort"),
            json!({}),
            StatusCode::CONFLICT,
            "not_allowed",
        ),
        (
            format!("{base}/v1/devices"),
            json!({"name": "x", "type": "toaster"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            format!("{base}/v1/devices"),
            json!({"name": "mv", "type": "mv"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
    ];
    for (url, body, status, code) in cases {
        let (got, v) = post(&url, body.clone()).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{url} {body}: {v}"
        );
    }
    let (_, v) = post(&cmd("assign_resources"), json!({})).await;
    assert!(v["error"]["details"]["allowed_from"].is_array());

    // Why: a refused command must leave state, revision and history as they were.
    assert_eq!(client.device("mv").await.unwrap(), before);
    assert_eq!(
        client.device_history("mv", 10, None).await.unwrap(),
        history_before
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_background_commands_and_history() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    client.create_device("mv", "mv").await.unwrap();

    // Blocking: answers with the device after the transition, phases and all.
    let req = DeviceCommandRequest {
        duration: Some(0.05),
        ..Default::default()
    };
    let d = client
        .device_command_wait("mv", "switch_on", &req)
        .await
        .unwrap();
    assert_eq!(d.state.as_deref(), Some("ON"));
    assert_eq!(d.attributes["obs_state"].as_deref(), Some("EMPTY"));

    // Background: 202 with the transition; the device is busy until it completes.
    let req = DeviceCommandRequest {
        duration: Some(0.05),
        args: Some(json!({"config": {"delay": 0.1}})),
        ..Default::default()
    };
    let CommandStarted::Started(st) = client
        .device_command("mv", "assign_resources", &req)
        .await
        .unwrap()
    else {
        panic!("expected a transition")
    };
    assert_eq!(st.transition.phases, 2);
    assert_eq!(st.device.attributes["obs_state"].as_deref(), Some("BUSY"));
    let d = client
        .wait_for_state("mv", "ON", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(d.attributes["obs_state"].as_deref(), Some("IDLE"));

    // A no-op answers 200 with the device.
    let noop = client
        .device_command("mv", "assign_resources", &Default::default())
        .await
        .unwrap();
    assert!(matches!(noop, CommandStarted::Noop(_)));

    // Wait that runs out: 504, and the transition goes on.
    let (status, v) = post(
        &format!("{}/v1/devices/mv/commands/release_resources", server.url()),
        json!({"duration": 30, "wait": true, "timeout": 0.2}),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{v}");
    assert_eq!(
        client
            .device("mv")
            .await
            .unwrap()
            .transition
            .unwrap()
            .command,
        "release_resources"
    );
    client.abort_device("mv").await.unwrap();

    let h = client.device_history("mv", 2, None).await.unwrap();
    let kinds: Vec<(&str, &str)> = h
        .transitions
        .iter()
        .map(|t| (t.command.as_str(), t.outcome.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("release_resources", "aborted"),
            ("assign_resources", "completed")
        ]
    );
    let older = client.device_history("mv", 2, h.next_before).await.unwrap();
    assert_eq!(older.transitions[0].command, "switch_on");
    assert!(older.next_before.is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_in_flight_across_a_restart_completes_at_its_due_time() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    client.create_device("sw", "switch").await.unwrap();
    let req = DeviceCommandRequest {
        duration: Some(1.0),
        ..Default::default()
    };
    let CommandStarted::Started(st) = client
        .device_command("sw", "switch_on", &req)
        .await
        .unwrap()
    else {
        panic!("expected a transition")
    };
    server.stop().await;

    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    let d = client
        .wait_for_state("sw", "ON", Duration::from_secs(15))
        .await
        .unwrap();
    assert!(d.transition.is_none());
    let h = client.device_history("sw", 1, None).await.unwrap();
    let t = &h.transitions[0];
    assert_eq!(t.id, st.transition.id);
    // Completion is stamped at the due time, whatever the restart cost.
    assert_eq!(t.finished_at, st.transition.due_at);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_types_show_the_toml_formats_spelling_not_the_internal_one() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let r = reqwest::get(format!("{}/v1/device-types", server.url()))
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    // The internal spellings are gone: `"Request"`, `{"Arg": [...]}`, `default_ms`.
    for internal in [
        "\"Request\"",
        "\"Arg\"",
        "\"Fixed\"",
        "default_ms",
        "abort_set",
    ] {
        assert!(!text.contains(internal), "{internal} in {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mv = v["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "mv")
        .unwrap();
    let assign = &mv["commands"]["assign_resources"];
    assert_eq!(assign["phases"][0]["duration"], "request", "{assign}");
    assert_eq!(
        assign["phases"][1]["duration"], "args.config.delay",
        "{assign}"
    );
    assert_eq!(
        assign["phases"][1]["set"]["obs_state"], "RESOURCING",
        "{assign}"
    );
    assert_eq!(assign["default_duration"], 0.0, "{assign}");
    assert_eq!(assign["max_duration"], 3600.0, "{assign}");
    assert_eq!(mv["attributes"]["state"]["initial"], "null", "{mv}");
    assert_eq!(
        mv["commands"]["switch_on"]["allowed_when"][0]["obs_state"],
        serde_json::json!(["null"])
    );
    // The document says so.
    let doc: serde_json::Value = common::get_json(format!("{}/openapi.json", server.url())).await;
    let answer = &doc["paths"]["/v1/device-types"]["get"]["responses"]["200"];
    assert_eq!(
        answer["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/DeviceTypeList",
        "{answer}"
    );
    server.stop().await;
}
