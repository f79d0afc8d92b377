//! `switchyard-bench logs` (benchmark B6): log fan-out. The bench leases a job from
//! switchyard as a worker would and appends its output at a fixed rate, in batches, through
//! `POST /v1/jobs/{id}/logs`; followers read the log with `GET /v1/jobs/{id}/logs?follow=true`
//! (Server-Sent Events, one event per line). Side by side with a ceiling written for the bench
//! (`log-ceiling`, hidden): an axum server that takes the same batches and broadcasts each line,
//! serialised once, to every follower over WebSocket or SSE, keeping nothing.
//!
//! Every line carries its number and the time its batch was sent, so each follower checks that
//! lines arrive in order with none lost or repeated, and takes append-to-receive latency.
//!
//! Files: `follow` (a follower over SSE or WebSocket, and what it checks), `ceiling` (the bare
//! broadcast server); this file the rounds, the feeder and the report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use std::fmt::Write as _;
use switchyard_client::Client;
use switchyard_types::{JobSpec, LeaseRequest, LogStream, NewLogLine};

use crate::process::{System, start_with, tempdir_here};
use crate::stats::{median, p50_p99};

mod ceiling;
mod follow;

use ceiling::*;
use follow::*;

pub(crate) use ceiling::ceiling;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Followers per system, each on its own connection.
    #[arg(long, default_value_t = 100)]
    followers: usize,
    /// Lines appended per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Milliseconds between two appended batches (a batch holds the lines due by then).
    #[arg(long, default_value_t = 10)]
    batch_ms: u64,
    /// Seconds of appending per round.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds; the systems take turns within each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds followers have after the last append to receive the rest.
    #[arg(long, default_value_t = 30.0)]
    drain: f64,
    /// Systems to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "switchyard,ceiling-ws,ceiling-sse"
    )]
    systems: Vec<Sys>,
    /// A short run that checks the command works (CI): 5 followers, 1,000 lines/s, 2 s.
    #[arg(long)]
    smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Sys {
    Switchyard,
    /// The bench's broadcast server, followers on WebSocket.
    CeilingWs,
    /// The same server, followers on SSE (switchyard's transport).
    CeilingSse,
}

impl Sys {
    fn label(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard (SSE, fsynced appends)",
            Sys::CeilingWs => "bare axum broadcast, WebSocket (ceiling)",
            Sys::CeilingSse => "bare axum broadcast, SSE (ceiling)",
        }
    }
}

/// Bytes of each line's text.
const LINE_BYTES: usize = 100;

/// Most lines switchyard takes in one `POST /v1/jobs/{id}/logs`.
const MAX_LOG_BATCH: usize = 10_000;

struct Cell {
    appended_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: u64,
    duplicated: u64,
    failed: Vec<String>,
}

async fn run_round(a: &LogsArgs, sys: Sys, addr: &str) -> anyhow::Result<Cell> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(a.followers + 2)
        .build()?;
    let mut sink = match sys {
        Sys::Switchyard => {
            let client = Client::new(format!("http://{addr}"));
            let spec = JobSpec {
                max_attempts: 1,
                lease_ttl: 3600,
                ..JobSpec::new(vec!["bench-log-feed".into()], "bench-logs")
            };
            let job = client.enqueue(&spec, None).await?;
            let leased = client
                .lease(&LeaseRequest {
                    worker: "bench-log-feed".into(),
                    queue: "bench-logs".into(),
                    labels: Default::default(),
                    max: 1,
                    wait: 5.0,
                    finish: None,
                    until_drained: false,
                })
                .await?;
            let held = leased
                .jobs
                .into_iter()
                .find(|l| l.job.id == job.id)
                .context("the feed's job was not leased")?;
            Sink::Switchyard {
                client,
                id: job.id,
                token: held.token,
                seq: 0,
            }
        }
        Sys::CeilingWs | Sys::CeilingSse => Sink::Ceiling {
            http: http.clone(),
            base: format!("http://{addr}"),
        },
    };
    let job = match &sink {
        Sink::Switchyard { id, .. } => *id,
        Sink::Ceiling { .. } => 0,
    };

    // Every follower connected (and, on the ceiling, subscribed) before the first line.
    let followers: Vec<Follower> = futures::stream::iter(0..a.followers)
        .map(|_| connect(sys, addr, job, &http))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let epoch = Instant::now();
    let drain = Duration::from_secs_f64(a.drain);
    let seconds = a.seconds;
    let tasks: Vec<_> = followers
        .into_iter()
        .map(|f| {
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let follow = async {
                    match f {
                        Follower::Sse(resp) => follow_sse(resp, epoch, &mut seen).await,
                        Follower::Ws(ws) => follow_ws(*ws, epoch, &mut seen).await,
                    }
                };
                let limit = Duration::from_secs_f64(seconds) + drain;
                match tokio::time::timeout(limit, follow).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        seen.failed.get_or_insert(format!("{e:#}"));
                    }
                    Err(_) => {
                        seen.failed
                            .get_or_insert_with(|| "did not see the end in time".into());
                    }
                }
                seen
            })
        })
        .collect();

    let pad = "x".repeat(LINE_BYTES - 28);
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(a.batch_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = tick.tick().await;
        if now >= end {
            break;
        }
        let due = (a.rate * (now - start).as_secs_f64()).floor() as u64 + 1;
        if due <= sent {
            continue;
        }
        let us = epoch.elapsed().as_micros() as u64;
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lines: Vec<NewLogLine> = (sent..due)
            .map(|n| NewLogLine {
                stream: LogStream::Stdout,
                time_ms,
                text: format!("{n:010} {us:016} {pad}"),
            })
            .collect();
        // At most the server's batch limit per request.
        for chunk in lines.chunks(MAX_LOG_BATCH) {
            sink.append(chunk).await?;
        }
        sent = due;
    }
    let append_secs = start.elapsed().as_secs_f64();
    sink.end().await?;

    let mut cell = Cell {
        appended_per_s: sent as f64 / append_secs,
        delivered_per_s: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        lost: 0,
        duplicated: 0,
        failed: Vec::new(),
    };
    let mut lat = Vec::new();
    let mut received = 0;
    for t in tasks {
        let seen = t.await?;
        received += seen.received;
        cell.duplicated += seen.duplicated;
        // Lines after the last one received are lost too.
        cell.lost += seen.lost + sent.saturating_sub(seen.next);
        match seen.failed {
            Some(f) => cell.failed.push(f),
            None if !seen.ended => cell.failed.push("its stream closed before the end".into()),
            None => {}
        }
        lat.extend(seen.latencies);
    }
    // Until the last follower has the last line: what the followers could take.
    cell.delivered_per_s = received as f64 / start.elapsed().as_secs_f64();
    (cell.p50_ms, cell.p99_ms) = p50_p99(&mut lat);
    Ok(cell)
}

pub async fn run(mut a: LogsArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.followers = 5;
        a.rate = 1000.0;
        a.seconds = 2.0;
        a.rounds = 1;
        a.drain = 10.0;
    }
    if a.followers == 0 || a.rounds == 0 || a.batch_ms == 0 {
        bail!("--followers, --rounds and --batch-ms must be at least 1");
    }
    if !(a.rate > 0.0 && a.seconds > 0.0 && a.drain > 0.0) {
        bail!("--rate, --seconds and --drain must be above 0");
    }
    let mut systems = a.systems.clone();
    systems.sort();
    systems.dedup();
    let dir = tempdir_here()?;
    // The log of a round must fit in the job's log: the oldest lines go first past the cap.
    let cap = ((a.rate * a.seconds) as u64 + 1) * (LINE_BYTES as u64) * 2;
    let cap = cap.clamp(1 << 20, 1 << 30);
    let mut switchyard = None;
    let mut ceiling = None;
    if systems.contains(&Sys::Switchyard) {
        let extra = [
            "--local-workers".to_string(),
            "0".into(),
            "--job-log-max-bytes".into(),
            cap.to_string(),
        ];
        switchyard = Some(start_with(System::Switchyard, &dir, 0, &extra).await?);
    }
    if systems.iter().any(|s| *s != Sys::Switchyard) {
        ceiling = Some(start_ceiling().await?);
    }
    let addr_of = |s: Sys| -> &str {
        match s {
            Sys::Switchyard => &switchyard.as_ref().expect("started above").addr,
            Sys::CeilingWs | Sys::CeilingSse => &ceiling.as_ref().expect("started above").addr,
        }
    };
    let mut cells: std::collections::BTreeMap<Sys, Vec<Cell>> = Default::default();
    for round in 0..a.rounds {
        let n = systems.len();
        for k in 0..n {
            let sys = systems[(k + round) % n];
            let cell = run_round(&a, sys, addr_of(sys)).await?;
            eprintln!(
                "round {} {:<42} appended {:>7.0}/s delivered {:>9.0}/s p50 {:>8.2} ms p99 {:>8.2} ms lost {} duplicated {}",
                round + 1,
                sys.label(),
                cell.appended_per_s,
                cell.delivered_per_s,
                cell.p50_ms,
                cell.p99_ms,
                cell.lost,
                cell.duplicated
            );
            for f in cell.failed.iter().take(3) {
                eprintln!("  a follower: {f}");
            }
            cells.entry(sys).or_default().push(cell);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    drop(switchyard);
    drop(ceiling);
    let _ = std::fs::remove_dir_all(&dir);

    let report = report(&a, &mut cells);
    crate::cli::emit(&report, a.out.as_deref())?;
    if let Some(ours) = cells.get(&Sys::Switchyard) {
        let lost: u64 = ours.iter().map(|c| c.lost).sum();
        let dup: u64 = ours.iter().map(|c| c.duplicated).sum();
        let failed: usize = ours.iter().map(|c| c.failed.len()).sum();
        if lost + dup > 0 || failed > 0 {
            bail!("switchyard lost {lost} and repeated {dup} lines; {failed} follower(s) failed");
        }
    }
    Ok(())
}

fn report(a: &LogsArgs, cells: &mut std::collections::BTreeMap<Sys, Vec<Cell>>) -> String {
    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let _ = writeln!(
        s,
        "Log fan-out: {} followers of one log, {} lines/s of {LINE_BYTES} bytes appended in a \
         batch every {} ms, {} s x {} round(s), systems interleaved; medians of rounds.\n",
        a.followers, a.rate, a.batch_ms, a.seconds, a.rounds
    );
    let _ = writeln!(
        s,
        "| system | appended lines/s | delivered lines/s | p50 ms | p99 ms | lost | duplicated | delivered switchyard / this | p99 this / switchyard |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ours = None;
    for (sys, runs) in cells.iter_mut() {
        let col = |f: fn(&Cell) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let (appended, delivered, p50, p99) = (
            col(|c| c.appended_per_s),
            col(|c| c.delivered_per_s),
            col(|c| c.p50_ms),
            col(|c| c.p99_ms),
        );
        if *sys == Sys::Switchyard {
            ours = Some((delivered, p99));
        }
        let (r1, r2) = ours.map_or((String::new(), String::new()), |(d, p)| {
            (format!("{:.2}x", d / delivered), format!("{:.2}x", p99 / p))
        });
        let _ = writeln!(
            s,
            "| {} | {appended:.0} | {delivered:.0} | {p50:.2} | {p99:.2} | {} | {} | {r1} | {r2} |",
            sys.label(),
            runs.iter().map(|c| c.lost).sum::<u64>(),
            runs.iter().map(|c| c.duplicated).sum::<u64>(),
        );
    }
    s
}
