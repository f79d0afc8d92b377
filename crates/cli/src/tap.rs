//! `switchyard tap`: the seed-001 tap client. Like the original it connects the socket, posts a
//! pour at an interval with a volume in range, and logs what it hears; unlike it, it survives a
//! server that goes away (reconnecting with backoff) and can stop after `--count` pours.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Debug, Args)]
pub struct TapArgs {
    /// This tap's id (the original's TAP_ID).
    #[arg(long, env = "TAP_ID")]
    pub id: i64,
    /// Seconds between pours.
    #[arg(long, default_value_t = 3.0)]
    pub interval: f64,
    /// Stop after this many acknowledged pours (default: pour forever).
    #[arg(long)]
    pub count: Option<u64>,
    /// Smallest and largest volume poured, in ml.
    #[arg(long, default_value_t = 100)]
    pub min_volume: u32,
    #[arg(long, default_value_t = 1000)]
    pub max_volume: u32,
    /// Do not be told of this tap's own pours.
    #[arg(long)]
    pub skip_own: bool,
}

/// A small xorshift generator: volumes need no cryptographic quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How the tap reaches the server: TLS (`https://`/`wss://` given) and what it trusts.
pub struct Secure {
    pub on: bool,
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

async fn listen(
    url: String,
    token: Option<String>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        eprintln!("Attempting to connect to: {url}");
        let mut request = match url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bad socket address {url}: {e}");
                return;
            }
        };
        if let Some(v) = token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok())
        {
            request.headers_mut().insert("authorization", v);
        }
        let connector = tls
            .as_ref()
            .map(|c| tokio_tungstenite::Connector::Rustls(c.clone()));
        match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
            .await
        {
            Ok((mut ws, _)) => {
                backoff = Duration::from_millis(100);
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        println!("{t}");
                    }
                }
                eprintln!("socket closed; reconnecting");
            }
            Err(e) => eprintln!("cannot connect the socket ({e}); retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The server's host:port: the global `--server` (a scheme is dropped), or the original's
/// `INET_ADDR` when `--server` was left at its default.
pub fn server_addr(server: &str, defaulted: bool) -> String {
    match std::env::var("INET_ADDR") {
        Ok(addr) if defaulted => addr,
        _ => server
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_start_matches("ws://")
            .trim_start_matches("wss://")
            .trim_end_matches('/')
            .to_string(),
    }
}

pub async fn run(
    a: TapArgs,
    addr: String,
    token: Option<String>,
    secure: Secure,
) -> anyhow::Result<()> {
    if a.min_volume > a.max_volume {
        bail!("--min-volume must not exceed --max-volume");
    }
    if !(a.interval.is_finite() && a.interval >= 0.0) {
        bail!("--interval must be a number of seconds, 0 or more");
    }
    eprintln!("\n - Inet Addr: {} \n - Tap ID: {} \n", addr, a.id);
    let (ws, web) = if secure.on {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let mut ws_url = format!("{ws}://{}/sockets/beers", addr);
    if a.skip_own {
        ws_url.push_str(&format!("?tapId={}&skip_own=true", a.id));
    }
    let listener = tokio::spawn(listen(ws_url, token.clone(), secure.tls.clone()));
    let http = switchyard_client::http_client(secure.tls.as_ref(), Some(Duration::from_secs(10)));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rng = Rng(seed ^ (a.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let interval = Duration::from_secs_f64(a.interval);
    let mut poured = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut next = Instant::now();
    while a.count.is_none_or(|c| poured < c) {
        tokio::time::sleep_until(next.into()).await;
        let span = u64::from(a.max_volume - a.min_volume) + 1;
        let volume = u64::from(a.min_volume) + rng.next() % span;
        eprintln!("Posting beer...");
        let mut req = http
            .post(format!("{web}://{}/api/beers", addr))
            .json(&serde_json::json!({"tapId": a.id, "volume": volume}));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                eprintln!("Beer {} added to the collection", v["beer"]["id"]);
                poured += 1;
                backoff = Duration::from_millis(100);
                next = Instant::now() + interval;
            }
            Ok(resp) => {
                // 403 (no glass for the volume) and the like: not the server's absence.
                let status = resp.status();
                eprintln!(
                    "pour refused: {status} {}",
                    resp.text().await.unwrap_or_default()
                );
                next = Instant::now() + interval;
            }
            Err(e) => {
                eprintln!("cannot reach the server ({e}); retrying in {backoff:?}");
                next = Instant::now() + backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    listener.abort();
    Ok(())
}
