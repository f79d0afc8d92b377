//! The switchyard server: one node's start-up, serving and shutdown.
//!
//! [`start`] is the linear start-up script: open the stores, start Raft (a one-member cluster
//! on an empty data directory), start the leader-side [`scheduler`], serve the client API
//! ([`api::router`]) and peer RPC ([`network::peer_router`]) on their listeners. [`Server::stop`]
//! is the teardown: stop accepting, end watch sessions, stop the scheduler, shut Raft down,
//! close the stores.
//!
//! Data flow of a write: HTTP handler → [`node::Node::write`] stamps the leader's time →
//! openraft appends to the log (group-committed, fsynced by the log writer) → commit → the
//! state machine applies it through `switchyard_core::apply` → the reply goes back to the
//! handler, and the events go into the history that every watch session reads.

pub mod api;
pub mod auth;
pub mod cluster_config;
pub mod config;
mod dashboard;
mod docs_page;
pub mod error;
mod error_shape;
pub mod faces;
mod gate;
pub mod listen;
mod metrics_help;
pub mod network;
pub mod node;
pub mod peer_auth;
pub mod routes;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use openraft::async_runtime::watch::WatchReceiver;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchyard_store::NodeAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use node::{Node, StartError};
pub use switchyard_core as core;

/// The two listeners of a node.
pub struct Listeners {
    /// Client API (`/v1/...`).
    pub api: TcpListener,
    /// Peer RPC (Raft messages).
    pub peer: TcpListener,
    /// The seed-000 `mv` face, if enabled.
    pub mv: Option<TcpListener>,
    /// The seed-001 Altair beer-tap face, if enabled (it is on the API listener too).
    pub altair: Option<TcpListener>,
    /// The seed-003 TestbedOS face, if enabled.
    pub testbed: Option<TcpListener>,
    /// The seed-004 funkytown reporter face, if enabled.
    pub funkytown: Option<TcpListener>,
}

impl Listeners {
    /// Bind both addresses; an error names the one that could not be bound.
    pub async fn bind(api: &str, peer: &str) -> std::io::Result<Self> {
        let bind = async |addr: &str, what: &str| {
            TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
            })
        };
        Ok(Self {
            api: bind(api, "the client API, --listen").await?,
            peer: bind(peer, "peer RPC, --peer-listen").await?,
            mv: None,
            altair: None,
            testbed: None,
            funkytown: None,
        })
    }
}

/// A running server.
pub struct Server {
    pub api_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// How long shutdown waits for open connections before closing them.
const DRAIN: Duration = Duration::from_secs(5);

/// How often the metrics' histograms are folded into their summaries.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle());
            metrics_help::describe();
            // A histogram keeps every sample until upkeep folds it into its summary (a scrape
            // does too): without this, a node nobody scrapes grows by each request's sample.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be started at start-up");
            handle
        })
        .clone()
}

/// Start a node on the given listeners.
pub async fn start(mut config: Config, listeners: Listeners) -> Result<Server, StartError> {
    switchyard_tls::install_provider();
    if listeners.mv.is_some() && !config.devices.iter().any(|(n, _)| *n == config.mv_device) {
        config.devices.push((config.mv_device.clone(), "mv".into()));
    }
    let api_addr = listeners
        .api
        .local_addr()
        .map_err(|e| StartError::Listen(e.to_string()))?;
    let peer_addr = listeners
        .peer
        .local_addr()
        .map_err(|e| StartError::Listen(e.to_string()))?;
    let addr = NodeAddr {
        api: config
            .advertise_api
            .clone()
            .unwrap_or_else(|| api_addr.to_string()),
        peer: config
            .advertise_peer
            .clone()
            .unwrap_or_else(|| peer_addr.to_string()),
    };
    tracing::info!(node_id = config.node_id, data_dir = %config.data_dir.display(), "starting node");
    let (addr_api, addr_peer) = (addr.api.clone(), addr.peer.clone());
    // The recorder first: the node and its log writer register their metric handles as they
    // start, and a handle registered before the recorder exists records nothing.
    prometheus();
    let node = Arc::new(Node::start(config, addr).await?);
    let shutdown = CancellationToken::new();

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(switchyard_node::scheduler::run(
        node.inner().clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(switchyard_node::agent_check::run(
        node.inner().clone(),
        shutdown.clone(),
    )));
    if let Some(path) = node.config.cluster_config_file.clone() {
        tasks.push(tokio::spawn(cluster_config::run(
            node.clone(),
            path,
            shutdown.clone(),
        )));
    }
    if let Some(target) = node.config.join.clone() {
        let me = node
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .nodes()
            .any(|(id, _)| *id == node.id);
        if !me {
            let join = switchyard_types::JoinRequest {
                node_id: node.id,
                api: addr_api.clone(),
                peer: addr_peer.clone(),
            };
            tasks.push(tokio::spawn(join_cluster(
                node.peer_client().clone(),
                target,
                join,
                shutdown.clone(),
            )));
        }
    }
    if !node.config.devices.is_empty() {
        tasks.push(tokio::spawn(create_configured_devices(
            node.clone(),
            shutdown.clone(),
        )));
    }

    // Every listener is served the same way: the browser guard, connection limits, and a
    // graceful end on shutdown (crate::listen).
    let own_hosts = vec![addr_api.clone(), addr_peer.clone()];
    let mut serve = |l: TcpListener,
                     app: Router,
                     name: &'static str,
                     style: auth::Style,
                     tls: Option<Arc<switchyard_tls::ServerTls>>| {
        let local = l
            .local_addr()
            .map_err(|e| StartError::Listen(e.to_string()))?;
        let app = listen::guard(
            app,
            node.config.browser.clone(),
            own_hosts.clone(),
            local,
            style,
        );
        tasks.push(tokio::spawn(listen::serve(
            l,
            app,
            name,
            style,
            node.config.limits,
            tls,
            shutdown.clone(),
        )));
        Ok::<_, StartError>(())
    };
    serve(
        listeners.peer,
        network::peer_router(node.clone()),
        "peer",
        auth::Style::V1,
        node.config.peer_tls.clone(),
    )?;

    let state = api_state(node.clone(), shutdown.clone());
    let faces = [
        listeners.mv.map(|l| {
            let face = faces::mv::router(state.clone(), node.config.mv_device.clone());
            (l, face, "mv", auth::Style::FastApi)
        }),
        listeners.altair.map(|l| {
            let face = faces::altair::router(state.clone());
            (l, face, "Altair beer-tap", auth::Style::Altair)
        }),
        listeners.testbed.map(|l| {
            // The original trims a trailing slash before routing.
            let trimmed = tower::Layer::layer(
                &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
                faces::testbed::router(state.clone()),
            );
            let face = Router::new().fallback_service(trimmed);
            (l, face, "TestbedOS", auth::Style::Testbed)
        }),
        listeners.funkytown.map(|l| {
            let face = faces::funkytown::router(state.clone());
            (l, face, "funkytown reporter", auth::Style::Text)
        }),
    ];
    for (l, face, name, style) in faces.into_iter().flatten() {
        tracing::info!(addr = ?l.local_addr().ok(), face = name, "serving a compatibility face");
        serve(l, face, name, style, node.config.tls.clone())?;
    }
    serve(
        listeners.api,
        api::router(state),
        "API",
        auth::Style::V1,
        node.config.tls.clone(),
    )?;
    tracing::info!(api = %api_addr, peer = %peer_addr, "serving");
    Ok(Server {
        api_addr,
        peer_addr,
        node,
        shutdown,
        tasks,
    })
}

/// What the API's and the faces' handlers share.
fn api_state(node: Arc<Node>, shutdown: CancellationToken) -> api::Shared {
    Arc::new(api::AppState {
        node,
        shutdown,
        prometheus: prometheus(),
        lease_claims: Default::default(),
    })
}

/// The client API of `node` as the API listener of [`start`] serves it (the same routes,
/// browser guard and authentication), for a caller that serves it without a listener of its
/// own: the deterministic simulation of `switchyard-testing` serves it over in-memory
/// connections. The node's own host names are its configured `advertise_api` and
/// `advertise_peer`. Watch sessions end when `shutdown` is cancelled.
pub fn embedded_api(node: Arc<Node>, shutdown: CancellationToken) -> Router {
    let own_hosts: Vec<String> = [&node.config.advertise_api, &node.config.advertise_peer]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    listen::guard(
        api::router(api_state(node.clone(), shutdown)),
        node.config.browser.clone(),
        own_hosts,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        auth::Style::V1,
    )
}

/// Ask the cluster at `target` to add this node, following leader hints, until it has.
async fn join_cluster(
    peers: network::PeerClient,
    mut target: String,
    join: switchyard_types::JoinRequest,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tracing::info!(%target, "asking to join the cluster");
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = peers.join(&target, &join).timeout(Duration::from_secs(60)).send() => r,
        };
        match outcome {
            Ok(r) if r.status().is_success() => {
                tracing::info!(%target, "joined the cluster");
                return;
            }
            Ok(r) => {
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                match body["error"]["details"]["leader"]["api"].as_str() {
                    Some(api) if status == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                        tracing::info!(leader = api, "following the leader hint");
                        let scheme = if target.starts_with("https://") {
                            "https"
                        } else {
                            "http"
                        };
                        target = format!("{scheme}://{api}");
                        continue;
                    }
                    _ => {
                        tracing::warn!(%status, error = %body["error"]["message"], "join refused; retrying")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot reach the cluster to join; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Create the devices named in the config that do not exist yet, once a leader is known (a
/// follower's write goes to the leader; a device another node created first is a conflict).
async fn create_configured_devices(node: Arc<Node>, shutdown: CancellationToken) {
    use switchyard_core::devices::DeviceCommand;
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = node.wait_for_leader(Duration::from_secs(24 * 3600)) => if r.is_err() { return },
    }
    for (name, ty) in &node.config.devices {
        if node.view.read(|s| s.devices.get(name).is_some()) {
            continue;
        }
        let def = node.config.device_types[ty].clone();
        let cmd = switchyard_core::Command::Devices(DeviceCommand::Create {
            name: name.clone(),
            def,
        });
        match node.write(cmd, None).await {
            Ok(_) => tracing::info!(device = %name, r#type = %ty, "created device from config"),
            Err(switchyard_node::NodeError::Refused(switchyard_core::CommandError::Conflict {
                ..
            })) => {}
            Err(e) => {
                tracing::warn!(device = %name, error = %e, "could not create device from config")
            }
        }
    }
}

impl Server {
    /// Base URL of the client API, e.g. `http://127.0.0.1:7700` (`https://` with TLS on).
    pub fn url(&self) -> String {
        format!("{}://{}", self.node.config.api_scheme(), self.api_addr)
    }

    /// Read the TLS certificates and keys of every listener again (the binary does on SIGHUP);
    /// new connections get them, open ones keep theirs. On an error the old ones stay.
    pub fn reload_tls(&self) -> Result<(), String> {
        self.node.config.reload_tls()
    }

    /// A token that stops the server when cancelled (stop still has to be awaited).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful shutdown: stop accepting, end sessions, let requests in flight finish (up to a
    /// deadline), stop Raft, close the stores.
    pub async fn stop(self) {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(DRAIN, all).await.is_err() {
            tracing::warn!("connections still open after {DRAIN:?}; closing them");
        }
        self.node.shutdown().await;
        tracing::info!("stopped");
    }
}
