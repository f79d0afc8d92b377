//! The ceiling: a bare axum server written for the bench that broadcasts each appended line
//! to every follower, keeping nothing (`switchyard-bench log-ceiling`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::free_port;

/// The ceiling process, killed on drop.
pub(super) struct CeilingProc {
    pub(super) child: Child,
    pub(super) addr: String,
}

impl Drop for CeilingProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) async fn start_ceiling() -> anyhow::Result<CeilingProc> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["log-ceiling", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the log ceiling")?;
    let p = CeilingProc {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("http://{}/followers", p.addr))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the log ceiling did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(p)
}

/// The ceiling: takes `POST /logs` batches (the body of switchyard's route), numbers the lines,
/// serialises each once and broadcasts it to every follower of `GET /ws` (a text message per
/// line) and `GET /sse` (an SSE `line` event per line); `POST /end` ends every follower's
/// stream and starts numbering again. It keeps nothing: a follower that falls behind by more
/// than the channel holds loses lines (and says so).
pub async fn ceiling(port: u16) -> anyhow::Result<()> {
    use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
    use axum::extract::{Json, State};
    use axum::response::sse::{Event, Sse};
    use axum::routing::{get, post};
    use tokio::sync::broadcast;

    #[derive(Clone)]
    struct Hub {
        tx: broadcast::Sender<Option<(u64, Utf8Bytes)>>,
        next: Arc<std::sync::atomic::AtomicU64>,
    }
    let hub = Hub {
        tx: broadcast::channel(1 << 20).0,
        next: Arc::new(0.into()),
    };
    async fn logs(
        State(h): State<Hub>,
        Json(b): Json<switchyard_types::LogBatch>,
    ) -> Json<serde_json::Value> {
        use std::sync::atomic::Ordering;
        let mut next = 0;
        for l in b.lines {
            let offset = h.next.fetch_add(1, Ordering::Relaxed);
            let line = switchyard_types::LogLine {
                offset,
                stream: l.stream,
                time: l.time_ms.to_string(),
                text: l.text,
            };
            let json = serde_json::to_string(&line).expect("a log line serialises");
            let _ = h.tx.send(Some((offset, json.into())));
            next = offset + 1;
        }
        Json(serde_json::json!({ "next": next }))
    }
    async fn end(State(h): State<Hub>) {
        h.next.store(0, std::sync::atomic::Ordering::Relaxed);
        let _ = h.tx.send(None);
    }
    async fn followers(State(h): State<Hub>) -> String {
        h.tx.receiver_count().to_string()
    }
    async fn ws(State(h): State<Hub>, up: WebSocketUpgrade) -> axum::response::Response {
        // Subscribed before the answer, so no line sent after it is missed.
        let mut rx = h.tx.subscribe();
        up.on_upgrade(move |mut socket| async move {
            loop {
                let msg = match rx.recv().await {
                    Ok(Some((_, json))) => Message::Text(json),
                    Ok(None) => Message::Text("end".into()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Message::Text(format!("lagged {n}").into())
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let last = matches!(&msg, Message::Text(t) if t.as_str() == "end");
                if socket.send(msg).await.is_err() || last {
                    return;
                }
            }
        })
    }
    async fn sse(State(h): State<Hub>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let rx = h.tx.subscribe();
        let events = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
            if done {
                return None;
            }
            let (event, done) = match rx.recv().await {
                Ok(Some((offset, json))) => (
                    Event::default()
                        .event("line")
                        .id(offset.to_string())
                        .data(json.as_str()),
                    false,
                ),
                Ok(None) => (Event::default().event("end").data("{}"), true),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    (Event::default().event("lagged").data(n.to_string()), false)
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, std::convert::Infallible>(event), (rx, done)))
        });
        Sse::new(events).into_response()
    }
    let app = axum::Router::new()
        .route("/logs", post(logs))
        .route("/end", post(end))
        .route("/followers", get(followers))
        .route("/ws", get(ws))
        .route("/sse", get(sse))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
