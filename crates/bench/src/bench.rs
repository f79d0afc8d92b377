//! `switchyard-bench writes`: durable writes per second and latency, side by side with etcd and
//! Redis (`appendonly yes`, `appendfsync always`) on this machine, in one run.
//!
//! Each system runs as its own process on a temp dir on the same filesystem. Cells (system x
//! client count) are interleaved across rounds, with a pause between cells, and the disk's fsync
//! latency is probed before and after, because this kind of disk changes regime under write
//! volume. Every client runs a closed loop (send, wait for the acknowledgement, repeat):
//! switchyard `POST /v1/bank/accounts/{id}/credit`, etcd `POST /v3/kv/put` on its HTTP/JSON
//! gateway, Redis `SET` over RESP.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// switchyard-bench: switchyard's benchmarks, each run side by side with its peer systems on
/// this machine (see BENCHMARKS.md). The switchyard it runs is `SWITCHYARD_BIN`, else the
/// `switchyard` built beside this binary, else the one on the PATH.
#[derive(Debug, clap::Parser)]
#[command(name = "switchyard-bench", version, about, long_about = None)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCmd,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Durable writes/s and latency percentiles vs etcd and Redis (benchmark B1).
    Writes(WritesArgs),
    /// Device GET and command POST with wrk vs FastAPI, Tornado and a bare axum handler (B4).
    Devices(crate::bench_devices::DevicesArgs),
    /// Leader failover time and 3-node vs 1-node write throughput vs etcd (B5).
    Failover(crate::bench_failover::FailoverArgs),
    /// A work queue drained by 8 worker processes vs a Redis lease queue, PostgreSQL SKIP
    /// LOCKED and Celery, with a kill -9 chaos variant (B3).
    Jobs(crate::bench_jobs::JobsArgs),
    /// One worker process of `jobs`.
    #[command(hide = true)]
    JobsWorker(crate::bench_jobs::WorkerArgs),
    /// Watch fan-out: many subscribers, a fixed write rate, forced reconnects; publish-to-
    /// receive latency, gaps and duplicates vs etcd watch and NATS KV watch (B2).
    Watch(crate::bench_watch::WatchArgs),
    /// Log fan-out: followers of one job's log at a fixed line rate; append-to-receive
    /// latency, lost and repeated lines vs a bare broadcast server (B6).
    Logs(crate::bench_logs::LogsArgs),
    /// The broadcast server B6 uses as its ceiling (started by `logs`).
    #[command(hide = true)]
    LogCeiling { port: u16 },
    /// What a write, a snapshot, a restart and a follower's catch-up cost as the state grows
    /// (0, 100k, 1M finished jobs with their logs).
    State(crate::bench_state::StateArgs),
    /// The bare axum handler B4 uses as its ceiling (started by `devices`).
    #[command(hide = true)]
    Ceiling { port: u16 },
}

#[derive(Debug, Args)]
pub struct WritesArgs {
    /// Concurrent clients per cell, comma-separated.
    #[arg(long, default_value = "1,16,256", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Seconds each cell runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Rounds; cells are interleaved across systems within each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of pause between cells, so one system's writes do not slow the next.
    #[arg(long, default_value_t = 2.0)]
    pub pause: f64,
    /// Systems to run, comma-separated: switchyard, switchyard-tls (the API on HTTPS), etcd,
    /// redis.
    #[arg(
        long,
        default_value = "switchyard,switchyard-tls,etcd,redis",
        value_delimiter = ','
    )]
    pub systems: Vec<String>,
    /// A short run that checks the command works (CI): 1 and 16 clients, 1 s, one round;
    /// peers that are not installed are skipped.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchCmd::Writes(w) => writes(w).await,
        BenchCmd::Devices(d) => crate::bench_devices::run(d).await,
        BenchCmd::Failover(f) => crate::bench_failover::run(f).await,
        BenchCmd::Jobs(j) => crate::bench_jobs::run(j).await,
        BenchCmd::Watch(w) => crate::bench_watch::run(w).await,
        BenchCmd::Logs(l) => crate::bench_logs::run(l).await,
        BenchCmd::State(s) => crate::bench_state::run(s).await,
        BenchCmd::LogCeiling { port } => crate::bench_logs::ceiling(port).await,
        BenchCmd::JobsWorker(w) => crate::bench_jobs::worker(w).await,
        BenchCmd::Ceiling { port } => crate::bench_devices::ceiling(port).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum System {
    Switchyard,
    /// switchyard with the API on HTTPS (a certificate of a CA made for the run).
    SwitchyardTls,
    Etcd,
    Redis,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Switchyard => "switchyard",
            System::SwitchyardTls => "switchyard-tls",
            System::Etcd => "etcd",
            System::Redis => "redis",
        }
    }

    fn switchyard(self) -> bool {
        matches!(self, System::Switchyard | System::SwitchyardTls)
    }

    pub(crate) fn binary(self) -> Option<PathBuf> {
        match self {
            System::Switchyard | System::SwitchyardTls => switchyard_binary().ok(),
            System::Etcd => which("etcd"),
            System::Redis => which("redis-server"),
        }
    }
}

/// The switchyard binary the benchmarks run: `SWITCHYARD_BIN`, else `switchyard` beside this
/// binary (the same cargo target directory), else the one on the PATH.
pub(crate) fn switchyard_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SWITCHYARD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()?.with_file_name("switchyard");
    if beside.is_file() {
        return Ok(beside);
    }
    which("switchyard").context(
        "no switchyard binary: build it (cargo build --release -p switchyard) or set SWITCHYARD_BIN",
    )
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A peer process, killed on drop.
pub(crate) struct Running {
    pub(crate) system: System,
    child: Child,
    /// Its command line, to start it again on the same data dir and ports.
    command: Command,
    /// host:port of its client endpoint.
    pub(crate) addr: String,
    /// What a client trusts to reach it over TLS (switchyard-tls).
    tls: Option<rustls::ClientConfig>,
}

impl Running {
    /// The process id, to read its memory from `/proc`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the process with SIGKILL and start it again with the same command line (same data
    /// dir and ports). Returns once it is spawned, not once it serves.
    pub(crate) fn kill_and_respawn(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = self
            .command
            .spawn()
            .with_context(|| format!("starting {} again", self.system.name()))?;
        Ok(())
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn http(&self) -> reqwest::ClientBuilder {
        let b = reqwest::Client::builder().no_proxy();
        match &self.tls {
            Some(c) => b.tls_backend_preconfigured(c.clone()),
            None => b,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(system: System, dir: &Path, max_clients: usize) -> anyhow::Result<Running> {
    start_with(system, dir, max_clients, &[]).await
}

/// Start `system` as [`start`] does, with `extra` arguments added to its command line (for
/// switchyard: settings of `serve`).
pub(crate) async fn start_with(
    system: System,
    dir: &Path,
    max_clients: usize,
    extra: &[String],
) -> anyhow::Result<Running> {
    let bin = system
        .binary()
        .with_context(|| format!("{} is not installed", system.name()))?;
    let port = free_port()?;
    let peer = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let data = dir.join(system.name());
    std::fs::create_dir_all(&data)?;
    let mut cmd = Command::new(bin);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut tls = None;
    match system {
        System::Switchyard | System::SwitchyardTls => {
            cmd.arg("serve");
            if system == System::SwitchyardTls {
                let certs = dir.join("certs");
                switchyard_tls::certs::init(&certs)?;
                let (cert, key) = switchyard_tls::certs::node(
                    &certs,
                    "bench",
                    &["127.0.0.1".parse().expect("an address")],
                    &[],
                )?;
                // The serve's local worker trusts the run's CA too.
                cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
                cmd.arg("--ca-cert").arg(certs.join("ca.pem"));
                tls = Some(switchyard_tls::client_config(
                    &[&certs.join("ca.pem")],
                    None,
                )?);
            }
            cmd.args([
                "--listen",
                &addr,
                "--peer-listen",
                &format!("127.0.0.1:{peer}"),
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("SWITCHYARD_LOG", "warn");
        }
        System::Etcd => {
            let purl = format!("http://127.0.0.1:{peer}");
            let curl = format!("http://{addr}");
            cmd.args(["--name", "bench", "--log-level", "error", "--logger", "zap"])
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &curl,
                    "--advertise-client-urls",
                    &curl,
                ])
                .args([
                    "--listen-peer-urls",
                    &purl,
                    "--initial-advertise-peer-urls",
                    &purl,
                ])
                .args(["--initial-cluster", &format!("bench={purl}")]);
        }
        System::Redis => {
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ])
                .args(["--daemonize", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&data);
        }
    }
    let child = cmd
        .args(extra)
        .spawn()
        .with_context(|| format!("starting {}", system.name()))?;
    let running = Running {
        system,
        child,
        command: cmd,
        addr,
        tls,
    };
    wait_ready(&running, max_clients).await?;
    Ok(running)
}

async fn wait_ready(r: &Running, max_clients: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = r.http().build()?;
    loop {
        let ok = match r.system {
            System::Switchyard | System::SwitchyardTls => match http
                .get(format!("{}://{}/v1/status", r.scheme(), r.addr))
                .send()
                .await
            {
                Ok(resp) => resp
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["role"] == "leader"),
                Err(_) => false,
            },
            System::Etcd => match http.get(format!("http://{}/health", r.addr)).send().await {
                Ok(resp) => resp.text().await.is_ok_and(|t| t.contains("true")),
                Err(_) => false,
            },
            System::Redis => match tokio::net::TcpStream::connect(&r.addr).await {
                Ok(mut s) => {
                    let mut buf = [0u8; 7];
                    s.write_all(b"PING\r\n").await.is_ok()
                        && s.read_exact(&mut buf).await.is_ok()
                        && &buf == b"+PONG\r\n"
                }
                Err(_) => false,
            },
        };
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("{} did not become ready within 30 s", r.system.name());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if r.system.switchyard() {
        for i in 0..max_clients {
            let resp = http
                .post(format!("{}://{}/v1/bank/accounts", r.scheme(), r.addr))
                .json(&serde_json::json!({"id": format!("bench-{i}")}))
                .send()
                .await?;
            if !resp.status().is_success() && resp.status() != reqwest::StatusCode::CONFLICT {
                bail!(
                    "switchyard: opening bench accounts answered {}",
                    resp.status()
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One client's closed loop until `stop`; returns each acknowledged write's latency in µs.
async fn client_loop(
    system: System,
    base: String,
    http: reqwest::Client,
    idx: usize,
    stop: Instant,
) -> anyhow::Result<Vec<u32>> {
    let mut lat = Vec::new();
    let value = "v".repeat(64);
    match system {
        System::Switchyard | System::SwitchyardTls => {
            let url = format!("{base}/v1/bank/accounts/bench-{idx}/credit");
            while Instant::now() < stop {
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .json(&serde_json::json!({"amount": 1}))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("switchyard answered {}", resp.status());
                }
                resp.bytes().await?;
                lat.push(t.elapsed().as_micros() as u32);
            }
        }
        System::Etcd => {
            let url = format!("{base}/v3/kv/put");
            let body = serde_json::json!({"key": base64(format!("bench-{idx}").as_bytes()), "value": base64(value.as_bytes())});
            while Instant::now() < stop {
                let t = Instant::now();
                let resp = http.post(&url).json(&body).send().await?;
                if !resp.status().is_success() {
                    bail!("etcd answered {}", resp.status());
                }
                resp.bytes().await?;
                lat.push(t.elapsed().as_micros() as u32);
            }
        }
        System::Redis => {
            let addr = base.trim_start_matches("http://");
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let key = format!("bench-{idx}");
            let cmd = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            );
            let mut buf = [0u8; 5];
            while Instant::now() < stop {
                let t = Instant::now();
                s.write_all(cmd.as_bytes()).await?;
                s.read_exact(&mut buf).await?;
                if &buf != b"+OK\r\n" {
                    bail!("redis answered {:?}", String::from_utf8_lossy(&buf));
                }
                lat.push(t.elapsed().as_micros() as u32);
            }
        }
    }
    Ok(lat)
}

pub(crate) struct Cell {
    pub(crate) ops_per_sec: f64,
    /// Each acknowledged write's latency, in µs.
    pub(crate) latencies: Vec<u32>,
}

/// `clients` closed-loop writers against `r` for `seconds` (B1's cell).
pub(crate) async fn run_cell(r: &Running, clients: usize, seconds: f64) -> anyhow::Result<Cell> {
    let http = r
        .http()
        .pool_max_idle_per_host(clients.max(1))
        .timeout(Duration::from_secs(30))
        .build()?;
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let base = format!("{}://{}", r.scheme(), r.addr);
            tokio::spawn(client_loop(r.system, base, http.clone(), i, stop))
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Cell {
        ops_per_sec: latencies.len() as f64 / elapsed,
        latencies,
    })
}

/// p50 and p99 of 4 KiB append + fdatasync on the bench directory's filesystem, in ms.
pub(crate) fn fsync_probe(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u32);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort_unstable();
    Ok((pct(&lat, 50.0), pct(&lat, 99.0)))
}

/// Percentile of sorted µs samples, in ms.
pub(crate) fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn writes(mut a: WritesArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.clients = vec![1, 16];
        a.seconds = 1.0;
        a.rounds = 1;
        a.pause = 0.2;
    }
    if a.clients.is_empty() || a.clients.contains(&0) || a.rounds == 0 || a.seconds <= 0.0 {
        bail!("--clients must be positive numbers, --rounds and --seconds above 0");
    }
    let mut systems = Vec::new();
    for s in &a.systems {
        let sys = match s.as_str() {
            "switchyard" => System::Switchyard,
            "switchyard-tls" => System::SwitchyardTls,
            "etcd" => System::Etcd,
            "redis" => System::Redis,
            other => bail!(
                "--systems: unknown system {other:?}; allowed: switchyard, switchyard-tls, etcd, redis"
            ),
        };
        if sys.binary().is_none() {
            if a.smoke {
                eprintln!("skipping {}: not installed", sys.name());
                continue;
            }
            bail!(
                "{} is not installed (Debian: etcd-server, redis-server)",
                sys.name()
            );
        }
        systems.push(sys);
    }
    let max_clients = *a.clients.iter().max().expect("checked non-empty");
    let dir = tempdir_here()?;
    let probe_before = fsync_probe(&dir)?;
    eprintln!(
        "fsync probe before: p50 {:.3} ms, p99 {:.3} ms",
        probe_before.0, probe_before.1
    );

    let mut running = Vec::new();
    for s in &systems {
        running.push(start(*s, &dir, max_clients).await?);
    }
    let mut results: std::collections::BTreeMap<(usize, System), (Vec<f64>, Vec<u32>)> =
        Default::default();
    for round in 0..a.rounds {
        for &clients in &a.clients {
            // Rotate the order each round so no system always runs first.
            let n = running.len();
            for k in 0..n {
                let r = &running[(k + round) % n];
                let cell = run_cell(r, clients, a.seconds).await?;
                eprintln!(
                    "round {} clients {:>3} {:<10} {:>9.0} ops/s",
                    round + 1,
                    clients,
                    r.system.name(),
                    cell.ops_per_sec
                );
                let e = results.entry((clients, r.system)).or_default();
                e.0.push(cell.ops_per_sec);
                e.1.extend(cell.latencies);
                tokio::time::sleep(Duration::from_secs_f64(a.pause)).await;
            }
        }
    }
    drop(running);
    let probe_after = fsync_probe(&dir)?;
    eprintln!(
        "fsync probe after: p50 {:.3} ms, p99 {:.3} ms",
        probe_after.0, probe_after.1
    );
    let _ = std::fs::remove_dir_all(&dir);

    let report = report(&a, &mut results, probe_before, probe_after);
    print!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

pub(crate) fn tempdir_here() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_dir()?.join(format!("target/bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

type Results = std::collections::BTreeMap<(usize, System), (Vec<f64>, Vec<u32>)>;

fn report(a: &WritesArgs, results: &mut Results, before: (f64, f64), after: (f64, f64)) -> String {
    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let _ = writeln!(
        s,
        "Durable writes, {} round(s) x {} s per cell, interleaved; fsync probe (4 KiB append + \
         fdatasync) p50/p99 before {:.3}/{:.3} ms, after {:.3}/{:.3} ms.\n",
        a.rounds, a.seconds, before.0, before.1, after.0, after.1
    );
    let _ = writeln!(
        s,
        "| clients | system | writes/s (median of rounds) | p50 ms | p99 ms | switchyard / this |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|");
    let mut ours = std::collections::BTreeMap::new();
    for ((clients, sys), (tput, lat)) in results.iter_mut() {
        lat.sort_unstable();
        let m = median(tput);
        if *sys == System::Switchyard {
            ours.insert(*clients, (m, pct(lat, 99.0)));
        }
        let ratio = ours
            .get(clients)
            .map_or("".to_string(), |(o, _)| format!("{:.2}x", o / m));
        let _ = writeln!(
            s,
            "| {clients} | {} | {m:.0} | {:.3} | {:.3} | {ratio} |",
            sys.name(),
            pct(lat, 50.0),
            pct(lat, 99.0)
        );
    }
    if let Some((_, p99)) = ours.get(&1) {
        let fsync = before.0.max(after.0);
        let _ = writeln!(
            s,
            "\nswitchyard 1-client p99 / fsync p50 (the slower of the two probes): {:.2}x",
            p99 / fsync
        );
    }
    s
}
