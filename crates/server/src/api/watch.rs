//! `GET /v1/watch`: the revisioned event stream over WebSocket.
//!
//! A session pulls from the shared event history (no per-subscriber queue), so a subscriber
//! costs one cursor and one batch in flight. Guarantees: events arrive in revision order, none
//! twice, all events of one revision together; a resume from R gets every matching event after
//! R or a `compacted` error; a bookmark at N means every matching event up to N was sent.
//! A subscriber that stops taking messages for `watch_send_timeout`, or that falls more than
//! `watch_max_lag` events behind after it had caught up, is closed with a `lagging` error
//! carrying the revision to resume from.

use std::collections::BTreeMap;
use std::time::Duration;
use switchyard_types::ErrorCode;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Sink, SinkExt, Stream, StreamExt};
use switchyard_store::{ReadAfter, StateView};
use switchyard_types::{ErrorBody, WatchError, WatchErrorCode, WatchMessage, WatchRequest};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Shared;
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(watch))
}

/// Most events read from history per step.
const BATCH: usize = 256;

/// The settings a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub max_lag: usize,
    pub bookmark_interval: Duration,
    pub send_timeout: Duration,
}

/// Watch events: upgrades to a WebSocket (or, with `Accept: text/event-stream`, answers SSE).
/// Server messages are `WatchMessage`s; the client may send `{"type": "progress"}`.
#[utoipa::path(get, path = "/v1/watch", tag = "watch",
    params(("prefix" = Option<String>, Query, description = "only topics starting with this"),
        ("from_revision" = Option<u64>, Query, description = "resume after this revision; default: now")),
    responses((status = 101, description = "a WebSocket: the server sends WatchMessage texts, the client may send WatchRequest texts"),
        (status = 200, description = "SSE of WatchMessage", content_type = "text/event-stream"),
        (status = 400, body = ErrorBody)))]
async fn watch(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let mut prefix = String::new();
    let mut from = None;
    for (k, v) in &q {
        match k.as_str() {
            "prefix" => prefix = v.clone(),
            "from_revision" => {
                from = Some(v.parse::<u64>().map_err(|_| {
                    ApiError::invalid(
                        "from_revision",
                        format!("must be a non-negative integer; got {v:?}"),
                    )
                })?)
            }
            "token" => {}
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown query parameter; allowed: prefix, from_revision",
                ));
            }
        }
    }
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let ws = match ws {
        Ok(ws) => Some(ws),
        Err(_) if wants_sse => None,
        Err(e) => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                ErrorCode::Invalid,
                format!("/v1/watch needs a WebSocket upgrade or Accept: text/event-stream ({e})"),
            ));
        }
    };
    let cfg = &s.node.config;
    let session = SessionConfig {
        max_lag: cfg.watch_max_lag,
        bookmark_interval: cfg.watch_bookmark_interval,
        send_timeout: cfg.watch_send_timeout,
    };
    let view = s.node.view.clone();
    let shutdown = s.shutdown.clone();
    let Some(ws) = ws else {
        return Ok(sse(view, prefix, from, session, shutdown));
    };
    Ok(ws.on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        run_session(sink, stream, view, prefix, from, session, shutdown).await;
    }))
}

/// The same session over Server-Sent Events: each message is one `data:` line; events carry
/// their revision as the SSE `id`. One-way, so bookmarks come only on the idle interval.
fn sse(
    view: StateView,
    prefix: String,
    from: Option<u64>,
    cfg: SessionConfig,
    shutdown: CancellationToken,
) -> Response {
    let (tx, rx) = futures::channel::mpsc::channel::<Message>(16);
    let never = futures::stream::pending::<Result<Message, std::convert::Infallible>>();
    tokio::spawn(run_session(tx, never, view, prefix, from, cfg, shutdown));
    let events = rx.filter_map(|m| async move {
        let Message::Text(t) = m else { return None };
        let mut e = Event::default().data(t.as_str());
        if let Ok(WatchMessage::Event { revision, .. }) =
            serde_json::from_str::<WatchMessage>(t.as_str())
        {
            e = e.id(revision.to_string());
        }
        Some(Ok::<_, std::convert::Infallible>(e))
    });
    Sse::new(events).into_response()
}

enum End {
    /// Send this error, then close.
    Error(WatchError),
    /// The peer went away or the server is stopping.
    Gone,
}

fn text(s: impl Into<String>) -> Message {
    Message::Text(s.into().into())
}

async fn send<Si>(sink: &mut Si, msg: Message, timeout: Duration, cursor: u64) -> Result<(), End>
where
    Si: Sink<Message> + Unpin,
{
    send_batch(sink, std::iter::once(msg), timeout, cursor).await
}

/// Send a batch of messages with one flush (one write to the socket, not one per event), in
/// `timeout` for the whole batch.
async fn send_batch<Si>(
    sink: &mut Si,
    msgs: impl Iterator<Item = Message>,
    timeout: Duration,
    cursor: u64,
) -> Result<(), End>
where
    Si: Sink<Message> + Unpin,
{
    let all = async {
        for m in msgs {
            sink.feed(m).await?;
        }
        sink.flush().await
    };
    match tokio::time::timeout(timeout, all).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Error(lagging(
            cursor,
            format!("the subscriber took no message for {timeout:?}"),
        ))),
    }
}

fn lagging(cursor: u64, why: String) -> WatchError {
    WatchError {
        code: WatchErrorCode::Lagging,
        message: format!("{why}; resume with from_revision={cursor}"),
        compact_revision: None,
        resume_from: Some(cursor),
    }
}

/// Serve one subscriber until it leaves, falls behind, or the server stops.
pub async fn run_session<Si, St, E>(
    mut sink: Si,
    mut stream: St,
    view: StateView,
    prefix: String,
    from: Option<u64>,
    cfg: SessionConfig,
    shutdown: CancellationToken,
) where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    /// Counts the session while it lives: dropped at its end, or when a face aborts it.
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            metrics::gauge!("switchyard_watch_sessions").decrement(1.0);
        }
    }
    metrics::gauge!("switchyard_watch_sessions").increment(1.0);
    let counted = Counted;
    let end = session_loop(
        &mut sink,
        &mut stream,
        &view,
        &prefix,
        from,
        &cfg,
        &shutdown,
    )
    .await;
    drop(counted);
    if let End::Error(error) = end {
        metrics::counter!("switchyard_watch_closed_total", "code" => error.code.as_str())
            .increment(1);
        let msg = serde_json::to_string(&WatchMessage::Error { error }).expect("serialisable");
        let _ = tokio::time::timeout(cfg.send_timeout, sink.send(text(msg))).await;
        let close = Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: "watch ended".into(),
        }));
        let _ = tokio::time::timeout(cfg.send_timeout, sink.send(close)).await;
    } else if shutdown.is_cancelled() {
        let close = Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: "server shutting down".into(),
        }));
        let _ = tokio::time::timeout(cfg.send_timeout, sink.send(close)).await;
    }
}

async fn session_loop<Si, St, E>(
    sink: &mut Si,
    stream: &mut St,
    view: &StateView,
    prefix: &str,
    from: Option<u64>,
    cfg: &SessionConfig,
    shutdown: &CancellationToken,
) -> End
where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
{
    let mut revisions = view.subscribe();
    let mut cursor = from.unwrap_or_else(|| view.revision());
    let mut caught_up = false;
    let mut want_bookmark = false;
    let mut sent_since_tick = false;
    let mut ticker = tokio::time::interval(cfg.bookmark_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        // Catch up with everything applied so far.
        loop {
            if caught_up && view.events_after(cursor) > cfg.max_lag {
                return End::Error(lagging(
                    cursor,
                    format!(
                        "the subscriber fell more than {} events behind",
                        cfg.max_lag
                    ),
                ));
            }
            match view.read_events(cursor, prefix, BATCH) {
                ReadAfter::Compacted { compact_revision } => {
                    return End::Error(WatchError {
                        code: WatchErrorCode::Compacted,
                        message: format!(
                            "revision {cursor} is older than retained history (oldest resumable: \
                             {compact_revision}); re-read state, then watch from its revision"
                        ),
                        compact_revision: Some(compact_revision),
                        resume_from: None,
                    });
                }
                ReadAfter::Events { events, scanned_to } => {
                    if !events.is_empty() {
                        let msgs = events.iter().map(|e| text(&*e.message));
                        if let Err(end) = send_batch(sink, msgs, cfg.send_timeout, cursor).await {
                            return end;
                        }
                        sent_since_tick = true;
                    }
                    let progressed = scanned_to > cursor;
                    cursor = scanned_to;
                    if !progressed && events.is_empty() {
                        break;
                    }
                }
            }
        }
        caught_up = true;
        if want_bookmark {
            let msg = serde_json::to_string(&WatchMessage::Bookmark { revision: cursor })
                .expect("serialisable");
            if let Err(end) = send(sink, text(msg), cfg.send_timeout, cursor).await {
                return end;
            }
            want_bookmark = false;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return End::Gone,
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<WatchRequest>(t.as_str()) {
                    Ok(WatchRequest::Progress) => want_bookmark = true,
                    Err(e) => {
                        return End::Error(WatchError {
                            code: WatchErrorCode::Invalid,
                            message: format!("unknown client message ({e}); allowed: {{\"type\": \"progress\"}}"),
                            compact_revision: None,
                            resume_from: Some(cursor),
                        });
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Gone,
                Some(Ok(_)) => {}
            },
            changed = revisions.changed() => {
                if changed.is_err() {
                    return End::Gone;
                }
            }
            _ = ticker.tick() => {
                if !sent_since_tick {
                    want_bookmark = true;
                }
                sent_since_tick = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::channel::mpsc;
    use openraft::storage::RaftStateMachine;
    use openraft::testing::log_id;
    use switchyard_core::bank::BankCommand;
    use switchyard_core::{Command, Proposal};
    use switchyard_store::{StateMachine, TypeConfig};

    use super::*;

    async fn machine_with_events(dir: &std::path::Path, n: u64) -> StateMachine {
        let mut sm = StateMachine::open(dir, 10_000).unwrap();
        let mut entries = vec![Command::Bank(BankCommand::Open { id: "a".into() })];
        entries.extend((1..n).map(|_| {
            Command::Bank(BankCommand::Credit {
                id: "a".into(),
                amount: 1,
            })
        }));
        let stream = futures::stream::iter(entries.into_iter().enumerate().map(|(i, c)| {
            let entry = openraft::alias::EntryOf::<TypeConfig> {
                log_id: log_id::<TypeConfig>(1, 1, i as u64 + 1),
                payload: openraft::EntryPayload::Normal(Proposal::new(0, c)),
            };
            Ok((entry, None))
        }));
        sm.apply(stream).await.unwrap();
        sm
    }

    fn cfg() -> SessionConfig {
        SessionConfig {
            max_lag: 5,
            bookmark_interval: Duration::from_secs(3600),
            send_timeout: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_stops_reading_is_cut_off_with_a_resumable_error() {
        let dir = tempfile::TempDir::new().unwrap();
        let sm = machine_with_events(dir.path(), 50).await;
        // A sink with room for 4 messages that nobody reads: the session must not buffer more.
        let (sink_tx, mut sink_rx) = mpsc::channel::<Message>(4);
        let (_in_tx, in_rx) = mpsc::channel::<Result<Message, Infallible>>(1);
        let session = run_session(
            sink_tx,
            in_rx,
            sm.view(),
            String::new(),
            Some(0),
            cfg(),
            CancellationToken::new(),
        );
        tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("the session ends by itself");
        let mut got = Vec::new();
        while let Ok(m) = sink_rx.try_recv() {
            got.push(m);
        }
        // Only what fit in the buffer was handed over (capacity + 1 per sender), then the
        // session ended instead of holding the other events.
        assert!(got.len() <= 5, "bounded: got {} of 50 messages", got.len());
        assert!(
            got.iter()
                .all(|m| m.to_text().unwrap().contains(r#""type":"event""#))
        );
    }

    #[tokio::test]
    async fn a_subscriber_far_behind_after_catching_up_gets_lagging_with_resume_point() {
        let dir = tempfile::TempDir::new().unwrap();
        let mut sm = machine_with_events(dir.path(), 3).await;
        let (sink_tx, mut sink_rx) = mpsc::channel::<Message>(1000);
        let (_in_tx, in_rx) = mpsc::channel::<Result<Message, Infallible>>(1);
        let view = sm.view();
        let task = tokio::spawn(run_session(
            sink_tx,
            in_rx,
            view.clone(),
            String::new(),
            Some(0),
            cfg(),
            CancellationToken::new(),
        ));
        // Caught up: three events delivered.
        for _ in 0..3 {
            sink_rx.next().await.unwrap();
        }
        // Ten more events land at once, more than max_lag = 5 beyond the subscriber's cursor.
        let stream = futures::stream::iter((4..14u64).map(|i| {
            let entry = openraft::alias::EntryOf::<TypeConfig> {
                log_id: log_id::<TypeConfig>(1, 1, i),
                payload: openraft::EntryPayload::Normal(Proposal::new(
                    0,
                    Command::Bank(BankCommand::Credit {
                        id: "a".into(),
                        amount: 1,
                    }),
                )),
            };
            Ok((entry, None))
        }));
        sm.apply(stream).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let first = sink_rx.next().await.unwrap();
        let m: WatchMessage = serde_json::from_str(first.to_text().unwrap()).unwrap();
        match m {
            WatchMessage::Error { error } => {
                assert_eq!(error.code, WatchErrorCode::Lagging);
                assert_eq!(error.resume_from, Some(3));
            }
            other => panic!("expected lagging, got {other:?}"),
        }
    }
}
