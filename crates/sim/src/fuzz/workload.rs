//! What the fuzzer's clients do, and the application oracles that check every answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use switchyard_core::bank::BankCommand;
use switchyard_core::jobs::{Ending, JobCommand, JobReply};
use switchyard_core::{Command, Reply};
use switchyard_node::NodeError;
use switchyard_store::ReadAfter;

use super::{LIVENESS, Rng};
use switchyard_testing::cluster::{Effect, SimCluster, WriteResult, effect};

const TRANSFER: [&str; 4] = ["t0", "t1", "t2", "t3"];
const REGISTERS: [&str; 3] = ["r0", "r1", "r2"];
const INITIAL: u64 = 1000;
/// How long a client keeps trying one operation.
pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Register {
    acked: u64,
    unknown: u64,
    last_read: u64,
}

impl Register {
    /// A credit of `amount` (counted as unknown while in flight) was answered with `r`.
    fn answered(&mut self, amount: u64, r: &WriteResult) {
        match effect(r) {
            Effect::Applied => {
                self.unknown -= amount;
                self.acked += amount;
            }
            Effect::NotApplied => self.unknown -= amount,
            Effect::Unknown => {}
        }
    }
}

/// A node's id, its oldest resumable revision, and its events as (revision, message).
type History = (u64, u64, Vec<(u64, String)>);

struct Lease {
    job: u64,
    token: u64,
}

/// One run's clients and what they have seen.
pub struct Workload {
    pub sim: SimCluster,
    pub rng: Rng,
    pub operations: u64,
    pub faults: u64,
    violations: Vec<String>,
    registers: BTreeMap<&'static str, Register>,
    jobs: BTreeSet<u64>,
    leases: Vec<Lease>,
    /// Highest token the fuzzer saw granted per job.
    granted: BTreeMap<u64, u64>,
    finished: BTreeSet<u64>,
    print: bool,
    probes: u64,
}

fn bank(c: BankCommand) -> Command {
    Command::Bank(c)
}

/// A write's answer, for the trace.
pub(super) fn summary(r: &WriteResult) -> String {
    match r {
        Ok((_, index)) => format!("ok@{index}"),
        Err(NodeError::Refused(e)) => format!("refused:{}", e.code()),
        Err(NodeError::NotLeader { .. }) => "not-leader".into(),
        Err(NodeError::Unavailable { .. }) => "unavailable".into(),
        Err(NodeError::OutcomeUnknown { .. }) => "unknown".into(),
        Err(NodeError::Internal { message }) => format!("internal:{message}"),
    }
}

impl Workload {
    pub fn new(sim: SimCluster, seed: u64, print: bool) -> Self {
        Self {
            sim,
            rng: Rng::new(seed),
            operations: 0,
            faults: 0,
            violations: Vec::new(),
            registers: BTreeMap::new(),
            jobs: BTreeSet::new(),
            leases: Vec::new(),
            granted: BTreeMap::new(),
            finished: BTreeSet::new(),
            print,
            probes: 0,
        }
    }

    /// Record an event of the run: in the trace, and printed with `--print`.
    pub(super) fn note(&self, what: impl std::fmt::Display) {
        let what = what.to_string();
        if self.print {
            eprintln!("[{:>9.3}s] {what}", self.sim.clock.elapsed_s());
        }
        self.sim.trace.add(format!("client {what}"));
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// The violations found since the last call.
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
    }

    async fn write(&mut self, c: Command) -> WriteResult {
        self.operations += 1;
        let r = self.sim.write(c, TIMEOUT).await;
        self.note(summary(&r));
        r
    }

    pub async fn setup(&mut self) -> Result<(), String> {
        for id in TRANSFER.iter().chain(REGISTERS.iter()) {
            let r = self
                .write(bank(BankCommand::Open { id: id.to_string() }))
                .await;
            if r.is_err() {
                return Err(format!("setup: open {id}: {r:?}"));
            }
        }
        for id in TRANSFER {
            let credit = bank(BankCommand::Credit {
                id: id.into(),
                amount: INITIAL,
            });
            if let Err(e) = self.write(credit).await {
                return Err(format!("setup: credit {id}: {e}"));
            }
        }
        Ok(())
    }

    fn transfer_command(&mut self) -> Command {
        let from = self.rng.below(4) as usize;
        let to = (from + 1 + self.rng.below(3) as usize) % 4;
        bank(BankCommand::Transfer {
            from: TRANSFER[from].into(),
            to: TRANSFER[to].into(),
            amount: 1 + self.rng.below(50),
        })
    }

    pub async fn transfer(&mut self) {
        let c = self.transfer_command();
        let _ = self.write(c).await;
    }

    pub async fn credit(&mut self) {
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

    pub async fn read(&mut self) {
        let key = REGISTERS[self.rng.below(3) as usize];
        let lower = self.registers.get(key).map_or(0, |r| r.acked);
        self.operations += 1;
        let Some((node, value)) = self
            .sim
            .read(|s| s.bank.get(key).map_or(0, |a| a.balance))
            .await
        else {
            self.note("read:none");
            return;
        };
        self.note(format!("read {key}={value} on {node}"));
        let reg = self.registers.entry(key).or_default();
        let upper = reg.acked + reg.unknown;
        let last = reg.last_read;
        reg.last_read = reg.last_read.max(value);
        if value < lower || value > upper {
            self.violation(format!(
                "register {key}: a linearizable read on node {node} saw {value}, outside [{lower}, {upper}] (acknowledged, acknowledged + unknown)"
            ));
        } else if value < last {
            self.violation(format!(
                "register {key}: a read on node {node} saw {value} after {last}"
            ));
        }
    }

    /// Two to five bank operations of concurrent clients in flight at once, and sometimes a
    /// fault that strikes while they are. A credit may be applied any time until it is
    /// answered, so every credit of the batch counts as unknown while it runs; a read must see
    /// at least what was acknowledged before the batch began and what any read that ended
    /// before it saw, and at most what may have been applied.
    pub async fn concurrent(&mut self) {
        enum Op {
            Transfer(Command),
            Credit(&'static str, u64),
            Read(&'static str),
        }
        enum Answer {
            Transfer(WriteResult),
            Credit(&'static str, u64, WriteResult),
            Read(&'static str, Option<(u64, u64)>),
            Fault,
        }
        let n = 2 + self.rng.below(4);
        let mut ops = Vec::new();
        for _ in 0..n {
            let op = match self.rng.below(3) {
                0 => Op::Transfer(self.transfer_command()),
                1 => Op::Credit(REGISTERS[self.rng.below(3) as usize], 1 + self.rng.below(9)),
                _ => Op::Read(REGISTERS[self.rng.below(3) as usize]),
            };
            ops.push(op);
        }
        // Half the batches meet a fault in flight, a random while after they start.
        let fault = self.rng.chance(50).then(|| {
            (
                Duration::from_millis(self.rng.below(200)),
                self.draw_fault(),
            )
        });
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
        self.note(format!("concurrent {n} fault={fault:?}"));
        self.operations += n;
        if fault.is_some() {
            self.faults += 1;
        }
        let sim = &self.sim;
        let mut work: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + '_>>> = ops
            .into_iter()
            .map(
                |op| -> std::pin::Pin<Box<dyn std::future::Future<Output = Answer>>> {
                    Box::pin(async move {
                        match op {
                            Op::Transfer(c) => Answer::Transfer(sim.write(c, TIMEOUT).await),
                            Op::Credit(key, amount) => {
                                let c = bank(BankCommand::Credit {
                                    id: key.into(),
                                    amount,
                                });
                                Answer::Credit(key, amount, sim.write(c, TIMEOUT).await)
                            }
                            Op::Read(key) => Answer::Read(
                                key,
                                sim.read(|s| s.bank.get(key).map_or(0, |a| a.balance)).await,
                            ),
                        }
                    })
                },
            )
            .collect();
        if let Some((after, fault)) = fault {
            work.push(Box::pin(async move {
                tokio::time::sleep(after).await;
                super::faults::apply(sim, fault).await;
                Answer::Fault
            }));
        }
        let answers = futures::future::join_all(work).await;
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
                Answer::Read(key, Some((node, value))) => {
                    self.note(format!("read {key}={value} on {node}"));
                    let (lower, last) = before[key];
                    let most = upper[key];
                    if value < lower.max(last) || value > most {
                        self.violation(format!(
                            "register {key}: a concurrent linearizable read on node {node} saw \
                             {value}, outside [{}, {most}] (acknowledged before it began or read \
                             before it, acknowledged + unknown)",
                            lower.max(last)
                        ));
                    }
                    let reg = self.registers.entry(key).or_default();
                    reg.last_read = reg.last_read.max(value);
                }
                Answer::Read(_, None) => self.note("read:none"),
                Answer::Fault => {}
            }
        }
    }

    pub async fn jobs(&mut self) {
        match self.rng.below(3) {
            0 => {
                let spec = serde_json::from_value(serde_json::json!({
                    "command": ["work"], "queue": "sim", "lease_ttl": 2, "max_attempts": 100
                }))
                .expect("a job spec");
                if let Ok((Reply::Jobs(JobReply::Enqueued { ids }), _)) = self
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
                if let Ok((Reply::Jobs(JobReply::Leased { jobs }), _)) =
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
                if self.write(Command::Jobs(finish)).await.is_ok() {
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

    /// The liveness bound: with every fault repaired, a write through any node completes
    /// within [`LIVENESS`].
    pub async fn liveness(&mut self) -> Vec<String> {
        self.probes += 1;
        let id = format!("live{}", self.probes);
        let started = tokio::time::Instant::now();
        let r = self
            .sim
            .write(bank(BankCommand::Open { id: id.clone() }), LIVENESS)
            .await;
        self.note(format!("liveness {id}: {}", summary(&r)));
        match r {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!(
                "liveness: with every fault repaired, a write got no answer within {:?} ({e})",
                started.elapsed()
            )],
        }
    }

    /// At the end, every replica healed: the same state everywhere, money conserved, registers
    /// within bounds, no acknowledged job lost, event histories in order and equal.
    pub fn check_end(&mut self) -> Vec<String> {
        let known = self.sim.ids();
        let ids: Vec<u64> = self
            .sim
            .voters()
            .into_iter()
            .filter(|id| known.contains(id))
            .collect();
        let Some(&first) = ids.first() else {
            return vec!["no voters at the end".into()];
        };
        let mut found = Vec::new();
        let reference = self.sim.view(first).read(|s| s.clone());
        for id in &ids[1..] {
            if !self.sim.view(*id).read(|s| *s == reference) {
                found.push(format!(
                    "node {id} holds a different state than node {first}"
                ));
            }
        }
        let total: u64 = TRANSFER
            .iter()
            .map(|id| reference.bank.get(id).map_or(0, |a| a.balance))
            .sum();
        if total != INITIAL * TRANSFER.len() as u64 {
            found.push(format!(
                "bank: the transfer accounts hold {total}, not {}",
                INITIAL * TRANSFER.len() as u64
            ));
        }
        for key in REGISTERS {
            let value = reference.bank.get(key).map_or(0, |a| a.balance);
            let reg = self.registers.entry(key).or_default();
            let (lower, upper) = (reg.acked, reg.acked + reg.unknown);
            if value < lower || value > upper {
                found.push(format!(
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
            found.push(format!("jobs lost after they were acknowledged: {lost:?}"));
        }
        found.extend(leases_end_once(&self.sim.view(first)));
        // Event histories: ordered, unique, and equal wherever two nodes both hold a revision.
        let histories: Vec<History> = ids
            .iter()
            .map(|id| {
                let view = self.sim.view(*id);
                let compact = view.compact_revision();
                let events = match view.read_events(compact, "", usize::MAX) {
                    ReadAfter::Events { events, .. } => events
                        .into_iter()
                        .map(|e| (e.revision, e.message.to_string()))
                        .collect(),
                    ReadAfter::Compacted { .. } => Vec::new(),
                };
                (*id, compact, events)
            })
            .collect();
        for (id, _, events) in &histories {
            if events.windows(2).any(|w| w[0].0 > w[1].0) {
                found.push(format!("node {id}: events out of revision order"));
            }
        }
        let (a_id, a_compact, a) = &histories[0];
        for (b_id, b_compact, b) in &histories[1..] {
            let from = (*a_compact).max(*b_compact);
            let keep = |e: &&(u64, String)| e.0 > from;
            let a: Vec<_> = a.iter().filter(keep).collect();
            let b: Vec<_> = b.iter().filter(keep).collect();
            if a != b {
                found.push(format!(
                    "nodes {a_id} and {b_id} hold different events after revision {from}"
                ));
            }
        }
        self.note(format!("end:{}", self.sim.view(first).revision()));
        found
    }
}

/// Every lease ends once: in each job's events, a requeue follows a lease that has not ended
/// yet (a lease expiry that fires twice announces a requeue without one).
fn leases_end_once(view: &switchyard_store::StateView) -> Vec<String> {
    let ReadAfter::Events { events, .. } =
        view.read_events(view.compact_revision(), "jobs/", usize::MAX)
    else {
        return Vec::new();
    };
    let mut leased: BTreeMap<String, bool> = BTreeMap::new();
    let mut found = Vec::new();
    for e in events {
        let kind = serde_json::from_str::<serde_json::Value>(&e.message)
            .ok()
            .and_then(|v| v["event"]["kind"].as_str().map(str::to_string))
            .unwrap_or_default();
        // Judged only from a job's first event on (the history may have been compacted).
        if kind == "queued" {
            leased.entry(e.topic.to_string()).or_default();
        }
        let Some(held) = leased.get_mut(&*e.topic) else {
            continue;
        };
        match kind.as_str() {
            "leased" => *held = true,
            "requeued" if !*held => found.push(format!(
                "{}: requeued at revision {} without a lease to end (a lease expiry fired twice)",
                e.topic, e.revision
            )),
            "requeued" | "finished" | "released" | "dead" | "cancelled" => *held = false,
            _ => {}
        }
    }
    found
}
