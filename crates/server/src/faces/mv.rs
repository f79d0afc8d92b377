//! The seed-000 face: one `mv` device served with the original server's paths at the root.
//!
//! `GET /state`, `GET /obs_state` answer the attribute as a JSON string or `null`. The seven
//! commands are `POST /<command>` (blocking: answers `null` once the command has finished) and
//! `POST /background_<command>` (checks busy and allowed, then answers `null` at once), with an
//! optional body `{"delay": seconds, "config": {...}}`. Busy or not allowed is 405
//! `{"detail": ["..."]}` as FastAPI renders the original's exceptions. The WebSocket at `/`
//! pushes `{"state": ..., "obs_state": ...}` (Python's `json.dumps` spacing) on every change,
//! phases included, and echoes what the client sends. `POST /abort` aborts the command in
//! flight (the original lists abort but never implemented it).
//!
//! Bodies are checked as the original's pydantic models check them: a `background_` route
//! needs one (absent or `null` is 422 `missing` at `["body"]`), an object must hold `delay`
//! (and `config` for scan, configure, assign and release), each missing key a 422 `missing`,
//! anything but an object a 422 `model_attributes_type`. Refusal texts are the original's
//! (`scan not allowed when obs_state is IDLE`, `... when state machine is busy`). Differences
//! from the original, on purpose: a body of the wrong types or bad JSON is a 422 with a
//! message of its own instead of pydantic's error objects, and pydantic's coercions (`true`,
//! `"0.5"` as a delay) are refused; the blocking `switch_on` accepts its documented JSON body
//! (the original answered 500); `POST /abort` exists (405 when nothing is in flight).

use std::convert::Infallible;
use switchyard_types::ErrorCode;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_types::{DeviceCommandRequest, WatchMessage};

use crate::api::Shared;
use crate::api::devices::run_command;
use crate::api::watch::{SessionConfig, run_session};
use crate::error::ApiError;
use crate::routes::Routes;

/// The seven commands of the `mv` type.
pub const COMMANDS: [&str; 7] = [
    "switch_on",
    "switch_off",
    "assign_resources",
    "release_resources",
    "configure",
    "scan",
    "clear_config",
];

#[derive(Clone)]
pub(crate) struct Face {
    s: Shared,
    device: String,
}

/// The face's routes.
pub(crate) fn routes() -> Routes<Face> {
    let mut r = Routes::new()
        .any("/", ws)
        .get("/state", |st: State<Face>| attribute(st, "state"))
        .get("/obs_state", |st: State<Face>| attribute(st, "obs_state"))
        .post("/abort", abort);
    for name in COMMANDS {
        r = r
            .post(&format!("/{name}"), move |st: State<Face>, body: Bytes| {
                command(st, name, false, body)
            })
            .post(
                &format!("/background_{name}"),
                move |st: State<Face>, body: Bytes| command(st, name, true, body),
            );
    }
    r
}

/// The face's routes and `doc` at `/openapi.json` (and `/docs`), as the original (FastAPI)
/// served its own.
pub(crate) fn own_routes(doc: std::sync::Arc<str>) -> Routes<Face> {
    routes().merge(crate::docs_page::routes(doc))
}

/// The face's router, serving device `device`.
pub fn router(s: Shared, device: String) -> Router {
    let guard = crate::api::guard(&s, crate::auth::Style::FastApi);
    let doc = match s.node.config.device_types.get("mv") {
        Some(def) => super::mv_doc::openapi(def),
        None => serde_json::json!({}),
    };
    own_routes(doc.to_string().into())
        .into_router()
        .fallback(|| async { detail(StatusCode::NOT_FOUND, json!("Not Found")) })
        .method_not_allowed_fallback(|| async {
            detail(StatusCode::METHOD_NOT_ALLOWED, json!("Method Not Allowed"))
        })
        .layer(crate::gate::GateLayer(guard))
        .with_state(Face { s, device })
}

fn detail(status: StatusCode, detail: Value) -> Response {
    (status, axum::Json(json!({ "detail": detail }))).into_response()
}

/// Map an API error to the original's shapes: refusals are 405 with `detail: [message]`.
fn refused(e: ApiError) -> Response {
    match e.code {
        ErrorCode::Busy | ErrorCode::NotAllowed => {
            detail(StatusCode::METHOD_NOT_ALLOWED, json!([e.message]))
        }
        ErrorCode::NotFound => detail(StatusCode::NOT_FOUND, json!(e.message)),
        ErrorCode::Invalid => detail(StatusCode::UNPROCESSABLE_ENTITY, json!([e.message])),
        _ => e.into_response(),
    }
}

async fn attribute(State(f): State<Face>, name: &'static str) -> Response {
    if let Err(e) = f.s.node.linearizable().await {
        return ApiError::from(e).into_response();
    }
    match f.s.node.view.read(|st| st.devices.get(&f.device)) {
        Some(d) => axum::Json(d.attributes.get(name).cloned().flatten()).into_response(),
        None => detail(
            StatusCode::NOT_FOUND,
            json!(format!("device {:?} does not exist", f.device)),
        ),
    }
}

/// The original's body: `{"delay": seconds | null, "config": {...} | null}`; other fields are
/// ignored, as pydantic does.
#[derive(Deserialize, Default)]
struct Args {
    delay: Option<f64>,
    config: Option<serde_json::Map<String, Value>>,
}

/// The keys the original's body model requires of `command` (pydantic v2: a field typed
/// `float | None` without a default must be present): `DelayArgs` or `ConfigArgs`.
pub(super) fn required_keys(command: &str) -> &'static [&'static str] {
    match command {
        "switch_on" | "switch_off" | "clear_config" => &["delay"],
        _ => &["delay", "config"],
    }
}

/// A pydantic error object, as FastAPI lists them under `detail`.
fn pydantic(kind: &str, loc: Value, msg: &str, input: &Value) -> Value {
    json!({"type": kind, "loc": loc, "msg": msg, "input": input})
}

/// The body as the original's route reads it: absent or `null` is no arguments (a 422 on a
/// `background_` route, whose body is required); an object must hold its model's keys.
/// The error is the 422's `detail` list.
fn parse_args(name: &str, background: bool, body: &[u8]) -> Result<Args, Vec<Value>> {
    let v: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| vec![json!(format!("body: {e}"))])?
    };
    match &v {
        Value::Null if background => Err(vec![pydantic(
            "missing",
            json!(["body"]),
            "Field required",
            &Value::Null,
        )]),
        Value::Null => Ok(Args::default()),
        Value::Object(m) => {
            let missing: Vec<Value> = required_keys(name)
                .iter()
                .filter(|k| !m.contains_key(**k))
                .map(|k| pydantic("missing", json!(["body", k]), "Field required", &v))
                .collect();
            if !missing.is_empty() {
                return Err(missing);
            }
            serde_json::from_value(v.clone()).map_err(|e| vec![json!(format!("body: {e}"))])
        }
        _ => Err(vec![pydantic(
            "model_attributes_type",
            json!(["body"]),
            "Input should be a valid dictionary or object to extract fields from",
            &v,
        )]),
    }
}

async fn command(
    State(f): State<Face>,
    name: &'static str,
    background: bool,
    body: Bytes,
) -> Response {
    let args = match parse_args(name, background, &body) {
        Ok(a) => a,
        Err(errors) => return detail(StatusCode::UNPROCESSABLE_ENTITY, json!(errors)),
    };
    let req = DeviceCommandRequest {
        duration: args.delay,
        wait: !background,
        timeout: None,
        args: args.config.map(|c| json!({ "config": c })),
    };
    match run_command(&f.s, &f.device, name, req, None).await {
        Ok(_) => axum::Json(Value::Null).into_response(),
        Err(e) if matches!(e.code, ErrorCode::Busy | ErrorCode::NotAllowed) => {
            let text = original_refusal(&f, name, e.code);
            detail(StatusCode::METHOD_NOT_ALLOWED, json!([text]))
        }
        Err(e) => refused(e),
    }
}

/// The original's refusal texts: its `must_be_on` check (every command but switching), then
/// its busy check, then the allowed commands by `obs_state`; Python prints no value as `None`.
fn original_refusal(f: &Face, command: &str, code: ErrorCode) -> String {
    if code == ErrorCode::Busy {
        return format!("{command} not allowed when state machine is busy");
    }
    let attrs =
        f.s.node
            .view
            .read(|st| st.devices.get(&f.device).map(|d| d.attributes));
    let get = |k: &str| {
        attrs
            .as_ref()
            .and_then(|a| a.get(k).cloned().flatten())
            .unwrap_or_else(|| "None".to_string())
    };
    let state = get("state");
    if !matches!(command, "switch_on" | "switch_off") && state != "ON" {
        format!("{command} not allowed when state is {state}")
    } else {
        format!(
            "{command} not allowed when obs_state is {}",
            get("obs_state")
        )
    }
}

async fn abort(State(f): State<Face>) -> Response {
    let cmd = switchyard_core::Command::Devices(switchyard_core::devices::DeviceCommand::Abort {
        name: f.device.clone(),
    });
    match f.s.node.write(cmd, None).await {
        Ok(_) => axum::Json(Value::Null).into_response(),
        Err(e) => refused(e.into()),
    }
}

async fn ws(State(f): State<Face>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| ws_session(socket, f))
}

/// `{"state": ..., "obs_state": ...}` as Python's `json.dumps` writes it.
fn combined(attributes: &Value) -> String {
    let get = |k: &str| {
        serde_json::to_string(attributes.get(k).unwrap_or(&Value::Null)).expect("a JSON value")
    };
    format!(
        "{{\"state\": {}, \"obs_state\": {}}}",
        get("state"),
        get("obs_state")
    )
}

async fn ws_session(socket: WebSocket, f: Face) {
    let cfg = &f.s.node.config;
    let session = SessionConfig {
        max_lag: cfg.watch_max_lag,
        bookmark_interval: cfg.watch_bookmark_interval,
        send_timeout: cfg.watch_send_timeout,
    };
    let topic = format!("devices/{}", f.device);
    let (tx, mut rx) = futures::channel::mpsc::channel::<Message>(64);
    let never = futures::stream::pending::<Result<Message, Infallible>>();
    let feed = tokio::spawn(run_session(
        tx,
        never,
        f.s.node.view.clone(),
        topic.clone(),
        None,
        session,
        f.s.shutdown.clone(),
    ));
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            m = rx.next() => {
                let Some(Message::Text(t)) = m else { break };
                match serde_json::from_str::<WatchMessage>(t.as_str()) {
                    Ok(WatchMessage::Event { topic: got, event, .. }) if got == topic => {
                        let text = combined(&event["device"]["attributes"]);
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    Ok(WatchMessage::Error { .. }) => break,
                    _ => {}
                }
            }
            c = stream.next() => match c {
                Some(Ok(Message::Text(t))) => {
                    if sink.send(Message::Text(t)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    feed.abort();
}
