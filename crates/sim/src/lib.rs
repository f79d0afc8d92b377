//! The seeded fuzzer of switchyard (seed 002), on the deterministic cluster of
//! [`switchyard_testing`]: random client workloads under random faults, checked after every
//! step, with bugs that can be switched back on to prove it catches them.
//!
//! - [`fuzz`]: the workload and its application oracles, the faults, the liveness bound, the
//!   report of a run.
//! - [`invariants`]: Raft-level checks after every step.
//!
//! The cluster, its network, disks, clock and controls are [`switchyard_testing`]'s; this
//! crate adds only what a fuzzer needs, and is the one that enables the `bugs` features.

pub mod fuzz;
pub mod invariants;

pub use switchyard_node::Bug;
pub use switchyard_testing::{replays, run_seeded};
