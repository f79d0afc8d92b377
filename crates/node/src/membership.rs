//! Membership changes. Any node may be asked; the leader carries them out one at a time (Raft
//! refuses a change while another is under way, so concurrent requests queue on the leader).

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use switchyard_core::CommandError;
use switchyard_store::{NodeAddr, TypeConfig};

use crate::error::NodeError;
use crate::node::{Node, raft_error};
use crate::transport::LeaderRequest;

impl Node {
    /// Add a node to the cluster: as a learner (waiting until it has caught up), then as a
    /// voter. Adding a node that is already a voter at the same addresses changes nothing.
    pub async fn add_member(&self, id: u64, addr: NodeAddr) -> Result<(), NodeError> {
        self.via_leader(LeaderRequest::AddMember { node_id: id, addr })
            .await?;
        self.await_membership(id, true).await
    }

    /// Remove a member (voter or learner) from the cluster. Removing a node that is not a
    /// member changes nothing.
    pub async fn remove_member(&self, id: u64) -> Result<(), NodeError> {
        self.via_leader(LeaderRequest::RemoveMember { node_id: id })
            .await?;
        self.await_membership(id, false).await
    }

    /// Read your write: this node (perhaps a follower) answers with the membership, so it
    /// waits until it has seen the change the leader committed (`id` a member or not).
    async fn await_membership(&self, id: u64, member: bool) -> Result<(), NodeError> {
        let (done, change) = if member {
            ("the addition is known here", "added")
        } else {
            ("the removal is known here", "removed")
        };
        self.raft
            .wait(Some(self.config.write_timeout))
            .metrics(
                |m| m.membership_config.nodes().any(|(n, _)| *n == id) == member,
                done,
            )
            .await
            .map_err(|e| {
                NodeError::unavailable(format!(
                    "node {id} was {change}, but this node has not seen it yet: {e}"
                ))
            })?;
        Ok(())
    }

    /// Ask the leader to hand leadership to voter `id`, and wait until `id` leads.
    pub async fn transfer_leader(&self, id: u64) -> Result<(), NodeError> {
        self.via_leader(LeaderRequest::TransferLeader { node_id: id })
            .await?;
        self.raft
            .wait(Some(self.config.write_timeout))
            .metrics(|m| m.current_leader == Some(id), "the new leader is known")
            .await
            .map_err(|e| NodeError::unavailable(format!("leadership did not move to {id}: {e}")))?;
        Ok(())
    }

    pub(crate) async fn remove_member_local(&self, id: u64) -> Result<(), NodeError> {
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
            return Err(CommandError::Conflict {
                message: format!(
                    "node {id} is the only voter; a cluster cannot remove its last voter"
                ),
            }
            .into());
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
            .map_err(|e| membership_error(&e))?;
        tracing::info!(node_id = id, "member removed");
        Ok(())
    }

    pub(crate) async fn transfer_leader_local(&self, id: u64) -> Result<(), NodeError> {
        let voter = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .voter_ids()
            .any(|v| v == id);
        if !voter {
            return Err(CommandError::Conflict {
                message: format!("node {id} is not a voter of this cluster"),
            }
            .into());
        }
        if id == self.id {
            return Ok(());
        }
        tracing::info!(to = id, "transferring leadership");
        self.raft
            .trigger()
            .transfer_leader(id)
            .await
            .map_err(|e| NodeError::unavailable(format!("raft has stopped on this node: {e}")))
    }

    pub(crate) async fn add_member_local(&self, id: u64, addr: NodeAddr) -> Result<(), NodeError> {
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
        // The learner catches up first; a slow node does not keep the turn (its join asks
        // again, and the learner keeps catching up meanwhile), and one that never answered is
        // taken out again, so a wrong address does not linger as a learner. Half the write
        // timeout, so that this answer (and a removal) comes before the caller's own timeout.
        let wait = self.config.write_timeout / 2;
        let deadline = tokio::time::Instant::now() + wait;
        let probe = addr.clone();
        let added = tokio::time::timeout(wait, self.raft.add_learner(id, addr, true)).await;
        if let Ok(r) = added {
            r.map_err(|e| membership_error(&e))?;
        }
        // openraft's blocking add may return before the learner holds anything: promoting it
        // then would leave a joint configuration that cannot commit without it. Wait for it to
        // hold this leader's log as it is now.
        let target = self.raft.metrics().borrow_watched().last_log_index;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let caught_up = self
            .raft
            .wait(Some(left))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map(|l| l.index());
                    matched >= target
                },
                "the learner holds the leader's log",
            )
            .await
            .is_ok();
        if !caught_up {
            if self.never_replicated_to(id) && self.transport.status(id, &probe).await.is_none() {
                let gone = std::collections::BTreeSet::from([id]);
                let removed = self
                    .raft
                    .change_membership(openraft::ChangeMembers::RemoveNodes(gone), false)
                    .await;
                match removed {
                    // Committed and applied; wait (briefly) until the metrics, where the
                    // cluster's members are read, show it, so that a read after this answer
                    // does not list the learner.
                    Ok(_) => {
                        let _ = self
                            .raft
                            .wait(Some(std::time::Duration::from_secs(1)))
                            .metrics(
                                |m| m.membership_config.membership().get_node(&id).is_none(),
                                "the learner is out of the membership",
                            )
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(node_id = id, error = %e, "could not take an unreachable learner out");
                    }
                }
                return Err(NodeError::unavailable(format!(
                    "node {id} at {} did not answer within {wait:?}; it was not added (is it \
                     running, and is its peer address right?)",
                    probe.api
                )));
            }
            return Err(NodeError::unavailable(format!(
                "node {id} is a learner still catching up after {wait:?}; ask again"
            )));
        }
        let voters = std::collections::BTreeSet::from([id]);
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(voters), true)
            .await
            .map_err(|e| membership_error(&e))?;
        tracing::info!(node_id = id, "member added as a voter");
        Ok(())
    }

    /// This leader has not had one append accepted by node `id`.
    fn never_replicated_to(&self, id: u64) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.replication
            .as_ref()
            .is_none_or(|r| r.get(&id).is_none_or(|matched| matched.is_none()))
    }

    /// This node's turn to change the membership: one change at a time, waiting at most the
    /// write timeout for the one under way.
    async fn membership_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, NodeError> {
        tokio::time::timeout(self.config.write_timeout, self.membership.lock())
            .await
            .map_err(|_| {
                NodeError::unavailable("another membership change is under way; retry shortly")
            })
    }

    /// Refuse to add a node that already holds another cluster's history (it was started
    /// without `--join` on its data directory): Raft cannot merge two histories. A node that
    /// cannot be asked (down, auth) is not refused here; it waits to be added as before.
    async fn refuse_foreign_member(&self, id: u64, addr: &NodeAddr) -> Result<(), NodeError> {
        let Some(status) = self.transport.status(id, addr).await else {
            return Ok(());
        };
        if status.format != switchyard_store::FORMAT {
            return Err(CommandError::Conflict {
                message: format!(
                    "node {id} at {} runs data format {}; this cluster runs format {}: every \
                     member must run the same format",
                    addr.api,
                    status.format,
                    switchyard_store::FORMAT
                ),
            }
            .into());
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
        Err(CommandError::Conflict {
            message: format!(
                "node {id} at {} already belongs to another cluster (its data directory holds \
                 its own history); stop it, empty its data directory, and start it with \
                 --join pointing at this cluster",
                addr.api
            ),
        }
        .into())
    }
}

/// A membership change Raft refused or lost: another change under way (one a previous leader
/// started, as this node queues its own) is worth a retry, not a server error.
fn membership_error(e: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> NodeError {
    if let RaftError::APIError(ClientWriteError::ChangeMembershipError(
        openraft::errors::ChangeMembershipError::InProgress(p),
    )) = e
    {
        return NodeError::unavailable(format!(
            "another membership change is under way; retry shortly ({p})"
        ));
    }
    raft_error(e)
}
