//! The in-memory network: each link calls the target node directly (its Raft handle for Raft's
//! messages, the node itself for requests handed to the leader), through interceptors, a link
//! table for partitions and the nodes' pause switches. A node that is down or cut off is
//! unreachable. Every message goes into the run's [`Trace`].
//!
//! A message passes four [`Stage`]s: before the sender sends it, after it was sent (on the
//! wire), before the receiver processes it, and after the receiver processed it (its answer on
//! the way back). At each stage a paused node holds it first (a message from a paused node
//! waits before send, one to a paused node waits before process, an answer waits while either
//! end is paused), whatever the rules say; then the first matching [`Rule`], in the order the
//! test put them, decides what happens: pass, [`Action::Drop`], [`Action::Fail`],
//! [`Action::Delay`], [`Action::Jitter`], [`Action::Duplicate`] or [`Action::Park`] at a
//! [`Gate`] the test watches and opens.
//!
//! ```
//! use switchyard_testing::net::{Action, Gate, Kind, Rule, Stage};
//! # fn rules(router: &switchyard_testing::net::Router) {
//! let gate = Gate::new();
//! // Hold the first append that carries entries, on its way to node 2, before node 2 sees it.
//! router
//!     .add_rule(
//!         Rule::new("hold-append", Stage::BeforeProcess, Action::Park(gate.clone()))
//!             .kind(Kind::Append)
//!             .to(2)
//!             .when(|m| m.entries.iter().any(|e| e.index >= 3))
//!             .times(1),
//!     )
//!     .unwrap();
//! # }
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::alias::{LogIdOf, SnapshotOf, VoteOf};
use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use switchyard_node::{LeaderAnswer, LeaderRequest, Node, SendError, Transport};
use switchyard_store::state_machine::BoxFuture;
use switchyard_store::{NodeAddr, SnapshotData, TypeConfig};
use switchyard_types::Status;
use tokio::sync::watch;

use crate::rng::Rng;
use crate::trace::Trace;

type C = TypeConfig;

/// The kinds of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A candidate's vote request (and its answer).
    Vote,
    /// An AppendEntries that carries entries.
    Append,
    /// An AppendEntries that carries none: the leader's heartbeat (openraft also sends one to
    /// tell followers a new commit index).
    Heartbeat,
    /// A snapshot sent to a follower that is too far behind.
    Snapshot,
    /// The leader handing its leadership to another node.
    TransferLeader,
    /// A request a node hands to the leader: a forwarded client write, a read index, a
    /// membership change.
    Forward,
    /// A status probe of a joining node.
    Status,
}

impl Kind {
    /// Both kinds of AppendEntries.
    pub const APPEND_ENTRIES: [Kind; 2] = [Kind::Append, Kind::Heartbeat];
}

/// Where a message is intercepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// At the sender, before it leaves: a drop here is a message never sent (the sender knows).
    BeforeSend,
    /// On the wire, after the sender sent it: a drop here is a message lost in the network
    /// (the sender does not know whether it arrived).
    AfterSend,
    /// At the receiver, before it processes the message.
    BeforeProcess,
    /// At the receiver, after it processed the message: the answer on its way back.
    AfterProcess,
}

/// What happens to a matching message.
#[derive(Debug, Clone)]
pub enum Action {
    /// It goes on (a rule that passes stops later rules from matching).
    Pass,
    /// It is lost: before send the sender sees the target unreachable, later it sees no answer
    /// (after process: the receiver acted on it, the answer is lost).
    Drop,
    /// The sender sees a network error (as [`Action::Drop`], with another reason).
    Fail,
    /// It waits this long (virtual time) first.
    Delay(Duration),
    /// It waits a random time below this first: messages overtake each other.
    Jitter(Duration),
    /// It is processed twice (before process at the latest): the receiver handles both, the
    /// sender sees the second answer. After process it passes.
    Duplicate,
    /// It waits at the gate until the test opens it ([`Gate::open`]).
    Park(Gate),
}

/// A position in the log: (index, term).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPos {
    pub index: u64,
    pub term: u64,
}

impl LogPos {
    pub(crate) fn of(log_id: &LogIdOf<C>) -> Self {
        Self {
            index: log_id.index(),
            term: log_id.committed_leader_id().term,
        }
    }
}

/// What a rule (and a gate) sees of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub from: u64,
    pub to: u64,
    /// The sender's term (Raft's messages).
    pub term: Option<u64>,
    /// An append's entries.
    pub entries: Vec<LogPos>,
    /// An append's previous entry.
    pub prev: Option<LogPos>,
    /// An append's commit index.
    pub commit: Option<u64>,
    /// A vote request's last log entry; a snapshot's last included entry.
    pub last: Option<LogPos>,
    /// One line about it, as the trace shows it.
    pub summary: String,
}

impl Message {
    fn new(kind: Kind, from: u64, to: u64, summary: String) -> Self {
        Self {
            kind,
            from,
            to,
            term: None,
            entries: Vec::new(),
            prev: None,
            commit: None,
            last: None,
            summary,
        }
    }
}

/// A gate parked messages wait at: the test sees which reached it and opens it.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<watch::Sender<GateState>>);

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    arrived: u64,
    waiting: Vec<Message>,
}

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Let every message waiting here go on, and every later one pass.
    pub fn open(&self) {
        self.0.send_modify(|s| s.open = true);
    }

    /// Hold later messages again.
    pub fn close(&self) {
        self.0.send_modify(|s| s.open = false);
    }

    pub fn is_open(&self) -> bool {
        self.0.borrow().open
    }

    /// How many messages reached the gate so far (waiting now or let through).
    pub fn arrived(&self) -> u64 {
        self.0.borrow().arrived
    }

    /// The messages waiting at the gate now, in the order they arrived.
    pub fn waiting(&self) -> Vec<Message> {
        self.0.borrow().waiting.clone()
    }

    /// Wait until `n` messages have reached the gate in all; the messages waiting then.
    pub async fn reached(&self, n: u64) -> Vec<Message> {
        let mut rx = self.0.subscribe();
        loop {
            {
                let s = rx.borrow_and_update();
                if s.arrived >= n {
                    return s.waiting.clone();
                }
            }
            if rx.changed().await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Wait at the gate until it opens.
    async fn park(&self, m: &Message) {
        let mut rx = self.0.subscribe();
        self.0.send_modify(|s| {
            s.arrived += 1;
            if !s.open {
                s.waiting.push(m.clone());
            }
        });
        loop {
            if rx.borrow_and_update().open {
                break;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
        self.0
            .send_if_modified(|s| match s.waiting.iter().position(|w| w == m) {
                Some(i) => {
                    s.waiting.remove(i);
                    true
                }
                None => false,
            });
    }
}

type Predicate = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// An interceptor: a name, a stage, an action, and what it matches (every field that is set
/// must match). Build it with [`Rule::new`] and the narrowing methods; add it with
/// [`Router::add_rule`] (last) or [`Router::insert_rule`] (at a position).
#[derive(Clone)]
pub struct Rule {
    pub name: String,
    pub stage: Stage,
    pub action: Action,
    kinds: Option<BTreeSet<Kind>>,
    from: Option<u64>,
    to: Option<u64>,
    when: Option<Predicate>,
    /// How many more messages it applies to (`None`: until removed).
    times: Option<u32>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("stage", &self.stage)
            .field("action", &self.action)
            .field("kinds", &self.kinds)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("when", &self.when.as_ref().map(|_| "predicate"))
            .field("times", &self.times)
            .finish()
    }
}

impl Rule {
    /// A rule for every message at `stage`; narrow it with the methods below.
    pub fn new(name: impl Into<String>, stage: Stage, action: Action) -> Self {
        Self {
            name: name.into(),
            stage,
            action,
            kinds: None,
            from: None,
            to: None,
            when: None,
            times: None,
        }
    }

    /// Match messages of this kind (call again to add kinds).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kinds.get_or_insert_with(BTreeSet::new).insert(kind);
        self
    }

    /// Match messages of any of these kinds.
    pub fn kinds(self, kinds: impl IntoIterator<Item = Kind>) -> Self {
        kinds.into_iter().fold(self, Rule::kind)
    }

    /// Match messages sent by node `id`.
    pub fn from(mut self, id: u64) -> Self {
        self.from = Some(id);
        self
    }

    /// Match messages sent to node `id`.
    pub fn to(mut self, id: u64) -> Self {
        self.to = Some(id);
        self
    }

    /// Match only messages for which `f` holds.
    pub fn when(mut self, f: impl Fn(&Message) -> bool + Send + Sync + 'static) -> Self {
        self.when = Some(Arc::new(f));
        self
    }

    /// Apply to the next `n` matching messages only, then remove itself.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, m: &Message, stage: Stage) -> bool {
        self.stage == stage
            && self.kinds.as_ref().is_none_or(|k| k.contains(&m.kind))
            && self.from.is_none_or(|x| x == m.from)
            && self.to.is_none_or(|x| x == m.to)
            && self.when.as_ref().is_none_or(|f| f(m))
    }
}

/// Why a rule was not added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule named {0:?} exists already")]
    Duplicate(String),
    #[error("position {at} is past the end of the {len} rules")]
    Position { at: usize, len: usize },
}

struct Table {
    nodes: Vec<Option<Arc<Node>>>,
    cut: BTreeSet<(u64, u64)>,
    rules: Vec<Rule>,
    /// For [`Router::fresh_name`].
    names: u64,
    /// Draws for jitter, seeded per run.
    rng: Rng,
}

/// The network of one simulation. Clones share it.
#[derive(Clone)]
pub struct Router {
    table: Arc<Mutex<Table>>,
    /// The paused nodes.
    paused: Arc<watch::Sender<BTreeSet<u64>>>,
    trace: Trace,
}

/// Why a message gave no answer.
#[derive(Debug)]
struct Lost {
    /// It left the sender (it may have been processed).
    sent: bool,
    why: String,
}

impl Router {
    pub fn new(seed: u64, trace: Trace) -> Self {
        Self {
            table: Arc::new(Mutex::new(Table {
                nodes: Vec::new(),
                cut: BTreeSet::new(),
                rules: Vec::new(),
                names: 0,
                rng: Rng::new(seed ^ 0x6e65_7477_6f72_6b00),
            })),
            paused: Arc::new(watch::channel(BTreeSet::new()).0),
            trace,
        }
    }

    pub fn set_node(&self, id: u64, node: Option<Arc<Node>>) {
        let mut t = self.table.lock().unwrap();
        let i = id as usize;
        if t.nodes.len() <= i {
            t.nodes.resize(i + 1, None);
        }
        t.nodes[i] = node;
    }

    /// Cut both directions between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        let mut t = self.table.lock().unwrap();
        for &x in a {
            for &y in b {
                if x != y {
                    t.cut.insert((x, y));
                    t.cut.insert((y, x));
                }
            }
        }
    }

    /// Cut one direction: messages from `from` to `to` are lost.
    pub fn cut(&self, from: u64, to: u64) {
        self.table.lock().unwrap().cut.insert((from, to));
    }

    /// Restore every link.
    pub fn heal(&self) {
        self.table.lock().unwrap().cut.clear();
    }

    /// Whether messages from `from` reach `to` (both up, the link not cut).
    pub fn reaches(&self, from: u64, to: u64) -> bool {
        self.target(from, to).is_some()
    }

    /// Hold node `id`'s messages (see the module's documentation), or let them go on.
    pub fn set_paused(&self, id: u64, paused: bool) {
        self.paused
            .send_if_modified(|p| if paused { p.insert(id) } else { p.remove(&id) });
    }

    /// Add a rule after every other (it matches only what they let pass).
    pub fn add_rule(&self, rule: Rule) -> Result<(), RuleError> {
        let len = self.table.lock().unwrap().rules.len();
        self.insert_rule(len, rule)
    }

    /// Add a rule at position `at` of the order (0: before every other).
    pub fn insert_rule(&self, at: usize, rule: Rule) -> Result<(), RuleError> {
        let mut t = self.table.lock().unwrap();
        if t.rules.iter().any(|r| r.name == rule.name) {
            return Err(RuleError::Duplicate(rule.name));
        }
        if at > t.rules.len() {
            return Err(RuleError::Position {
                at,
                len: t.rules.len(),
            });
        }
        t.rules.insert(at, rule);
        Ok(())
    }

    /// A rule name no rule of this router had yet: `prefix-N`.
    pub fn fresh_name(&self, prefix: &str) -> String {
        let mut t = self.table.lock().unwrap();
        t.names += 1;
        format!("{prefix}-{}", t.names)
    }

    /// Remove the rule named `name`; whether there was one.
    pub fn remove_rule(&self, name: &str) -> bool {
        let mut t = self.table.lock().unwrap();
        let before = t.rules.len();
        t.rules.retain(|r| r.name != name);
        t.rules.len() != before
    }

    /// The rules' names, in the order they are tried.
    pub fn rule_names(&self) -> Vec<String> {
        let t = self.table.lock().unwrap();
        t.rules.iter().map(|r| r.name.clone()).collect()
    }

    /// Remove every rule.
    pub fn clear_rules(&self) {
        self.table.lock().unwrap().rules.clear();
    }

    /// The first matching rule's action (counting it down).
    fn action(&self, m: &Message, stage: Stage) -> Option<Action> {
        let mut t = self.table.lock().unwrap();
        let i = t.rules.iter().position(|r| r.matches(m, stage))?;
        let action = t.rules[i].action.clone();
        if let Some(n) = &mut t.rules[i].times {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.rules.remove(i);
            }
        }
        Some(action)
    }

    fn target(&self, from: u64, to: u64) -> Option<Arc<Node>> {
        let t = self.table.lock().unwrap();
        if t.cut.contains(&(from, to)) {
            return None;
        }
        t.nodes.get(to as usize).cloned().flatten()
    }

    fn jitter(&self, max: Duration) -> Duration {
        let micros = max.as_micros().max(1) as u64;
        Duration::from_micros(self.table.lock().unwrap().rng.below(micros))
    }

    /// Wait while any of `ids` is paused.
    async fn unpaused(&self, ids: &[u64]) {
        let mut rx = self.paused.subscribe();
        loop {
            if !ids.iter().any(|id| rx.borrow_and_update().contains(id)) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// One stage: the pause switches, then the first matching rule. `Err` ends the message;
    /// `Ok(true)` asks for a duplicate.
    async fn stage(&self, m: &Message, stage: Stage) -> Result<bool, Lost> {
        self.hold_if_paused(m, stage).await;
        let sent = stage != Stage::BeforeSend;
        match self.action(m, stage) {
            None | Some(Action::Pass) => Ok(false),
            Some(Action::Drop) => Err(Lost {
                sent,
                why: "dropped".into(),
            }),
            Some(Action::Fail) => Err(Lost {
                sent,
                why: "failed".into(),
            }),
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                self.hold_if_paused(m, stage).await;
                Ok(false)
            }
            Some(Action::Jitter(max)) => {
                tokio::time::sleep(self.jitter(max)).await;
                self.hold_if_paused(m, stage).await;
                Ok(false)
            }
            Some(Action::Duplicate) => Ok(stage != Stage::AfterProcess),
            Some(Action::Park(gate)) => {
                gate.park(m).await;
                // A node paused while the message waited holds it still.
                self.hold_if_paused(m, stage).await;
                Ok(false)
            }
        }
    }

    /// The pause switches of a stage: a message from a paused node waits before send, one to a
    /// paused node before process, an answer while either end is paused.
    async fn hold_if_paused(&self, m: &Message, stage: Stage) {
        match stage {
            Stage::BeforeSend => self.unpaused(&[m.from]).await,
            Stage::AfterSend => {}
            Stage::BeforeProcess => self.unpaused(&[m.to]).await,
            Stage::AfterProcess => self.unpaused(&[m.from, m.to]).await,
        }
    }

    /// Deliver one message after [`LATENCY`]; a failure takes [`FAILURE_LATENCY`] more to be
    /// noticed, as a timeout or a refused connection does, so a sender retrying at once cannot
    /// spin without time passing.
    async fn deliver<F, Fut, T>(&self, m: Message, f: F) -> Result<T, Lost>
    where
        F: Fn(Arc<Node>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::time::sleep(LATENCY).await;
        let r = self.deliver_now(&m, f).await;
        let head = format!("msg {:?} {}->{} {}", m.kind, m.from, m.to, m.summary);
        match &r {
            Ok(_) => self.trace.add(format!("{head}: ok")),
            Err(l) => self.trace.add(format!(
                "{head}: {} {}",
                if l.sent { "lost-answer" } else { "lost" },
                l.why
            )),
        }
        if r.is_err() {
            tokio::time::sleep(FAILURE_LATENCY).await;
        }
        r
    }

    /// The four stages around the target's handler (twice for a duplicate), and the link
    /// checked again for the answer. Once sent, the message is on its own: it reaches the
    /// receiver even if its sender crashes or stops waiting for the answer meanwhile.
    async fn deliver_now<F, Fut, T>(&self, m: &Message, f: F) -> Result<T, Lost>
    where
        F: Fn(Arc<Node>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
        T: Send + 'static,
    {
        let twice = self.stage(m, Stage::BeforeSend).await?;
        self.target(m.from, m.to).ok_or_else(|| Lost {
            sent: false,
            why: "unreachable".into(),
        })?;
        let (router, m) = (self.clone(), m.clone());
        let on_the_wire = tokio::spawn(async move { router.arrive(&m, twice, f).await });
        on_the_wire.await.unwrap_or_else(|e| {
            Err(Lost {
                sent: true,
                why: format!("the delivery failed: {e}"),
            })
        })
    }

    /// The rest of a sent message's way: on the wire, at the receiver, and its answer back.
    async fn arrive<F, Fut, T>(&self, m: &Message, mut twice: bool, f: F) -> Result<T, Lost>
    where
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        twice |= self.stage(m, Stage::AfterSend).await?;
        twice |= self.stage(m, Stage::BeforeProcess).await?;
        let target = self.target(m.from, m.to).ok_or_else(|| Lost {
            sent: true,
            why: "unreachable".into(),
        })?;
        if twice {
            let _ = f(target.clone()).await;
        }
        let out = f(target).await.map_err(|why| Lost { sent: true, why })?;
        self.stage(m, Stage::AfterProcess).await?;
        if self.target(m.to, m.from).is_none() {
            return Err(Lost {
                sent: true,
                why: "answer lost".into(),
            });
        }
        Ok(out)
    }
}

/// Every message's one-way latency: time passes as messages flow, as on a real network.
pub const LATENCY: Duration = Duration::from_micros(200);

/// How long a failed delivery takes to be noticed.
pub const FAILURE_LATENCY: Duration = Duration::from_millis(10);

fn rpc_error(l: Lost) -> RPCError<C> {
    if l.sent {
        RPCError::Network(NetworkError::from_string(l.why))
    } else {
        RPCError::Unreachable(Unreachable::from_string(l.why))
    }
}

/// The Raft network factory of node `from`.
#[derive(Clone)]
pub struct NetFactory {
    pub from: u64,
    pub router: Router,
}

impl RaftNetworkFactory<C> for NetFactory {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &NodeAddr) -> Self::Network {
        Link {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

pub struct Link {
    from: u64,
    to: u64,
    router: Router,
}

impl RaftNetworkV2<C> for Link {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let what = format!(
            "vote={} prev={:?} n={} commit={:?}",
            req.vote,
            req.prev_log_id.map(|l| l.index()),
            req.entries.len(),
            req.leader_commit.map(|l| l.index())
        );
        let kind = if req.entries.is_empty() {
            Kind::Heartbeat
        } else {
            Kind::Append
        };
        let mut m = Message::new(kind, self.from, self.to, what);
        m.term = Some(req.vote.leader_id().term);
        m.entries = req.entries.iter().map(|e| LogPos::of(&e.log_id)).collect();
        m.prev = req.prev_log_id.as_ref().map(LogPos::of);
        m.commit = req.leader_commit.map(|l| l.index());
        self.router
            .deliver(m, move |t| {
                let req = req.clone();
                async move {
                    t.raft
                        .append_entries(req)
                        .await
                        .map_err(|e: RaftError<C>| e.to_string())
                }
            })
            .await
            .map_err(rpc_error)
    }

    async fn vote(
        &mut self,
        req: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        let what = format!(
            "vote={} last={:?}",
            req.vote,
            req.last_log_id.map(|l| l.index())
        );
        let mut m = Message::new(Kind::Vote, self.from, self.to, what);
        m.term = Some(req.vote.leader_id().term);
        m.last = req.last_log_id.as_ref().map(LogPos::of);
        self.router
            .deliver(m, move |t| {
                let req = req.clone();
                async move {
                    t.raft
                        .vote(req)
                        .await
                        .map_err(|e: RaftError<C>| e.to_string())
                }
            })
            .await
            .map_err(rpc_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let what = format!(
            "vote={vote} last={:?}",
            snapshot.meta.last_log_id.map(|l| l.index())
        );
        let mut m = Message::new(Kind::Snapshot, self.from, self.to, what);
        m.term = Some(vote.leader_id().term);
        m.last = snapshot.meta.last_log_id.as_ref().map(LogPos::of);
        let meta = snapshot.meta.clone();
        let data = snapshot.snapshot;
        let send = self.router.deliver(m, move |t| {
            let snapshot = SnapshotOf::<C, SnapshotData> {
                meta: meta.clone(),
                snapshot: data.clone(),
            };
            async move {
                t.raft
                    .install_full_snapshot(vote, snapshot)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        tokio::pin!(cancel);
        tokio::select! {
            biased;
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            res = send => res.map_err(|l| StreamingError::from(rpc_error(l))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        let mut m = Message::new(Kind::TransferLeader, self.from, self.to, String::new());
        m.term = Some(req.from_leader().leader_id().term);
        self.router
            .deliver(m, move |t| {
                let req = req.clone();
                async move {
                    t.raft
                        .handle_transfer_leader(req)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await
            .map_err(rpc_error)
    }
}

/// The node's [`Transport`] in the simulation: requests handed to the leader and status
/// probes travel the same links, under the same rules, as Raft's messages.
pub struct SimTransport {
    pub from: u64,
    pub router: Router,
}

impl Transport for SimTransport {
    fn to_leader<'a>(
        &'a self,
        to: u64,
        _addr: &'a NodeAddr,
        req: &'a LeaderRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<LeaderAnswer, SendError>> {
        Box::pin(async move {
            let what = match req {
                LeaderRequest::Write(p) => format!("write key={:?}", p.idempotency_key),
                other => format!("{other:?}"),
            };
            let m = Message::new(Kind::Forward, self.from, to, what);
            let req = req.clone();
            let send = self.router.deliver(m, move |t| {
                let req = req.clone();
                async move { Ok(t.serve_leader_request(req).await) }
            });
            match tokio::time::timeout(timeout, send).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(l)) if !l.sent => Err(SendError::NotSent(l.why)),
                Ok(Err(l)) => Err(SendError::NoAnswer(l.why)),
                Err(_) => Err(SendError::NoAnswer(format!("no answer within {timeout:?}"))),
            }
        })
    }

    fn status<'a>(&'a self, to: u64, _addr: &'a NodeAddr) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let m = Message::new(Kind::Status, self.from, to, String::new());
            let ask = self.router.deliver(m, |t| async move { Ok(t.status()) });
            tokio::time::timeout(Duration::from_secs(5), ask)
                .await
                .ok()?
                .ok()
        })
    }
}
