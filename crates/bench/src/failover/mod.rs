//! `switchyard-bench failover` (B5): leader failover on three loopback nodes, side by side with
//! a three-node etcd at the same heartbeat and election timeouts, in one run; and durable write
//! throughput of each three-node cluster against a single node of the same system.
//!
//! A trial: every member up and caught up; one writer per follower writes in a closed loop; the
//! leader is killed with SIGKILL; the time from the kill to the first acknowledged write on
//! either survivor is the unavailability. The killed member is restarted on its data dir and
//! ports before the next trial. Trials alternate between the systems. At the end each system's
//! acknowledged writes are counted against what the cluster holds: none may be missing.
//!
//! Files: `cluster` (a three-member cluster of either system as processes); this file the
//! trials, the throughput cells and the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::process::{tempdir_here, which};
use crate::stats::median;

mod cluster;

use cluster::*;

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
    crate::cli::emit(&report, a.out.as_deref())?;
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
