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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{Running, System, start, tempdir_here};
use crate::stats::{fsync_probe, median, pct};
use crate::wire::base64;

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

pub async fn run(mut a: WritesArgs) -> anyhow::Result<()> {
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
    crate::cli::emit(&report, a.out.as_deref())?;
    Ok(())
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
