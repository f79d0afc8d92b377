//! One switchyard node: its Raft instance, its storage and the facade the API layer uses
//! (write a command, make a read linearizable, report status).

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::RaftError;
use openraft::raft::ReadPolicy;
use serde_json::json;
use switchyard_core::{Command, Proposal, Reply};
use switchyard_store::{LogStore, NodeAddr, Raft, StateMachine, StateView, TypeConfig};
use switchyard_types::{Member, Status};

use crate::config::Config;
use crate::error::ApiError;
use crate::network::PeerNetwork;

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
            heartbeat_interval: 150,
            election_timeout_min: 1000,
            election_timeout_max: 2000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_logs),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            PeerNetwork::new(),
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
            // A restarted sole voter need not wait an election timeout to lead again.
            let m = raft.metrics().borrow_watched().clone();
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
        })
    }

    /// Propose a command stamped with this node's time, wait until it is committed (fsynced)
    /// and applied, and return its reply and the revision (log index) it was applied at.
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
        let res =
            tokio::time::timeout(self.config.write_timeout, self.raft.client_write(proposal)).await;
        metrics::histogram!("switchyard_write_seconds").record(started.elapsed().as_secs_f64());
        match res {
            Err(_) => Err(ApiError::new(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "the command was not committed within {:?}; it may still be applied: \
                     retry with the same Idempotency-Key to find out",
                    self.config.write_timeout
                ),
            )),
            Ok(Ok(resp)) => match resp.data {
                Some(Ok(reply)) => Ok((reply, resp.log_id.index())),
                Some(Err(refused)) => Err(refused.into()),
                None => Err(ApiError::internal(
                    "a command entry answered without an outcome",
                )),
            },
            Ok(Err(e)) => Err(self.raft_error(&e)),
        }
    }

    /// Add a node to the cluster: as a learner (waiting until it has caught up), then as a
    /// voter. Adding a node that is already a voter at the same addresses changes nothing.
    pub async fn add_member(&self, id: u64, addr: NodeAddr) -> Result<(), ApiError> {
        let known = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            let voter = m.membership_config.voter_ids().any(|v| v == id);
            let same = m
                .membership_config
                .nodes()
                .any(|(n, a)| *n == id && *a == addr);
            voter && same
        };
        if known {
            return Ok(());
        }
        tracing::info!(node_id = id, api = %addr.api, peer = %addr.peer, "adding a member");
        self.raft
            .add_learner(id, addr, true)
            .await
            .map_err(|e| self.raft_error(&e))?;
        let voters = std::collections::BTreeSet::from([id]);
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(voters), true)
            .await
            .map_err(|e| self.raft_error(&e))?;
        tracing::info!(node_id = id, "member added as a voter");
        Ok(())
    }

    /// Wait until local state reflects every write committed before this call (read index).
    pub async fn linearizable(&self) -> Result<(), ApiError> {
        self.raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map(|_| ())
            .map_err(|e| self.raft_error(&e))
    }

    fn raft_error<E>(&self, e: &RaftError<TypeConfig, E>) -> ApiError
    where
        E: std::fmt::Display
            + std::fmt::Debug
            + openraft::TryAsRef<openraft::errors::ForwardToLeader<TypeConfig>>,
    {
        if let Some(f) = e.forward_to_leader() {
            let leader = f.leader_id.map(
                |id| json!({"node_id": id, "api": f.leader_node.as_ref().map(|n| n.api.clone())}),
            );
            return ApiError::unavailable(
                "this node is not the leader; send the request to the leader",
                leader,
            );
        }
        match e {
            RaftError::Fatal(f) => {
                ApiError::unavailable(format!("raft has stopped on this node: {f}"), None)
            }
            other => ApiError::internal(other),
        }
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
