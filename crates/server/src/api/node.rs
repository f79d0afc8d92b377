//! Node routes: health, status, cluster, Prometheus metrics.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use switchyard_types::ErrorCode;
use switchyard_types::{Cluster, ErrorBody, Health, JoinRequest, Status, TransferLeaderRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(status))
        .routes(routes!(cluster))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(transfer_leader))
        .routes(routes!(prometheus))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/v1/health", tag = "node", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// This node: id, role, term, leader, applied index, current and compact revision, members.
#[utoipa::path(get, path = "/v1/status", tag = "node", responses((status = 200, body = Status)))]
async fn status(State(s): State<Shared>) -> Json<Status> {
    Json(s.node.status())
}

/// The cluster as this node sees it; answered by the leader, each member's reachability,
/// last contact, matched log index and lag.
#[utoipa::path(get, path = "/v1/cluster", tag = "node", responses((status = 200, body = Cluster)))]
async fn cluster(State(s): State<Shared>) -> Json<Cluster> {
    Json(s.node.cluster())
}

/// Add a node to the cluster (any member hands this to the leader): it joins as a learner,
/// catches up, then becomes a voter. `switchyard serve --join URL` calls this.
#[utoipa::path(post, path = "/v1/cluster/members", tag = "node", request_body = JoinRequest,
    responses((status = 200, body = Cluster), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn add_member(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Cluster>, ApiError> {
    // Only a holder of the cluster's join token may add a member: a member receives the whole
    // log and votes. The token itself is never sent; the request is signed with it.
    let signature = headers
        .get(crate::peer_auth::HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = s
        .node
        .peer_auth
        .verify("POST", crate::peer_auth::JOIN_PATH, signature, &body)
    {
        let how = "adding a member needs the cluster's join token: `switchyard serve --join URL \
                   --join-token TOKEN` or `switchyard cluster add --join-token TOKEN` (print the \
                   token on a member with `switchyard cluster join-token`)";
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("{e}; {how}"),
        ));
    }
    let m: JoinRequest = super::parse_json(&body)?;
    if m.node_id == 0 {
        return Err(ApiError::invalid("node_id", "must be a positive integer"));
    }
    for (field, v) in [("api", &m.api), ("peer", &m.peer)] {
        if v.parse::<std::net::SocketAddr>().is_err()
            && v.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(ApiError::invalid(
                field,
                format!("must be host:port; got {v:?}"),
            ));
        }
    }
    let addr = switchyard_store::NodeAddr {
        api: m.api,
        peer: m.peer,
    };
    s.node.add_member(m.node_id, addr).await?;
    Ok(cluster(State(s)).await)
}

/// Remove a member (voter or learner); removing a node that is not a member changes nothing.
/// The removed node stops receiving the log; stop its process and delete its data directory
/// before it is added again.
#[utoipa::path(delete, path = "/v1/cluster/members/{node_id}", tag = "node", params(("node_id" = u64, Path)),
    responses((status = 200, body = Cluster), (status = 400, body = ErrorBody), (status = 409, description = "the last voter", body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn remove_member(
    State(s): State<Shared>,
    Path(node_id): Path<String>,
) -> Result<Json<Cluster>, ApiError> {
    let id = node_id
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "node_id",
                format!("must be a positive integer; got {node_id:?}"),
            )
        })?;
    s.node.remove_member(id).await?;
    Ok(cluster(State(s)).await)
}

/// Hand leadership to a voter and wait until it leads.
#[utoipa::path(post, path = "/v1/cluster/leader", tag = "node", request_body = TransferLeaderRequest,
    responses((status = 200, body = Cluster), (status = 400, body = ErrorBody),
        (status = 409, description = "conflict: the node is not a voter of this cluster", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
async fn transfer_leader(
    State(s): State<Shared>,
    Body(r): Body<TransferLeaderRequest>,
) -> Result<Json<Cluster>, ApiError> {
    s.node.transfer_leader(r.node_id).await?;
    Ok(cluster(State(s)).await)
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "node", responses((status = 200, content_type = "text/plain", body = String)))]
async fn prometheus(State(s): State<Shared>) -> impl IntoResponse {
    let st = s.node.status();
    metrics::gauge!("switchyard_raft_term").set(st.term as f64);
    metrics::gauge!("switchyard_raft_applied_index").set(st.applied_index as f64);
    metrics::gauge!("switchyard_raft_is_leader").set(if st.role == "leader" { 1.0 } else { 0.0 });
    metrics::gauge!("switchyard_revision").set(st.revision as f64);
    metrics::gauge!("switchyard_compact_revision").set(st.compact_revision as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
}
