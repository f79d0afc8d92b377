//! `switchyard`: the server and its command line. Thin: parse, set up logging, call the
//! libraries.

mod bench;
mod bench_devices;
mod bench_failover;
mod cli;
mod cluster;
mod jobs;
mod serve;
mod tap;

use clap::Parser;

/// mimalloc: glibc's malloc cost about 15% of the server's CPU under write load (perf, B1 at
/// 256 clients); see BENCHMARKS.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
