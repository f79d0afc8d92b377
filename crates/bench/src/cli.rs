//! The command line: one subcommand per benchmark, and the dispatch to each.

use clap::Subcommand;

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
    Writes(crate::writes::WritesArgs),
    /// Device GET and command POST with wrk vs FastAPI, Tornado and a bare axum handler (B4).
    Devices(crate::devices::DevicesArgs),
    /// Leader failover time and 3-node vs 1-node write throughput vs etcd (B5).
    Failover(crate::failover::FailoverArgs),
    /// A work queue drained by 8 worker processes vs a Redis lease queue, PostgreSQL SKIP
    /// LOCKED and Celery, with a kill -9 chaos variant (B3).
    Jobs(crate::jobs::JobsArgs),
    /// One worker process of `jobs`.
    #[command(hide = true)]
    JobsWorker(crate::jobs::WorkerArgs),
    /// Watch fan-out: many subscribers, a fixed write rate, forced reconnects; publish-to-
    /// receive latency, gaps and duplicates vs etcd watch and NATS KV watch (B2).
    Watch(crate::watch::WatchArgs),
    /// Log fan-out: followers of one job's log at a fixed line rate; append-to-receive
    /// latency, lost and repeated lines vs a bare broadcast server (B6).
    Logs(crate::logs::LogsArgs),
    /// The broadcast server B6 uses as its ceiling (started by `logs`).
    #[command(hide = true)]
    LogCeiling { port: u16 },
    /// What a write, a snapshot, a restart and a follower's catch-up cost as the state grows
    /// (0, 100k, 1M finished jobs with their logs).
    State(crate::state::StateArgs),
    /// The bare axum handler B4 uses as its ceiling (started by `devices`).
    #[command(hide = true)]
    Ceiling { port: u16 },
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchCmd::Writes(w) => crate::writes::run(w).await,
        BenchCmd::Devices(d) => crate::devices::run(d).await,
        BenchCmd::Failover(f) => crate::failover::run(f).await,
        BenchCmd::Jobs(j) => crate::jobs::run(j).await,
        BenchCmd::Watch(w) => crate::watch::run(w).await,
        BenchCmd::Logs(l) => crate::logs::run(l).await,
        BenchCmd::State(s) => crate::state::run(s).await,
        BenchCmd::LogCeiling { port } => crate::logs::ceiling(port).await,
        BenchCmd::JobsWorker(w) => crate::jobs::worker(w).await,
        BenchCmd::Ceiling { port } => crate::devices::ceiling(port).await,
    }
}

/// Print a benchmark's markdown report, and also write it to `out` when given.
pub(crate) fn emit(report: &str, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(out, report)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    }
    Ok(())
}
