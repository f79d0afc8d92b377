//! `/v1/runs/...`: test matrices fanned out as jobs, with live statistics (seed 004).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use switchyard_core::runs::{self, FunkytownFile, RunCommand, RunReply, RunSpec};
use switchyard_core::{Command, Reply};
use switchyard_types::{
    CreateRun, ErrorBody, ExcludedCells, JobSpec, Run, RunCells, RunCreated, RunList,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, IdempotencyKey, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get_one))
        .routes(routes!(cancel))
        .routes(routes!(cells))
}

/// The original funkytown worker's command.
pub fn funkytown_command() -> Vec<String> {
    [
        "npx",
        "playwright",
        "test",
        "--project={viewport}-{browser}",
        "{spec}",
    ]
    .map(String::from)
    .to_vec()
}

fn run_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid("id", format!("must be a run id (a number); got {raw:?}")))
}

/// The cells and the run spec of a create body, expanded and checked; nothing is stored.
pub fn expand(s: &Shared, b: CreateRun) -> Result<RunSpec, ApiError> {
    let max = s.node.config.run_max_cells;
    let (cells, excluded, command) = match (b.matrix, b.funkytown) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "funkytown",
                "give either matrix or funkytown, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "matrix",
                "missing: give a matrix ({\"dimension\": [values]}) or funkytown's spec file",
            ));
        }
        (Some(m), None) => {
            let mut matrix = Vec::with_capacity(m.len());
            for (dim, values) in m {
                let values: Vec<String> = serde_json::from_value(values).map_err(|_| {
                    ApiError::invalid(&format!("matrix.{dim}"), "must be a list of strings")
                })?;
                matrix.push((dim, values));
            }
            let exclude = b.exclude.unwrap_or_default();
            let (cells, excluded) = runs::expand_matrix(&matrix, &exclude, max)?;
            let command = b.command.ok_or_else(|| {
                ApiError::invalid(
                    "command",
                    "missing: the argv template of each cell, e.g. [\"runner\", \"{spec}\"]",
                )
            })?;
            (cells, excluded, command)
        }
        (None, Some(f)) => {
            let de = serde_path_to_error::deserialize::<_, FunkytownFile>(f);
            let file = de.map_err(|e| {
                ApiError::invalid(&format!("funkytown.{}", e.path()), e.into_inner())
            })?;
            let skip = b.exclude.unwrap_or_else(runs::funkytown_default_skip);
            let (cells, excluded) = runs::expand_funkytown(&file, &skip, max)?;
            (cells, excluded, b.command.unwrap_or_else(funkytown_command))
        }
    };
    if command.is_empty() {
        return Err(ApiError::invalid(
            "command",
            "must be a non-empty argv template",
        ));
    }
    if let Some(t) = b.timeout
        && !(1..=7 * 86_400).contains(&t)
    {
        return Err(ApiError::invalid(
            "timeout",
            "must be 1 to 604800 seconds, or absent",
        ));
    }
    let job = JobSpec {
        command,
        queue: b.queue,
        timeout: b.timeout,
        max_attempts: b.max_attempts,
        lease_ttl: 30,
        env: b.env,
        labels: b.labels,
        priority: b.priority,
        cwd: b.cwd,
    };
    // The template itself must be a valid job (each rendered cell is checked again in the core).
    switchyard_core::jobs::validate_spec(&job, "")?;
    Ok(RunSpec {
        name: b.name.unwrap_or_default(),
        cells,
        excluded,
        job,
        retention_ms: s.node.config.run_retention.as_millis() as i64,
        keep: s.node.config.run_keep,
    })
}

/// Create a run: every valid cell of the matrix becomes a job, all queued in one command.
/// Besides the body's schema: each `exclude` rule names dimensions of the matrix, at least one
/// cell is left, and the cells (before exclusions: four times) are at most the server's
/// `run_max_cells` (400 naming the field otherwise).
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = CreateRun,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = RunCreated),
        (status = 400, description = "invalid: a bad field, an exclude rule naming no dimension, no cell left, or too many cells", body = ErrorBody)))]
async fn create(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<CreateRun>,
) -> Result<(StatusCode, Json<RunCreated>), ApiError> {
    let spec = expand(&s, b)?;
    let excluded_by: Vec<ExcludedCells> = spec
        .excluded
        .iter()
        .map(|e| ExcludedCells {
            rule: e.rule.clone(),
            cells: e.cells,
        })
        .collect();
    let cmd = RunCommand::Create(Box::new(spec));
    runs::validate(&cmd)?;
    match s.node.write(Command::Runs(cmd), key).await? {
        (Reply::Runs(RunReply::Created { id, cells }), _) => Ok((
            StatusCode::CREATED,
            Json(RunCreated {
                id,
                cells,
                excluded: excluded_by.iter().map(|e| e.cells).sum(),
                excluded_by,
            }),
        )),
        (other, _) => Err(ApiError::internal(format!("create answered {other:?}"))),
    }
}

/// Every run kept, newest first, with its statistics.
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    params(("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = RunList)))]
async fn list(
    State(s): State<Shared>,
    consistency: Consistency,
) -> Result<Json<RunList>, ApiError> {
    consistency.ready(&s.node).await?;
    let now = s.node.now_ms();
    let runs = s
        .node
        .view
        .read(|st| st.runs.iter().rev().map(|r| r.view(now, false)).collect());
    Ok(Json(RunList { runs }))
}

fn lookup<T>(
    s: &Shared,
    id: u64,
    f: impl FnOnce(&switchyard_core::runs::Run) -> T,
) -> Result<T, ApiError> {
    s.node
        .view
        .read(|st| st.runs.get(id).map(f))
        .ok_or_else(|| ApiError::not_found(format!("run {id} does not exist")))
}

/// One run: counts, duration, throughput, ETA, per-dimension breakdown, funkytown's metadata.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    consistency: Consistency,
) -> Result<Json<Run>, ApiError> {
    consistency.ready(&s.node).await?;
    let now = s.node.now_ms();
    Ok(Json(lookup(&s, run_id(&id)?, |r| r.view(now, true))?))
}

/// Cancel every cell not yet ended (running ones are stopped by their workers).
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs", params(("id" = u64, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Run>, ApiError> {
    let id = run_id(&id)?;
    s.node
        .write(Command::Runs(RunCommand::Cancel { id }), None)
        .await?;
    let now = s.node.now_ms();
    Ok(Json(lookup(&s, id, |r| r.view(now, true))?))
}

/// Every cell with its values, job and status (`?status=failed` keeps the failed ones,
/// `?key=...` one cell).
#[utoipa::path(get, path = "/v1/runs/{id}/cells", tag = "runs",
    params(("id" = u64, Path), ("status" = Option<String>, Query), ("key" = Option<String>, Query), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = RunCells), (status = 404, body = ErrorBody)))]
async fn cells(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<RunCells>, ApiError> {
    for k in q.keys() {
        if !matches!(k.as_str(), "status" | "key" | "consistency" | "token") {
            return Err(ApiError::invalid(
                k,
                "unknown query parameter; allowed: status, key, consistency",
            ));
        }
    }
    if let Some(st) = q.get("status")
        && switchyard_core::jobs::Status::from_name(st).is_none()
    {
        return Err(ApiError::invalid(
            "status",
            "must be queued, running, succeeded, failed, timed_out, cancelled or dead",
        ));
    }
    Consistency::from_query(&q)?.ready(&s.node).await?;
    let id = run_id(&id)?;
    let mut cells = s
        .node
        .view
        .read(|st| st.runs.get(id).map(|r| r.cell_views(&st.jobs)))
        .ok_or_else(|| ApiError::not_found(format!("run {id} does not exist")))?;
    if let Some(st) = q.get("status") {
        cells.retain(|c| &c.status == st);
    }
    if let Some(key) = q.get("key") {
        cells.retain(|c| &c.key == key);
    }
    Ok(Json(RunCells { cells }))
}
