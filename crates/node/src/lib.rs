//! One member of switchyard's replicated state machine, with no HTTP.
//!
//! The server runs it behind its HTTP listeners; the simulator runs the very same code on a
//! virtual clock over an in-memory network. What differs between the two is injected
//! ([`Parts`]): the Raft network and the [`Transport`] for requests handed to the leader, the
//! [`Clock`] a leader stamps on proposals, the storage (any openraft log store, and the
//! store's one [`StateMachine`](switchyard_store::StateMachine) with its snapshot store), and
//! the [`AgentProbe`] of the agent check.
//!
//! - [`config`]: [`NodeConfig`] and the one openraft `Config` builder.
//! - [`error`]: [`NodeError`], every way a request can fail here; the server maps it to HTTP
//!   once.
//! - [`transport`]: what a node asks of the network and the clock; the leader requests and
//!   their answers.
//! - [`node`]: [`Node`]: start, write (routed to the leader, forwarded from a follower),
//!   linearizable read (no round on a sole voter, the lease on a leader, else the read
//!   index, also on followers; [`ReadPath`] says which), status, shutdown.
//! - [`membership`]: membership changes, one at a time, on the leader.
//! - [`scheduler`]: the leader's tick loop that fires timers in the replicated state.
//! - [`agent_check`]: the leader's active health check of agents.
//! - [`storage`]: opening the stores of a data directory.
//! - [`bugs`]: known bugs the simulation can switch back on (feature `bugs`, which only the
//!   simulator enables).
//!
//! Data flow of a write: [`Node::write`] stamps the clock's time → on the leader openraft
//! appends and replicates it (a follower hands it to the leader through the [`Transport`]) →
//! commit → the state machine applies it through `switchyard_core::apply` → the outcome and
//! its log index come back.

pub mod agent_check;
pub mod bugs;
pub mod config;
pub mod error;
pub mod membership;
pub mod node;
pub mod scheduler;
pub mod storage;
pub mod transport;

pub use config::NodeConfig;
pub use error::{Leader, NodeError};
pub use node::{Node, Parts, ReadPath, StartError, members};
pub use transport::{
    AgentProbe, Clock, LeaderAnswer, LeaderReply, LeaderRequest, SendError, SystemClock, Transport,
};

pub use bugs::Bug;
