//! `switchyard-bench`: switchyard's benchmarks, each side by side with its peers in one run,
//! kept out of the product's binary. `bench` holds the command line, B1 (`writes`) and the
//! helpers the others share; `bench_devices` B4, `bench_failover` B5, `bench_jobs` B3 with
//! its worker processes; `bench_watch` B2 (watch fan-out); `bench_logs` B6 (log fan-out)
//! with its broadcast ceiling; `bench_state` the costs that grow with the state;
//! `bench_wire` the peers' wire clients (Redis RESP, PostgreSQL, NATS).

mod bench;
mod bench_devices;
mod bench_failover;
mod bench_jobs;
mod bench_logs;
mod bench_state;
mod bench_watch;
mod bench_wire;

use clap::Parser;

/// mimalloc, as the switchyard binary uses, so the driver costs the same for every system.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard_tls::install_provider();
    let args = bench::BenchArgs::parse();
    // A worker process does one thing at a time: a single-threaded runtime spares it the
    // cross-thread wake-ups (the same for every system it drives).
    let single = matches!(args.what, bench::BenchCmd::JobsWorker(_));
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
    match runtime.block_on(bench::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
