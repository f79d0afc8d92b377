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
//!
//! Files: `feeds` (one subscriber's stream on each system, resumed when closed); this file the
//! systems, the publishers, the rounds and the report.

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
use switchyard_client::Client;

use crate::process::{System, free_port, start_with, tempdir_here, which};
use crate::stats::{fsync_probe, median, p50_p99};
use crate::wire::Nats;
use crate::wire::base64;

mod feeds;

use feeds::*;

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
    Bench(Box<crate::process::Running>),
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
    (cell.p50_ms, cell.p99_ms) = p50_p99(&mut lat);
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
    crate::cli::emit(&report, a.out.as_deref())?;
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
