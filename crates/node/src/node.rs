//! A node: its Raft instance over the injected parts, and what the API layer asks of it
//! (write a command, make a read linearizable, report status).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use openraft::raft::ReadPolicy;
use openraft::storage::RaftLogStorage;
use switchyard_core::{Command, Outcome, Proposal, Reply};
use switchyard_store::{NodeAddr, Raft, StateMachine, StateView, TypeConfig};
use switchyard_types::{Cluster, Member, Status};

use crate::bugs::Bug;
use crate::config::NodeConfig;
use crate::error::{Leader, NodeError};
use crate::transport::{AgentProbe, Clock, LeaderReply, LeaderRequest, SendError, Transport};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // The causes are part of each message (and not also error sources, which a caller
    // printing the chain would repeat).
    #[error("cannot use data directory {path}: {cause}")]
    DataDir { path: String, cause: std::io::Error },
    #[error("cannot open {what}: {cause}{}", busy_hint(cause))]
    Store {
        what: &'static str,
        cause: std::io::Error,
    },
    #[error("data directory {path}: {cause}")]
    Format { path: String, cause: std::io::Error },
    #[error("raft: {0}")]
    Raft(String),
}

/// The hint for a store another process holds: most likely another switchyard.
fn busy_hint(cause: &std::io::Error) -> &'static str {
    if cause.kind() == std::io::ErrorKind::ResourceBusy {
        " (is another switchyard using the same data directory?)"
    } else {
        ""
    }
}

/// What a node runs on: everything that differs between a server and a simulation.
pub struct Parts<N, L> {
    /// Raft's messages to other nodes.
    pub network: N,
    /// The Raft log and vote.
    pub log: L,
    /// The state machine (with its snapshot store).
    pub sm: StateMachine,
    /// Requests handed to the leader, and status probes of joining nodes.
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub agent_probe: Arc<dyn AgentProbe>,
    /// Run once at shutdown, after Raft has stopped (closes the stores).
    pub close: Option<Box<dyn FnOnce() + Send>>,
}

/// A running node.
pub struct Node {
    pub id: u64,
    pub raft: Arc<Raft>,
    pub view: StateView,
    pub config: NodeConfig,
    pub(crate) transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    pub(crate) agent_probe: Arc<dyn AgentProbe>,
    close: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Membership changes on this (leading) node, one at a time: Raft refuses a change while
    /// another is under way, so concurrent joins queue here instead of failing.
    pub(crate) membership: tokio::sync::Mutex<()>,
    /// The term in which a linearizable read on this node, as sole voter and leader, last
    /// waited for the term's first entry to apply (0: none yet); see `linearizable`.
    sole_voter_read_term: AtomicU64,
    metrics: NodeMetrics,
}

/// The node's metric handles, registered once at start rather than looked up by name on every
/// write and read (a process serves them once its recorder is installed, before the start).
struct NodeMetrics {
    write_seconds: metrics::Histogram,
    /// `switchyard_linearizable_reads_total` by [`ReadPath`], at `path as usize`.
    reads: [metrics::Counter; 4],
}

impl NodeMetrics {
    fn register() -> NodeMetrics {
        NodeMetrics {
            write_seconds: metrics::histogram!("switchyard_write_seconds"),
            reads: ReadPath::ALL.map(|path| {
                metrics::counter!("switchyard_linearizable_reads_total", "path" => path.as_str())
            }),
        }
    }

    fn read(&self, path: ReadPath) -> &metrics::Counter {
        &self.reads[path as usize]
    }
}

/// How a linearizable read made sure local state is current (see [`Node::linearizable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// The leader and only voter: no round.
    SoleVoter,
    /// The leader within its lease: no round.
    Lease,
    /// The leader, confirmed by a heartbeat round to a quorum.
    ReadIndex,
    /// A follower, with the leader's read index.
    Leader,
}

impl ReadPath {
    /// Every path, in the order of the variants (`path as usize` is its place).
    const ALL: [ReadPath; 4] = [
        ReadPath::SoleVoter,
        ReadPath::Lease,
        ReadPath::ReadIndex,
        ReadPath::Leader,
    ];

    /// The label of the `switchyard_linearizable_reads_total` metric.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadPath::SoleVoter => "sole_voter",
            ReadPath::Lease => "lease",
            ReadPath::ReadIndex => "read_index",
            ReadPath::Leader => "leader",
        }
    }
}

/// Where requests that need the leader go right now.
pub(crate) enum Route {
    Local,
    Remote {
        id: u64,
        addr: NodeAddr,
    },
    /// No leader to ask: none known, or the one known cannot be reached (it left the
    /// membership, or it is this node stepping down). Wait for a change from this one.
    Unknown(Option<u64>),
}

/// Why a request for the leader did not give an answer.
pub(crate) enum Failure {
    /// Not carried out (not sent, or refused as not-leader): safe to try again.
    Retry(NodeError),
    /// Failed, or the outcome is unknown.
    Failed(NodeError),
}

impl Node {
    /// Start Raft on `parts`; on an empty log, initialise a one-member cluster of this node
    /// (unless `config.join`: then wait to be added).
    pub async fn start<N, L>(
        config: NodeConfig,
        addr: NodeAddr,
        parts: Parts<N, L>,
    ) -> Result<Node, StartError>
    where
        N: RaftNetworkFactory<TypeConfig>,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = switchyard_store::SnapshotData>,
        L: RaftLogStorage<TypeConfig>,
    {
        let raft_config = config.raft_config().map_err(StartError::Raft)?;
        let sm = parts.sm;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            parts.network,
            parts.log,
            sm.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && config.join {
            tracing::info!(
                node_id = config.node_id,
                "empty data directory: waiting to be added to the cluster"
            );
        } else if !initialized {
            tracing::info!(
                node_id = config.node_id,
                "empty data directory: initialising a one-member cluster"
            );
            let members = BTreeMap::from([(config.node_id, addr)]);
            raft.initialize(members)
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        } else {
            // A restarted sole voter need not wait an election timeout to lead again.
            let voters: Vec<u64> = raft
                .metrics()
                .borrow_watched()
                .membership_config
                .voter_ids()
                .collect();
            if voters == [config.node_id] {
                raft.trigger()
                    .elect(false)
                    .await
                    .map_err(|e| StartError::Raft(e.to_string()))?;
            }
        }
        Ok(Node {
            id: config.node_id,
            raft: Arc::new(raft),
            view: sm.view(),
            config,
            transport: parts.transport,
            clock: parts.clock,
            agent_probe: parts.agent_probe,
            close: Mutex::new(parts.close),
            membership: tokio::sync::Mutex::new(()),
            sole_voter_read_term: AtomicU64::new(0),
            metrics: NodeMetrics::register(),
        })
    }

    /// The time this node stamps on proposals.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Propose a command, wait until it is committed (fsynced on a quorum) and applied here,
    /// and return its reply and the revision (log index) it was applied at. On a follower the
    /// command is handed to the leader (unless `forward_writes` is off: then `NotLeader`
    /// naming the leader); the leader stamps its time on it.
    pub async fn write(
        &self,
        command: Command,
        idempotency_key: Option<String>,
    ) -> Result<(Reply, u64), NodeError> {
        let proposal = Proposal {
            time_ms: self.now_ms(),
            idempotency_key,
            idempotency_window_ms: self.config.idempotency_window.as_millis() as i64,
            command,
        };
        let started = tokio::time::Instant::now();
        let res = tokio::time::timeout(self.config.write_timeout, self.submit(proposal)).await;
        self.metrics
            .write_seconds
            .record(started.elapsed().as_secs_f64());
        let (outcome, index) = res.map_err(|_| self.write_timed_out())??;
        // Committed: the answer stands whatever happens next. Waiting for this node to apply it
        // (at once on the leader) only makes it visible to reads here.
        if !self.wait_applied(index).await {
            tracing::warn!(index, "a committed write is not applied here yet");
        }
        outcome.map(|r| (r, index)).map_err(Into::into)
    }

    fn write_timed_out(&self) -> NodeError {
        NodeError::unknown(format!(
            "the command was not committed within {:?}; it may still be applied: retry with \
             the same Idempotency-Key to find out",
            self.config.write_timeout
        ))
    }

    /// Get `proposal` committed by the leader, wherever it is: its outcome and log index.
    async fn submit(&self, mut proposal: Proposal) -> Result<(Outcome, u64), NodeError> {
        loop {
            let failure = match self.route() {
                Route::Local => match self.write_local(proposal.clone()).await {
                    Ok(written) => return Ok(written),
                    Err(Failure::Retry(_)) => match self.await_writable().await {
                        Ok(()) => continue,
                        Err(e) => e,
                    },
                    Err(Failure::Failed(e)) => e,
                },
                Route::Remote { id, addr } => {
                    if !self.config.forward_writes {
                        return Err(not_leader(Some(id), Some(&addr)));
                    }
                    let req = LeaderRequest::Write(proposal.clone());
                    match self.hand_to_leader(id, &addr, &req).await {
                        Ok(LeaderReply::Written { outcome, index }) => return Ok((outcome, index)),
                        Ok(other) => {
                            return Err(NodeError::internal(format!(
                                "the leader answered a write with {other:?}"
                            )));
                        }
                        Err(Failure::Retry(_)) => match self.await_leader_change(Some(id)).await {
                            Ok(()) => continue,
                            Err(e) => e,
                        },
                        Err(Failure::Failed(e)) => e,
                    }
                }
                Route::Unknown(old) => match self.await_leader_change(old).await {
                    Ok(()) => continue,
                    Err(e) => e,
                },
            };
            // The bug: an unknown outcome is "fixed" by proposing again, without the key that
            // would have made the second proposal find the first.
            if self.config.bug(Bug::RetryWithoutKey)
                && matches!(failure, NodeError::OutcomeUnknown { .. })
            {
                proposal.idempotency_key = None;
                continue;
            }
            return Err(failure);
        }
    }

    /// Propose on this node (the leader, as far as it knows). `Retry` when it is not.
    async fn write_local(&self, proposal: Proposal) -> Result<(Outcome, u64), Failure> {
        match self.raft.client_write(proposal).await {
            Ok(resp) => match resp.data {
                Some(outcome) => Ok((outcome, resp.log_id.index())),
                None => Err(Failure::Failed(NodeError::internal(
                    "a command entry answered without an outcome",
                ))),
            },
            // Proposed, then dropped from this node's log (truncated or superseded by a
            // snapshot): another node may have committed it, so the outcome is unknown.
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(Failure::Failed(NodeError::unknown(
                    "leadership changed while the command was being committed; it may still be \
                     applied: retry with the same Idempotency-Key to find out",
                )))
            }
            Err(e) if e.forward_to_leader().is_some() => Err(Failure::Retry(raft_error(&e))),
            // Raft stopped (shutting down) after the command may have been appended: another
            // node may still commit it.
            Err(RaftError::Fatal(f)) => Err(Failure::Failed(NodeError::unknown(format!(
                "raft stopped on this node while the command was being committed ({f}); it \
                 may still be applied: retry with the same Idempotency-Key to find out"
            )))),
            Err(e) => Err(Failure::Failed(raft_error(&e))),
        }
    }

    /// Carry out a request handed over by another node (this node should be the leader). A
    /// `NotLeader` error means nothing was done.
    pub async fn serve_leader_request(&self, req: LeaderRequest) -> Result<LeaderReply, NodeError> {
        match self.route() {
            Route::Local => {}
            Route::Remote { id, addr } => return Err(not_leader(Some(id), Some(&addr))),
            Route::Unknown(_) => return Err(not_leader(None, None)),
        }
        match req {
            LeaderRequest::Write(mut proposal) => {
                proposal.time_ms = self.now_ms();
                let res =
                    tokio::time::timeout(self.config.write_timeout, self.write_local(proposal))
                        .await
                        .unwrap_or_else(|_| Err(Failure::Failed(self.write_timed_out())));
                match res {
                    Ok((outcome, index)) => Ok(LeaderReply::Written { outcome, index }),
                    Err(Failure::Retry(e) | Failure::Failed(e)) => Err(e),
                }
            }
            LeaderRequest::ReadIndex => match self.leader_read_index().await {
                Ok((index, _)) => Ok(LeaderReply::ReadIndex { index }),
                Err(e) => Err(raft_error(&e)),
            },
            LeaderRequest::AddMember { node_id, addr } => self
                .add_member_local(node_id, addr)
                .await
                .map(|_| LeaderReply::Done),
            LeaderRequest::RemoveMember { node_id } => self
                .remove_member_local(node_id)
                .await
                .map(|_| LeaderReply::Done),
            LeaderRequest::TransferLeader { node_id } => self
                .transfer_leader_local(node_id)
                .await
                .map(|_| LeaderReply::Done),
        }
    }

    /// Where leader-only requests go, from this node's current view.
    pub(crate) fn route(&self) -> Route {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        match m.current_leader {
            Some(id) if id == self.id && m.state == ServerState::Leader => Route::Local,
            Some(id) if id != self.id => match m.membership_config.nodes().find(|(n, _)| **n == id)
            {
                Some((_, addr)) => Route::Remote {
                    id,
                    addr: addr.clone(),
                },
                None => Route::Unknown(Some(id)),
            },
            other => Route::Unknown(other),
        }
    }

    /// This node leads but refused to propose: it is stepping down, or it was just elected and
    /// no quorum has acknowledged it yet (its lease is not yet valid). Either clears within a
    /// heartbeat or so; look again shortly. `Err` once Raft has stopped here.
    pub(crate) async fn await_writable(&self) -> Result<(), NodeError> {
        let me = self.id;
        let r = self
            .raft
            .wait(Some(Duration::from_millis(10)))
            .metrics(|m| m.current_leader != Some(me), "leadership moves")
            .await;
        running(r)
    }

    /// Wait (briefly) until this node's idea of the leader is no longer `old`. `Err` once Raft
    /// has stopped here.
    pub(crate) async fn await_leader_change(&self, old: Option<u64>) -> Result<(), NodeError> {
        let r = self
            .raft
            .wait(Some(Duration::from_millis(200)))
            .metrics(
                |m| {
                    m.current_leader != old
                        && (m.current_leader != Some(self.id) || m.state == ServerState::Leader)
                },
                "the leader changes",
            )
            .await;
        running(r)
    }

    /// Wait until this node has applied `index`, up to the write timeout; false if it has not.
    async fn wait_applied(&self, index: u64) -> bool {
        let mut changes = self.view.subscribe();
        let wait = async {
            while self.view.revision() < index {
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(self.config.write_timeout, wait)
            .await
            .unwrap_or(false)
    }

    /// Send a request to the leader through the transport.
    pub(crate) async fn hand_to_leader(
        &self,
        id: u64,
        leader: &NodeAddr,
        req: &LeaderRequest,
    ) -> Result<LeaderReply, Failure> {
        match self
            .transport
            .to_leader(id, leader, req, self.config.write_timeout)
            .await
        {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) if e.is_not_leader() => Err(Failure::Retry(e)),
            Ok(Err(e)) => Err(Failure::Failed(e)),
            Err(SendError::NotSent(why)) => Err(Failure::Retry(NodeError::unavailable(format!(
                "cannot reach the leader (node {id} at {}): {why}",
                leader.peer
            )))),
            Err(SendError::NoAnswer(why)) => Err(Failure::Failed(NodeError::unknown(format!(
                "the leader (node {id} at {}) did not answer ({why}); the request may still \
                 take effect: retry a write with the same Idempotency-Key to find out",
                leader.peer
            )))),
        }
    }

    /// Hand a leader-only request to the leader wherever it is, following leader changes,
    /// until it is done or `write_timeout` has passed.
    pub(crate) async fn via_leader(&self, req: LeaderRequest) -> Result<LeaderReply, NodeError> {
        let work = async {
            loop {
                match self.route() {
                    Route::Local => match self.serve_leader_request(req.clone()).await {
                        Ok(r) => return Ok(r),
                        Err(e) if e.is_not_leader() => self.await_writable().await?,
                        Err(e) => return Err(e),
                    },
                    Route::Remote { id, addr } => {
                        match self.hand_to_leader(id, &addr, &req).await {
                            Ok(r) => return Ok(r),
                            Err(Failure::Retry(_)) => self.await_leader_change(Some(id)).await?,
                            Err(Failure::Failed(e)) => return Err(e),
                        }
                    }
                    Route::Unknown(old) => self.await_leader_change(old).await?,
                }
            }
        };
        tokio::time::timeout(self.config.write_timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::unavailable(format!(
                    "no leader answered within {:?}",
                    self.config.write_timeout
                )))
            })
    }

    /// Wait until local state reflects every write acknowledged before this call, and say how
    /// that was made sure of:
    /// - [`ReadPath::SoleVoter`]: this node leads and is the only voter. Every write is
    ///   acknowledged after this node applied it, and no other node can lead without a
    ///   membership change this node would hold; once one read this term has waited for the
    ///   term's first entry to apply, local state is current with no round at all.
    /// - [`ReadPath::Lease`]: this node leads and a quorum acknowledged it within the leader
    ///   lease (`lease_reads`); it waits only until it has applied its commit index.
    /// - [`ReadPath::ReadIndex`]: this node leads and confirms it with a heartbeat round.
    /// - [`ReadPath::Leader`]: a follower asks the leader for its read index (the leader takes
    ///   it from its lease where it can) and waits until it has applied that far.
    pub async fn linearizable(&self) -> Result<ReadPath, NodeError> {
        let path = self.linearizable_path().await?;
        self.metrics.read(path).increment(1);
        Ok(path)
    }

    async fn linearizable_path(&self) -> Result<ReadPath, NodeError> {
        if let Some(term) = self.sole_voter_term() {
            if self.sole_voter_read_term.load(Ordering::Acquire) == term {
                return Ok(ReadPath::SoleVoter);
            }
            match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => {
                    self.sole_voter_read_term.store(term, Ordering::Release);
                    return Ok(ReadPath::SoleVoter);
                }
                Err(e) if e.forward_to_leader().is_none() => return Err(raft_error(&e)),
                Err(_) => {}
            }
        } else if matches!(self.route(), Route::Local) {
            match self.leader_read_index().await {
                Ok((_, path)) => {
                    // The read index is applied when `ensure_linearizable` returns.
                    return Ok(path);
                }
                Err(e) if e.forward_to_leader().is_none() => return Err(raft_error(&e)),
                Err(_) => {}
            }
        } else if self.config.bug(Bug::FollowerReadWithoutIndex) {
            // The bug: a follower trusts its own state.
            return Ok(ReadPath::Leader);
        }
        match self.via_leader(LeaderRequest::ReadIndex).await? {
            LeaderReply::ReadIndex { index } if self.wait_applied(index).await => {
                Ok(ReadPath::Leader)
            }
            LeaderReply::ReadIndex { index } => Err(NodeError::unavailable(format!(
                "this node did not catch up to the leader's read index {index} within {:?}; \
                 retry, read from another node, or pass ?consistency=stale",
                self.config.write_timeout
            ))),
            other => Err(NodeError::internal(format!(
                "the leader answered a read index request with {other:?}"
            ))),
        }
    }

    /// The current term when this node leads and is the only voter of its membership.
    fn sole_voter_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        let mut voters = m.membership_config.voter_ids();
        let sole = m.state == ServerState::Leader
            && m.current_leader == Some(self.id)
            && voters.next() == Some(self.id)
            && voters.next().is_none();
        sole.then_some(m.current_term)
    }

    /// On the leader: a read index that a linearizable read may use, from the lease when
    /// `lease_reads` is on and the lease holds, else from a heartbeat round; applied on return.
    async fn leader_read_index(
        &self,
    ) -> Result<(u64, ReadPath), RaftError<TypeConfig, LinearizableReadError<TypeConfig>>> {
        if self.config.lease_reads {
            match self.raft.ensure_linearizable(ReadPolicy::LeaseRead).await {
                Ok(read) => return Ok((read.index(), ReadPath::Lease)),
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {}
                Err(e) => return Err(e),
            }
        }
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|read| (read.index(), ReadPath::ReadIndex))
    }

    /// This node's view of itself and the cluster.
    pub fn status(&self) -> Status {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Learner => "learner",
            ServerState::Candidate => "candidate",
            ServerState::Shutdown => "shutdown",
        };
        Status {
            node_id: self.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            applied_index: m.last_applied.map_or(0, |l| l.index()),
            revision: self.view.revision(),
            compact_revision: self.view.compact_revision(),
            members: members(&m.membership_config),
            format: switchyard_store::FORMAT,
        }
    }

    /// The cluster as this node sees it; on the leader, each member's reachability, last
    /// contact, matched log index and lag, from the leader's replication metrics.
    pub fn cluster(&self) -> Cluster {
        use openraft::Instant as _;
        let m = self.raft.metrics().borrow_watched().clone();
        let mut list = members(&m.membership_config);
        if m.state == ServerState::Leader {
            let last = m.last_log_index.unwrap_or(0);
            for member in &mut list {
                if member.node_id == self.id {
                    (member.reachable, member.last_contact) = (Some(true), Some(0.0));
                    (member.matched_index, member.lag) = (Some(last), Some(0));
                    continue;
                }
                let acked = m
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(&member.node_id).cloned().flatten())
                    .map(|at| at.elapsed());
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&member.node_id).cloned().flatten())
                    .map(|l| l.index());
                member.reachable = Some(acked.is_some_and(|d| d <= self.config.election_timeout));
                member.last_contact = acked.map(|d| d.as_secs_f64());
                member.matched_index = matched;
                member.lag = Some(last.saturating_sub(matched.unwrap_or(0)));
            }
        }
        Cluster {
            leader: m.current_leader,
            members: list,
            changing: m.membership_config.membership().get_joint_config().len() > 1,
            answered_by: Some(self.id),
        }
    }

    /// True while this node is the leader, as far as it knows.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// Wait until this node knows a leader (itself or another), up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, NodeError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|e| NodeError::unavailable(format!("no leader within {timeout:?}: {e}")))?;
        Ok(m.current_leader.unwrap_or_default())
    }

    /// Stop Raft and close the stores, so the data directory can be opened again.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let close = self.close.lock().unwrap().take();
        if let Some(close) = close {
            close();
        }
    }
}

/// `NotLeader`, naming the leader when known.
pub(crate) fn not_leader(id: Option<u64>, addr: Option<&NodeAddr>) -> NodeError {
    NodeError::NotLeader {
        leader: id.map(|node_id| Leader {
            node_id,
            api: addr.map(|a| a.api.clone()),
        }),
    }
}

/// The end of a wait on Raft's metrics: `Err` when Raft has stopped (a timeout is fine).
fn running<T>(r: Result<T, openraft::metrics::WaitError>) -> Result<(), NodeError> {
    match r {
        Err(openraft::metrics::WaitError::ShuttingDown) => {
            Err(NodeError::unavailable("raft has stopped on this node"))
        }
        _ => Ok(()),
    }
}

/// A Raft error as a node error.
pub(crate) fn raft_error<E>(e: &RaftError<TypeConfig, E>) -> NodeError
where
    E: std::fmt::Display
        + std::fmt::Debug
        + openraft::TryAsRef<openraft::errors::ForwardToLeader<TypeConfig>>,
{
    if let Some(f) = e.forward_to_leader() {
        return not_leader(f.leader_id, f.leader_node.as_ref());
    }
    match e {
        RaftError::Fatal(f) => {
            NodeError::unavailable(format!("raft has stopped on this node: {f}"))
        }
        other => NodeError::internal(other),
    }
}

/// Members from a stored membership config.
pub fn members(m: &openraft::alias::StoredMembershipOf<TypeConfig>) -> Vec<Member> {
    let voters: std::collections::BTreeSet<u64> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, n)| Member {
            node_id: *id,
            api: n.api.clone(),
            peer: n.peer.clone(),
            voter: voters.contains(id),
            reachable: None,
            last_contact: None,
            matched_index: None,
            lag: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ReadPath;

    #[test]
    fn every_read_path_has_its_place_in_all() {
        for (i, path) in ReadPath::ALL.iter().enumerate() {
            assert_eq!(*path as usize, i, "{path:?}");
        }
    }
}
