//! The seeded fuzzer: random client workloads under random faults, checked by invariants.
//!
//! - [`workload`]: what clients do, each operation sent to a node chosen at random (a follower
//!   forwards writes and asks the leader for the read index), and the application oracles:
//!   bank money is conserved; a register's linearizable reads lie between what was
//!   acknowledged before and what may have applied, and never go back; acknowledged jobs are
//!   kept and finished at most once, never with a stale fencing token; every node's event
//!   history is ordered and the same; every replica ends in the same state.
//! - [`faults`]: partitions, crashes, power cuts, pauses, held applies, dropped, delayed,
//!   jittered and duplicated messages, membership changes (add a node, remove one, replace
//!   the leader), between operations and while a batch of them is in flight.
//! - Raft-level invariants after every step ([`crate::invariants`]), and a liveness bound:
//!   after each repair, a write must complete within [`LIVENESS`] of virtual time.
//!
//! A run stops at its first violation, with the step and the virtual time it was found at.

mod faults;
mod workload;

use std::time::Duration;

use crate::invariants::RaftChecks;
use crate::run_seeded;
use switchyard_testing::cluster::{SimCluster, SimOptions};

pub use switchyard_testing::rng::Rng;
pub use workload::Workload;

static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Turn panics into findings: a panic in a node's task (an openraft assertion, say) is recorded
/// as a violation of the seed that caused it, and printed as one line instead of a backtrace.
pub fn capture_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let line = format!("a task panicked{at}: {what}");
        eprintln!("{line}");
        PANICS.lock().unwrap().push(line);
    }));
}

/// The first violation of a run: where and when it was found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The step it was found at (`None`: during setup or at the end).
    pub step: Option<u64>,
    /// Virtual seconds since the run started.
    pub at_s: f64,
    pub what: String,
}

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub steps: u64,
    pub operations: u64,
    pub faults: u64,
    /// Violations found, the first one first (a run stops at its first unless asked not to).
    pub violations: Vec<Finding>,
    /// Virtual time the run took.
    pub simulated: Duration,
    /// The hash of the full trace (every message, apply and client answer): equal hashes,
    /// equal runs.
    pub trace: u64,
    /// Events in the trace.
    pub events: u64,
    /// The trace's lines, when kept (`SimOptions::keep_trace`).
    pub lines: Option<Vec<String>>,
}

/// After a repair, a write must complete within this much virtual time.
pub const LIVENESS: Duration = Duration::from_secs(10);

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub steps: u64,
    pub sim: SimOptions,
    /// Stop at the first violation (else go on and collect them all).
    pub stop_at_first: bool,
    /// Print every operation and fault as it happens.
    pub print: bool,
}

impl Default for FuzzOptions {
    fn default() -> Self {
        Self {
            steps: 2000,
            sim: SimOptions::default(),
            stop_at_first: true,
            print: false,
        }
    }
}

/// Run one seed of `steps` operations, with `bug` re-introduced if given.
pub fn fuzz_one(seed: u64, steps: u64, bug: Option<crate::Bug>) -> Report {
    let mut o = FuzzOptions {
        steps,
        ..FuzzOptions::default()
    };
    o.sim.bugs.extend(bug);
    fuzz_with(seed, o)
}

/// Run one seed.
pub fn fuzz_with(seed: u64, mut o: FuzzOptions) -> Report {
    o.sim.seed = seed;
    run_seeded(seed, async move {
        let start = tokio::time::Instant::now();
        let sim = SimCluster::start(o.sim.clone()).await;
        let mut run = Workload::new(sim, seed, o.print);
        let mut checks = RaftChecks::default();
        let mut report = Report {
            seed,
            ..Report::default()
        };
        let stop_at_first = o.stop_at_first;
        let found = |report: &mut Report, run: &Workload, step, what: Vec<String>| {
            record(report, run, step, what);
            stop_at_first && !report.violations.is_empty()
        };
        let mut stopped = false;
        if let Err(e) = run.setup().await {
            stopped = found(&mut report, &run, None, vec![e]);
        }
        let mut step = 0;
        while !stopped && step < o.steps {
            let op = run.rng.below(100);
            if o.print {
                eprintln!("step {step}: op {op}");
            }
            match op {
                0..24 => run.transfer().await,
                24..38 => run.credit().await,
                38..50 => run.read().await,
                50..64 => run.jobs().await,
                64..78 => run.concurrent().await,
                78..89 => {
                    let d = Duration::from_millis(1 + run.rng.below(300));
                    run.sim.advance(d).await;
                }
                89..91 => run.membership().await,
                _ => run.fault().await,
            }
            let mut v = run.take_violations();
            v.extend(checks.check(&run.sim));
            if step % 50 == 49 {
                run.sim.repair().await;
                v.extend(run.liveness().await);
                v.extend(checks.check(&run.sim));
            }
            stopped = found(&mut report, &run, Some(step), v);
            step += 1;
        }
        report.steps = step;
        if !stopped {
            let mut v = Vec::new();
            if !run.sim.settle(Duration::from_secs(60)).await {
                v.push("the cluster did not converge within 60 s after healing".into());
            }
            v.extend(checks.check(&run.sim));
            v.extend(run.check_end());
            found(&mut report, &run, None, v);
        }
        run.sim.shutdown().await;
        let panics = std::mem::take(&mut *PANICS.lock().unwrap());
        found(&mut report, &run, None, panics);
        report.operations = run.operations;
        report.faults = run.faults;
        report.simulated = start.elapsed();
        report.trace = run.sim.trace.hash();
        report.events = run.sim.trace.events();
        report.lines = run.sim.trace.lines();
        report
    })
}

/// Add violations to the report (and the trace), stamped with the step and virtual time.
fn record(report: &mut Report, run: &Workload, step: Option<u64>, what: Vec<String>) {
    for what in what {
        run.sim.trace.add(format!("VIOLATION {what}"));
        report.violations.push(Finding {
            step,
            at_s: run.sim.clock.elapsed_s(),
            what,
        });
    }
}
