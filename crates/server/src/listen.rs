//! Serving a listener: every listener of a node (the client API, each compatibility face, the
//! peer listener) is served by [`serve`], so none can forget a guard.
//!
//! - **Browser guard** ([`guard`]): a mutating request or a WebSocket upgrade that a browser
//!   sent from another origin is refused with 403, as Go's `http.CrossOriginProtection` does:
//!   `Sec-Fetch-Site` other than `same-origin`/`none`, or else an `Origin` whose host is not the
//!   request's `Host`, unless the origin is in `allowed_origins`. Requests without those
//!   headers (curl, scripts, the originals' clients) pass: only browsers send them, and a
//!   browser always does on a cross-origin request. While a listener is bound to loopback, a
//!   request whose `Host` is not an IP address, `localhost`, one of the node's advertised
//!   names or in `allowed_hosts` is refused too (a DNS-rebinding page reaches loopback under
//!   its own name).
//! - **TLS** when the listener has a certificate (rustls; the configuration is read anew for
//!   each connection, so a reload takes effect at once), mutual on the peer listener.
//! - **Error shape** ([`crate::error_shape`]): the framework's own error answers (axum's
//!   rejections, hyper's answers to an unparsable head) in the listener's shape.
//! - **Connection limits**: a request head must arrive within `header_read_timeout`, a
//!   connection with no request in flight is closed after `idle_timeout`, and at most
//!   `max_connections` connections are open per listener (more wait in the accept backlog,
//!   with a log line when the cap is reached).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchyard_types::ErrorCode;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::Style;

/// Connection limits of every listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head (line and headers) must arrive within this time.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections open at once on one listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Which browsers' requests a node takes.
#[derive(Debug, Clone, Default)]
pub struct BrowserRules {
    /// Origins (`scheme://host[:port]`) whose pages may send mutating requests and open
    /// sockets, besides the node's own.
    pub allowed_origins: Vec<String>,
    /// Host names a loopback listener answers besides IP addresses, `localhost` and the
    /// advertised names.
    pub allowed_hosts: Vec<String>,
}

impl BrowserRules {
    /// Check an origin as given in the config: `scheme://host[:port]`, nothing after.
    pub fn check_origin(o: &str) -> Result<String, String> {
        let lower = o.trim().trim_end_matches('/').to_ascii_lowercase();
        let rest = lower
            .strip_prefix("http://")
            .or_else(|| lower.strip_prefix("https://"));
        match rest {
            Some(h) if !h.is_empty() && !h.contains(['/', '?', '#', ' ', '@']) => Ok(lower),
            _ => Err(format!(
                "allowed_origins: {o:?} is not an origin; write scheme://host[:port], e.g. \
                 https://ops.example.com"
            )),
        }
    }

    /// Check a host name as given in the config.
    pub fn check_host(h: &str) -> Result<String, String> {
        let lower = h.trim().to_ascii_lowercase();
        if lower.is_empty() || lower.contains(['/', ':', ' ', '@']) {
            return Err(format!(
                "allowed_hosts: {h:?} is not a host name; write it without scheme or port, \
                 e.g. switchyard.internal"
            ));
        }
        Ok(lower)
    }
}

/// What a listener's guard knows.
#[derive(Clone)]
struct Guard {
    rules: Arc<BrowserRules>,
    /// The node's advertised host names (they are its own).
    own_hosts: Arc<Vec<String>>,
    loopback: bool,
    style: Style,
}

/// The host part of a `Host` value (`h`, `h:port`, `[v6]:port`), as written.
fn host_part(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match a.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

fn request_host(req: &Request) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

impl Guard {
    fn host_allowed(&self, host: &str) -> bool {
        let h = host_part(host);
        let is = |name: &String| h.eq_ignore_ascii_case(name);
        let sub = b".localhost";
        h.parse::<IpAddr>().is_ok()
            || h.eq_ignore_ascii_case("localhost")
            || (h.len() > sub.len()
                && h.as_bytes()[h.len() - sub.len()..].eq_ignore_ascii_case(sub))
            || self.own_hosts.iter().any(is)
            || self.rules.allowed_hosts.iter().any(is)
    }

    /// Why a request is refused, if it is.
    fn refusal(&self, req: &Request) -> Option<String> {
        let host = request_host(req);
        if self.loopback
            && let Some(h) = host
            && !self.host_allowed(h)
        {
            return Some(format!(
                "Host {h:?} is not one of this node's names: a node listening on loopback \
                 answers only its own names (a guard against DNS rebinding); add the name with \
                 --allowed-hosts"
            ));
        }
        let socket = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        if safe && !socket {
            return None;
        }
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
        let trusted = origin
            .as_ref()
            .is_some_and(|o| self.rules.allowed_origins.contains(o));
        let refuse = |why: &str| {
            Some(format!(
                "cross-origin request refused: {why}; a page of another origin may not change \
                 anything here (allow its origin with --allowed-origins)"
            ))
        };
        match req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
        {
            Some("same-origin") | Some("none") => return None,
            Some(site) if !trusted => {
                return refuse(&format!(
                    "the browser says it comes from a {site} page ({})",
                    origin.as_deref().unwrap_or("no Origin")
                ));
            }
            Some(_) => return None,
            None => {}
        }
        let origin = origin?;
        let same = origin
            .split_once("://")
            .is_some_and(|(_, h)| host.is_some_and(|r| r.eq_ignore_ascii_case(h)));
        if same || trusted {
            return None;
        }
        refuse(&format!("Origin {origin} is not this node's origin"))
    }
}

/// The listener's gate: the browser guard's refusal, and every answer in the listener's
/// error shape.
impl crate::gate::Gate for Guard {
    /// The listener's style, and the one of the request's path.
    type Memo = (Style, Style);

    fn admit(&self, req: &Request) -> ((Style, Style), Option<Response>) {
        let path = req.uri().path();
        let memo = (self.style, crate::error_shape::style_for(self.style, path));
        let refused = self.refusal(req).map(|why| {
            tracing::warn!(path, reason = %why, "refused a browser request");
            crate::auth::refuse(
                self.style,
                path,
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                &why,
            )
        });
        (memo, refused)
    }

    fn answer((style, shape): (Style, Style), resp: Response) -> crate::gate::Answer {
        crate::error_shape::reshape(style, shape, resp)
    }
}

/// `app` behind the browser guard of a listener bound to `local`.
pub fn guard(
    app: Router,
    rules: Arc<BrowserRules>,
    own_hosts: Vec<String>,
    local: SocketAddr,
    style: Style,
) -> Router {
    let g = Guard {
        rules,
        own_hosts: Arc::new(
            own_hosts
                .iter()
                .map(|h| host_part(h).to_ascii_lowercase())
                .collect(),
        ),
        loopback: local.ip().is_loopback(),
        style,
    };
    app.layer(crate::gate::GateLayer(g))
}

/// Serve `app` on `listener` until `shutdown`, then let requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    name: &'static str,
    style: Style,
    limits: Limits,
    tls: Option<Arc<switchyard_tls::ServerTls>>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(
                    listener = name,
                    max_connections = limits.max_connections,
                    "connection cap reached: new connections wait until one closes"
                );
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait a little instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = shutdown.clone();
        let tls = tls.clone();
        // The connection holds its slot for as long as its socket lives, also past an upgrade
        // to a WebSocket (the socket then leaves hyper's connection).
        let stream = Held {
            io: stream,
            _slot: permit,
        };
        tracker.spawn(async move {
            match tls {
                None => connection(stream, app, style, limits, stop).await,
                Some(tls) => {
                    // The handshake, like a request head, must finish within the header timeout.
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
                    let accepted =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match accepted {
                        Ok(Ok(s)) => connection(s, app, style, limits, stop).await,
                        Ok(Err(e)) => {
                            tracing::info!(listener = name, error = %e, "TLS handshake refused")
                        }
                        Err(_) => tracing::info!(listener = name, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Serve one connection: requests until the client closes it, it idles past the limit, or
/// the node shuts down.
async fn connection<IO>(
    io: IO,
    app: Router,
    style: Style,
    limits: Limits,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let in_flight = Arc::new(AtomicUsize::new(0));
    let idle_since = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let svc = {
        let (in_flight, idle_since) = (in_flight.clone(), idle_since.clone());
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            let busy = Busy::new(in_flight.clone(), idle_since.clone());
            async move {
                let resp = app
                    .oneshot(req.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never| match never {});
                // The request counts as in flight until its body has been sent (or dropped).
                Ok::<_, std::convert::Infallible>(
                    resp.map(|inner| axum::body::Body::new(Tracked { inner, _busy: busy })),
                )
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    // hyper's own answers to a head it cannot parse get a body in the listener's shape.
    let io = crate::error_shape::HyperAnswers::new(io, style);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_at = *idle_since.lock().expect("idle clock") + limits.idle_timeout;
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep_until(idle_at), if !closing => {
                let idle = in_flight.load(Ordering::SeqCst) == 0
                    && idle_since.lock().expect("idle clock").elapsed() >= limits.idle_timeout;
                if idle {
                    // Nothing in flight: close now (a half-sent request head counts as idle).
                    return;
                }
            }
        }
    }
}

/// A socket with its listener slot: the slot is freed when the socket is dropped.
struct Held<IO> {
    io: IO,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Held<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Held<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct Tracked {
    inner: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a request in flight on its connection for as long as it lives.
struct Busy {
    in_flight: Arc<AtomicUsize>,
    idle_since: Arc<std::sync::Mutex<tokio::time::Instant>>,
}

impl Busy {
    fn new(
        in_flight: Arc<AtomicUsize>,
        idle_since: Arc<std::sync::Mutex<tokio::time::Instant>>,
    ) -> Self {
        in_flight.fetch_add(1, Ordering::SeqCst);
        Self {
            in_flight,
            idle_since,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.idle_since.lock().expect("idle clock") = tokio::time::Instant::now();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(loopback: bool) -> Guard {
        Guard {
            rules: Arc::new(BrowserRules {
                allowed_origins: vec!["https://ops.example.com".into()],
                allowed_hosts: vec!["switchyard.internal".into()],
            }),
            own_hosts: Arc::new(vec!["node1.example.com".into()]),
            loopback,
            style: Style::V1,
        }
    }

    fn req(method: &str, host: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri("/v1/x")
            .header("host", host);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn cross_origin_mutations_and_sockets_are_refused_and_the_rest_pass() {
        let g = guard(true);
        let h = "127.0.0.1:7700";
        let pass = |r: Request| assert_eq!(g.refusal(&r), None, "{:?}", r.headers());
        let refused = |r: Request| assert!(g.refusal(&r).is_some(), "{:?}", r.headers());
        // Scripts and the originals' clients send neither header.
        pass(req("POST", h, &[]));
        pass(req("POST", h, &[("content-type", "text/plain")]));
        // The node's own page.
        pass(req("POST", h, &[("sec-fetch-site", "same-origin")]));
        pass(req("POST", h, &[("origin", "http://127.0.0.1:7700")]));
        pass(req("DELETE", h, &[("sec-fetch-site", "none")]));
        // Another origin.
        refused(req("POST", h, &[("origin", "http://evil.example")]));
        refused(req("PUT", h, &[("origin", "http://127.0.0.1:9999")]));
        refused(req("POST", h, &[("sec-fetch-site", "cross-site")]));
        refused(req(
            "POST",
            h,
            &[
                ("sec-fetch-site", "same-site"),
                ("origin", "http://127.0.0.1:3000"),
            ],
        ));
        refused(req("POST", h, &[("origin", "null")]));
        refused(req(
            "GET",
            h,
            &[("upgrade", "websocket"), ("origin", "http://evil.example")],
        ));
        // Reads stay open to every page (the browser keeps their answers from it).
        pass(req("GET", h, &[("origin", "http://evil.example")]));
        // An allowed origin.
        pass(req(
            "POST",
            h,
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://ops.example.com"),
            ],
        ));
        pass(req("POST", h, &[("origin", "https://ops.example.com")]));
    }

    #[test]
    fn a_loopback_listener_answers_only_its_own_names() {
        let g = guard(true);
        for ok in [
            "127.0.0.1:7700",
            "[::1]:7700",
            "localhost:7700",
            "app.localhost",
            "node1.example.com:7700",
            "SWITCHYARD.internal",
        ] {
            assert_eq!(g.refusal(&req("GET", ok, &[])), None, "{ok}");
        }
        let r = g.refusal(&req("GET", "rebind.evil.example:7700", &[]));
        assert!(r.is_some_and(|m| m.contains("--allowed-hosts")));
        // Not bound to loopback: any name (the operator chose to listen on the network).
        assert_eq!(
            guard(false).refusal(&req("GET", "rebind.evil.example", &[])),
            None
        );
    }

    #[test]
    fn configured_origins_and_hosts_are_checked() {
        assert_eq!(
            BrowserRules::check_origin("HTTPS://Ops.example.com/").unwrap(),
            "https://ops.example.com"
        );
        for bad in ["ops.example.com", "https://", "https://a/b", "ftp://a"] {
            assert!(BrowserRules::check_origin(bad).is_err(), "{bad}");
        }
        assert!(BrowserRules::check_host("a.example").is_ok());
        for bad in ["", "a:80", "http://a"] {
            assert!(BrowserRules::check_host(bad).is_err(), "{bad}");
        }
    }
}
