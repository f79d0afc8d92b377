//! The leader-side scheduler: turns timers in the replicated state into `Tick` commands.
//!
//! Only the leader proposes. It reads the earliest due time from state, sleeps until then (or
//! until the earliest due time or leadership changes), and proposes a tick stamped with its clock. Firing
//! happens in apply, so a timer fires exactly once whichever leader's tick reaches the log
//! first, and a new leader takes over every pending timer from state.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use switchyard_core::{Command, Reply};
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Longest sleep when nothing is due; state and leadership changes wake it earlier.
const IDLE: Duration = Duration::from_secs(60);
/// Pause after a failed or empty tick, so a clock behind the state's time cannot spin.
const BACKOFF: Duration = Duration::from_millis(100);

/// Run until `shutdown` is cancelled.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    // Both change only when what they say changes: leadership, and the earliest due time. A
    // write that moves no timer does not wake the scheduler.
    let mut server = node.raft.server_metrics();
    let mut next_timer = node.view.next_timer();
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    loop {
        let is_leader = server.borrow_watched().state == openraft::ServerState::Leader;
        let next_due = *next_timer.borrow_and_update();
        let next_due = next_due.filter(|_| is_leader);
        let now = node.now_ms();
        if let Some(due) = next_due.filter(|d| *d <= now) {
            #[cfg(feature = "bugs")]
            if node.config.bug(crate::Bug::TimerTwice) {
                // The bug: fire what this node's (perhaps lagging) state shows due.
                let mut failed = false;
                for timer in node.view.read(|s| s.timers.due(now)) {
                    failed |= node.write(Command::FireAsSeen(timer), None).await.is_err();
                }
                if !failed {
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(BACKOFF) => {}
                }
                continue;
            }
            match node.write(Command::Tick, None).await {
                Ok((Reply::Ticked { fired }, _)) if fired > 0 => {
                    metrics::counter!("switchyard_timers_fired_total").increment(fired as u64);
                    continue;
                }
                Ok(_) => tracing::debug!(due, "tick fired nothing"),
                Err(e) => tracing::warn!(error = %e, "could not propose a tick"),
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(BACKOFF) => {}
            }
            continue;
        }
        let wait = next_due.map_or(IDLE, |due| Duration::from_millis((due - now).max(0) as u64));
        sleep.as_mut().reset(tokio::time::Instant::now() + wait);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = server.changed() => if r.is_err() { return },
            r = next_timer.changed() => if r.is_err() { return },
            _ = &mut sleep => {}
        }
    }
}
