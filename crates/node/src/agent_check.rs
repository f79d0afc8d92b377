//! The leader's active agent check: every agent that joined with a `url` is probed (through
//! the injected [`AgentProbe`](crate::AgentProbe)) on an interval; one that fails
//! `agent_check_failures` probes in a row is marked lost through an ordinary replicated
//! command (its leases end, its jobs run elsewhere). Heartbeats are the agent's half of the
//! check; this is the server's half.
//!
//! Only the leader probes; failure counts are kept in memory, so a new leader starts counting
//! afresh (the heartbeat deadline in the replicated state still applies meanwhile).

use std::collections::BTreeMap;
use std::sync::Arc;

use switchyard_core::Command;
use switchyard_core::agents::AgentCommand;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Run until `shutdown` is cancelled.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    let mut ticker = tokio::time::interval(node.config.agent_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !node.is_leader() {
            failures.clear();
            continue;
        }
        let targets: Vec<(String, String)> = node.view.read(|st| {
            st.agents
                .iter()
                .filter(|a| a.lost.is_none())
                .filter_map(|a| Some((a.info.id.clone(), a.info.url.clone()?)))
                .collect()
        });
        failures.retain(|id, _| targets.iter().any(|(t, _)| t == id));
        let probes = targets.into_iter().map(|(id, url)| {
            let probe = node.agent_probe.clone();
            async move { (id, probe.probe(&url).await.err()) }
        });
        for (id, failed) in futures::future::join_all(probes).await {
            let Some(why) = failed else {
                failures.remove(&id);
                continue;
            };
            let n = failures.entry(id.clone()).or_default();
            *n += 1;
            if *n < node.config.agent_check_failures {
                continue;
            }
            failures.remove(&id);
            let reason = format!(
                "health check failed {} times: {why}",
                node.config.agent_check_failures
            );
            tracing::warn!(agent = %id, %reason, "marking agent lost");
            if let Err(e) = node
                .write(Command::Agents(AgentCommand::Lost { id, reason }), None)
                .await
            {
                tracing::warn!(error = %e, "could not mark an agent lost");
            }
        }
    }
}
