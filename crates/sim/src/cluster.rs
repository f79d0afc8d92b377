//! The control surface of a simulated cluster: start N nodes, pause and resume them, crash and
//! restart them from their disks, cut and heal links, hook messages and applies, write and read
//! through the leader, inspect any node.
//!
//! Everything runs on the current task's runtime, which must be a current-thread tokio runtime
//! with paused time (`start_paused`), inside `Runtime::scope(seed, ..)` for openraft's RNG.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use switchyard_core::{Command, Outcome, Proposal, Reply};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::log::{Disk, SharedDisk, SimLog};
use crate::net::{Action, Gate, NetFactory, Router, Stage};
use crate::sm::SimStateMachine;
use crate::{Bug, Clock, NodeAddr, Raft};

/// How the cluster is built.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: u64,
    /// Virtual time one fsync takes.
    pub fsync: Duration,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// A write not answered in this time has an unknown outcome.
    pub write_timeout: Duration,
    pub snapshot_logs: u64,
    pub history: usize,
    pub bug: Option<Bug>,
    /// openraft's `enable_leader_restore`: off, as in the server (on only to show what it
    /// breaks).
    pub leader_restore: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            fsync: Duration::from_millis(2),
            heartbeat_ms: 50,
            election_min_ms: 150,
            election_max_ms: 300,
            write_timeout: Duration::from_secs(2),
            snapshot_logs: 500,
            history: 100_000,
            bug: None,
            leader_restore: false,
        }
    }
}

/// Why a write has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// This node is not the leader (the one it knows, if any); nothing was proposed.
    NotLeader(Option<u64>),
    /// No answer in time, or the leader changed: it may or may not have been applied.
    Unknown(String),
}

struct Node {
    raft: Option<Arc<Raft>>,
    sm: SimStateMachine,
    disk: SharedDisk,
    tasks: Vec<JoinHandle<()>>,
    /// Stops the node's tick loop while it is paused.
    paused: watch::Sender<bool>,
    pause_rules: Vec<(u64, Gate)>,
}

/// A simulated cluster. Node ids are 1..=N.
pub struct Sim {
    pub opts: SimOptions,
    pub router: Router,
    pub clock: Clock,
    nodes: BTreeMap<u64, Node>,
    next_key: std::cell::Cell<u64>,
}

fn raft_config(o: &SimOptions) -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            cluster_name: "switchyard-sim".into(),
            heartbeat_interval: o.heartbeat_ms,
            election_timeout_min: o.election_min_ms,
            election_timeout_max: o.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(o.snapshot_logs),
            max_in_snapshot_log_to_keep: 100,
            // As the server: a restarted leader is elected again (see switchyard-server's node).
            enable_leader_restore: Some(o.leader_restore),
            ..Default::default()
        }
        .validate()
        .expect("a valid simulation config"),
    )
}

impl Sim {
    /// Start `opts.nodes` nodes on empty disks and make them one cluster; returns once a leader
    /// is elected.
    pub async fn start(opts: SimOptions) -> Sim {
        let mut sim = Sim {
            router: Router::default(),
            clock: Clock::start(),
            nodes: BTreeMap::new(),
            next_key: std::cell::Cell::new(0),
            opts,
        };
        for id in 1..=sim.opts.nodes {
            sim.boot(id, Arc::new(std::sync::Mutex::new(Disk::default())))
                .await;
        }
        let members: BTreeMap<u64, NodeAddr> = (1..=sim.opts.nodes)
            .map(|id| (id, NodeAddr::default()))
            .collect();
        sim.raft(1)
            .initialize(members)
            .await
            .expect("a new cluster initialises");
        sim.wait_leader(Duration::from_secs(10))
            .await
            .expect("a leader is elected");
        sim
    }

    async fn boot(&mut self, id: u64, disk: SharedDisk) {
        let ack_early = self.opts.bug == Some(Bug::AckBeforeFsync);
        let (log, writer) = SimLog::open(disk.clone(), self.opts.fsync, ack_early);
        let sm = SimStateMachine::new(disk.clone(), self.opts.history);
        let network = NetFactory {
            from: id,
            router: self.router.clone(),
        };
        let raft = Raft::new(id, raft_config(&self.opts), network, log, sm.clone())
            .await
            .expect("a simulated node starts");
        let raft = Arc::new(raft);
        self.router.set_node(id, Some(raft.clone()));
        let (paused, paused_rx) = watch::channel(false);
        let ticks = tokio::spawn(tick_loop(raft.clone(), sm.clone(), self.clock, paused_rx));
        self.nodes.insert(
            id,
            Node {
                raft: Some(raft),
                sm,
                disk,
                tasks: vec![writer, ticks],
                paused,
                pause_rules: Vec::new(),
            },
        );
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes.get(&id).expect("a node of the simulation")
    }

    /// Node `id`'s Raft handle (panics while it is crashed).
    pub fn raft(&self, id: u64) -> Arc<Raft> {
        self.node(id).raft.clone().expect("the node is up")
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.node(id).raft.is_some()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Node `id`'s state machine (its applied state, history and revision).
    pub fn sm(&self, id: u64) -> &SimStateMachine {
        &self.node(id).sm
    }

    /// Node `id`'s disk: what survives a crash.
    pub fn disk(&self, id: u64) -> Disk {
        self.node(id).disk.lock().unwrap().clone()
    }

    /// (role, term, last log index, last applied index) of node `id`, if it is up.
    pub fn metrics(&self, id: u64) -> Option<(ServerState, u64, u64, u64)> {
        let raft = self.node(id).raft.as_ref()?;
        let m = raft.metrics().borrow_watched().clone();
        Some((
            m.state,
            m.current_term,
            m.last_log_index.unwrap_or(0),
            m.last_applied.map_or(0, |l| l.index()),
        ))
    }

    /// The leader of the highest term among the nodes that are up and not paused.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| !*n.paused.borrow())
            .filter_map(|(id, _)| {
                let (role, term, _, _) = self.metrics(*id)?;
                (role == ServerState::Leader).then_some((term, *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Wait (virtual time) until some node leads.
    pub async fn wait_leader(&self, within: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait (virtual time, in 5 ms steps) until `done` holds: how long it took, or `None` after
    /// `within`.
    pub async fn wait_until(
        &self,
        within: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = tokio::time::Instant::now();
        while !done(self) {
            if start.elapsed() >= within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(start.elapsed())
    }

    /// Let `d` of virtual time pass.
    pub async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// A proposal stamped with the virtual clock.
    pub fn proposal(&self, command: Command, key: Option<String>) -> Proposal {
        let mut p = Proposal::new(self.clock.now_ms(), command);
        p.idempotency_key = key;
        p
    }

    /// Propose through node `id` (no forwarding).
    pub async fn write_to(&self, id: u64, p: Proposal) -> Result<(Outcome, u64), WriteError> {
        let Some(raft) = self.node(id).raft.clone() else {
            return Err(WriteError::NotLeader(None));
        };
        let write = tokio::time::timeout(self.opts.write_timeout, raft.client_write(p));
        match write.await {
            Err(_) => Err(WriteError::Unknown("no answer in time".into())),
            Ok(Ok(resp)) => match resp.data {
                Some(outcome) => Ok((outcome, resp.log_id.index())),
                None => Err(WriteError::Unknown("a blank answer".into())),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(WriteError::NotLeader(f.leader_id))
            }
            Ok(Err(e)) => Err(WriteError::Unknown(e.to_string())),
        }
    }

    /// A client write: to the leader, retried across leader changes with one idempotency key
    /// (so it applies once), for at most `within`.
    /// Several may run at once (concurrent clients).
    pub async fn write(
        &self,
        command: Command,
        within: Duration,
    ) -> Result<(Outcome, u64), WriteError> {
        self.next_key.set(self.next_key.get() + 1);
        let key = (self.opts.bug != Some(Bug::RetryWithoutKey))
            .then(|| format!("sim-{}", self.next_key.get()));
        let deadline = tokio::time::Instant::now() + within;
        let mut last = WriteError::NotLeader(None);
        let mut proposed = false;
        while tokio::time::Instant::now() < deadline {
            let Some(leader) = self.leader() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match self
                .write_to(leader, self.proposal(command.clone(), key.clone()))
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => {
                    proposed |= matches!(e, WriteError::Unknown(_));
                    last = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if proposed {
            Err(WriteError::Unknown(format!("{last:?}")))
        } else {
            Err(last)
        }
    }

    /// A linearizable read on the leader: `f` runs on its applied state once it has applied
    /// everything committed when the read began.
    pub async fn read<R>(&self, f: impl FnOnce(&switchyard_core::State) -> R) -> Option<R> {
        let leader = self.leader()?;
        let raft = self.raft(leader);
        let ok = tokio::time::timeout(
            self.opts.write_timeout,
            raft.ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex),
        )
        .await;
        match ok {
            Ok(Ok(_)) => Some(self.sm(leader).read(|i| f(&i.core))),
            _ => None,
        }
    }

    /// Crash node `id`: its tasks stop at once; what its log had not flushed is lost.
    pub async fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("a node");
        for t in node.tasks.drain(..) {
            t.abort();
        }
        self.router.set_node(id, None);
        if let Some(raft) = node.raft.take() {
            let _ = raft.shutdown().await;
        }
        node.paused.send_replace(false);
        for (rule, gate) in node.pause_rules.drain(..) {
            self.router.remove_rule(rule);
            gate.open();
        }
    }

    /// Restart a crashed node from its disk.
    pub async fn restart(&mut self, id: u64) {
        assert!(!self.is_up(id), "node {id} is up");
        let disk = self.nodes[&id].disk.clone();
        self.boot(id, disk).await;
    }

    /// Pause node `id`: its timers (elections, heartbeats, ticks) stop and every message to or
    /// from it waits, until [`Sim::resume`].
    pub fn pause(&mut self, id: u64) {
        let raft = self.raft(id);
        let rc = raft.runtime_config();
        rc.tick(false);
        rc.heartbeat(false);
        rc.elect(false);
        let node = self.nodes.get_mut(&id).expect("a node");
        node.paused.send_replace(true);
        let gate = Gate::default();
        for (from, to) in [(Some(id), None), (None, Some(id))] {
            let rule = self.router.add_rule(
                None,
                from,
                to,
                Stage::BeforeSend,
                Action::Park(gate.clone()),
                None,
            );
            node.pause_rules.push((rule, gate.clone()));
        }
    }

    pub fn resume(&mut self, id: u64) {
        let raft = self.raft(id);
        let node = self.nodes.get_mut(&id).expect("a node");
        for (rule, gate) in node.pause_rules.drain(..) {
            self.router.remove_rule(rule);
            gate.open();
        }
        node.paused.send_replace(false);
        let rc = raft.runtime_config();
        rc.tick(true);
        rc.heartbeat(true);
        rc.elect(true);
    }

    pub fn is_paused(&self, id: u64) -> bool {
        *self.node(id).paused.borrow()
    }

    /// Hold node `id`'s state machine before its next apply (or let it go on).
    pub fn hold_apply(&self, id: u64, hold: bool) {
        self.node(id).sm.hold.send_replace(hold);
    }

    /// Hold node `id`'s state machine once it has applied `index` (`None`: let it go on).
    pub fn hold_apply_after(&self, id: u64, index: Option<u64>) {
        self.node(id).sm.hold_after.send_replace(index);
    }

    /// Pause every node that is up: all timers of the cluster stop.
    pub fn pause_all(&mut self) {
        for id in self.ids() {
            if self.is_up(id) && !self.is_paused(id) {
                self.pause(id);
            }
        }
    }

    pub fn resume_all(&mut self) {
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

    /// Every node up, unpaused, connected, applying, without rules; then wait until all have
    /// applied the same index.
    pub async fn settle(&mut self, within: Duration) -> bool {
        for id in self.ids() {
            if !self.is_up(id) {
                self.restart(id).await;
            } else if self.is_paused(id) {
                self.resume(id);
            }
            self.hold_apply(id, false);
            self.hold_apply_after(id, None);
        }
        self.router.heal();
        self.router.clear_rules();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let applied: Vec<u64> = self
                .ids()
                .iter()
                .filter_map(|id| self.metrics(*id))
                .map(|(_, _, last, applied)| applied.min(last))
                .collect();
            let leader_last = self
                .leader()
                .and_then(|l| self.metrics(l))
                .map(|(_, _, last, _)| last);
            if let Some(last) = leader_last
                && applied.len() == self.nodes.len()
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
    pub async fn shutdown(&mut self) {
        for id in self.ids() {
            if self.is_up(id) {
                self.crash(id).await;
            }
        }
    }
}

/// The leader's tick loop, as `switchyard-server`'s scheduler runs it: when a timer in the
/// replicated state is due, propose a `Tick`; a paused node proposes nothing.
async fn tick_loop(
    raft: Arc<Raft>,
    sm: SimStateMachine,
    clock: Clock,
    paused: watch::Receiver<bool>,
) {
    const IDLE: Duration = Duration::from_secs(60);
    const BACKOFF: Duration = Duration::from_millis(100);
    let mut metrics = raft.metrics();
    let mut revisions = sm.subscribe();
    let mut paused = paused;
    loop {
        let leads = metrics.borrow_watched().state == ServerState::Leader && !*paused.borrow();
        let next_due = if leads {
            sm.read(|i| i.core.timers.next_due())
        } else {
            None
        };
        let now = clock.now_ms();
        if next_due.is_some_and(|d| d <= now) {
            let p = Proposal::new(now, Command::Tick);
            let fired = tokio::time::timeout(Duration::from_secs(2), raft.client_write(p)).await;
            if let Ok(Ok(r)) = fired
                && matches!(r.data, Some(Ok(Reply::Ticked { fired })) if fired > 0)
            {
                continue;
            }
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let sleep = next_due.map_or(IDLE, |due| Duration::from_millis((due - now).max(0) as u64));
        tokio::select! {
            biased;
            r = metrics.changed() => if r.is_err() { return },
            r = revisions.changed() => if r.is_err() { return },
            r = paused.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
