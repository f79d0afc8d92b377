//! The control surface of a simulated cluster: start N production nodes
//! ([`switchyard_node::Node`]) on in-memory disks and the in-memory network, pause and resume
//! them, crash and restart them from their disks, add and remove members, cut and heal links,
//! hook messages and applies, write and read through any node, inspect any node.
//!
//! Everything runs on the current task's runtime, which must be a current-thread tokio runtime
//! with paused time (`start_paused`), inside `Runtime::scope(seed, ..)` (see
//! [`run_seeded`](crate::run_seeded)).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::AsyncRuntime;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use switchyard_core::{Command, Reply};
use switchyard_node::{Bug, Node, NodeConfig, NodeError, Parts};
use switchyard_store::state_machine::BoxFuture;
use switchyard_store::{NodeAddr, Raft, Runtime, StateMachine, StateView};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Clock;
use crate::gate::{Applies, SimGate};
use crate::log::{Disk, SharedDisk, SimLog, SimSnapshots};
use crate::net::{Action, Gate, NetFactory, Router, SimTransport, Stage};
use crate::rng::Rng;
use crate::trace::Trace;

/// How the cluster is built.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: u64,
    /// Seeds the network's jitter and the clients' choice of node (Raft's RNG is seeded by
    /// [`run_seeded`](crate::run_seeded)).
    pub seed: u64,
    /// Virtual time one fsync takes.
    pub fsync: Duration,
    pub heartbeat: Duration,
    /// As the server's `--election-timeout`: a follower stands after 1 to 1.5 times this.
    pub election_timeout: Duration,
    /// A write not committed in this time has an unknown outcome.
    pub write_timeout: Duration,
    pub snapshot_logs: u64,
    pub snapshot_keep_logs: u64,
    pub history: usize,
    /// Bugs switched back on.
    pub bugs: BTreeSet<Bug>,
    /// Keep every line of the trace (to compare two runs), not only its hash.
    pub keep_trace: bool,
    /// Print every line of the trace as it comes.
    pub print_trace: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            seed: 0,
            fsync: Duration::from_millis(2),
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(400),
            write_timeout: Duration::from_secs(2),
            snapshot_logs: 500,
            snapshot_keep_logs: 100,
            history: 100_000,
            bugs: BTreeSet::new(),
            keep_trace: false,
            print_trace: false,
        }
    }
}

/// A client write's answer: the reply and its log index, or the node's error.
pub type WriteResult = Result<(Reply, u64), NodeError>;

/// Whether a write took effect, as far as its client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Applied,
    NotApplied,
    Unknown,
}

/// What a client learns from a write's answer.
pub fn effect(r: &WriteResult) -> Effect {
    match r {
        Ok(_) => Effect::Applied,
        // Refused by the app, or never proposed.
        Err(
            NodeError::Refused(_) | NodeError::NotLeader { .. } | NodeError::Unavailable { .. },
        ) => Effect::NotApplied,
        Err(NodeError::OutcomeUnknown { .. } | NodeError::Internal { .. }) => Effect::Unknown,
    }
}

struct SimNode {
    node: Option<Arc<Node>>,
    /// The applied state of its last incarnation (kept while it is down).
    view: StateView,
    gate: Arc<SimGate>,
    disk: SharedDisk,
    log: SimLog,
    /// How many times it booted.
    boots: u64,
    /// The log writer: aborted by a crash.
    writer: Option<JoinHandle<()>>,
    /// The scheduler and agent check; cancelled while the node is paused or down.
    services: Option<(CancellationToken, Vec<JoinHandle<()>>)>,
    paused: bool,
    /// While paused: the rules that hold its messages, and the gate they wait at.
    pause_rules: Option<(Vec<u64>, Gate)>,
}

/// A simulated cluster. The first nodes' ids are 1..=N; added nodes get the next ids.
pub struct Sim {
    pub opts: SimOptions,
    pub router: Router,
    pub clock: Clock,
    pub trace: Trace,
    /// Applies not yet checked (by a fuzzer's invariants, say).
    pub applies: Applies,
    nodes: RefCell<BTreeMap<u64, SimNode>>,
    next_key: Cell<u64>,
    next_id: Cell<u64>,
    rng: RefCell<Rng>,
}

/// The address a simulated node is known by.
pub fn addr(id: u64) -> NodeAddr {
    NodeAddr {
        api: format!("n{id}"),
        peer: format!("n{id}"),
    }
}

/// Agents are not simulated: every probe answers healthy.
struct Healthy;

impl switchyard_node::AgentProbe for Healthy {
    fn probe<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

impl Sim {
    /// Start `opts.nodes` nodes on empty disks and make them one cluster; returns once a leader
    /// is elected.
    pub async fn start(opts: SimOptions) -> Sim {
        let trace = Trace::new(opts.keep_trace, opts.print_trace);
        let sim = Sim {
            router: Router::new(opts.seed, trace.clone()),
            clock: Clock::start(),
            trace,
            applies: Arc::new(Mutex::new(Vec::new())),
            nodes: RefCell::new(BTreeMap::new()),
            next_key: Cell::new(0),
            next_id: Cell::new(opts.nodes + 1),
            rng: RefCell::new(Rng::new(opts.seed ^ 0x636c_6965_6e74)),
            opts,
        };
        for id in 1..=sim.opts.nodes {
            sim.boot(id, Arc::new(Mutex::new(Disk::default()))).await;
        }
        let members: BTreeMap<u64, NodeAddr> =
            (1..=sim.opts.nodes).map(|id| (id, addr(id))).collect();
        sim.raft(1)
            .initialize(members)
            .await
            .expect("a new cluster initialises");
        sim.wait_leader(Duration::from_secs(10))
            .await
            .expect("a leader is elected");
        sim
    }

    /// The node's configuration: the simulation's timings, the production defaults otherwise.
    pub fn node_config(&self, id: u64) -> NodeConfig {
        let o = &self.opts;
        NodeConfig {
            node_id: id,
            heartbeat_interval: o.heartbeat,
            election_timeout: o.election_timeout,
            snapshot_logs: o.snapshot_logs,
            snapshot_keep_logs: o.snapshot_keep_logs,
            write_timeout: o.write_timeout,
            join: true,
            #[cfg(feature = "bugs")]
            bugs: o.bugs.clone(),
            ..NodeConfig::default()
        }
    }

    async fn boot(&self, id: u64, disk: SharedDisk) {
        let ack_early = self.opts.bugs.contains(&Bug::AckBeforeFsync);
        let (log, writer) = SimLog::open(disk.clone(), self.opts.fsync, ack_early);
        let log_handle = log.clone();
        let boots = self.nodes.borrow().get(&id).map_or(0, |n| n.boots) + 1;
        let gate = SimGate::new(id, self.trace.clone(), self.applies.clone());
        let sm = StateMachine::new(
            Arc::new(SimSnapshots(disk.clone())),
            Some(gate.clone()),
            self.opts.history,
        );
        let parts = Parts {
            network: NetFactory {
                from: id,
                router: self.router.clone(),
            },
            log,
            sm,
            transport: Arc::new(SimTransport {
                from: id,
                router: self.router.clone(),
            }),
            clock: Arc::new(self.clock),
            agent_probe: Arc::new(Healthy),
            close: None,
        };
        let node = Node::start(self.node_config(id), addr(id), parts)
            .await
            .expect("a simulated node starts");
        let node = Arc::new(node);
        self.router.set_node(id, Some(node.clone()));
        self.trace.add(format!("boot {id}"));
        let services = spawn_services(&node);
        self.nodes.borrow_mut().insert(
            id,
            SimNode {
                view: node.view.clone(),
                node: Some(node),
                gate,
                disk,
                log: log_handle,
                boots,
                writer: Some(writer),
                services: Some(services),
                paused: false,
                pause_rules: None,
            },
        );
    }

    /// Node `id`, if it is up.
    pub fn node(&self, id: u64) -> Option<Arc<Node>> {
        self.nodes.borrow().get(&id).and_then(|n| n.node.clone())
    }

    /// Node `id`'s Raft handle (panics while it is down).
    pub fn raft(&self, id: u64) -> Arc<Raft> {
        self.node(id).expect("the node is up").raft.clone()
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.node(id).is_some()
    }

    /// Every node of the simulation (up or down), removed members excluded.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.borrow().keys().copied().collect()
    }

    /// Node `id`'s applied state (of its last incarnation while it is down).
    pub fn view(&self, id: u64) -> StateView {
        self.nodes.borrow()[&id].view.clone()
    }

    /// How many times node `id` booted (a new incarnation after each crash).
    pub fn incarnation(&self, id: u64) -> u64 {
        self.nodes.borrow().get(&id).map_or(0, |n| n.boots)
    }

    /// The log ids node `id`'s log holds now, by index.
    pub fn log_ids(&self, id: u64) -> BTreeMap<u64, String> {
        self.nodes.borrow()[&id].log.log_ids()
    }

    /// Node `id`'s Raft metrics, if it is up.
    pub fn raft_metrics(
        &self,
        id: u64,
    ) -> Option<openraft::RaftMetrics<switchyard_store::TypeConfig>> {
        Some(self.node(id)?.raft.metrics().borrow_watched().clone())
    }

    /// (role, term, last log index, last applied index) of node `id`, if it is up.
    pub fn metrics(&self, id: u64) -> Option<(ServerState, u64, u64, u64)> {
        let m = self.raft_metrics(id)?;
        Some((
            m.state,
            m.current_term,
            m.last_log_index.unwrap_or(0),
            m.last_applied.map_or(0, |l| l.index()),
        ))
    }

    /// The latest membership configuration any node that is up knows (a removed node's older
    /// one does not count however high its term).
    fn membership(
        &self,
    ) -> Option<openraft::alias::StoredMembershipOf<switchyard_store::TypeConfig>> {
        self.ids()
            .into_iter()
            .filter_map(|id| self.raft_metrics(id))
            .map(|m| m.membership_config.as_ref().clone())
            .max_by_key(|c| c.log_id().map(|l| (*l.committed_leader_id(), l.index())))
    }

    /// The voters of the latest membership.
    pub fn voters(&self) -> BTreeSet<u64> {
        self.membership()
            .map(|c| c.voter_ids().collect())
            .unwrap_or_default()
    }

    /// Every member (voter or learner) of the latest membership.
    pub fn members(&self) -> BTreeSet<u64> {
        self.membership()
            .map(|c| c.nodes().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    /// The leader of the highest term among the nodes that are up and not paused.
    pub fn leader(&self) -> Option<u64> {
        self.ids()
            .into_iter()
            .filter(|id| !self.is_paused(*id))
            .filter_map(|id| {
                let (role, term, _, _) = self.metrics(id)?;
                (role == ServerState::Leader).then_some((term, id))
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

    /// A node a client asks: any member that is up (paused ones included), chosen at random.
    pub fn pick(&self) -> Option<u64> {
        let members = self.members();
        let up: Vec<u64> = self
            .ids()
            .into_iter()
            .filter(|i| self.is_up(*i) && members.contains(i))
            .collect();
        if up.is_empty() {
            return None;
        }
        Some(up[self.rng.borrow_mut().below(up.len() as u64) as usize])
    }

    /// A new idempotency key.
    pub fn key(&self) -> String {
        self.next_key.set(self.next_key.get() + 1);
        format!("sim-{}", self.next_key.get())
    }

    /// Write through node `id` (which forwards to the leader), waiting at most `within`.
    pub async fn write_to(
        &self,
        id: u64,
        command: Command,
        key: Option<String>,
        within: Duration,
    ) -> WriteResult {
        let Some(node) = self.node(id) else {
            return Err(NodeError::unavailable(format!("node {id} is down")));
        };
        match tokio::time::timeout(within, node.write(command, key)).await {
            Ok(r) => r,
            Err(_) => Err(NodeError::unknown(format!("no answer within {within:?}"))),
        }
    }

    /// A client write: to a node chosen at random, retried on another across failures with one
    /// idempotency key (so it applies once), for at most `within`. Several may run at once.
    pub async fn write(&self, command: Command, within: Duration) -> WriteResult {
        let key = self.key();
        let deadline = tokio::time::Instant::now() + within;
        let mut maybe = false;
        let mut last = NodeError::unavailable("no node is up");
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let Some(id) = self.pick() else {
                tokio::time::sleep(Duration::from_millis(20).min(left)).await;
                continue;
            };
            let r = self
                .write_to(id, command.clone(), Some(key.clone()), left)
                .await;
            match effect(&r) {
                Effect::Applied => return r,
                Effect::NotApplied if matches!(r, Err(NodeError::Refused(_))) => return r,
                Effect::Unknown => maybe = true,
                Effect::NotApplied => {}
            }
            last = r.expect_err("not applied");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if maybe {
            Err(NodeError::unknown(format!(
                "no answer in time (last: {last})"
            )))
        } else {
            Err(last)
        }
    }

    /// A linearizable read on node `id`: `f` runs on its state once it has applied everything
    /// committed when the read began.
    pub async fn read_on<R>(
        &self,
        id: u64,
        f: impl FnOnce(&switchyard_core::State) -> R,
    ) -> Option<R> {
        let node = self.node(id)?;
        match tokio::time::timeout(self.opts.write_timeout, node.linearizable()).await {
            Ok(Ok(())) => Some(node.view.read(f)),
            _ => None,
        }
    }

    /// A linearizable read on a node chosen at random (which node, and what `f` saw).
    pub async fn read<R>(&self, f: impl FnOnce(&switchyard_core::State) -> R) -> Option<(u64, R)> {
        let id = self.pick()?;
        Some((id, self.read_on(id, f).await?))
    }

    /// Crash node `id`: its tasks stop at once; what its log had not flushed is lost.
    pub async fn crash(&self, id: u64) {
        let (node, rules) = {
            let mut nodes = self.nodes.borrow_mut();
            let n = nodes.get_mut(&id).expect("a node");
            if let Some(w) = n.writer.take() {
                w.abort();
            }
            if let Some((token, tasks)) = n.services.take() {
                token.cancel();
                tasks.iter().for_each(JoinHandle::abort);
            }
            n.paused = false;
            (n.node.take(), n.pause_rules.take())
        };
        self.router.set_node(id, None);
        self.release(rules);
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
        self.boot(id, Arc::new(Mutex::new(Disk::default()))).await;
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

    /// Pause node `id`: its timers (elections, heartbeats, its scheduler) stop and every
    /// message to or from it waits, until [`Sim::resume`].
    pub fn pause(&self, id: u64) {
        let raft = self.raft(id);
        let rc = raft.runtime_config();
        rc.tick(false);
        rc.heartbeat(false);
        rc.elect(false);
        let gate = Gate::default();
        let rules = [(Some(id), None), (None, Some(id))]
            .into_iter()
            .map(|(from, to)| {
                self.router.add_rule(
                    None,
                    from,
                    to,
                    Stage::BeforeSend,
                    Action::Park(gate.clone()),
                    None,
                )
            })
            .collect();
        let mut nodes = self.nodes.borrow_mut();
        let n = nodes.get_mut(&id).expect("a node");
        n.paused = true;
        n.pause_rules = Some((rules, gate));
        if let Some((token, tasks)) = n.services.take() {
            token.cancel();
            tasks.iter().for_each(JoinHandle::abort);
        }
        self.trace.add(format!("pause {id}"));
    }

    pub fn resume(&self, id: u64) {
        let node = self.node(id).expect("the node is up");
        let rules = {
            let mut nodes = self.nodes.borrow_mut();
            let n = nodes.get_mut(&id).expect("a node");
            n.paused = false;
            n.services = Some(spawn_services(&node));
            n.pause_rules.take()
        };
        self.release(rules);
        let rc = node.raft.runtime_config();
        rc.tick(true);
        rc.heartbeat(true);
        rc.elect(true);
        self.trace.add(format!("resume {id}"));
    }

    /// Remove a paused node's rules and let what they held go on.
    fn release(&self, rules: Option<(Vec<u64>, Gate)>) {
        if let Some((rules, gate)) = rules {
            for rule in rules {
                self.router.remove_rule(rule);
            }
            gate.open();
        }
    }

    pub fn is_paused(&self, id: u64) -> bool {
        self.nodes.borrow().get(&id).is_some_and(|n| n.paused)
    }

    /// Hold node `id`'s state machine before its next apply (or let it go on).
    pub fn hold_apply(&self, id: u64, hold: bool) {
        self.nodes.borrow()[&id].gate.hold.send_replace(hold);
    }

    /// Hold node `id`'s state machine once it has applied `index` (`None`: let it go on).
    pub fn hold_apply_after(&self, id: u64, index: Option<u64>) {
        self.nodes.borrow()[&id].gate.hold_after.send_replace(index);
    }

    /// Pause every node that is up: all timers of the cluster stop.
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

    /// Every fault repaired: every member up and resumed, applying, connected, no message
    /// rules; nodes that are no longer members (removed, or never added) are stopped.
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
            }
            self.hold_apply(id, false);
            self.hold_apply_after(id, None);
        }
        self.router.heal();
        self.router.clear_rules();
        self.trace.add("repair");
    }

    /// [`Sim::repair`], then wait until every voter has applied the leader's last entry.
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

/// The node's leader-side services, as the server runs them: the scheduler and the agent
/// check.
fn spawn_services(node: &Arc<Node>) -> (CancellationToken, Vec<JoinHandle<()>>) {
    let token = CancellationToken::new();
    let tasks = vec![
        Runtime::spawn(switchyard_node::scheduler::run(node.clone(), token.clone())),
        Runtime::spawn(switchyard_node::agent_check::run(
            node.clone(),
            token.clone(),
        )),
    ];
    (token, tasks)
}
