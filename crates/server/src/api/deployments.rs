//! `/v1/deployments/...`: deployments whose actions run as jobs (seed 003).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::deployments::{
    DeploymentCommand, DeploymentReply, Spec, State as DeployState,
};
use switchyard_core::jobs::validate_name;
use switchyard_core::{Command, Reply};
use switchyard_types::{
    ActionList, ActionRequest, ActionStarted, CreateDeployment, Deployment, DeploymentList,
    DeploymentStateRequest, ErrorBody,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, IdempotencyKey, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(act))
        .routes(routes!(actions))
        .routes(routes!(set_state))
        .routes(routes!(get_document, put_document))
}

async fn run(
    s: &Shared,
    cmd: DeploymentCommand,
    key: Option<String>,
) -> Result<DeploymentReply, ApiError> {
    switchyard_core::deployments::validate(&cmd)?;
    match s.node.write(Command::Deployments(cmd), key).await? {
        (Reply::Deployments(r), _) => Ok(r),
        (other, _) => Err(ApiError::internal(format!(
            "deployments command answered {other:?}"
        ))),
    }
}

fn lookup(s: &Shared, name: &str) -> Result<switchyard_core::deployments::Deployment, ApiError> {
    validate_name("name", name)?;
    s.node
        .view
        .read(|st| st.deployments.get(name).cloned())
        .ok_or_else(|| ApiError::not_found(format!("deployment {name:?} does not exist")))
}

/// Create a deployment; its action templates override the server's defaults of the same name.
#[utoipa::path(post, path = "/v1/deployments", tag = "deployments", request_body = CreateDeployment,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Deployment), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<CreateDeployment>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    match run(&s, DeploymentCommand::Create(spec(&s, b)?), key).await? {
        DeploymentReply::Deployment(d) => Ok((StatusCode::CREATED, Json(d.view()))),
        other => Err(ApiError::internal(format!("create answered {other:?}"))),
    }
}

/// The spec a create or update body asks for, on top of the server's default templates.
fn spec(s: &Shared, b: CreateDeployment) -> Result<Spec, ApiError> {
    if let Some(t) = b.timeout
        && !(1..=7 * 86_400).contains(&t)
    {
        return Err(ApiError::invalid(
            "timeout",
            "must be 1 to 604800 seconds, or absent",
        ));
    }
    // Its actions' jobs carry these: refused here rather than at each action.
    switchyard_core::jobs::validate_env(&b.env, "")?;
    switchyard_core::jobs::validate_labels(&b.labels, "")?;
    let mut actions = s.node.config.deployment_actions.clone();
    actions.extend(b.actions);
    Ok(Spec {
        name: b.name,
        actions,
        dir: b.dir,
        queue: b.queue,
        labels: b.labels,
        timeout: b.timeout,
        env: b.env,
    })
}

/// Replace a deployment's templates and settings (409 `busy` while an action runs); its state
/// and history stay. The body's `name` must be the one in the path (400 naming `name`
/// otherwise).
#[utoipa::path(put, path = "/v1/deployments/{name}", tag = "deployments", request_body = CreateDeployment,
    params(("name" = String, Path)),
    responses((status = 200, body = Deployment),
        (status = 400, description = "invalid: a bad field, or a `name` other than the path's", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Body(b): Body<CreateDeployment>,
) -> Result<Json<Deployment>, ApiError> {
    if b.name != name {
        return Err(ApiError::invalid(
            "name",
            format!("must match the path ({name:?}); got {:?}", b.name),
        ));
    }
    match run(&s, DeploymentCommand::Update(spec(&s, b)?), None).await? {
        DeploymentReply::Deployment(d) => Ok(Json(d.view())),
        other => Err(ApiError::internal(format!("update answered {other:?}"))),
    }
}

/// Every deployment.
#[utoipa::path(get, path = "/v1/deployments", tag = "deployments",
    params(("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = DeploymentList)))]
async fn list(
    State(s): State<Shared>,
    consistency: Consistency,
) -> Result<Json<DeploymentList>, ApiError> {
    consistency.ready(&s.node).await?;
    let deployments = s
        .node
        .view
        .read(|st| st.deployments.iter().map(|d| d.view()).collect());
    Ok(Json(DeploymentList { deployments }))
}

/// One deployment: state, the action running now, templates.
#[utoipa::path(get, path = "/v1/deployments/{name}", tag = "deployments",
    params(("name" = String, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(name): Path<String>,
    consistency: Consistency,
) -> Result<Json<Deployment>, ApiError> {
    consistency.ready(&s.node).await?;
    Ok(Json(lookup(&s, &name)?.view()))
}

/// Delete a deployment (409 `busy` while an action runs).
#[utoipa::path(delete, path = "/v1/deployments/{name}", tag = "deployments", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete(State(s): State<Shared>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    let cmd = DeploymentCommand::Delete {
        name,
        refuse_up: false,
    };
    run(&s, cmd, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start an action: answers at once (202) with the action id and the job running it, whose
/// log is `GET /v1/jobs/{job_id}/logs`. 409 `busy` while another action runs.
#[utoipa::path(post, path = "/v1/deployments/{name}/actions/{action}", tag = "deployments",
    request_body = ActionRequest,
    params(("name" = String, Path), ("action" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 202, body = ActionStarted), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn act(
    State(s): State<Shared>,
    Path((name, action)): Path<(String, String)>,
    IdempotencyKey(key): IdempotencyKey,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ActionStarted>), ApiError> {
    // The body is optional: no body, no arguments.
    let args = if body.is_empty() {
        Vec::new()
    } else {
        super::parse_json::<ActionRequest>(&body)?.args
    };
    let cmd = DeploymentCommand::Act {
        name,
        action,
        args,
        retention_ms: s.node.config.job_retention_ms(),
    };
    match run(&s, cmd, key).await? {
        DeploymentReply::Started { action_id, job_id } => Ok((
            StatusCode::ACCEPTED,
            Json(ActionStarted { action_id, job_id }),
        )),
        other => Err(ApiError::internal(format!("action answered {other:?}"))),
    }
}

/// Every action of a deployment, oldest first, the running one last.
#[utoipa::path(get, path = "/v1/deployments/{name}/actions", tag = "deployments",
    params(("name" = String, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = ActionList), (status = 404, body = ErrorBody)))]
async fn actions(
    State(s): State<Shared>,
    Path(name): Path<String>,
    consistency: Consistency,
) -> Result<Json<ActionList>, ApiError> {
    consistency.ready(&s.node).await?;
    Ok(Json(ActionList {
        actions: lookup(&s, &name)?.actions(),
    }))
}

/// A state set by hand: `up`, `down` or `failed`.
pub fn parse_state(field: &str, name: &str) -> Result<DeployState, ApiError> {
    match name {
        "up" => Ok(DeployState::Up),
        "down" => Ok(DeployState::Down),
        "failed" => Ok(DeployState::Failed),
        other => Err(ApiError::invalid(
            field,
            format!("must be up, down or failed (running comes from an action); got {other:?}"),
        )),
    }
}

/// Set the state by hand (e.g. reset a failed deployment to `down`); 409 `busy` while an
/// action runs. The folder and templates stay.
#[utoipa::path(put, path = "/v1/deployments/{name}/state", tag = "deployments",
    request_body = DeploymentStateRequest, params(("name" = String, Path)),
    responses((status = 200, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_state(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Body(b): Body<DeploymentStateRequest>,
) -> Result<Json<Deployment>, ApiError> {
    let state = parse_state("state", &b.state)?;
    if state != DeployState::Failed && b.failed_action.is_some() {
        return Err(ApiError::invalid("failed_action", "only with state failed"));
    }
    let dir = lookup(&s, &name)?.spec.dir;
    let cmd = DeploymentCommand::Amend {
        name,
        dir,
        state,
        failed_action: b.failed_action,
    };
    match run(&s, cmd, None).await? {
        DeploymentReply::Deployment(d) => Ok(Json(d.view())),
        other => Err(ApiError::internal(format!("state answered {other:?}"))),
    }
}

/// The orchestrator's state document (seed 003's `{name}-state.json`); 404 until one is stored.
#[utoipa::path(get, path = "/v1/deployments/{name}/document", tag = "deployments",
    params(("name" = String, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, description = "the JSON document as stored"), (status = 404, body = ErrorBody)))]
async fn get_document(
    State(s): State<Shared>,
    Path(name): Path<String>,
    consistency: Consistency,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    consistency.ready(&s.node).await?;
    let doc = lookup(&s, &name)?.document.ok_or_else(|| {
        ApiError::not_found(format!(
            "deployment {name:?} has no state document yet (its orchestrator stores one)"
        ))
    })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc,
    )
        .into_response())
}

/// Store the orchestrator's state document: any JSON value, at most 2 MiB (and within the
/// request body limit, `--max-body-bytes`).
#[utoipa::path(put, path = "/v1/deployments/{name}/document", tag = "deployments",
    request_body(content = String, content_type = "application/json", description = "any JSON document"),
    params(("name" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn put_document(
    State(s): State<Shared>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    store_document(&s, name, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validate `body` as JSON and store it as `name`'s state document.
pub async fn store_document(s: &Shared, name: String, body: &[u8]) -> Result<(), ApiError> {
    validate_name("name", &name)?;
    if body.len() > switchyard_core::deployments::MAX_DOCUMENT {
        return Err(ApiError::invalid(
            "document",
            format!(
                "at most {} bytes; got {}",
                switchyard_core::deployments::MAX_DOCUMENT,
                body.len()
            ),
        ));
    }
    // Parsed whole (not skipped over), so that its nesting is held to serde_json's limit of
    // 128 levels: what is stored can always be read back and shown (`?pretty=true`).
    let document = std::str::from_utf8(body)
        .ok()
        .filter(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "document",
                "must be a JSON document, nested at most 128 levels deep",
            )
        })?;
    run(
        s,
        DeploymentCommand::SetDocument {
            name,
            document: document.to_string(),
        },
        None,
    )
    .await?;
    Ok(())
}
