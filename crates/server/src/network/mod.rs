//! Peer RPC: openraft's messages over HTTP on the peer listener, in postcard (the log's own
//! binary encoding; [`Wire`]).
//!
//! [`PeerNetwork`] is the client side (one reqwest client shared by every link);
//! [`peer_router`] serves the other side by handing each message to the local Raft node.
//! The leader's appends to each follower go over one pipelined WebSocket per replication
//! session ([`stream`]); votes, snapshots, leadership transfers and forwarded requests are one
//! request each.

pub mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchyard_types::ErrorCode;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openraft::OptionalSend;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::base::{BoxFuture, BoxStream};
use openraft::entry::RaftEntry;
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchyard_store::{NodeAddr, SnapshotData, SnapshotWriter, TypeConfig};

use crate::error::ApiError;
use crate::peer_auth::{self, ClusterSecret};

use crate::node::Node;
use switchyard_node::LeaderRequest;

type C = TypeConfig;

/// Creates links to peers.
#[derive(Clone)]
pub struct PeerNetwork {
    client: PeerClient,
}

/// The header every peer request carries: the data format of the node sending it. Log
/// entries and snapshots cross it, so two nodes of different formats must not talk.
pub const FORMAT_HEADER: &str = "x-switchyard-format";

/// The encoding of a Raft message's body, named by its `Content-Type`. Nodes send postcard
/// (the encoding of the log itself: compact, and no float or text conversions of log entries);
/// a receiver also takes JSON, which switchyard before postcard sent, so a cluster can be
/// upgraded one node at a time (followers first: an older node cannot read postcard). The
/// answer is in the request's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Postcard,
    Json,
}

impl Wire {
    pub const POSTCARD_TYPE: &'static str = "application/x-switchyard-postcard";

    fn content_type(self) -> &'static str {
        match self {
            Wire::Postcard => Self::POSTCARD_TYPE,
            Wire::Json => "application/json",
        }
    }

    /// The encoding a request's `Content-Type` names (parameters ignored); `None`: neither.
    fn of(headers: &axum::http::HeaderMap) -> Option<Wire> {
        let ct = headers
            .get(axum::http::header::CONTENT_TYPE)?
            .to_str()
            .ok()?
            .split(';')
            .next()?
            .trim();
        if ct.eq_ignore_ascii_case(Self::POSTCARD_TYPE) {
            Some(Wire::Postcard)
        } else if ct.eq_ignore_ascii_case("application/json") {
            Some(Wire::Json)
        } else {
            None
        }
    }

    fn encode<T: Serialize>(self, v: &T) -> Result<Vec<u8>, String> {
        match self {
            Wire::Postcard => postcard::to_allocvec(v).map_err(|e| e.to_string()),
            Wire::Json => serde_json::to_vec(v).map_err(|e| e.to_string()),
        }
    }

    fn decode<T: DeserializeOwned>(self, body: &[u8]) -> Result<T, String> {
        match self {
            Wire::Postcard => postcard::from_bytes(body).map_err(|e| e.to_string()),
            Wire::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
        }
    }
}

/// Largest snapshot piece in one peer request, by default.
pub const SNAPSHOT_CHUNK: usize = 4 << 20;

/// The peer listener's body limit for a node whose client API takes bodies up to
/// `max_body_bytes`: room for a forwarded write (a command re-encoded as JSON can grow up to
/// about three times) and a snapshot chunk. A sender splits what would not fit.
pub fn peer_body_limit(max_body_bytes: usize) -> usize {
    (16 << 20).max(max_body_bytes.saturating_mul(8))
}

/// The HTTP client of peer requests: no proxy, the sender's format on every request, and every
/// request signed with the cluster secret ([`crate::peer_auth`]).
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    secret: ClusterSecret,
    limit: usize,
    /// Largest snapshot piece per request (at most the limit).
    chunk: usize,
    /// `https` when peers talk mutual TLS.
    scheme: &'static str,
    /// The TLS configuration of streams (HTTP/1.1 only), when peers talk TLS.
    stream_tls: Option<Arc<rustls::ClientConfig>>,
}

impl PeerClient {
    /// `tls`: what this node trusts and presents; `peer_tls`: peers speak TLS.
    pub fn new(
        secret: ClusterSecret,
        limit: usize,
        tls: rustls::ClientConfig,
        peer_tls: bool,
    ) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            FORMAT_HEADER,
            reqwest::header::HeaderValue::from(switchyard_store::FORMAT),
        );
        let stream_tls = peer_tls.then(|| {
            let mut t = tls.clone();
            t.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(t)
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .tls_backend_preconfigured(tls)
            .build()
            .expect("a client with a rustls configuration builds");
        Self {
            http,
            secret,
            limit,
            chunk: SNAPSHOT_CHUNK.min(limit / 2),
            scheme: if peer_tls { "https" } else { "http" },
            stream_tls,
        }
    }

    /// Send snapshots in pieces of at most `bytes` (1 KiB at least).
    pub fn with_snapshot_chunk(mut self, bytes: usize) -> Self {
        self.chunk = bytes.clamp(1024, self.limit / 2);
        self
    }

    /// A signed POST of `body` (in `wire`'s encoding) to `path` on the peer listener at
    /// `peer` (host:port).
    pub fn post(
        &self,
        peer: &str,
        path: &str,
        body: Vec<u8>,
        wire: Wire,
    ) -> reqwest::RequestBuilder {
        let sig = self.secret.sign("POST", path, &body);
        let ct = wire.content_type();
        self.http
            .post(format!("{}://{peer}{path}", self.scheme))
            .header(peer_auth::HEADER, sig)
            .header(reqwest::header::CONTENT_TYPE, ct)
            .body(body)
    }

    /// A signed join request to a member's client API (`POST /v1/cluster/members`).
    pub fn join(
        &self,
        api_base: &str,
        join: &switchyard_types::JoinRequest,
    ) -> reqwest::RequestBuilder {
        let body = serde_json::to_vec(join).expect("a join request serialises");
        let path = peer_auth::JOIN_PATH;
        let sig = self.secret.sign("POST", path, &body);
        self.http
            .post(format!("{}{path}", api_base.trim_end_matches('/')))
            .header(peer_auth::HEADER, sig)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// A plain GET (a member's public status, before it is trusted).
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url)
    }
}

impl PeerNetwork {
    pub fn new(client: PeerClient) -> Self {
        Self { client }
    }
}

impl RaftNetworkFactory<C> for PeerNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, _target: u64, node: &NodeAddr) -> Self::Network {
        PeerLink {
            peer: node.peer.clone(),
            client: self.client.clone(),
            streams: true,
            slot: Default::default(),
        }
    }
}

/// A link to one peer.
pub struct PeerLink {
    peer: String,
    client: PeerClient,
    /// False once the peer answered that it serves no streams (an older switchyard).
    streams: bool,
    /// The append stream kept between sessions.
    slot: stream::Slot,
}

impl PeerLink {
    /// Post a Raft message and decode the answer, within `timeout` (the RPC's soft TTL, or a
    /// snapshot piece's [`piece_timeout`]).
    async fn call<Resp>(
        &self,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RPCError<C>>
    where
        Result<Resp, RaftError<C>>: DeserializeOwned,
    {
        let resp = self
            .client
            .post(&self.peer, path, body, Wire::Postcard)
            .timeout(timeout)
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
                "HTTP {status} from {}{path}: {text}",
                self.peer
            ))));
        }
        let body = resp.bytes().await.map_err(|e| NetworkError::new(&e))?;
        let res: Result<Resp, RaftError<C>> = Wire::Postcard.decode(&body).map_err(|e| {
            NetworkError::from_string(format!("a bad answer from {}{path}: {e}", self.peer))
        })?;
        res.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

/// The body of one snapshot piece: a big-endian `u32` length, that many bytes of
/// [`ChunkHead`] in the request's [`Wire`] encoding, then the piece's bytes.
#[derive(Serialize, serde::Deserialize)]
struct ChunkHead {
    vote: VoteOf<C>,
    meta: openraft::alias::SnapshotMetaOf<C>,
    offset: u64,
    total: u64,
}

fn encode_chunk(wire: Wire, head: &ChunkHead, data: &[u8]) -> Vec<u8> {
    let h = wire.encode(head).expect("a snapshot head serialises");
    let mut out = Vec::with_capacity(4 + h.len() + data.len());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn decode_chunk(wire: Wire, body: &[u8]) -> Result<(ChunkHead, &[u8]), String> {
    let len = body
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("shorter than its 4-byte head length")?;
    let head = body.get(4..4 + len).ok_or("shorter than its head")?;
    let head: ChunkHead = wire.decode(head).map_err(|e| format!("head: {e}"))?;
    Ok((head, &body[4 + len..]))
}

impl RaftNetworkV2<C> for PeerLink {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        mut req: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        // Send as many entries as fit in the receiver's body limit; the rest go next time
        // (openraft takes a partial success and continues from it).
        let all = req.entries.len();
        let mut body = encode(&req)?;
        while body.len() > self.client.limit && req.entries.len() > 1 {
            req.entries.truncate(req.entries.len() / 2);
            let last = req.entries.last().map(|e| e.log_id());
            req.leader_commit = req.leader_commit.min(last);
            body = encode(&req)?;
        }
        let resp: AppendEntriesResponse<C> =
            self.call("/raft/append", body, option.soft_ttl()).await?;
        match resp {
            AppendEntriesResponse::Success if req.entries.len() < all => Ok(
                AppendEntriesResponse::PartialSuccess(req.entries.last().map(|e| e.log_id())),
            ),
            other => Ok(other),
        }
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            if self.streams {
                match self.client.stream(&self.peer, &self.slot).await {
                    Ok(session) => {
                        let (limit, slot) = (self.client.limit, self.slot.clone());
                        return Ok(stream::pipeline(session, limit, slot, input, option));
                    }
                    Err(stream::OpenError::NotServed) => {
                        tracing::info!(
                            peer = self.peer,
                            "the peer serves no append stream (an older switchyard): one \
                             request per append"
                        );
                        self.streams = false;
                    }
                    Err(stream::OpenError::Rpc(e)) => return Err(e),
                }
            }
            openraft::network::stream_append_sequential(self, input, option).await
        })
    }

    async fn vote(
        &mut self,
        req: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("/raft/vote", encode(&req)?, option.soft_ttl())
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        // Each piece is read from the snapshot (a file) as it is sent: the snapshot is never
        // whole in memory here.
        let data = snapshot.snapshot;
        let total = data.len();
        tokio::pin!(cancel);
        let mut offset = 0u64;
        loop {
            let end = (offset + self.client.chunk as u64).min(total);
            let head = ChunkHead {
                vote,
                meta: snapshot.meta.clone(),
                offset,
                total,
            };
            let piece = read_piece(&data, offset, end).await.map_err(|e| {
                StreamingError::Network(NetworkError::from_string(format!(
                    "reading the snapshot to send: {e}"
                )))
            })?;
            let body = encode_chunk(Wire::Postcard, &head, &piece);
            let timeout = piece_timeout(option.soft_ttl(), piece.len() as u64, end == total, total);
            drop(piece);
            let sent = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                res = self.call::<Option<SnapshotResponse<C>>>("/raft/snapshot", body, timeout) => res?,
            };
            match sent {
                Some(resp) => return Ok(resp),
                None if end < total => offset = end,
                None => {
                    return Err(StreamingError::Network(NetworkError::from_string(
                        "the peer did not install the whole snapshot",
                    )));
                }
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.call("/raft/transfer-leader", encode(&req)?, option.soft_ttl())
            .await
    }
}

/// The slowest link a snapshot piece is given time to cross, beyond the RPC's time to live.
const SNAPSHOT_LINK_BYTES_PER_SEC: u64 = 8 << 20;
/// The slowest a follower is given to decode and save a whole snapshot (the last piece's
/// answer waits for that), and the least time it is given.
const SNAPSHOT_INSTALL_BYTES_PER_SEC: u64 = 16 << 20;
const SNAPSHOT_INSTALL_AT_LEAST: Duration = Duration::from_secs(10);

/// How long the answer to a snapshot piece of `bytes` may take: openraft's TTL (its
/// `install_snapshot_timeout`, 200 ms, is meant for an RPC, not for moving megabytes), plus the
/// piece's time on a slow link, plus, for the last piece, the install of the whole snapshot of
/// `total` bytes. A timeout sends the snapshot again from its first piece, so a TTL shorter
/// than an install would never let a large snapshot land.
fn piece_timeout(ttl: Duration, bytes: u64, last: bool, total: u64) -> Duration {
    let on_link = Duration::from_secs_f64(bytes as f64 / SNAPSHOT_LINK_BYTES_PER_SEC as f64);
    let install = if last {
        SNAPSHOT_INSTALL_AT_LEAST.max(Duration::from_secs_f64(
            total as f64 / SNAPSHOT_INSTALL_BYTES_PER_SEC as f64,
        ))
    } else {
        Duration::ZERO
    };
    ttl + on_link + install
}

/// The bytes `offset..end` of a snapshot, read off the async runtime (from a file, on a server).
async fn read_piece(data: &SnapshotData, offset: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let data = data.clone();
    tokio::task::spawn_blocking(move || {
        let mut piece = vec![0u8; (end - offset) as usize];
        data.read_at(offset, &mut piece).map(|()| piece)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A Raft message in the encoding nodes send.
fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, RPCError<C>> {
    Wire::Postcard
        .encode(v)
        .map_err(|e| RPCError::Network(NetworkError::from_string(e)))
}

/// The peer listener's routes.
pub(crate) fn routes() -> crate::routes::Routes<Peer> {
    crate::routes::Routes::new()
        .post("/raft/append", append)
        .get(stream::PATH, stream::serve)
        .post("/raft/vote", vote)
        .post("/raft/snapshot", snapshot)
        .post("/raft/transfer-leader", transfer_leader)
        .post(crate::transport::LEADER_PATH, leader_request)
}

/// What the peer listener's handlers share.
#[derive(Clone)]
pub(crate) struct Peer {
    node: Arc<Node>,
    /// The snapshot being received, piece by piece.
    incoming: Arc<tokio::sync::Mutex<Option<Incoming>>>,
}

/// A snapshot whose pieces are arriving: the head of its first piece, and where the bytes so
/// far went (a temporary file beside the stored snapshot).
struct Incoming {
    head: String,
    total: u64,
    data: SnapshotWriter,
}

/// Routes of the peer listener: openraft's messages, and `/raft/leader`, where other nodes
/// hand the leader the requests only it can carry out (forwarded writes, read index,
/// membership changes). Every request must be signed with the cluster secret and come from a
/// node of the same data format; its body is limited to [`peer_body_limit`].
pub fn peer_router(node: Arc<Node>) -> Router {
    let limit = peer_body_limit(node.config.max_body_bytes);
    let state = Peer {
        node: node.clone(),
        incoming: Default::default(),
    };
    routes()
        .into_router()
        .with_state(state)
        .fallback(|| async { ApiError::not_found("no such peer route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "peer routes take POST (GET for /raft/stream)",
            )
        })
        .layer(axum::middleware::from_fn(same_format))
        .layer(axum::middleware::from_fn_with_state(
            (node, limit),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// Refuse a peer request that is too big or not signed with the cluster secret, before
/// anything else reads it.
async fn authenticate(
    State((node, limit)): State<(Arc<Node>, usize)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Invalid,
            format!("body: a peer request is at most {limit} bytes"),
        )
        .into_response()
    };
    if declared.is_some_and(|n| n > limit) {
        return too_big();
    }
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return too_big();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let header = parts
        .headers
        .get(peer_auth::HEADER)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = node
        .peer_auth
        .verify(parts.method.as_str(), path, header, &bytes)
    {
        tracing::warn!(path, error = %e, "refused a peer request");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            e.to_string(),
        )
        .into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
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
    ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, msg).into_response()
}

async fn leader_request(State(p): State<Peer>, body: Bytes) -> Response {
    match parse::<LeaderRequest>(&body) {
        Ok(req) => reply(&p.node.serve_leader_request(req).await),
        Err(r) => r.into_response(),
    }
}

/// Decode a peer message; a bad one is answered 400 with the reason.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    crate::api::parse_json(body)
}

fn reply<T: Serialize>(v: &T) -> Response {
    axum::Json(v).into_response()
}

/// A Raft message's encoding, from its `Content-Type` (415 naming the two allowed).
fn wire_of(headers: &axum::http::HeaderMap) -> Result<Wire, ApiError> {
    Wire::of(headers).ok_or_else(unsupported_wire)
}

fn unsupported_wire() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::Invalid,
        format!(
            "Content-Type must be {} or application/json",
            Wire::POSTCARD_TYPE
        ),
    )
    .with_details(serde_json::json!({"field": "Content-Type"}))
}

/// Decode a Raft message in `wire`'s encoding; a bad one is answered 400 with the reason.
fn parse_raft<T: DeserializeOwned>(wire: Wire, body: &Bytes) -> Result<T, ApiError> {
    wire.decode(body)
        .map_err(|e| ApiError::invalid("body", format!("not a Raft message in {wire:?}: {e}")))
}

/// An answer to a Raft message, in the request's encoding.
fn reply_raft<T: Serialize>(wire: Wire, v: &T) -> Response {
    match wire.encode(v) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, wire.content_type())],
            body,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("encoding an answer: {e}")).into_response(),
    }
}

/// Carry out one Raft message: decode it as its `Content-Type` says, answer the same way.
async fn raft_message<T, R, F>(
    headers: &axum::http::HeaderMap,
    body: &Bytes,
    f: impl FnOnce(T) -> F,
) -> Response
where
    T: DeserializeOwned,
    R: Serialize,
    F: Future<Output = R>,
{
    let wire = match wire_of(headers) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    match parse_raft(wire, body) {
        Ok(req) => reply_raft(wire, &f(req).await),
        Err(r) => r.into_response(),
    }
}

async fn append(State(p): State<Peer>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    raft_message(&headers, &body, |req| p.node.raft.append_entries(req)).await
}

async fn vote(State(p): State<Peer>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    raft_message(&headers, &body, |req| p.node.raft.vote(req)).await
}

/// One piece of a snapshot. Pieces come in order; the last one installs the whole snapshot
/// and answers its response, the others answer `null`. A first piece (offset 0) starts over.
async fn snapshot(State(p): State<Peer>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    // Before postcard, a piece was application/octet-stream with a JSON head.
    let wire = match Wire::of(&headers) {
        Some(w) => w,
        None if headers
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                v.as_bytes()
                    .eq_ignore_ascii_case(b"application/octet-stream")
            }) =>
        {
            Wire::Json
        }
        None => return unsupported_wire().into_response(),
    };
    let (head, piece) = match decode_chunk(wire, &body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::invalid("body", format!("bad snapshot piece: {e}")).into_response();
        }
    };
    let key = serde_json::to_string(&(&head.vote, &head.meta)).unwrap_or_default();
    let mut incoming = p.incoming.lock().await;
    if head.offset == 0 {
        let data = match p.node.view.snapshot_writer() {
            Ok(w) => w,
            Err(e) => {
                return ApiError::internal(format!("cannot receive a snapshot: {e}"))
                    .into_response();
            }
        };
        *incoming = Some(Incoming {
            head: key.clone(),
            total: head.total,
            data,
        });
    }
    let fits = incoming.as_ref().is_some_and(|i| {
        i.head == key
            && i.total == head.total
            && i.data.len() == head.offset
            && head.offset + piece.len() as u64 <= head.total
    });
    if !fits {
        *incoming = None;
        return ApiError::invalid(
            "offset",
            "a snapshot piece out of order (or of another snapshot); send it again from offset 0",
        )
        .into_response();
    }
    // Written off the async runtime; the lock keeps the pieces in order meanwhile.
    let mut inc = incoming.take().expect("checked");
    let piece = body.slice_ref(piece);
    let written = tokio::task::spawn_blocking(move || inc.data.write(&piece).map(|()| inc)).await;
    let inc = match written.map_err(std::io::Error::other).and_then(|r| r) {
        Ok(inc) => inc,
        Err(e) => {
            return ApiError::internal(format!("cannot write the snapshot piece: {e}"))
                .into_response();
        }
    };
    if inc.data.len() < inc.total {
        *incoming = Some(inc);
        let none: Result<Option<SnapshotResponse<C>>, RaftError<C>> = Ok(None);
        return reply_raft(wire, &none);
    }
    drop(incoming);
    let snapshot = SnapshotOf::<C, SnapshotData> {
        meta: head.meta,
        snapshot: inc.data.finish(),
    };
    let res: Result<Option<SnapshotResponse<C>>, RaftError<C>> = p
        .node
        .raft
        .install_full_snapshot(head.vote, snapshot)
        .await
        .map(Some)
        .map_err(RaftError::Fatal);
    reply_raft(wire, &res)
}

async fn transfer_leader(
    State(p): State<Peer>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    raft_message(&headers, &body, |req| async move {
        let res: Result<TransferLeaderResponse<C>, RaftError<C>> = p
            .node
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(RaftError::Fatal);
        res
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_piece_has_time_for_its_bytes_and_the_last_for_the_install() {
        let ttl = Duration::from_millis(150);
        let mib = 1u64 << 20;
        assert_eq!(piece_timeout(ttl, 0, false, 0), ttl);
        assert_eq!(
            piece_timeout(ttl, 4 * mib, false, 400 * mib),
            ttl + Duration::from_millis(500)
        );
        // A small snapshot's install still gets the floor; a large one time per byte.
        assert_eq!(
            piece_timeout(ttl, 0, true, mib),
            ttl + SNAPSHOT_INSTALL_AT_LEAST
        );
        assert_eq!(
            piece_timeout(ttl, 0, true, 16 * 60 * mib),
            ttl + Duration::from_secs(60)
        );
    }

    #[test]
    fn a_snapshot_piece_round_trips() {
        let head = ChunkHead {
            vote: openraft::Vote::new(3, 1),
            meta: Default::default(),
            offset: 7,
            total: 10,
        };
        for wire in [Wire::Postcard, Wire::Json] {
            let body = encode_chunk(wire, &head, b"abc");
            let (h, piece) = decode_chunk(wire, &body).unwrap();
            assert_eq!((h.offset, h.total, piece), (7, 10, &b"abc"[..]));
            assert!(decode_chunk(wire, &body[..3]).is_err());
            assert!(decode_chunk(wire, &body[..6]).is_err());
        }
    }
}
