//! Idempotency records: a retried mutation with the same `Idempotency-Key` gets the first
//! outcome back and applies nothing twice. Records live in the replicated state (so they
//! survive restarts and leader changes) for the window the proposal carries (by default
//! [`DEFAULT_WINDOW_MS`]), then a timer removes them.

use imbl::OrdMap;

use serde::{Deserialize, Serialize};

use crate::{Command, Outcome};

/// How long a key is remembered unless configured otherwise: 24 hours of leader-stamped time.
pub const DEFAULT_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// One remembered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    /// The command first sent with the key; a different command with the same key is refused.
    command: Command,
    /// What the first request answered.
    outcome: Outcome,
    /// When the record may be forgotten.
    expires_ms: i64,
}

/// Remembered requests by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Records {
    by_key: OrdMap<String, Record>,
}

/// What a key lookup found.
pub enum Lookup {
    /// Not seen: apply the command.
    New,
    /// Seen with the same command: answer this again.
    Replay(Box<Outcome>),
    /// Seen with another command: refuse.
    Mismatch,
}

impl Records {
    /// Look a key up for `command`.
    pub fn lookup(&self, key: &str, command: &Command) -> Lookup {
        match self.by_key.get(key) {
            None => Lookup::New,
            Some(r) if &r.command == command => Lookup::Replay(Box::new(r.outcome.clone())),
            Some(_) => Lookup::Mismatch,
        }
    }

    /// Remember the outcome of a keyed command.
    pub fn insert(&mut self, key: String, command: Command, outcome: Outcome, expires_ms: i64) {
        self.by_key.insert(
            key,
            Record {
                command,
                outcome,
                expires_ms,
            },
        );
    }

    /// Forget `key` if its window is over at `now_ms` (a key reused after expiry has a newer
    /// record whose own timer is still pending).
    pub fn expire(&mut self, key: &str, now_ms: i64) {
        if self.by_key.get(key).is_some_and(|r| r.expires_ms <= now_ms) {
            self.by_key.remove(key);
        }
    }

    /// True when `key` is remembered.
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
