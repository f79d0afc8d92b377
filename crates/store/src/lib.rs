//! Durable storage for switchyard, behind openraft's storage traits.
//!
//! - [`LogStore`]: the Raft log, vote and committed pointer in segment files of their own
//!   (`raft-log/`). Appends are handed to one writer thread that appends everything waiting
//!   and makes it durable with one `fdatasync` (group commit), then tells openraft the
//!   entries are durable. An entry is never
//!   acknowledged to a client before that fsync.
//! - [`StateMachine`]: the [`switchyard_core::State`] in memory, applied through
//!   [`switchyard_core::apply`], plus the [`History`] of recent events for watchers. Snapshots
//!   (state + history) are kept by a [`SnapshotStore`]; on restart openraft installs the last
//!   snapshot and re-applies the durable log after it.
//! - [`snapshot`]: [`SnapshotData`] (a file, or bytes in memory: read in pieces to be sent),
//!   [`SnapshotWriter`] (a snapshot received piece by piece), the data directory's `snapshot`
//!   file (written to a temporary file, fsynced, renamed), the migration from `state.redb`.
//!
//! - [`format`]: the data directory's format version (`FORMAT`), checked before either store
//!   is opened.
//!
//! - [`runtime`]: tokio with a seedable RNG, the one runtime of production and simulation.
//!
//! [`TypeConfig`] ties the core's proposal and outcome types to openraft.

pub mod format;
pub mod history;
pub mod log_store;
pub mod runtime;
pub mod snapshot;
pub mod state_machine;

use serde::{Deserialize, Serialize};

pub use format::FORMAT;
pub use history::{History, ReadAfter, StoredEvent};
pub use log_store::LogStore;
pub use runtime::Runtime;
pub use snapshot::{SnapshotData, SnapshotStore, SnapshotWriter};
pub use state_machine::{ApplyGate, SNAPSHOT_BYTES_PER_ENTRY, StateMachine, StateView};

/// Addresses of a cluster member, stored in the membership config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// Client API address (host:port).
    pub api: String,
    /// Peer RPC address (host:port).
    pub peer: String,
}

/// What an applied entry answers: the core's outcome, or `None` for blank and membership
/// entries.
pub type Applied = Option<switchyard_core::Outcome>;

openraft::declare_raft_types!(
    /// openraft type configuration of switchyard.
    pub TypeConfig:
        D = switchyard_core::Proposal,
        R = Applied,
        Node = NodeAddr,
        AsyncRuntime = Runtime,
);

/// The Raft handle type used by the server.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Open (or create) the redb file at `path`; a file another process holds open is
/// `ResourceBusy`, so callers can say so without guessing from the text.
pub(crate) fn open_db(path: &std::path::Path) -> std::io::Result<redb::Database> {
    redb::Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            "it is open in another process",
        ),
        other => io_err(other),
    })
}
