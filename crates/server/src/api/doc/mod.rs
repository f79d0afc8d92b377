//! The API listener's OpenAPI document, completed: the handlers' annotations give each route's
//! own answers; this adds what the shared extractors and layers of every route enforce and
//! answer, from their own definitions, so no route can forget them:
//!
//! - parameters checked by shared extractors: `consistency` ([`Consistency::NAMES`]),
//!   `Idempotency-Key` ([`MAX_KEY_LEN`] visible ASCII characters), names in paths (the
//!   characters and lengths `core` checks), unsigned integers (`uint32`/`uint64` up to their
//!   maximum: a larger number is refused with 400);
//! - error answers, each with the error body: 400 where a route takes parameters or a body,
//!   404 where it names something in its path, 413 and 415 where it takes a body, 401 and 403
//!   (tokens, the browser guard), 503 (no leader, no quorum), 504 for writes, 500;
//! - the routes of the API listener that are not /v1: the Altair face's, the dashboard's,
//!   `/openapi.json` and `/docs`.

mod constraints;

use serde_json::{Map, Value, json};
use switchyard_core::idempotency::MAX_KEY_LEN;

use super::Consistency;

const ERROR: &str = "#/components/schemas/ErrorBody";
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The document with the shared parameters, the shared error answers and the other routes.
pub(crate) fn complete(doc: utoipa::openapi::OpenApi) -> Value {
    /// The messages of the WebSocket routes, which no answer's body names.
    #[derive(utoipa::OpenApi)]
    #[openapi(components(schemas(
        switchyard_types::WatchMessage,
        switchyard_types::WatchRequest
    )))]
    struct Sockets;
    let mut doc = doc
        .merge_from(crate::faces::altair::openapi())
        .merge_from(<Sockets as utoipa::OpenApi>::openapi());
    doc.paths.paths.extend(other_routes().paths.paths);
    let mut v = serde_json::to_value(&doc).expect("the document serialises");
    unsigned(&mut v);
    constraints::schemas(&mut v);
    if let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                parameters(path, op);
                if path == "/v1/deployments/{name}/document" && method == "put" {
                    op["requestBody"] = constraints::document_body();
                }
                if path == "/v1/jobs/{id}/logs" && method == "get" {
                    op["responses"]["200"]["content"]["text/event-stream"]["schema"] =
                        constraints::log_event();
                }
                if path.starts_with("/v1/") || path == "/metrics" {
                    responses(path, method, op);
                }
                describe(op);
            }
        }
    }
    // Kept as JSON: utoipa's model has no place for some keywords used here (`prefixItems`,
    // `propertyNames`, a schema that is any value).
    v
}

/// A queue, deployment or action name, as `jobs::validate_name` checks it.
pub(crate) fn name_schema() -> Value {
    constraints::name()
}

/// An agent id: a name, but not `config` (`GET /v1/agents/config` is the cluster document).
pub(crate) fn agent_id_schema() -> Value {
    let mut s = constraints::name();
    s["pattern"] = json!("^(?!config$)[A-Za-z0-9._-]+$");
    s
}

/// A face's own document as its listener serves it: unsigned integers as in the API's, and
/// every answer described.
pub(crate) fn face(doc: utoipa::openapi::OpenApi) -> std::sync::Arc<str> {
    let mut v = serde_json::to_value(&doc).expect("the document serialises");
    unsigned(&mut v);
    if let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) {
        for op in paths.values_mut().filter_map(Value::as_object_mut) {
            op.values_mut().for_each(describe);
        }
    }
    serde_json::to_string_pretty(&v)
        .expect("the document serialises")
        .into()
}

/// utoipa writes `u32` and `u64` as `int32`/`int64` with a `minimum` of 0 (or the one given);
/// the server reads the whole unsigned range, so say so (a signed format would make `2^63`
/// look invalid).
fn unsigned(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let integer = match o.get("type") {
                Some(Value::String(t)) => t == "integer",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                _ => false,
            };
            if integer && o.get("minimum").and_then(Value::as_u64).is_some() {
                let max = match o.get("format").and_then(Value::as_str) {
                    Some("int64") => Some(("uint64", json!(u64::MAX))),
                    Some("int32") => Some(("uint32", json!(u32::MAX))),
                    _ => None,
                };
                if let Some((format, max)) = max {
                    o.insert("format".into(), json!(format));
                    o.entry("maximum").or_insert(max);
                }
            }
            o.values_mut().for_each(unsigned);
        }
        Value::Array(a) => a.iter_mut().for_each(unsigned),
        _ => {}
    }
}

/// The longest name a path parameter of `path` may hold, for the names `core` checks:
/// accounts and devices 1 to 128 (`bank::validate_id`), queues, agents and deployments 1 to
/// 64 (`jobs::validate_name`).
fn name_len(path: &str, param: &str) -> Option<usize> {
    let short = path.starts_with("/v1/agents/") || path.starts_with("/v1/deployments/");
    let long = path.starts_with("/v1/bank/") || path.starts_with("/v1/devices/");
    match param {
        "id" | "name" if long => Some(switchyard_core::bank::MAX_ID_LEN),
        "id" | "name" if short => Some(64),
        _ => None,
    }
}

fn parameters(path: &str, op: &mut Value) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let place = p["in"].as_str().unwrap_or_default().to_string();
        if let Some(schema) = constraints::parameter(path, &place, &name) {
            p["schema"] = schema;
            continue;
        }
        let schema = match (place.as_str(), name.as_str()) {
            ("query", "consistency") => {
                let names: Vec<&str> = Consistency::NAMES.iter().map(|(n, _)| *n).collect();
                json!({"type": "string", "enum": names})
            }
            ("header", "Idempotency-Key") => json!({
                "type": "string", "minLength": 1, "maxLength": MAX_KEY_LEN, "pattern": "^[!-~]+$"
            }),
            ("path", _) if p["schema"]["type"] == "string" => match name_len(path, &name) {
                Some(max) => json!({
                    "type": "string", "minLength": 1, "maxLength": max,
                    "pattern": "^[A-Za-z0-9._-]+$"
                }),
                None => continue,
            },
            _ => continue,
        };
        p["schema"] = schema;
    }
}

/// Every answer has a description (OpenAPI requires one): the status's reason where the
/// annotation gave none.
fn describe(op: &mut Value) {
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for (status, r) in responses {
        if r.get("description").is_none_or(|d| d == "") {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                .and_then(|s| s.canonical_reason())
                .unwrap_or("answer");
            r["description"] = json!(reason);
        }
    }
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": ERROR}}}})
}

/// The error answers every route of its kind can give, added where its annotation has not
/// described them already.
fn responses(path: &str, method: &str, op: &mut Value) {
    let params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
    let in_path = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
    let body = op.get("requestBody").is_some();
    let write = method != "get";
    let open = path == "/v1/health";
    let mut add: Vec<(&str, &str)> = Vec::new();
    if params || body {
        add.push((
            "400",
            "invalid: a parameter or the body is malformed or out of range (`details.field` names it)",
        ));
    }
    if !open {
        add.push((
            "401",
            "unauthorized: tokens are on and none or an unknown one was given",
        ));
        add.push((
            "403",
            "forbidden: a read-only token for a change, or a browser page of another origin",
        ));
    }
    if in_path {
        add.push(("404", "not_found: nothing of that name or id"));
    }
    let keyed = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
    if keyed {
        add.push((
            "409",
            "conflict: the Idempotency-Key was used for another request",
        ));
    }
    if body {
        add.push(("413", "too_large: the body is over the server's limit"));
        add.push((
            "415",
            "invalid: the body's Content-Type is not application/json",
        ));
    }
    add.push(("500", "internal: the server log has the details"));
    if !open && path != "/metrics" {
        add.push((
            "503",
            "unavailable: no leader or no quorum (`details.leader` names the leader when known)",
        ));
    }
    if write {
        add.push((
            "504",
            "timeout: the outcome is unknown; retry with the same Idempotency-Key",
        ));
    }
    let responses = op
        .as_object_mut()
        .expect("an operation is an object")
        .entry("responses")
        .or_insert_with(|| Value::Object(Map::new()));
    for (status, description) in add {
        let r = responses
            .as_object_mut()
            .expect("responses are an object")
            .entry(status)
            .or_insert_with(|| error(description));
        // An annotation that gave only the body: keep it, and say what it means.
        if r.get("description").is_none_or(|d| d == "") {
            r["description"] = json!(description);
        }
    }
}

/// The routes of the API listener besides /v1 and the Altair face.
fn other_routes() -> utoipa::openapi::OpenApi {
    let v = json!({
        "openapi": "3.1.0",
        "info": {"title": "switchyard", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/": {"get": {
                "tags": ["dashboard"], "operationId": "dashboard",
                "summary": "The dashboard's page.",
                "responses": {"200": {"description": "An HTML page",
                    "content": {"text/html": {"schema": {"type": "string"}}}}}
            }},
            "/ui/{file}": {"get": {
                "tags": ["dashboard"], "operationId": "dashboard_file",
                "summary": "The dashboard's script and style.",
                "parameters": [{"name": "file", "in": "path", "required": true,
                    "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The file", "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}}}},
                    "404": error("not_found: no such file")
                }
            }}
        }
    });
    let mut v = v;
    v["paths"]
        .as_object_mut()
        .expect("paths are an object")
        .extend(crate::docs_page::paths());
    serde_json::from_value(v).expect("the other routes are an OpenAPI document")
}
