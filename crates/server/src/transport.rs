//! What the node asks of the network besides Raft's messages, over HTTP: requests handed to
//! the leader (`POST /raft/leader` on its peer listener, signed), the status of a joining
//! node (`GET /v1/status` on its API), and the agent check's probe.

use std::time::Duration;

use switchyard_node::{AgentProbe, LeaderAnswer, LeaderRequest, NodeError, SendError, Transport};
use switchyard_store::NodeAddr;
use switchyard_store::state_machine::BoxFuture;
use switchyard_types::Status;

use crate::network::PeerClient;

/// The path on the peer listener where the leader takes requests from other nodes.
pub const LEADER_PATH: &str = "/raft/leader";

/// [`Transport`] over the peer listener.
pub struct HttpTransport {
    peers: PeerClient,
    /// `http` or `https`: how the members' client APIs are reached.
    api_scheme: &'static str,
}

impl HttpTransport {
    pub fn new(peers: PeerClient, api_scheme: &'static str) -> Self {
        Self { peers, api_scheme }
    }
}

impl Transport for HttpTransport {
    fn to_leader<'a>(
        &'a self,
        _to: u64,
        addr: &'a NodeAddr,
        req: &'a LeaderRequest,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<LeaderAnswer, SendError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(req).expect("a leader request serialises");
            let sent = self
                .peers
                .post(&addr.peer, LEADER_PATH, body, crate::network::Wire::Json)
                .timeout(timeout)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) if e.is_connect() => return Err(SendError::NotSent(e.to_string())),
                Err(e) => return Err(SendError::NoAnswer(e.to_string())),
            };
            let status = resp.status();
            match resp.json::<LeaderAnswer>().await {
                Ok(answer) => Ok(answer),
                Err(e) => Ok(Err(NodeError::internal(format!(
                    "bad answer from the leader at {}{LEADER_PATH} (HTTP {status}): {e}",
                    addr.peer
                )))),
            }
        })
    }

    fn status<'a>(&'a self, _to: u64, addr: &'a NodeAddr) -> BoxFuture<'a, Option<Status>> {
        Box::pin(async move {
            let url = format!("{}://{}/v1/status", self.api_scheme, addr.api);
            match self
                .peers
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => r.json::<Status>().await.ok(),
                _ => None,
            }
        })
    }
}

/// The agent check's probe: `GET {url}/health`, or `GET {url}` when the URL has a path of its
/// own (see [`probe_url`]).
pub struct HttpAgentProbe {
    http: reqwest::Client,
}

impl HttpAgentProbe {
    /// Probes time out after the check interval (5 s at most).
    pub fn new(interval: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(interval.min(Duration::from_secs(5)))
            .build()
            .expect("a plain HTTP client always builds");
        Self { http }
    }
}

impl AgentProbe for HttpAgentProbe {
    fn probe<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let url = probe_url(url);
            match self.http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => Ok(()),
                Ok(resp) => Err(format!("GET {url} answered {}", resp.status())),
                Err(e) => Err(format!("GET {url} failed: {e}")),
            }
        })
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
