//! Refusals from apply. A refused command changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_types::{ErrorCode, Transition};

/// Why apply refused a command. The server maps each variant to a status code and an error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    /// A field is out of range or malformed (400).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The named object does not exist (404).
    #[error("{message}")]
    NotFound { message: String },
    /// The request conflicts with current state (409 `conflict`).
    #[error("{message}")]
    Conflict { message: String },
    /// An operation is in flight on the object (409 `busy`).
    #[error("{message}")]
    Busy {
        message: String,
        transition: Box<Transition>,
    },
    /// A deployment action is running (409 `busy`, the action in `details.action`).
    #[error("{message}")]
    ActionRunning {
        message: String,
        action_id: String,
        action: String,
        job_id: u64,
    },
    /// Not allowed from the current state (409 `not_allowed`); `allowed_from` lists the
    /// guards under which it would be.
    #[error("{message}")]
    NotAllowed {
        message: String,
        allowed_from: Vec<BTreeMap<String, Vec<Option<String>>>>,
    },
    /// A debit or transfer larger than the balance (409 `insufficient_funds`).
    #[error("account {account:?} has balance {balance}, less than {amount}")]
    InsufficientFunds {
        account: String,
        balance: u64,
        amount: u64,
    },
}

impl CommandError {
    /// The API error code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::Invalid { .. } => ErrorCode::Invalid,
            CommandError::NotFound { .. } => ErrorCode::NotFound,
            CommandError::Conflict { .. } => ErrorCode::Conflict,
            CommandError::Busy { .. } | CommandError::ActionRunning { .. } => ErrorCode::Busy,
            CommandError::NotAllowed { .. } => ErrorCode::NotAllowed,
            CommandError::InsufficientFunds { .. } => ErrorCode::InsufficientFunds,
        }
    }
}
