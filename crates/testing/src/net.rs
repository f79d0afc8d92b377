//! The in-memory network: each link calls the target node directly (its Raft handle for Raft's
//! messages, the node itself for requests handed to the leader), through rules that can drop,
//! fail, delay, park, duplicate or jitter a message by type, endpoints and stage, and a link
//! table for partitions. A node that is down or cut off is unreachable. Every message goes
//! into the run's [`Trace`].

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::alias::{SnapshotOf, VoteOf};
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
use switchyard_store::{NodeAddr, TypeConfig};
use switchyard_types::Status;
use tokio::sync::watch;

use crate::rng::Rng;
use crate::trace::Trace;

type C = TypeConfig;

/// The kinds of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rpc {
    AppendEntries,
    Vote,
    Snapshot,
    TransferLeader,
    /// A request handed to the leader (forwarded write, read index, membership change).
    Leader,
    /// A status probe of a joining node.
    Status,
}

/// Where a message is intercepted: before it leaves the sender, or after the receiver handled
/// it (its answer on the way back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    BeforeSend,
    AfterReceive,
}

/// What happens to a matching message.
#[derive(Debug, Clone)]
pub enum Action {
    /// It is lost: the sender sees the target unreachable (before send) or no answer (after).
    Drop,
    /// The sender sees a network error.
    Fail,
    /// It waits this long (virtual time) first.
    Delay(Duration),
    /// It waits a random time below this first: messages overtake each other.
    Jitter(Duration),
    /// It is delivered twice (before send): the receiver handles both, the sender sees the
    /// second answer.
    Duplicate,
    /// It waits until the gate opens (`Gate::open`).
    Park(Gate),
}

/// A gate parked messages wait at.
#[derive(Debug, Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A rule: every field that is set must match.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: u64,
    pub rpc: Option<Rpc>,
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub stage: Stage,
    pub action: Action,
    /// How many more messages it applies to (`None`: until removed).
    pub remaining: Option<u32>,
}

struct Table {
    nodes: Vec<Option<Arc<Node>>>,
    cut: BTreeSet<(u64, u64)>,
    rules: Vec<Rule>,
    next_rule: u64,
    /// Draws for jitter, seeded per run.
    rng: Rng,
}

/// The network of one simulation. Clones share it.
#[derive(Clone)]
pub struct Router {
    table: Arc<Mutex<Table>>,
    trace: Trace,
}

/// Why a message gave no answer.
#[derive(Debug)]
struct Lost {
    /// It reached the receiver (its answer was lost, or failed).
    arrived: bool,
    why: String,
}

impl Router {
    pub fn new(seed: u64, trace: Trace) -> Self {
        Self {
            table: Arc::new(Mutex::new(Table {
                nodes: Vec::new(),
                cut: BTreeSet::new(),
                rules: Vec::new(),
                next_rule: 0,
                rng: Rng::new(seed ^ 0x6e65_7477_6f72_6b00),
            })),
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

    /// Restore every link.
    pub fn heal(&self) {
        self.table.lock().unwrap().cut.clear();
    }

    /// Add a rule; its id removes it.
    pub fn add_rule(
        &self,
        rpc: Option<Rpc>,
        from: Option<u64>,
        to: Option<u64>,
        stage: Stage,
        action: Action,
        remaining: Option<u32>,
    ) -> u64 {
        let mut t = self.table.lock().unwrap();
        t.next_rule += 1;
        let id = t.next_rule;
        t.rules.push(Rule {
            id,
            rpc,
            from,
            to,
            stage,
            action,
            remaining,
        });
        id
    }

    pub fn remove_rule(&self, id: u64) {
        self.table.lock().unwrap().rules.retain(|r| r.id != id);
    }

    /// Remove every rule.
    pub fn clear_rules(&self) {
        self.table.lock().unwrap().rules.clear();
    }

    /// The first matching rule's action (counting it down).
    fn action(&self, rpc: Rpc, from: u64, to: u64, stage: Stage) -> Option<Action> {
        let mut t = self.table.lock().unwrap();
        let i = t.rules.iter().position(|r| {
            r.stage == stage
                && r.rpc.is_none_or(|x| x == rpc)
                && r.from.is_none_or(|x| x == from)
                && r.to.is_none_or(|x| x == to)
        })?;
        let action = t.rules[i].action.clone();
        if let Some(n) = &mut t.rules[i].remaining {
            *n -= 1;
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

    /// Apply a stage's rule: `Err` ends the message; `Ok(true)` asks for a duplicate.
    async fn stage(&self, rpc: Rpc, from: u64, to: u64, stage: Stage) -> Result<bool, Lost> {
        let arrived = stage == Stage::AfterReceive;
        match self.action(rpc, from, to, stage) {
            None => Ok(false),
            Some(Action::Drop) => Err(Lost {
                arrived,
                why: "dropped".into(),
            }),
            Some(Action::Fail) => Err(Lost {
                arrived,
                why: "failed".into(),
            }),
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(false)
            }
            Some(Action::Jitter(max)) => {
                tokio::time::sleep(self.jitter(max)).await;
                Ok(false)
            }
            Some(Action::Duplicate) => Ok(!arrived),
            Some(Action::Park(gate)) => {
                gate.wait().await;
                Ok(false)
            }
        }
    }

    /// Deliver one message after [`LATENCY`]; a failure takes [`FAILURE_LATENCY`] more to be
    /// noticed, as a timeout or a refused connection does, so a sender retrying at once cannot
    /// spin without time passing. `what` describes it in the trace.
    async fn deliver<F, Fut, T>(
        &self,
        rpc: Rpc,
        from: u64,
        to: u64,
        what: String,
        f: F,
    ) -> Result<T, Lost>
    where
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        tokio::time::sleep(LATENCY).await;
        let r = self.deliver_now(rpc, from, to, &f).await;
        match &r {
            Ok(_) => self
                .trace
                .add(format!("msg {rpc:?} {from}->{to} {what}: ok")),
            Err(l) => self.trace.add(format!(
                "msg {rpc:?} {from}->{to} {what}: {} {}",
                if l.arrived { "lost-answer" } else { "lost" },
                l.why
            )),
        }
        if r.is_err() {
            tokio::time::sleep(FAILURE_LATENCY).await;
        }
        r
    }

    /// Rules before, the target's handler (twice for a duplicate), rules after, and the link
    /// checked again for the answer.
    async fn deliver_now<F, Fut, T>(&self, rpc: Rpc, from: u64, to: u64, f: &F) -> Result<T, Lost>
    where
        F: Fn(Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let twice = self.stage(rpc, from, to, Stage::BeforeSend).await?;
        let target = self.target(from, to).ok_or_else(|| Lost {
            arrived: false,
            why: "unreachable".into(),
        })?;
        if twice {
            let _ = f(target.clone()).await;
        }
        let out = f(target).await.map_err(|why| Lost { arrived: true, why })?;
        self.stage(rpc, from, to, Stage::AfterReceive).await?;
        if self.target(to, from).is_none() {
            return Err(Lost {
                arrived: true,
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
    if l.arrived {
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
    type SnapshotData = Cursor<Vec<u8>>;

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
        self.router
            .deliver(Rpc::AppendEntries, self.from, self.to, what, |t| {
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
        self.router
            .deliver(Rpc::Vote, self.from, self.to, what, |t| {
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
        let meta = snapshot.meta.clone();
        let data = snapshot.snapshot.into_inner();
        let send = self
            .router
            .deliver(Rpc::Snapshot, self.from, self.to, what, move |t| {
                let snapshot = SnapshotOf::<C, Cursor<Vec<u8>>> {
                    meta: meta.clone(),
                    snapshot: Cursor::new(data.clone()),
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
        self.router
            .deliver(
                Rpc::TransferLeader,
                self.from,
                self.to,
                String::new(),
                |t| {
                    let req = req.clone();
                    async move {
                        t.raft
                            .handle_transfer_leader(req)
                            .await
                            .map_err(|e| e.to_string())
                    }
                },
            )
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
            let send = self.router.deliver(Rpc::Leader, self.from, to, what, |t| {
                let req = req.clone();
                async move { Ok(t.serve_leader_request(req).await) }
            });
            match tokio::time::timeout(timeout, send).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(l)) if !l.arrived => Err(SendError::NotSent(l.why)),
                Ok(Err(l)) => Err(SendError::NoAnswer(l.why)),
                Err(_) => Err(SendError::NoAnswer(format!("no answer within {timeout:?}"))),
            }
        })
    }

    fn status<'a>(&'a self, to: u64, _addr: &'a NodeAddr) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let ask =
                self.router
                    .deliver(Rpc::Status, self.from, to, String::new(), |t| async move {
                        Ok(t.status())
                    });
            tokio::time::timeout(Duration::from_secs(5), ask)
                .await
                .ok()?
                .ok()
        })
    }
}
