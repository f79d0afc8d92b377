//! `switchyard-bench state`: what a write, a snapshot, a restart and a follower's catch-up cost
//! as the state grows.
//!
//! For each state size N (finished jobs with their logs), on a fresh single node: load the N
//! jobs through the public API (queued in batches, then leased, given their log lines and
//! finished, or cancelled while queued), then measure B1's 16-client durable write throughput,
//! and again from its start until a snapshot was built (with the slowest write of that span),
//! the time of the snapshots built meanwhile (the `switchyard_snapshot_build_seconds` metric)
//! and the snapshot's size on disk, the server's memory, the time from SIGKILL to the first
//! answered linearizable read after a restart on the same data dir, and the time a second node
//! that joins takes to apply everything the leader has. Each cost is also given as a ratio to
//! the first size's, so the curve is visible.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_client::Client;
use switchyard_types::{JobEnding, JobSpec, LeaseRequest, LogStream, NewLogLine};

use crate::process::{Running, System, free_port, start_with, switchyard_binary, tempdir_here};
use crate::stats::{fsync_probe, pct};
use crate::writes::run_cell;

#[derive(Debug, Args)]
pub struct StateArgs {
    /// State sizes to measure: finished jobs in the state, comma-separated.
    #[arg(long, default_value = "0,100000,1000000", value_delimiter = ',')]
    pub jobs: Vec<u64>,
    /// Every K-th job is leased, given its log lines and finished (succeeded); the others are
    /// cancelled while queued. 1: every job has a log.
    #[arg(long, default_value_t = 1)]
    pub logged_every: u64,
    /// Log lines of each logged job (80 bytes of text each).
    #[arg(long, default_value_t = 3)]
    pub log_lines: usize,
    /// Concurrent clients loading the jobs (each a closed loop).
    #[arg(long, default_value_t = 64)]
    pub loaders: usize,
    /// Seconds of the 16-client write cell.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// A short run that checks the command works (CI): sizes 0 and 1000, a 1-second cell.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Closed-loop writers of the write cell, as B1's middle cell.
const WRITERS: usize = 16;
/// Jobs per `POST /v1/jobs/batch` (the most it takes).
const CHUNK: u64 = 1000;
/// The most lines one `POST /v1/jobs/{id}/logs` takes.
const MAX_LOG_BATCH: usize = 10_000;
/// Bytes of text of each log line.
const LINE_BYTES: usize = 80;
/// The join token of node 1 and of the follower that joins it.
const TOKEN: &str = "switchyard-state-bench-token";
/// How long a restart or a catch-up may take before the run gives up.
const PATIENCE: Duration = Duration::from_secs(900);

/// What one size's state holds and what it cost.
struct Row {
    jobs: u64,
    /// Jobs leased, given their log lines and finished.
    logged: u64,
    /// Jobs cancelled while queued.
    cancelled: u64,
    /// Bytes of log text in the state.
    log_bytes: u64,
    load_per_sec: f64,
    writes_per_sec: f64,
    writes_p99_ms: f64,
    /// Writes/s from the start of the cell until a snapshot was built: what a write costs
    /// with the snapshots' share included.
    sustained_per_sec: f64,
    /// The slowest write over that span (a snapshot that stops the writes shows here).
    writes_max_ms: f64,
    /// Mean time of the snapshots built during the write cell (and after it, until one was).
    snapshot_ms: f64,
    snapshots: u64,
    /// Size of the `snapshot` file after them.
    snapshot_bytes: u64,
    rss_bytes: u64,
    restart_ms: f64,
    catch_up_ms: f64,
}

pub async fn run(mut a: StateArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.jobs = vec![0, 1000];
        a.seconds = 1.0;
        a.loaders = a.loaders.min(16);
    }
    if a.jobs.is_empty() || a.logged_every == 0 || a.loaders == 0 || a.seconds <= 0.0 {
        bail!("--jobs must list sizes; --logged-every, --loaders and --seconds must be above 0");
    }
    if a.log_lines == 0 || a.log_lines > MAX_LOG_BATCH {
        bail!("--log-lines must be 1 to {MAX_LOG_BATCH}");
    }
    let dir = tempdir_here()?;
    let result = measure(&a, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    crate::cli::emit(&report, a.out.as_deref())?;
    Ok(())
}

async fn measure(a: &StateArgs, dir: &Path) -> anyhow::Result<String> {
    let before = fsync_probe(dir)?;
    eprintln!(
        "fsync probe before: p50 {:.3} ms, p99 {:.3} ms",
        before.0, before.1
    );
    let mut rows = Vec::new();
    for &n in &a.jobs {
        let sub = dir.join(format!("n-{n}"));
        std::fs::create_dir_all(&sub)?;
        let row = one_size(a, n, &sub).await?;
        let _ = std::fs::remove_dir_all(&sub);
        rows.push(row);
    }
    let after = fsync_probe(dir)?;
    eprintln!(
        "fsync probe after: p50 {:.3} ms, p99 {:.3} ms",
        after.0, after.1
    );
    Ok(report(a, &rows, before, after))
}

async fn one_size(a: &StateArgs, n: u64, dir: &Path) -> anyhow::Result<Row> {
    let extra: Vec<String> = ["--local-workers", "0", "--join-token", TOKEN]
        .map(String::from)
        .to_vec();
    let mut server = start_with(System::Switchyard, dir, WRITERS, &extra).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::builder().no_proxy().build()?;

    let started = Instant::now();
    let (logged, cancelled) = load(a, &base, n).await?;
    let load_secs = started.elapsed().as_secs_f64();
    let log_bytes = logged * (a.log_lines * LINE_BYTES) as u64;
    eprintln!(
        "N={n}: loaded in {load_secs:.1} s ({logged} logged, {cancelled} cancelled, {:.0} jobs/s)",
        n as f64 / load_secs
    );

    // The write cell; snapshots fall due every `snapshot_logs` entries, so those built meanwhile
    // are of this state. Until one is, keep writing.
    let (sum0, count0) = snapshot_metric(&http, &base).await?;
    let span = Instant::now();
    let cell = run_cell(&server, WRITERS, a.seconds).await?;
    let mut lat = cell.latencies;
    lat.sort_unstable();
    let mut writes = lat.len() as u64;
    let mut slowest = lat.last().copied().unwrap_or(0);
    let (mut sum, mut count) = snapshot_metric(&http, &base).await?;
    while count == count0 {
        if span.elapsed() > PATIENCE {
            bail!("N={n}: no snapshot was built within {PATIENCE:?} of writes");
        }
        let more = run_cell(&server, WRITERS, 1.0).await?;
        writes += more.latencies.len() as u64;
        slowest = slowest.max(more.latencies.iter().copied().max().unwrap_or(0));
        (sum, count) = snapshot_metric(&http, &base).await?;
    }
    let sustained_per_sec = writes as f64 / span.elapsed().as_secs_f64();
    let snapshots = count - count0;
    let snapshot_ms = (sum - sum0) / snapshots as f64 * 1000.0;
    let data = dir.join(System::Switchyard.name());
    let snapshot_bytes = std::fs::metadata(data.join("snapshot"))
        .context("the snapshot file")?
        .len();
    let rss_bytes = rss(server.pid())?;
    eprintln!(
        "N={n}: {:.0} writes/s at {WRITERS} clients, {snapshots} snapshot(s) of {snapshot_ms:.0} ms, \
         snapshot {snapshot_bytes} bytes, RSS {rss_bytes} bytes",
        cell.ops_per_sec
    );

    let restart_ms = restart(&mut server, &http).await?;
    eprintln!("N={n}: restarted in {restart_ms:.0} ms");
    let catch_up_ms = catch_up(&server, &http, dir).await?;
    eprintln!("N={n}: a joining follower caught up in {catch_up_ms:.0} ms");
    drop(server);
    Ok(Row {
        jobs: n,
        logged,
        cancelled,
        log_bytes,
        load_per_sec: if n == 0 { 0.0 } else { n as f64 / load_secs },
        writes_per_sec: cell.ops_per_sec,
        writes_p99_ms: pct(&lat, 99.0),
        sustained_per_sec,
        writes_max_ms: slowest as f64 / 1000.0,
        snapshot_ms,
        snapshots,
        snapshot_bytes,
        rss_bytes,
        restart_ms,
        catch_up_ms,
    })
}

fn spec(i: u64, queue: &str) -> JobSpec {
    let command = vec!["true".into(), "state-bench".into(), i.to_string()];
    JobSpec {
        max_attempts: 1,
        // The loader finishes its leased jobs well within this.
        lease_ttl: 3600,
        ..JobSpec::new(command, queue)
    }
}

fn log_lines(id: u64, lines: usize) -> Vec<NewLogLine> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    (0..lines)
        .map(|k| {
            let mut text = format!("job {id} line {k}: ");
            text.extend(std::iter::repeat_n(
                '.',
                LINE_BYTES.saturating_sub(text.len()),
            ));
            NewLogLine {
                stream: LogStream::Stdout,
                time_ms: now_ms,
                text,
            }
        })
        .collect()
}

/// Load `n` finished jobs with `a.loaders` concurrent clients, each taking batches of
/// [`CHUNK`] jobs into a queue of its own; answers (logged, cancelled).
async fn load(a: &StateArgs, base: &str, n: u64) -> anyhow::Result<(u64, u64)> {
    let next = AtomicU64::new(0);
    let loaders = (0..a.loaders).map(|k| {
        let next = &next;
        async move {
            let c = Client::new(base.to_string());
            let queue = format!("load-{k}");
            let worker = format!("loader-{k}");
            let (mut logged, mut cancelled) = (0u64, 0u64);
            loop {
                let first = next.fetch_add(CHUNK, Ordering::Relaxed);
                if first >= n {
                    return anyhow::Ok((logged, cancelled));
                }
                let count = CHUNK.min(n - first);
                let specs = (first..first + count).map(|i| spec(i, &queue)).collect();
                let ids = c.enqueue_batch(specs, None).await?;
                let mut to_lease = 0u32;
                for (i, id) in (first..).zip(&ids) {
                    if i % a.logged_every == 0 {
                        to_lease += 1;
                    } else {
                        c.cancel_job(*id).await?;
                        cancelled += 1;
                    }
                }
                while to_lease > 0 {
                    let leased = c
                        .lease(&LeaseRequest {
                            worker: worker.clone(),
                            queue: queue.clone(),
                            labels: Default::default(),
                            max: to_lease,
                            wait: 1.0,
                            finish: None,
                            until_drained: false,
                        })
                        .await?;
                    for lj in leased.jobs {
                        let id = lj.job.id;
                        c.append_logs(id, lj.token, 0, &log_lines(id, a.log_lines))
                            .await?;
                        c.finish_job(id, lj.token, JobEnding::Exited, Some(0), None)
                            .await?;
                        logged += 1;
                        to_lease -= 1;
                    }
                }
            }
        }
    });
    let done = futures::future::try_join_all(loaders).await?;
    Ok(done
        .into_iter()
        .fold((0, 0), |(l, c), (dl, dc)| (l + dl, c + dc)))
}

/// The sum (seconds) and count of `switchyard_snapshot_build_seconds` on `/metrics`.
async fn snapshot_metric(http: &reqwest::Client, base: &str) -> anyhow::Result<(f64, u64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Ok((
        value("switchyard_snapshot_build_seconds_sum").unwrap_or(0.0),
        value("switchyard_snapshot_build_seconds_count").unwrap_or(0.0) as u64,
    ))
}

/// A process's resident memory, from `/proc/PID/status`.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS in /proc/PID/status")?;
    Ok(kib * 1024)
}

/// A bench account's balance by a linearizable read; `None` until the node answers one.
async fn balance(http: &reqwest::Client, base: &str) -> Option<u64> {
    let r = http
        .get(format!("{base}/v1/bank/accounts/bench-0"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<serde_json::Value>().await.ok()?["balance"].as_u64()
}

/// SIGKILL, start again on the same data dir and ports, and time until the node answers a
/// linearizable read (which must see every acknowledged write).
async fn restart(server: &mut Running, http: &reqwest::Client) -> anyhow::Result<f64> {
    let base = format!("http://{}", server.addr);
    let expected = balance(http, &base)
        .await
        .context("no balance before the restart")?;
    let killed = Instant::now();
    server.kill_and_respawn()?;
    loop {
        if let Some(b) = balance(http, &base).await {
            if b != expected {
                bail!("after the restart bench-0 holds {b}, before it {expected}");
            }
            return Ok(killed.elapsed().as_secs_f64() * 1000.0);
        }
        if killed.elapsed() > PATIENCE {
            bail!("the restarted node did not answer a read within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A joining node's process, killed on drop.
struct Follower(Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn applied_index(http: &reqwest::Client, url: &str) -> Option<u64> {
    let r = http
        .get(format!("{url}/v1/status"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some(
        r.json::<switchyard_types::Status>()
            .await
            .ok()?
            .applied_index,
    )
}

/// Start node 2 with `--join` on an empty data dir and time until it has applied as far as
/// the leader has.
async fn catch_up(leader: &Running, http: &reqwest::Client, dir: &Path) -> anyhow::Result<f64> {
    let data = dir.join("follower");
    std::fs::create_dir_all(&data)?;
    let api = format!("127.0.0.1:{}", free_port()?);
    let log = dir.join("follower.log");
    let started = Instant::now();
    let child = Command::new(switchyard_binary()?)
        .args(["serve", "--node-id", "2", "--local-workers", "0"])
        .args(["--listen", &api])
        .args(["--peer-listen", &format!("127.0.0.1:{}", free_port()?)])
        .arg("--data-dir")
        .arg(&data)
        .args(["--join", &format!("http://{}", leader.addr)])
        .args(["--join-token", TOKEN])
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting the follower")?;
    let mut follower = Follower(child);
    let (furl, lurl) = (format!("http://{api}"), format!("http://{}", leader.addr));
    loop {
        if let Some(f) = applied_index(http, &furl).await
            && f > 0
            && applied_index(http, &lurl).await.is_some_and(|l| f >= l)
        {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if let Ok(Some(status)) = follower.0.try_wait() {
            bail!(
                "the follower exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if started.elapsed() > PATIENCE {
            bail!("the follower did not catch up within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(a: &StateArgs, rows: &[Row], before: (f64, f64), after: (f64, f64)) -> String {
    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let which = match a.logged_every {
        1 => "every job".to_string(),
        k => format!("one job in {k}"),
    };
    let others = if a.logged_every > 1 {
        ", the others cancelled while queued"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "State size: a fresh single node per size, loaded with finished jobs through the API \
         by {} concurrent clients ({which} leased, given {} log line(s) of {LINE_BYTES} bytes and \
         finished{others}); then {WRITERS} closed-loop writers for \
         {} s (B1), then more until a snapshot is built (writes/s and the slowest write over that \
         whole span), SIGKILL and restart, a joining follower. \
         Ratios are to the first row. fsync probe (4 KiB append + fdatasync) p50/p99 before \
         {:.3}/{:.3} ms, after {:.3}/{:.3} ms.\n",
        a.loaders, a.log_lines, a.seconds, before.0, before.1, after.0, after.1
    );
    let _ = writeln!(
        s,
        "| jobs | state | load jobs/s | writes/s ({WRITERS} clients) | p99 ms | \
         writes/s through a snapshot | max ms | snapshot ms | \
         snapshot MiB | restart ms | catch-up ms | RSS MiB |"
    );
    let _ = writeln!(
        s,
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let Some(first) = rows.first() else {
        return s;
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let cell = |v: f64, base: f64, digits: usize| {
        if base > 0.0 {
            format!("{v:.digits$} ({:.2}x)", v / base)
        } else {
            format!("{v:.digits$}")
        }
    };
    for r in rows {
        let state = if r.jobs == 0 {
            "empty".to_string()
        } else {
            format!(
                "{} succeeded with logs, {} cancelled; {:.1} MiB of log text",
                r.logged,
                r.cancelled,
                mib(r.log_bytes)
            )
        };
        let load = if r.jobs == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", r.load_per_sec)
        };
        let _ = writeln!(
            s,
            "| {} | {state} | {load} | {} | {} | {} | {} | {} ({} built) | {} | {} | {} | {} |",
            r.jobs,
            cell(r.writes_per_sec, first.writes_per_sec, 0),
            cell(r.writes_p99_ms, first.writes_p99_ms, 2),
            cell(r.sustained_per_sec, first.sustained_per_sec, 0),
            cell(r.writes_max_ms, first.writes_max_ms, 1),
            cell(r.snapshot_ms, first.snapshot_ms, 0),
            r.snapshots,
            cell(mib(r.snapshot_bytes), mib(first.snapshot_bytes), 1),
            cell(r.restart_ms, first.restart_ms, 0),
            cell(r.catch_up_ms, first.catch_up_ms, 0),
            cell(mib(r.rss_bytes), mib(first.rss_bytes), 0),
        );
    }
    s
}
