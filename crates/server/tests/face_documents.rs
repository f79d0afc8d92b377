//! The faces' own API documents (`/openapi.json` and `/docs` on each face listener), and the
//! wrong answers schemathesis found against them, each in a test named after it.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_server::{Config, Listeners};
use tempfile::TempDir;

/// A node with the mv, funkytown and TestbedOS faces on listeners of their own: (server, mv,
/// funkytown, testbed).
async fn start(dir: &std::path::Path) -> (switchyard_server::Server, String, String, String) {
    let config = Config::new(dir).validate().expect("valid test config");
    let mut listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await.unwrap();
    let mv = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let funkytown = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let testbed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let urls = (
        format!("http://{}", mv.local_addr().unwrap()),
        format!("http://{}", funkytown.local_addr().unwrap()),
        format!("http://{}", testbed.local_addr().unwrap()),
    );
    listeners.mv = Some(mv);
    listeners.funkytown = Some(funkytown);
    listeners.testbed = Some(testbed);
    let server = switchyard_server::start(config, listeners).await.unwrap();
    server
        .node
        .wait_for_leader(Duration::from_secs(10))
        .await
        .unwrap();
    // The face's device is created once the node leads.
    common::await_mv_device(&urls.0).await;
    (server, urls.0, urls.1, urls.2)
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mv_funkytown_and_testbed_listeners_serve_their_own_documents() {
    let dir = TempDir::new().unwrap();
    let (server, mv, funkytown, testbed) = start(dir.path()).await;
    // mv: every command's routes, with the type's delays and the original's error shapes.
    let doc = get_json(&format!("{mv}/openapi.json")).await;
    for name in switchyard_server::faces::mv::COMMANDS {
        for path in [format!("/{name}"), format!("/background_{name}")] {
            let op = &doc["paths"][&path]["post"];
            assert!(op.is_object(), "{path}");
            let delay =
                &op["requestBody"]["content"]["application/json"]["schema"]["properties"]["delay"];
            assert_eq!(delay["maximum"], 3600.0, "{path}: {delay}");
            assert_eq!(
                op["responses"]["405"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Refused",
                "{path}"
            );
        }
    }
    let scan = &doc["paths"]["/background_scan"]["post"]["requestBody"];
    assert_eq!(scan["required"], true, "{scan}");
    let config = &scan["content"]["application/json"]["schema"]["properties"]["config"];
    assert_eq!(config["properties"]["delay"]["minimum"], 0.0, "{config}");
    let page = reqwest::get(format!("{mv}/docs")).await.unwrap();
    assert_eq!(page.status(), 200);
    // funkytown: its two routes under every method, as the original's handlers answer.
    let doc = get_json(&format!("{funkytown}/openapi.json")).await;
    for method in ["get", "post", "trace"] {
        assert!(doc["paths"]["/results"][method].is_object(), "{method}");
        assert!(doc["paths"]["/health"][method].is_object(), "{method}");
    }
    // TestbedOS: every route, the commands as the original's types, a variant with data an
    // object of its one key (as serde reads it), errors in the original's shape.
    let doc = get_json(&format!("{testbed}/openapi.json")).await;
    for route in switchyard_server::routes::all()
        .into_iter()
        .find(|(l, _)| *l == "TestbedOS")
        .unwrap()
        .1
    {
        let item = &doc["paths"][&route.path];
        assert!(item.is_object(), "{route:?} documented");
    }
    let up = &doc["components"]["schemas"]["DeploymentCommand"]["oneOf"][0];
    assert_eq!(up["required"], json!(["up"]), "{up}");
    assert_eq!(up["additionalProperties"], false, "{up}");
    let create = &doc["paths"]["/api/deployments"]["post"]["responses"]["409"];
    assert_eq!(
        create["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_over_the_commands_maximum_is_refused_even_for_a_no_op() {
    let dir = TempDir::new().unwrap();
    let (server, mv, _, _) = start(dir.path()).await;
    let http = reqwest::Client::new();
    let post = async |url: String, body: Value| {
        let r = http.post(url).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // On, so that another switch_on is a no-op; a delay past 3600 s used to answer 200 then.
    assert_eq!(
        post(format!("{mv}/switch_on"), json!({"delay": 0})).await.0,
        200
    );
    for path in ["/switch_on", "/background_switch_on"] {
        let (code, text) = post(format!("{mv}{path}"), json!({"delay": 3601})).await;
        assert_eq!(code, 422, "{path}: {text}");
        assert!(text.contains("3600"), "{text}");
    }
    // A phase timed by config.delay takes the same range, checked before anything runs.
    let (code, text) = post(
        format!("{mv}/background_assign_resources"),
        json!({"delay": 0, "config": {"delay": 3601}}),
    )
    .await;
    assert_eq!(code, 422, "{text}");
    // The same on /v1, in its error shape.
    let (code, text) = post(
        format!("{}/v1/devices/mv/commands/switch_on", server.url()),
        json!({"duration": 3601}),
    )
    .await;
    assert_eq!(code, 400, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["details"]["field"], "duration", "{v}");
    let device = get_json(&format!("{}/v1/devices/mv", server.url())).await;
    assert_eq!(device["transition"], Value::Null, "{device}");
    server.stop().await;
}
