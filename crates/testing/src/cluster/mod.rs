//! The control surface of a simulated cluster: start N production nodes
//! ([`switchyard_node::Node`]) on in-memory disks and the in-memory network, write and read
//! through any node ([`SimCluster`], here), pause, resume, crash and restart them, pause their timers,
//! add and remove members, cut and heal links ([`control`]), inspect any node and change what
//! it holds to explore what would happen ([`inspect`]).
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

pub mod control;
pub mod inspect;

pub use control::{NodeTimer, TimerInfo, TimerKind};
pub use inspect::{HistoryEvent, LogEntry, NodeInfo, Voted, WhatIfError};

use crate::Clock;
use crate::gate::{Applies, SimGate};
use crate::http::Endpoints;
use crate::log::{Disk, SharedDisk, SimLog, SimSnapshots};
use crate::net::{NetFactory, Router, SimTransport};
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
    /// The settings of each node's client API, as `switchyard serve` takes them: device types
    /// (`server.load_device_types(path)` reads a TOML type file), tokens, limits, watch
    /// settings. Its Raft timings and node id are the simulation's.
    pub server: switchyard_server::Config,
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
            server: switchyard_server::Config::new("simulated"),
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
    /// The state machine of its last incarnation (kept while it is down).
    sm: StateMachine,
    view: StateView,
    gate: Arc<SimGate>,
    disk: SharedDisk,
    log: SimLog,
    /// How many times it booted.
    boots: u64,
    /// The log writer: aborted by a crash.
    writer: Option<JoinHandle<()>>,
    /// The scheduler and the agent check while they run (stopped while paused or down).
    services: BTreeMap<NodeTimer, (CancellationToken, JoinHandle<()>)>,
    /// The whole node is paused.
    paused: bool,
    /// The timers paused one by one (all of them while the node is paused).
    paused_timers: BTreeSet<NodeTimer>,
}

/// A simulated cluster. The first nodes' ids are 1..=N; added nodes get the next ids.
pub struct SimCluster {
    pub opts: SimOptions,
    pub router: Router,
    /// The nodes' client API, for [`SimCluster::client`].
    pub endpoints: Endpoints,
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

impl SimCluster {
    /// Start `opts.nodes` nodes on empty disks and make them one cluster; returns once a leader
    /// is elected.
    pub async fn start(opts: SimOptions) -> SimCluster {
        let trace = Trace::new(opts.keep_trace, opts.print_trace);
        let sim = SimCluster {
            router: Router::new(opts.seed, trace.clone()),
            endpoints: Endpoints::new(opts.server.clone()),
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
        let sm_handle = sm.clone();
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
        self.endpoints.up(&addr(id).api, node.clone());
        self.trace.add(format!("boot {id}"));
        let services = [NodeTimer::Scheduler, NodeTimer::AgentCheck]
            .into_iter()
            .map(|t| (t, spawn_service(&node, t)))
            .collect();
        self.nodes.borrow_mut().insert(
            id,
            SimNode {
                view: node.view.clone(),
                sm: sm_handle,
                node: Some(node),
                gate,
                disk,
                log: log_handle,
                boots,
                writer: Some(writer),
                services,
                paused: false,
                paused_timers: BTreeSet::new(),
            },
        );
    }

    /// A client of the whole cluster, as `switchyard_client::Client::new("http://n1,http://n2,..")`
    /// would be of a real one: the same calls and types, over in-memory connections to every
    /// node there is now, failing over between them.
    pub fn client(&self) -> switchyard_client::Client {
        let bases: Vec<String> = self
            .ids()
            .into_iter()
            .map(|id| format!("http://{}", addr(id).api))
            .collect();
        self.connect(&bases.join(","))
    }

    /// A client of node `id` alone (a watcher on a follower, say).
    pub fn client_of(&self, id: u64) -> switchyard_client::Client {
        self.connect(&format!("http://{}", addr(id).api))
    }

    /// (With API tokens configured, add one: `.with_token(..)`.)
    fn connect(&self, bases: &str) -> switchyard_client::Client {
        switchyard_client::Client::new(bases).with_connector(Arc::new(self.endpoints.clone()))
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
        mut done: impl FnMut(&SimCluster) -> bool,
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
            Ok(Ok(_)) => Some(node.view.read(f)),
            _ => None,
        }
    }

    /// A linearizable read on a node chosen at random (which node, and what `f` saw).
    pub async fn read<R>(&self, f: impl FnOnce(&switchyard_core::State) -> R) -> Option<(u64, R)> {
        let id = self.pick()?;
        Some((id, self.read_on(id, f).await?))
    }
}

/// One of the node's leader-side services, as the server runs them: the scheduler or the
/// agent check (the Raft timers are not services).
fn spawn_service(node: &Arc<Node>, which: NodeTimer) -> (CancellationToken, JoinHandle<()>) {
    let token = CancellationToken::new();
    let task = match which {
        NodeTimer::AgentCheck => Runtime::spawn(switchyard_node::agent_check::run(
            node.clone(),
            token.clone(),
        )),
        _ => Runtime::spawn(switchyard_node::scheduler::run(node.clone(), token.clone())),
    };
    (token, task)
}
