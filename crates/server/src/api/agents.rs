//! `/v1/agents/...`: the live inventory of the hosts that run jobs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use switchyard_core::agents::{AgentCommand, AgentInfo, AgentReply};
use switchyard_core::jobs::validate_name;
use switchyard_core::{Command, Reply};
use switchyard_types::{
    Agent, AgentHeartbeat, AgentHeartbeatReply, AgentJoin, AgentList, ErrorBody,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(join, list))
        .routes(routes!(get_one, remove))
        .routes(routes!(heartbeat))
        .routes(routes!(cluster_config))
}

/// The cluster configuration document (seed 003's `kvm-compose-config.json`): every live
/// agent's host document under `testbed_host_ssh_config`, keyed by agent id.
#[utoipa::path(get, path = "/v1/agents/config", tag = "agents",
    params(("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, description = "`{\"testbed_host_ssh_config\": {AGENT_ID: HOST_DOCUMENT}}`")))]
async fn cluster_config(
    State(s): State<Shared>,
    consistency: Consistency,
) -> Result<Json<serde_json::Value>, ApiError> {
    consistency.ready(&s.node).await?;
    let hosts = s.node.view.read(crate::cluster_config::hosts);
    Ok(Json(crate::cluster_config::document(None, hosts)))
}

pub(crate) async fn run(s: &Shared, cmd: AgentCommand) -> Result<AgentReply, ApiError> {
    switchyard_core::agents::validate(&cmd)?;
    match s.node.write(Command::Agents(cmd), None).await? {
        (Reply::Agents(r), _) => Ok(r),
        (other, _) => Err(ApiError::internal(format!(
            "agents command answered {other:?}"
        ))),
    }
}

/// Join (or join again) with host facts; then heartbeat at least every `ttl` seconds.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentJoin,
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody)))]
async fn join(State(s): State<Shared>, Body(b): Body<AgentJoin>) -> Result<Json<Agent>, ApiError> {
    if !(b.host.is_object() || b.host.is_null()) {
        return Err(ApiError::invalid("host", "must be a JSON object"));
    }
    let info = AgentInfo {
        id: b.id,
        hostname: b.hostname,
        cpus: b.cpus,
        memory_bytes: b.memory_bytes,
        labels: b.labels,
        version: b.version,
        queues: b.queues,
        host_json: if b.host.is_null() {
            "{}".into()
        } else {
            b.host.to_string()
        },
        ttl_s: b.ttl,
        url: b.url,
    };
    match run(&s, AgentCommand::Join(info)).await? {
        AgentReply::Agent { agent, running } => Ok(Json(agent.view(running))),
        other => Err(ApiError::internal(format!("join answered {other:?}"))),
    }
}

/// Every agent, alive or lost.
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    params(("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = AgentList)))]
async fn list(
    State(s): State<Shared>,
    consistency: Consistency,
) -> Result<Json<AgentList>, ApiError> {
    consistency.ready(&s.node).await?;
    let agents = s.node.view.read(|st| {
        st.agents
            .iter()
            .map(|a| a.view(st.jobs.held_by(&a.info.id)))
            .collect()
    });
    Ok(Json(AgentList { agents }))
}

/// One agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    consistency: Consistency,
) -> Result<Json<Agent>, ApiError> {
    validate_name("id", &id)?;
    consistency.ready(&s.node).await?;
    s.node
        .view
        .read(|st| {
            st.agents
                .get(&id)
                .map(|a| a.view(st.jobs.held_by(&a.info.id)))
        })
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("agent {id:?} is not known")))
}

/// The agent left (or is forgotten): the leases it still holds end now, as if expired.
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove(State(s): State<Shared>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    run(&s, AgentCommand::Remove { id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Alive, and so are these leases: each current one is extended. The answer lists jobs to
/// cancel and leases that are no longer this agent's. 404: join again.
#[utoipa::path(post, path = "/v1/agents/{id}/heartbeat", tag = "agents", request_body = AgentHeartbeat,
    params(("id" = String, Path)),
    responses((status = 200, body = AgentHeartbeatReply), (status = 404, body = ErrorBody)))]
async fn heartbeat(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Body(b): Body<AgentHeartbeat>,
) -> Result<Json<AgentHeartbeatReply>, ApiError> {
    let leases = b.leases.iter().map(|l| (l.job, l.token)).collect();
    match run(&s, AgentCommand::Heartbeat { id, leases }).await? {
        AgentReply::Heartbeat { cancel, stale } => Ok(Json(AgentHeartbeatReply { cancel, stale })),
        other => Err(ApiError::internal(format!("heartbeat answered {other:?}"))),
    }
}
