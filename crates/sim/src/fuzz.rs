//! The seeded fuzzer: random client workloads under random faults, checked by invariants.
//!
//! Workloads (each operation through the leader, retried across leader changes; mostly one at a
//! time, and batches of two to five bank operations of concurrent clients in flight at once):
//! - bank transfers among four accounts: the money in them is conserved;
//! - a register per key (an account only ever credited): every linearizable read lies between
//!   the sum of the credits acknowledged before it began and the sum of every credit that may
//!   have applied by its end, and reads never go back;
//! - jobs: every acknowledged enqueue is kept; a finish is accepted at most once per job, and
//!   never with a fencing token older than a lease the fuzzer saw granted before it asked;
//! - the event history of every node: ordered, unique, and the same on every node for every
//!   revision they both hold (so a watcher resumes on any node where it left off).
//!
//! Faults: partitions and isolation, crashes and restarts, a power cut of the whole cluster,
//! paused nodes, nodes held before applying, dropped votes, dropped or delayed append-entries
//! answers. At the end every node is healed and must hold the same state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use switchyard_core::bank::BankCommand;
use switchyard_core::jobs::{Ending, JobCommand, JobReply};
use switchyard_core::{Command, Reply};
use switchyard_store::ReadAfter;

use crate::cluster::{Sim, SimOptions, WriteError};
use crate::net::{Action, Rpc, Stage};
use crate::{Bug, run_seeded};

/// SplitMix64: the workload's own RNG (openraft's is seeded separately from the same seed).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

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

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub operations: u64,
    pub faults: u64,
    pub violations: Vec<String>,
    /// Virtual time the run took.
    pub simulated: Duration,
    /// A digest of the run: equal digests, equal runs.
    pub trace: u64,
}

const TRANSFER: [&str; 4] = ["t0", "t1", "t2", "t3"];
const REGISTERS: [&str; 3] = ["r0", "r1", "r2"];
const INITIAL: u64 = 1000;
const TIMEOUT: Duration = Duration::from_secs(5);

/// A client write's answer: the outcome and its log index, or why there is none.
type WriteResult = Result<(switchyard_core::Outcome, u64), WriteError>;

#[derive(Default)]
struct Register {
    acked: u64,
    unknown: u64,
    last_read: u64,
}

impl Register {
    /// A credit of `amount` (counted as unknown while in flight) was answered with `r`.
    fn answered(&mut self, amount: u64, r: &WriteResult) {
        match r {
            Ok((Ok(_), _)) => {
                self.unknown -= amount;
                self.acked += amount;
            }
            // Refused, or never proposed: it did not apply.
            Ok((Err(_), _)) | Err(WriteError::NotLeader(_)) => self.unknown -= amount,
            Err(WriteError::Unknown(_)) => {}
        }
    }
}

/// A node's id, its oldest resumable revision, and its events as (revision, message).
type History = (u64, u64, Vec<(u64, String)>);

struct Lease {
    job: u64,
    token: u64,
}

struct Run {
    sim: Sim,
    rng: Rng,
    report: Report,
    registers: BTreeMap<&'static str, Register>,
    jobs: BTreeSet<u64>,
    leases: Vec<Lease>,
    /// Highest token the fuzzer saw granted per job.
    granted: BTreeMap<u64, u64>,
    finished: BTreeSet<u64>,
    digest: u64,
    /// Print every operation and fault as it happens (`SWITCHYARD_SIM_TRACE=1`).
    print: bool,
}

fn bank(c: BankCommand) -> Command {
    Command::Bank(c)
}

/// A write's answer, for the trace.
fn summary(r: &WriteResult) -> String {
    match r {
        Ok((Ok(_), index)) => format!("ok@{index}"),
        Ok((Err(e), index)) => format!("refused@{index}:{}", e.code()),
        Err(e) => format!("{e:?}"),
    }
}

impl Run {
    fn note(&mut self, what: impl std::fmt::Display) {
        let what = what.to_string();
        if self.print {
            eprintln!(
                "[{:>9.3}s] {what}",
                self.sim.clock.now_ms() as f64 / 1000.0 - crate::Clock::EPOCH_MS as f64 / 1000.0
            );
        }
        for b in what.bytes() {
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn violation(&mut self, what: String) {
        self.note(&what);
        self.report.violations.push(what);
    }

    async fn write(&mut self, c: Command) -> WriteResult {
        self.report.operations += 1;
        let r = self.sim.write(c, TIMEOUT).await;
        self.note(summary(&r));
        r
    }

    async fn setup(&mut self) -> Result<(), String> {
        for id in TRANSFER.iter().chain(REGISTERS.iter()) {
            let r = self
                .write(bank(BankCommand::Open { id: id.to_string() }))
                .await;
            if !matches!(r, Ok((Ok(_), _))) {
                return Err(format!("setup: open {id}: {r:?}"));
            }
        }
        for id in TRANSFER {
            let credit = bank(BankCommand::Credit {
                id: id.into(),
                amount: INITIAL,
            });
            if !matches!(self.write(credit).await, Ok((Ok(_), _))) {
                return Err(format!("setup: credit {id}"));
            }
        }
        Ok(())
    }

    async fn transfer(&mut self) {
        let from = TRANSFER[self.rng.below(4) as usize];
        let to = TRANSFER[self.rng.below(4) as usize];
        if from == to {
            return;
        }
        let amount = 1 + self.rng.below(50);
        let _ = self
            .write(bank(BankCommand::Transfer {
                from: from.into(),
                to: to.into(),
                amount,
            }))
            .await;
    }

    async fn credit(&mut self) {
        let key = REGISTERS[self.rng.below(3) as usize];
        let amount = 1 + self.rng.below(9);
        self.note(format!("credit {key} +{amount}"));
        self.registers.entry(key).or_default().unknown += amount;
        let r = self
            .write(bank(BankCommand::Credit {
                id: key.into(),
                amount,
            }))
            .await;
        let reg = self.registers.get_mut(key).expect("just added");
        reg.answered(amount, &r);
    }

    async fn read(&mut self) {
        let key = REGISTERS[self.rng.below(3) as usize];
        let lower = self.registers.get(key).map_or(0, |r| r.acked);
        self.report.operations += 1;
        let Some(value) = self
            .sim
            .read(|s| s.bank.get(key).map_or(0, |a| a.balance))
            .await
        else {
            self.note("read:none");
            return;
        };
        self.note(format!("read {key}={value}"));
        let reg = self.registers.entry(key).or_default();
        let upper = reg.acked + reg.unknown;
        let last = reg.last_read;
        reg.last_read = reg.last_read.max(value);
        if value < lower || value > upper {
            self.violation(format!(
                "register {key}: a linearizable read saw {value}, outside [{lower}, {upper}] (acknowledged, acknowledged + unknown)"
            ));
        } else if value < last {
            self.violation(format!("register {key}: a read saw {value} after {last}"));
        }
    }

    /// Two to five bank operations of concurrent clients, in flight at once. A credit may be
    /// applied any time until it is answered, so every credit of the batch counts as unknown
    /// while it runs; a read must see at least what was acknowledged before the batch began
    /// and what any read that ended before it saw, and at most what may have been applied.
    async fn concurrent(&mut self) {
        enum Op {
            Transfer(Command),
            Credit(&'static str, u64),
            Read(&'static str),
        }
        enum Answer {
            Transfer(WriteResult),
            Credit(&'static str, u64, WriteResult),
            Read(&'static str, Option<u64>),
        }
        let n = 2 + self.rng.below(4);
        let mut ops = Vec::new();
        for _ in 0..n {
            let op = match self.rng.below(3) {
                0 => {
                    let from = self.rng.below(4) as usize;
                    let to = (from + 1 + self.rng.below(3) as usize) % 4;
                    Op::Transfer(bank(BankCommand::Transfer {
                        from: TRANSFER[from].into(),
                        to: TRANSFER[to].into(),
                        amount: 1 + self.rng.below(50),
                    }))
                }
                1 => Op::Credit(REGISTERS[self.rng.below(3) as usize], 1 + self.rng.below(9)),
                _ => Op::Read(REGISTERS[self.rng.below(3) as usize]),
            };
            ops.push(op);
        }
        let before: BTreeMap<&'static str, (u64, u64)> = REGISTERS
            .iter()
            .map(|k| {
                let r = self.registers.get(k);
                (*k, r.map_or((0, 0), |r| (r.acked, r.last_read)))
            })
            .collect();
        for op in &ops {
            if let Op::Credit(key, amount) = op {
                self.registers.entry(key).or_default().unknown += amount;
            }
        }
        self.note(format!("concurrent {n}"));
        self.report.operations += n;
        let sim = &self.sim;
        let answers = futures::future::join_all(ops.into_iter().map(|op| async move {
            match op {
                Op::Transfer(c) => Answer::Transfer(sim.write(c, TIMEOUT).await),
                Op::Credit(key, amount) => {
                    let c = bank(BankCommand::Credit {
                        id: key.into(),
                        amount,
                    });
                    Answer::Credit(key, amount, sim.write(c, TIMEOUT).await)
                }
                Op::Read(key) => {
                    let v = sim.read(|s| s.bank.get(key).map_or(0, |a| a.balance)).await;
                    Answer::Read(key, v)
                }
            }
        }))
        .await;
        // The most any read of the batch may see: everything acknowledged or possibly applied.
        let upper: BTreeMap<&'static str, u64> = REGISTERS
            .iter()
            .map(|k| (*k, self.registers.get(k).map_or(0, |r| r.acked + r.unknown)))
            .collect();
        for answer in answers {
            match answer {
                Answer::Credit(key, amount, r) => {
                    self.note(format!("credit {key} +{amount}: {}", summary(&r)));
                    let reg = self.registers.get_mut(key).expect("counted above");
                    reg.answered(amount, &r);
                }
                Answer::Transfer(r) => self.note(format!("transfer: {}", summary(&r))),
                Answer::Read(key, Some(value)) => {
                    self.note(format!("read {key}={value}"));
                    let (lower, last) = before[key];
                    let most = upper[key];
                    if value < lower.max(last) || value > most {
                        self.violation(format!(
                            "register {key}: a concurrent linearizable read saw {value}, outside \
                             [{}, {most}] (acknowledged before it began or read before it, \
                             acknowledged + unknown)",
                            lower.max(last)
                        ));
                    }
                    let reg = self.registers.entry(key).or_default();
                    reg.last_read = reg.last_read.max(value);
                }
                Answer::Read(_, None) => self.note("read:none"),
            }
        }
    }

    async fn jobs(&mut self) {
        match self.rng.below(3) {
            0 => {
                let spec = serde_json::from_value(serde_json::json!({
                    "command": ["work"], "queue": "sim", "lease_ttl": 2, "max_attempts": 100
                }))
                .expect("a job spec");
                if let Ok((Ok(Reply::Jobs(JobReply::Enqueued { ids })), _)) = self
                    .write(Command::Jobs(JobCommand::Enqueue {
                        specs: vec![spec],
                        retention_ms: switchyard_core::jobs::DEFAULT_RETENTION_MS,
                    }))
                    .await
                {
                    self.jobs.extend(ids);
                }
            }
            1 => {
                let worker = format!("w{}", self.rng.below(3));
                let lease = JobCommand::Lease {
                    worker,
                    queue: "sim".into(),
                    labels: BTreeMap::new(),
                    max: 1,
                };
                if let Ok((Ok(Reply::Jobs(JobReply::Leased { jobs })), _)) =
                    self.write(Command::Jobs(lease)).await
                {
                    for (job, token) in jobs {
                        let g = self.granted.entry(job.id).or_default();
                        *g = (*g).max(token);
                        self.leases.push(Lease { job: job.id, token });
                    }
                }
            }
            _ => {
                if self.leases.is_empty() {
                    return;
                }
                let i = self.rng.below(self.leases.len() as u64) as usize;
                let Lease { job, token } = self.leases.swap_remove(i);
                let newer = self.granted.get(&job).is_some_and(|g| *g > token);
                let finish = JobCommand::Finish {
                    id: job,
                    token,
                    ending: Ending::Exited,
                    exit_code: Some(0),
                    error: None,
                };
                if let Ok((Ok(_), _)) = self.write(Command::Jobs(finish)).await {
                    if newer {
                        self.violation(format!(
                            "job {job}: a finish with token {token} was accepted after a newer lease was granted"
                        ));
                    }
                    if !self.finished.insert(job) {
                        self.violation(format!("job {job}: a second finish was accepted"));
                    }
                }
            }
        }
    }

    /// One random fault (or its repair).
    async fn fault(&mut self) {
        self.report.faults += 1;
        let ids = self.sim.ids();
        let n = ids.len() as u64;
        let pick = ids[self.rng.below(n) as usize];
        let up: Vec<u64> = ids.iter().copied().filter(|i| self.sim.is_up(*i)).collect();
        let kind = self.rng.below(12);
        self.note(format!("fault{kind}:{pick}"));
        match kind {
            0 => self.sim.isolate(pick),
            1 => {
                let other = ids[self.rng.below(n) as usize];
                if other != pick {
                    self.sim.router.partition(&[pick], &[other]);
                }
            }
            2 => self.sim.router.heal(),
            // Crash a node, keeping a majority up.
            3 if up.len() as u64 > n / 2 + 1 && self.sim.is_up(pick) => self.sim.crash(pick).await,
            4 => {
                for id in ids {
                    if !self.sim.is_up(id) {
                        self.sim.restart(id).await;
                    }
                }
            }
            // A power cut: every node at once, then back.
            5 => {
                for id in &ids {
                    if self.sim.is_up(*id) {
                        self.sim.crash(*id).await;
                    }
                }
                self.sim
                    .advance(Duration::from_millis(self.rng.below(50)))
                    .await;
                for id in ids {
                    self.sim.restart(id).await;
                }
            }
            6 if self.sim.is_up(pick) && !self.sim.is_paused(pick) => self.sim.pause(pick),
            7 => {
                for id in ids {
                    if self.sim.is_up(id) && self.sim.is_paused(id) {
                        self.sim.resume(id);
                    }
                }
            }
            8 => {
                let count = 5 + self.rng.below(50) as u32;
                self.sim.router.add_rule(
                    Some(Rpc::Vote),
                    None,
                    None,
                    Stage::BeforeSend,
                    Action::Drop,
                    Some(count),
                );
            }
            9 => {
                // The leader does not hear its followers' answers for a while: writes time out
                // although they were replicated.
                let count = 10 + self.rng.below(100) as u32;
                self.sim.router.add_rule(
                    Some(Rpc::AppendEntries),
                    None,
                    None,
                    Stage::AfterReceive,
                    Action::Drop,
                    Some(count),
                );
            }
            10 => {
                let delay = Duration::from_millis(50 + self.rng.below(3000));
                let count = 1 + self.rng.below(20) as u32;
                self.sim.router.add_rule(
                    Some(Rpc::AppendEntries),
                    Some(pick),
                    None,
                    Stage::BeforeSend,
                    Action::Delay(delay),
                    Some(count),
                );
            }
            11 if self.sim.is_up(pick) => {
                let hold = self.rng.chance(50);
                self.sim.hold_apply(pick, hold);
            }
            _ => self.note("no fault"),
        }
    }

    /// Repair everything now and then, so work goes on.
    async fn repair(&mut self) {
        self.note("repair");
        for id in self.sim.ids() {
            if !self.sim.is_up(id) {
                self.sim.restart(id).await;
            } else if self.sim.is_paused(id) {
                self.sim.resume(id);
            }
            self.sim.hold_apply(id, false);
        }
        self.sim.router.heal();
    }

    fn check_end(&mut self) {
        let ids = self.sim.ids();
        let first = ids[0];
        // Every replica holds the same state.
        let reference = self.sim.sm(first).read(|i| i.core.clone());
        for id in &ids[1..] {
            let same = self.sim.sm(*id).read(|i| i.core == reference);
            if !same {
                self.violation(format!(
                    "node {id} holds a different state than node {first}"
                ));
            }
        }
        let total: u64 = TRANSFER
            .iter()
            .map(|id| reference.bank.get(id).map_or(0, |a| a.balance))
            .sum();
        if total != INITIAL * TRANSFER.len() as u64 {
            self.violation(format!(
                "bank: the transfer accounts hold {total}, not {}",
                INITIAL * TRANSFER.len() as u64
            ));
        }
        for key in REGISTERS {
            let value = reference.bank.get(key).map_or(0, |a| a.balance);
            let reg = self.registers.entry(key).or_default();
            let (lower, upper) = (reg.acked, reg.acked + reg.unknown);
            if value < lower || value > upper {
                self.violation(format!(
                    "register {key}: ends at {value}, outside [{lower}, {upper}] (acknowledged, acknowledged + unknown)"
                ));
            }
        }
        let lost: Vec<u64> = self
            .jobs
            .iter()
            .copied()
            .filter(|j| reference.jobs.get(*j).is_none())
            .collect();
        if !lost.is_empty() {
            self.violation(format!("jobs lost after they were acknowledged: {lost:?}"));
        }
        // Event histories: ordered, unique, and equal wherever two nodes both hold a revision.
        let histories: Vec<History> = ids
            .iter()
            .map(|id| {
                self.sim.sm(*id).read(|i| {
                    let compact = i.history.compact_revision();
                    let head = i.last_applied.map_or(0, |l| l.index());
                    let events = match i.history.read_after(compact, "", usize::MAX, head) {
                        ReadAfter::Events { events, .. } => events
                            .into_iter()
                            .map(|e| (e.revision, e.message.to_string()))
                            .collect(),
                        ReadAfter::Compacted { .. } => Vec::new(),
                    };
                    (*id, compact, events)
                })
            })
            .collect();
        for (id, _, events) in &histories {
            if events.windows(2).any(|w| w[0].0 > w[1].0) {
                self.violation(format!("node {id}: events out of revision order"));
            }
        }
        let (a_id, a_compact, a) = &histories[0];
        for (b_id, b_compact, b) in &histories[1..] {
            let from = (*a_compact).max(*b_compact);
            let keep = |e: &&(u64, String)| e.0 > from;
            let a: Vec<_> = a.iter().filter(keep).collect();
            let b: Vec<_> = b.iter().filter(keep).collect();
            if a != b {
                self.violation(format!(
                    "nodes {a_id} and {b_id} hold different events after revision {from}"
                ));
            }
        }
        self.note(format!("end:{}", self.sim.sm(first).revision()));
    }
}

/// Run one seed of `steps` operations, with `bug` re-introduced if given.
pub fn fuzz_one(seed: u64, steps: u64, bug: Option<Bug>) -> Report {
    fuzz_with(
        seed,
        steps,
        SimOptions {
            bug,
            ..SimOptions::default()
        },
    )
}

/// Run one seed of `steps` operations on a cluster built with `opts`.
pub fn fuzz_with(seed: u64, steps: u64, opts: SimOptions) -> Report {
    run_seeded(seed, async move {
        let start = tokio::time::Instant::now();
        let sim = Sim::start(opts).await;
        let mut run = Run {
            sim,
            rng: Rng::new(seed),
            report: Report {
                seed,
                ..Report::default()
            },
            registers: BTreeMap::new(),
            jobs: BTreeSet::new(),
            leases: Vec::new(),
            granted: BTreeMap::new(),
            finished: BTreeSet::new(),
            digest: 0xcbf2_9ce4_8422_2325,
            print: std::env::var_os("SWITCHYARD_SIM_TRACE").is_some(),
        };
        if let Err(e) = run.setup().await {
            run.violation(e);
        }
        for step in 0..steps {
            let op = run.rng.below(100);
            if run.print {
                eprintln!("step {step}: op {op}");
            }
            match op {
                0..25 => run.transfer().await,
                25..40 => run.credit().await,
                40..52 => run.read().await,
                52..68 => run.jobs().await,
                68..80 => run.concurrent().await,
                80..92 => {
                    let d = Duration::from_millis(1 + run.rng.below(300));
                    run.sim.advance(d).await;
                }
                _ => run.fault().await,
            }
            if step % 50 == 49 {
                run.repair().await;
            }
        }
        if !run.sim.settle(Duration::from_secs(60)).await {
            run.violation("the cluster did not converge within 60 s after healing".into());
        }
        run.check_end();
        run.sim.shutdown().await;
        for p in std::mem::take(&mut *PANICS.lock().unwrap()) {
            run.violation(p);
        }
        run.report.simulated = start.elapsed();
        run.report.trace = run.digest;
        run.report
    })
}
