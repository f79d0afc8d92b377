//! Timers in the replicated state: scheduled by apply, fired by `Command::Tick`.
//!
//! The state only records what is due when; the leader-side scheduler in the server reads
//! [`Timers::next_due`] and proposes a tick at that time. Because firing happens inside apply,
//! a timer fires exactly once whichever leader proposes the tick, and survives restarts and
//! leader changes with the rest of the state.

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

use crate::Timer;

/// Names one scheduled timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerKey((i64, u64));

/// Pending timers ordered by due time, then by scheduling order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timers {
    /// (due time in ms, sequence number) -> timer; the sequence keeps equal due times apart.
    pending: OrdMap<(i64, u64), Timer>,
    /// Next sequence number.
    next_seq: u64,
}

impl Timers {
    /// Schedule `timer` to fire at `due_ms`; the key cancels it.
    pub fn schedule(&mut self, due_ms: i64, timer: Timer) -> TimerKey {
        let key = (due_ms, self.next_seq);
        self.pending.insert(key, timer);
        self.next_seq += 1;
        TimerKey(key)
    }

    /// Drop a pending timer (nothing happens if it already fired).
    pub fn cancel(&mut self, key: TimerKey) {
        self.pending.remove(&key.0);
    }

    /// The earliest due time, if any timer is pending.
    pub fn next_due(&self) -> Option<i64> {
        self.pending.keys().next().map(|(due, _)| *due)
    }

    /// Remove and return every timer due at or before `now_ms`, in due order.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<Timer> {
        let mut due = Vec::new();
        while let Some(key) = self.pending.get_min().map(|(k, _)| *k) {
            if key.0 > now_ms {
                break;
            }
            due.extend(self.pending.remove(&key));
        }
        due
    }

    /// Every timer due at or before `now_ms`, in due order (left pending).
    pub fn due(&self, now_ms: i64) -> Vec<Timer> {
        self.pending
            .range(..(now_ms.saturating_add(1), 0))
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Drop every pending timer equal to `timer`.
    pub fn remove(&mut self, timer: &Timer) {
        let keys: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, t)| *t == timer)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.pending.remove(&k);
        }
    }

    /// Every pending timer with its due time (ms), in due order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Timer)> {
        self.pending.iter().map(|((due, _), t)| (*due, t))
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
