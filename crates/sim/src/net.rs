//! The in-memory network: each link calls the target node's Raft handle directly, through
//! rules that can drop, fail, delay or park a message by type, endpoints and stage, and a link
//! table for partitions. A node that is down or cut off is unreachable.

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
use tokio::sync::watch;

use crate::{NodeAddr, Raft, SimConfig};

type C = SimConfig;

/// The kinds of Raft message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rpc {
    AppendEntries,
    Vote,
    Snapshot,
    TransferLeader,
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
    /// It is lost: the sender sees the target unreachable.
    Drop,
    /// The sender sees a network error.
    Fail,
    /// It waits this long (virtual time) first.
    Delay(Duration),
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

    pub fn close(&self) {
        self.0.send_replace(false);
    }

    async fn wait(&self) {
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

#[derive(Default)]
struct Table {
    nodes: Vec<Option<Arc<Raft>>>,
    cut: BTreeSet<(u64, u64)>,
    rules: Vec<Rule>,
    next_rule: u64,
    /// Messages sent, by kind (for the fuzzer's summary and traces).
    sent: u64,
}

/// The network of one simulation. Clones share it.
#[derive(Clone, Default)]
pub struct Router {
    table: Arc<Mutex<Table>>,
}

impl Router {
    pub fn set_node(&self, id: u64, raft: Option<Arc<Raft>>) {
        let mut t = self.table.lock().unwrap();
        let i = id as usize;
        if t.nodes.len() <= i {
            t.nodes.resize(i + 1, None);
        }
        t.nodes[i] = raft;
    }

    /// Cut both directions between every node of `a` and every node of `b`.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        let mut t = self.table.lock().unwrap();
        for &x in a {
            for &y in b {
                t.cut.insert((x, y));
                t.cut.insert((y, x));
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

    pub fn clear_rules(&self) {
        self.table.lock().unwrap().rules.clear();
    }

    pub fn messages_sent(&self) -> u64 {
        self.table.lock().unwrap().sent
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

    fn target(&self, from: u64, to: u64) -> Option<Arc<Raft>> {
        let mut t = self.table.lock().unwrap();
        t.sent += 1;
        if t.cut.contains(&(from, to)) {
            return None;
        }
        t.nodes.get(to as usize).cloned().flatten()
    }

    /// Apply a stage's rule: `Err` ends the message.
    async fn stage(&self, rpc: Rpc, from: u64, to: u64, stage: Stage) -> Result<(), RPCError<C>> {
        match self.action(rpc, from, to, stage) {
            None => Ok(()),
            Some(Action::Drop) => Err(unreachable(format!("{rpc:?} {from}->{to} dropped"))),
            Some(Action::Fail) => Err(RPCError::Network(NetworkError::from_string(format!(
                "{rpc:?} {from}->{to} failed"
            )))),
            Some(Action::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Action::Park(gate)) => {
                gate.wait().await;
                Ok(())
            }
        }
    }

    /// Deliver one message after [`LATENCY`]; a failure takes [`FAILURE_LATENCY`] more to be noticed,
    /// as a timeout or a refused connection does, so a sender retrying at once cannot spin
    /// without time passing.
    async fn deliver<F, Fut, T>(&self, rpc: Rpc, from: u64, to: u64, f: F) -> Result<T, RPCError<C>>
    where
        F: FnOnce(Arc<Raft>) -> Fut,
        Fut: Future<Output = Result<T, RPCError<C>>>,
    {
        tokio::time::sleep(LATENCY).await;
        let r = self.deliver_now(rpc, from, to, f).await;
        if r.is_err() {
            tokio::time::sleep(FAILURE_LATENCY).await;
        }
        r
    }

    /// Rules before, the target's handler, rules after, and the link checked again for the
    /// answer.
    async fn deliver_now<F, Fut, T>(
        &self,
        rpc: Rpc,
        from: u64,
        to: u64,
        f: F,
    ) -> Result<T, RPCError<C>>
    where
        F: FnOnce(Arc<Raft>) -> Fut,
        Fut: Future<Output = Result<T, RPCError<C>>>,
    {
        self.stage(rpc, from, to, Stage::BeforeSend).await?;
        let target = self
            .target(from, to)
            .ok_or_else(|| unreachable(format!("node {to} is unreachable from {from}")))?;
        let out = f(target).await?;
        self.stage(rpc, from, to, Stage::AfterReceive).await?;
        if self.target(to, from).is_none() {
            return Err(unreachable(format!(
                "the answer of {to} to {from} was lost"
            )));
        }
        Ok(out)
    }
}

/// Every message's one-way latency: time passes as messages flow, as on a real network.
pub const LATENCY: Duration = Duration::from_micros(200);

/// How long a failed delivery takes to be noticed.
pub const FAILURE_LATENCY: Duration = Duration::from_millis(10);

fn unreachable(why: String) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::from_string(why))
}

fn remote<E: std::error::Error>(e: RaftError<C, E>) -> RPCError<C> {
    RPCError::Unreachable(Unreachable::from_string(format!("remote error: {e}")))
}

/// The network factory of node `from`.
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
        self.router
            .deliver(Rpc::AppendEntries, self.from, self.to, |t| async move {
                t.append_entries(req).await.map_err(remote)
            })
            .await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.router
            .deliver(Rpc::Vote, self.from, self.to, |t| async move {
                t.vote(req).await.map_err(remote)
            })
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let send = self
            .router
            .deliver(Rpc::Snapshot, self.from, self.to, |t| async move {
                t.install_full_snapshot(vote, snapshot)
                    .await
                    .map_err(|e| unreachable(format!("remote error: {e}")))
            });
        tokio::pin!(cancel);
        tokio::select! {
            biased;
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            res = send => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.router
            .deliver(Rpc::TransferLeader, self.from, self.to, |t| async move {
                t.handle_transfer_leader(req)
                    .await
                    .map_err(|e| unreachable(format!("remote error: {e}")))
            })
            .await
    }
}
