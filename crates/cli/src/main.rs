//! `switchyard`: the server and its command line. Thin: parse, set up logging, call the
//! libraries.

mod cli;
mod cluster;
mod deploy;
mod jobs;
mod logfile;
mod output;
mod progress;
mod run;
mod serve;
mod tap;

/// mimalloc: glibc's malloc cost about 15% of the server's CPU under write load (perf, B1 at
/// 256 clients); see BENCHMARKS.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Every HTTP client of the binary uses rustls with ring.
    switchyard_tls::install_provider();
    let args = cli::parse();
    // A command whose output goes to a pipe that closes (`switchyard openapi | head -1`) ends
    // quietly, as Unix tools do, instead of a panic report: `println!` panics on a failed
    // write, and std gives no typed way to tell that panic apart, so its text is matched.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info.payload_as_str().unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info)
    }));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            output::report(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
