//! Refusals from apply. A refused command changes nothing.

use serde::{Deserialize, Serialize};

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
    /// A debit or transfer larger than the balance (409 `insufficient_funds`).
    #[error("account {account:?} has balance {balance}, less than {amount}")]
    InsufficientFunds {
        account: String,
        balance: u64,
        amount: u64,
    },
}
