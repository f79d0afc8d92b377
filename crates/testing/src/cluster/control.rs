//! Control of nodes and time: crash and restart, pause and resume a node (its timers and its
//! message processing together), list a node's timers and pause one, add and remove members,
//! partition and heal, hold applies, and the repair that undoes every fault.
//!
//! Every control takes `&self`, so a test can use it while operations it started are still in
//! flight.

use std::collections::BTreeSet;
use std::time::Duration;

use switchyard_node::NodeError;
use tokio::task::JoinHandle;

use super::{SimCluster, addr, spawn_service};
use crate::log::Disk;

/// A timer of the node itself, which a test can pause on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeTimer {
    /// A follower's (or candidate's) election timeout: when it runs out, the node stands.
    Election,
    /// The leader's heartbeat to its followers.
    Heartbeat,
    /// The leader's scheduler: it fires the application's timers (device phases, lease
    /// expiries, agent deadlines, retention) with a `Tick` through the log.
    Scheduler,
    /// The leader's active check of agents that have a health URL.
    AgentCheck,
}

impl NodeTimer {
    pub const ALL: [NodeTimer; 4] = [
        NodeTimer::Election,
        NodeTimer::Heartbeat,
        NodeTimer::Scheduler,
        NodeTimer::AgentCheck,
    ];
}

/// One entry of a node's timer catalogue.
#[derive(Debug, Clone, PartialEq)]
pub enum TimerKind {
    /// A timer of the node ([`SimCluster::pause_timer`] pauses it).
    Node(NodeTimer),
    /// A timer of the application in the node's applied state, due at `due_ms` (virtual wall
    /// clock, see [`crate::Clock`]): the leader's [`NodeTimer::Scheduler`] fires it, so pausing
    /// the scheduler holds it. A follower lists what it would fire if it led.
    App {
        due_ms: i64,
        timer: switchyard_core::Timer,
    },
}

/// A timer and whether it is held now.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerInfo {
    pub kind: TimerKind,
    pub paused: bool,
}

impl SimCluster {
    /// Crash node `id`: its tasks stop at once; what its log had not flushed is lost.
    pub async fn crash(&self, id: u64) {
        let node = {
            let mut nodes = self.nodes.borrow_mut();
            let n = nodes.get_mut(&id).expect("a node");
            if let Some(w) = n.writer.take() {
                w.abort();
            }
            for (_, (token, task)) in std::mem::take(&mut n.services) {
                token.cancel();
                task.abort();
            }
            n.paused = false;
            n.paused_timers.clear();
            n.node.take()
        };
        self.router.set_node(id, None);
        self.endpoints.down(&addr(id).api);
        self.router.set_paused(id, false);
        self.trace.add(format!("crash {id}"));
        if let Some(node) = node {
            let _ = node.raft.shutdown().await;
        }
    }

    /// Restart a crashed node from its disk.
    pub async fn restart(&self, id: u64) {
        assert!(!self.is_up(id), "node {id} is up");
        let disk = self.nodes.borrow()[&id].disk.clone();
        self.boot(id, disk).await;
    }

    /// Boot a new node on an empty disk (it waits to be added), under the next free id.
    pub async fn new_node(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.boot(
            id,
            std::sync::Arc::new(std::sync::Mutex::new(Disk::default())),
        )
        .await;
        id
    }

    /// Ask node `via` to add node `id` (learner, then voter).
    pub async fn add_member(&self, via: u64, id: u64) -> Result<(), NodeError> {
        let node = self
            .node(via)
            .ok_or_else(|| NodeError::unavailable(format!("node {via} is down")))?;
        let r = node.add_member(id, addr(id)).await;
        self.trace.add(format!("add {id} via {via}: {r:?}"));
        r
    }

    /// Ask node `via` to remove node `id`; once removed, `id` is stopped and forgotten.
    pub async fn remove_member(&self, via: u64, id: u64) -> Result<(), NodeError> {
        let node = self
            .node(via)
            .ok_or_else(|| NodeError::unavailable(format!("node {via} is down")))?;
        let r = node.remove_member(id).await;
        self.trace.add(format!("remove {id} via {via}: {r:?}"));
        r
    }

    /// Stop node `id` for good and forget it (after it was removed from the cluster).
    pub async fn forget(&self, id: u64) {
        if self.is_up(id) {
            self.crash(id).await;
        }
        self.nodes.borrow_mut().remove(&id);
    }

    /// Pause node `id`: every timer of it stops (elections, heartbeats, Raft's ticker, the
    /// scheduler, the agent check) and its message processing with them: what it would send
    /// waits before send, what reaches it waits before it is processed, and answers to or from
    /// it wait, whatever the network's rules say. A paused leader commits nothing. Until
    /// [`SimCluster::resume`].
    pub fn pause(&self, id: u64) {
        for t in NodeTimer::ALL {
            self.set_timer(id, t, false);
        }
        self.raft(id).runtime_config().tick(false);
        self.router.set_paused(id, true);
        self.nodes.borrow_mut().get_mut(&id).expect("a node").paused = true;
        self.trace.add(format!("pause {id}"));
    }

    /// Resume a paused node: its messages go on, and every timer of it runs again (those paused
    /// one by one too).
    pub fn resume(&self, id: u64) {
        self.nodes.borrow_mut().get_mut(&id).expect("a node").paused = false;
        self.router.set_paused(id, false);
        self.raft(id).runtime_config().tick(true);
        for t in NodeTimer::ALL {
            self.set_timer(id, t, true);
        }
        self.trace.add(format!("resume {id}"));
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.borrow().get(&id).is_some_and(|n| n.paused)
    }

    /// Pause one timer of node `id` (it stays paused until [`SimCluster::resume_timer`] or
    /// [`SimCluster::resume`]); the node goes on otherwise.
    pub fn pause_timer(&self, id: u64, timer: NodeTimer) {
        self.set_timer(id, timer, false);
        self.trace.add(format!("pause-timer {id} {timer:?}"));
    }

    pub fn resume_timer(&self, id: u64, timer: NodeTimer) {
        self.set_timer(id, timer, true);
        self.trace.add(format!("resume-timer {id} {timer:?}"));
    }

    fn set_timer(&self, id: u64, timer: NodeTimer, run: bool) {
        let node = self.node(id).expect("the node is up");
        let rc = node.raft.runtime_config();
        let stopped: Option<(tokio_util::sync::CancellationToken, JoinHandle<()>)> = {
            let mut nodes = self.nodes.borrow_mut();
            let n = nodes.get_mut(&id).expect("a node");
            if run {
                n.paused_timers.remove(&timer);
            } else {
                n.paused_timers.insert(timer);
            }
            match timer {
                NodeTimer::Election => {
                    rc.elect(run);
                    None
                }
                NodeTimer::Heartbeat => {
                    rc.heartbeat(run);
                    None
                }
                NodeTimer::Scheduler | NodeTimer::AgentCheck if run => {
                    n.services
                        .entry(timer)
                        .or_insert_with(|| spawn_service(&node, timer));
                    None
                }
                NodeTimer::Scheduler | NodeTimer::AgentCheck => n.services.remove(&timer),
            }
        };
        if let Some((token, task)) = stopped {
            token.cancel();
            task.abort();
        }
    }

    /// Node `id`'s timer catalogue: its own timers, then the application's timers its state
    /// holds, in due order.
    pub fn timers(&self, id: u64) -> Vec<TimerInfo> {
        let nodes = self.nodes.borrow();
        let n = &nodes[&id];
        let held = |t: NodeTimer| n.node.is_none() || n.paused_timers.contains(&t);
        let mut all: Vec<TimerInfo> = NodeTimer::ALL
            .into_iter()
            .map(|t| TimerInfo {
                kind: TimerKind::Node(t),
                paused: held(t),
            })
            .collect();
        let app = n.view.read(|s| {
            s.timers
                .iter()
                .map(|(due_ms, timer)| TimerInfo {
                    kind: TimerKind::App {
                        due_ms,
                        timer: timer.clone(),
                    },
                    paused: held(NodeTimer::Scheduler),
                })
                .collect::<Vec<_>>()
        });
        all.extend(app);
        all
    }

    /// Hold node `id`'s state machine before its next apply (or let it go on).
    pub fn hold_apply(&self, id: u64, hold: bool) {
        self.nodes.borrow()[&id].gate.hold.send_replace(hold);
    }

    /// Hold node `id`'s state machine once it has applied `index` (`None`: let it go on).
    pub fn hold_apply_after(&self, id: u64, index: Option<u64>) {
        self.nodes.borrow()[&id].gate.hold_after.send_replace(index);
    }

    /// Pause every node that is up: the whole cluster stands still.
    pub fn pause_all(&self) {
        for id in self.ids() {
            if self.is_up(id) && !self.is_paused(id) {
                self.pause(id);
            }
        }
    }

    pub fn resume_all(&self) {
        for id in self.ids() {
            if self.is_up(id) && self.is_paused(id) {
                self.resume(id);
            }
        }
    }

    /// Cut `id` off from every other node.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.ids().into_iter().filter(|x| *x != id).collect();
        self.router.partition(&[id], &others);
    }

    /// Split the cluster: no message crosses between `a` and `b`.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        self.router.partition(a, b);
        self.trace.add(format!("partition {a:?} {b:?}"));
    }

    /// Restore every link.
    pub fn heal(&self) {
        self.router.heal();
        self.trace.add("heal");
    }

    /// Every fault repaired: every member up and resumed (its timers too), applying,
    /// connected, no message rules; nodes that are no longer members (removed, or never added)
    /// are stopped.
    pub async fn repair(&self) {
        let members = self.members();
        for id in self.ids() {
            if !members.contains(&id) {
                self.forget(id).await;
                continue;
            }
            if !self.is_up(id) {
                self.restart(id).await;
            } else if self.is_paused(id) {
                self.resume(id);
            } else {
                let held: BTreeSet<NodeTimer> = self.nodes.borrow()[&id].paused_timers.clone();
                for t in held {
                    self.set_timer(id, t, true);
                }
            }
            self.hold_apply(id, false);
            self.hold_apply_after(id, None);
        }
        self.router.heal();
        self.router.clear_rules();
        self.trace.add("repair");
    }

    /// [`SimCluster::repair`], then wait until every voter has applied the leader's last entry.
    pub async fn settle(&self, within: Duration) -> bool {
        self.repair().await;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let voters = self.voters();
            let leader_last = self
                .leader()
                .and_then(|l| self.metrics(l))
                .map(|(_, _, last, _)| last);
            let applied: Vec<u64> = voters
                .iter()
                .filter_map(|id| self.metrics(*id))
                .map(|(_, _, last, applied)| applied.min(last))
                .collect();
            if let Some(last) = leader_last
                && applied.len() == voters.len()
                && applied.iter().all(|a| *a == last)
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop every node (end of a run).
    pub async fn shutdown(&self) {
        for id in self.ids() {
            if self.is_up(id) {
                self.crash(id).await;
            }
        }
    }
}
