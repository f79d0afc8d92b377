//! Inspection of any node (role, term, vote, log with indexes and terms, commit index, applied
//! state, event history), and what-if changes: edit a node's applied state, truncate or extend
//! its log. What-if changes bypass Raft on purpose, to explore what would happen if a node held
//! something it should not; every one of them is named `what_if_*` and goes into the trace.

use openraft::ServerState;
use openraft::alias::{EntryOf, LogIdOf};
use openraft::entry::RaftEntry;
use switchyard_store::{ReadAfter, TypeConfig};

use super::SimCluster;
use crate::net::LogPos;

type C = TypeConfig;

/// Whom a node voted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voted {
    pub term: u64,
    pub node: u64,
    /// The vote was granted by a quorum: `node` leads `term`.
    pub committed: bool,
}

/// What a node is now (while it is down: what its disk and its last incarnation held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: u64,
    pub up: bool,
    pub paused: bool,
    /// How many times it booted (one more after each crash and restart).
    pub incarnation: u64,
    /// Leader, follower, candidate or learner (`None` while it is down).
    pub role: Option<ServerState>,
    pub term: u64,
    pub vote: Option<Voted>,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// The last entry of its log.
    pub last_log: Option<LogPos>,
    /// The highest index it knows committed.
    pub committed: Option<u64>,
    /// The highest index its state machine applied.
    pub applied: Option<u64>,
}

/// One entry of a node's log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub pos: LogPos,
    /// It is on the node's disk (survives a crash); otherwise it waits for the fsync.
    pub durable: bool,
    /// The entry as openraft holds it (its payload: blank, membership, or a proposal).
    pub entry: EntryOf<C>,
}

impl LogEntry {
    /// The entry's command, if it carries one.
    pub fn command(&self) -> Option<&switchyard_core::Command> {
        match &self.entry.payload {
            openraft::EntryPayload::Normal(p) => Some(&p.command),
            _ => None,
        }
    }
}

/// One event of a node's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub revision: u64,
    /// What it is about (`devices/sw1`, `bank/alice`, ...).
    pub topic: String,
    /// Its kind (`transition_started`, `state_changed`, ...).
    pub kind: String,
    /// The watch message as a watcher receives it.
    pub message: serde_json::Value,
}

/// Why a what-if change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhatIfError {
    #[error("node {0} does not exist")]
    NoSuchNode(u64),
    #[error("node {0} is up: crash it first (its log is changed on its disk, then restarted)")]
    NodeUp(u64),
    #[error("node {0} is down: restart it first")]
    NodeDown(u64),
    #[error("index {index} does not follow node {node}'s last entry {last}")]
    Gap { node: u64, index: u64, last: u64 },
}

fn vote(v: &openraft::alias::VoteOf<C>) -> Voted {
    Voted {
        term: v.leader_id().term,
        node: v.leader_id().node_id,
        committed: v.is_committed(),
    }
}

impl SimCluster {
    /// What node `id` is now.
    pub fn inspect(&self, id: u64) -> NodeInfo {
        let up = self.is_up(id);
        let paused = self.is_paused(id);
        let incarnation = self.incarnation(id);
        if let Some(m) = self.raft_metrics(id) {
            return NodeInfo {
                id,
                up,
                paused,
                incarnation,
                role: Some(m.state),
                term: m.current_term,
                vote: Some(vote(&m.vote)),
                leader: m.current_leader,
                last_log: self.nodes.borrow()[&id].log.last().map(|l| LogPos::of(&l)),
                committed: m.local_committed.map(|l| l.index()),
                applied: m.last_applied.map(|l| l.index()),
            };
        }
        let nodes = self.nodes.borrow();
        let n = &nodes[&id];
        let disk = n.disk.lock().unwrap();
        let last = disk
            .log
            .values()
            .next_back()
            .map(|e| LogPos::of(&e.log_id()));
        NodeInfo {
            id,
            up,
            paused,
            incarnation,
            role: None,
            term: disk.vote.map_or(0, |v| v.leader_id().term),
            vote: disk.vote.as_ref().map(vote),
            leader: None,
            last_log: last,
            committed: disk.committed.map(|l| l.index()),
            applied: Some(n.view.revision()).filter(|r| *r > 0),
        }
    }

    /// Node `id`'s log, entry by entry (while it is down: what its disk holds).
    pub fn log(&self, id: u64) -> Vec<LogEntry> {
        let nodes = self.nodes.borrow();
        let n = &nodes[&id];
        let disk = n.disk.lock().unwrap();
        let durable = |e: &EntryOf<C>| {
            disk.log
                .get(&e.index())
                .is_some_and(|d| d.log_id() == e.log_id())
        };
        let entries: Vec<EntryOf<C>> = if n.node.is_some() {
            n.log.entries()
        } else {
            disk.log.values().cloned().collect()
        };
        entries
            .into_iter()
            .map(|e| LogEntry {
                pos: LogPos::of(&e.log_id()),
                durable: durable(&e),
                entry: e,
            })
            .collect()
    }

    /// The log ids node `id`'s log holds now, by index.
    pub fn log_ids(&self, id: u64) -> std::collections::BTreeMap<u64, String> {
        self.log(id)
            .into_iter()
            .map(|e| (e.pos.index, e.entry.log_id().to_string()))
            .collect()
    }

    /// Node `id`'s event history after revision `after` (the whole retained history for 0),
    /// as a watch of that node would see it; `Err` with the oldest revision it still holds if
    /// `after` is older.
    pub fn history(&self, id: u64, after: u64) -> Result<Vec<HistoryEvent>, u64> {
        match self.view(id).read_events(after, "", usize::MAX) {
            ReadAfter::Events { events, .. } => Ok(events
                .into_iter()
                .map(|e| {
                    let message: serde_json::Value =
                        serde_json::from_str(&e.message).unwrap_or_default();
                    HistoryEvent {
                        revision: e.revision,
                        kind: message["event"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        topic: e.topic,
                        message,
                    }
                })
                .collect()),
            ReadAfter::Compacted { compact_revision } => Err(compact_revision),
        }
    }

    /// What-if: change node `id`'s applied state outside the log. Nothing replicates the change
    /// and no event records it; the node's state no longer follows from its log.
    pub fn what_if_state(
        &self,
        id: u64,
        f: impl FnOnce(&mut switchyard_core::State),
    ) -> Result<(), WhatIfError> {
        let nodes = self.nodes.borrow();
        let n = nodes.get(&id).ok_or(WhatIfError::NoSuchNode(id))?;
        if n.node.is_none() {
            return Err(WhatIfError::NodeDown(id));
        }
        n.sm.modify_state_outside_the_log(f);
        self.trace.add(format!("what-if {id}: state changed"));
        Ok(())
    }

    /// What-if: drop the entries of crashed node `id`'s disk from `index` on (its committed
    /// pointer moves back with them). Restart it to see what follows.
    pub fn what_if_truncate_log(&self, id: u64, index: u64) -> Result<(), WhatIfError> {
        let disk = self.down_disk(id)?;
        let mut d = disk.lock().unwrap();
        d.log.split_off(&index);
        let last = d.log.values().next_back().map(|e| e.log_id());
        if d.committed.is_some_and(|c| c.index() >= index) {
            d.committed = last;
        }
        drop(d);
        self.trace
            .add(format!("what-if {id}: log truncated from {index}"));
        Ok(())
    }

    /// What-if: append a command to crashed node `id`'s disk as if the leader of `term` (node
    /// `leader`) had sent it, at the index after its last entry. Restart it to see what follows.
    pub fn what_if_append_log(
        &self,
        id: u64,
        term: u64,
        leader: u64,
        command: switchyard_core::Command,
    ) -> Result<u64, WhatIfError> {
        let disk = self.down_disk(id)?;
        let mut d = disk.lock().unwrap();
        let last = d
            .log
            .keys()
            .next_back()
            .copied()
            .or(d.last_purged.map(|l| l.index()))
            .unwrap_or(0);
        let index = last + 1;
        let log_id = LogIdOf::<C>::new(
            openraft::impls::leader_id_adv::LeaderId {
                term,
                node_id: leader,
            },
            index,
        );
        let proposal = switchyard_core::Proposal {
            time_ms: self.clock.now_ms(),
            idempotency_key: None,
            idempotency_window_ms: 0,
            command,
        };
        d.log
            .insert(index, EntryOf::<C>::new_normal(log_id, proposal));
        drop(d);
        self.trace
            .add(format!("what-if {id}: appended {index} in term {term}"));
        Ok(index)
    }

    fn down_disk(&self, id: u64) -> Result<crate::log::SharedDisk, WhatIfError> {
        let nodes = self.nodes.borrow();
        let n = nodes.get(&id).ok_or(WhatIfError::NoSuchNode(id))?;
        if n.node.is_some() {
            return Err(WhatIfError::NodeUp(id));
        }
        Ok(n.disk.clone())
    }
}
