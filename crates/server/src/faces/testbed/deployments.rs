//! Deployments in the original's shapes: list, create, read, reset (`PUT`), delete, the
//! orchestrator's state document, actions, the log index and log files.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_core::deployments::{
    ActionRun, Deployment, DeploymentCommand, DeploymentReply, Spec, State as DeployState,
};
use switchyard_types::rfc3339;

use super::original::{self, command_for_action};
use super::{
    Answer, Pretty, Refusal, body, error, json_answer, linearizable, lookup, refused, run,
};
use crate::api::Shared;
use crate::error::ApiError;

/// The command the original would name for an action record: the request's `command` when
/// it came through this face, else [`command_for_action`].
pub(super) fn command_of(run: &ActionRun) -> Value {
    if let [one] = run.args.as_slice()
        && let Ok(Value::Object(req)) = serde_json::from_str::<Value>(one)
        && let Some(command) = req.get("command")
    {
        return command.clone();
    }
    command_for_action(&run.action, &run.args)
}

/// The command a failed deployment names: the one a reset gave (kept whole), else the failed
/// action's last run's.
fn failed_command(d: &Deployment) -> Value {
    let action = d.failed_action.clone().unwrap_or_default();
    if action.starts_with('{')
        && let Ok(command) = serde_json::from_str::<Value>(&action)
    {
        return command;
    }
    d.history
        .iter()
        .rev()
        .find(|r| r.action == action)
        .map(command_of)
        .unwrap_or_else(|| command_for_action(&action, &[]))
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

pub(super) async fn list(State(s): State<Shared>) -> Answer {
    linearizable(&s).await?;
    let all: Map<String, Value> = s.node.view.read(|st| {
        st.deployments
            .iter()
            .map(|d| (d.spec.name.clone(), view(d)))
            .collect()
    });
    Ok(axum::Json(json!({ "deployments": all })).into_response())
}

pub(super) async fn active(State(s): State<Shared>) -> Answer {
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

pub(super) async fn get_one(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
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

pub(super) async fn create(State(s): State<Shared>, bytes: Bytes) -> Answer {
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

/// The original's `DeploymentState`: `"up"`, `"down"` or `{"failed": COMMAND}` (`"running"`
/// only comes from an action here), with what `failed_action` keeps of the command: its
/// action's name when the name alone reads back as the same command, else the command whole.
fn parse_state(v: &Value) -> Result<(DeployState, Option<String>), Refusal> {
    let bad = |why: String| error(StatusCode::BAD_REQUEST, why);
    let allowed =
        "must be \"up\", \"down\" or {\"failed\": COMMAND} (\"running\" comes from an action)";
    match v {
        Value::String(s) => match s.as_str() {
            "up" => Ok((DeployState::Up, None)),
            "down" => Ok((DeployState::Down, None)),
            _ => Err(bad(format!("state: {allowed}; got {v}"))),
        },
        Value::Object(m) if m.len() == 1 && m.contains_key("failed") => {
            let command = parse_command("state.failed", &m["failed"])?;
            let action = original::action_name(&command);
            let canonical = serde_json::to_value(&command).expect("a command serialises");
            let kept = if command_for_action(action, &[]) == canonical {
                action.to_string()
            } else {
                canonical.to_string()
            };
            Ok((DeployState::Failed, Some(kept)))
        }
        _ => Err(bad(format!("state: {allowed}; got {v}"))),
    }
}

/// `value` as the original's `DeploymentCommand`, or a 400 naming the field under `at`.
pub(super) fn parse_command(
    at: &str,
    value: &Value,
) -> Result<original::DeploymentCommand, Refusal> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { at.to_string() } else { format!("{at}.{path}") };
        error(
            StatusCode::BAD_REQUEST,
            format!(
                "{field}: {}; a command is one of the original's: \"down\", \
                 {{\"up\": {{\"up_cmd\": {{\"provision\", \"rerun_scripts\", \"reapply_acl\"}}}}}}, \
                 \"generate_artefacts\", \"clear_artefacts\", {{\"snapshot\": {{\"snapshot_cmd\": ...}}}}, \
                 {{\"testbed_snapshot\": {{\"snapshot_guests\"}}}}, {{\"exec\": ...}}, \
                 {{\"analysis_tool\": ...}}, \"list_cloud_images\"",
                e.into_inner()
            ),
        )
    })
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
pub(super) async fn put(State(s): State<Shared>, Path(name): Path<String>, bytes: Bytes) -> Answer {
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

pub(super) async fn delete(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
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

pub(super) async fn get_document(
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

pub(super) async fn post_document(
    State(s): State<Shared>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
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

/// Start the action of the original's `command` on deployment `name`, as the original's
/// orchestrator would run it: the request is the action's one argument, and its success leaves
/// the state the original's rule names. Answers the action's uuid and job.
pub(super) async fn start(
    s: &Shared,
    name: String,
    command: &original::DeploymentCommand,
    generate_artefacts: bool,
) -> Result<(String, u64), Refusal> {
    let request = json!({"command": command, "generate_artefacts": generate_artefacts});
    let cmd = DeploymentCommand::ActLeaving {
        name,
        action: original::action_name(command).to_string(),
        args: vec![request.to_string()],
        retention_ms: s.node.config.job_retention_ms(),
        on_success: original::leaves(command),
    };
    match run(s, cmd).await? {
        DeploymentReply::Started { action_id, job_id } => Ok((action_id, job_id)),
        other => Err(refused(ApiError::internal(format!(
            "action answered {other:?}"
        )))),
    }
}

pub(super) async fn action(
    State(s): State<Shared>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let b: ActionBody = body(&bytes)?;
    let command = parse_command("command", &b.command)?;
    let (action_id, _) = start(&s, name, &command, b.generate_artefacts).await?;
    Ok(action_id.into_response())
}

/// `<iso-date-time>-<name>.log`, the original's log file name.
pub(super) fn log_file(d: &Deployment, r: &ActionRun) -> String {
    format!("{}-{}.log", rfc3339(r.started_ms), d.spec.name)
}

pub(super) fn runs(d: &Deployment) -> impl Iterator<Item = &ActionRun> {
    d.history.iter().chain(d.current.iter())
}

pub(super) async fn log_index(State(s): State<Shared>, Path(name): Path<String>) -> Answer {
    linearizable(&s).await?;
    let d = lookup(&s, &name)?;
    let logs: Map<String, Value> = runs(&d)
        .map(|r| {
            let entry = json!({
                "log_path": format!("/api/orchestration/logs/{}", log_file(&d, r)),
                "error_code": r.exit_code,
                // Only once ended: while it runs, `end_state` holds what a success will leave.
                "end_state": r
                    .finished_ms
                    .and(r.end_state)
                    .map(|st| state_value(st, || command_of(r))),
                "execution_time": rfc3339(r.started_ms),
            });
            (r.action_id.clone(), entry)
        })
        .collect();
    Ok(axum::Json(json!({ "logs": logs })).into_response())
}

/// The job running (or that ran) the action with this uuid.
pub(super) fn job_of(s: &Shared, uuid: &str) -> Result<u64, Refusal> {
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

pub(super) async fn log_text(State(s): State<Shared>, Path(file): Path<String>) -> Answer {
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
