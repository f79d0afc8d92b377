//! Recent events, kept for watchers to resume from.
//!
//! Events are appended by the state machine as entries apply, each tagged with the entry's log
//! index as its revision (all events of one entry share a revision and are appended together).
//! The history keeps the newest `capacity` events; when older ones are dropped,
//! `compact_revision` records the newest revision that is no longer complete, so a watcher
//! asking to resume from below it gets a `compacted` error instead of a silent gap.
//! The history is part of every snapshot, so it survives restarts.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_types::WatchMessage;

/// One event, with its watch message rendered once for every subscriber.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub revision: u64,
    pub topic: String,
    /// The JSON text of the `{"type": "event", ...}` watch message.
    pub message: Arc<str>,
}

/// Bounded event history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    events: VecDeque<StoredEvent>,
    capacity: usize,
    /// Resume is possible from any revision at or above this one.
    compact_revision: u64,
}

/// What [`History::read_after`] found.
#[derive(Debug)]
pub enum ReadAfter {
    /// Matching events after the asked revision (whole revisions only), and the revision up to
    /// which every event was looked at.
    Events {
        events: Vec<StoredEvent>,
        scanned_to: u64,
    },
    /// The asked revision is older than retained history.
    Compacted { compact_revision: u64 },
}

impl History {
    /// An empty history keeping at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            capacity: capacity.max(1),
            compact_revision: 0,
        }
    }

    /// Change the capacity (e.g. after loading a snapshot taken with another setting).
    /// The most events kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.trim();
    }

    /// Append the events of one applied entry.
    pub fn push(&mut self, revision: u64, events: Vec<switchyard_core::Event>) {
        for e in events {
            let message = serde_json::to_string(&WatchMessage::Event {
                revision,
                topic: e.topic.clone(),
                event: e.body,
            })
            .expect("a JSON value always serialises");
            self.events.push_back(StoredEvent {
                revision,
                topic: e.topic,
                message: message.into(),
            });
        }
        self.trim();
    }

    fn trim(&mut self) {
        while self.events.len() > self.capacity {
            let dropped = self.events.pop_front().expect("len > capacity >= 1");
            self.compact_revision = self.compact_revision.max(dropped.revision);
        }
        // Never leave part of a revision behind: drop the rest of a half-dropped revision.
        while self
            .events
            .front()
            .is_some_and(|e| e.revision <= self.compact_revision)
        {
            self.events.pop_front();
        }
    }

    /// Oldest revision a watch can resume from.
    pub fn compact_revision(&self) -> u64 {
        self.compact_revision
    }

    /// Number of events kept.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when no event is kept.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How many events (of any topic) come after `revision`.
    pub fn count_after(&self, revision: u64) -> usize {
        self.events.len() - self.events.partition_point(|e| e.revision <= revision)
    }

    /// Events after `after` whose topic starts with `prefix`, at most about `limit` of them,
    /// never splitting a revision. `head` is the applied revision: everything up to it is in the
    /// history, so a reader that got no events has still seen everything up to `head`.
    pub fn read_after(&self, after: u64, prefix: &str, limit: usize, head: u64) -> ReadAfter {
        if after < self.compact_revision {
            return ReadAfter::Compacted {
                compact_revision: self.compact_revision,
            };
        }
        let start = self.events.partition_point(|e| e.revision <= after);
        let mut out = Vec::new();
        let mut scanned_to = head.max(after);
        for e in self.events.range(start..) {
            if e.revision > head {
                scanned_to = head.max(after);
                break;
            }
            if out.len() >= limit {
                // Finish the revision in progress, then stop.
                let last = out.last().map(|l: &StoredEvent| l.revision);
                if last != Some(e.revision) {
                    // Every event before `e` was looked at; `e` starts a later revision.
                    scanned_to = e.revision - 1;
                    break;
                }
            }
            if e.topic.starts_with(prefix) {
                out.push(e.clone());
            }
        }
        ReadAfter::Events {
            events: out,
            scanned_to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(topic: &str) -> switchyard_core::Event {
        switchyard_core::Event {
            topic: topic.into(),
            body: json!({}),
        }
    }

    fn revs(r: &ReadAfter) -> Vec<u64> {
        match r {
            ReadAfter::Events { events, .. } => events.iter().map(|e| e.revision).collect(),
            ReadAfter::Compacted { .. } => panic!("compacted"),
        }
    }

    #[test]
    fn trimming_drops_whole_revisions_and_raises_compact_revision() {
        let mut h = History::new(3);
        h.push(1, vec![ev("a")]);
        h.push(2, vec![ev("a"), ev("b")]);
        h.push(3, vec![ev("a"), ev("b")]);
        // Capacity 3 forced out revision 1 and half of 2; the rest of 2 goes too.
        assert_eq!(h.compact_revision(), 2);
        assert_eq!(h.len(), 2);
        assert!(matches!(
            h.read_after(1, "", 10, 3),
            ReadAfter::Compacted {
                compact_revision: 2
            }
        ));
        assert_eq!(revs(&h.read_after(2, "", 10, 3)), vec![3, 3]);
    }

    #[test]
    fn read_after_filters_by_prefix_and_keeps_revisions_whole() {
        let mut h = History::new(100);
        h.push(5, vec![ev("bank/a"), ev("bank/b")]);
        h.push(7, vec![ev("dev/x")]);
        h.push(9, vec![ev("bank/a")]);
        assert_eq!(revs(&h.read_after(0, "bank/", 10, 9)), vec![5, 5, 9]);
        // A limit of 1 still returns both events of revision 5.
        match h.read_after(0, "", 1, 9) {
            ReadAfter::Events { events, scanned_to } => {
                assert_eq!(events.len(), 2);
                assert_eq!(scanned_to, 6);
            }
            other => panic!("{other:?}"),
        }
        // Events newer than the head are not returned yet.
        match h.read_after(5, "", 10, 8) {
            ReadAfter::Events { events, scanned_to } => {
                assert_eq!(events.len(), 1);
                assert_eq!(scanned_to, 8);
            }
            other => panic!("{other:?}"),
        }
    }
}
