//! Peer RPC: openraft's messages as JSON over HTTP on the peer listener.
//!
//! [`PeerNetwork`] is the client side (one reqwest client shared by every link);
//! [`peer_router`] serves the other side by handing each message to the local Raft node.

use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openraft::OptionalSend;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_store::{NodeAddr, Raft, TypeConfig};

use crate::node::{LeaderRequest, Node};

type C = TypeConfig;

/// Creates links to peers.
#[derive(Clone)]
pub struct PeerNetwork {
    client: reqwest::Client,
}

/// The header every peer request carries: the data format of the node sending it. Log
/// entries and snapshots cross it, so two nodes of different formats must not talk.
pub const FORMAT_HEADER: &str = "x-switchyard-format";

/// An HTTP client for peer requests: no proxy, and the sender's format on every request.
pub fn peer_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        FORMAT_HEADER,
        reqwest::header::HeaderValue::from(switchyard_store::FORMAT),
    );
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .expect("a plain HTTP client always builds")
}

impl PeerNetwork {
    pub fn new() -> Self {
        Self {
            client: peer_client(),
        }
    }
}

impl Default for PeerNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl RaftNetworkFactory<C> for PeerNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, _target: u64, node: &NodeAddr) -> Self::Network {
        PeerLink {
            base: format!("http://{}/raft", node.peer),
            client: self.client.clone(),
        }
    }
}

/// A link to one peer.
pub struct PeerLink {
    base: String,
    client: reqwest::Client,
}

impl PeerLink {
    async fn call<Req, Resp>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<C>>
    where
        Req: Serialize,
        Result<Resp, RaftError<C>>: DeserializeOwned,
    {
        let url = format!("{}/{path}", self.base);
        let resp = self
            .client
            .post(&url)
            .json(req)
            .timeout(option.soft_ttl())
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "HTTP {status} from {url}: {text}"
            ))));
        }
        let res: Result<Resp, RaftError<C>> =
            resp.json().await.map_err(|e| NetworkError::new(&e))?;
        res.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetworkV2<C> for PeerLink {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.call("append", &req, &option).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("vote", &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let req = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        tokio::pin!(cancel);
        tokio::select! {
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            res = self.call("snapshot", &req, &option) => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.call("transfer-leader", &req, &option).await
    }
}

/// Routes of the peer listener: openraft's messages, and `/raft/leader`, where other nodes
/// hand the leader the requests only it can carry out (forwarded writes, read index,
/// membership changes).
pub fn peer_router(node: Arc<Node>) -> Router {
    let leader = Router::new()
        .route("/raft/leader", post(leader_request))
        .with_state(node.clone());
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/transfer-leader", post(transfer_leader))
        .with_state(node.raft.clone())
        .merge(leader)
        .layer(axum::middleware::from_fn(same_format))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// Refuse a peer request from a node of another data format (409, naming both).
async fn same_format(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let theirs = req
        .headers()
        .get(FORMAT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if theirs == Some(switchyard_store::FORMAT) {
        return next.run(req).await;
    }
    let theirs = theirs.map_or("no format (an older switchyard)".to_string(), |f| {
        format!("data format {f}")
    });
    let msg = format!(
        "peer runs {theirs}; this node runs data format {}: every member of a cluster must run \
         the same format",
        switchyard_store::FORMAT
    );
    (StatusCode::CONFLICT, msg).into_response()
}

async fn leader_request(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    match parse::<LeaderRequest>(&body) {
        Ok(req) => reply(&node.serve_leader_request(req).await),
        Err(r) => r.into_response(),
    }
}

/// Decode a peer message; a bad one is answered 400 with the reason.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, (StatusCode, String)> {
    serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad peer message: {e}")))
}

fn reply<T: Serialize>(v: &T) -> Response {
    axum::Json(v).into_response()
}

async fn append(State(raft): State<Arc<Raft>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => reply(&raft.append_entries(req).await),
        Err(r) => r.into_response(),
    }
}

async fn vote(State(raft): State<Arc<Raft>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => reply(&raft.vote(req).await),
        Err(r) => r.into_response(),
    }
}

async fn snapshot(State(raft): State<Arc<Raft>>, body: Bytes) -> Response {
    let (vote, meta, data): (VoteOf<C>, _, Vec<u8>) = match parse(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let snapshot = SnapshotOf::<C, Cursor<Vec<u8>>> {
        meta,
        snapshot: Cursor::new(data),
    };
    let res: Result<SnapshotResponse<C>, RaftError<C>> = raft
        .install_full_snapshot(vote, snapshot)
        .await
        .map_err(RaftError::Fatal);
    reply(&res)
}

async fn transfer_leader(State(raft): State<Arc<Raft>>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(req) => {
            let res: Result<TransferLeaderResponse<C>, RaftError<C>> = raft
                .handle_transfer_leader(req)
                .await
                .map_err(RaftError::Fatal);
            reply(&res)
        }
        Err(r) => r.into_response(),
    }
}
