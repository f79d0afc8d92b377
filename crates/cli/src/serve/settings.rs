//! The settings of `switchyard serve`, declared once: each is one field of [`ServeArgs`], whose
//! doc comment is its `--help`, and which is at the same time a flag, a `SWITCHYARD_*`
//! environment variable and a key of the TOML file. They are layered (the server's defaults,
//! then the TOML file, then the environment, then the flags: [`ServeArgs::layered`]) and
//! checked in one step ([`ServeArgs::validate`]) into the server's checked
//! [`Config`](switchyard_server::Config) and the binary's own [`Settings`] (listeners, logs,
//! the local worker).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use switchyard_server::Config;

/// Settings of `switchyard serve`. Each is a flag, a `SWITCHYARD_*` environment variable and
/// a key of the TOML file given with `--config` (flag beats environment beats file beats
/// default).
#[derive(Debug, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case, e.g. `data_dir`).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Check the settings (defaults, then the file, then the environment, then the flags),
    /// print the ones given as TOML (the join token hidden), and exit without serving.
    #[arg(long)]
    #[serde(skip)]
    pub check: bool,
    /// Once every listener serves, print one JSON line on stdout with the bound addresses:
    /// `{"node_id", "api", "peer", "mv", "altair", "testbed", "funkytown"}` (URLs; a face not
    /// served is null), for scripts and test fixtures that start the server on port 0.
    #[arg(long)]
    #[serde(skip)]
    pub ready_json: bool,
    /// Data directory [default: ./data]
    #[arg(long, env = "SWITCHYARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Client API address [default: 127.0.0.1:7700]
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    pub listen: Option<String>,
    /// Peer RPC address [default: 127.0.0.1:7701]
    #[arg(long, env = "SWITCHYARD_PEER_LISTEN")]
    pub peer_listen: Option<String>,
    /// This node's id [default: 1]
    #[arg(long, env = "SWITCHYARD_NODE_ID")]
    pub node_id: Option<u64>,
    /// Client API address announced to the cluster [default: the bound --listen address]
    #[arg(long, env = "SWITCHYARD_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// Peer address announced to the cluster [default: the bound --peer-listen address]
    #[arg(long, env = "SWITCHYARD_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Events kept for watchers to resume from [default: 20000]
    #[arg(long, env = "SWITCHYARD_HISTORY_EVENTS")]
    pub history_events: Option<usize>,
    /// A watcher this many events behind is cut off with a resumable error [default: 10000]
    #[arg(long, env = "SWITCHYARD_WATCH_MAX_LAG")]
    pub watch_max_lag: Option<usize>,
    /// Seconds between bookmarks on an idle watch [default: 10]
    #[arg(long, env = "SWITCHYARD_WATCH_BOOKMARK_INTERVAL")]
    pub watch_bookmark_interval: Option<f64>,
    /// Seconds a watcher may leave a message untaken before it is cut off [default: 10]
    #[arg(long, env = "SWITCHYARD_WATCH_SEND_TIMEOUT")]
    pub watch_send_timeout: Option<f64>,
    /// Applied entries between snapshots [default: 10000]
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// Log entries kept behind a snapshot for followers a little behind [default: 1000]
    #[arg(long, env = "SWITCHYARD_SNAPSHOT_KEEP_LOGS")]
    pub snapshot_keep_logs: Option<u64>,
    /// Seconds a write waits for commit before answering 504 [default: 10]
    #[arg(long, env = "SWITCHYARD_WRITE_TIMEOUT")]
    pub write_timeout: Option<f64>,
    /// Largest request body in bytes [default: 1048576]
    #[arg(long, env = "SWITCHYARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds an Idempotency-Key is remembered [default: 86400]
    #[arg(long, env = "SWITCHYARD_IDEMPOTENCY_WINDOW")]
    pub idempotency_window: Option<f64>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Device type file (TOML), repeatable; added to the built-in switch and mv
    #[arg(
        long = "device-types",
        env = "SWITCHYARD_DEVICE_TYPES",
        value_delimiter = ','
    )]
    pub device_types: Vec<PathBuf>,
    /// Device to create at start if missing, as NAME=TYPE; repeatable (in the file: a list of
    /// "NAME=TYPE" strings or of `{name, type}` tables, `[[devices]]`)
    #[arg(long = "device", env = "SWITCHYARD_DEVICES", value_delimiter = ',')]
    #[serde(deserialize_with = "device_specs")]
    pub devices: Vec<DeviceSpec>,
    /// Serve the seed-000 `mv` face (the original's routes at the root) on this address
    #[arg(long, env = "SWITCHYARD_MV_LISTEN")]
    pub mv_listen: Option<String>,
    /// Serve the seed-001 Altair beer-tap face (`/api/beers`, `/sockets/beers`) on this address
    /// too (it is always on the API listener)
    #[arg(long, env = "SWITCHYARD_ALTAIR_LISTEN")]
    pub altair_listen: Option<String>,
    /// Serve the seed-003 TestbedOS face (`/api/deployments`, `/api/cluster`, ...) on this
    /// address (the original's port is 3355)
    #[arg(long, env = "SWITCHYARD_TESTBED_LISTEN")]
    pub testbed_listen: Option<String>,
    /// Serve the seed-004 funkytown reporter (`/health`, `/results`) on this address (the
    /// original's port is 3000)
    #[arg(long, env = "SWITCHYARD_FUNKYTOWN_LISTEN")]
    pub funkytown_listen: Option<String>,
    /// Seconds a finished job and its log are kept (a run's jobs are kept as long as their
    /// run) [default: 604800]
    #[arg(long, env = "SWITCHYARD_JOB_RETENTION")]
    pub job_retention: Option<f64>,
    /// Most cells one run may expand to [default: 10000]
    #[arg(long, env = "SWITCHYARD_RUN_MAX_CELLS")]
    pub run_max_cells: Option<usize>,
    /// Seconds a finished run, its jobs and their logs are kept [default: 604800]
    #[arg(long, env = "SWITCHYARD_RUN_RETENTION")]
    pub run_retention: Option<f64>,
    /// Finished runs kept at most (the oldest go first) [default: 100]
    #[arg(long, env = "SWITCHYARD_RUN_KEEP")]
    pub run_keep: Option<u32>,
    /// The port TestbedOS cluster clients serve `/api/config/status` on [default: 3355]
    #[arg(long, env = "SWITCHYARD_TESTBED_CLIENT_PORT")]
    pub testbed_client_port: Option<u16>,
    /// The device the mv face serves, created with type mv if missing [default: mv]
    #[arg(long, env = "SWITCHYARD_MV_DEVICE")]
    pub mv_device: Option<String>,
    /// Join the cluster of the member at this client URL (empty data directory only; a restarted
    /// member needs no --join)
    #[arg(long, env = "SWITCHYARD_JOIN")]
    pub join: Option<String>,
    /// The cluster's join token: needed with --join (print it on a member with `switchyard
    /// cluster join-token`); a new cluster takes it instead of making one. Prefer the
    /// environment or the file to a flag, which other local users can see
    #[arg(long, env = "SWITCHYARD_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Certificate (PEM, with its chain) of the client API and every face: they speak HTTPS
    /// (reloaded on SIGHUP) [default: plain HTTP]
    #[arg(long, env = "SWITCHYARD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, env = "SWITCHYARD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) of the cluster's peers: with --peer-cert and --peer-key, peers talk mutual TLS
    /// and the peer listener refuses, at the handshake, a client without a certificate of
    /// this CA [default: plain HTTP, signed with the join token]
    #[arg(long, env = "SWITCHYARD_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// This node's peer certificate (PEM), signed by --peer-ca, for serving and for
    /// presenting to other peers
    #[arg(long, env = "SWITCHYARD_PEER_CERT")]
    pub peer_cert: Option<PathBuf>,
    /// Private key (PEM) of --peer-cert
    #[arg(long, env = "SWITCHYARD_PEER_KEY")]
    pub peer_key: Option<PathBuf>,
    /// CA certificate (PEM) trusted when this node talks to other members' client API (a
    /// join), besides the system's roots and --peer-ca (the flag is the global --ca-cert)
    #[arg(skip)]
    pub ca_cert: Option<PathBuf>,
    /// Seconds a client has to send a request's head (line and headers) [default: 10]
    #[arg(long, env = "SWITCHYARD_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<f64>,
    /// Seconds a connection may stay open with no request in flight [default: 60]
    #[arg(long, env = "SWITCHYARD_IDLE_TIMEOUT")]
    pub idle_timeout: Option<f64>,
    /// Most connections open at once on each listener; more wait [default: 1024]
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Origins (scheme://host[:port]) whose web pages may change things here besides the
    /// node's own; comma-separated [default: none]
    #[arg(long, env = "SWITCHYARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Host names a loopback listener answers besides IP addresses, localhost and the
    /// advertised names; comma-separated [default: none]
    #[arg(long, env = "SWITCHYARD_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Token file (TOML) that turns bearer-token auth on; see README "Security" [default: off]
    #[arg(long, env = "SWITCHYARD_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,
    /// A follower hands writes to the leader (true) or answers 503 naming it (false)
    /// [default: true]
    #[arg(long, env = "SWITCHYARD_FORWARD_WRITES")]
    pub forward_writes: Option<bool>,
    /// The leader answers a linearizable read from its lease while a quorum acknowledged it
    /// recently (true), or confirms it with a heartbeat round for every read (false)
    /// [default: true]
    #[arg(long, env = "SWITCHYARD_LEASE_READS")]
    pub lease_reads: Option<bool>,
    /// Milliseconds between leader heartbeats [default: 150]
    #[arg(long, env = "SWITCHYARD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Milliseconds without a leader before an election, randomised up to 1.5 times this; at
    /// least 5 heartbeats [default: 1000]
    #[arg(long, env = "SWITCHYARD_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Jobs the server's own worker runs at once; 0: no local worker [default: 1]
    #[arg(long, env = "SWITCHYARD_LOCAL_WORKERS")]
    pub local_workers: Option<usize>,
    /// Queue the local worker takes jobs from [default: default]
    #[arg(long, env = "SWITCHYARD_LOCAL_WORKER_QUEUE")]
    pub local_worker_queue: Option<String>,
    /// Most bytes of output kept per job (the oldest lines go first) [default: 1048576]
    #[arg(long, env = "SWITCHYARD_JOB_LOG_MAX_BYTES")]
    pub job_log_max_bytes: Option<u64>,
    /// Keep the cluster configuration document (every live agent's host document) in this file
    #[arg(long, env = "SWITCHYARD_CLUSTER_CONFIG_FILE")]
    pub cluster_config_file: Option<PathBuf>,
    /// Write the server's log to this file (rotated by size) instead of stderr
    #[arg(long, env = "SWITCHYARD_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Size at which the log file is rotated, in bytes [default: 10485760]
    #[arg(long, env = "SWITCHYARD_LOG_MAX_BYTES")]
    pub log_max_bytes: Option<u64>,
    /// Rotated log files kept (switchyard.log.1 ... .N) [default: 5]
    #[arg(long, env = "SWITCHYARD_LOG_KEEP")]
    pub log_keep: Option<usize>,
    /// Seconds between the leader's active checks of agents that gave a URL [default: 5]
    #[arg(long, env = "SWITCHYARD_AGENT_CHECK_INTERVAL")]
    pub agent_check_interval: Option<f64>,
    /// Default argv templates of deployment actions, by action name (TOML file only:
    /// `[actions.up] command = ["kvm-compose", "up", "{args}"]`)
    #[arg(skip)]
    pub actions: BTreeMap<String, FileAction>,
}

/// A device to create at start: `NAME=TYPE` on the command line; in the file that string or
/// a `{name, type}` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

impl std::str::FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, ty)) if !name.is_empty() && !ty.is_empty() => Ok(Self {
                name: name.to_string(),
                type_name: ty.to_string(),
            }),
            _ => Err(format!("expected NAME=TYPE, e.g. sw1=switch; got {s:?}")),
        }
    }
}

/// `devices` in the file: `"NAME=TYPE"` strings or `{name, type}` tables.
fn device_specs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<DeviceSpec>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Table(DeviceSpec),
    }
    Vec::<Either>::deserialize(d)?
        .into_iter()
        .map(|e| match e {
            Either::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Either::Table(t) => Ok(t),
        })
        .collect()
}

/// `[actions.NAME]` in the TOML file: the default argv template of a deployment action.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAction {
    pub command: Vec<String>,
}

/// The checked settings: the server's [`Config`] and what the binary does itself.
#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    pub listen: String,
    pub peer_listen: String,
    pub mv_listen: Option<String>,
    pub altair_listen: Option<String>,
    pub testbed_listen: Option<String>,
    pub funkytown_listen: Option<String>,
    pub json_logs: bool,
    /// The log file (path, rotation size, files kept); none: stderr.
    pub log_file: Option<(PathBuf, u64, usize)>,
    /// Concurrency of the in-process worker (0: none) and its queue.
    pub local_workers: usize,
    pub local_worker_queue: String,
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    seconds_up_to(name, v, 86_400.0)
}

fn seconds_up_to(name: &str, v: f64, max: f64) -> anyhow::Result<Duration> {
    if !v.is_finite() || v <= 0.0 || v > max {
        bail!("{name}: must be a number of seconds above 0 and at most {max}; got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// The settings given, as a JSON object without the ones left out (null or empty).
fn given(s: &ServeArgs) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(mut map) = serde_json::to_value(s)? else {
        bail!("the settings do not serialise to an object");
    };
    map.retain(|_, v| match v {
        serde_json::Value::Null => false,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        _ => true,
    });
    Ok(map)
}

impl ServeArgs {
    /// The TOML file's settings (unknown keys are an error naming them).
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Layer these settings (the flags and environment, as clap read them) over the TOML
    /// file's: a setting given here replaces the file's, one left out keeps it. Generic over
    /// the fields, so a new setting needs no code here.
    pub fn layered(self) -> anyhow::Result<Self> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let mut merged = given(&Self::from_file(path)?)?;
        merged.extend(given(&self)?);
        let mut s: Self = serde_json::from_value(serde_json::Value::Object(merged))
            .context("layering the settings")?;
        s.config = self.config;
        s.check = self.check;
        s.ready_json = self.ready_json;
        Ok(s)
    }

    /// The settings given, as the TOML file would hold them, the join token hidden.
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let mut map = given(self)?;
        if map.contains_key("join_token") {
            map.insert("join_token".into(), "(hidden)".into());
        }
        Ok(toml::to_string(&map)?)
    }

    /// Layer, then validate: what `switchyard serve` runs with.
    pub fn settings(self) -> anyhow::Result<Settings> {
        self.layered()?.validate()
    }

    /// `--check`: layer and validate, then print what was given.
    pub fn check_and_print(self) -> anyhow::Result<()> {
        let layered = self.layered()?;
        let text = layered.to_toml()?;
        layered.validate()?;
        println!("{}", text.trim_end());
        eprintln!("settings are valid; those not listed take their defaults (see --help)");
        Ok(())
    }

    /// The one validation step: every setting checked (the message names it and what is
    /// allowed) into the server's checked [`Config`] and the binary's own settings. A setting
    /// left out keeps the server's default ([`Config::new`]).
    fn validate(self) -> anyhow::Result<Settings> {
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let mut c = Config::new(data_dir);
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        c.advertise_api = self.advertise_api;
        c.advertise_peer = self.advertise_peer;
        if let Some(v) = self.history_events {
            c.history_events = v;
        }
        if let Some(v) = self.watch_max_lag {
            c.watch_max_lag = v;
        }
        if let Some(v) = self.watch_bookmark_interval {
            c.watch_bookmark_interval = seconds("watch_bookmark_interval", v)?;
        }
        if let Some(v) = self.watch_send_timeout {
            c.watch_send_timeout = seconds("watch_send_timeout", v)?;
        }
        if let Some(v) = self.snapshot_logs {
            c.snapshot_logs = v;
        }
        if let Some(v) = self.snapshot_keep_logs {
            c.snapshot_keep_logs = v;
        }
        if let Some(v) = self.write_timeout {
            c.write_timeout = seconds("write_timeout", v)?;
        }
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.idempotency_window {
            c.idempotency_window = seconds_up_to("idempotency_window", v, 30.0 * 86_400.0)?;
        }
        for path in &self.device_types {
            c.load_device_types(path).map_err(anyhow::Error::msg)?;
        }
        c.devices = self
            .devices
            .into_iter()
            .map(|d| (d.name, d.type_name))
            .collect();
        if let Some(d) = self.mv_device {
            c.mv_device = d;
        }
        c.join = self.join;
        match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => {
                let files = switchyard_tls::ServerFiles {
                    cert,
                    key,
                    client_ca: None,
                };
                let tls = switchyard_tls::ServerTls::load(files)
                    .map_err(|e| anyhow::anyhow!("tls_cert: {e}"))?;
                c.tls = Some(std::sync::Arc::new(tls));
            }
            (None, None) => {}
            _ => bail!("tls_cert, tls_key: give both, or neither"),
        }
        match (self.peer_ca, self.peer_cert, self.peer_key) {
            (Some(ca), Some(cert), Some(key)) => {
                let files = switchyard_tls::ServerFiles {
                    cert,
                    key,
                    client_ca: Some(ca),
                };
                let tls = switchyard_tls::ServerTls::load(files)
                    .map_err(|e| anyhow::anyhow!("peer_cert: {e}"))?;
                c.peer_tls = Some(std::sync::Arc::new(tls));
            }
            (None, None, None) => {}
            _ => bail!("peer_ca, peer_cert, peer_key: give all three, or none"),
        }
        c.ca_cert = self.ca_cert;
        if let Some(v) = self.header_read_timeout {
            c.limits.header_read_timeout = seconds_up_to("header_read_timeout", v, 3600.0)?;
        }
        if let Some(v) = self.idle_timeout {
            c.limits.idle_timeout = seconds("idle_timeout", v)?;
        }
        if let Some(n) = self.max_connections {
            c.limits.max_connections = n;
        }
        let (origins, hosts) = (self.allowed_origins, self.allowed_hosts);
        c.browser = std::sync::Arc::new(switchyard_server::listen::BrowserRules {
            allowed_origins: origins
                .iter()
                .map(|o| switchyard_server::listen::BrowserRules::check_origin(o))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
            allowed_hosts: hosts
                .iter()
                .map(|h| switchyard_server::listen::BrowserRules::check_host(h))
                .collect::<Result<_, _>>()
                .map_err(anyhow::Error::msg)?,
        });
        if let Some(t) = self.join_token {
            let secret = switchyard_server::peer_auth::ClusterSecret::parse(&t)
                .map_err(|e| anyhow::anyhow!("join_token: {e}"))?;
            c.join_token = Some(secret);
        }
        if let Some(v) = self.forward_writes {
            c.forward_writes = v;
        }
        if let Some(v) = self.lease_reads {
            c.lease_reads = v;
        }
        if let Some(v) = self.heartbeat_ms {
            c.heartbeat_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.election_timeout_ms {
            c.election_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.job_log_max_bytes {
            c.job_log_max_bytes = v;
        }
        if let Some(v) = self.agent_check_interval {
            c.agent_check_interval = seconds("agent_check_interval", v)?;
        }
        c.cluster_config_file = self.cluster_config_file;
        if let Some(port) = self.testbed_client_port {
            if port == 0 {
                anyhow::bail!("testbed_client_port: must be 1 to 65535");
            }
            c.testbed_client_port = port;
        }
        if let Some(n) = self.run_max_cells {
            if !(1..=1_000_000).contains(&n) {
                anyhow::bail!("run_max_cells: must be 1 to 1000000; got {n}");
            }
            c.run_max_cells = n;
        }
        if let Some(v) = self.job_retention {
            c.job_retention = seconds_up_to("job_retention", v, 3660.0 * 86_400.0)?;
            if c.job_retention.as_millis() == 0 {
                anyhow::bail!("job_retention: must be at least 0.001 seconds");
            }
        }
        if let Some(v) = self.run_retention {
            c.run_retention = seconds_up_to("run_retention", v, 366.0 * 86_400.0)?;
            if c.run_retention.is_zero() {
                anyhow::bail!("run_retention: must be more than 0 seconds");
            }
        }
        if let Some(n) = self.run_keep {
            if n == 0 {
                anyhow::bail!("run_keep: must be at least 1");
            }
            c.run_keep = n;
        }
        c.deployment_actions = self
            .actions
            .into_iter()
            .map(|(name, a)| (name, a.command))
            .collect();
        let log_file = match self.log_file {
            Some(p) => {
                let max = self.log_max_bytes.unwrap_or(10 << 20);
                if max < 4096 {
                    bail!("log_max_bytes: must be at least 4096; got {max}");
                }
                let keep = self.log_keep.unwrap_or(5);
                if keep > 1000 {
                    bail!("log_keep: must be 0 to 1000; got {keep}");
                }
                Some((p, max, keep))
            }
            None => None,
        };
        let local_workers = self.local_workers.unwrap_or(1);
        if local_workers > 1024 {
            bail!("local_workers: must be 0 to 1024; got {local_workers}");
        }
        let local_worker_queue = self.local_worker_queue.unwrap_or_else(|| "default".into());
        switchyard_server::core::jobs::validate_name("local_worker_queue", &local_worker_queue)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(p) = self.auth_tokens {
            let auth = switchyard_server::auth::Auth::load(&p).map_err(anyhow::Error::msg)?;
            c.auth = Some(std::sync::Arc::new(auth));
        }
        let config = c.validate().map_err(anyhow::Error::msg)?;
        let json_logs = match self.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format: must be text or json; got {other:?}"),
        };
        Ok(Settings {
            config,
            listen: self.listen.unwrap_or_else(|| "127.0.0.1:7700".into()),
            peer_listen: self.peer_listen.unwrap_or_else(|| "127.0.0.1:7701".into()),
            json_logs,
            mv_listen: self.mv_listen,
            altair_listen: self.altair_listen,
            testbed_listen: self.testbed_listen,
            funkytown_listen: self.funkytown_listen,
            local_workers,
            local_worker_queue,
            log_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `switchyard serve`'s arguments alone.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Every `[default: V]` that `--help` states is the default the server runs with: giving
    /// `--flag V` changes nothing. (Defaults that are not a value, such as "the bound --listen
    /// address", are skipped; at least the plain ones must be checked.)
    #[test]
    fn every_default_that_help_states_is_the_one_used() {
        use clap::CommandFactory;
        let plain = format!("{:?}", settings(ServeArgs::default()).unwrap());
        let mut checked = Vec::new();
        for arg in Serve::command().get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some(value) = help
                .split("[default: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
            else {
                continue;
            };
            // A default described in words (`none`, `off`, `plain HTTP`, `the bound ...`).
            if value.contains(' ') || ["none", "off"].contains(&value) {
                continue;
            }
            let flag = format!("--{}", arg.get_long().unwrap());
            let given = Serve::try_parse_from(["serve", flag.as_str(), value])
                .unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
            let with = format!("{:?}", settings(given.args).unwrap());
            assert_eq!(
                with, plain,
                "{flag} {value} is not what leaving it out gives"
            );
            checked.push(flag);
        }
        assert!(checked.len() >= 25, "only {checked:?} were checked");
    }

    fn settings(a: ServeArgs) -> Result<Settings, String> {
        a.settings().map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn job_retention_comes_from_the_flag_or_the_file_and_is_checked() {
        let a = ServeArgs {
            job_retention: Some(90.0),
            ..Default::default()
        };
        let c = settings(a).unwrap().config;
        assert_eq!(c.job_retention, Duration::from_secs(90));
        assert_eq!(c.job_retention_ms(), 90_000);

        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "job_retention = 3600\n").unwrap();
        let a = ServeArgs {
            config: Some(file),
            ..Default::default()
        };
        assert_eq!(
            settings(a).unwrap().config.job_retention,
            Duration::from_secs(3600)
        );

        for bad in [0.0, -1.0, f64::NAN, 1e12] {
            let a = ServeArgs {
                job_retention: Some(bad),
                ..Default::default()
            };
            let e = settings(a).expect_err("refused");
            assert!(e.contains("job_retention"), "{bad}: {e}");
        }
    }
}
