//! The faults the fuzzer injects, drawn from the run's RNG and applied to the cluster, between
//! operations or while a batch of them is in flight; and membership changes.

use std::time::Duration;

use super::Workload;
use switchyard_testing::cluster::SimCluster;
use switchyard_testing::net::{Action, Kind, Rule, Stage};

/// One fault (or its repair).
#[derive(Debug, Clone)]
pub enum Fault {
    Isolate(u64),
    Cut(u64, u64),
    Heal,
    /// Crash a node, if a majority of voters stays up.
    Crash(u64),
    RestartAll,
    /// Every node at once, back after this long.
    PowerCut(Duration),
    Pause(u64),
    ResumeAll,
    DropVotes(u32),
    /// The leader does not hear its followers' answers for a while: writes time out although
    /// they were replicated.
    DropAppendAnswers(u32),
    DelayAppends {
        from: u64,
        delay: Duration,
        count: u32,
    },
    /// Messages overtake each other.
    Jitter {
        max: Duration,
        count: u32,
    },
    Duplicate(u32),
    /// Requests handed to the leader get lost on the way back.
    DropLeaderAnswers(u32),
    HoldApply(u64, bool),
}

impl Workload {
    /// Draw a fault at random.
    pub(super) fn draw_fault(&mut self) -> Fault {
        let ids = self.sim.ids();
        let pick = |rng: &mut super::Rng| ids[rng.below(ids.len() as u64) as usize];
        let node = pick(&mut self.rng);
        match self.rng.below(17) {
            0 => Fault::Isolate(node),
            1 => Fault::Cut(node, pick(&mut self.rng)),
            2 => Fault::Heal,
            3 | 4 => Fault::Crash(node),
            5 => Fault::RestartAll,
            6 => Fault::PowerCut(Duration::from_millis(self.rng.below(50))),
            7 => Fault::Pause(node),
            8 => Fault::ResumeAll,
            9 => Fault::DropVotes(5 + self.rng.below(50) as u32),
            10 => Fault::DropAppendAnswers(10 + self.rng.below(100) as u32),
            11 => Fault::DelayAppends {
                from: node,
                delay: Duration::from_millis(50 + self.rng.below(3000)),
                count: 1 + self.rng.below(20) as u32,
            },
            12 => Fault::Jitter {
                max: Duration::from_millis(1 + self.rng.below(100)),
                count: 20 + self.rng.below(200) as u32,
            },
            13 => Fault::Duplicate(5 + self.rng.below(50) as u32),
            14 | 15 => Fault::DropLeaderAnswers(1 + self.rng.below(20) as u32),
            _ => Fault::HoldApply(node, self.rng.chance(50)),
        }
    }

    /// One random fault, now.
    pub async fn fault(&mut self) {
        self.faults += 1;
        let f = self.draw_fault();
        self.note(format!("fault {f:?}"));
        apply(&self.sim, f).await;
    }

    /// A membership change: add a node, remove one, or replace the leader (add a node, then
    /// remove the leader). Asked of any node; the cluster keeps three to five voters.
    pub async fn membership(&mut self) {
        self.operations += 1;
        let voters = self.sim.voters();
        let Some(via) = self.sim.pick() else { return };
        let kind = self.rng.below(3);
        let out = match kind {
            0 if voters.len() < 5 => {
                let id = self.sim.new_node().await;
                format!("add {id}: {:?}", self.sim.add_member(via, id).await)
            }
            1 if voters.len() > 3 => {
                let v: Vec<u64> = voters.iter().copied().collect();
                let id = v[self.rng.below(v.len() as u64) as usize];
                self.remove(via, id).await
            }
            _ if voters.len() <= 4 => {
                let Some(leader) = self.sim.leader() else {
                    return self.note("replace: no leader");
                };
                let id = self.sim.new_node().await;
                let added = self.sim.add_member(via, id).await;
                if added.is_err() {
                    return self.note(format!("replace {leader} by {id}: add {added:?}"));
                }
                let via = self.sim.pick().unwrap_or(via);
                format!(
                    "replace {leader} by {id}: {}",
                    self.remove(via, leader).await
                )
            }
            _ => return,
        };
        self.note(format!("membership {out}"));
    }

    /// Remove `id`; once the removal is known everywhere the node is stopped and forgotten.
    async fn remove(&mut self, via: u64, id: u64) -> String {
        let r = self.sim.remove_member(via, id).await;
        if r.is_ok() {
            self.sim.forget(id).await;
        }
        format!("remove {id}: {r:?}")
    }
}

/// Apply a fault to the cluster (conditions are checked again: the cluster may have changed
/// since it was drawn).
pub(super) async fn apply(sim: &SimCluster, f: Fault) {
    let ids = sim.ids();
    let known = |id: u64| ids.contains(&id);
    match f {
        Fault::Isolate(n) if known(n) => sim.isolate(n),
        Fault::Cut(a, b) if known(a) && known(b) && a != b => sim.router.partition(&[a], &[b]),
        Fault::Heal => sim.router.heal(),
        Fault::Crash(n) if known(n) && sim.is_up(n) => {
            let voters = sim.voters();
            let up = voters.iter().filter(|v| sim.is_up(**v)).count();
            let after = up - usize::from(voters.contains(&n));
            if after > voters.len() / 2 {
                sim.crash(n).await;
            }
        }
        Fault::RestartAll => {
            for id in ids {
                if !sim.is_up(id) {
                    sim.restart(id).await;
                }
            }
        }
        Fault::PowerCut(down) => {
            for id in &ids {
                if sim.is_up(*id) {
                    sim.crash(*id).await;
                }
            }
            sim.advance(down).await;
            for id in ids {
                sim.restart(id).await;
            }
        }
        Fault::Pause(n) if known(n) && sim.is_up(n) && !sim.is_paused(n) => sim.pause(n),
        Fault::ResumeAll => sim.resume_all(),
        Fault::DropVotes(count) => {
            add(
                sim,
                rule(sim, Stage::BeforeSend, Action::Drop)
                    .kind(Kind::Vote)
                    .times(count),
            );
        }
        Fault::DropAppendAnswers(count) => {
            add(
                sim,
                rule(sim, Stage::AfterProcess, Action::Drop)
                    .kinds(Kind::APPEND_ENTRIES)
                    .times(count),
            );
        }
        Fault::DelayAppends { from, delay, count } => {
            add(
                sim,
                rule(sim, Stage::BeforeSend, Action::Delay(delay))
                    .kinds(Kind::APPEND_ENTRIES)
                    .from(from)
                    .times(count),
            );
        }
        Fault::Jitter { max, count } => {
            add(
                sim,
                rule(sim, Stage::BeforeSend, Action::Jitter(max)).times(count),
            );
        }
        Fault::Duplicate(count) => {
            add(
                sim,
                rule(sim, Stage::BeforeSend, Action::Duplicate)
                    .kinds(Kind::APPEND_ENTRIES)
                    .times(count),
            );
        }
        Fault::DropLeaderAnswers(count) => {
            add(
                sim,
                rule(sim, Stage::AfterProcess, Action::Drop)
                    .kind(Kind::Forward)
                    .times(count),
            );
        }
        Fault::HoldApply(n, hold) if known(n) && sim.is_up(n) => sim.hold_apply(n, hold),
        _ => {}
    }
}

/// A fault's rule, under a name of its own.
fn rule(sim: &SimCluster, stage: Stage, action: Action) -> Rule {
    Rule::new(sim.router.fresh_name("fault"), stage, action)
}

/// Add a fault's rule after the others.
fn add(sim: &SimCluster, rule: Rule) {
    sim.router
        .add_rule(rule)
        .expect("fresh rule names are unique");
}
