//! Node routes: health, status, cluster, Prometheus metrics.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use openraft::async_runtime::watch::WatchReceiver;
use switchyard_types::{Cluster, Health, Status};

use super::Shared;
use crate::node::members;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/cluster", get(cluster))
        .route("/metrics", get(prometheus))
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn status(State(s): State<Shared>) -> Json<Status> {
    Json(s.node.status())
}

async fn cluster(State(s): State<Shared>) -> Json<Cluster> {
    let m = s.node.raft.metrics().borrow_watched().clone();
    Json(Cluster {
        leader: m.current_leader,
        members: members(&m.membership_config),
    })
}

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
