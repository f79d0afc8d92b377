//! A resuming watch stream over `/v1/watch`.

use std::time::Duration;

use tokio::time::Instant;

use futures::{SinkExt, StreamExt};
use switchyard_types::{WatchErrorCode, WatchEvent, WatchMessage};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Error;
use crate::connect::{BoxIo, Shared};

type Socket = WebSocketStream<MaybeTlsStream<BoxIo>>;

/// What a watch yields.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchItem {
    Event(WatchEvent),
    /// Every matching event up to this revision has been delivered.
    Bookmark(u64),
}

/// How long the watch keeps trying to reconnect before giving up.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// A watch that reconnects and resumes by itself, trying each of its client's addresses in
/// turn: every node serves the same revisions, so it resumes on another node where it left off.
pub struct Watch {
    bases: std::sync::Arc<Vec<String>>,
    /// The address in use (index into `bases`).
    at: usize,
    prefix: String,
    socket: Option<Socket>,
    /// Every event up to this revision has been delivered.
    complete: u64,
    /// The revision being delivered and how many of its events were delivered.
    partial: Option<(u64, usize)>,
    /// After a reconnect: events of `partial`'s revision still to skip.
    skip: usize,
    /// How many times the watch reconnected.
    pub reconnects: u64,
    token: Option<String>,
    /// What `wss://` connections trust (none: the system's roots).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Connections come from here instead of TCP.
    connector: Option<Shared>,
}

/// Open a WebSocket, with `tls` for `wss://`, over TCP or a connection of `connector`.
pub(crate) async fn open(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
    tls: &Option<std::sync::Arc<rustls::ClientConfig>>,
    connector: &Option<Shared>,
) -> Result<
    (
        Socket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let uri = req.uri().clone();
    let host = uri.host().unwrap_or_default().to_string();
    let io: BoxIo = match connector {
        Some(c) => {
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            c.0.connect(authority).await.map_err(WsError::Io)?
        }
        None => {
            let secure = uri.scheme_str() == Some("wss");
            let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(WsError::Io)?;
            let _ = tcp.set_nodelay(true);
            Box::new(tcp)
        }
    };
    let connector = tls
        .as_ref()
        .map(|c| tokio_tungstenite::Connector::Rustls(c.clone()));
    tokio_tungstenite::client_async_tls_with_config(req, io, None, connector).await
}

fn request(
    base: &str,
    prefix: &str,
    from: u64,
    token: Option<&str>,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut r = url(base, prefix, Some(from))?
        .into_client_request()
        .map_err(|e| Error::Watch(e.to_string()))?;
    if let Some(v) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        r.headers_mut().insert("authorization", v);
    }
    Ok(r)
}

fn url(base: &str, prefix: &str, from: Option<u64>) -> Result<String, Error> {
    let mut u = reqwest::Url::parse(&format!("{base}/v1/watch"))
        .map_err(|e| Error::Watch(e.to_string()))?;
    let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
    u.set_scheme(scheme)
        .map_err(|_| Error::Watch("bad scheme".into()))?;
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("prefix", prefix);
        if let Some(r) = from {
            q.append_pair("from_revision", &r.to_string());
        }
    }
    Ok(u.to_string())
}

impl Watch {
    pub(crate) async fn connect(
        bases: std::sync::Arc<Vec<String>>,
        at: usize,
        prefix: &str,
        from: u64,
        token: Option<String>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        connector: Option<Shared>,
    ) -> Result<Self, Error> {
        let mut w = Self {
            bases,
            at,
            prefix: prefix.to_string(),
            socket: None,
            complete: from,
            partial: None,
            skip: 0,
            reconnects: 0,
            token,
            tls,
            connector,
        };
        let mut last = None;
        for _ in 0..w.bases.len() {
            match open(
                request(&w.bases[w.at], prefix, from, w.token.as_deref())?,
                &w.tls,
                &w.connector,
            )
            .await
            {
                Ok((socket, _)) => {
                    w.socket = Some(socket);
                    return Ok(w);
                }
                Err(e) => {
                    last = Some(e);
                    w.at = (w.at + 1) % w.bases.len();
                }
            }
        }
        Err(Error::Watch(
            last.map_or_else(|| "no address".into(), |e| e.to_string()),
        ))
    }

    /// The address the watch is connected to (or will try next).
    pub fn base(&self) -> &str {
        &self.bases[self.at]
    }

    /// Every event up to this revision has been delivered.
    pub fn revision(&self) -> u64 {
        self.complete
    }

    /// Ask the server for a bookmark now.
    pub async fn request_progress(&mut self) -> Result<(), Error> {
        if let Some(s) = self.socket.as_mut() {
            s.send(Message::Text(r#"{"type":"progress"}"#.into()))
                .await
                .map_err(|e| Error::Watch(e.to_string()))?;
        }
        Ok(())
    }

    /// Drop the connection now (the next call to [`Watch::next`] reconnects and resumes).
    pub fn disconnect(&mut self) {
        self.socket = None;
    }

    async fn reconnect(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let from = self.complete;
            match open(
                request(
                    &self.bases[self.at],
                    &self.prefix,
                    from,
                    self.token.as_deref(),
                )?,
                &self.tls,
                &self.connector,
            )
            .await
            {
                Ok((s, _)) => {
                    self.socket = Some(s);
                    self.skip = self.partial.map_or(0, |(_, n)| n);
                    self.reconnects += 1;
                    tracing::debug!(from, base = %self.bases[self.at], "watch reconnected");
                    return Ok(());
                }
                Err(e) if started.elapsed() > RECONNECT_FOR => {
                    return Err(Error::Watch(e.to_string()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, base = %self.bases[self.at], "watch reconnect failed; trying the next address");
                    self.at = (self.at + 1) % self.bases.len();
                    if self.at == 0 || self.bases.len() == 1 {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    /// The next event or bookmark. Reconnects on a dropped connection or a `lagging` close;
    /// returns [`Error::Compacted`] when the server no longer has the history to resume.
    pub async fn next(&mut self) -> Result<WatchItem, Error> {
        loop {
            if self.socket.is_none() {
                self.reconnect().await?;
            }
            let socket = self.socket.as_mut().expect("connected above");
            let msg = match socket.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    self.socket = None;
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let parsed: WatchMessage = serde_json::from_str(msg.as_str())
                .map_err(|e| Error::Decode(format!("{e}: {msg}")))?;
            match parsed {
                WatchMessage::Event {
                    revision,
                    topic,
                    event,
                } => {
                    match self.partial {
                        Some((r, n)) if r == revision => {
                            if self.skip > 0 {
                                self.skip -= 1;
                                continue;
                            }
                            self.partial = Some((r, n + 1));
                        }
                        Some((r, _)) => {
                            self.complete = self.complete.max(r);
                            self.partial = Some((revision, 1));
                            self.skip = 0;
                        }
                        None => self.partial = Some((revision, 1)),
                    }
                    return Ok(WatchItem::Event(WatchEvent {
                        revision,
                        topic,
                        event,
                    }));
                }
                WatchMessage::Bookmark { revision } => {
                    self.complete = self.complete.max(revision);
                    self.partial = None;
                    self.skip = 0;
                    return Ok(WatchItem::Bookmark(revision));
                }
                WatchMessage::Error { error } => {
                    self.socket = None;
                    match error.code {
                        WatchErrorCode::Lagging => continue,
                        WatchErrorCode::Compacted => {
                            return Err(Error::Compacted {
                                compact_revision: error.compact_revision.unwrap_or(0),
                            });
                        }
                        WatchErrorCode::Invalid | WatchErrorCode::Other => {
                            return Err(Error::Watch(format!(
                                "{}: {}",
                                error.code.as_str(),
                                error.message
                            )));
                        }
                    }
                }
            }
        }
    }
}
