//! `/v1/devices/...` and `/v1/device-types`: timed state machines.

use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_types::ErrorCode;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_core::devices::{DeviceCommand, DeviceReply, validate_name};
use switchyard_core::{Command, Reply};
use switchyard_types::{
    CreateDevice, Device, DeviceCommandRequest, DeviceHistory, DeviceList, DeviceTypeList,
    ErrorBody, Started,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, IdempotencyKey, Shared};

use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, delete))
        .routes(routes!(types))
        .routes(routes!(command))
        .routes(routes!(abort))
        .routes(routes!(reset))
        .routes(routes!(history))
}

/// Longest a `wait` may be asked to wait, in seconds.
const MAX_WAIT_SECONDS: f64 = 3600.0;
/// Extra wait beyond the transition's due time when `timeout` is not given.
const WAIT_SLACK: Duration = Duration::from_secs(30);

async fn run(
    s: &Shared,
    cmd: DeviceCommand,
    key: Option<String>,
) -> Result<(DeviceReply, u64), ApiError> {
    match s.node.write(Command::Devices(cmd), key).await? {
        (Reply::Devices(r), rev) => Ok((*r, rev)),
        (other, _) => Err(ApiError::internal(format!(
            "device command answered {other:?}"
        ))),
    }
}

fn device(r: DeviceReply) -> Result<Json<Device>, ApiError> {
    match r {
        DeviceReply::Device(d) => Ok(Json(d)),
        DeviceReply::Started(st) => Ok(Json(st.device)),
        DeviceReply::Deleted => Err(ApiError::internal("expected a device")),
    }
}

/// Create a device of a known type (`GET /v1/device-types`; another is 404).
#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = CreateDevice,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Device), (status = 400, body = ErrorBody),
        (status = 404, description = "not_found: no device type of that name (`details.field` is `type`)", body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn create(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<CreateDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    validate_name(&b.name)?;
    let types = &s.node.config.device_types;
    // Which types exist is the server's configuration, not the request's form: 404.
    let Some(def) = types.get(&b.type_name) else {
        return Err(ApiError::not_found(format!(
            "no device type {:?}; types: {}",
            b.type_name,
            types.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .with_details(serde_json::json!({"field": "type"})));
    };
    let cmd = DeviceCommand::Create {
        name: b.name,
        def: def.clone(),
    };
    let (r, _) = run(&s, cmd, key).await?;
    Ok((StatusCode::CREATED, device(r)?))
}

/// Every device.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", params(("consistency" = Option<String>, Query, description = "linearizable (default) or stale")), responses((status = 200, body = DeviceList)))]
async fn list(
    State(s): State<Shared>,
    consistency: Consistency,
) -> Result<Json<DeviceList>, ApiError> {
    consistency.ready(&s.node).await?;
    Ok(Json(DeviceList {
        devices: s.node.view.read(|st| st.devices.list()),
    }))
}

fn lookup(s: &Shared, name: &str) -> Result<Device, ApiError> {
    s.node
        .view
        .read(|st| st.devices.get(name))
        .ok_or_else(|| ApiError::not_found(format!("device {name:?} does not exist")))
}

/// One device: state, attributes, status, the transition in flight, revision.
#[utoipa::path(get, path = "/v1/devices/{name}", tag = "devices", params(("name" = String, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(name): Path<String>,
    consistency: Consistency,
) -> Result<Json<Device>, ApiError> {
    validate_name(&name)?;
    consistency.ready(&s.node).await?;
    lookup(&s, &name).map(Json)
}

/// Delete a device (refused with 409 `busy` while a transition is in flight).
#[utoipa::path(delete, path = "/v1/devices/{name}", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, description = "{\"name\": ..., \"deleted\": true}"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(
    State(s): State<Shared>,
    Path(name): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Json<serde_json::Value>, ApiError> {
    validate_name(&name)?;
    run(&s, DeviceCommand::Delete { name: name.clone() }, key).await?;
    Ok(Json(json!({"name": name, "deleted": true})))
}

/// The device types: built-in `switch` and `mv`, and those loaded from `--device-types` files,
/// each as its TOML file writes it.
#[utoipa::path(get, path = "/v1/device-types", tag = "devices",
    responses((status = 200, body = DeviceTypeList)))]
async fn types(State(s): State<Shared>) -> Json<DeviceTypeList> {
    let types = s
        .node
        .config
        .device_types
        .values()
        .map(|t| t.file())
        .collect();
    Json(DeviceTypeList { types })
}

/// Run a command of the device's type. Without `wait`: 202 with the transition (200 with the
/// device when the command is a no-op). With `wait`: 200 with the device once the transition
/// has ended, or 504 `timeout` while it still runs.
#[utoipa::path(post, path = "/v1/devices/{name}/commands/{command}", tag = "devices",
    request_body(content = Option<DeviceCommandRequest>),
    params(("name" = String, Path), ("command" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = Started), (status = 200, body = Device), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "busy or not_allowed", body = ErrorBody),
        (status = 504, body = ErrorBody)))]
async fn command(
    State(s): State<Shared>,
    Path((name, command)): Path<(String, String)>,
    IdempotencyKey(key): IdempotencyKey,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // The body is optional: empty means every field at its default.
    // `null` reads as no body, as the document's optional body allows.
    let req = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        DeviceCommandRequest::default()
    } else {
        super::json_content_type(&headers)?;
        super::parse_json(&body)?
    };
    run_command(&s, &name, &command, req, key).await
}

/// Shared by the /v1 route and the compatibility faces.
pub async fn run_command(
    s: &Shared,
    name: &str,
    command: &str,
    req: DeviceCommandRequest,
    key: Option<String>,
) -> Result<Response, ApiError> {
    validate_name(name)?;
    let duration_ms = match req.duration {
        Some(d) if !(d.is_finite() && d >= 0.0) => {
            return Err(ApiError::invalid(
                "duration",
                "must be a non-negative number of seconds",
            ));
        }
        Some(d) => Some((d * 1000.0).round().min(i64::MAX as f64) as i64),
        None => None,
    };
    let timeout = match req.timeout {
        Some(t) if !(t.is_finite() && t > 0.0 && t <= MAX_WAIT_SECONDS) => {
            return Err(ApiError::invalid(
                "timeout",
                format!("must be more than 0 and at most {MAX_WAIT_SECONDS} seconds"),
            ));
        }
        t => t.map(Duration::from_secs_f64),
    };
    // The durations against the command's range, also where it would be a no-op (an unknown
    // device or command is left to apply's 404).
    let def = s.node.view.read(|st| {
        st.devices
            .def(name)
            .and_then(|d| d.commands.get(command).cloned())
    });
    if let Some(def) = def {
        let args = req.args.clone().unwrap_or(serde_json::Value::Null);
        switchyard_core::devices::check_request(&def, req.duration, &args)?;
    }
    let cmd = DeviceCommand::Run {
        name: name.to_string(),
        command: command.to_string(),
        duration_ms,
        args_json: req.args.as_ref().map(|a| a.to_string()),
    };
    match run(s, cmd, key).await?.0 {
        DeviceReply::Started(st) if req.wait => {
            let due_ms = s
                .node
                .view
                .read(|v| v.devices.due_ms(name))
                .unwrap_or_else(|| s.node.now_ms());
            let until_due = Duration::from_millis((due_ms - s.node.now_ms()).max(0) as u64);
            let limit = timeout.unwrap_or(until_due + WAIT_SLACK);
            let d = wait_done(s, name, st.transition.id, limit).await?;
            Ok(Json(d).into_response())
        }
        DeviceReply::Started(st) => Ok((StatusCode::ACCEPTED, Json(st)).into_response()),
        other => Ok(device(other)?.into_response()),
    }
}

/// Wait, driven by applied-revision changes, until transition `id` is no longer in flight.
pub async fn wait_done(
    s: &Shared,
    name: &str,
    id: u64,
    limit: Duration,
) -> Result<Device, ApiError> {
    let view = &s.node.view;
    let mut changes = view.subscribe();
    let done = async {
        loop {
            match view.read(|st| st.devices.get(name)) {
                None => return Err(ApiError::not_found(format!("device {name:?} was deleted"))),
                Some(d) if d.transition.as_ref().is_none_or(|t| t.id != id) => return Ok(d),
                Some(_) => {}
            }
            if changes.changed().await.is_err() {
                return Err(ApiError::unavailable("the node is shutting down", None));
            }
        }
    };
    match tokio::time::timeout(limit, done).await {
        Ok(r) => r,
        Err(_) => {
            let d = lookup(s, name)?;
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorCode::Timeout,
                format!("transition {id} on {name:?} still running after {limit:?}; it goes on"),
            )
            .with_details(json!({"transition": d.transition})))
        }
    }
}

/// Abort the transition in flight: the device goes back to where it was (or where the type's
/// `[abort]` says).
#[utoipa::path(post, path = "/v1/devices/{name}/abort", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody), (status = 409, description = "not_allowed: nothing in flight", body = ErrorBody)))]
async fn abort(
    State(s): State<Shared>,
    Path(name): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Json<Device>, ApiError> {
    validate_name(&name)?;
    device(run(&s, DeviceCommand::Abort { name }, key).await?.0)
}

/// Back to the type's initial attributes, aborting anything in flight (for test set-up).
#[utoipa::path(post, path = "/v1/devices/{name}/reset", tag = "devices", params(("name" = String, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
async fn reset(
    State(s): State<Shared>,
    Path(name): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Json<Device>, ApiError> {
    validate_name(&name)?;
    device(run(&s, DeviceCommand::Reset { name }, key).await?.0)
}

/// Finished transitions, newest first; `limit` (1 to 1000, default 100) per page, `before` an
/// id from `next_before` for the next page.
#[utoipa::path(get, path = "/v1/devices/{name}/history", tag = "devices",
    params(("name" = String, Path), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000), ("before" = Option<u64>, Query), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = DeviceHistory), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn history(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<DeviceHistory>, ApiError> {
    validate_name(&name)?;
    let mut limit = 100usize;
    let mut before = u64::MAX;
    for (k, v) in &q {
        match k.as_str() {
            "limit" => limit = super::parse_limit(v, 1000)?,
            "before" => {
                before = v.parse().map_err(|_| {
                    ApiError::invalid("before", format!("must be a transition id; got {v:?}"))
                })?
            }
            "consistency" => {}
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown query parameter; allowed: limit, before, consistency",
                ));
            }
        }
    }
    Consistency::from_query(&q)?.ready(&s.node).await?;
    let all = s
        .node
        .view
        .read(|st| st.devices.history(&name))
        .ok_or_else(|| ApiError::not_found(format!("device {name:?} does not exist")))?;
    let page: Vec<_> = all
        .into_iter()
        .rev()
        .filter(|t| t.id < before)
        .take(limit + 1)
        .collect();
    let next_before = (page.len() > limit).then(|| page[limit - 1].id);
    Ok(Json(DeviceHistory {
        transitions: page.into_iter().take(limit).collect(),
        next_before,
    }))
}
