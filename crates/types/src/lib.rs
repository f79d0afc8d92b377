//! Wire types of the switchyard `/v1` API (see `design/api.md` in the project's shared docs).
//!
//! Everything here is plain data with serde derives, shared by the server, the client library
//! and the CLI so the two sides of the wire cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Error body of every 4xx/5xx answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// What went wrong: a stable snake_case code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// `invalid`, `not_found`, `busy`, `not_allowed`, `conflict`, `insufficient_funds`,
    /// `unauthorized`, `forbidden`, `unavailable`, `timeout`, `internal`, ...
    pub code: String,
    /// What was wrong and what is allowed.
    pub message: String,
    /// Extra machine-readable facts (e.g. `field`, `leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A bank account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    /// Balance in minor units.
    pub balance: u64,
    /// Revision of the last change to this account.
    pub revision: u64,
}

/// `GET /v1/bank/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

/// Answer to a transfer: both accounts after it, and the revision of the transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    pub from: Account,
    pub to: Account,
    pub revision: u64,
}

/// `POST /v1/bank/accounts` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    pub id: String,
}

/// Body of credit and debit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    pub amount: u64,
}

/// `POST /v1/bank/transfers` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub from: String,
    pub to: String,
    pub amount: u64,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub node_id: u64,
    /// `leader`, `follower`, `learner`, `candidate` (or `shutdown`).
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied_index: u64,
    /// Current revision: every event up to it has been applied on this node.
    pub revision: u64,
    /// Oldest revision a watch can resume from (`from_revision` must be at least this).
    pub compact_revision: u64,
    pub members: Vec<Member>,
}

/// A cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub node_id: u64,
    /// Client API address (host:port).
    pub api: String,
    /// Peer RPC address (host:port).
    pub peer: String,
    pub voter: bool,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    pub leader: Option<u64>,
    pub members: Vec<Member>,
}

/// One event as delivered to watchers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchEvent {
    pub revision: u64,
    pub topic: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// Messages the server sends on `/v1/watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchMessage {
    /// A change.
    Event {
        revision: u64,
        topic: String,
        #[schema(value_type = Object)]
        event: serde_json::Value,
    },
    /// Every matching event up to `revision` has been sent.
    Bookmark { revision: u64 },
    /// The stream ends; `error.code` is `compacted` or `lagging` (or `invalid`).
    Error { error: WatchError },
}

/// Why a watch ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchError {
    /// `compacted`: resume point is older than retained history (re-read state, then watch
    /// from its revision). `lagging`: the subscriber fell too far behind (resume from
    /// `resume_from`).
    pub code: String,
    pub message: String,
    /// With `compacted`: the oldest revision that can be resumed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<u64>,
    /// With `lagging`: the last revision fully delivered; resume from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<u64>,
}

/// Messages a client may send on `/v1/watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchRequest {
    /// Ask for a bookmark now.
    Progress,
}

/// Labels attached to objects; kept here so later apps share one definition.
pub type Labels = BTreeMap<String, String>;
