//! `switchyard-bench`: switchyard's benchmarks, each side by side with its peers in one run,
//! kept out of the product's binary.
//!
//! - [`cli`]: the command line, one subcommand per benchmark.
//! - The benchmarks: [`writes`] B1 (durable writes), [`watch`] B2 (watch fan-out), [`jobs`] B3
//!   (a work queue drained by worker processes), [`devices`] B4 (device GET and command POST
//!   under wrk), [`failover`] B5 (leader failover, cluster throughput), [`logs`] B6 (log
//!   fan-out, with its broadcast ceiling), [`state`] (what grows with the state).
//! - What they share: [`process`] (the systems as processes: the switchyard binary, ports,
//!   readiness), [`stats`] (the fsync probe, percentiles, medians), [`wire`] (the peers' wire
//!   clients: Redis RESP, PostgreSQL, NATS; base64 for etcd's gateway).

mod cli;
mod devices;
mod failover;
mod jobs;
mod logs;
mod process;
mod state;
mod stats;
mod watch;
mod wire;
mod writes;

use clap::Parser;

/// mimalloc, as the switchyard binary uses, so the driver costs the same for every system.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard_tls::install_provider();
    let args = cli::BenchArgs::parse();
    // A worker process does one thing at a time: a single-threaded runtime spares it the
    // cross-thread wake-ups (the same for every system it drives).
    let single = matches!(args.what, cli::BenchCmd::JobsWorker(_));
    let mut builder = if single {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
