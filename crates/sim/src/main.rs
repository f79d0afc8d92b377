//! `switchyard-sim`: the seeded fuzzer of the simulated cluster.
//!
//! ```text
//! switchyard-sim --seeds 20 --steps 2000          # seeds 1..=20
//! switchyard-sim --seed 17 --steps 2000           # one seed, e.g. to reproduce a failure
//! switchyard-sim --inject-bug ack-before-fsync    # prove the fuzzer catches a known bug
//! switchyard-sim --inject-bug retry-without-key --seeds 50 --expect-violation   # exit 0 once caught
//! switchyard-sim --list-bugs
//! switchyard-sim --leader-restore --seeds 50 --expect-violation   # openraft's default
//! ```

use std::process::ExitCode;
use std::time::Instant;

use switchyard_sim::fuzz::fuzz_with;
use switchyard_sim::{Bug, SimOptions};

const USAGE: &str = "usage: switchyard-sim [--seeds N | --seed X] [--first X] [--steps S] [--inject-bug NAME] [--leader-restore] [--expect-violation] [--list-bugs] [--verbose]
  --leader-restore runs openraft's default of restoring a restarted leader at once, which the
  fuzzer found can serve a stale linearizable read (the server turns it off)
  SWITCHYARD_SIM_TRACE=1 prints every operation and fault of the run";

fn main() -> ExitCode {
    let mut seeds = 10u64;
    let mut first = 1u64;
    let mut steps = 2000u64;
    let mut bug = None;
    let mut verbose = false;
    let mut expect_violation = false;
    let mut leader_restore = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = args.next().ok_or(format!("{name}: needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        let r = match a.as_str() {
            "--seeds" => value("--seeds").map(|v| seeds = v),
            "--seed" => value("--seed").map(|v| {
                first = v;
                seeds = 1;
            }),
            "--first" => value("--first").map(|v| first = v),
            "--steps" => value("--steps").map(|v| steps = v),
            "--inject-bug" => match args.next().as_deref().map(Bug::from_name) {
                Some(Some(b)) => {
                    bug = Some(b);
                    Ok(())
                }
                _ => Err("--inject-bug: unknown; see --list-bugs".into()),
            },
            "--list-bugs" => {
                for b in Bug::ALL {
                    println!("{}", b.name());
                }
                return ExitCode::SUCCESS;
            }
            "--verbose" => {
                verbose = true;
                Ok(())
            }
            "--leader-restore" => {
                leader_restore = true;
                Ok(())
            }
            "--expect-violation" => {
                expect_violation = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument {other:?}")),
        };
        if let Err(e) = r {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    switchyard_sim::fuzz::capture_panics();
    let started = Instant::now();
    let (mut ops, mut faults, mut violations, mut simulated) = (0u64, 0u64, 0u64, 0f64);
    let mut failed = Vec::new();
    let mut ran = 0u64;
    for seed in first..first + seeds {
        ran += 1;
        let opts = SimOptions {
            bug,
            leader_restore,
            ..SimOptions::default()
        };
        let r = fuzz_with(seed, steps, opts);
        ops += r.operations;
        faults += r.faults;
        simulated += r.simulated.as_secs_f64();
        if verbose {
            println!(
                "seed {seed}: {} operations, {} faults, {:.1} s simulated, trace {:016x}, {} violations",
                r.operations,
                r.faults,
                r.simulated.as_secs_f64(),
                r.trace,
                r.violations.len()
            );
        }
        if !r.violations.is_empty() {
            violations += r.violations.len() as u64;
            for v in &r.violations {
                println!("seed {seed}: VIOLATION: {v}");
            }
            let mut bug = bug.map_or(String::new(), |b| format!(" --inject-bug {}", b.name()));
            if leader_restore {
                bug.push_str(" --leader-restore");
            }
            println!(
                "seed {seed}: reproduce with: cargo run --release -p switchyard-sim -- --seed {seed} --steps {steps}{bug}"
            );
            failed.push(seed);
            if expect_violation {
                break;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "seeds {ran}, operations {ops}, faults injected {faults}, invariant violations {violations} ({:.0} simulated s in {wall:.1} wall s: {:.1} simulated s per wall s)",
        simulated,
        simulated / wall.max(1e-9)
    );
    // With --expect-violation (proving an injected bug is caught), success is a violation.
    if failed.is_empty() != expect_violation {
        ExitCode::SUCCESS
    } else {
        if expect_violation {
            println!("no violation found: the fuzzer missed the injected bug");
        }
        ExitCode::FAILURE
    }
}
