//! The seed-003 face: the TestbedOS server's `/api/...` routes on a listener of their own
//! (`--testbed-listen`, port 3355 by the original), over the deployments and agents apps.
//!
//! Deployments are `{"name", "project_location", "state", "last_action_uuid"}` with the
//! original's states: `"up"`, `"down"`, `"running"`, or `{"failed": COMMAND}` carrying the
//! command that failed. `POST /api/deployments/{name}/action` takes the original's
//! `{"command": ..., "generate_artefacts": bool}`; the action run is the command's name (`up`,
//! `down`, `snapshot`, `generate_artefacts`, ...) from the server's templates, and its one
//! argument (`{args}`) is the request as JSON, as the original handed its orchestrator the
//! command. It answers the action's uuid as text; `GET /api/orchestration/ws?uuid=` streams
//! that action's log, one text message per line from the start, and closes once the action has
//! ended and every line was sent. `GET /api/deployments/{name}/logs` is the per-deployment log
//! index, `{"logs": {UUID: {"log_path", "error_code", "end_state", "execution_time"}}}`; a
//! `log_path` (`/api/orchestration/logs/<iso-date-time>-<name>.log`) serves that log as text.
//!
//! Cluster: a client joins with `POST /api/cluster` and its host document (`host.json`),
//! becoming an agent named by its `ovn.chassis_name`; the answer is the OVN southbound remote,
//! `tcp:HOST:6642`, HOST being the main host's `ip` in the cluster configuration file (the
//! entry with `is_main_host: true`), or else the address the client reached this server on.
//! Its periodic
//! `GET /api/cluster/{name}` answers 200 while it is a live member (and counts as its
//! heartbeat) or 404, after which the original client joins again. The leader checks each
//! client at `http://{ip}:{testbed_client_port}/api/config/status`. `GET /api/config/cluster`
//! is the cluster configuration document; `GET /api/config/status` answers 200.
//!
//! Errors are JSON, `{"code": HTTP_STATUS, "message": "..."}`. Differences from the original,
//! on purpose: its errors were mostly 500s with a text body; here they are 400 (bad input,
//! naming the field), 404, 409 (a deployment busy or up, a name taken) with the JSON shape.
//! The orchestrator's state document (`/api/deployments/{name}/state`) is kept in the
//! replicated state rather than in the project folder, since actions may run on another host;
//! the project folder is not checked at creation for the same reason. Deleting an `up`
//! deployment is refused, as the original does.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::agents::{AgentCommand, AgentInfo};
use switchyard_core::deployments::{
    ActionRun, Deployment, DeploymentCommand, DeploymentReply, Spec, State as DeployState,
};
use switchyard_core::{Command, Reply};
use switchyard_types::rfc3339;

use crate::api::Shared;
use crate::api::jobs::{Followed, follow_log};
use crate::error::ApiError;
use crate::routes::Routes;

/// Seconds a joined client may stay silent before it is lost (the original's clients check
/// in every 10 s); lost at twice this.
const CLIENT_TTL: u64 = 15;

/// The face's routes.
pub fn routes() -> Routes<Shared> {
    Routes::new()
        .get("/api/deployments", list)
        .post("/api/deployments", create)
        .get("/api/deployments/{name}", get_one)
        .put("/api/deployments/{name}", put)
        .delete("/api/deployments/{name}", delete)
        .get("/api/deployments/{name}/state", get_document)
        .post("/api/deployments/{name}/state", post_document)
        .post("/api/deployments/{name}/action", action)
        .get("/api/deployments/{name}/logs", log_index)
        .get("/api/active-deployments", active)
        .get("/api/orchestration/ws", ws)
        .get("/api/orchestration/logs/{file}", log_text)
        .post("/api/cluster", join)
        .get("/api/cluster/{name}", membership)
        .get("/api/config/cluster", cluster_config)
        .get("/api/config/status", || async { StatusCode::OK })
}

/// The face alone, for its own listener.
pub fn router(s: Shared) -> Router {
    // A state document may be as large as the original's limit (axum's default, 2 MiB).
    let max_body = s
        .node
        .config
        .max_body_bytes
        .max(switchyard_core::deployments::MAX_DOCUMENT);
    let guard = crate::api::guard(&s, crate::auth::Style::Testbed);
    routes()
        .into_router()
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .layer(axum::middleware::map_response(
            move |r: axum::response::Response| async move {
                // The body limit's own refusal is text; answer in the face's error shape.
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    let msg = format!("body: larger than {max_body} bytes");
                    return error(StatusCode::PAYLOAD_TOO_LARGE, &msg).into_response();
                }
                r
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::auth::check,
        ))
        .with_state(s)
}

/// An error in the original's shape, `{"code": STATUS, "message": "..."}`.
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(json!({"code": self.status.as_u16(), "message": self.message})),
        )
            .into_response()
    }
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn refused(e: ApiError) -> Refusal {
    error(e.status, e.message)
}

type Answer = Result<Response, Refusal>;

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Refusal> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        error(
            StatusCode::BAD_REQUEST,
            format!("{field}: {}", e.into_inner()),
        )
    })
}

#[derive(Deserialize, Default)]
struct Pretty {
    pretty: Option<bool>,
}

fn json_answer(v: &Value, pretty: &Pretty) -> Response {
    let text = if pretty.pretty == Some(true) {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .expect("a JSON value serialises");
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

async fn linearizable(s: &Shared) -> Result<(), Refusal> {
    s.node.linearizable().await.map_err(|e| refused(e.into()))
}

fn lookup(s: &Shared, name: &str) -> Result<Deployment, Refusal> {
    switchyard_core::jobs::validate_name("name", name).map_err(|e| refused(e.into()))?;
    s.node
        .view
        .read(|st| st.deployments.get(name).cloned())
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("deployment {name:?} does not exist"),
            )
        })
}

async fn run(s: &Shared, cmd: DeploymentCommand) -> Result<DeploymentReply, Refusal> {
    switchyard_core::deployments::validate(&cmd).map_err(|e| refused(e.into()))?;
    match s.node.write(Command::Deployments(cmd), None).await {
        Ok((Reply::Deployments(r), _)) => Ok(r),
        Ok((other, _)) => Err(refused(ApiError::internal(format!(
            "deployments command answered {other:?}"
        )))),
        Err(e) => Err(refused(e.into())),
    }
}

/// The command the original would name for an action record: the request's `command` when
/// it came through this face, else [`plain_command`] of the action's name (with its
/// arguments, if any).
fn command_of(run: &ActionRun) -> Value {
    if let [one] = run.args.as_slice()
        && let Ok(Value::Object(req)) = serde_json::from_str::<Value>(one)
        && let Some(command) = req.get("command")
    {
        return command.clone();
    }
    if run.args.is_empty() {
        plain_command(&run.action)
    } else {
        json!({ run.action.clone(): run.args })
    }
}

/// An action started without the original's request (through /v1, or set by a reset) as the
/// original's `DeploymentCommand`, so its client can read a failed state: its commands without
/// data by name, `up` and `testbed_snapshot` with their options off. Any other action has no
/// such form (a snapshot needs its subcommand; custom actions are not the original's) and is
/// shown by name.
fn plain_command(action: &str) -> Value {
    match action {
        "up" => json!({"up": {"up_cmd": {
            "provision": false, "rerun_scripts": false, "reapply_acl": false
        }}}),
        "testbed_snapshot" => json!({"testbed_snapshot": {"snapshot_guests": false}}),
        other => Value::String(other.into()),
    }
}

fn failed_command(d: &Deployment) -> Value {
    let action = d.failed_action.clone().unwrap_or_default();
    d.history
        .iter()
        .rev()
        .find(|r| r.action == action)
        .map(command_of)
        .unwrap_or_else(|| plain_command(&action))
}

fn state_value(state: DeployState, failed: impl FnOnce() -> Value) -> Value {
    match state {
        DeployState::Failed => json!({ "failed": failed() }),
        other => Value::String(other.as_str().into()),
    }
}

/// A deployment as the original shows it.
fn view(d: &Deployment) -> Value {
    json!({
        "name": d.spec.name,
        "project_location": d.spec.dir.clone().unwrap_or_default(),
        "state": state_value(d.state, || failed_command(d)),
        "last_action_uuid": d.current.as_ref().or(d.history.last()).map(|r| r.action_id.clone()),
    })
}

async fn list(State(s): State<Shared>) -> Answer {
    linearizable(&s).await?;
    let all: Map<String, Value> = s.node.view.read(|st| {
        st.deployments
            .iter()
            .map(|d| (d.spec.name.clone(), view(d)))
            .collect()
    });
    Ok(axum::Json(json!({ "deployments": all })).into_response())
}

async fn active(State(s): State<Shared>) -> Answer {
    linearizable(&s).await?;
    let up: Map<String, Value> = s.node.view.read(|st| {
        st.deployments
            .iter()
            .filter(|d| d.state == DeployState::Up)
            .map(|d| (d.spec.name.clone(), view(d)))
            .collect()
    });
    Ok(axum::Json(Value::Object(up)).into_response())
}

async fn get_one(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
    linearizable(&s).await?;
    Ok(axum::Json(view(&lookup(&s, &name)?)).into_response())
}

#[derive(Deserialize)]
struct NewDeployment {
    name: String,
    project_location: String,
}

fn project_location(path: &str) -> Result<(), Refusal> {
    if !path.starts_with('/') {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("project_location: must be an absolute path; got {path:?}"),
        ));
    }
    Ok(())
}

async fn create(State(s): State<Shared>, bytes: Bytes) -> Answer {
    let b: NewDeployment = body(&bytes)?;
    project_location(&b.project_location)?;
    let spec = Spec {
        name: b.name,
        actions: s.node.config.deployment_actions.clone(),
        dir: Some(b.project_location),
        queue: "default".into(),
        labels: BTreeMap::new(),
        timeout: None,
        env: BTreeMap::new(),
    };
    run(&s, DeploymentCommand::Create(spec)).await?;
    Ok(StatusCode::OK.into_response())
}

/// The original's `DeploymentState`: `"up"`, `"down"`, `"running"` or `{"failed": COMMAND}`.
fn parse_state(v: &Value) -> Result<(DeployState, Option<String>), Refusal> {
    let bad = || {
        error(
            StatusCode::BAD_REQUEST,
            "state: must be \"up\", \"down\" or {\"failed\": COMMAND} (\"running\" comes from an action)",
        )
    };
    match v {
        Value::String(s) => match s.as_str() {
            "up" => Ok((DeployState::Up, None)),
            "down" => Ok((DeployState::Down, None)),
            _ => Err(bad()),
        },
        Value::Object(m) if m.len() == 1 => match m.get("failed") {
            Some(command) => Ok((
                DeployState::Failed,
                Some(command_name(command).ok_or_else(bad)?),
            )),
            None => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// A command's name: `"down"`, or the one key of `{"up": {...}}`.
fn command_name(command: &Value) -> Option<String> {
    match command {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) if m.len() == 1 => m.keys().next().cloned(),
        _ => None,
    }
}

#[derive(Deserialize)]
struct PutDeployment {
    name: String,
    project_location: String,
    state: Value,
    #[serde(default)]
    #[allow(dead_code)]
    last_action_uuid: Option<String>,
}

/// Replace the record, as the original's `PUT` (its CLI resets a deployment's state this way).
async fn put(State(s): State<Shared>, Path(name): Path<String>, bytes: Bytes) -> Answer {
    let b: PutDeployment = body(&bytes)?;
    if b.name != name {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("name: must match the path ({name:?}); got {:?}", b.name),
        ));
    }
    // The original shows a deployment without a folder as "": the same comes back to say none.
    let dir = if b.project_location.is_empty() {
        None
    } else {
        project_location(&b.project_location)?;
        Some(b.project_location)
    };
    let current = lookup(&s, &name)?;
    let (state, failed_action) = parse_state(&b.state)?;
    if state == current.state && failed_action == current.failed_action && current.spec.dir == dir {
        return Ok(StatusCode::OK.into_response());
    }
    run(
        &s,
        DeploymentCommand::Amend {
            name,
            dir,
            state,
            failed_action,
        },
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

async fn delete(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
    run(
        &s,
        DeploymentCommand::Delete {
            name,
            refuse_up: true,
        },
    )
    .await?;
    Ok(StatusCode::OK.into_response())
}

async fn get_document(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(p): Query<Pretty>,
) -> Answer {
    linearizable(&s).await?;
    let Some(doc) = lookup(&s, &name)?.document else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("could not read state json for {name}, has artefact generation been executed?"),
        ));
    };
    if p.pretty == Some(true) {
        let v: Value = serde_json::from_str(&doc)
            .map_err(|e| refused(ApiError::internal(format!("stored document: {e}"))))?;
        return Ok(json_answer(&v, &p));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], doc).into_response())
}

async fn post_document(State(s): State<Shared>, Path(name): Path<String>, bytes: Bytes) -> Answer {
    crate::api::deployments::store_document(&s, name, &bytes)
        .await
        .map_err(refused)?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct ActionBody {
    command: Value,
    #[serde(default)]
    generate_artefacts: bool,
}

async fn action(State(s): State<Shared>, Path(name): Path<String>, bytes: Bytes) -> Answer {
    let b: ActionBody = body(&bytes)?;
    let action = command_name(&b.command).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "command: must be a command name (\"down\") or one {NAME: ARGUMENTS} (\"up\": {...})",
        )
    })?;
    let request = json!({"command": b.command, "generate_artefacts": b.generate_artefacts});
    let cmd = DeploymentCommand::Act {
        name,
        action,
        args: vec![request.to_string()],
        retention_ms: s.node.config.job_retention_ms(),
    };
    match run(&s, cmd).await? {
        DeploymentReply::Started { action_id, .. } => Ok(action_id.into_response()),
        other => Err(refused(ApiError::internal(format!(
            "action answered {other:?}"
        )))),
    }
}

/// `<iso-date-time>-<name>.log`, the original's log file name.
fn log_file(d: &Deployment, r: &ActionRun) -> String {
    format!("{}-{}.log", rfc3339(r.started_ms), d.spec.name)
}

fn runs(d: &Deployment) -> impl Iterator<Item = &ActionRun> {
    d.history.iter().chain(d.current.iter())
}

async fn log_index(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
    linearizable(&s).await?;
    let d = lookup(&s, &name)?;
    let logs: Map<String, Value> = runs(&d)
        .map(|r| {
            let entry = json!({
                "log_path": format!("/api/orchestration/logs/{}", log_file(&d, r)),
                "error_code": r.exit_code,
                "end_state": r.end_state.map(|st| state_value(st, || command_of(r))),
                "execution_time": rfc3339(r.started_ms),
            });
            (r.action_id.clone(), entry)
        })
        .collect();
    Ok(axum::Json(json!({ "logs": logs })).into_response())
}

/// The job running (or that ran) the action with this uuid.
fn job_of(s: &Shared, uuid: &str) -> Result<u64, Refusal> {
    s.node
        .view
        .read(|st| {
            st.deployments
                .iter()
                .flat_map(runs)
                .find(|r| r.action_id == uuid)
                .map(|r| r.job_id)
        })
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("uuid: no action {uuid:?}")))
}

async fn log_text(State(s): State<Shared>, Path(file): Path<String>) -> Answer {
    linearizable(&s).await?;
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            format!("no orchestration log {file:?}"),
        )
    };
    let job = s
        .node
        .view
        .read(|st| {
            st.deployments
                .iter()
                .find_map(|d| runs(d).find(|r| log_file(d, r) == file).map(|r| r.job_id))
        })
        .ok_or_else(not_found)?;
    let mut text = String::new();
    let mut from = 0;
    loop {
        let page = s
            .node
            .view
            .read(|st| st.jobs.log(job, from, crate::api::jobs::MAX_LOG_PAGE))
            .ok_or_else(not_found)?;
        for line in &page.lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        if page.lines.is_empty() || page.next == from {
            break;
        }
        from = page.next;
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Deserialize)]
struct WsQuery {
    uuid: Option<String>,
}

async fn ws(
    State(s): State<Shared>,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Answer {
    let Some(uuid) = q.uuid else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "uuid: missing; open /api/orchestration/ws?uuid=UUID with the action's uuid",
        ));
    };
    linearizable(&s).await?;
    let job = job_of(&s, &uuid)?;
    let upgrade = upgrade.map_err(|e| error(e.status(), e.body_text()))?;
    Ok(upgrade.on_upgrade(move |socket| stream_log(socket, s, job)))
}

/// Send each line of `job`'s log as a text message, then close once the job is over.
async fn stream_log(socket: WebSocket, s: Shared, job: u64) {
    let (mut sink, mut incoming) = socket.split();
    let mut lines = follow_log(s.node.view.clone(), job, 0, s.shutdown.clone());
    loop {
        tokio::select! {
            f = lines.recv() => match f {
                Some(Followed::Line(line)) => {
                    if sink.send(Message::Text(line.text.into())).await.is_err() {
                        return;
                    }
                }
                Some(Followed::End { .. }) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::NORMAL,
                            reason: "action ended".into(),
                        })))
                        .await;
                    return;
                }
                None => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::AWAY,
                            reason: "log no longer available".into(),
                        })))
                        .await;
                    return;
                }
            },
            m = incoming.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The host the client reached this server on (for the OVN remote it is told to use).
fn reached_host(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host.to_string(),
    }
}

/// A client joins (or joins again) with its host document.
async fn join(State(s): State<Shared>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let mut host: Map<String, Value> = body(&bytes)?;
    let ip = match host.get("ip") {
        Some(Value::String(ip)) if !ip.is_empty() && ip.len() <= 253 => ip.clone(),
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "ip: must be the client's address, a non-empty string",
            ));
        }
    };
    if ip
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("ip: must be a host name or address; got {ip:?}"),
        ));
    }
    let Some(Value::String(id)) = host.get("ovn").and_then(|o| o.get("chassis_name")).cloned()
    else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "ovn.chassis_name: missing; the client's unique name in the cluster",
        ));
    };
    // What the cluster document needs of a host (the original's SshConfig).
    for f in crate::cluster_config::HOST_FIELDS {
        if !host.get(f).is_some_and(Value::is_string) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("{f}: missing or not a string; a host document needs {f}"),
            ));
        }
    }
    // A worker's agent id is not a client's to take over.
    let taken = s.node.view.read(|st| {
        st.agents
            .get(&id)
            .is_some_and(|a| a.info.labels.get("testbed").map(String::as_str) != Some("client"))
    });
    if taken {
        return Err(error(
            StatusCode::CONFLICT,
            format!("ovn.chassis_name: {id:?} is the name of a worker agent; choose another"),
        ));
    }
    // As the original: whatever the client says, it joins as a client.
    host.insert("is_main_host".into(), Value::Bool(false));
    let port = s.node.config.testbed_client_port;
    let url_host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.clone()
    };
    let info = AgentInfo {
        id,
        hostname: ip,
        cpus: 0,
        memory_bytes: 0,
        labels: BTreeMap::from([("testbed".to_string(), "client".to_string())]),
        version: String::new(),
        queues: Vec::new(),
        host_json: Value::Object(host).to_string(),
        ttl_s: CLIENT_TTL,
        url: Some(format!("http://{url_host}:{port}/api/config/status")),
    };
    let cmd = AgentCommand::Join(info);
    switchyard_core::agents::validate(&cmd).map_err(|e| {
        let e: ApiError = e.into();
        error(e.status, e.message.replace("id:", "ovn.chassis_name:"))
    })?;
    crate::api::agents::run(&s, cmd).await.map_err(refused)?;
    // The OVN central database runs on the main host: its ip from the cluster file, as the
    // original answers from its own host.json; without one, the address the client reached.
    let main_ip = cluster_file(&s).and_then(|doc| {
        let (_, main) = crate::cluster_config::main_host(&doc)?;
        main["ip"].as_str().map(str::to_string)
    });
    let ovn = main_ip.unwrap_or_else(|| reached_host(&headers));
    Ok(format!("tcp:{ovn}:6642").into_response())
}

/// The cluster configuration file as it is on disk, when one is configured and readable.
fn cluster_file(s: &Shared) -> Option<Map<String, Value>> {
    let path = s.node.config.cluster_config_file.as_ref()?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// 200 while `name` is a live member (counting as its heartbeat), else 404.
async fn membership(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
    linearizable(&s).await?;
    let live = switchyard_core::jobs::validate_name("name", &name).is_ok()
        && s.node
            .view
            .read(|st| {
                st.agents.get(&name).map(|a| {
                    a.lost.is_none()
                        && a.info.labels.get("testbed").map(String::as_str) == Some("client")
                })
            })
            .unwrap_or(false);
    if !live {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    let beat = AgentCommand::Heartbeat {
        id: name,
        leases: Vec::new(),
    };
    crate::api::agents::run(&s, beat).await.map_err(refused)?;
    Ok(StatusCode::OK.into_response())
}

async fn cluster_config(State(s): State<Shared>, Query(p): Query<Pretty>) -> Answer {
    linearizable(&s).await?;
    let base = cluster_file(&s).map(Value::Object);
    let hosts = s.node.view.read(crate::cluster_config::hosts);
    Ok(json_answer(
        &crate::cluster_config::document(base, hosts),
        &p,
    ))
}
