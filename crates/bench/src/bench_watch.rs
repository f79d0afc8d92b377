//! `switchyard-bench watch` (benchmark B2): watch fan-out. Publishers write at a fixed rate,
//! many subscribers watch every write, and some subscribers' connections are closed on purpose
//! while it runs; each subscriber resumes from the last revision it received. Side by side with
//! etcd's watch (through its HTTP/JSON gateway) and a NATS KV watch (JetStream).
//!
//! Each publisher writes its own key with one write in flight, so the k-th write of a key is
//! its k-th event: switchyard credits 1 to an account (the balance is k), etcd puts a key (its
//! `version` is k), NATS publishes k to the key's subject. The publisher notes the time it
//! sends write k, and a subscriber that receives event k of a key takes publish-to-receive
//! latency from it, and checks k: a jump is a gap (events never received), a repeat a
//! duplicate. At the end each subscriber must hold every acknowledged write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use std::fmt::Write as _;
use switchyard_client::{Client, Watch, WatchItem};

use crate::bench::{
    System, base64, free_port, fsync_probe, median, pct, start_with, tempdir_here, which,
};
use crate::bench_wire::Nats;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Subscribers per system, each on its own connection.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Events published per second, all publishers together.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Publishers, each writing its own key with one write in flight.
    #[arg(long, default_value_t = 20)]
    publishers: usize,
    /// Seconds of publishing per round.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds; the systems take turns within each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Every this many seconds, close some subscribers' connections (they resume).
    #[arg(long, default_value_t = 1.0)]
    kick_every: f64,
    /// The fraction of subscribers closed each time (0 to 1).
    #[arg(long, default_value_t = 0.1)]
    kick_fraction: f64,
    /// Seconds subscribers have after publishing ends to receive the rest.
    #[arg(long, default_value_t = 30.0)]
    drain: f64,
    /// Systems to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "switchyard,etcd,nats"
    )]
    systems: Vec<Sys>,
    /// A short run that checks the command works (CI): 20 subscribers, 200 events/s, 2 s,
    /// one round; peers that are not installed are skipped.
    #[arg(long)]
    smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Sys {
    Switchyard,
    Etcd,
    Nats,
}

impl Sys {
    fn label(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard",
            Sys::Etcd => "etcd (gateway watch)",
            Sys::Nats => "NATS KV (JetStream)",
        }
    }

    fn missing(self) -> Option<&'static str> {
        match self {
            Sys::Switchyard => None,
            Sys::Etcd => which("etcd")
                .is_none()
                .then_some("etcd is not installed (Debian: etcd-server)"),
            Sys::Nats => nats_server()
                .is_none()
                .then_some("nats-server is not installed (Debian: nats-server)"),
        }
    }
}

fn nats_server() -> Option<PathBuf> {
    which("nats-server").or_else(|| {
        let p = PathBuf::from("/usr/sbin/nats-server");
        p.is_file().then_some(p)
    })
}

/// The KV bucket of the NATS runs.
const BUCKET: &str = "bench";
/// NATS KV keeps at most this many values per key (its largest history): a subscriber that
/// resumes further back than that on one key misses values, by design of KV.
const NATS_HISTORY: u64 = 64;

/// A running system.
enum Server {
    /// switchyard and etcd, started as the other benchmarks start them.
    Bench(Box<crate::bench::Running>),
    Nats {
        child: Child,
        addr: String,
    },
}

impl Server {
    fn addr(&self) -> &str {
        match self {
            Server::Bench(r) => &r.addr,
            Server::Nats { addr, .. } => addr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Nats { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn start(sys: Sys, dir: &Path) -> anyhow::Result<Server> {
    match sys {
        Sys::Switchyard => Ok(Server::Bench(Box::new(
            start_with(System::Switchyard, dir, 0, &[]).await?,
        ))),
        Sys::Etcd => Ok(Server::Bench(Box::new(
            start_with(System::Etcd, dir, 0, &[]).await?,
        ))),
        Sys::Nats => {
            let port = free_port()?;
            let addr = format!("127.0.0.1:{port}");
            let store = dir.join("nats");
            std::fs::create_dir_all(&store)?;
            let child = Command::new(nats_server().context("nats-server")?)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(&store)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting nats-server")?;
            let server = Server::Nats { child, addr };
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut nats = loop {
                match Nats::connect(server.addr()).await {
                    Ok(n) => break n,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => return Err(e.context("nats-server did not start")),
                }
            };
            // The stream a KV bucket is (as `nats kv add` makes it), on the file store.
            let config = serde_json::json!({
                "name": format!("KV_{BUCKET}"),
                "subjects": [format!("$KV.{BUCKET}.>")],
                "retention": "limits",
                "max_consumers": -1, "max_msgs": -1, "max_bytes": -1, "max_age": 0,
                "max_msgs_per_subject": NATS_HISTORY, "max_msg_size": -1,
                "discard": "new", "storage": "file", "num_replicas": 1,
                "duplicate_window": 120_000_000_000u64,
                "allow_rollup_hdrs": true, "deny_delete": true, "allow_direct": true,
            });
            let reply = nats
                .request(
                    &format!("$JS.API.STREAM.CREATE.KV_{BUCKET}"),
                    config.to_string().as_bytes(),
                )
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&reply)?;
            if v.get("error").is_some() {
                bail!("nats: creating the KV stream answered {v}");
            }
            Ok(server)
        }
    }
}

/// What one round shares between its publishers and subscribers.
struct Round {
    sys: Sys,
    index: usize,
    /// Publish times: µs since `epoch`, per key, per write (write k at k - 1).
    sent_us: Vec<Vec<AtomicU64>>,
    /// Acknowledged writes per key.
    published: Vec<AtomicU64>,
    epoch: Instant,
    /// etcd keys (base64, as its gateway sends them) to key index.
    etcd_keys: HashMap<String, usize>,
}

impl Round {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn switchyard_account(&self, key: usize) -> String {
        format!("w{}-p{key}", self.index)
    }

    fn etcd_key(&self, key: usize) -> String {
        format!("fan/{}/p{key}", self.index)
    }

    fn nats_subject(&self, key: usize) -> String {
        format!("$KV.{BUCKET}.r{}.p{key}", self.index)
    }

    fn published_total(&self) -> u64 {
        self.published
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .sum()
    }
}

/// One received event: write `seq` of key `key`.
struct Ev {
    key: usize,
    seq: u64,
}

/// The key index after the last `p` of a name (`w3-p17`, `fan/3/p17`, `...r3.p17`).
fn key_of(name: &str) -> Option<usize> {
    name.rsplit_once('p')?.1.parse().ok()
}

/// A subscriber's connection, resumed from the last revision it delivered.
enum Feed {
    /// switchyard's own client: it resumes by itself after `disconnect`.
    Switchyard(Box<Watch>),
    Etcd(EtcdWatch),
    Nats(NatsWatch),
}

impl Feed {
    async fn open(r: &Round, server: &Server, from: u64) -> anyhow::Result<Self> {
        let base = format!("http://{}", server.addr());
        Ok(match r.sys {
            Sys::Switchyard => {
                let prefix = format!("bank/accounts/w{}-", r.index);
                let w = Client::new(base).watch(&prefix, Some(from)).await?;
                Feed::Switchyard(Box::new(w))
            }
            Sys::Etcd => Feed::Etcd(EtcdWatch {
                http: reqwest::Client::builder().no_proxy().build()?,
                base,
                prefix: format!("fan/{}/", r.index),
                next_rev: from + 1,
                stream: None,
                buf: Vec::new(),
                reconnects: 0,
                opened: false,
            }),
            Sys::Nats => {
                let mut w = NatsWatch {
                    addr: server.addr().to_string(),
                    filter: format!("$KV.{BUCKET}.r{}.>", r.index),
                    next_seq: from + 1,
                    conn: None,
                    reconnects: 0,
                };
                w.connect().await?;
                Feed::Nats(w)
            }
        })
    }

    /// Wait for the next events and append them to `out` (none for a bookmark).
    async fn next(&mut self, r: &Round, out: &mut Vec<Ev>) -> anyhow::Result<()> {
        match self {
            Feed::Switchyard(w) => {
                if let WatchItem::Event(e) = w.next().await? {
                    if e.event["kind"] != "credited" {
                        return Ok(());
                    }
                    let key = key_of(&e.topic).context("an event of another topic")?;
                    let seq = e.event["account"]["balance"]
                        .as_u64()
                        .context("a credit event without a balance")?;
                    out.push(Ev { key, seq });
                }
                Ok(())
            }
            Feed::Etcd(w) => w.next(r, out).await,
            Feed::Nats(w) => w.next(out).await,
        }
    }

    /// Close the connection now; the next call to `next` resumes where it left off.
    fn kick(&mut self) {
        match self {
            Feed::Switchyard(w) => w.disconnect(),
            Feed::Etcd(w) => w.stream = None,
            Feed::Nats(w) => w.conn = None,
        }
    }

    fn reconnects(&self) -> u64 {
        match self {
            Feed::Switchyard(w) => w.reconnects,
            Feed::Etcd(w) => w.reconnects,
            Feed::Nats(w) => w.reconnects,
        }
    }
}

type Body = futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>;

/// An etcd watch over the gateway's `POST /v3/watch` (a stream of JSON objects).
struct EtcdWatch {
    http: reqwest::Client,
    base: String,
    prefix: String,
    /// The revision to resume from: one past the last one received.
    next_rev: u64,
    stream: Option<Body>,
    buf: Vec<u8>,
    reconnects: u64,
    opened: bool,
}

impl EtcdWatch {
    async fn connect(&mut self) -> anyhow::Result<()> {
        let mut end = self.prefix.clone().into_bytes();
        *end.last_mut().expect("a non-empty prefix") += 1;
        let body = serde_json::json!({"create_request": {
            "key": base64(self.prefix.as_bytes()),
            "range_end": base64(&end),
            "start_revision": self.next_rev.to_string(),
        }});
        let resp = self
            .http
            .post(format!("{}/v3/watch", self.base))
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("etcd watch answered {}", resp.status());
        }
        self.stream = Some(resp.bytes_stream().boxed());
        self.buf.clear();
        if self.opened {
            self.reconnects += 1;
        }
        self.opened = true;
        Ok(())
    }

    async fn next(&mut self, r: &Round, out: &mut Vec<Ev>) -> anyhow::Result<()> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.connect().await?;
                continue;
            };
            match stream.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => {
                    self.stream = None;
                    continue;
                }
            }
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<EtcdMsg>();
            let mut used = 0;
            let mut got = false;
            while let Some(m) = it.next() {
                let m = match m {
                    Ok(m) => m,
                    Err(e) if e.is_eof() => break,
                    Err(e) => bail!("etcd watch: {e}"),
                };
                used = it.byte_offset();
                let Some(res) = m.result else {
                    bail!("etcd watch: {}", m.error.unwrap_or_default());
                };
                if res.canceled {
                    bail!(
                        "etcd watch cancelled (compacted at {:?})",
                        res.compact_revision
                    );
                }
                for e in res.events {
                    let rev: u64 = e.kv.mod_revision.parse()?;
                    let key = *r
                        .etcd_keys
                        .get(&e.kv.key)
                        .context("an etcd event of another key")?;
                    out.push(Ev {
                        key,
                        seq: e.kv.version.parse()?,
                    });
                    self.next_rev = self.next_rev.max(rev + 1);
                    got = true;
                }
            }
            self.buf.drain(..used);
            if got {
                return Ok(());
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct EtcdMsg {
    result: Option<EtcdResult>,
    error: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct EtcdResult {
    #[serde(default)]
    events: Vec<EtcdEvent>,
    #[serde(default)]
    canceled: bool,
    compact_revision: Option<String>,
}

#[derive(serde::Deserialize)]
struct EtcdEvent {
    kv: EtcdKv,
}

#[derive(serde::Deserialize)]
struct EtcdKv {
    key: String,
    mod_revision: String,
    version: String,
}

/// A NATS KV watch: an ephemeral push consumer on the bucket's stream from a stream sequence,
/// with flow control and heartbeats as NATS's own clients make their ordered consumers.
struct NatsWatch {
    addr: String,
    filter: String,
    /// The stream sequence to resume from.
    next_seq: u64,
    conn: Option<Nats>,
    reconnects: u64,
}

impl NatsWatch {
    async fn connect(&mut self) -> anyhow::Result<()> {
        let mut n = Nats::connect(&self.addr).await?;
        // A subscription of its own, outside the inbox wildcard (which the server does not
        // count as interest in a push consumer's deliveries).
        let deliver = format!("{}_deliver", n.inbox);
        n.sub(&deliver, 1).await?;
        let config = serde_json::json!({"stream_name": format!("KV_{BUCKET}"), "config": {
            "deliver_subject": deliver,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": self.next_seq,
            "ack_policy": "none",
            "replay_policy": "instant",
            "filter_subject": self.filter,
            "flow_control": true,
            "idle_heartbeat": 5_000_000_000u64,
            "mem_storage": true,
            "num_replicas": 1,
        }});
        let reply = n
            .request(
                &format!("$JS.API.CONSUMER.CREATE.KV_{BUCKET}"),
                config.to_string().as_bytes(),
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&reply)?;
        if v.get("error").is_some() {
            bail!("nats: creating a consumer answered {v}");
        }
        self.conn = Some(n);
        Ok(())
    }

    async fn next(&mut self, out: &mut Vec<Ev>) -> anyhow::Result<()> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                self.reconnects += 1;
                self.connect().await?;
                continue;
            };
            let m = match conn.next_msg().await {
                Ok(m) => m,
                Err(_) => {
                    self.conn = None;
                    continue;
                }
            };
            if m.is_status() {
                // A flow control request carries a subject to answer on.
                if let Some(reply) = &m.reply {
                    conn.publish(reply, None, b"").await?;
                }
                continue;
            }
            // $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
            let reply = m
                .reply
                .as_deref()
                .context("a NATS delivery without a reply")?;
            let tokens: Vec<&str> = reply.split('.').collect();
            let sseq: u64 = match tokens.len() {
                9 => tokens[5].parse()?,
                n if n >= 12 => tokens[7].parse()?,
                _ => bail!("nats: unexpected delivery subject {reply}"),
            };
            self.next_seq = self.next_seq.max(sseq + 1);
            out.push(Ev {
                key: key_of(&m.subject).context("a NATS message of another subject")?,
                seq: std::str::from_utf8(&m.payload)?.parse()?,
            });
            return Ok(());
        }
    }
}

/// What one subscriber saw in a round.
#[derive(Default)]
struct SubResult {
    /// Publish-to-receive latencies, µs.
    latencies: Vec<u32>,
    received: u64,
    /// Writes never received (a jump in a key's sequence, or missing at the end).
    gaps: u64,
    /// Writes received again.
    duplicates: u64,
    reconnects: u64,
    /// Why it stopped early, if it did.
    failed: Option<String>,
}

async fn subscriber(
    mut feed: Feed,
    r: Arc<Round>,
    kick: Arc<tokio::sync::Notify>,
    mut done: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> SubResult {
    let mut res = SubResult::default();
    let mut last = vec![0u64; r.published.len()];
    let mut evs = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if *done.borrow() {
            if last.iter().sum::<u64>() >= r.published_total() {
                break;
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain);
        }
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + drain);
        tokio::select! {
            got = feed.next(&r, &mut evs) => {
                if let Err(e) = got {
                    res.failed = Some(format!("{e:#}"));
                    break;
                }
                let now = r.now_us();
                for ev in evs.drain(..) {
                    res.received += 1;
                    let Some(prev) = last.get_mut(ev.key) else { continue };
                    if ev.seq <= *prev {
                        res.duplicates += 1;
                        continue;
                    }
                    res.gaps += ev.seq - *prev - 1;
                    *prev = ev.seq;
                    if let Some(sent) = r.sent_us[ev.key].get(ev.seq as usize - 1) {
                        let sent = sent.load(Ordering::Acquire);
                        res.latencies.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                    }
                }
            }
            _ = kick.notified() => feed.kick(),
            _ = done.changed(), if !*done.borrow() => {}
            _ = tokio::time::sleep_until(until), if deadline.is_some() => break,
        }
    }
    for (k, l) in last.iter().enumerate() {
        res.gaps += r.published[k].load(Ordering::Acquire).saturating_sub(*l);
    }
    res.reconnects = feed.reconnects();
    res
}

/// Write key `key` at `rate` per second until `end`, one write in flight.
async fn publisher(
    r: Arc<Round>,
    server_addr: String,
    key: usize,
    interval: Duration,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
) -> anyhow::Result<()> {
    let base = format!("http://{server_addr}");
    let sy = Client::new(base.clone());
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut nats = match r.sys {
        Sys::Nats => Some(Nats::connect(&server_addr).await?),
        _ => None,
    };
    let account = r.switchyard_account(key);
    let etcd_key = base64(r.etcd_key(key).as_bytes());
    let subject = r.nats_subject(key);
    for (k, slot) in r.sent_us[key].iter().enumerate() {
        let due = start + interval * k as u32;
        // A publisher behind its schedule stops at the end too.
        if due >= end || tokio::time::Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let seq = k as u64 + 1;
        slot.store(r.now_us(), Ordering::Release);
        match r.sys {
            Sys::Switchyard => {
                let a = sy.credit(&account, 1, None).await?;
                if a.balance != seq {
                    bail!(
                        "switchyard: {account} has balance {} after write {seq}",
                        a.balance
                    );
                }
            }
            Sys::Etcd => {
                let resp = http
                    .post(format!("{base}/v3/kv/put"))
                    .json(&serde_json::json!({"key": etcd_key, "value": base64(seq.to_string().as_bytes())}))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("etcd put answered {}", resp.status());
                }
                resp.bytes().await?;
            }
            Sys::Nats => {
                let n = nats.as_mut().expect("connected above");
                let ack = n.request(&subject, seq.to_string().as_bytes()).await?;
                let v: serde_json::Value = serde_json::from_slice(&ack)?;
                if v.get("seq").is_none() {
                    bail!("nats publish answered {v}");
                }
            }
        }
        r.published[key].store(seq, Ordering::Release);
    }
    Ok(())
}

/// The revision subscribers start after, once this round's keys exist.
async fn prepare(r: &Round, server: &Server) -> anyhow::Result<u64> {
    let base = format!("http://{}", server.addr());
    match r.sys {
        Sys::Switchyard => {
            let c = Client::new(base);
            for k in 0..r.published.len() {
                c.open_account(&r.switchyard_account(k), None).await?;
            }
            Ok(c.status().await?.revision)
        }
        Sys::Etcd => {
            let v: serde_json::Value = reqwest::Client::builder()
                .no_proxy()
                .build()?
                .post(format!("{base}/v3/kv/range"))
                .json(&serde_json::json!({"key": base64(b"fan/")}))
                .send()
                .await?
                .json()
                .await?;
            v["header"]["revision"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("etcd range answered {v}"))
        }
        Sys::Nats => {
            let mut n = Nats::connect(server.addr()).await?;
            let info = n
                .request(&format!("$JS.API.STREAM.INFO.KV_{BUCKET}"), b"")
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&info)?;
            v["state"]["last_seq"]
                .as_u64()
                .with_context(|| format!("nats stream info answered {v}"))
        }
    }
}

/// One round's numbers for one system.
struct Cell {
    published_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    gaps: u64,
    duplicates: u64,
    reconnects: u64,
    failed: Vec<String>,
}

async fn run_round(a: &WatchArgs, sys: Sys, index: usize, server: &Server) -> anyhow::Result<Cell> {
    let per_key_rate = a.rate / a.publishers as f64;
    let writes_per_key = (per_key_rate * a.seconds).ceil() as usize + 1;
    let mut r = Round {
        sys,
        index,
        sent_us: (0..a.publishers)
            .map(|_| (0..writes_per_key).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        published: (0..a.publishers).map(|_| AtomicU64::new(0)).collect(),
        epoch: Instant::now(),
        etcd_keys: HashMap::new(),
    };
    r.etcd_keys = (0..a.publishers)
        .map(|k| (base64(r.etcd_key(k).as_bytes()), k))
        .collect();
    let from = prepare(&r, server).await?;
    let r = Arc::new(r);

    // Every subscriber connected before the first write.
    let feeds: Vec<Feed> = futures::stream::iter(0..a.subscribers)
        .map(|_| Feed::open(&r, server, from))
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let drain = Duration::from_secs_f64(a.drain);
    let mut kicks = Vec::new();
    let mut subs = Vec::new();
    for feed in feeds {
        let kick = Arc::new(tokio::sync::Notify::new());
        kicks.push(kick.clone());
        subs.push(tokio::spawn(subscriber(
            feed,
            r.clone(),
            kick,
            done_rx.clone(),
            drain,
        )));
    }

    let interval = Duration::from_secs_f64(1.0 / per_key_rate);
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let pubs: Vec<_> = (0..a.publishers)
        .map(|k| {
            // Spread the publishers' writes over the interval.
            let offset = interval.mul_f64(k as f64 / a.publishers as f64);
            tokio::spawn(publisher(
                r.clone(),
                server.addr().to_string(),
                k,
                interval,
                start + offset,
                end,
            ))
        })
        .collect();
    let per_kick = ((a.subscribers as f64 * a.kick_fraction).ceil() as usize).min(a.subscribers);
    let kick_every = Duration::from_secs_f64(a.kick_every);
    let mut next_kick = start + kick_every;
    let mut at = 0;
    let mut pubs = futures::future::join_all(pubs);
    let published = loop {
        tokio::select! {
            res = &mut pubs => break res,
            _ = tokio::time::sleep_until(next_kick), if per_kick > 0 && next_kick < end => {
                for _ in 0..per_kick {
                    kicks[at].notify_one();
                    at = (at + 1) % kicks.len();
                }
                next_kick += kick_every;
            }
        }
    };
    let publish_secs = start.elapsed().as_secs_f64();
    for p in published {
        p??;
    }
    let _ = done_tx.send(true);
    let mut lat = Vec::new();
    let mut cell = Cell {
        published_per_s: r.published_total() as f64 / publish_secs,
        delivered_per_s: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        gaps: 0,
        duplicates: 0,
        reconnects: 0,
        failed: Vec::new(),
    };
    let mut received = 0;
    for s in subs {
        let s = s.await?;
        received += s.received;
        cell.gaps += s.gaps;
        cell.duplicates += s.duplicates;
        cell.reconnects += s.reconnects;
        cell.failed.extend(s.failed);
        lat.extend(s.latencies);
    }
    cell.delivered_per_s = received as f64 / publish_secs;
    lat.sort_unstable();
    cell.p50_ms = pct(&lat, 50.0);
    cell.p99_ms = pct(&lat, 99.0);
    Ok(cell)
}

pub async fn run(mut a: WatchArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.subscribers = 20;
        a.rate = 200.0;
        a.publishers = 4;
        a.seconds = 2.0;
        a.rounds = 1;
        a.kick_every = 0.5;
        a.drain = 10.0;
    }
    if a.subscribers == 0 || a.publishers == 0 || a.rounds == 0 {
        bail!("--subscribers, --publishers and --rounds must be at least 1");
    }
    if !(a.rate > 0.0 && a.seconds > 0.0 && a.kick_every > 0.0 && a.drain > 0.0) {
        bail!("--rate, --seconds, --kick-every and --drain must be above 0");
    }
    if !(0.0..=1.0).contains(&a.kick_fraction) {
        bail!("--kick-fraction must be from 0 to 1");
    }
    let mut systems = Vec::new();
    for s in &a.systems {
        match s.missing() {
            None if !systems.contains(s) => systems.push(*s),
            None => {}
            Some(why) if a.smoke => eprintln!("skipping {}: {why}", s.label()),
            Some(why) => bail!("{why}"),
        }
    }
    let dir = tempdir_here()?;
    let probe_before = fsync_probe(&dir)?;
    let mut servers = Vec::new();
    for s in &systems {
        servers.push((*s, start(*s, &dir).await?));
    }
    let mut cells: std::collections::BTreeMap<Sys, Vec<Cell>> = Default::default();
    for round in 0..a.rounds {
        let n = servers.len();
        for k in 0..n {
            let (sys, server) = &servers[(k + round) % n];
            let cell = run_round(&a, *sys, round, server).await?;
            eprintln!(
                "round {} {:<22} published {:>6.0}/s delivered {:>8.0}/s p50 {:>8.2} ms p99 {:>8.2} ms gaps {} duplicates {} reconnects {}",
                round + 1,
                sys.label(),
                cell.published_per_s,
                cell.delivered_per_s,
                cell.p50_ms,
                cell.p99_ms,
                cell.gaps,
                cell.duplicates,
                cell.reconnects
            );
            for f in cell.failed.iter().take(3) {
                eprintln!("  a subscriber stopped: {f}");
            }
            cells.entry(*sys).or_default().push(cell);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    drop(servers);
    let probe_after = fsync_probe(&dir)?;
    let _ = std::fs::remove_dir_all(&dir);

    let report = report(&a, &mut cells, probe_before, probe_after);
    print!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(ours) = cells.get(&Sys::Switchyard) {
        let gaps: u64 = ours.iter().map(|c| c.gaps).sum();
        let dups: u64 = ours.iter().map(|c| c.duplicates).sum();
        let failed: usize = ours.iter().map(|c| c.failed.len()).sum();
        if gaps + dups > 0 || failed > 0 {
            bail!(
                "switchyard missed {gaps} and repeated {dups} events; {failed} subscriber(s) stopped early"
            );
        }
    }
    Ok(())
}

fn report(
    a: &WatchArgs,
    cells: &mut std::collections::BTreeMap<Sys, Vec<Cell>>,
    before: (f64, f64),
    after: (f64, f64),
) -> String {
    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let _ = writeln!(
        s,
        "Watch fan-out: {} subscribers, {} events/s from {} publishers (one key each, one write \
         in flight), {} s x {} round(s), systems interleaved; every {} s {:.0}% of the \
         subscribers' connections are closed and resumed from their last revision. fsync probe \
         (4 KiB append + fdatasync) p50/p99 before {:.3}/{:.3} ms, after {:.3}/{:.3} ms.\n",
        a.subscribers,
        a.rate,
        a.publishers,
        a.seconds,
        a.rounds,
        a.kick_every,
        a.kick_fraction * 100.0,
        before.0,
        before.1,
        after.0,
        after.1
    );
    let _ = writeln!(
        s,
        "| system | published/s | delivered/s | p50 ms | p99 ms | gaps | duplicates | reconnects | p99 this / switchyard |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ours = None;
    for (sys, runs) in cells.iter_mut() {
        let col = |f: fn(&Cell) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let (published, delivered, p50, p99) = (
            col(|c| c.published_per_s),
            col(|c| c.delivered_per_s),
            col(|c| c.p50_ms),
            col(|c| c.p99_ms),
        );
        if *sys == Sys::Switchyard {
            ours = Some(p99);
        }
        let ratio = ours.map_or(String::new(), |o| format!("{:.2}x", p99 / o));
        let _ = writeln!(
            s,
            "| {} | {published:.0} | {delivered:.0} | {p50:.2} | {p99:.2} | {} | {} | {} | {ratio} |",
            sys.label(),
            runs.iter().map(|c| c.gaps).sum::<u64>(),
            runs.iter().map(|c| c.duplicates).sum::<u64>(),
            runs.iter().map(|c| c.reconnects).sum::<u64>(),
        );
    }
    let failed: Vec<String> = cells
        .iter()
        .flat_map(|(sys, runs)| {
            let n: usize = runs.iter().map(|c| c.failed.len()).sum();
            (n > 0).then(|| format!("{}: {n}", sys.label()))
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(
            s,
            "\nSubscribers that stopped early (their missing events count as gaps): {}",
            failed.join(", ")
        );
    }
    s
}
