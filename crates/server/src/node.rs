//! One switchyard node: its Raft instance, its storage and the facade the API layer uses
//! (write a command, make a read linearizable, report status).

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::raft::ReadPolicy;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_core::{Command, Outcome, Proposal, Reply};
use switchyard_store::{LogStore, NodeAddr, Raft, StateMachine, StateView, TypeConfig};
use switchyard_types::{Member, Status};

use crate::config::Config;
use crate::error::ApiError;
use crate::network::{PeerClient, PeerNetwork};
use crate::peer_auth::{ClusterSecret, Verifier};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open {what}: {source} (is another switchyard using the same data directory?)")]
    Store {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("data directory {path}: {source}")]
    Format {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster secret: {0}")]
    Secret(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// A running node.
pub struct Node {
    pub id: u64,
    pub raft: Arc<Raft>,
    pub view: StateView,
    pub config: Config,
    log: LogStore<TypeConfig>,
    sm: StateMachine,
    /// HTTP client for requests handed to the leader over the peer listener (signed).
    peers: PeerClient,
    /// Checks the signature of every request on the peer listener (and of join requests).
    pub peer_auth: Verifier,
    /// Membership changes on this (leading) node, one at a time: Raft refuses a change while
    /// another is under way, so concurrent joins queue here instead of failing.
    membership: tokio::sync::Mutex<()>,
}

/// A request a node hands to the leader over the peer listener (`POST /raft/leader`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// Propose a command; the leader stamps its own time on it.
    Write(Proposal),
    /// The leader's read index, for a linearizable read on another node.
    ReadIndex,
    AddMember {
        node_id: u64,
        addr: NodeAddr,
    },
    RemoveMember {
        node_id: u64,
    },
    TransferLeader {
        node_id: u64,
    },
}

/// The leader's answer to a [`LeaderRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    /// The command was committed and applied at `index`, with this outcome.
    Written {
        outcome: Outcome,
        index: u64,
    },
    /// Reads that wait until this index is applied are linearizable.
    ReadIndex {
        index: u64,
    },
    Done,
}

/// An error as it crosses the peer listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// The request was not carried out because the node asked is not (or no longer) the leader:
    /// asking the current leader again is safe.
    pub not_leader: bool,
}

impl LeaderError {
    fn from_api(e: ApiError, not_leader: bool) -> Self {
        Self {
            status: e.status.as_u16(),
            code: e.code.to_string(),
            message: e.message,
            details: e.details,
            not_leader,
        }
    }

    fn into_api(self) -> ApiError {
        let status = axum::http::StatusCode::from_u16(self.status)
            .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let mut e = ApiError::new(status, static_code(&self.code), self.message);
        e.details = self.details;
        e
    }
}

/// The `&'static` form of an error code that crossed the wire.
fn static_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "invalid",
        "not_found",
        "conflict",
        "busy",
        "not_allowed",
        "insufficient_funds",
        "unavailable",
        "timeout",
        "internal",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("unavailable")
}

/// Where requests that need the leader go right now.
enum Route {
    Local,
    Remote { id: u64, addr: NodeAddr },
    Unknown,
}

/// Why a request for the leader did not give an answer.
enum Failure {
    /// Not carried out (not sent, or refused as not-leader): safe to try again.
    Retry(ApiError),
    /// Failed, or the outcome is unknown.
    Failed(ApiError),
}

/// The cluster secret this node runs with, and whether it was created just now: the one kept
/// in the data directory; else the configured join token (kept from now on); else, for a
/// node that starts a cluster, a new one. A node joining a cluster must be given its token.
fn cluster_secret(config: &Config) -> Result<(ClusterSecret, bool), StartError> {
    let dir = &config.data_dir;
    let kept = ClusterSecret::load(dir).map_err(StartError::Secret)?;
    let keep = |s: &ClusterSecret| {
        s.store(dir)
            .map_err(|e| StartError::Secret(format!("cannot keep it in {}: {e}", dir.display())))
    };
    match (kept, &config.join_token) {
        (Some(kept), Some(given)) if kept != *given => Err(StartError::Secret(format!(
            "--join-token differs from the token this data directory already holds ({}); a \
             member keeps the token it joined with",
            ClusterSecret::path(dir).display()
        ))),
        (Some(kept), _) => Ok((kept, false)),
        (None, Some(given)) => {
            keep(given)?;
            Ok((given.clone(), false))
        }
        (None, None) if config.join.is_some() => Err(StartError::Secret(
            "joining a cluster needs its join token: pass --join-token (print it on a member \
             with `switchyard cluster join-token`)"
                .into(),
        )),
        (None, None) => {
            let s = ClusterSecret::generate();
            keep(&s)?;
            tracing::info!(file = %ClusterSecret::path(dir).display(), "created the cluster secret");
            Ok((s, true))
        }
    }
}

/// Current wall-clock time in Unix milliseconds: the time a leader stamps on a proposal.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Node {
    /// Open the stores in the data directory, start Raft, and, on an empty data directory,
    /// initialise a one-member cluster of this node.
    pub async fn start(config: Config, addr: NodeAddr) -> Result<Node, StartError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        switchyard_store::format::check(dir).map_err(|source| StartError::Format {
            path: dir.display().to_string(),
            source,
        })?;
        let log = LogStore::<TypeConfig>::open(&dir.join("raft-log.redb")).map_err(|source| {
            StartError::Store {
                what: "raft-log.redb",
                source,
            }
        })?;
        let sm = StateMachine::open(&dir.join("state.redb"), config.history_events).map_err(
            |source| StartError::Store {
                what: "state.redb",
                source,
            },
        )?;
        let raft_config = openraft::Config {
            cluster_name: "switchyard".into(),
            // openraft starts an election when a follower's leader lease (election_timeout_max)
            // plus a random election_timeout_min..max has passed since it last heard from the
            // leader. 0.25 T .. 0.75 T makes that T .. 1.5 T for the configured T, the time a
            // follower waits in etcd's terms.
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout.as_millis() as u64 / 4,
            election_timeout_max: config.election_timeout.as_millis() as u64 * 3 / 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
            // A restarted leader must win an election again: the state machine lives in memory
            // and the committed pointer on disk may lag, so a leader restored at once could
            // serve a stale "linearizable" read (found by the simulation; see
            // crates/sim/tests/fuzz.rs).
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let (secret, created) = cluster_secret(&config)?;
        // What this node trusts when it talks to other members: the system's roots, the peer
        // CA and --ca-cert; what it presents: its peer certificate.
        let cas: Vec<&std::path::Path> = config
            .peer_ca()
            .into_iter()
            .chain(config.ca_cert.as_deref())
            .collect();
        let identity = config
            .peer_tls
            .as_ref()
            .map(|t| (t.files().cert.as_path(), t.files().key.as_path()));
        let tls = switchyard_tls::client_config(&cas, identity)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let peers = PeerClient::new(
            secret.clone(),
            crate::network::peer_body_limit(config.max_body_bytes),
            tls,
            config.peer_tls.is_some(),
        )
        .with_snapshot_chunk(config.snapshot_chunk_bytes);
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            PeerNetwork::new(peers.clone()),
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && config.join.is_some() {
            tracing::info!(
                node_id = config.node_id,
                join = ?config.join,
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
            let m = raft.metrics().borrow_watched().clone();
            if created && m.membership_config.nodes().count() > 1 {
                // A member of a cluster made before cluster secrets: a secret of its own would
                // lock it out of its peers.
                let _ = std::fs::remove_file(ClusterSecret::path(dir));
                let _ = raft.shutdown().await;
                return Err(StartError::Secret(format!(
                    "this node belongs to a cluster of {} members that has no cluster secret \
                     yet: make one with `switchyard cluster join-token --new` and start every \
                     member once with `--join-token TOKEN`",
                    m.membership_config.nodes().count()
                )));
            }
            // A restarted sole voter need not wait an election timeout to lead again.
            let voters: Vec<u64> = m.membership_config.voter_ids().collect();
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
            log,
            sm,
            peers,
            peer_auth: Verifier::new(secret),
            membership: tokio::sync::Mutex::new(()),
        })
    }

    /// Propose a command, wait until it is committed (fsynced on a quorum) and applied here,
    /// and return its reply and the revision (log index) it was applied at. On a follower the
    /// command is handed to the leader (unless `forward_writes` is off: then 503 naming the
    /// leader); the leader stamps its time on it.
    pub async fn write(
        &self,
        command: Command,
        idempotency_key: Option<String>,
    ) -> Result<(Reply, u64), ApiError> {
        let proposal = Proposal {
            time_ms: now_ms(),
            idempotency_key,
            idempotency_window_ms: self.config.idempotency_window.as_millis() as i64,
            command,
        };
        let started = std::time::Instant::now();
        let res = tokio::time::timeout(self.config.write_timeout, self.submit(proposal)).await;
        metrics::histogram!("switchyard_write_seconds").record(started.elapsed().as_secs_f64());
        let (outcome, index) = res.map_err(|_| self.write_timed_out())??;
        // Committed: the answer stands whatever happens next. Waiting for this node to apply it
        // (at once on the leader) only makes it visible to reads here.
        if !self.wait_applied(index).await {
            tracing::warn!(index, "a committed write is not applied here yet");
        }
        outcome.map(|r| (r, index)).map_err(Into::into)
    }

    fn write_timed_out(&self) -> ApiError {
        ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            format!(
                "the command was not committed within {:?}; it may still be applied: \
                 retry with the same Idempotency-Key to find out",
                self.config.write_timeout
            ),
        )
    }

    /// Get `proposal` committed by the leader, wherever it is: its outcome and log index.
    async fn submit(&self, proposal: Proposal) -> Result<(Outcome, u64), ApiError> {
        loop {
            match self.route() {
                Route::Local => match self.write_local(proposal.clone()).await {
                    Ok(written) => return Ok(written),
                    Err(Failure::Retry(_)) => self.await_writable().await,
                    Err(Failure::Failed(e)) => return Err(e),
                },
                Route::Remote { id, addr } => {
                    if !self.config.forward_writes {
                        return Err(not_leader(Some(id), Some(&addr)));
                    }
                    let req = LeaderRequest::Write(proposal.clone());
                    match self.hand_to_leader(&addr, &req).await {
                        Ok(LeaderReply::Written { outcome, index }) => return Ok((outcome, index)),
                        Ok(other) => {
                            return Err(ApiError::internal(format!(
                                "the leader answered a write with {other:?}"
                            )));
                        }
                        Err(Failure::Retry(_)) => self.await_leader_change(Some(id)).await,
                        Err(Failure::Failed(e)) => return Err(e),
                    }
                }
                Route::Unknown => self.await_leader_change(None).await,
            }
        }
    }

    /// Propose on this node (the leader, as far as it knows). `Retry` when it is not.
    async fn write_local(&self, proposal: Proposal) -> Result<(Outcome, u64), Failure> {
        match self.raft.client_write(proposal).await {
            Ok(resp) => match resp.data {
                Some(outcome) => Ok((outcome, resp.log_id.index())),
                None => Err(Failure::Failed(ApiError::internal(
                    "a command entry answered without an outcome",
                ))),
            },
            // Proposed, then dropped from this node's log (truncated or superseded by a
            // snapshot): another node may have committed it, so the outcome is unknown.
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(Failure::Failed(ApiError::new(
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "leadership changed while the command was being committed; it may still be \
                     applied: retry with the same Idempotency-Key to find out",
                )))
            }
            Err(e) if e.forward_to_leader().is_some() => Err(Failure::Retry(self.raft_error(&e))),
            Err(e) => Err(Failure::Failed(self.raft_error(&e))),
        }
    }

    /// Carry out a request handed over by another node (this node should be the leader).
    pub async fn serve_leader_request(
        &self,
        req: LeaderRequest,
    ) -> Result<LeaderReply, LeaderError> {
        let not_leader_err = |e: ApiError| LeaderError::from_api(e, true);
        match self.route() {
            Route::Local => {}
            Route::Remote { id, addr } => {
                return Err(not_leader_err(not_leader(Some(id), Some(&addr))));
            }
            Route::Unknown => return Err(not_leader_err(not_leader(None, None))),
        }
        match req {
            LeaderRequest::Write(mut proposal) => {
                proposal.time_ms = now_ms();
                let res =
                    tokio::time::timeout(self.config.write_timeout, self.write_local(proposal))
                        .await
                        .unwrap_or_else(|_| Err(Failure::Failed(self.write_timed_out())));
                match res {
                    Ok((outcome, index)) => Ok(LeaderReply::Written { outcome, index }),
                    Err(Failure::Retry(e)) => Err(not_leader_err(e)),
                    Err(Failure::Failed(e)) => Err(LeaderError::from_api(e, false)),
                }
            }
            LeaderRequest::ReadIndex => {
                match self.raft.get_read_log_id(ReadPolicy::ReadIndex).await {
                    Ok((read, _)) => Ok(LeaderReply::ReadIndex {
                        index: read.index(),
                    }),
                    Err(e) => Err(LeaderError::from_api(
                        self.raft_error(&e),
                        e.forward_to_leader().is_some(),
                    )),
                }
            }
            LeaderRequest::AddMember { node_id, addr } => self
                .add_member_local(node_id, addr)
                .await
                .map(|_| LeaderReply::Done)
                .map_err(|e| LeaderError::from_api(e, false)),
            LeaderRequest::RemoveMember { node_id } => self
                .remove_member_local(node_id)
                .await
                .map(|_| LeaderReply::Done)
                .map_err(|e| LeaderError::from_api(e, false)),
            LeaderRequest::TransferLeader { node_id } => self
                .transfer_leader_local(node_id)
                .await
                .map(|_| LeaderReply::Done)
                .map_err(|e| LeaderError::from_api(e, false)),
        }
    }

    /// Where leader-only requests go, from this node's current view.
    fn route(&self) -> Route {
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
                None => Route::Unknown,
            },
            _ => Route::Unknown,
        }
    }

    /// This node leads but refused to propose: it is stepping down, or it was just elected and
    /// no quorum has acknowledged it yet (its lease is not yet valid). Either clears within a
    /// heartbeat or so; look again shortly.
    async fn await_writable(&self) {
        let me = self.id;
        let _ = self
            .raft
            .wait(Some(std::time::Duration::from_millis(10)))
            .metrics(|m| m.current_leader != Some(me), "leadership moves")
            .await;
    }

    /// Wait (briefly) until this node's idea of the leader is no longer `old`.
    async fn await_leader_change(&self, old: Option<u64>) {
        let _ = self
            .raft
            .wait(Some(std::time::Duration::from_millis(200)))
            .metrics(
                |m| {
                    m.current_leader != old
                        && (m.current_leader != Some(self.id) || m.state == ServerState::Leader)
                },
                "the leader changes",
            )
            .await;
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

    /// Send a request to the leader's peer listener.
    async fn hand_to_leader(
        &self,
        leader: &NodeAddr,
        req: &LeaderRequest,
    ) -> Result<LeaderReply, Failure> {
        let url = format!("{}/raft/leader", leader.peer);
        let body = serde_json::to_vec(req).expect("a leader request serialises");
        let sent = self
            .peers
            .post(&leader.peer, "/raft/leader", body, true)
            .timeout(self.config.write_timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(Failure::Retry(ApiError::unavailable(
                    format!("cannot reach the leader at {}: {e}", leader.peer),
                    None,
                )));
            }
            Err(e) => {
                return Err(Failure::Failed(ApiError::new(
                    axum::http::StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!(
                        "the leader at {} did not answer ({e}); the command may still be \
                         applied: retry with the same Idempotency-Key to find out",
                        leader.peer
                    ),
                )));
            }
        };
        let status = resp.status();
        match resp.json::<Result<LeaderReply, LeaderError>>().await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) if e.not_leader => Err(Failure::Retry(e.into_api())),
            Ok(Err(e)) => Err(Failure::Failed(e.into_api())),
            Err(e) => Err(Failure::Failed(ApiError::internal(format!(
                "bad answer from the leader at {url} (HTTP {status}): {e}"
            )))),
        }
    }

    /// Hand a leader-only request to the leader wherever it is, following leader changes,
    /// until it is done or `write_timeout` has passed.
    async fn via_leader(&self, req: LeaderRequest) -> Result<LeaderReply, ApiError> {
        let work = async {
            loop {
                match self.route() {
                    Route::Local => match self.serve_leader_request(req.clone()).await {
                        Ok(r) => return Ok(r),
                        Err(e) if e.not_leader => self.await_writable().await,
                        Err(e) => return Err(e.into_api()),
                    },
                    Route::Remote { id, addr } => match self.hand_to_leader(&addr, &req).await {
                        Ok(r) => return Ok(r),
                        Err(Failure::Retry(_)) => self.await_leader_change(Some(id)).await,
                        Err(Failure::Failed(e)) => return Err(e),
                    },
                    Route::Unknown => self.await_leader_change(None).await,
                }
            }
        };
        tokio::time::timeout(self.config.write_timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::unavailable(
                    format!("no leader answered within {:?}", self.config.write_timeout),
                    None,
                ))
            })
    }

    /// Add a node to the cluster: as a learner (waiting until it has caught up), then as a
    /// voter. Adding a node that is already a voter at the same addresses changes nothing.
    pub async fn add_member(&self, id: u64, addr: NodeAddr) -> Result<(), ApiError> {
        self.via_leader(LeaderRequest::AddMember { node_id: id, addr })
            .await?;
        // Read your write, as for a removal.
        self.raft
            .wait(Some(self.config.write_timeout))
            .metrics(
                |m| m.membership_config.nodes().any(|(n, _)| *n == id),
                "the addition is known here",
            )
            .await
            .map_err(|e| {
                ApiError::unavailable(
                    format!("node {id} was added, but this node has not seen it yet: {e}"),
                    None,
                )
            })?;
        Ok(())
    }

    /// Remove a member (voter or learner) from the cluster. Removing a node that is not a
    /// member changes nothing.
    pub async fn remove_member(&self, id: u64) -> Result<(), ApiError> {
        self.via_leader(LeaderRequest::RemoveMember { node_id: id })
            .await?;
        // Read your write: this node (perhaps a follower) answers with the membership, so it
        // waits until it has seen the change the leader committed.
        self.raft
            .wait(Some(self.config.write_timeout))
            .metrics(
                |m| !m.membership_config.nodes().any(|(n, _)| *n == id),
                "the removal is known here",
            )
            .await
            .map_err(|e| {
                ApiError::unavailable(
                    format!("node {id} was removed, but this node has not seen it yet: {e}"),
                    None,
                )
            })?;
        Ok(())
    }

    /// Ask the leader to hand leadership to voter `id`, and wait until `id` leads.
    pub async fn transfer_leader(&self, id: u64) -> Result<(), ApiError> {
        self.via_leader(LeaderRequest::TransferLeader { node_id: id })
            .await?;
        self.raft
            .wait(Some(self.config.write_timeout))
            .metrics(|m| m.current_leader == Some(id), "the new leader is known")
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("leadership did not move to {id}: {e}"), None)
            })?;
        Ok(())
    }

    async fn remove_member_local(&self, id: u64) -> Result<(), ApiError> {
        let _one_at_a_time = self.membership_turn().await?;
        let (member, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let member = m.membership_config.nodes().any(|(n, _)| *n == id);
            let voters: Vec<u64> = m.membership_config.voter_ids().collect();
            (member, voters)
        };
        if !member {
            return Ok(());
        }
        if voters == [id] {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!("node {id} is the only voter; a cluster cannot remove its last voter"),
            ));
        }
        tracing::info!(node_id = id, "removing a member");
        let ids = std::collections::BTreeSet::from([id]);
        let change = if voters.contains(&id) {
            openraft::ChangeMembers::RemoveVoters(ids)
        } else {
            openraft::ChangeMembers::RemoveNodes(ids)
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.membership_error(&e))?;
        tracing::info!(node_id = id, "member removed");
        Ok(())
    }

    async fn transfer_leader_local(&self, id: u64) -> Result<(), ApiError> {
        let voter = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .voter_ids()
            .any(|v| v == id);
        if !voter {
            return Err(ApiError::invalid(
                "node_id",
                format!("node {id} is not a voter of this cluster"),
            ));
        }
        if id == self.id {
            return Ok(());
        }
        tracing::info!(to = id, "transferring leadership");
        self.raft
            .trigger()
            .transfer_leader(id)
            .await
            .map_err(|e| ApiError::unavailable(format!("raft has stopped on this node: {e}"), None))
    }

    async fn add_member_local(&self, id: u64, addr: NodeAddr) -> Result<(), ApiError> {
        let known = || {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let voter = m.membership_config.voter_ids().any(|v| v == id);
            let same = m
                .membership_config
                .nodes()
                .any(|(n, a)| *n == id && *a == addr);
            voter && same
        };
        if known() {
            return Ok(());
        }
        // Asked before queueing, so a slow node does not hold up other changes.
        self.refuse_foreign_member(id, &addr).await?;
        let _one_at_a_time = self.membership_turn().await?;
        if known() {
            return Ok(());
        }
        tracing::info!(node_id = id, api = %addr.api, peer = %addr.peer, "adding a member");
        // The learner catches up first; a node that cannot be reached does not keep the turn
        // (its join asks again, and the learner keeps catching up meanwhile).
        let wait = self.config.write_timeout;
        match tokio::time::timeout(wait, self.raft.add_learner(id, addr, true)).await {
            Ok(r) => r.map_err(|e| self.membership_error(&e))?,
            Err(_) => {
                return Err(ApiError::unavailable(
                    format!("node {id} is a learner still catching up after {wait:?}; ask again"),
                    None,
                ));
            }
        };
        let voters = std::collections::BTreeSet::from([id]);
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(voters), true)
            .await
            .map_err(|e| self.membership_error(&e))?;
        tracing::info!(node_id = id, "member added as a voter");
        Ok(())
    }

    /// This node's turn to change the membership: one change at a time, waiting at most the
    /// write timeout for the one under way.
    async fn membership_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ApiError> {
        tokio::time::timeout(self.config.write_timeout, self.membership.lock())
            .await
            .map_err(|_| {
                ApiError::unavailable(
                    "another membership change is under way; retry shortly",
                    None,
                )
            })
    }

    /// Refuse to add a node that already holds another cluster's history (it was started
    /// without `--join` on its data directory): Raft cannot merge two histories. A node that
    /// cannot be asked (down, auth) is not refused here; it waits to be added as before.
    async fn refuse_foreign_member(&self, id: u64, addr: &NodeAddr) -> Result<(), ApiError> {
        let url = format!("{}://{}/v1/status", self.config.api_scheme(), addr.api);
        let status = match self
            .peers
            .get(&url)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json::<Status>().await.ok(),
            _ => None,
        };
        let Some(status) = status else { return Ok(()) };
        if status.format != switchyard_store::FORMAT {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                format!(
                    "node {id} at {} runs data format {}; this cluster runs format {}: every \
                     member must run the same format",
                    addr.api,
                    status.format,
                    switchyard_store::FORMAT
                ),
            ));
        }
        let me = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .nodes()
            .find(|(n, _)| **n == self.id)
            .map(|(_, a)| a.clone());
        // It knows this node at this node's peer address: it is (joining) this cluster.
        let ours = me.is_some_and(|a| {
            status
                .members
                .iter()
                .any(|m| m.node_id == self.id && m.peer == a.peer)
        });
        if status.members.is_empty() || ours {
            return Ok(());
        }
        Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "conflict",
            format!(
                "node {id} at {} already belongs to another cluster (its data directory holds \
                 its own history); stop it, empty its data directory, and start it with \
                 --join pointing at this cluster",
                addr.api
            ),
        ))
    }

    /// Wait until local state reflects every write committed before this call (read index).
    /// On a follower the read index comes from the leader and this node waits until it has
    /// applied that far.
    pub async fn linearizable(&self) -> Result<(), ApiError> {
        if matches!(self.route(), Route::Local) {
            match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => return Ok(()),
                Err(e) if e.forward_to_leader().is_none() => return Err(self.raft_error(&e)),
                Err(_) => {}
            }
        }
        match self.via_leader(LeaderRequest::ReadIndex).await? {
            LeaderReply::ReadIndex { index } if self.wait_applied(index).await => Ok(()),
            LeaderReply::ReadIndex { index } => Err(ApiError::unavailable(
                format!(
                    "this node did not catch up to the leader's read index {index} within {:?}; \
                     retry, read from another node, or pass ?consistency=stale",
                    self.config.write_timeout
                ),
                None,
            )),
            other => Err(ApiError::internal(format!(
                "the leader answered a read index request with {other:?}"
            ))),
        }
    }

    /// A membership change Raft refused or lost: another change under way (one a previous
    /// leader started, as this node queues its own) is worth a retry, not a server error.
    fn membership_error(
        &self,
        e: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
    ) -> ApiError {
        if let RaftError::APIError(ClientWriteError::ChangeMembershipError(
            openraft::errors::ChangeMembershipError::InProgress(p),
        )) = e
        {
            return ApiError::unavailable(
                format!("another membership change is under way; retry shortly ({p})"),
                None,
            );
        }
        self.raft_error(e)
    }

    fn raft_error<E>(&self, e: &RaftError<TypeConfig, E>) -> ApiError
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
                ApiError::unavailable(format!("raft has stopped on this node: {f}"), None)
            }
            other => ApiError::internal(other),
        }
    }

    /// The join token of this node's cluster (what `switchyard cluster join-token` prints).
    pub fn join_token(&self) -> &str {
        self.peer_auth.secret().token()
    }

    /// The client that signs requests to other members.
    pub fn peer_client(&self) -> &PeerClient {
        &self.peers
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

    /// Stop Raft and close both stores, so the data directory can be opened again.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.log.close();
        self.sm.close();
    }
}

/// 503: this node is not the leader; names the leader when known.
fn not_leader(id: Option<u64>, addr: Option<&NodeAddr>) -> ApiError {
    let leader = id.map(|id| json!({"node_id": id, "api": addr.map(|a| a.api.clone())}));
    ApiError::unavailable(
        "this node is not the leader; send the request to the leader",
        leader,
    )
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
        })
        .collect()
}

impl Node {
    /// Wait until this node knows a leader (itself or another), up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: std::time::Duration) -> Result<u64, ApiError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|e| {
                ApiError::unavailable(format!("no leader within {timeout:?}: {e}"), None)
            })?;
        Ok(m.current_leader.unwrap_or_default())
    }
}
