//! What a node needs from outside that differs between a server and a simulation: the
//! transport of requests handed to the leader, the clock, and the agent probe. (Raft's own
//! messages go through an openraft `RaftNetworkFactory`, also injected.)

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_core::{Outcome, Proposal};
use switchyard_store::NodeAddr;
use switchyard_store::state_machine::BoxFuture;
use switchyard_types::Status;

use crate::error::NodeError;

/// A request a node hands to the leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderRequest {
    /// Propose a command; the leader stamps its own time on it.
    Write(Proposal),
    /// The leader's read index, for a linearizable read on another node.
    ReadIndex,
    AddMember {
        node_id: u64,
        addr: NodeAddr,
    },
    RemoveMember {
        node_id: u64,
    },
    TransferLeader {
        node_id: u64,
    },
}

/// The leader's answer to a [`LeaderRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderReply {
    /// The command was committed and applied at `index`, with this outcome.
    Written {
        outcome: Outcome,
        index: u64,
    },
    /// Reads that wait until this index is applied are linearizable.
    ReadIndex {
        index: u64,
    },
    Done,
}

/// What comes back from the node asked: its reply, or its error (a `NotLeader` error means it
/// did nothing).
pub type LeaderAnswer = Result<LeaderReply, NodeError>;

/// Why a request to another node got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// It certainly did not arrive (no connection): safe to send again.
    NotSent(String),
    /// It may have arrived and been carried out; no answer came.
    NoAnswer(String),
}

/// How a node reaches other nodes for requests that are not Raft messages.
pub trait Transport: Send + Sync + 'static {
    /// Hand `req` to node `to` (at `addr`), waiting at most `timeout` for its answer.
    fn to_leader<'a>(
        &'a self,
        to: u64,
        addr: &'a NodeAddr,
        req: &'a LeaderRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<LeaderAnswer, SendError>>;

    /// The status of the node at `addr`, or `None` when it cannot be asked (down, refused).
    fn status<'a>(&'a self, to: u64, addr: &'a NodeAddr) -> BoxFuture<'a, Option<Status>>;
}

/// The time a leader stamps on proposals (and the scheduler compares due times with).
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }
}

/// The agent check's probe of an agent's URL.
pub trait AgentProbe: Send + Sync + 'static {
    /// `Ok` when the agent at `url` answered healthy; else why not.
    fn probe<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<(), String>>;
}
