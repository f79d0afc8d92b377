#![doc = include_str!("../README.md")]
//!
//! ## Modules
//!
//! Every node is a [`switchyard_node::Node`], the very code `switchyard serve` runs: its Raft
//! configuration, write routing and forwarding, read index (also on followers), membership
//! changes, scheduler and agent check, and the store's state machine over the real core. The
//! simulation supplies only what the node takes from outside: the in-memory network and
//! transport ([`net`]) whose every message can be paused, delayed, jittered, duplicated,
//! dropped or failed by type and direction; the virtual clock ([`Clock`], on tokio's paused
//! time); and storage that models fsync ([`log`]): what was not flushed is lost when a node
//! crashes. Raft's random draws come from a seed ([`run_seeded`]), so a seed gives the same
//! run, message for message ([`trace`]), in every process.
//!
//! - [`cluster`]: [`SimCluster`], the control surface ([`cluster::control`],
//!   [`cluster::inspect`]).
//! - [`http`]: each node's client API over in-memory connections.
//! - [`gate`]: the apply hooks (hold before apply, hold after N) and the apply trace.
//! - [`rng`]: the simulation's own seeded RNG.

pub mod cluster;
pub mod gate;
pub mod http;
pub mod log;
pub mod net;
pub mod rng;
pub mod trace;

pub use cluster::{Effect, SimCluster, SimOptions, WriteResult, effect};
pub use switchyard_node::Bug;
pub use switchyard_store::{Applied, NodeAddr};

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

    /// Virtual seconds since the simulation started.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl switchyard_node::Clock for Clock {
    fn now_ms(&self) -> i64 {
        Clock::now_ms(self)
    }
}

/// Run `fut` as one simulation: a fresh current-thread runtime on paused time, with Raft's
/// RNG seeded by `seed`. The same seed and the same future give the same run.
///
/// tokio draws from a runtime RNG of its own too (the order in which a watch channel wakes its
/// receivers, unbiased `select!`): it is seeded from `seed` as well, which needs tokio's
/// unstable API (`--cfg tokio_unstable`, set in `.cargo/config.toml`). Built without it, runs
/// do not replay exactly; [`replays`] says which.
pub fn run_seeded<T>(seed: u64, fut: impl std::future::Future<Output = T>) -> T {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let rt = builder.build().expect("a current-thread runtime");
    rt.block_on(switchyard_store::Runtime::scope(seed, fut))
}

/// Whether a seed replays exactly in this build (tokio's RNG can be seeded only with
/// `--cfg tokio_unstable`).
pub fn replays() -> bool {
    cfg!(tokio_unstable)
}

/// A short stable digest of a text (FNV-1a), for traces.
pub fn digest(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{:08x}", h >> 32)
}
