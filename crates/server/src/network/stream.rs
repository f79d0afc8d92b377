//! The leader's appends to a follower over one WebSocket, pipelined (openraft's
//! `stream_append`): the leader sends the next append without waiting for the last one's answer,
//! and the follower hands them in order to `Raft::stream_append`, which answers them in order.
//!
//! `GET /raft/stream` opens it like any peer request, signed; every frame after that, both
//! ways, is sealed with a tag keyed by the opening request's nonce ([`peer_auth::FrameSealer`]),
//! so a frame altered, injected, replayed or reordered on the wire ends the stream. A frame's
//! payload is postcard: an `AppendEntriesRequest` one way, a [`Reply`] the other.
//!
//! A peer that does not serve the route (an older switchyard, 404) gets one request per append
//! as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{SinkExt, Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::errors::{NetworkError, RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{C, FORMAT_HEADER, Peer, PeerClient};
use crate::error::ApiError;
use crate::peer_auth::{self, Direction, FRAME_TAG_BYTES, FrameOpener, FrameSealer};

/// The route that opens a stream.
pub const PATH: &str = "/raft/stream";

/// How often an idle stream is pinged, so that no idle timeout closes it.
const PING_EVERY: Duration = Duration::from_secs(15);

/// The follower's answer to one append frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// What `Raft::stream_append` answered.
    Append(StreamAppendResult<C>),
    /// The follower's Raft stopped; the stream ends.
    Fatal(String),
}

/// Why a stream could not be opened.
pub enum OpenError {
    /// The peer does not serve streams (404): use one request per append.
    NotServed,
    Rpc(RPCError<C>),
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Sink = futures::stream::SplitSink<Socket, Message>;
type Source = futures::stream::SplitStream<Socket>;

/// An open stream between sessions: its socket and its frame counters each way.
pub struct Session {
    sink: Sink,
    sealer: FrameSealer,
    source: Source,
    opener: FrameOpener,
    /// When its last session ended.
    parked: Instant,
}

/// A link's stream, kept between sessions (a heartbeat is a session of one append).
pub type Slot = Arc<Mutex<Option<Session>>>;

/// A parked stream older than this is not reused (the peer may have closed it as idle).
const REUSE_WITHIN: Duration = Duration::from_secs(30);

impl PeerClient {
    /// The link's parked stream to `peer`, or a new one.
    pub async fn stream(&self, peer: &str, slot: &Slot) -> Result<Session, OpenError> {
        let parked = slot.lock().unwrap().take();
        match parked {
            Some(s) if s.parked.elapsed() < REUSE_WITHIN => Ok(s),
            _ => self.open_stream(peer).await,
        }
    }

    /// Open a stream to the peer listener at `peer` (host:port).
    async fn open_stream(&self, peer: &str) -> Result<Session, OpenError> {
        let scheme = if self.scheme == "https" { "wss" } else { "ws" };
        let mut req = format!("{scheme}://{peer}{PATH}")
            .into_client_request()
            .map_err(|e| OpenError::Rpc(RPCError::Network(NetworkError::new(&e))))?;
        let (sig, nonce) = self.secret.sign_with_nonce("GET", PATH, b"");
        let headers = req.headers_mut();
        headers.insert(
            peer_auth::HEADER,
            sig.parse().expect("a signature is a header value"),
        );
        headers.insert(FORMAT_HEADER, switchyard_store::FORMAT.into());
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(self.limit + FRAME_TAG_BYTES))
            .max_frame_size(Some(self.limit + FRAME_TAG_BYTES));
        let connector = self
            .stream_tls
            .clone()
            .map(tokio_tungstenite::Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, connector)
            .await
        {
            Ok((socket, _)) => {
                let (sink, source) = socket.split();
                Ok(Session {
                    sink,
                    sealer: self.secret.frame_sealer(&nonce, Direction::ToFollower),
                    source,
                    opener: self.secret.frame_opener(&nonce, Direction::ToLeader),
                    parked: Instant::now(),
                })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp))
                if resp.status() == axum::http::StatusCode::NOT_FOUND =>
            {
                Err(OpenError::NotServed)
            }
            Err(tokio_tungstenite::tungstenite::Error::Io(e)) => {
                Err(OpenError::Rpc(RPCError::Unreachable(Unreachable::new(&e))))
            }
            Err(e) => Err(OpenError::Rpc(RPCError::Network(NetworkError::new(&e)))),
        }
    }
}

/// Split an append into requests whose encoding fits `limit` bytes, each chained to the one
/// before (one answer each).
fn fit(req: AppendEntriesRequest<C>, limit: usize) -> Result<Vec<Vec<u8>>, String> {
    let enc = |r: &AppendEntriesRequest<C>| postcard::to_allocvec(r).map_err(|e| e.to_string());
    let whole = enc(&req)?;
    if whole.len() <= limit || req.entries.len() <= 1 {
        return Ok(vec![whole]);
    }
    let mut out = Vec::new();
    let mut rest = req.entries;
    let mut prev = req.prev_log_id;
    while !rest.is_empty() {
        let mut take = rest.len();
        loop {
            let part = AppendEntriesRequest {
                vote: req.vote,
                prev_log_id: prev,
                leader_commit: req
                    .leader_commit
                    .min(rest.get(take - 1).map(|e| e.log_id())),
                entries: rest[..take].to_vec(),
            };
            let body = enc(&part)?;
            if body.len() <= limit || take == 1 {
                prev = part.entries.last().map(|e| e.log_id());
                out.push(body);
                rest.drain(..take);
                break;
            }
            take /= 2;
        }
    }
    Ok(out)
}

/// What the sending task gives back when its input ended: the socket's sending half, to park.
type Sent = Option<(Sink, FrameSealer)>;

/// The receiving side of one session. Dropped before its end (openraft ended the session, or
/// an error), it stops the sending task and the socket is closed, not parked.
struct Receiving {
    source: Option<Source>,
    opener: Option<FrameOpener>,
    /// Frames sent and not yet answered.
    outstanding: Arc<AtomicU64>,
    sender: Option<tokio::task::JoinHandle<Sent>>,
    returned: Sent,
    slot: Slot,
    ttl: Duration,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if let Some(h) = &self.sender {
            h.abort();
        }
    }
}

enum Step {
    SenderDone(Sent),
    Frame(Result<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>, ()>),
}

type Item = Result<StreamAppendResult<C>, RPCError<C>>;

impl Receiving {
    /// The next answer, in order, and the state to go on from (`None`: the session ends after
    /// this answer, and dropping the state stops the sender and closes the socket). `None`
    /// once the input ended and every frame was answered; the socket is then parked for the
    /// link's next session.
    async fn next(mut self) -> Option<(Item, Option<Self>)> {
        loop {
            if self.sender.is_none() && self.outstanding.load(Ordering::SeqCst) == 0 {
                self.park();
                return None;
            }
            let step = {
                let source = self.source.as_mut().expect("held until parked");
                let frame = tokio::time::timeout(self.ttl, source.next());
                match self.sender.as_mut() {
                    Some(sender) => tokio::select! {
                        sent = sender => Step::SenderDone(sent.ok().flatten()),
                        frame = frame => Step::Frame(frame.map_err(|_| ())),
                    },
                    None => Step::Frame(frame.await.map_err(|_| ())),
                }
            };
            let frame = match step {
                Step::SenderDone(sent) => {
                    self.sender = None;
                    self.returned = sent;
                    continue;
                }
                Step::Frame(Err(())) if self.outstanding.load(Ordering::SeqCst) == 0 => continue,
                Step::Frame(Err(())) => {
                    return fail(format!("no answer on the stream within {:?}", self.ttl));
                }
                Step::Frame(Ok(None | Some(Ok(Message::Close(_))))) => {
                    return fail("the peer closed the stream".into());
                }
                Step::Frame(Ok(Some(Ok(Message::Binary(frame))))) => frame,
                Step::Frame(Ok(Some(Ok(Message::Text(_))))) => {
                    return fail("a text frame".into());
                }
                Step::Frame(Ok(Some(Ok(_)))) => continue,
                Step::Frame(Ok(Some(Err(e)))) => return fail(e.to_string()),
            };
            let opener = self.opener.as_mut().expect("held until parked");
            let reply = opener
                .open(&frame)
                .map_err(|e| e.to_string())
                .and_then(|p| postcard::from_bytes::<Reply>(p).map_err(|e| e.to_string()));
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            return match reply {
                Ok(Reply::Append(Ok(matching))) => Some((Ok(Ok(matching)), Some(self))),
                // The follower ends its side after a refusal: so does this session.
                Ok(Reply::Append(Err(refused))) => Some((Ok(Err(refused)), None)),
                Ok(Reply::Fatal(e)) => fail(format!("the peer's Raft stopped: {e}")),
                Err(e) => fail(format!("a bad answer frame: {e}")),
            };
        }
    }

    /// Keep the socket for the link's next session, if it is whole.
    fn park(&mut self) {
        if let (Some((sink, sealer)), Some(source), Some(opener)) =
            (self.returned.take(), self.source.take(), self.opener.take())
        {
            *self.slot.lock().unwrap() = Some(Session {
                sink,
                sealer,
                source,
                opener,
                parked: Instant::now(),
            });
        }
    }
}

/// An error answer that ends the session.
fn fail(msg: String) -> Option<(Item, Option<Receiving>)> {
    Some((Err(network(msg)), None))
}

/// Send `input` on `session` and answer each frame's reply, in order; the session's socket is
/// parked in `slot` when the input ended and every frame was answered.
pub fn pipeline<'s, S>(
    session: Session,
    limit: usize,
    slot: Slot,
    input: S,
    option: RPCOption,
) -> BoxStream<'s, Item>
where
    S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
{
    let Session {
        mut sink,
        mut sealer,
        source,
        opener,
        ..
    } = session;
    let outstanding = Arc::new(AtomicU64::new(0));
    let sending = outstanding.clone();
    let sender = tokio::spawn(async move {
        let mut input = input;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                req = input.next() => {
                    let Some(req) = req else {
                        return Some((sink, sealer));
                    };
                    let frames = match fit(req, limit) {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(error = %e, "encoding an append");
                            return None;
                        }
                    };
                    for body in frames {
                        sending.fetch_add(1, Ordering::SeqCst);
                        if sink.send(Message::Binary(sealer.seal(&body).into())).await.is_err() {
                            return None;
                        }
                    }
                }
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    let state = Receiving {
        source: Some(source),
        opener: Some(opener),
        outstanding,
        sender: Some(sender),
        returned: None,
        slot,
        ttl: option.soft_ttl(),
    };
    Box::pin(futures::stream::unfold(Some(state), |state| async move {
        state?.next().await
    }))
}

fn network(msg: String) -> RPCError<C> {
    RPCError::Network(NetworkError::from_string(msg))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `GET /raft/stream`: upgrade to a WebSocket carrying appends (the request was signed; the
/// authentication layer checked it).
pub(super) async fn serve(
    State(p): State<Peer>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(nonce) = headers
        .get(peer_auth::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(peer_auth::nonce_of)
        .map(str::to_string)
    else {
        return ApiError::invalid(peer_auth::HEADER, "no nonce").into_response();
    };
    let limit = super::peer_body_limit(p.node.config.max_body_bytes) + FRAME_TAG_BYTES;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| follow(p, socket, nonce))
}

/// Hand the stream's appends, checked and in order, to Raft; send its answers back.
async fn follow(p: Peer, socket: WebSocket, nonce: String) {
    let secret = p.node.peer_auth.secret().clone();
    let mut opener = secret.frame_opener(&nonce, Direction::ToFollower);
    let mut sealer = secret.frame_sealer(&nonce, Direction::ToLeader);
    let (mut sink, mut source) = socket.split();
    let (tx, rx) = tokio::sync::mpsc::channel::<AppendEntriesRequest<C>>(64);
    let reader = tokio::spawn(async move {
        while let Some(msg) = source.next().await {
            let frame = match msg {
                Ok(WsMessage::Binary(frame)) => frame,
                Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
                Ok(WsMessage::Close(_)) | Err(_) => return,
                Ok(WsMessage::Text(_)) => {
                    tracing::warn!("refused a text frame on a peer stream");
                    return;
                }
            };
            let req = match opener.open(&frame) {
                Ok(payload) => match postcard::from_bytes(payload) {
                    Ok(req) => req,
                    Err(e) => {
                        tracing::warn!(error = %e, "refused a bad append on a peer stream");
                        return;
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "refused a frame on a peer stream");
                    return;
                }
            };
            metrics::counter!("switchyard_peer_stream_appends_total").increment(1);
            if tx.send(req).await.is_err() {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let answers = p.node.raft.stream_append(tokio_stream_of(rx));
    let mut answers = std::pin::pin!(answers);
    while let Some(answer) = answers.next().await {
        let (reply, last) = match answer {
            Ok(res) => {
                let last = res.is_err();
                (Reply::Append(res), last)
            }
            Err(fatal) => (Reply::Fatal(fatal.to_string()), true),
        };
        let body = postcard::to_allocvec(&reply).expect("a reply encodes");
        if sink
            .send(WsMessage::Binary(sealer.seal(&body).into()))
            .await
            .is_err()
            || last
        {
            break;
        }
    }
    let _ = sink.close().await;
}

/// A receiver as a stream.
fn tokio_stream_of<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
