//! Deterministic simulation of a switchyard cluster in one process (seed 002).
//!
//! N nodes run real openraft and the real core ([`switchyard_core::apply`], its timers and the
//! leader-side tick loop) on tokio's paused clock, over an in-memory network ([`net`]) whose
//! every message can be paused, delayed, dropped or failed by type and direction, with
//! in-memory storage ([`log`], [`sm`]) that models fsync: what was not flushed is lost when a
//! node crashes. Election timeouts come from openraft's `DeterministicRng`, seeded per run, so a
//! seed always gives the same trace. [`cluster::Sim`] is the control surface; [`fuzz`] the
//! seeded fuzzer with its invariants and its injectable bugs.

pub mod cluster;
pub mod fuzz;
pub mod log;
pub mod net;
pub mod sm;

pub use cluster::{Sim, SimOptions};
pub use switchyard_store::{Applied, NodeAddr};

/// The runtime: tokio, with openraft's RNG replaced by a seeded one.
pub type Runtime = openraft::rt::deterministic_rng::DeterministicRng<openraft::TokioRuntime>;

openraft::declare_raft_types!(
    /// openraft type configuration of the simulation: switchyard's, on the seeded runtime.
    pub SimConfig:
        D = switchyard_core::Proposal,
        R = Applied,
        Node = NodeAddr,
        AsyncRuntime = Runtime,
);

/// A simulated node's Raft handle.
pub type Raft = openraft::Raft<SimConfig, sm::SimStateMachine>;

/// Bugs the harness can re-introduce, to prove the fuzzer catches them (`--inject-bug`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The log reports appended entries durable before they are flushed: a crash of a majority
    /// loses acknowledged writes.
    AckBeforeFsync,
    /// A client write that times out across a leader change is proposed again without its
    /// idempotency key: the command is applied twice.
    RetryWithoutKey,
}

impl Bug {
    pub const ALL: [Bug; 2] = [Bug::AckBeforeFsync, Bug::RetryWithoutKey];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::RetryWithoutKey => "retry-without-key",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Virtual wall-clock time: a fixed epoch plus the paused clock's time since the simulation
/// started, so every run of a seed stamps the same times.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub const EPOCH_MS: i64 = 1_800_000_000_000;

    pub fn start() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }

    /// Milliseconds of virtual wall-clock time.
    pub fn now_ms(&self) -> i64 {
        Self::EPOCH_MS + self.start.elapsed().as_millis() as i64
    }
}

/// Run `fut` as one simulation: a fresh current-thread runtime on paused time, with openraft's
/// RNG seeded by `seed`. The same seed and the same future give the same run.
pub fn run_seeded<T>(seed: u64, fut: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    rt.block_on(Runtime::scope(seed, fut))
}
