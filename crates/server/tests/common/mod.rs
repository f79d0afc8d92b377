//! Test support: start a real node on a temp dir with port-0 listeners.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use switchyard_server::{Config, Listeners, Server};

/// Start a node on `dir`, with `tweak` applied to the default config, and wait for it to lead.
pub async fn start(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
    start_with(dir, tweak, None, None).await
}

/// Like [`start`], also serving the mv and Altair faces on their own listeners.
pub async fn start_with(
    dir: &Path,
    tweak: impl FnOnce(&mut Config),
    mv: Option<tokio::net::TcpListener>,
    altair: Option<tokio::net::TcpListener>,
) -> Server {
    let mut config = Config::new(dir);
    tweak(&mut config);
    let config = config.validate().expect("valid test config");
    let mut listeners = Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
        .await
        .expect("bind");
    listeners.mv = mv;
    listeners.altair = altair;
    let server = switchyard_server::start(config, listeners)
        .await
        .expect("start");
    server
        .node
        .wait_for_leader(Duration::from_secs(10))
        .await
        .expect("a one-member cluster elects itself");
    server
}

/// Await `fut` for at most `secs` seconds, failing the test with `what` otherwise.
/// A loopback address where connections are refused for as long as the socket is held: bound
/// but not listening, so no other test's listener can take the port meanwhile (a port freed by
/// dropping a listener can be).
pub fn refused_port() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

pub async fn within<T>(secs: u64, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs}s waiting for {what}"))
}

/// Send `bytes` on a new TCP connection to `addr` and return everything the server answers
/// until it closes the connection or 10 s pass (a raw exchange, for what an HTTP client would
/// not send: a half-sent request, a body that never comes).
pub async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Send `bytes` on a new TCP connection to `addr` and return the answer's head and its body
/// (read to `content-length`), or what came before the server closed or 10 s passed.
pub async fn raw_answer(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before it has read everything (a head too large).
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) => (head.to_string(), body.to_string()),
        None => (text, String::new()),
    }
}

/// `GET url` answered with JSON.
pub async fn get_json(url: String) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Wait until the mv face at `base` (`http://host:port`) serves its device: the face
/// creates it once the node leads.
pub async fn await_mv_device(base: &str) {
    within(10, "the mv device", async {
        while reqwest::get(format!("{base}/state"))
            .await
            .unwrap()
            .status()
            != 200
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
