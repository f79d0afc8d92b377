//! Raft-level invariants, checked after every step of a run (as openraft's own turmoil tests
//! check them), beside the fuzzer's application oracles. Leaders are named as openraft names
//! them: by leader id, the pair (term, node id), ordered by term and then node. Two nodes may
//! lead one after the other in one term (a node that voted for N3 in term 5 may vote again for
//! N7 in term 5, never back for N3); no two lead under one leader id.
//!
//! - election safety: a leader leads under its own vote, granted by a quorum (committed);
//! - a node's vote never goes back, across restarts too (the vote is durable);
//! - a node's committed index never goes back while it runs;
//! - state machine safety: every node applies the same entry at a given index (so the log
//!   matches on everything committed, and nothing committed is replaced);
//! - leader completeness: a leader's log holds every entry applied anywhere that an earlier
//!   leader (a lower leader id) wrote.

use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;

use switchyard_testing::cluster::SimCluster;

#[derive(Default)]
pub struct RaftChecks {
    /// The highest vote seen per node, as a leader id (term, node voted for).
    votes: BTreeMap<u64, (u64, u64)>,
    /// The committed index seen per node and incarnation.
    committed: BTreeMap<u64, (u64, u64)>,
    /// What was applied at each index: by which node, the leader id that wrote it, and the
    /// entry's log id and answer.
    entries: BTreeMap<u64, Entry>,
    /// Leaders whose log was checked against `entries`, by leader id (term, node).
    complete: BTreeSet<(u64, u64)>,
}

struct Entry {
    node: u64,
    leader: (u64, u64),
    entry: String,
}

impl RaftChecks {
    /// Check the cluster as it is now; every violation found, as a sentence.
    pub fn check(&mut self, sim: &SimCluster) -> Vec<String> {
        let mut found = Vec::new();
        for a in std::mem::take(&mut *sim.applies.lock().unwrap()) {
            match self.entries.get(&a.index) {
                None => {
                    let entry = Entry {
                        node: a.node,
                        leader: a.leader,
                        entry: a.entry,
                    };
                    self.entries.insert(a.index, entry);
                }
                Some(e) if e.entry != a.entry => found.push(format!(
                    "state machine safety: node {} applied {} at index {}, node {} applied {}",
                    a.node, a.entry, a.index, e.node, e.entry
                )),
                Some(_) => {}
            }
        }
        for id in sim.ids() {
            let Some(m) = sim.raft_metrics(id) else {
                continue;
            };
            let vote = (m.vote.leader_id.term, m.vote.leader_id.node_id);
            let seen = self.votes.entry(id).or_default();
            if vote < *seen {
                found.push(format!(
                    "node {id}: its vote went back from T{}-N{} to T{}-N{}",
                    seen.0, seen.1, vote.0, vote.1
                ));
            }
            *seen = (*seen).max(vote);
            let boot = sim.incarnation(id);
            let committed = m.local_committed.map_or(0, |l| l.index());
            match self.committed.get(&id) {
                Some((b, c)) if *b == boot && committed < *c => found.push(format!(
                    "node {id}: its committed index went back from {c} to {committed}"
                )),
                _ => {}
            }
            self.committed.insert(id, (boot, committed));
            if m.state != ServerState::Leader {
                continue;
            }
            if vote.1 != id || !m.vote.committed {
                found.push(format!(
                    "election safety: node {id} leads under vote {}, not its own granted one",
                    m.vote
                ));
            }
            if self.complete.insert(vote) {
                let purged = m.purged.map_or(0, |l| l.index());
                let log = sim.log_ids(id);
                for (index, e) in self.entries.range(purged + 1..) {
                    if e.leader >= vote {
                        // Written by this leader, or by a later one elected meanwhile.
                        continue;
                    }
                    let want = e.entry.split(' ').next().unwrap_or_default();
                    match log.get(index) {
                        Some(have) if have == want => {}
                        have => found.push(format!(
                            "leader completeness: node {id}, leading as T{}-N{id}, holds {have:?} \
                             at index {index}, where {want} was applied",
                            vote.0
                        )),
                    }
                }
            }
        }
        found
    }
}
