//! The stores of a data directory: its format checked first, then the Raft log
//! (the segments of `raft-log/`) and the state machine's snapshot (`snapshot`).

use std::path::Path;

use switchyard_store::log_store::LOG_DIR;
use switchyard_store::{LogStore, StateMachine, TypeConfig};

use crate::node::StartError;

/// Open (creating them if need be) the stores in `dir`; `history` events are kept for
/// watchers.
pub fn open(
    dir: &Path,
    history: usize,
) -> Result<(LogStore<TypeConfig>, StateMachine), StartError> {
    std::fs::create_dir_all(dir).map_err(|cause| StartError::DataDir {
        path: dir.display().to_string(),
        cause,
    })?;
    switchyard_store::format::check(dir).map_err(|cause| StartError::Format {
        path: dir.display().to_string(),
        cause,
    })?;
    let log =
        LogStore::<TypeConfig>::open(&dir.join(LOG_DIR)).map_err(|cause| StartError::Store {
            what: LOG_DIR,
            cause,
        })?;
    let sm = StateMachine::open(dir, history).map_err(|cause| StartError::Store {
        what: "snapshot",
        cause,
    })?;
    Ok((log, sm))
}
