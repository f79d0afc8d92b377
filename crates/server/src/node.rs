//! The server's node: a [`switchyard_node::Node`] (the replicated state machine, without HTTP)
//! started on the data directory's stores, the peer network over HTTP, the system clock and
//! an HTTP agent probe, plus what only the server holds: its configuration, the cluster
//! secret and the signed peer client.
//!
//! Handlers use the inner node through `Deref` (`node.write(..)`, `node.view`, `node.raft`);
//! its [`NodeError`](switchyard_node::NodeError)s become HTTP answers in
//! [`crate::error`].

use std::ops::Deref;
use std::sync::Arc;

use openraft::async_runtime::watch::WatchReceiver;
use switchyard_node::{NodeConfig, Parts, SystemClock};
use switchyard_store::NodeAddr;

use crate::config::Config;
use crate::network::{PeerClient, PeerNetwork};
use crate::peer_auth::{ClusterSecret, Verifier};
use crate::transport::{HttpAgentProbe, HttpTransport};

pub use switchyard_node::members;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Node(#[from] switchyard_node::StartError),
    #[error("cluster secret: {0}")]
    Secret(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Listen(String),
}

/// A running node, as the server holds it.
pub struct Node {
    inner: Arc<switchyard_node::Node>,
    pub config: Config,
    /// HTTP client for requests to other members (signed).
    peers: PeerClient,
    /// Checks the signature of every request on the peer listener (and of join requests).
    pub peer_auth: Verifier,
}

impl Deref for Node {
    type Target = switchyard_node::Node;

    fn deref(&self) -> &switchyard_node::Node {
        &self.inner
    }
}

/// The cluster secret this node runs with, and whether it was created just now: the one kept
/// in the data directory; else the configured join token (kept from now on); else, for a
/// node that starts a cluster, a new one. A node joining a cluster must be given its token.
fn cluster_secret(config: &Config) -> Result<(ClusterSecret, bool), StartError> {
    let dir = &config.data_dir;
    let kept = ClusterSecret::load(dir).map_err(StartError::Secret)?;
    let keep = |s: &ClusterSecret| {
        s.store(dir)
            .map_err(|e| StartError::Secret(format!("cannot keep it in {}: {e}", dir.display())))
    };
    match (kept, &config.join_token) {
        (Some(kept), Some(given)) if kept != *given => Err(StartError::Secret(format!(
            "--join-token differs from the token this data directory already holds ({}); a \
             member keeps the token it joined with",
            ClusterSecret::path(dir).display()
        ))),
        (Some(kept), _) => Ok((kept, false)),
        (None, Some(given)) => {
            keep(given)?;
            Ok((given.clone(), false))
        }
        (None, None) if config.join.is_some() => Err(StartError::Secret(
            "joining a cluster needs its join token: pass --join-token (print it on a member \
             with `switchyard cluster join-token`)"
                .into(),
        )),
        (None, None) => {
            let s = ClusterSecret::generate();
            keep(&s)?;
            tracing::info!(file = %ClusterSecret::path(dir).display(), "created the cluster secret");
            Ok((s, true))
        }
    }
}

/// The node's settings out of the server's.
// The update sets the simulation's bug switches (off) when the `bugs` feature is compiled in.
#[allow(clippy::needless_update)]
fn node_config(config: &Config) -> NodeConfig {
    NodeConfig {
        node_id: config.node_id,
        heartbeat_interval: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        snapshot_logs: config.snapshot_logs,
        snapshot_keep_logs: config.snapshot_keep_logs,
        write_timeout: config.write_timeout,
        forward_writes: config.forward_writes,
        lease_reads: config.lease_reads,
        idempotency_window: config.idempotency_window,
        agent_check_interval: config.agent_check_interval,
        agent_check_failures: config.agent_check_failures,
        join: config.join.is_some(),
        ..NodeConfig::default()
    }
}

impl Node {
    /// Open the stores in the data directory, start Raft, and, on an empty data directory,
    /// initialise a one-member cluster of this node.
    pub async fn start(config: Config, addr: NodeAddr) -> Result<Node, StartError> {
        let dir = config.data_dir.clone();
        let (log, sm) = switchyard_node::storage::open(&dir, config.history_events)?;
        let (secret, created) = cluster_secret(&config)?;
        // What this node trusts when it talks to other members: the system's roots, the peer
        // CA and --ca-cert; what it presents: its peer certificate.
        let cas: Vec<&std::path::Path> = config
            .peer_ca()
            .into_iter()
            .chain(config.ca_cert.as_deref())
            .collect();
        let identity = config
            .peer_tls
            .as_ref()
            .map(|t| (t.files().cert.as_path(), t.files().key.as_path()));
        let tls = switchyard_tls::client_config(&cas, identity)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let peers = PeerClient::new(
            secret.clone(),
            crate::network::peer_body_limit(config.max_body_bytes),
            tls,
            config.peer_tls.is_some(),
        )
        .with_snapshot_chunk(config.snapshot_chunk_bytes);
        let close = {
            let (log, sm) = (log.clone(), sm.clone());
            Box::new(move || {
                log.close();
                sm.close();
            })
        };
        let parts = Parts {
            network: PeerNetwork::new(peers.clone()),
            log,
            sm,
            transport: Arc::new(HttpTransport::new(peers.clone(), config.api_scheme())),
            clock: Arc::new(SystemClock),
            agent_probe: Arc::new(HttpAgentProbe::new(config.agent_check_interval)),
            close: Some(close),
        };
        let inner = switchyard_node::Node::start(node_config(&config), addr, parts).await?;
        let m = inner.raft.metrics().borrow_watched().clone();
        if created && m.membership_config.nodes().count() > 1 {
            // A member of a cluster made before cluster secrets: a secret of its own would
            // lock it out of its peers.
            let _ = std::fs::remove_file(ClusterSecret::path(&dir));
            inner.shutdown().await;
            return Err(StartError::Secret(format!(
                "this node belongs to a cluster of {} members that has no cluster secret yet: \
                 make one with `switchyard cluster join-token --new` and start every member \
                 once with `--join-token TOKEN`",
                m.membership_config.nodes().count()
            )));
        }
        Ok(Node {
            inner: Arc::new(inner),
            config,
            peers,
            peer_auth: Verifier::new(secret),
        })
    }

    /// The server's side of a node started elsewhere, on parts of the caller's choosing (the
    /// deterministic simulation of `switchyard-testing` starts its nodes on an in-memory
    /// network, disk and clock): `config` gives what the API reads (device types, limits,
    /// tokens, watch settings). It has a cluster secret of its own that no peer knows, so it
    /// serves no peer listener and joins no cluster over HTTP.
    pub fn embedded(inner: Arc<switchyard_node::Node>, config: Config) -> Node {
        let secret = ClusterSecret::generate();
        let peers = PeerClient::new(
            secret.clone(),
            crate::network::peer_body_limit(config.max_body_bytes),
            (*switchyard_tls::system_client_config()).clone(),
            false,
        );
        Node {
            inner,
            config,
            peers,
            peer_auth: Verifier::new(secret),
        }
    }

    /// The node itself, for the tasks that run beside the listeners (scheduler, agent check).
    pub fn inner(&self) -> &Arc<switchyard_node::Node> {
        &self.inner
    }

    /// The join token of this node's cluster (what `switchyard cluster join-token` prints).
    pub fn join_token(&self) -> &str {
        self.peer_auth.secret().token()
    }

    /// The client that signs requests to other members.
    pub fn peer_client(&self) -> &PeerClient {
        &self.peers
    }
}
