//! The nodes' client API, served over in-memory connections: each node that is up answers
//! the very router `switchyard serve` puts on its API listener (`switchyard_server::embedded_api`:
//! the same handlers, validation, authentication and watch sessions), and
//! [`switchyard_client::Client`] reaches it through [`Endpoints`], its
//! [`Connector`]. A node's router is built on the first connection to it; a crash closes its
//! connections and ends its watch sessions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use switchyard_client::connect::{BoxIo, ConnectFuture, Connector};
use switchyard_node::Node;
use tokio_util::sync::CancellationToken;

use crate::net::{FAILURE_LATENCY, LATENCY};

struct Endpoint {
    node: Arc<Node>,
    app: Option<axum::Router>,
    /// Cancelled when the node crashes.
    stop: CancellationToken,
}

/// The API endpoints of a simulation's nodes, by address (`n1`, `n2`, ...). Clones share them.
#[derive(Clone)]
pub struct Endpoints {
    table: Arc<Mutex<BTreeMap<String, Endpoint>>>,
    /// The server settings every node's API runs with.
    config: Arc<switchyard_server::Config>,
}

impl Endpoints {
    pub fn new(config: switchyard_server::Config) -> Self {
        Self {
            table: Default::default(),
            config: Arc::new(config),
        }
    }

    /// Node `node` answers at `addr` from now on.
    pub(crate) fn up(&self, addr: &str, node: Arc<Node>) {
        let old = self.table.lock().unwrap().insert(
            addr.to_string(),
            Endpoint {
                node,
                app: None,
                stop: CancellationToken::new(),
            },
        );
        if let Some(old) = old {
            old.stop.cancel();
        }
    }

    /// Nothing answers at `addr` any more; its connections close.
    pub(crate) fn down(&self, addr: &str) {
        if let Some(old) = self.table.lock().unwrap().remove(addr) {
            old.stop.cancel();
        }
    }

    /// The router of the node at `addr`, built on first use.
    fn app(&self, addr: &str) -> Option<(axum::Router, CancellationToken)> {
        let mut table = self.table.lock().unwrap();
        let e = table.get_mut(addr)?;
        if e.app.is_none() {
            let mut config = (*self.config).clone();
            config.node_id = e.node.id;
            config.advertise_api = Some(addr.to_string());
            config.advertise_peer = Some(addr.to_string());
            let node = switchyard_server::Node::embedded(e.node.clone(), config);
            e.app = Some(switchyard_server::embedded_api(
                Arc::new(node),
                e.stop.clone(),
            ));
        }
        Some((e.app.clone()?, e.stop.clone()))
    }
}

impl Connector for Endpoints {
    fn connect<'a>(&'a self, authority: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(LATENCY).await;
            let Some((app, stop)) = self.app(authority) else {
                tokio::time::sleep(FAILURE_LATENCY).await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("{authority} is down"),
                ));
            };
            let (client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(serve(server, app, stop));
            Ok(Box::new(client) as BoxIo)
        })
    }
}

/// Serve one connection until it closes or the node crashes.
async fn serve(io: tokio::io::DuplexStream, app: axum::Router, stop: CancellationToken) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .with_upgrades();
    tokio::select! {
        biased;
        _ = stop.cancelled() => {}
        _ = conn => {}
    }
}
