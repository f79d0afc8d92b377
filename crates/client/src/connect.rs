//! Clients that do not use the network: a [`Connector`] opens a byte stream to a server by its
//! address, and the client speaks HTTP/1.1 and WebSocket over it exactly as over TCP. The
//! deterministic cluster of `switchyard-testing` connects its clients to its in-process nodes
//! this way, so test code uses this very client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;

/// A byte stream to a server.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// What [`Connector::connect`] returns.
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = std::io::Result<BoxIo>> + Send + 'a>>;

/// Opens connections for a client instead of TCP (see [`crate::Client::with_connector`]).
pub trait Connector: Send + Sync {
    /// A byte stream to the server at `authority`, the `host:port` of one of the client's
    /// base URLs. An error means the connection could not be made (nothing was sent).
    fn connect<'a>(&'a self, authority: &'a str) -> ConnectFuture<'a>;
}

/// A shared connector (printable, so the client stays `Debug`).
#[derive(Clone)]
pub(crate) struct Shared(pub Arc<dyn Connector>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

/// The `host:port` of a base URL.
pub(crate) fn authority(base: &str) -> &str {
    base.split_once("://")
        .map_or(base, |(_, rest)| rest)
        .trim_end_matches('/')
}

/// A streamed response body.
pub(crate) type BodyStream = futures::stream::BoxStream<'static, Result<Bytes, String>>;

/// Send one request over a new connection: its status and body stream. A connection that
/// cannot be made is [`Error::Connect`]; one that fails after the request left is
/// [`Error::Io`].
pub(crate) async fn send(
    connector: &Shared,
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<(StatusCode, BodyStream), Error> {
    let authority = authority(base);
    let io = connector
        .0
        .connect(authority)
        .await
        .map_err(|e| Error::Connect(format!("{authority}: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| Error::Connect(format!("{authority}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body)))
        .map_err(|e| Error::Decode(format!("request: {e}")))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| Error::Io(format!("{authority}: {e}")))?;
    let status = resp.status();
    let stream = resp
        .into_body()
        .into_data_stream()
        .map(|r| r.map_err(|e| e.to_string()))
        .boxed();
    Ok((status, stream))
}

/// [`send`], then the whole body, within `timeout`.
pub(crate) async fn send_all(
    connector: &Shared,
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), Error> {
    let work = async {
        let (status, mut stream) = send(connector, base, method, path, headers, body).await?;
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk.map_err(Error::Io)?);
        }
        Ok((status, Bytes::from(all)))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Io(format!("no answer within {timeout:?}")))?
}
