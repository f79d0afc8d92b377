//! Known bugs that can be switched back on, to prove the simulation's fuzzer catches them.
//!
//! The switches exist only when the crate is built with the `bugs` feature, which only
//! `switchyard-sim` enables; even then every bug is off unless the simulation's configuration
//! names it. Without the feature [`NodeConfig::bug`](crate::NodeConfig::bug) is a constant
//! `false` and the bug paths compile away.

/// A bug the simulation can re-introduce (`switchyard-sim --inject-bug NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// The log reports appended entries durable before they are flushed: a crash of a
    /// majority loses acknowledged writes (in the simulation's storage model).
    AckBeforeFsync,
    /// A write whose outcome became unknown across a leader change is proposed again without
    /// its idempotency key: it is applied twice.
    RetryWithoutKey,
    /// A restarted leader resumes leading at once (openraft's default): its state machine may
    /// lag what was committed, and a read it serves can be stale.
    LeaderRestore,
    /// A follower serves a "linearizable" read from its own state without asking the leader
    /// for the read index: it can miss acknowledged writes.
    FollowerReadWithoutIndex,
    /// The leader's scheduler fires each timer it sees due in its own state as a command of
    /// its own, unchecked, instead of a `Tick` that fires what is still pending when applied:
    /// a new leader whose state lags fires again what its predecessor fired (a lease expiry
    /// announced twice).
    TimerTwice,
}

impl Bug {
    pub const ALL: [Bug; 5] = [
        Bug::AckBeforeFsync,
        Bug::RetryWithoutKey,
        Bug::LeaderRestore,
        Bug::FollowerReadWithoutIndex,
        Bug::TimerTwice,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::RetryWithoutKey => "retry-without-key",
            Bug::LeaderRestore => "leader-restore",
            Bug::FollowerReadWithoutIndex => "follower-read-without-index",
            Bug::TimerTwice => "timer-twice",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The bugs switched on.
pub type Bugs = std::collections::BTreeSet<Bug>;
