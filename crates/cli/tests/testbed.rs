//! The seed-003 TestbedOS face on a real `switchyard serve` (`--testbed-listen`): deployments
//! in the original's shapes, an action answering its uuid at once, the WebSocket streaming the
//! action's log line by line and closing when it ended, the log index and log files, state
//! resets, the orchestrator's state document, and cluster clients joining, being checked and
//! leaving the cluster configuration document.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

mod common;

/// A server whose default `up` prints five lines over about a second, then its arguments,
/// and whose `snapshot` prints one line and exits 3.
fn server(dir: &Path, extra: &[&str]) -> common::Proc {
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        "[actions.up]\ncommand = [\"./up.sh\", \"{name}\", \"{args}\"]\n\
         [actions.down]\ncommand = [\"./down.sh\"]\n\
         [actions.snapshot]\ncommand = [\"./snap.sh\", \"{args}\"]\n",
    )
    .unwrap();
    let data = dir.join("data");
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(["--testbed-listen", "127.0.0.1:0"]);
    args.extend(extra);
    common::serve_in(&data, &args)
}

struct Face {
    http: reqwest::Client,
    base: String,
}

impl Face {
    fn new(p: &common::Proc) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{}", p.testbed.as_ref().expect("the face's address")),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (code, text) = self.send(reqwest::Method::GET, path, None).await;
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// The original's error shape: `{"code": STATUS, "message": "..."}`.
fn assert_error(code: u16, text: &str, status: u16, needle: &str) {
    assert_eq!(code, status, "{text}");
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("JSON error: {text}"));
    assert_eq!(v["code"], status, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

/// Every text message of the action's log socket, and the close code.
async fn stream(face: &Face, uuid: &str) -> (Vec<String>, Option<CloseCode>) {
    let url = format!(
        "{}/api/orchestration/ws?uuid={uuid}",
        face.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut lines = Vec::new();
    common::within(60, "the log socket to close", async {
        while let Some(m) = ws.next().await {
            match m.unwrap() {
                Message::Text(t) => lines.push(t.to_string()),
                Message::Close(frame) => return (lines, frame.map(|f| f.code)),
                _ => {}
            }
        }
        (lines, None)
    })
    .await
}

#[tokio::test]
async fn testbed_face_runs_actions_streams_their_logs_and_keeps_the_log_index() {
    let dir = TempDir::new().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    common::script(
        &project,
        "up.sh",
        "for i in 1 2 3 4 5; do echo \"step $i\"; sleep 0.2; done\n\
         for a in \"$@\"; do echo \"arg:$a\"; done\n",
    );
    common::script(&project, "down.sh", "echo bye\n");
    common::script(&project, "snap.sh", "echo snapping \"$1\"\nexit 3\n");
    let proc = server(dir.path(), &[]);
    common::ready(&switchyard_client::Client::new(proc.url())).await;
    let face = Face::new(&proc);
    let location = project.to_str().unwrap();

    // Create, in the original's shapes; a second create of the name is refused.
    let new = json!({"name": "web", "project_location": location});
    assert_eq!(
        face.post("/api/deployments", new.clone()).await,
        (200, String::new())
    );
    let (code, text) = face.post("/api/deployments", new).await;
    assert_error(code, &text, 409, "already exists");
    let (code, text) = face
        .post(
            "/api/deployments",
            json!({"name": "x", "project_location": "relative"}),
        )
        .await;
    assert_error(code, &text, 400, "project_location");
    let (code, text) = face.post("/api/deployments", json!({"name": "x"})).await;
    assert_error(code, &text, 400, "project_location");
    let expected = json!({"name": "web", "project_location": location, "state": "down", "last_action_uuid": null});
    assert_eq!(
        face.get("/api/deployments").await,
        (200, json!({"deployments": {"web": expected}}))
    );
    assert_eq!(
        face.get("/api/deployments/web/").await,
        (200, expected),
        "a trailing slash is trimmed"
    );
    assert_eq!(face.get("/api/active-deployments").await, (200, json!({})));

    // The action answers its uuid at once, while the script runs.
    let up = json!({
        "command": {"up": {"up_cmd": {"provision": false, "rerun_scripts": false, "reapply_acl": false}}},
        "generate_artefacts": false
    });
    // A command not of the original's shapes is refused, naming the field; nothing starts.
    let (code, text) = face
        .post(
            "/api/deployments/web/action",
            json!({"command": {"up": {"up_cmd": {"provision": false}}}}),
        )
        .await;
    assert_error(code, &text, 400, "command.up.up_cmd");
    assert_eq!(face.get("/api/deployments/web").await.1["state"], "down");
    let (code, uuid) = face.post("/api/deployments/web/action", up.clone()).await;
    assert_eq!(code, 200, "{uuid}");
    assert_eq!(uuid.len(), 36, "a uuid: {uuid:?}");
    let (_, d) = face.get("/api/deployments/web").await;
    assert_eq!(
        (d["state"].as_str(), d["last_action_uuid"].as_str()),
        (Some("running"), Some(uuid.as_str()))
    );
    // While it runs, the log index has no end state for it yet.
    let (_, index) = face.get("/api/deployments/web/logs").await;
    assert_eq!(index["logs"][&uuid]["end_state"], Value::Null, "{index}");
    let (code, text) = face
        .post("/api/deployments/web/action", json!({"command": "down"}))
        .await;
    assert_error(code, &text, 409, "running action up");
    let (code, text) = face
        .send(reqwest::Method::DELETE, "/api/deployments/web", None)
        .await;
    assert_error(code, &text, 409, "running action");

    // The socket streams every line from the start, in order, then closes normally.
    let (lines, close) = stream(&face, &uuid).await;
    let mut want: Vec<String> = (1..=5).map(|i| format!("step {i}")).collect();
    want.push("arg:web".into());
    want.push(format!("arg:{up}"));
    assert_eq!(lines, want);
    assert_eq!(close, Some(CloseCode::Normal));
    // Once closed, the state is final (the job's end and the state are one revision).
    let (_, d) = face.get("/api/deployments/web").await;
    assert_eq!(d["state"], "up");
    let (_, active) = face.get("/api/active-deployments").await;
    assert_eq!(active["web"]["state"], "up");
    // A late socket replays the whole log and closes.
    assert_eq!(stream(&face, &uuid).await.0, want);
    let (code, text) = face
        .send(reqwest::Method::DELETE, "/api/deployments/web", None)
        .await;
    assert_error(code, &text, 409, "while it is up");

    // A failing snapshot: error code 3, state failed with the command.
    let snapshot = json!({"snapshot": {"snapshot_cmd": {"info": {"name": "g1"}}}});
    let snap = json!({ "command": snapshot });
    let (code, snap_uuid) = face.post("/api/deployments/web/action", snap).await;
    assert_eq!(code, 200, "{snap_uuid}");
    let (lines, _) = stream(&face, &snap_uuid).await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("snapping {"), "{lines:?}");
    let (_, d) = face.get("/api/deployments/web").await;
    assert_eq!(d["state"], json!({ "failed": snapshot }));

    // The log index: uuid → log path, error code, end state, time; each log path serves its log.
    let (code, index) = face.get("/api/deployments/web/logs").await;
    assert_eq!(code, 200);
    let logs = index["logs"].as_object().unwrap();
    assert_eq!(logs.len(), 2, "{index}");
    assert_eq!(logs[&uuid]["error_code"], 0);
    assert_eq!(logs[&uuid]["end_state"], "up");
    assert_eq!(logs[&snap_uuid]["error_code"], 3);
    assert_eq!(logs[&snap_uuid]["end_state"], d["state"]);
    let path = logs[&uuid]["log_path"].as_str().unwrap();
    assert!(path.ends_with("-web.log"), "{path}");
    let time = logs[&uuid]["execution_time"].as_str().unwrap();
    assert!(path.contains(time), "{path} is named by {time}");
    let (code, text) = face.send(reqwest::Method::GET, path, None).await;
    assert_eq!((code, text), (200, want.join("\n") + "\n"));
    let (code, v) = face
        .get("/api/orchestration/ws?uuid=00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!((code, v["code"].clone()), (404, json!(404)));

    // The original's CLI resets a state with PUT; running cannot be set by hand.
    let (_, mut d) = face.get("/api/deployments/web").await;
    d["state"] = json!("running");
    let (code, text) = face
        .send(
            reqwest::Method::PUT,
            "/api/deployments/web",
            Some(d.clone()),
        )
        .await;
    assert_error(code, &text, 400, "state");
    d["state"] = json!("down");
    let (code, text) = face
        .send(reqwest::Method::PUT, "/api/deployments/web", Some(d))
        .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(face.get("/api/deployments/web").await.1["state"], "down");
    // "" says "no folder", as the original shows one.
    let (_, mut d) = face.get("/api/deployments/web").await;
    d["project_location"] = json!("");
    let (code, text) = face
        .send(reqwest::Method::PUT, "/api/deployments/web", Some(d))
        .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        face.get("/api/deployments/web").await.1["project_location"],
        ""
    );

    // The orchestrator's state document.
    let (code, v) = face.get("/api/deployments/web/state").await;
    assert_eq!(code, 404, "{v}");
    let doc = json!({"machines": [{"name": "vm1"}], "network": null});
    assert_eq!(
        face.post("/api/deployments/web/state", doc.clone()).await.0,
        200
    );
    assert_eq!(
        face.get("/api/deployments/web/state").await,
        (200, doc.clone())
    );
    let (code, text) = face.get("/api/deployments/web/state?pretty=true").await;
    assert_eq!((code, text), (200, doc.clone()));
    let resp = face
        .http
        .post(format!("{}/api/deployments/web/state", face.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(face.get("/api/deployments/web/state").await, (200, doc));

    // Delete, then it is gone; errors keep the shape.
    let (code, text) = face
        .send(reqwest::Method::DELETE, "/api/deployments/web", None)
        .await;
    assert_eq!(code, 200, "{text}");
    let (code, v) = face.get("/api/deployments/web").await;
    assert_eq!((code, v["code"].clone()), (404, json!(404)));
    let (code, v) = face.get("/api/nothing/here").await;
    assert_eq!((code, v["code"].clone()), (404, json!(404)));
}

/// Answers `GET /api/config/status` with 200 on a port of its own, as a TestbedOS client does.
/// A seed-003 client's status route on a port of its own; it answers 200 while `up` is set,
/// 503 otherwise (a client that went away, without giving its port to anyone else).
async fn fake_client(up: Arc<AtomicBool>) -> u16 {
    let app = axum::Router::new().route(
        "/api/config/status",
        axum::routing::get(move || {
            let up = up.load(Ordering::SeqCst);
            async move {
                if up {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

fn host_json(name: &str) -> Value {
    json!({
        "ip": "127.0.0.1", "user": "tb", "identity_file": "/home/tb/.ssh/id", "testbed_nic": "eth1",
        "main_interface": "eth0", "is_main_host": true, "ovn": {"chassis_name": name}
    })
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    common::within(30, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn testbed_clients_join_are_checked_and_lost_ones_leave_the_cluster_document() {
    let dir = TempDir::new().unwrap();
    let client_up = Arc::new(AtomicBool::new(true));
    let client_port = fake_client(client_up.clone()).await;
    let file = dir.path().join("kvm-compose-config.json");
    let port = client_port.to_string();
    let proc = server(
        dir.path(),
        &[
            "--testbed-client-port",
            &port,
            "--agent-check-interval",
            "1",
            "--local-workers",
            "0",
            "--cluster-config-file",
            file.to_str().unwrap(),
        ],
    );
    common::ready(&switchyard_client::Client::new(proc.url())).await;
    let face = Face::new(&proc);

    let (code, text) = face
        .post("/api/cluster", json!({"ip": "127.0.0.1", "ovn": {}}))
        .await;
    assert_error(code, &text, 400, "ovn.chassis_name");
    let (code, text) = face
        .post("/api/cluster", json!({"ovn": {"chassis_name": "c1"}}))
        .await;
    assert_error(code, &text, 400, "ip");
    let mut partial = host_json("c1");
    partial.as_object_mut().unwrap().remove("user");
    let (code, text) = face.post("/api/cluster", partial).await;
    assert_error(code, &text, 400, "user");
    // A worker's agent id cannot be taken over by a client.
    let worker = reqwest::Client::new()
        .post(format!("{}/v1/agents", proc.url()))
        .json(&json!({"id": "w1", "hostname": "h", "ttl": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(worker.status(), 200);
    let (code, text) = face.post("/api/cluster", host_json("w1")).await;
    assert_error(code, &text, 409, "worker agent");
    let host = face
        .base
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        face.post("/api/cluster", host_json("client1")).await,
        (200, format!("tcp:{host}:6642"))
    );
    assert_eq!(face.get("/api/cluster/client1").await.0, 200);
    assert_eq!(face.get("/api/cluster/nobody").await.0, 404);
    assert_eq!(face.get("/api/config/status").await.0, 200);

    // The cluster document holds the client's host document, marked as a client.
    let (code, doc) = face.get("/api/config/cluster").await;
    assert_eq!(code, 200);
    let mut want = host_json("client1");
    want["is_main_host"] = json!(false);
    assert_eq!(doc["testbed_host_ssh_config"]["client1"], want);
    assert!(
        doc["testbed_host_ssh_config"].get("w1").is_none(),
        "a worker without a host document is no testbed host: {doc}"
    );
    let read_file = || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .unwrap_or_default()
    };
    let in_file = || {
        read_file()["testbed_host_ssh_config"]
            .get("client1")
            .is_some()
    };
    wait_until("client1 in the cluster file", async || in_file()).await;

    // The operator names the main host in the file: it stays there, is served, and its ip is
    // the OVN remote a joining client gets (the central database runs there).
    let mut edited = read_file();
    let mut main = host_json("main");
    main["ip"] = json!("10.0.0.1");
    edited["testbed_host_ssh_config"]["main"] = main.clone();
    std::fs::write(&file, edited.to_string()).unwrap();
    assert_eq!(
        face.post("/api/cluster", host_json("client1")).await,
        (200, "tcp:10.0.0.1:6642".to_string())
    );
    let (_, doc) = face.get("/api/config/cluster").await;
    assert_eq!(doc["testbed_host_ssh_config"]["main"], main, "{doc}");

    // The client stops answering its status check: it is lost, its membership check says 404,
    // and it leaves the document and the file.
    client_up.store(false, Ordering::SeqCst);
    wait_until("client1 to be lost", async || {
        face.get("/api/cluster/client1").await.0 == 404
    })
    .await;
    let (_, doc) = face.get("/api/config/cluster").await;
    assert!(
        doc["testbed_host_ssh_config"].get("client1").is_none(),
        "{doc}"
    );
    wait_until("client1 out of the cluster file", async || !in_file()).await;
    assert_eq!(read_file()["testbed_host_ssh_config"]["main"], main);

    // As the original client does on a 404, it joins again and is a member again.
    client_up.store(true, Ordering::SeqCst);
    assert_eq!(face.post("/api/cluster", host_json("client1")).await.0, 200);
    assert_eq!(face.get("/api/cluster/client1").await.0, 200);
    wait_until("client1 back in the cluster file", async || in_file()).await;
}

#[tokio::test]
async fn without_templates_deployments_are_kept_failures_read_as_the_original_and_big_bodies_are_413()
 {
    let dir = TempDir::new().unwrap();
    // No [actions.*] in the server's configuration.
    let proc = common::serve_in(
        &dir.path().join("data"),
        &["--testbed-listen", "127.0.0.1:0"],
    );
    let v1 = switchyard_client::Client::new(proc.url());
    common::ready(&v1).await;
    let face = Face::new(&proc);

    // The original CLI creates the deployment on first use: that works without templates; an
    // action is refused, naming it and how to configure one, and nothing changes.
    let (code, _) = face
        .post(
            "/api/deployments",
            json!({"name": "bare", "project_location": "/srv/bare"}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, text) = face
        .post("/api/deployments/bare/action", json!({"command": "down"}))
        .await;
    // No template for the action: what exists is the server's configuration, so 404.
    assert_error(code, &text, 404, "[actions.NAME]");
    assert_eq!(face.get("/api/deployments/bare").await.1["state"], "down");

    // An `up` that fails, started through /v1 (no original request to show): the face shows the
    // original's form of the command, which its client can read.
    let created = reqwest::Client::new()
        .post(format!("{}/v1/deployments", proc.url()))
        .json(&json!({"name": "web", "actions": {"up": ["false"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let started = reqwest::Client::new()
        .post(format!("{}/v1/deployments/web/actions/up", proc.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    wait_until("the up to fail", async || {
        face.get("/api/deployments/web").await.1["state"].is_object()
    })
    .await;
    assert_eq!(
        face.get("/api/deployments/web").await.1["state"],
        json!({"failed": {"up": {"up_cmd": {
            "provision": false, "rerun_scripts": false, "reapply_acl": false
        }}}})
    );

    // A state document up to the original's 2 MiB is taken; a larger body is 413 in the
    // face's error shape.
    let doc = json!({"blob": "x".repeat(1_500_000)});
    assert_eq!(face.post("/api/deployments/bare/state", doc).await.0, 200);
    let big = json!({"blob": "x".repeat(3 << 20)});
    let (code, text) = face.post("/api/deployments/bare/state", big).await;
    assert_error(code, &text, 413, "body");
}
