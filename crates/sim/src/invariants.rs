//! Raft-level invariants, checked after every step of a run (as openraft's own turmoil tests
//! check them), beside the fuzzer's application oracles:
//!
//! - election safety: at most one leader per term;
//! - a node's term never goes back, across restarts too (the vote is durable);
//! - a node's committed index never goes back while it runs;
//! - state machine safety: every node applies the same entry at a given index (so the log
//!   matches on everything committed, and nothing committed is replaced);
//! - leader completeness: a leader's log holds every entry applied anywhere before it led.

use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;

use switchyard_testing::cluster::SimCluster;

#[derive(Default)]
pub struct RaftChecks {
    /// The leader seen for each term.
    leaders: BTreeMap<u64, u64>,
    /// The highest term seen per node.
    terms: BTreeMap<u64, u64>,
    /// The committed index seen per node and incarnation.
    committed: BTreeMap<u64, (u64, u64)>,
    /// What was applied at each index: the entry's log id and answer.
    entries: BTreeMap<u64, (u64, String)>,
    /// Leaders whose log was checked against `entries` (node, term).
    complete: BTreeSet<(u64, u64)>,
}

impl RaftChecks {
    /// Check the cluster as it is now; every violation found, as a sentence.
    pub fn check(&mut self, sim: &SimCluster) -> Vec<String> {
        let mut found = Vec::new();
        for a in std::mem::take(&mut *sim.applies.lock().unwrap()) {
            match self.entries.get(&a.index) {
                None => {
                    self.entries.insert(a.index, (a.node, a.entry));
                }
                Some((node, entry)) if *entry != a.entry => found.push(format!(
                    "state machine safety: node {} applied {} at index {}, node {node} applied {entry}",
                    a.node, a.entry, a.index
                )),
                Some(_) => {}
            }
        }
        for id in sim.ids() {
            let Some(m) = sim.raft_metrics(id) else {
                continue;
            };
            let term = m.current_term;
            let seen = self.terms.entry(id).or_default();
            if term < *seen {
                found.push(format!(
                    "node {id}: its term went back from {seen} to {term}"
                ));
            }
            *seen = (*seen).max(term);
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
            match self.leaders.get(&term) {
                Some(other) if *other != id => found.push(format!(
                    "election safety: nodes {other} and {id} both led term {term}"
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                }
            }
            if self.complete.insert((id, term)) {
                let purged = m.purged.map_or(0, |l| l.index());
                let log = sim.log_ids(id);
                for (index, (_, entry)) in self.entries.range(purged + 1..) {
                    let want = entry.split(' ').next().unwrap_or_default();
                    match log.get(index) {
                        Some(have) if have == want => {}
                        have => found.push(format!(
                            "leader completeness: node {id}, leading term {term}, holds {have:?} \
                             at index {index}, where {want} was applied"
                        )),
                    }
                }
            }
        }
        found
    }
}
