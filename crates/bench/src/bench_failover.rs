//! `switchyard-bench failover` (B5): leader failover on three loopback nodes, side by side with
//! a three-node etcd at the same heartbeat and election timeouts, in one run; and durable write
//! throughput of each three-node cluster against a single node of the same system.
//!
//! A trial: every member up and caught up; one writer per follower writes in a closed loop; the
//! leader is killed with SIGKILL; the time from the kill to the first acknowledged write on
//! either survivor is the unavailability. The killed member is restarted on its data dir and
//! ports before the next trial. Trials alternate between the systems. At the end each system's
//! acknowledged writes are counted against what the cluster holds: none may be missing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::bench::{base64, median, tempdir_here, which};

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Leader kills per system.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Heartbeat interval of both systems, in ms.
    #[arg(long, default_value_t = 150)]
    pub heartbeat_ms: u64,
    /// Election timeout of both systems, in ms: how long a follower waits without hearing from
    /// a leader before it campaigns (each system randomises it upwards).
    #[arg(long, default_value_t = 1000)]
    pub election_timeout_ms: u64,
    /// Clients of the throughput cells.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds per throughput cell.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Systems, comma-separated: switchyard, etcd.
    #[arg(long, default_value = "switchyard,etcd", value_delimiter = ',')]
    pub systems: Vec<String>,
    /// A short run that checks the command works (CI): 2 trials, 1-second cells; etcd is
    /// skipped when not installed.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// How often a new write attempt starts on each survivor during a failover trial.
const PROBE: Duration = Duration::from_millis(25);

/// Sequence numbers from here on are readiness probes, not counted writes.
const READY: u64 = u64::MAX / 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sys {
    Switchyard,
    Etcd,
}

impl Sys {
    fn name(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard",
            Sys::Etcd => "etcd",
        }
    }
}

struct Member {
    api: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A cluster of `n` local processes of one system.
struct Cluster {
    sys: Sys,
    bin: PathBuf,
    members: Vec<Member>,
    heartbeat_ms: u64,
    election_ms: u64,
    http: reqwest::Client,
    /// Key prefix of this cluster's writes (etcd) / account id (switchyard).
    tag: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Cluster {
    async fn start(sys: Sys, n: usize, dir: &Path, a: &FailoverArgs) -> anyhow::Result<Self> {
        let bin = match sys {
            Sys::Switchyard => crate::bench::switchyard_binary()?,
            Sys::Etcd => which("etcd").context("etcd is not installed (Debian: etcd-server)")?,
        };
        // Switchyard binds port 0 at its first start and says which ports it got (no window in
        // which another process can take them); it restarts on those. etcd cannot, so it gets
        // every port chosen at once, each listener held until all are chosen.
        let held: Vec<std::net::TcpListener> = (0..2 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?;
        drop(held);
        let mut members = Vec::new();
        let pick = |k: usize| if sys == Sys::Switchyard { 0 } else { ports[k] };
        for i in 0..n {
            let d = dir.join(format!("{}-{n}-{}", sys.name(), i + 1));
            std::fs::create_dir_all(&d)?;
            members.push(Member {
                api: pick(2 * i),
                peer: pick(2 * i + 1),
                dir: d,
                child: None,
            });
        }
        let mut c = Cluster {
            sys,
            bin,
            members,
            heartbeat_ms: a.heartbeat_ms,
            election_ms: a.election_timeout_ms,
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(a.clients.max(4))
                .build()?,
            tag: format!("b5-{n}"),
        };
        for i in 0..n {
            c.spawn(i)?;
            if sys == Sys::Switchyard && i == 0 {
                // Node 1 initialises the cluster; the others join it once it leads.
                c.await_ready(&[0]).await?;
            }
        }
        let all: Vec<usize> = (0..n).collect();
        c.await_ready(&all).await?;
        if sys == Sys::Switchyard {
            let r = c
                .http
                .post(format!("{}/v1/bank/accounts", c.url(0)))
                .json(&json!({"id": c.tag}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!(
                    "switchyard: opening the bench account answered {}",
                    r.status()
                );
            }
        }
        Ok(c)
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].api)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = self.members.len();
        let m = &self.members[i];
        let mut cmd = Command::new(&self.bin);
        // Each process's own log beside its data, appended across restarts, for a failure report.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.with_extension("log"))?;
        cmd.stdout(Stdio::null()).stderr(log);
        let (api, peer) = (
            format!("127.0.0.1:{}", m.api),
            format!("127.0.0.1:{}", m.peer),
        );
        match self.sys {
            Sys::Switchyard => {
                cmd.args(["serve", "--node-id", &(i + 1).to_string()])
                    .args(["--listen", &api, "--peer-listen", &peer])
                    .args(["--heartbeat-ms", &self.heartbeat_ms.to_string()])
                    .args(["--election-timeout-ms", &self.election_ms.to_string()])
                    .arg("--data-dir")
                    .arg(&m.dir)
                    .env("SWITCHYARD_LOG", "warn")
                    // Every member of one benchmark cluster runs with the same join token.
                    .env("SWITCHYARD_JOIN_TOKEN", "switchyard-failover-bench-token");
                if i > 0 {
                    cmd.args(["--join", &self.url(0)]);
                }
            }
            Sys::Etcd => {
                let initial: Vec<String> = self
                    .members
                    .iter()
                    .enumerate()
                    .map(|(k, o)| format!("n{}=http://127.0.0.1:{}", k + 1, o.peer))
                    .collect();
                let curl = format!("http://{api}");
                let purl = format!("http://{peer}");
                cmd.args(["--name", &format!("n{}", i + 1)])
                    .args(["--log-level", "error", "--logger", "zap"])
                    .arg("--data-dir")
                    .arg(&m.dir)
                    .args(["--listen-client-urls", &curl])
                    .args(["--advertise-client-urls", &curl])
                    .args(["--listen-peer-urls", &purl])
                    .args(["--initial-advertise-peer-urls", &purl])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--initial-cluster-token", &format!("b5-{n}")])
                    .args(["--heartbeat-interval", &self.heartbeat_ms.to_string()])
                    .args(["--election-timeout", &self.election_ms.to_string()]);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.sys.name()))?;
        self.members[i].child = Some(child);
        if self.members[i].api == 0 {
            let (api, peer) = self.announced(i)?;
            self.members[i].api = api;
            self.members[i].peer = peer;
        }
        Ok(())
    }

    /// The ports switchyard member `i` bound, from the line its log starts with ("... serving
    /// the API on http://A (peer RPC on P)").
    fn announced(&mut self, i: usize) -> anyhow::Result<(u16, u16)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let path = self.members[i].dir.with_extension("log");
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(rest) = text.split("serving the API on http://").nth(1) {
                let port = |s: &str| -> Option<u16> { s.rsplit(':').next()?.parse().ok() };
                let api = rest.split_whitespace().next().and_then(port);
                let peer = rest
                    .split("peer RPC on ")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .and_then(port);
                if let (Some(api), Some(peer)) = (api, peer) {
                    return Ok((api, peer));
                }
            }
            let exited = self.members[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                bail!("switchyard member {} exited ({status}):\n{text}", i + 1);
            }
            if Instant::now() > deadline {
                bail!(
                    "switchyard member {} did not say its ports within 30 s:\n{text}",
                    i + 1
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether member `i` leads, as it says itself.
    async fn is_leader(&self, i: usize) -> bool {
        let t = Duration::from_secs(2);
        match self.sys {
            Sys::Switchyard => {
                let r = self
                    .http
                    .get(format!("{}/v1/status", self.url(i)))
                    .timeout(t)
                    .send()
                    .await;
                match r {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["role"] == "leader"),
                    Err(_) => false,
                }
            }
            Sys::Etcd => {
                let r = self
                    .http
                    .post(format!("{}/v3/maintenance/status", self.url(i)))
                    .json(&json!({}))
                    .timeout(t)
                    .send()
                    .await;
                match r {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| {
                        v["leader"].is_string() && v["leader"] == v["header"]["member_id"]
                    }),
                    Err(_) => false,
                }
            }
        }
    }

    async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_some() && self.is_leader(i).await {
                return Some(i);
            }
        }
        None
    }

    /// The leader, asking again for up to 30 s (a loaded machine may answer a status slowly,
    /// or be between leaders for a moment).
    async fn await_leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("{}: no leader within 30 s", self.sys.name());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One durable write through member `i`; `true` when acknowledged.
    async fn write(&self, i: usize, seq: u64, timeout: Duration) -> bool {
        let req = match self.sys {
            Sys::Switchyard => self
                .http
                .post(format!(
                    "{}/v1/bank/accounts/{}/credit",
                    self.url(i),
                    self.tag
                ))
                .json(&json!({"amount": 1})),
            Sys::Etcd => self
                .http
                .post(format!("{}/v3/kv/put", self.url(i)))
                .json(&json!({
                    // Readiness probes (seq from READY) stay outside the counted range.
                    "key": base64(if seq >= READY {
                        format!("{}-ready/{seq}", self.tag)
                    } else {
                        format!("{}/{seq:012}", self.tag)
                    }.as_bytes()),
                    "value": base64(b"v"),
                })),
        };
        match req.timeout(timeout).send().await {
            // etcd's gateway answers errors with 200 and an "error" field on some paths.
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v.get("error").is_none()),
            _ => false,
        }
    }

    /// The last lines each member's process wrote, for an error message.
    fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let text = std::fs::read_to_string(m.dir.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
            let _ = write!(
                out,
                "\n  member {} (api port {}):\n    {tail}",
                i + 1,
                m.api
            );
        }
        out
    }

    /// Whether member `i` sees a settled membership of every started member as a voter
    /// (switchyard).
    async fn settled_voters(&self, i: usize) -> bool {
        let running = self.members.iter().filter(|m| m.child.is_some()).count();
        let r = self
            .http
            .get(format!("{}/v1/cluster", self.url(i)))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let Ok(r) = r else { return false };
        r.json::<switchyard_types::Cluster>().await.is_ok_and(|c| {
            !c.changing && c.members.len() == running && c.members.iter().all(|m| m.voter)
        })
    }

    /// How many writes the cluster holds (read through member `i`).
    async fn count(&self, i: usize) -> anyhow::Result<u64> {
        match self.sys {
            Sys::Switchyard => {
                let v: Value = self
                    .http
                    .get(format!("{}/v1/bank/accounts/{}", self.url(i), self.tag))
                    .send()
                    .await?
                    .json()
                    .await?;
                v["balance"].as_u64().context("balance")
            }
            Sys::Etcd => {
                let prefix = format!("{}/", self.tag);
                let end = format!("{}0", self.tag); // '/' + 1
                let v: Value = self
                    .http
                    .post(format!("{}/v3/kv/range", self.url(i)))
                    .json(&json!({
                        "key": base64(prefix.as_bytes()),
                        "range_end": base64(end.as_bytes()),
                        "count_only": true,
                    }))
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(v["count"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0))
            }
        }
    }

    /// Wait until the given members answer, a leader exists, and a write through each
    /// succeeds (so each is caught up enough to serve).
    async fn await_ready(&self, which: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seq = READY;
        loop {
            let mut ok = self.leader().await.is_some();
            for &i in which {
                if !ok {
                    break;
                }
                seq += 1;
                ok = match self.sys {
                    // The bench account may not exist yet: a linearizable read is enough then.
                    // A member that has just joined serves before its promotion to voter has
                    // completed; killing the leader then could leave no quorum, so every
                    // member must also see all of them as voters, with no change under way.
                    Sys::Switchyard => {
                        self.http
                            .get(format!("{}/v1/bank/accounts", self.url(i)))
                            .timeout(Duration::from_secs(2))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success())
                            && self.settled_voters(i).await
                    }
                    Sys::Etcd => {
                        self.write(i, seq, Duration::from_secs(2)).await
                            && self.count(i).await.is_ok()
                    }
                };
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not become ready within 60 s{}",
                    self.sys.name(),
                    self.logs_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Throughput of `clients` closed-loop writers through the leader for `seconds`.
async fn throughput(c: &Cluster, clients: usize, seconds: f64) -> anyhow::Result<f64> {
    let leader = c.await_leader().await?;
    let done = AtomicU64::new(0);
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let work = (0..clients).map(|k| {
        let done = &done;
        async move {
            let mut seq = (k as u64) << 40;
            while Instant::now() < stop {
                seq += 1;
                if c.write(leader, seq, Duration::from_secs(10)).await {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    futures::future::join_all(work).await;
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// One failover trial: kill the leader, time the first acknowledged write, restart it.
/// Adds the writes acknowledged during the trial to `acked`.
async fn trial(c: &mut Cluster, acked: &AtomicU64, next_seq: &AtomicU64) -> anyhow::Result<f64> {
    let all: Vec<usize> = (0..c.members.len()).collect();
    c.await_ready(&all).await?;
    let leader = c.await_leader().await?;
    c.kill(leader);
    let killed = Instant::now();
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    // New attempts start every PROBE on every survivor, each with its own timeout, so the first
    // acknowledgement is seen within PROBE of when the cluster could first give one.
    let cr = &*c;
    let mut inflight = futures::stream::FuturesUnordered::new();
    let mut tick = tokio::time::interval(PROBE);
    let give_up = killed + Duration::from_secs(60);
    let first = loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() > give_up {
                    bail!(
                        "{}: no write acknowledged within 60 s of the kill{}",
                        c.sys.name(),
                        c.logs_tail()
                    );
                }
                for &i in &survivors {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    inflight.push(async move { cr.write(i, seq, Duration::from_secs(5)).await });
                }
            }
            Some(ok) = futures::StreamExt::next(&mut inflight) => {
                if ok {
                    acked.fetch_add(1, Ordering::Relaxed);
                    break Instant::now();
                }
            }
        }
    };
    // Let the attempts still in flight finish, counting their acknowledgements too.
    while let Some(ok) = futures::StreamExt::next(&mut inflight).await {
        if ok {
            acked.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(inflight);
    c.spawn(leader)?;
    Ok(first.duration_since(killed).as_secs_f64() * 1000.0)
}

pub async fn run(mut a: FailoverArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.trials = 2;
        a.seconds = 1.0;
        a.clients = 8;
    }
    if a.trials == 0 || a.clients == 0 || a.seconds <= 0.0 {
        bail!("--trials, --clients and --seconds must be above 0");
    }
    if a.election_timeout_ms < 5 * a.heartbeat_ms {
        bail!("--election-timeout-ms must be at least 5 heartbeats");
    }
    let mut systems = Vec::new();
    for s in &a.systems {
        let sys = match s.as_str() {
            "switchyard" => Sys::Switchyard,
            "etcd" => Sys::Etcd,
            other => bail!("--systems: unknown system {other:?}; allowed: switchyard, etcd"),
        };
        if sys == Sys::Etcd && which("etcd").is_none() {
            if a.smoke {
                eprintln!("skipping etcd: not installed");
                continue;
            }
            bail!("etcd is not installed (Debian: etcd-server)");
        }
        systems.push(sys);
    }
    let dir = tempdir_here()?;
    let result = measure(&a, &systems, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    print!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

struct Outcome {
    sys: Sys,
    unavailable_ms: Vec<f64>,
    acked: u64,
    held: u64,
    single: f64,
    three: f64,
}

async fn measure(a: &FailoverArgs, systems: &[Sys], dir: &Path) -> anyhow::Result<String> {
    let mut clusters = Vec::new();
    for &s in systems {
        clusters.push(Cluster::start(s, 3, dir, a).await?);
    }
    let counters: Vec<(AtomicU64, AtomicU64)> = systems
        .iter()
        .map(|_| (AtomicU64::new(0), AtomicU64::new(1)))
        .collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    for t in 0..a.trials {
        for (k, c) in clusters.iter_mut().enumerate() {
            let ms = trial(c, &counters[k].0, &counters[k].1).await?;
            eprintln!(
                "trial {:>2} {:<10} first write {ms:>7.0} ms after the kill",
                t + 1,
                c.sys.name()
            );
            times[k].push(ms);
        }
    }
    let mut out = Vec::new();
    for (k, c) in clusters.iter().enumerate() {
        let all: Vec<usize> = (0..3).collect();
        c.await_ready(&all).await?;
        let held = c.count(c.await_leader().await?).await?;
        let three = throughput(c, a.clients, a.seconds).await?;
        eprintln!("{:<10} 3 nodes {three:>8.0} writes/s", c.sys.name());
        out.push(Outcome {
            sys: c.sys,
            unavailable_ms: times[k].clone(),
            acked: counters[k].0.load(Ordering::Relaxed),
            held,
            single: 0.0,
            three,
        });
    }
    drop(clusters);
    for o in &mut out {
        let c = Cluster::start(o.sys, 1, dir, a).await?;
        o.single = throughput(&c, a.clients, a.seconds).await?;
        eprintln!("{:<10} 1 node  {:>8.0} writes/s", o.sys.name(), o.single);
    }
    Ok(report(a, &mut out))
}

fn report(a: &FailoverArgs, out: &mut [Outcome]) -> String {
    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let _ = writeln!(
        s,
        "Leader failover, 3 loopback nodes, heartbeat {} ms, election timeout {} ms (etcd \
         randomises it up to 2x, switchyard up to 1.5x), {} trials per system, alternating. \
         Unavailability: SIGKILL of the leader to the first acknowledged write through a \
         survivor; a new write attempt starts on each survivor every {} ms, so a request stuck \
         on the dead leader does not hide the recovery.\n",
        a.heartbeat_ms,
        a.election_timeout_ms,
        a.trials,
        PROBE.as_millis()
    );
    let _ = writeln!(
        s,
        "| system | median ms | min ms | max ms | acked writes | held | lost |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for o in out.iter_mut() {
        let min = o
            .unavailable_ms
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let max = o.unavailable_ms.iter().copied().fold(0.0, f64::max);
        let m = median(&mut o.unavailable_ms);
        // Writes that failed may still have been applied, so a cluster may hold more than
        // was acknowledged; it must never hold fewer.
        let lost = o.acked.saturating_sub(o.held);
        let _ = writeln!(
            s,
            "| {} | {m:.0} | {min:.0} | {max:.0} | {} | {} | {lost} |",
            o.sys.name(),
            o.acked,
            o.held
        );
    }
    if let [sy, et] = out
        && sy.sys == Sys::Switchyard
    {
        let _ = writeln!(
            s,
            "\nswitchyard median / etcd median: {:.2}x (at or below 1.00x is the target)",
            median(&mut sy.unavailable_ms) / median(&mut et.unavailable_ms)
        );
    }
    let _ = writeln!(
        s,
        "\nDurable write throughput, {} closed-loop clients through the leader, {} s:\n",
        a.clients, a.seconds
    );
    let _ = writeln!(s, "| system | 1 node writes/s | 3 nodes writes/s | 3 / 1 |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for o in out.iter() {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.2}x |",
            o.sys.name(),
            o.single,
            o.three,
            o.three / o.single
        );
    }
    if let [sy, et] = out
        && sy.sys == Sys::Switchyard
    {
        let _ = writeln!(
            s,
            "\nswitchyard 3 nodes / etcd 3 nodes: {:.2}x",
            sy.three / et.three
        );
    }
    s
}
