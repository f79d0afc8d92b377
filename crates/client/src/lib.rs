//! Typed client of the switchyard `/v1` API.
//!
//! [`Client`] wraps the REST routes; [`Client::watch`] opens a [`Watch`], a stream of events
//! that reconnects by itself after a dropped connection and resumes from the last revision it
//! delivered completely, so the caller sees every event once, in order. [`DeviceHandle`]
//! (`client.device_handle("sw1").command("switch_on").duration(2.0).wait()`) drives one device.
//! [`connect`]: a client over connections of the caller's making instead of TCP (the
//! deterministic cluster of `switchyard-testing` uses it).

pub mod connect;
mod device;
mod jobs;
mod watch;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use switchyard_types::{
    Account, AccountList, Cluster, Device, DeviceCommandRequest, DeviceHistory, DeviceList,
    ErrorBody, ErrorInfo, Health, Started, Status, Transfer,
};

pub use device::{CommandBuilder, DeviceHandle};
pub use jobs::LogFollower;
pub use watch::{Watch, WatchItem};

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error body.
    #[error("{status}: {} ({})", .error.message, .error.code)]
    Api {
        status: StatusCode,
        error: ErrorInfo,
    },
    /// The request did not get an answer.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// A [`connect::Connector`] could not open a connection: nothing was sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// A connection of a [`connect::Connector`] failed after the request was sent.
    #[error("connection failed: {0}")]
    Io(String),
    /// The server's answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A watch could not resume: its revision is older than the server's history.
    #[error(
        "watch resume point is compacted; re-read state and watch from revision {compact_revision} or later"
    )]
    Compacted { compact_revision: u64 },
    /// A watch ended for another reason.
    #[error("watch: {0}")]
    Watch(String),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
}

/// What starting a device command gave.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandStarted {
    /// A transition started.
    Started(Started),
    /// The command was a no-op; the device as it is.
    Noop(Device),
}

impl Error {
    /// The API error code (`not_found`, `conflict`, ...), if the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }
}

/// Signs a request: (method, path, body) to a header (name, value).
pub type Signer = dyn Fn(&str, &str, &[u8]) -> (&'static str, String) + Send + Sync;

/// A client of a switchyard server or cluster.
///
/// Given several addresses (`Client::new("http://a:7700,http://b:7700")`), it sends each
/// request to the node that last answered, and moves on to the next one when a node cannot be
/// reached or answers 503 (no leader yet, shutting down), following a 503's leader hint. It
/// retries a request only where it cannot have been carried out: the connection was refused,
/// or the server said 503. A write whose answer was lost is not retried: it may have been
/// applied (send an `Idempotency-Key` and retry it yourself to find out).
#[derive(Clone, Debug)]
pub struct Client {
    bases: std::sync::Arc<Vec<String>>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::Client,
    token: Option<String>,
    failover: Duration,
    /// What `https://` and `wss://` trust (none: the system's roots).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Connections come from here instead of TCP.
    connector: Option<connect::Shared>,
}

/// A reqwest client over rustls (ring), trusting `tls` or else the system's roots.
pub fn http_client(
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    timeout: Option<Duration>,
) -> reqwest::Client {
    let config = match tls {
        Some(c) => (**c).clone(),
        None => (*switchyard_tls::system_client_config()).clone(),
    };
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(config);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build()
        .expect("a client with a rustls configuration builds")
}

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request keeps trying other nodes by default.
const FAILOVER: Duration = Duration::from_secs(15);

impl Client {
    /// A client for the server at `base`, e.g. `http://127.0.0.1:7700`, or for a cluster given
    /// as comma-separated URLs.
    pub fn new(base: impl Into<String>) -> Self {
        switchyard_tls::install_provider();
        let base = base.into();
        // `host:port` alone means plain HTTP, as the tap and the worker take it.
        let mut bases: Vec<String> = base
            .split(',')
            .map(|b| b.trim().trim_end_matches('/'))
            .filter(|b| !b.is_empty())
            .map(|b| {
                if b.contains("://") {
                    b.to_string()
                } else {
                    format!("http://{b}")
                }
            })
            .collect();
        if bases.is_empty() {
            bases.push(base);
        }
        Self {
            bases: std::sync::Arc::new(bases),
            current: Default::default(),
            http: http_client(None, Some(REQUEST_TIMEOUT)),
            token: None,
            failover: FAILOVER,
            tls: None,
            connector: None,
        }
    }

    /// Open every connection (requests, watches, log follows) through `connector` instead of
    /// TCP; the base URLs name the servers to it (their `host:port`).
    pub fn with_connector(mut self, connector: std::sync::Arc<dyn connect::Connector>) -> Self {
        self.connector = Some(connect::Shared(connector));
        self
    }

    /// Trust the certificates of this PEM file (a cluster's CA) for `https://` and `wss://`,
    /// besides the system's roots.
    pub fn with_ca_cert(self, path: &std::path::Path) -> Result<Self, Error> {
        let config =
            switchyard_tls::client_config(&[path], None).map_err(|e| Error::Tls(e.to_string()))?;
        Ok(self.with_tls(config))
    }

    /// Use this TLS configuration for `https://` and `wss://`.
    pub fn with_tls(mut self, config: rustls::ClientConfig) -> Self {
        let config = std::sync::Arc::new(config);
        self.http = http_client(Some(&config), Some(REQUEST_TIMEOUT));
        self.tls = Some(config);
        self
    }

    /// The TLS configuration given with [`Client::with_tls`], if any.
    pub fn tls(&self) -> Option<&std::sync::Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    /// How long a request keeps trying other nodes before giving up (default 15 s).
    pub fn with_failover(mut self, d: Duration) -> Self {
        self.failover = d;
        self
    }

    /// Every address this client knows.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    fn index(&self) -> usize {
        self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()
    }

    fn rotate(&self, from: usize) {
        let _ = self.current.compare_exchange(
            from,
            (from + 1) % self.bases.len(),
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Point at the known address whose host:port is `api`, if any.
    fn follow(&self, api: &str) -> bool {
        match self
            .bases
            .iter()
            .position(|b| b.rsplit("://").next() == Some(api))
        {
            Some(i) => {
                self.current.store(i, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Send `Authorization: Bearer token` with every request and watch.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The base URL requests go to now.
    pub fn base(&self) -> &str {
        &self.bases[self.index()]
    }

    /// Send a request and decode the JSON answer; error bodies become [`Error::Api`]. With
    /// several addresses, moves to another node as the type's documentation describes.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        idempotency_key: Option<&str>,
    ) -> Result<T, Error> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut tried = 0usize;
        loop {
            let at = self.index();
            let res = self
                .request_once(
                    &self.bases[at],
                    method.clone(),
                    path,
                    body,
                    idempotency_key,
                    None,
                )
                .await;
            // Retry only what cannot have been carried out (or is a read), at the leader the
            // server names, else at the next address.
            let (retry, leader) = match &res {
                Err(Error::Transport(e)) => (
                    e.is_connect() || (method == Method::GET && !e.is_decode()),
                    None,
                ),
                Err(Error::Connect(_)) => (true, None),
                Err(Error::Io(_)) => (method == Method::GET, None),
                Err(Error::Api { status, error }) if *status == StatusCode::SERVICE_UNAVAILABLE => {
                    (
                        true,
                        error
                            .details
                            .as_ref()
                            .and_then(|d| d["leader"]["api"].as_str()),
                    )
                }
                _ => (false, None),
            };
            if !retry || started.elapsed() >= self.failover {
                return res;
            }
            if !leader.is_some_and(|api| self.follow(api)) {
                self.rotate(at);
            }
            tried += 1;
            if tried.is_multiple_of(self.bases.len()) {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }

    async fn request_once<T: DeserializeOwned>(
        &self,
        base: &str,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        idempotency_key: Option<&str>,
        signer: Option<&Signer>,
    ) -> Result<T, Error> {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        let mut bytes = Vec::new();
        if let Some(b) = body {
            bytes = serde_json::to_vec(b).map_err(|e| Error::Decode(e.to_string()))?;
            if let Some(sign) = signer {
                let (name, value) = sign(method.as_str(), path, &bytes);
                headers.push((name, value));
            }
            headers.push(("content-type", "application/json".into()));
        }
        if let Some(k) = idempotency_key {
            headers.push(("idempotency-key", k.into()));
        }
        if let Some(t) = &self.token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let (status, bytes) = match &self.connector {
            Some(c) => {
                connect::send_all(c, base, method, path, &headers, bytes, REQUEST_TIMEOUT).await?
            }
            None => {
                let mut req = self.http.request(method, format!("{base}{path}"));
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                if body.is_some() {
                    req = req.body(bytes);
                }
                let resp = req.send().await?;
                let status = resp.status();
                (status, resp.bytes().await?)
            }
        };
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::Decode(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
        } else {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => Err(Error::Api {
                    status,
                    error: b.error,
                }),
                Err(_) => Err(Error::Decode(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))),
            }
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.request(Method::GET, path, None::<&()>, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
        key: Option<&str>,
    ) -> Result<T, Error> {
        self.request(Method::POST, path, Some(&body), key).await
    }

    pub async fn health(&self) -> Result<Health, Error> {
        self.get("/v1/health").await
    }

    pub async fn status(&self) -> Result<Status, Error> {
        self.get("/v1/status").await
    }

    pub async fn cluster(&self) -> Result<Cluster, Error> {
        self.get("/v1/cluster").await
    }

    /// The cluster as its leader sees it, with each member's reachability, last contact and
    /// lag: the node asked answers itself when it leads, else its leader's client API is
    /// asked (at the advertised address, with this client's scheme, token and TLS). When the
    /// leader cannot be asked, the node's own view, without those fields.
    pub async fn cluster_health(&self) -> Result<Cluster, Error> {
        let c = self.cluster().await?;
        let Some(leader) = c.leader.filter(|l| c.answered_by != Some(*l)) else {
            return Ok(c);
        };
        let Some(api) = c.members.iter().find(|m| m.node_id == leader) else {
            return Ok(c);
        };
        let scheme = self.base().split("://").next().unwrap_or("http");
        let base = format!("{scheme}://{}", api.api);
        match self
            .request_once::<Cluster>(&base, Method::GET, "/v1/cluster", None::<&()>, None, None)
            .await
        {
            Ok(l) if l.answered_by == l.leader => Ok(l),
            _ => Ok(c),
        }
    }

    /// Add a node (learner first, then voter); answers when it is a voter.
    /// Add a node to the cluster. The request must be signed with the cluster's join token:
    /// `sign` gives the header for (method, path, body) (the server's
    /// `peer_auth::ClusterSecret::sign` does). Sent to one node after another until one
    /// answers; a member that is not the leader hands it on.
    pub async fn add_member(
        &self,
        node_id: u64,
        api: &str,
        peer: &str,
        sign: &Signer,
    ) -> Result<Cluster, Error> {
        let body = json!({"node_id": node_id, "api": api, "peer": peer});
        let mut last = None;
        for _ in 0..self.bases.len() {
            let at = self.index();
            let res = self
                .request_once(
                    &self.bases[at],
                    Method::POST,
                    "/v1/cluster/members",
                    Some(&body),
                    None,
                    Some(sign),
                )
                .await;
            match res {
                Err(Error::Transport(e)) if e.is_connect() => {
                    self.rotate(at);
                    last = Some(Error::Transport(e));
                }
                Err(e @ Error::Connect(_)) => {
                    self.rotate(at);
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.expect("at least one address"))
    }

    /// Remove a node from the cluster.
    pub async fn remove_member(&self, node_id: u64) -> Result<Cluster, Error> {
        self.request(
            Method::DELETE,
            &format!("/v1/cluster/members/{node_id}"),
            None::<&()>,
            None,
        )
        .await
    }

    /// Hand leadership to voter `node_id`; answers once it leads.
    pub async fn transfer_leader(&self, node_id: u64) -> Result<Cluster, Error> {
        self.post("/v1/cluster/leader", json!({"node_id": node_id}), None)
            .await
    }

    /// Open an account with balance 0.
    pub async fn open_account(&self, id: &str, key: Option<&str>) -> Result<Account, Error> {
        self.post("/v1/bank/accounts", json!({"id": id}), key).await
    }

    pub async fn credit(&self, id: &str, amount: u64, key: Option<&str>) -> Result<Account, Error> {
        self.post(
            &format!("/v1/bank/accounts/{id}/credit"),
            json!({"amount": amount}),
            key,
        )
        .await
    }

    pub async fn debit(&self, id: &str, amount: u64, key: Option<&str>) -> Result<Account, Error> {
        self.post(
            &format!("/v1/bank/accounts/{id}/debit"),
            json!({"amount": amount}),
            key,
        )
        .await
    }

    pub async fn transfer(
        &self,
        from: &str,
        to: &str,
        amount: u64,
        key: Option<&str>,
    ) -> Result<Transfer, Error> {
        self.post(
            "/v1/bank/transfers",
            json!({"from": from, "to": to, "amount": amount}),
            key,
        )
        .await
    }

    pub async fn account(&self, id: &str) -> Result<Account, Error> {
        self.get(&format!("/v1/bank/accounts/{id}")).await
    }

    pub async fn accounts(&self) -> Result<Vec<Account>, Error> {
        Ok(self.get::<AccountList>("/v1/bank/accounts").await?.accounts)
    }

    /// Create a device of a type (`switch`, `mv`, or one loaded from a type file).
    pub async fn create_device(&self, name: &str, type_name: &str) -> Result<Device, Error> {
        self.post(
            "/v1/devices",
            json!({"name": name, "type": type_name}),
            None,
        )
        .await
    }

    pub async fn device(&self, name: &str) -> Result<Device, Error> {
        self.get(&format!("/v1/devices/{name}")).await
    }

    pub async fn devices(&self) -> Result<Vec<Device>, Error> {
        Ok(self.get::<DeviceList>("/v1/devices").await?.devices)
    }

    pub async fn delete_device(&self, name: &str) -> Result<(), Error> {
        self.request::<serde_json::Value>(
            Method::DELETE,
            &format!("/v1/devices/{name}"),
            None::<&()>,
            None,
        )
        .await
        .map(|_| ())
    }

    /// Start a device command without waiting: the transition, or `None` when the command was
    /// a no-op (the device is returned instead).
    pub async fn device_command(
        &self,
        name: &str,
        command: &str,
        req: &DeviceCommandRequest,
    ) -> Result<CommandStarted, Error> {
        let req = DeviceCommandRequest {
            wait: false,
            ..req.clone()
        };
        let v: serde_json::Value = self
            .request(
                Method::POST,
                &format!("/v1/devices/{name}/commands/{command}"),
                Some(&req),
                None,
            )
            .await?;
        if v.get("transition").is_some_and(|t| !t.is_null()) && v.get("device").is_some() {
            let st: Started =
                serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))?;
            Ok(CommandStarted::Started(st))
        } else {
            let d: Device = serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))?;
            Ok(CommandStarted::Noop(d))
        }
    }

    /// Run a device command and wait until its transition has ended (server-side wait).
    pub async fn device_command_wait(
        &self,
        name: &str,
        command: &str,
        req: &DeviceCommandRequest,
    ) -> Result<Device, Error> {
        let req = DeviceCommandRequest {
            wait: true,
            ..req.clone()
        };
        self.request(
            Method::POST,
            &format!("/v1/devices/{name}/commands/{command}"),
            Some(&req),
            None,
        )
        .await
    }

    pub async fn abort_device(&self, name: &str) -> Result<Device, Error> {
        self.post(&format!("/v1/devices/{name}/abort"), json!({}), None)
            .await
    }

    /// Back to the type's initial attributes, aborting anything in flight.
    pub async fn reset_device(&self, name: &str) -> Result<Device, Error> {
        self.post(&format!("/v1/devices/{name}/reset"), json!({}), None)
            .await
    }

    pub async fn device_history(
        &self,
        name: &str,
        limit: usize,
        before: Option<u64>,
    ) -> Result<DeviceHistory, Error> {
        let mut path = format!("/v1/devices/{name}/history?limit={limit}");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        self.get(&path).await
    }

    /// Wait until the device's primary attribute is `state` and nothing is in flight, driven
    /// by the watch stream (no polling); returns the device, or [`Error::Timeout`].
    pub async fn wait_for_state(
        &self,
        name: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<Device, Error> {
        let done = |d: &Device| d.state.as_deref() == Some(state) && d.transition.is_none();
        let work = async {
            let mut w = self.watch(&format!("devices/{name}"), None).await?;
            let d = self.device(name).await?;
            if done(&d) {
                return Ok(d);
            }
            loop {
                if let WatchItem::Event(e) = w.next().await? {
                    let d: Device = serde_json::from_value(e.event["device"].clone())
                        .map_err(|e| Error::Decode(e.to_string()))?;
                    if done(&d) {
                        return Ok(d);
                    }
                }
            }
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            Error::Timeout(format!("{name} did not reach {state} within {timeout:?}"))
        })?
    }

    /// Watch events whose topic starts with `prefix`, after revision `from`, or from the
    /// server's current revision when `from` is `None` (read first, so that a reconnect always
    /// has a revision to resume from).
    pub async fn watch(&self, prefix: &str, from: Option<u64>) -> Result<Watch, Error> {
        let from = match from {
            Some(r) => r,
            None => self.status().await?.revision,
        };
        Watch::connect(
            self.bases.clone(),
            self.index(),
            prefix,
            from,
            self.token.clone(),
            self.tls.clone(),
            self.connector.clone(),
        )
        .await
    }
}
