//! Every way a request to a node can fail. No status code or error-code string crosses this
//! layer: the server maps [`NodeError`] to HTTP in one place.

use serde::{Deserialize, Serialize};
use switchyard_core::CommandError;

/// The leader, as far as a node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub node_id: u64,
    /// Its client API address, when known.
    pub api: Option<String>,
}

/// Why a request gave no answer, or was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum NodeError {
    /// This node is not the leader and did not (or could not) hand the request on: nothing was
    /// done, and asking the leader is safe.
    #[error("this node is not the leader; send the request to the leader")]
    NotLeader { leader: Option<Leader> },
    /// The request was sent on but no answer came: it may still take effect (retry a write
    /// with the same idempotency key to find out).
    #[error("{message}")]
    OutcomeUnknown { message: String },
    /// No leader, no quorum, a change already under way, or shutting down: nothing was done.
    #[error("{message}")]
    Unavailable { message: String },
    /// The application refused the command; it changed nothing.
    #[error(transparent)]
    Refused(CommandError),
    /// A fault of this node (logged where it arose).
    #[error("internal error: {message}")]
    Internal { message: String },
}

impl NodeError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        NodeError::Unavailable {
            message: message.into(),
        }
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        NodeError::OutcomeUnknown {
            message: message.into(),
        }
    }

    /// An internal error, logged here.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        NodeError::Internal {
            message: what.to_string(),
        }
    }

    /// True when the request was certainly not carried out because of leadership, so it may
    /// be asked again of the current leader.
    pub fn is_not_leader(&self) -> bool {
        matches!(self, NodeError::NotLeader { .. })
    }
}

impl From<CommandError> for NodeError {
    fn from(e: CommandError) -> Self {
        NodeError::Refused(e)
    }
}
