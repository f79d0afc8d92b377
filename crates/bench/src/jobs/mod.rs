//! `switchyard-bench jobs` (benchmark B3): a work queue drained by 8 worker processes, side by
//! side with the Kubernetes work-queue tutorial's Redis lease protocol (AOF always, and AOF off
//! labelled as such), a PostgreSQL `FOR UPDATE SKIP LOCKED` queue, and Celery.
//!
//! Every side is durable except the labelled Redis run: switchyard fsyncs each command, Redis
//! runs `appendfsync always`, PostgreSQL `synchronous_commit = on`, Celery's broker is that
//! Redis. The workers are separate processes (`switchyard-bench jobs-worker`, hidden) that
//! speak each system's lease protocol one job at a time (lease, then acknowledge) and run
//! nothing: the jobs are no-ops. Celery runs its own worker (`-c 8`, prefork, late acks).
//!
//! Phases, each on a fresh server: **throughput** (N jobs queued first, then 8 workers drain
//! them until the queue is provably empty: jobs/s), **dispatch latency** (workers waiting, jobs
//! queued one at a time at a fixed rate: enqueue-to-start p50/p99), and **chaos** (as
//! throughput, with `kill -9` of one worker every few seconds and a replacement started:
//! lost jobs, must be 0, and duplicate executions, allowed only after a lease expired).
//!
//! Files: `systems` (how each system is found, started and stopped), `queue` (each system's
//! queue: enqueue, lease, acknowledge), `worker` (the worker processes and the handle on them);
//! this file the phases, the drain and the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::process::{free_port, tempdir_here};
use crate::stats::median;
use crate::wire::Redis;

mod queue;
mod systems;
mod worker;

use queue::*;
use systems::*;
use worker::*;

pub(crate) use worker::{WorkerArgs, worker};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Systems: switchyard, redis, redis-nofsync, postgres, celery.
    #[arg(
        long,
        default_value = "switchyard,redis,redis-nofsync,postgres,celery",
        value_delimiter = ','
    )]
    systems: Vec<String>,
    /// Jobs per throughput and chaos run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs per Celery throughput run (it is an order of magnitude slower).
    #[arg(long, default_value_t = 20_000)]
    celery_jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Rounds, the systems interleaved in each; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Dispatch-latency phase: jobs queued one at a time, at this rate per second.
    #[arg(long, default_value_t = 1000)]
    latency_jobs: usize,
    #[arg(long, default_value_t = 200.0)]
    latency_rate: f64,
    /// Chaos phase: kill -9 a worker every this many seconds (0: no chaos phase).
    #[arg(long, default_value_t = 10.0)]
    chaos_every: f64,
    /// Lease TTL in seconds on every system.
    #[arg(long, default_value_t = 5)]
    lease_ttl: u64,
    /// Short run that checks the command works (CI); missing peers are skipped.
    #[arg(long)]
    smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
struct Outcome {
    jobs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: usize,
    duplicates: usize,
    kills: usize,
}

fn summarise(n: usize, elapsed: Duration, execs: &[(u64, i64)], kills: usize) -> Outcome {
    let mut seen = std::collections::HashSet::new();
    let mut lats: Vec<u32> = Vec::with_capacity(execs.len());
    for (id, lat) in execs {
        seen.insert(*id);
        // µs from queueing to running; a clock step back counts as 0.
        lats.push((*lat).clamp(0, i64::from(u32::MAX)) as u32);
    }
    let (p50_ms, p99_ms) = crate::stats::p50_p99(&mut lats);
    Outcome {
        jobs_per_s: n as f64 / elapsed.as_secs_f64(),
        p50_ms,
        p99_ms,
        lost: (0..n as u64).filter(|i| !seen.contains(i)).count(),
        duplicates: execs.len() - seen.len(),
        kills,
    }
}

/// Throughput (and chaos, when `chaos_every` is set): queue `n`, then drain with the workers.
async fn drain(
    sys: Sys,
    a: &JobsArgs,
    dir: &Path,
    n: usize,
    chaos_every: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let server = start(sys, dir).await?;
    enqueue_bulk(sys, &server.addr, 0..n, a.lease_ttl).await?;
    if sys == Sys::Celery {
        return drain_celery(&server.addr, n).await;
    }
    let out_dir = dir.join(format!("out-{}-{}", sys.name(), free_port()?));
    let t0 = Instant::now();
    let mut w = Workers::start(sys, &server.addr, &out_dir, a.workers, a.lease_ttl, false)?;
    let mut kills = 0;
    let mut next_kill = chaos_every.map(|e| t0 + e);
    let deadline = t0 + Duration::from_secs(1800);
    while !w.all_exited()? {
        if let Some(at) = next_kill
            && Instant::now() >= at
        {
            // Once every job has run, no more kills: the last workers only need to see the
            // queue drained (a replacement started now would keep the run alive forever).
            let ran: std::collections::HashSet<u64> =
                w.executions()?.into_iter().map(|(id, _)| id).collect();
            if ran.len() >= n {
                next_kill = None;
            } else {
                if w.kill_and_replace(kills)? {
                    kills += 1;
                }
                next_kill = chaos_every.map(|e| at + e);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{}: the workers did not drain the queue in 30 min",
                sys.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t0.elapsed();
    Ok(summarise(n, elapsed, &w.executions()?, kills))
}

async fn drain_celery(addr: &str, n: usize) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let mut worker = Command::new("celery")
        .args([
            "-A",
            "celery_jobs",
            "worker",
            "-c",
            "8",
            "--pool",
            "prefork",
        ])
        .args(["--loglevel", "WARNING", "-Q", "bench", "--without-gossip"])
        .args(["--without-mingle", "--without-heartbeat"])
        .env("BENCH_BROKER", format!("redis://{addr}/0"))
        .current_dir(peers_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the celery worker")?;
    let mut r = Redis::connect(addr).await?;
    let deadline = t0 + Duration::from_secs(1800);
    loop {
        if r.cmd(&[b"LLEN", b"done"]).await?.int()? as usize >= n {
            break;
        }
        if let Some(s) = worker.try_wait()? {
            bail!("the celery worker exited: {s}");
        }
        if Instant::now() > deadline {
            bail!("celery did not drain the queue in 30 min");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    let _ = worker.kill();
    let _ = worker.wait();
    let mut execs = Vec::new();
    if let crate::wire::Resp::Array(Some(items)) = r.cmd(&[b"LRANGE", b"done", b"0", b"-1"]).await?
    {
        for it in items {
            let s = String::from_utf8(it.bulk()?.unwrap_or_default())?;
            if let Some((id, lat)) = s.split_once(' ') {
                execs.push((id.parse()?, lat.parse()?));
            }
        }
    }
    Ok(summarise(n, elapsed, &execs, 0))
}

/// Dispatch latency: workers waiting, jobs queued one at a time at `latency_rate`.
async fn latency(sys: Sys, a: &JobsArgs, dir: &Path) -> anyhow::Result<Outcome> {
    let server = start(sys, dir).await?;
    let out_dir = dir.join(format!("lat-{}-{}", sys.name(), free_port()?));
    let w = Workers::start(sys, &server.addr, &out_dir, a.workers, a.lease_ttl, true)?;
    let mut q = OneAtATime::connect(sys, &server.addr).await?;
    // Let the workers connect and park before the first job.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / a.latency_rate);
    for i in 0..a.latency_jobs {
        tokio::time::sleep_until((t0 + gap * i as u32).into()).await;
        q.enqueue(i, a.lease_ttl).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let execs = w.executions()?;
        if execs.len() >= a.latency_jobs {
            return Ok(summarise(a.latency_jobs, t0.elapsed(), &execs, 0));
        }
        if Instant::now() > deadline {
            bail!("{}: latency jobs not all run in 120 s", sys.name());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(mut a: JobsArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.jobs = 600;
        a.celery_jobs = 300;
        a.rounds = 1;
        a.latency_jobs = 100;
        if a.chaos_every > 0.0 {
            a.chaos_every = 0.5;
        }
        a.lease_ttl = a.lease_ttl.min(5);
    }
    if a.workers == 0 || a.jobs == 0 || a.rounds == 0 || a.latency_rate <= 0.0 {
        bail!("--workers, --jobs, --rounds and --latency-rate must be positive");
    }
    let mut systems = Vec::new();
    for s in &a.systems {
        let sys = Sys::parse(s)?;
        match missing(sys) {
            Some(why) => eprintln!("skipping {}: {why}", sys.name()),
            None => systems.push(sys),
        }
    }
    if !systems.contains(&Sys::Switchyard) {
        bail!("--systems must include switchyard (the ratios are against it)");
    }
    let dir = tempdir_here()?;
    let mut results: BTreeMap<(&str, Sys), Vec<Outcome>> = BTreeMap::new();
    let mut broken = std::collections::BTreeSet::new();
    for round in 0..a.rounds {
        for &sys in &systems {
            if broken.contains(&sys) {
                continue;
            }
            let n = if sys == Sys::Celery {
                a.celery_jobs
            } else {
                a.jobs
            };
            let mut phases: Vec<&str> = vec!["throughput"];
            if sys != Sys::Celery {
                phases.push("latency");
                if a.chaos_every > 0.0 {
                    phases.push("chaos");
                }
            }
            for phase in phases {
                let o = match phase {
                    "throughput" => drain(sys, &a, &dir, n, None).await,
                    "latency" => latency(sys, &a, &dir).await,
                    _ => {
                        drain(
                            sys,
                            &a,
                            &dir,
                            n,
                            Some(Duration::from_secs_f64(a.chaos_every)),
                        )
                        .await
                    }
                }
                .with_context(|| format!("{} {phase}", sys.name()));
                let o = match o {
                    Ok(o) => o,
                    // A peer that breaks is reported and left out; switchyard breaking is fatal.
                    Err(e) if sys != Sys::Switchyard => {
                        eprintln!("round {round} {}: {e:#}; left out from here on", sys.name());
                        broken.insert(sys);
                        break;
                    }
                    Err(e) => return Err(e),
                };
                eprintln!(
                    "round {round} {:<14} {phase:<10} {:>9.0} jobs/s  p50 {:>8.2} ms  p99 {:>8.2} ms  \
                     lost {}  duplicates {}  kills {}",
                    sys.name(),
                    o.jobs_per_s,
                    o.p50_ms,
                    o.p99_ms,
                    o.lost,
                    o.duplicates,
                    o.kills
                );
                if o.lost > 0 && sys != Sys::RedisNoFsync {
                    eprintln!("  ^ {} LOST jobs", o.lost);
                }
                results.entry((phase, sys)).or_default().push(o);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let report = report(&a, &results);
    crate::cli::emit(&report, a.out.as_deref())?;
    let lost_sy: usize = results
        .iter()
        .filter(|((_, s), _)| *s == Sys::Switchyard)
        .flat_map(|(_, v)| v.iter().map(|o| o.lost))
        .sum();
    if lost_sy > 0 {
        bail!("switchyard lost {lost_sy} jobs");
    }
    Ok(())
}

fn report(a: &JobsArgs, results: &BTreeMap<(&str, Sys), Vec<Outcome>>) -> String {
    let med = |phase: &str, sys: Sys, f: fn(&Outcome) -> f64| -> Option<f64> {
        let mut v: Vec<f64> = results.get(&(phase, sys))?.iter().map(f).collect();
        Some(median(&mut v))
    };
    let mut s = format!(
        "B3 work queue: {} no-op jobs (Celery {}), {} worker processes, lease TTL {} s, {} \
         round(s) interleaved, medians; latency phase {} jobs at {}/s; chaos: kill -9 a worker \
         every {} s.\n\n",
        a.jobs,
        a.celery_jobs,
        a.workers,
        a.lease_ttl,
        a.rounds,
        a.latency_jobs,
        a.latency_rate,
        a.chaos_every
    );
    s += "| system | jobs/s | switchyard ÷ it | dispatch p50 ms | p99 ms | chaos jobs/s | chaos lost | chaos duplicates |\n|---|---|---|---|---|---|---|---|\n";
    let sy = med("throughput", Sys::Switchyard, |o| o.jobs_per_s).unwrap_or(f64::NAN);
    for sys in [
        Sys::Switchyard,
        Sys::Redis,
        Sys::RedisNoFsync,
        Sys::Postgres,
        Sys::Celery,
    ] {
        let Some(tp) = med("throughput", sys, |o| o.jobs_per_s) else {
            continue;
        };
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |x| format!("{x:.digits$}"));
        let chaos_sum = |f: fn(&Outcome) -> usize| {
            results.get(&("chaos", sys)).map_or("-".to_string(), |v| {
                v.iter().map(f).sum::<usize>().to_string()
            })
        };
        s += &format!(
            "| {} | {:.0} | {:.2}x | {} | {} | {} | {} | {} |\n",
            sys.label(),
            tp,
            sy / tp,
            opt(med("latency", sys, |o| o.p50_ms), 2),
            opt(med("latency", sys, |o| o.p99_ms), 2),
            opt(med("chaos", sys, |o| o.jobs_per_s), 0),
            chaos_sum(|o| o.lost),
            chaos_sum(|o| o.duplicates),
        );
    }
    s
}
