//! `switchyard-sim`: the seeded fuzzer of the simulated cluster.
//!
//! ```text
//! switchyard-sim --seeds 20 --steps 2000          # seeds 1..=20
//! switchyard-sim --seed 17 --steps 2000           # one seed, e.g. to reproduce a failure
//! switchyard-sim --seed 17 --trace-file t17.txt   # and keep its full trace
//! switchyard-sim --inject-bug ack-before-fsync --seeds 20 --min-caught 18
//! switchyard-sim --list-bugs
//! ```

use std::process::ExitCode;
use std::time::Instant;

use switchyard_sim::Bug;
use switchyard_sim::fuzz::{FuzzOptions, fuzz_with};

const USAGE: &str = "usage: switchyard-sim [--seeds N | --seed X] [--first X] [--steps S] [--inject-bug NAME]... [--min-caught K] [--keep-going] [--trace-file PATH] [--verbose] [--print] [--list-bugs]
  --seeds N        run seeds FIRST..FIRST+N (default 10 from 1)
  --inject-bug     switch a known bug back on (see --list-bugs); repeatable
  --min-caught K   with --inject-bug: succeed when at least K seeds find a violation
  --keep-going     do not stop a seed at its first violation
  --trace-file P   write the full trace of the (last) seed to P, a line per event
  --verbose        a line per seed with its trace hash
  --print          print the trace as it happens: every message, apply, fault and answer
                   (also SWITCHYARD_SIM_TRACE=1)";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut seeds = 10u64;
    let mut first = 1u64;
    let mut steps = 2000u64;
    let mut bugs: Vec<Bug> = Vec::new();
    let mut verbose = false;
    let mut min_caught: Option<u64> = None;
    let mut keep_going = false;
    let mut trace_file: Option<String> = None;
    let mut print = std::env::var_os("SWITCHYARD_SIM_TRACE").is_some();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<String, String> {
            args.next().ok_or(format!("{name}: needs a value"))
        };
        let number = |name: &str, v: String| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match a.as_str() {
            "--seeds" => seeds = number("--seeds", value("--seeds")?)?,
            "--seed" => {
                first = number("--seed", value("--seed")?)?;
                seeds = 1;
            }
            "--first" => first = number("--first", value("--first")?)?,
            "--steps" => steps = number("--steps", value("--steps")?)?,
            "--min-caught" => min_caught = Some(number("--min-caught", value("--min-caught")?)?),
            "--inject-bug" => {
                let name = value("--inject-bug")?;
                let bug = Bug::from_name(&name)
                    .ok_or(format!("--inject-bug: no bug {name:?}; see --list-bugs"))?;
                bugs.push(bug);
            }
            "--trace-file" => trace_file = Some(value("--trace-file")?),
            "--list-bugs" => {
                for b in Bug::ALL {
                    println!("{}", b.name());
                }
                return Ok(ExitCode::SUCCESS);
            }
            "--verbose" => verbose = true,
            "--print" => print = true,
            "--keep-going" => keep_going = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if min_caught.is_some() && bugs.is_empty() {
        return Err("--min-caught needs --inject-bug".into());
    }
    if !switchyard_sim::replays() {
        eprintln!(
            "warning: built without --cfg tokio_unstable (RUSTFLAGS replaces .cargo/config.toml's \
             flags): runs of a seed will not replay exactly"
        );
    }
    switchyard_sim::fuzz::capture_panics();
    let started = Instant::now();
    let (mut ops, mut faults, mut events, mut simulated) = (0u64, 0u64, 0u64, 0f64);
    let mut failed = Vec::new();
    let flags = {
        let mut f = format!("--steps {steps}");
        for b in &bugs {
            f.push_str(&format!(" --inject-bug {}", b.name()));
        }
        if keep_going {
            f.push_str(" --keep-going");
        }
        f
    };
    for seed in first..first + seeds {
        let mut o = FuzzOptions {
            steps,
            stop_at_first: !keep_going,
            print,
            ..FuzzOptions::default()
        };
        o.sim.bugs.extend(bugs.iter().copied());
        o.sim.keep_trace = trace_file.is_some();
        o.sim.print_trace = print;
        let r = fuzz_with(seed, o);
        ops += r.operations;
        faults += r.faults;
        events += r.events;
        simulated += r.simulated.as_secs_f64();
        if verbose {
            println!(
                "seed {seed}: {} steps, {} operations, {} faults, {:.1} s simulated, {} events, trace {:016x}, {} violations",
                r.steps,
                r.operations,
                r.faults,
                r.simulated.as_secs_f64(),
                r.events,
                r.trace,
                r.violations.len()
            );
        }
        if let (Some(path), Some(lines)) = (&trace_file, &r.lines) {
            std::fs::write(path, lines.join("\n") + "\n")
                .map_err(|e| format!("--trace-file {path}: {e}"))?;
        }
        if let Some(v) = r.violations.first() {
            let step = v
                .step
                .map_or("at the end".into(), |s| format!("at step {s}"));
            println!(
                "seed {seed}: VIOLATION {step}, {:.3} s virtual: {}",
                v.at_s, v.what
            );
            for v in &r.violations[1..] {
                println!("seed {seed}: also: {}", v.what);
            }
            println!(
                "seed {seed}: reproduce with: cargo run --release -p switchyard-sim -- --seed {seed} {flags}   (commit {})",
                env!("SWITCHYARD_COMMIT")
            );
            failed.push(seed);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let caught = failed.len() as u64;
    println!(
        "seeds {seeds}, operations {ops}, faults injected {faults}, trace events {events}, seeds with a violation {caught} ({simulated:.0} simulated s in {wall:.1} wall s: {:.1} simulated s per wall s)",
        simulated / wall.max(1e-9)
    );
    if let Some(min) = min_caught {
        let names: Vec<&str> = bugs.iter().map(|b| b.name()).collect();
        println!(
            "{}: caught on {caught} of {seeds} seeds (at least {min} wanted)",
            names.join(" + ")
        );
        return Ok(if caught >= min {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
