//! The seed-001 face: the Altair beer-tap server's `/api/beers` and `/sockets/beers`, served on
//! the main listener and, with `--altair-listen`, on a listener of its own.
//!
//! Success shapes are the original's: `{"beer": {"id", "type", "volume", "timestamp", "tapId"}}`,
//! `{"beers": [...]}`, DELETE's empty 200, 403 `{"status": 403, "message": "There is no glass
//! type for the specified volume"}`, 404 `{"status": 404, "message": "Beer with id 7 not found"}`.
//! The socket sends each announcement as text and, when the count of beers is a multiple of ten,
//! the report as JSON text. Where the original answered 500 (bad JSON, missing or mistyped
//! fields, a non-numeric page or id), this face answers 400 (or 404 for an id) in the same
//! `{"status", "message"}` shape, naming the field; a rejected pour uses no id.
//! A tap that connects with `?tapId=N&skip_own=true` is not told of its own pours. JSON bodies
//! are written as the original's Tornado writes a dict (`pyjson`, `</` escaped), as
//! `application/json; charset=UTF-8`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard_core::beers::{BeerCommand, BeerReply, NO_GLASS};
use switchyard_core::{Command, Reply};
use switchyard_types::WatchMessage;

use crate::api::Shared;
use crate::api::watch::{SessionConfig, run_session};
use crate::error::ApiError;
use crate::routes::Routes;

/// The face's routes (the same paths on both listeners).
pub fn routes() -> Routes<Shared> {
    Routes::new()
        .get("/api/beers", list)
        .post("/api/beers", pour)
        .get("/api/beers/{id}", get_one)
        .delete("/api/beers/{id}", delete)
        .get("/sockets/beers", socket)
}

/// The face's routes and its OpenAPI document at `/openapi.json` (and `/docs`), for its own
/// listener.
pub(crate) fn own_routes() -> Routes<Shared> {
    routes().merge(crate::docs_page::routes(crate::api::doc::face(openapi())))
}

/// The face alone, for its own listener.
pub fn router(s: Shared) -> Router {
    let max_body = s.node.config.max_body_bytes;
    let guard = crate::api::guard(&s, crate::auth::Style::Altair);
    own_routes()
        .into_router()
        .fallback(|| async { status(StatusCode::NOT_FOUND, "Not Found") })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(crate::gate::GateLayer(guard))
        .with_state(s)
}

/// A beer as the original shows it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OriginalBeer {
    id: u64,
    /// `half` (100-300 ml), `pint` (300-800) or `stein` (800-1000).
    r#type: String,
    /// Millilitres, as the tap sent them.
    volume: f64,
    timestamp: String,
    #[schema(rename = "tapId")]
    tap_id: i64,
}

/// `{"beer": ...}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OneBeer {
    beer: OriginalBeer,
}

/// `{"beers": [...]}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Beers {
    beers: Vec<OriginalBeer>,
}

/// A pour.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Pour {
    #[schema(rename = "tapId")]
    tap_id: i64,
    /// Millilitres: 100 to 1000 has a glass (a volume without one is a 403).
    volume: f64,
}

/// The original's error shape.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct AltairError {
    /// The HTTP status again.
    status: u16,
    message: String,
}

/// The face's OpenAPI document (its routes are also on the API listener, in its document).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(
            title = "switchyard: the Altair beer-tap face",
            description = "The routes of the Altair beer-tap server, on the API listener and on `--altair-listen`. Errors are `{\"status\", \"message\"}`."
        ),
        paths(list, pour, get_one, delete, socket),
        components(schemas(OriginalBeer, OneBeer, Beers, Pour, AltairError))
    )]
    struct Doc;
    <Doc as utoipa::OpenApi>::openapi()
}

/// A JSON body as the original's Tornado writes a dict: `json.dumps`, then `</` as `<\/`,
/// with its content type.
fn tornado_json(code: StatusCode, v: &Value) -> Response {
    let body = super::pyjson::dumps(v).replace("</", "<\\/");
    (
        code,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn status(code: StatusCode, message: impl Into<String>) -> Response {
    tornado_json(
        code,
        &json!({"status": code.as_u16(), "message": message.into()}),
    )
}

fn bad(message: impl Into<String>) -> Response {
    status(StatusCode::BAD_REQUEST, message)
}

/// The glass of a poured volume, by the core's rule; `None`: no glass (or not a finite number).
fn glass_of(volume: &serde_json::Number) -> Option<&'static str> {
    volume
        .as_f64()
        .filter(|v| v.is_finite())
        .and_then(switchyard_core::beers::glass)
}

/// Errors from the core and the node in the original's shape.
fn refused(e: ApiError) -> Response {
    status(e.status, e.message)
}

/// Pour a beer: every tap connected to `/sockets/beers` hears of it.
#[utoipa::path(post, path = "/api/beers", tag = "altair", request_body = Pour,
    responses((status = 200, body = OneBeer),
        (status = 400, description = "a field is missing or of the wrong type, or the body is not JSON", body = AltairError),
        (status = 401, body = AltairError), (status = 403, description = "no glass type for the volume, or refused (tokens, browser guard)", body = AltairError),
        (status = 413, body = AltairError), (status = 500, body = AltairError), (status = 503, body = AltairError), (status = 504, body = AltairError)))]
async fn pour(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return status(e.status(), format!("body: {}", e.body_text())),
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body: not valid JSON ({e})")),
    };
    let Some(obj) = v.as_object() else {
        return bad("body: must be a JSON object with tapId and volume");
    };
    let tap_id = match obj.get("tapId") {
        None => return bad("tapId: missing; must be an integer"),
        // A number with no fraction (`3.0`) is an integer, as on /v1 and in JSON Schema.
        Some(t) => match t.as_i64().or_else(|| crate::api::whole(t)) {
            Some(t) => t,
            None => return bad(format!("tapId: must be an integer; got {t}")),
        },
    };
    let volume = match obj.get("volume") {
        None => return bad("volume: missing; must be a number of ml"),
        Some(Value::Number(n)) => n,
        Some(other) => return bad(format!("volume: must be a number of ml; got {other}")),
    };
    // The original's 403, decided by the core's own glass rule before anything is proposed.
    if glass_of(volume).is_none() {
        return status(StatusCode::FORBIDDEN, NO_GLASS);
    }
    let volume = volume.to_string();
    let cmd = Command::Beers(BeerCommand::Pour { tap_id, volume });
    match s.node.write(cmd, None).await {
        Ok((Reply::Beers(BeerReply::Poured(b)), _)) => {
            tornado_json(StatusCode::OK, &json!({"beer": b.original_json()}))
        }
        Ok((other, _)) => ApiError::internal(format!("pour answered {other:?}")).into_response(),
        Err(e) => refused(e.into()),
    }
}

/// A positive integer query argument, or the message of the 400.
fn page_arg(q: &BTreeMap<String, String>, name: &str, default: usize) -> Result<usize, String> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{name}: must be a positive integer; got {v:?}")),
    }
}

/// The beers, a page at a time, optionally of one glass type.
#[utoipa::path(get, path = "/api/beers", tag = "altair",
    params(("page" = Option<u64>, Query, minimum = 1), ("page_size" = Option<u64>, Query, minimum = 1),
        ("type" = Option<String>, Query, description = "half, pint or stein")),
    responses((status = 200, body = Beers), (status = 400, body = AltairError),
        (status = 401, body = AltairError), (status = 403, body = AltairError),
        (status = 500, body = AltairError), (status = 503, body = AltairError)))]
async fn list(State(s): State<Shared>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let (page, size) = match (page_arg(&q, "page", 1), page_arg(&q, "page_size", 50)) {
        (Ok(p), Ok(z)) => (p, z),
        (Err(m), _) | (_, Err(m)) => return bad(m),
    };
    if let Err(e) = s.node.linearizable().await {
        return refused(e.into());
    }
    let kind = q.get("type");
    let beers: Vec<Value> = s.node.view.read(|st| {
        st.beers
            .all()
            .filter(|b| kind.is_none_or(|k| &b.glass == k))
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .map(|b| b.original_json())
            .collect()
    });
    tornado_json(StatusCode::OK, &json!({ "beers": beers }))
}

fn not_found(id: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        format!("Beer with id {id} not found"),
    )
}

/// One beer.
#[utoipa::path(get, path = "/api/beers/{id}", tag = "altair", params(("id" = String, Path)),
    responses((status = 200, body = OneBeer), (status = 400, body = AltairError), (status = 404, body = AltairError),
        (status = 401, body = AltairError), (status = 403, body = AltairError),
        (status = 500, body = AltairError), (status = 503, body = AltairError)))]
async fn get_one(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(n) = id.parse::<u64>() else {
        return not_found(&id);
    };
    if let Err(e) = s.node.linearizable().await {
        return refused(e.into());
    }
    match s
        .node
        .view
        .read(|st| st.beers.get(n).map(|b| b.original_json()))
    {
        Some(b) => tornado_json(StatusCode::OK, &json!({ "beer": b })),
        None => not_found(&id),
    }
}

/// Delete a beer: every tap hears of it. Answers an empty page, as the original.
#[utoipa::path(delete, path = "/api/beers/{id}", tag = "altair", params(("id" = String, Path)),
    responses((status = 200, description = "deleted (an empty text/html body)", content_type = "text/html", body = String),
        (status = 400, body = AltairError), (status = 404, body = AltairError),
        (status = 401, body = AltairError), (status = 403, body = AltairError),
        (status = 500, body = AltairError), (status = 503, body = AltairError), (status = 504, body = AltairError)))]
async fn delete(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(n) = id.parse::<u64>() else {
        return not_found(&id);
    };
    match s
        .node
        .write(
            Command::Beers(BeerCommand::Delete {
                id: n,
                announce_missing: true,
            }),
            None,
        )
        .await
    {
        // Tornado's empty answer still names its default type.
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        )
            .into_response(),
        Err(e) => refused(e.into()),
    }
}

/// The taps' WebSocket: announcements as text, and every tenth beer the report as JSON text.
#[utoipa::path(get, path = "/sockets/beers", tag = "altair",
    params(("tapId" = Option<i64>, Query), ("skip_own" = Option<bool>, Query, description = "with tapId: not told of its own pours")),
    responses((status = 101, description = "a WebSocket"),
        (status = 400, description = "not a WebSocket upgrade, or tapId not an integer", body = AltairError),
        (status = 401, body = AltairError), (status = 403, body = AltairError), (status = 426, body = AltairError),
        (status = 500, body = AltairError)))]
async fn socket(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let own = match (q.get("tapId"), q.get("skip_own").map(String::as_str)) {
        (Some(t), Some("true")) => match t.parse::<i64>() {
            Ok(t) => Some(t),
            Err(_) => return bad(format!("tapId: must be an integer; got {t:?}")),
        },
        _ => None,
    };
    ws.on_upgrade(move |socket| tap_session(socket, s, own))
}

async fn tap_session(socket: WebSocket, s: Shared, skip_own: Option<i64>) {
    let cfg = &s.node.config;
    let session = SessionConfig {
        max_lag: cfg.watch_max_lag,
        bookmark_interval: cfg.watch_bookmark_interval,
        send_timeout: cfg.watch_send_timeout,
    };
    let (tx, mut rx) = futures::channel::mpsc::channel::<Message>(64);
    let never = futures::stream::pending::<Result<Message, Infallible>>();
    let feed = tokio::spawn(run_session(
        tx,
        never,
        s.node.view.clone(),
        "beers/".into(),
        None,
        session,
        s.shutdown.clone(),
    ));
    let (mut sink, mut stream) = socket.split();
    'session: loop {
        tokio::select! {
            m = rx.next() => {
                let Some(Message::Text(t)) = m else { break };
                let event = match serde_json::from_str::<WatchMessage>(t.as_str()) {
                    Ok(WatchMessage::Event { event, .. }) => event,
                    Ok(WatchMessage::Error { .. }) => break,
                    _ => continue,
                };
                let own = skip_own.is_some() && event["tap_id"].as_i64() == skip_own;
                let mut out = Vec::new();
                if let (false, Some(n)) = (own, event["notification"].as_str()) {
                    out.push(n.to_string());
                }
                if let Some(r) = event["report"].as_str() {
                    out.push(r.to_string());
                }
                for text in out {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break 'session;
                    }
                }
            }
            c = stream.next() => match c {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    feed.abort();
}
