//! The leader's active agent check: every agent that joined with a `url` is probed
//! (`GET {url}/health`, or `GET {url}` when the URL has a path of its own) on an interval; one that fails `agent_check_failures` probes in a row
//! is marked lost through an ordinary replicated command (its leases end, its jobs run
//! elsewhere). Heartbeats are the agent's half of the check; this is the server's half.
//!
//! Only the leader probes; failure counts are kept in memory, so a new leader starts counting
//! afresh (the heartbeat deadline in the replicated state still applies meanwhile).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use switchyard_core::Command;
use switchyard_core::agents::AgentCommand;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Run until `shutdown` is cancelled.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let interval = node.config.agent_check_interval;
    let http = reqwest::Client::builder()
        .timeout(interval.min(Duration::from_secs(5)))
        .build()
        .expect("a plain HTTP client always builds");
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if node.raft.metrics().borrow_watched().state != ServerState::Leader {
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
            let http = http.clone();
            async move {
                let url = probe_url(&url);
                let r = http.get(&url).send().await;
                let failed = match r {
                    Ok(resp) if resp.status().is_success() => None,
                    Ok(resp) => Some(format!("GET {url} answered {}", resp.status())),
                    Err(e) => Some(format!("GET {url} failed: {e}")),
                };
                (id, failed)
            }
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
                tracing::warn!(error = %e.message, "could not mark an agent lost");
            }
        }
    }
}

/// The URL probed for an agent that joined with `url`: `{url}/health` for a bare
/// `http://host:port`, the URL itself when it names a path (e.g. seed 003's
/// `/api/config/status`).
pub fn probe_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if !matches!(u.path(), "" | "/") => url.to_string(),
        _ => format!("{}/health", url.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_bare_url_gets_health_and_a_path_is_kept() {
        assert_eq!(super::probe_url("http://h:9"), "http://h:9/health");
        assert_eq!(super::probe_url("http://h:9/"), "http://h:9/health");
        assert_eq!(
            super::probe_url("http://h:3355/api/config/status"),
            "http://h:3355/api/config/status"
        );
    }
}
