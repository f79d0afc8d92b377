//! Node routes: health, status, cluster, Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use openraft::async_runtime::watch::WatchReceiver;
use switchyard_types::{Cluster, Health, Status};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Shared;
use crate::node::members;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(status))
        .routes(routes!(cluster))
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

/// The cluster as this node sees it.
#[utoipa::path(get, path = "/v1/cluster", tag = "node", responses((status = 200, body = Cluster)))]
async fn cluster(State(s): State<Shared>) -> Json<Cluster> {
    let m = s.node.raft.metrics().borrow_watched().clone();
    Json(Cluster {
        leader: m.current_leader,
        members: members(&m.membership_config),
    })
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
