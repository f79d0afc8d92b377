//! A simulated node's apply gate: it holds entries before they are applied (the "before
//! apply" and "after apply N" hooks) and reports every apply to the run's trace and to the
//! Raft-level checks.

use std::sync::{Arc, Mutex};

use openraft::alias::LogIdOf;
use switchyard_store::state_machine::{ApplyGate, BoxFuture};
use switchyard_store::{Applied, TypeConfig};
use tokio::sync::watch;

use crate::trace::Trace;

/// One apply seen anywhere in the cluster: which node, which index, and the entry's log id
/// with a digest of what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply {
    pub node: u64,
    pub index: u64,
    /// The leader that wrote the entry, as openraft orders leaders: (term, node id).
    pub leader: (u64, u64),
    pub entry: String,
}

/// Applies not yet looked at by the checks, shared by every node of a run.
pub type Applies = Arc<Mutex<Vec<Apply>>>;

pub struct SimGate {
    pub node: u64,
    /// While `true`, applying waits.
    pub hold: watch::Sender<bool>,
    /// While `Some(n)`, entries after `n` wait.
    pub hold_after: watch::Sender<Option<u64>>,
    trace: Trace,
    applies: Applies,
}

impl SimGate {
    pub fn new(node: u64, trace: Trace, applies: Applies) -> Arc<Self> {
        Arc::new(Self {
            node,
            hold: watch::channel(false).0,
            hold_after: watch::channel(None).0,
            trace,
            applies,
        })
    }
}

impl ApplyGate for SimGate {
    fn before(&self, index: u64) -> BoxFuture<'static, ()> {
        let mut hold = self.hold.subscribe();
        let mut after = self.hold_after.subscribe();
        Box::pin(async move {
            loop {
                let held = *hold.borrow_and_update();
                let held_after = after.borrow_and_update().is_some_and(|n| index > n);
                if !held && !held_after {
                    return;
                }
                tokio::select! {
                    biased;
                    r = hold.changed() => if r.is_err() { return },
                    r = after.changed() => if r.is_err() { return },
                }
            }
        })
    }

    fn applied(&self, log_id: &LogIdOf<TypeConfig>, answer: &Applied) {
        let index = log_id.index();
        let answer = match answer {
            None => "-".to_string(),
            Some(Ok(reply)) => format!("ok {}", crate::digest(&format!("{reply:?}"))),
            Some(Err(e)) => format!("refused {}", e.code()),
        };
        self.trace
            .add(format!("apply {} {log_id} {answer}", self.node));
        self.applies.lock().unwrap().push(Apply {
            node: self.node,
            index,
            leader: (log_id.leader_id.term, log_id.leader_id.node_id),
            entry: format!("{log_id} {answer}"),
        });
    }
}
