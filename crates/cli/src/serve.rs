//! `switchyard serve`: flags, environment and the TOML file merged and validated into the
//! server's checked config, then the server runs until SIGTERM or Ctrl-C.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use switchyard_server::{Config, Listeners};

/// Settings of `switchyard serve`. Each is a flag, a `SWITCHYARD_*` environment variable and
/// a key of the TOML file given with `--config` (flag beats environment beats file).
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case, e.g. `data_dir`).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Device to create at start if missing, as NAME=TYPE; repeatable
    #[arg(long = "device", env = "SWITCHYARD_DEVICES", value_delimiter = ',')]
    pub devices: Vec<String>,
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
    /// The global --ca-cert: trusted when this node talks to other members' API (a join).
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
}

/// `[[devices]]` in the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDevice {
    name: String,
    #[serde(rename = "type")]
    type_name: String,
}

/// `[actions.NAME]` in the TOML file: the default argv template of a deployment action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAction {
    command: Vec<String>,
}

/// The TOML file: the same settings, all optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    peer_listen: Option<String>,
    node_id: Option<u64>,
    advertise_api: Option<String>,
    advertise_peer: Option<String>,
    history_events: Option<usize>,
    watch_max_lag: Option<usize>,
    watch_bookmark_interval: Option<f64>,
    watch_send_timeout: Option<f64>,
    snapshot_logs: Option<u64>,
    snapshot_keep_logs: Option<u64>,
    write_timeout: Option<f64>,
    max_body_bytes: Option<usize>,
    idempotency_window: Option<f64>,
    log_format: Option<String>,
    #[serde(default)]
    device_types: Vec<PathBuf>,
    #[serde(default)]
    devices: Vec<FileDevice>,
    mv_listen: Option<String>,
    mv_device: Option<String>,
    altair_listen: Option<String>,
    testbed_listen: Option<String>,
    funkytown_listen: Option<String>,
    testbed_client_port: Option<u16>,
    job_retention: Option<f64>,
    run_max_cells: Option<usize>,
    run_retention: Option<f64>,
    run_keep: Option<u32>,
    auth_tokens: Option<PathBuf>,
    join: Option<String>,
    join_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    peer_ca: Option<PathBuf>,
    peer_cert: Option<PathBuf>,
    peer_key: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
    header_read_timeout: Option<f64>,
    idle_timeout: Option<f64>,
    max_connections: Option<usize>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    forward_writes: Option<bool>,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    local_workers: Option<usize>,
    local_worker_queue: Option<String>,
    job_log_max_bytes: Option<u64>,
    agent_check_interval: Option<f64>,
    cluster_config_file: Option<PathBuf>,
    log_file: Option<PathBuf>,
    log_max_bytes: Option<u64>,
    log_keep: Option<usize>,
    #[serde(default)]
    actions: std::collections::BTreeMap<String, FileAction>,
}

/// The merged, checked settings.
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

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

impl ServeArgs {
    /// Merge flag/env > file > default and validate.
    pub fn settings(self) -> anyhow::Result<Settings> {
        let f = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(f.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let mut c = Config::new(data_dir);
        if let Some(v) = self.node_id.or(f.node_id) {
            c.node_id = v;
        }
        c.advertise_api = self.advertise_api.or(f.advertise_api);
        c.advertise_peer = self.advertise_peer.or(f.advertise_peer);
        if let Some(v) = self.history_events.or(f.history_events) {
            c.history_events = v;
        }
        if let Some(v) = self.watch_max_lag.or(f.watch_max_lag) {
            c.watch_max_lag = v;
        }
        if let Some(v) = self.watch_bookmark_interval.or(f.watch_bookmark_interval) {
            c.watch_bookmark_interval = seconds("watch_bookmark_interval", v)?;
        }
        if let Some(v) = self.watch_send_timeout.or(f.watch_send_timeout) {
            c.watch_send_timeout = seconds("watch_send_timeout", v)?;
        }
        if let Some(v) = self.snapshot_logs.or(f.snapshot_logs) {
            c.snapshot_logs = v;
        }
        if let Some(v) = self.snapshot_keep_logs.or(f.snapshot_keep_logs) {
            c.snapshot_keep_logs = v;
        }
        if let Some(v) = self.write_timeout.or(f.write_timeout) {
            c.write_timeout = seconds("write_timeout", v)?;
        }
        if let Some(v) = self.max_body_bytes.or(f.max_body_bytes) {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.idempotency_window.or(f.idempotency_window) {
            c.idempotency_window = seconds_up_to("idempotency_window", v, 30.0 * 86_400.0)?;
        }
        let type_files = if self.device_types.is_empty() {
            f.device_types
        } else {
            self.device_types
        };
        for path in &type_files {
            c.load_device_types(path).map_err(anyhow::Error::msg)?;
        }
        if self.devices.is_empty() {
            c.devices = f
                .devices
                .into_iter()
                .map(|d| (d.name, d.type_name))
                .collect();
        } else {
            for d in &self.devices {
                let Some((name, ty)) = d.split_once('=') else {
                    bail!("--device: expected NAME=TYPE, e.g. sw1=switch; got {d:?}");
                };
                c.devices.push((name.to_string(), ty.to_string()));
            }
        }
        if let Some(d) = self.mv_device.or(f.mv_device) {
            c.mv_device = d;
        }
        c.join = self.join.or(f.join);
        match (self.tls_cert.or(f.tls_cert), self.tls_key.or(f.tls_key)) {
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
        match (
            self.peer_ca.or(f.peer_ca),
            self.peer_cert.or(f.peer_cert),
            self.peer_key.or(f.peer_key),
        ) {
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
        c.ca_cert = self.ca_cert.or(f.ca_cert);
        if let Some(v) = self.header_read_timeout.or(f.header_read_timeout) {
            c.limits.header_read_timeout = seconds_up_to("header_read_timeout", v, 3600.0)?;
        }
        if let Some(v) = self.idle_timeout.or(f.idle_timeout) {
            c.limits.idle_timeout = seconds("idle_timeout", v)?;
        }
        if let Some(n) = self.max_connections.or(f.max_connections) {
            c.limits.max_connections = n;
        }
        let origins = if self.allowed_origins.is_empty() {
            f.allowed_origins
        } else {
            self.allowed_origins
        };
        let hosts = if self.allowed_hosts.is_empty() {
            f.allowed_hosts
        } else {
            self.allowed_hosts
        };
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
        if let Some(t) = self.join_token.or(f.join_token) {
            let secret = switchyard_server::peer_auth::ClusterSecret::parse(&t)
                .map_err(|e| anyhow::anyhow!("join_token: {e}"))?;
            c.join_token = Some(secret);
        }
        if let Some(v) = self.forward_writes.or(f.forward_writes) {
            c.forward_writes = v;
        }
        if let Some(v) = self.heartbeat_ms.or(f.heartbeat_ms) {
            c.heartbeat_interval = Duration::from_millis(v);
        }
        if let Some(v) = self.election_timeout_ms.or(f.election_timeout_ms) {
            c.election_timeout = Duration::from_millis(v);
        }
        if let Some(v) = self.job_log_max_bytes.or(f.job_log_max_bytes) {
            c.job_log_max_bytes = v;
        }
        if let Some(v) = self.agent_check_interval.or(f.agent_check_interval) {
            c.agent_check_interval = seconds("agent_check_interval", v)?;
        }
        c.cluster_config_file = self.cluster_config_file.or(f.cluster_config_file);
        if let Some(port) = self.testbed_client_port.or(f.testbed_client_port) {
            if port == 0 {
                anyhow::bail!("testbed_client_port: must be 1 to 65535");
            }
            c.testbed_client_port = port;
        }
        if let Some(n) = self.run_max_cells.or(f.run_max_cells) {
            if !(1..=1_000_000).contains(&n) {
                anyhow::bail!("run_max_cells: must be 1 to 1000000; got {n}");
            }
            c.run_max_cells = n;
        }
        if let Some(v) = self.job_retention.or(f.job_retention) {
            c.job_retention = seconds_up_to("job_retention", v, 3660.0 * 86_400.0)?;
            if c.job_retention.as_millis() == 0 {
                anyhow::bail!("job_retention: must be at least 0.001 seconds");
            }
        }
        if let Some(v) = self.run_retention.or(f.run_retention) {
            c.run_retention = seconds_up_to("run_retention", v, 366.0 * 86_400.0)?;
            if c.run_retention.is_zero() {
                anyhow::bail!("run_retention: must be more than 0 seconds");
            }
        }
        if let Some(n) = self.run_keep.or(f.run_keep) {
            if n == 0 {
                anyhow::bail!("run_keep: must be at least 1");
            }
            c.run_keep = n;
        }
        c.deployment_actions = f
            .actions
            .into_iter()
            .map(|(name, a)| (name, a.command))
            .collect();
        let log_file = match self.log_file.or(f.log_file) {
            Some(p) => {
                let max = self.log_max_bytes.or(f.log_max_bytes).unwrap_or(10 << 20);
                if max < 4096 {
                    bail!("log_max_bytes: must be at least 4096; got {max}");
                }
                let keep = self.log_keep.or(f.log_keep).unwrap_or(5);
                if keep > 1000 {
                    bail!("log_keep: must be 0 to 1000; got {keep}");
                }
                Some((p, max, keep))
            }
            None => None,
        };
        let local_workers = self.local_workers.or(f.local_workers).unwrap_or(1);
        if local_workers > 1024 {
            bail!("local_workers: must be 0 to 1024; got {local_workers}");
        }
        let local_worker_queue = self
            .local_worker_queue
            .or(f.local_worker_queue)
            .unwrap_or_else(|| "default".into());
        switchyard_server::core::jobs::validate_name("local_worker_queue", &local_worker_queue)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(p) = self.auth_tokens.or(f.auth_tokens) {
            let auth = switchyard_server::auth::Auth::load(&p).map_err(anyhow::Error::msg)?;
            c.auth = Some(std::sync::Arc::new(auth));
        }
        let config = c.validate().map_err(anyhow::Error::msg)?;
        let json_logs = match self.log_format.or(f.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => bail!("log_format: must be text or json; got {other:?}"),
        };
        Ok(Settings {
            config,
            listen: self
                .listen
                .or(f.listen)
                .unwrap_or_else(|| "127.0.0.1:7700".into()),
            peer_listen: self
                .peer_listen
                .or(f.peer_listen)
                .unwrap_or_else(|| "127.0.0.1:7701".into()),
            json_logs,
            mv_listen: self.mv_listen.or(f.mv_listen),
            altair_listen: self.altair_listen.or(f.altair_listen),
            testbed_listen: self.testbed_listen.or(f.testbed_listen),
            funkytown_listen: self.funkytown_listen.or(f.funkytown_listen),
            local_workers,
            local_worker_queue,
            log_file,
        })
    }
}

pub fn init_logging(json: bool, file: Option<crate::logfile::RotatingFile>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (file, json) {
        (Some(f), true) => builder.with_writer(f).with_ansi(false).json().init(),
        (Some(f), false) => builder.with_writer(f).with_ansi(false).init(),
        (None, true) => builder.with_writer(std::io::stderr).json().init(),
        (None, false) => {
            // Colours only for a terminal: a redirected log is read with grep and less.
            use std::io::IsTerminal;
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder
                .with_writer(std::io::stderr)
                .with_ansi(colour)
                .init()
        }
    }
}

pub async fn terminated() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Run the server until SIGTERM or Ctrl-C.
/// Bind a compatibility face's listener, if one was asked for, and say where it is.
async fn bind_face(
    addr: &Option<String>,
    name: &str,
    scheme: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the {name} face"))?;
    eprintln!("switchyard {name} face on {scheme}://{}", l.local_addr()?);
    Ok(Some(l))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let s = args.settings()?;
    let file = match &s.log_file {
        Some((path, max, keep)) => Some(
            crate::logfile::RotatingFile::open(path, *max, *keep)
                .with_context(|| format!("log_file {}", path.display()))?,
        ),
        None => None,
    };
    init_logging(s.json_logs, file);
    let mut listeners = Listeners::bind(&s.listen, &s.peer_listen)
        .await
        .with_context(|| format!("cannot listen on {} and {}", s.listen, s.peer_listen))?;
    let scheme = s.config.api_scheme();
    listeners.mv = bind_face(&s.mv_listen, "mv", scheme).await?;
    listeners.altair = bind_face(&s.altair_listen, "Altair beer-tap", scheme).await?;
    listeners.testbed = bind_face(&s.testbed_listen, "TestbedOS", scheme).await?;
    listeners.funkytown = bind_face(&s.funkytown_listen, "funkytown reporter", scheme).await?;
    let token = s
        .config
        .auth
        .as_ref()
        .and_then(|a| a.write_token().map(str::to_string));
    let server = switchyard_server::start(s.config, listeners).await?;
    eprintln!(
        "switchyard node {} serving the API on {} (peer RPC on {})",
        server.node.id,
        server.url(),
        server.peer_addr
    );
    if server.node.config.peer_tls.is_some() {
        eprintln!("peers talk mutual TLS");
    }
    #[cfg(unix)]
    {
        let node = server.node.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing a SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match node.config.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the old certificates")
                    }
                }
            }
        });
    }
    let worker_ca = server
        .node
        .config
        .ca_cert
        .clone()
        .or_else(|| server.node.config.peer_ca().map(Path::to_path_buf));
    let stop_worker = tokio_util::sync::CancellationToken::new();
    let worker = (s.local_workers > 0).then(|| {
        let mut w = switchyard_worker::Config::new(server.url(), s.local_worker_queue.clone());
        w.id = format!("local-node{}", server.node.id);
        w.concurrency = s.local_workers;
        w.token = token;
        w.ca_cert = worker_ca;
        w.shutdown_grace = Duration::from_secs(5);
        w.host = serde_json::json!({"local": true, "node_id": server.node.id});
        let stop = stop_worker.clone();
        eprintln!(
            "local worker {} runs {} job(s) at once from queue {:?}",
            w.id, w.concurrency, w.queue
        );
        tokio::spawn(async move {
            if let Err(e) = switchyard_worker::run(w, stop).await {
                tracing::error!(error = %e, "the local worker stopped");
            }
        })
    });
    terminated().await;
    // The local worker finishes or releases its jobs while the server still answers.
    stop_worker.cancel();
    if let Some(w) = worker {
        let _ = w.await;
    }
    server.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let e = settings(a).err().expect("refused");
            assert!(e.contains("job_retention"), "{bad}: {e}");
        }
    }
}
