//! The checked server configuration. The binary parses flags, environment and the TOML file
//! into a raw form and validates it once into [`Config`]; everything after start-up takes this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_core::devices::DeviceType;
use switchyard_core::devices::types::builtin;

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's id in the cluster (default 1).
    pub node_id: u64,
    /// Where the Raft log (`raft-log/`) and the snapshot (`snapshot`) live.
    pub data_dir: PathBuf,
    /// Client API address other nodes and clients should use (host:port); defaults to the
    /// bound API address.
    pub advertise_api: Option<String>,
    /// Peer RPC address other nodes should use; defaults to the bound peer address.
    pub advertise_peer: Option<String>,
    /// How many recent events are kept for watchers to resume from.
    pub history_events: usize,
    /// A watcher this many events behind the head is cut off with a resumable `lagging` error.
    pub watch_max_lag: usize,
    /// How often an idle watcher gets a bookmark.
    pub watch_bookmark_interval: Duration,
    /// A watcher whose socket does not take a message within this time is cut off (`lagging`).
    pub watch_send_timeout: Duration,
    /// Build a snapshot (and purge the log before it) after this many applied entries.
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot, so a follower a little behind catches up from the
    /// log rather than a whole snapshot.
    pub snapshot_keep_logs: u64,
    /// How long a write waits to be committed before answering 504.
    pub write_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Device types: the built-in ones plus those loaded from `--device-types` files.
    pub device_types: BTreeMap<String, DeviceType>,
    /// Devices to create at start if they do not exist: (name, type).
    pub devices: Vec<(String, String)>,
    /// The device the `mv` face serves (created with type `mv` if missing).
    pub mv_device: String,
    /// Client URL of a cluster member to join from an empty data directory (the node asks it to
    /// add this node as a learner, then a voter). `None`: an empty data directory starts a
    /// one-member cluster. A restarted member needs none.
    pub join: Option<String>,
    /// The cluster's join token: the secret every peer request is signed with. A node that
    /// joins needs it; a new cluster without one creates one (kept in the data directory, as
    /// is a given one).
    pub join_token: Option<crate::peer_auth::ClusterSecret>,
    /// TLS of the client API and every face (`--tls-cert`, `--tls-key`); `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<switchyard_tls::ServerTls>>,
    /// Mutual TLS between peers (`--peer-ca`, `--peer-cert`, `--peer-key`): the peer listener
    /// serves only clients with a certificate of its client CA (the peer CA), and this node
    /// presents the same certificate to the others.
    pub peer_tls: Option<std::sync::Arc<switchyard_tls::ServerTls>>,
    /// More CA certificates this node trusts when it talks to other members' client API (a
    /// join), besides the system's and the peer CA.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Largest snapshot piece sent to a peer in one request (1 KiB to half the peer body
    /// limit; default 4 MiB).
    pub snapshot_chunk_bytes: usize,
    /// Connection limits of every listener (header-read and idle timeouts, connection cap).
    pub limits: crate::listen::Limits,
    /// Cross-origin and DNS-rebinding guard of every listener: the origins and host names
    /// allowed besides the node's own.
    pub browser: std::sync::Arc<crate::listen::BrowserRules>,
    /// Bearer-token auth; `None`: off.
    pub auth: Option<std::sync::Arc<crate::auth::Auth>>,
    /// A follower hands writes (and membership changes) to the leader and answers with the
    /// leader's result; when off, it answers 503 naming the leader instead.
    pub forward_writes: bool,
    /// The leader answers a linearizable read from its lease, without a heartbeat round.
    pub lease_reads: bool,
    /// How often the leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// A follower that hears from no leader for a random time between this and 1.5 times this
    /// starts an election. At least 5 heartbeat intervals.
    pub election_timeout: Duration,
    /// Most bytes of output kept per job; beyond it the oldest lines are dropped.
    pub job_log_max_bytes: u64,
    /// The active agent check: how often the leader probes each agent that gave a health URL,
    /// and after how many failed probes in a row it marks the agent lost.
    pub agent_check_interval: Duration,
    pub agent_check_failures: u32,
    /// Where to keep the cluster configuration document (seed 003's `kvm-compose-config.json`):
    /// rewritten whenever the live agents or their host documents change.
    pub cluster_config_file: Option<PathBuf>,
    /// Default argv templates of deployment actions (`[actions.NAME] command = [...]`).
    pub deployment_actions: BTreeMap<String, Vec<String>>,
    /// The port seed-003 cluster clients listen on: a client that joins through
    /// `POST /api/cluster` is checked at `http://{ip}:{port}/api/config/status`.
    pub testbed_client_port: u16,
    /// How long a finished job (and its log) is kept; a run's jobs follow the run instead.
    pub job_retention: Duration,
    /// Most cells one run may expand to.
    pub run_max_cells: usize,
    /// How long a finished run (its jobs and logs too) is kept, and how many finished runs.
    pub run_retention: Duration,
    pub run_keep: u32,
}

impl Config {
    /// Defaults for a node whose data lives in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let node = switchyard_node::NodeConfig::default();
        Self {
            node_id: 1,
            data_dir: data_dir.into(),
            advertise_api: None,
            advertise_peer: None,
            history_events: 20_000,
            watch_max_lag: 10_000,
            watch_bookmark_interval: Duration::from_secs(10),
            watch_send_timeout: Duration::from_secs(10),
            snapshot_logs: node.snapshot_logs,
            snapshot_keep_logs: node.snapshot_keep_logs,
            write_timeout: node.write_timeout,
            max_body_bytes: 1 << 20,
            idempotency_window: node.idempotency_window,
            device_types: builtin().into_iter().map(|t| (t.name.clone(), t)).collect(),
            devices: Vec::new(),
            mv_device: "mv".into(),
            auth: None,
            join: None,
            join_token: None,
            limits: Default::default(),
            snapshot_chunk_bytes: crate::network::SNAPSHOT_CHUNK,
            tls: None,
            peer_tls: None,
            ca_cert: None,
            browser: Default::default(),
            forward_writes: node.forward_writes,
            lease_reads: node.lease_reads,
            heartbeat_interval: node.heartbeat_interval,
            election_timeout: node.election_timeout,
            job_log_max_bytes: switchyard_core::jobs::DEFAULT_LOG_CAP_BYTES,
            agent_check_interval: node.agent_check_interval,
            agent_check_failures: node.agent_check_failures,
            deployment_actions: BTreeMap::new(),
            cluster_config_file: None,
            testbed_client_port: 3355,
            job_retention: Duration::from_millis(
                switchyard_core::jobs::DEFAULT_RETENTION_MS as u64,
            ),
            run_max_cells: 10_000,
            run_retention: Duration::from_secs(7 * 24 * 60 * 60),
            run_keep: 100,
        }
    }

    /// Read every listener's TLS files again; on an error the old ones stay.
    pub fn reload_tls(&self) -> Result<(), String> {
        for tls in self.tls.iter().chain(self.peer_tls.iter()) {
            tls.reload().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// `https` when the client API (and every face) speaks TLS, else `http`.
    pub fn api_scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The peer CA, when peers talk mutual TLS.
    pub fn peer_ca(&self) -> Option<&Path> {
        self.peer_tls
            .as_ref()
            .and_then(|t| t.files().client_ca.as_deref())
    }

    /// [`Config::job_retention`] in milliseconds, as stamped on the jobs it queues.
    pub fn job_retention_ms(&self) -> i64 {
        i64::try_from(self.job_retention.as_millis()).unwrap_or(i64::MAX)
    }

    /// Add the device types of a type file; a name already taken is an error.
    pub fn load_device_types(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let def = DeviceType::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if self.device_types.contains_key(&def.name) {
            return Err(format!(
                "{}: name: a device type {:?} is already defined (built-in or in another file)",
                path.display(),
                def.name
            ));
        }
        self.device_types.insert(def.name.clone(), def);
        Ok(())
    }

    /// Check the values that can be wrong; the message names the setting and what is allowed.
    pub fn validate(self) -> Result<Self, String> {
        if self.node_id == 0 {
            return Err("node_id: must be a positive integer".into());
        }
        if self.history_events == 0 {
            return Err("history_events: must be at least 1".into());
        }
        if self.watch_max_lag == 0 {
            return Err("watch_max_lag: must be at least 1".into());
        }
        if self.watch_bookmark_interval.is_zero() {
            return Err("watch_bookmark_interval: must be more than 0 seconds".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes: must be at least 1024".into());
        }
        if self.snapshot_logs < 100 {
            return Err("snapshot_logs: must be at least 100".into());
        }
        if self.idempotency_window.is_zero()
            || self.idempotency_window > Duration::from_secs(30 * 86_400)
        {
            return Err(
                "idempotency_window: must be more than 0 seconds and at most 30 days".into(),
            );
        }
        if switchyard_core::jobs::validate_retention(self.job_retention_ms()).is_err() {
            return Err(format!(
                "job_retention: must be more than 0 and at most {} days",
                switchyard_core::jobs::MAX_RETENTION_MS / 86_400_000
            ));
        }
        if let Err(e) = switchyard_core::devices::validate_name(&self.mv_device) {
            return Err(format!("mv_device: {e}"));
        }
        for (name, ty) in &self.devices {
            if let Err(e) = switchyard_core::devices::validate_name(name) {
                return Err(format!("devices: {e}"));
            }
            if !self.device_types.contains_key(ty) {
                return Err(format!(
                    "devices: {name:?} has unknown type {ty:?}; types: {}",
                    self.device_types
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if self.heartbeat_interval < Duration::from_millis(10) {
            return Err("heartbeat_interval: must be at least 10 ms".into());
        }
        if self.election_timeout < self.heartbeat_interval * 5 {
            return Err(format!(
                "election_timeout: must be at least 5 heartbeat intervals ({:?}); got {:?}",
                self.heartbeat_interval * 5,
                self.election_timeout
            ));
        }
        if !(1024..=1 << 30).contains(&self.job_log_max_bytes) {
            return Err("job_log_max_bytes: must be 1 KiB to 1 GiB".into());
        }
        if self.agent_check_interval < Duration::from_millis(100) || self.agent_check_failures == 0
        {
            return Err(
                "agent_check_interval: must be at least 100 ms (agent_check_failures at least 1)"
                    .into(),
            );
        }
        for (name, argv) in &self.deployment_actions {
            if let Err(e) = switchyard_core::jobs::validate_name("actions", name) {
                return Err(format!("actions.{name}: {e}"));
            }
            if argv.is_empty() || argv[0].is_empty() {
                return Err(format!(
                    "actions.{name}.command: must be a non-empty argv template"
                ));
            }
        }
        if self.snapshot_chunk_bytes < 1024 {
            return Err("snapshot_chunk_bytes: must be at least 1024".into());
        }
        let l = &self.limits;
        if l.header_read_timeout < Duration::from_millis(100)
            || l.header_read_timeout > Duration::from_secs(3600)
        {
            return Err("header_read_timeout: must be 0.1 to 3600 seconds".into());
        }
        if l.idle_timeout < Duration::from_millis(100)
            || l.idle_timeout > Duration::from_secs(86_400)
        {
            return Err("idle_timeout: must be 0.1 to 86400 seconds".into());
        }
        if !(1..=1_000_000).contains(&l.max_connections) {
            return Err("max_connections: must be 1 to 1000000".into());
        }
        if self.write_timeout.is_zero() {
            return Err("write_timeout: must be more than 0 seconds".into());
        }
        Ok(self)
    }
}
