//! The switchyard worker: an agent that leases jobs from a queue, runs each as a process, ships
//! its output, and reports how it ended.
//!
//! - **Leasing** is a long poll (`POST /v1/jobs/lease` with `wait`): no busy polling. A worker
//!   holds at most `concurrency` jobs.
//! - **Heartbeats**: one request per interval extends the agent and every lease it holds; the
//!   answer names jobs to cancel and leases that are no longer ours (the process is stopped and
//!   nothing is reported for it: the job already runs elsewhere).
//! - **Processes** run in their own process group, without a shell (unless the job's command
//!   is one), with the job's environment and working directory. Stopping one (cancel, timeout,
//!   shutdown) sends SIGTERM to the group, then SIGKILL after `kill_grace`.
//! - **Output**: stdout and stderr lines, time-stamped when read, shipped in batches; lines
//!   longer than 60 KiB are split. Every line is shipped before the job is reported finished.
//! - **Shutdown** (the `stop` token, e.g. SIGTERM): take no new work, let running jobs finish
//!   for `shutdown_grace`, then stop the rest and release them (queued again, the attempt not
//!   counted), and leave.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_client::{Client, Error};
use switchyard_types::{AgentJoin, HeldLease, Job, JobEnding, LeaseRequest, LogStream, NewLogLine};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Longest piece of a line shipped as one log line (the server takes up to 64 KiB).
const MAX_LINE: usize = 60 * 1024;
/// A log batch is shipped at this many lines or bytes, or after `LOG_FLUSH`.
const LOG_BATCH_LINES: usize = 2000;
const LOG_BATCH_BYTES: usize = 256 * 1024;
const LOG_FLUSH: Duration = Duration::from_millis(200);
/// How long a finished job's report is retried.
const REPORT_FOR: Duration = Duration::from_secs(300);
/// Seconds a lease request waits on the server for a job.
const LEASE_WAIT: f64 = 10.0;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server URL, or comma-separated URLs of a cluster.
    pub servers: String,
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for `https://` servers, besides the system's roots.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Agent id: 1 to 64 of `A-Z a-z 0-9 _ . -`.
    pub id: String,
    pub queue: String,
    /// Jobs run at once.
    pub concurrency: usize,
    pub labels: BTreeMap<String, String>,
    /// Stop once no job of the queue is queued or running.
    pub exit_when_empty: bool,
    /// Between SIGTERM and SIGKILL when a job is stopped.
    pub kill_grace: Duration,
    /// Longest time between heartbeats (shorter when a held lease needs it).
    pub heartbeat: Duration,
    /// Seconds the server waits for a heartbeat before the agent is lost (plus as much grace).
    pub agent_ttl: u64,
    /// On shutdown, how long running jobs may go on before they are stopped and released.
    pub shutdown_grace: Duration,
    /// Host document sent on join (seed 003's host.json), merged with the facts found here.
    pub host: serde_json::Value,
    /// Serve `GET /health` here so the server can check this agent actively.
    pub health_listen: Option<std::net::SocketAddr>,
    /// The URL the server reaches the health listener at (default: `http://` + its address).
    pub advertise: Option<String>,
}

impl Config {
    pub fn new(servers: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            servers: servers.into(),
            token: None,
            ca_cert: None,
            id: default_id(),
            queue: queue.into(),
            concurrency: 1,
            labels: BTreeMap::new(),
            exit_when_empty: false,
            kill_grace: Duration::from_secs(10),
            heartbeat: Duration::from_secs(1),
            agent_ttl: 15,
            shutdown_grace: Duration::from_secs(30),
            host: serde_json::json!({}),
            health_listen: None,
            advertise: None,
        }
    }
}

/// `hostname-pid`, reduced to the characters an agent id may have.
pub fn default_id() -> String {
    let id: String = format!("{}-{}", hostname(), std::process::id())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    id.chars()
        .rev()
        .take(64)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn memory_bytes() -> u64 {
    let info = rustix::system::sysinfo();
    info.totalram as u64 * u64::from(info.mem_unit.max(1))
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Jobs run and reported.
    pub finished: u64,
    /// Jobs given back unrun or stopped at shutdown.
    pub released: u64,
    /// Jobs whose lease was lost while they ran (not reported; they ran elsewhere).
    pub lost: u64,
}

/// What the worker wants a running job to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Run,
    Cancel,
    /// The lease is no longer ours: stop, report nothing.
    Stale,
    /// Shutting down: stop and give the job back.
    Release,
}

struct Held {
    token: u64,
    ttl: u64,
    control: watch::Sender<Control>,
}

struct Shared {
    client: Client,
    cfg: Config,
    held: Mutex<HashMap<u64, Held>>,
    summary: Mutex<Summary>,
}

/// Run until `stop` is cancelled (then shut down as described above), or until the queue is
/// drained with `exit_when_empty`.
pub async fn run(cfg: Config, stop: CancellationToken) -> Result<Summary, String> {
    if cfg.concurrency == 0 {
        return Err("concurrency: must be at least 1".into());
    }
    let mut client = Client::new(cfg.servers.clone()).with_failover(Duration::from_secs(60));
    if let Some(ca) = &cfg.ca_cert {
        client = client
            .with_ca_cert(ca)
            .map_err(|e| format!("ca_cert: {e}"))?;
    }
    if let Some(t) = &cfg.token {
        client = client.with_token(t.clone());
    }
    let url = match cfg.health_listen {
        Some(addr) => Some(serve_health(addr, cfg.advertise.clone(), stop.clone()).await?),
        None => None,
    };
    let shared = Arc::new(Shared {
        client,
        cfg,
        held: Mutex::new(HashMap::new()),
        summary: Mutex::new(Summary::default()),
    });
    let join = join_request(&shared.cfg, url);
    join_until_done(&shared, &join, &stop).await?;
    tracing::info!(id = %shared.cfg.id, queue = %shared.cfg.queue, "worker joined");

    let done = CancellationToken::new();
    let beat = tokio::spawn(heartbeats(shared.clone(), join.clone(), done.clone()));
    let slots = Arc::new(Semaphore::new(shared.cfg.concurrency));
    let mut running = tokio::task::JoinSet::new();
    let mut pause = Duration::from_millis(100);
    while !stop.is_cancelled() {
        // Wait for a free slot, then take as many as are free.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("never closed"),
            _ = stop.cancelled() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        let req = LeaseRequest {
            worker: shared.cfg.id.clone(),
            queue: shared.cfg.queue.clone(),
            labels: shared.cfg.labels.clone(),
            max: permits.len() as u32,
            wait: LEASE_WAIT,
            finish: None,
            until_drained: shared.cfg.exit_when_empty,
        };
        // Abandoned on stop: should the server grant a lease in that instant anyway, leaving
        // (below) ends it and the job is queued again at once.
        let leased = tokio::select! {
            r = shared.client.lease(&req) => r,
            _ = stop.cancelled() => break,
        };
        let leased = match leased {
            Ok(l) => {
                pause = Duration::from_millis(100);
                l
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease failed; retrying");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => {}
                }
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if leased.jobs.is_empty() {
            drop(permits);
            while running.try_join_next().is_some() {}
            if shared.cfg.exit_when_empty && leased.drained && running.is_empty() {
                tracing::info!("queue drained; worker exits");
                break;
            }
            continue;
        }
        for lj in leased.jobs {
            let permit = permits.pop().expect("the server leases at most max");
            let (tx, rx) = watch::channel(if stop.is_cancelled() {
                Control::Release
            } else {
                Control::Run
            });
            shared.held.lock().expect("not poisoned").insert(
                lj.job.id,
                Held {
                    token: lj.token,
                    ttl: lj.job.spec.lease_ttl,
                    control: tx,
                },
            );
            let shared = shared.clone();
            running.spawn(async move {
                run_job(&shared, lj.job, lj.token, rx).await;
                drop(permit);
            });
        }
        while running.try_join_next().is_some() {}
    }

    // Shutdown: let running jobs finish for a while, then stop and release the rest.
    if !running.is_empty() {
        tracing::info!(
            jobs = running.len(),
            grace = ?shared.cfg.shutdown_grace,
            "stopping: waiting for running jobs"
        );
        let all = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(shared.cfg.shutdown_grace, all)
            .await
            .is_err()
        {
            for h in shared.held.lock().expect("not poisoned").values() {
                let _ = h.control.send(Control::Release);
            }
            while running.join_next().await.is_some() {}
        }
    }
    done.cancel();
    let _ = beat.await;
    if let Err(e) = shared.client.remove_agent(&shared.cfg.id).await {
        tracing::warn!(error = %e, "could not leave");
    }
    let summary = shared.summary.lock().expect("not poisoned").clone();
    Ok(summary)
}

fn join_request(cfg: &Config, url: Option<String>) -> AgentJoin {
    let mut host = match &cfg.host {
        serde_json::Value::Object(m) => m.clone(),
        _ => Default::default(),
    };
    host.entry("os")
        .or_insert_with(|| std::env::consts::OS.into());
    host.entry("arch")
        .or_insert_with(|| std::env::consts::ARCH.into());
    AgentJoin {
        id: cfg.id.clone(),
        hostname: hostname(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: memory_bytes(),
        labels: cfg.labels.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        queues: vec![cfg.queue.clone()],
        host: serde_json::Value::Object(host),
        ttl: cfg.agent_ttl,
        url,
    }
}

async fn join_until_done(
    shared: &Shared,
    join: &AgentJoin,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut pause = Duration::from_millis(100);
    loop {
        match shared.client.join_agent(join).await {
            Ok(_) => return Ok(()),
            Err(Error::Api { status, error }) if status.is_client_error() => {
                return Err(format!("the server refused the join: {}", error.message));
            }
            Err(e) => tracing::warn!(error = %e, "could not join; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return Err("stopped before joining".into()),
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

async fn serve_health(
    addr: std::net::SocketAddr,
    advertise: Option<String>,
    stop: CancellationToken,
) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("health_listen {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(advertise.unwrap_or_else(|| format!("http://{bound}")))
}

/// One heartbeat per interval for the agent and every lease it holds.
async fn heartbeats(shared: Arc<Shared>, join: AgentJoin, done: CancellationToken) {
    loop {
        let (leases, min_ttl) = {
            let held = shared.held.lock().expect("not poisoned");
            let leases: Vec<HeldLease> = held
                .iter()
                .map(|(id, h)| HeldLease {
                    job: *id,
                    token: h.token,
                })
                .collect();
            (leases, held.values().map(|h| h.ttl).min())
        };
        let interval = min_ttl.map_or(shared.cfg.heartbeat, |ttl| {
            shared
                .cfg
                .heartbeat
                .min(Duration::from_millis(ttl * 1000 / 3))
        });
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = done.cancelled() => return,
        }
        match shared.client.agent_heartbeat(&shared.cfg.id, leases).await {
            Ok(r) => {
                let held = shared.held.lock().expect("not poisoned");
                for (ids, control) in [(r.cancel, Control::Cancel), (r.stale, Control::Stale)] {
                    for id in ids {
                        if let Some(h) = held.get(&id) {
                            h.control.send_if_modified(|c| {
                                let change = *c == Control::Run
                                    || (*c == Control::Cancel && control == Control::Stale);
                                if change {
                                    *c = control;
                                }
                                change
                            });
                        }
                    }
                }
            }
            Err(Error::Api { status, .. }) if status.as_u16() == 404 => {
                tracing::warn!(
                    "the server does not know this agent (lost or removed); joining again"
                );
                if let Err(e) = shared.client.join_agent(&join).await {
                    tracing::warn!(error = %e, "could not join again");
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Why a process was stopped.
enum Stop {
    Exited(std::process::ExitStatus),
    TimedOut(Option<std::process::ExitStatus>),
    Control(Control, Option<std::process::ExitStatus>),
}

async fn run_job(shared: &Shared, job: Job, token: u64, mut control: watch::Receiver<Control>) {
    let id = job.id;
    let started = Instant::now();
    let argv = &job.spec.command;
    tracing::info!(job = id, attempt = job.attempts, command = ?argv, "running");
    let early = *control.borrow_and_update();
    if early == Control::Release {
        report(shared, id, token, Report::Release).await;
        return;
    }
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(&job.spec.env)
        .env("SWITCHYARD_JOB_ID", id.to_string())
        .env("SWITCHYARD_JOB_ATTEMPT", job.attempts.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &job.spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let error = format!("could not start {:?}: {e}", argv[0]);
            report(shared, id, token, Report::Failed(error)).await;
            return;
        }
    };
    let pid = child.id();
    let lost = CancellationToken::new();
    let (tx, rx) = mpsc::channel::<NewLogLine>(LOG_BATCH_LINES * 2);
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(read_lines(o, LogStream::Stdout, tx.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(read_lines(e, LogStream::Stderr, tx.clone()))),
    ];
    drop(tx);
    let shipper = tokio::spawn(ship_logs(
        shared.client.clone(),
        id,
        token,
        rx,
        lost.clone(),
    ));

    let timeout = job.spec.timeout.map(Duration::from_secs);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let stop = loop {
        let timed_out = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => match status {
                Ok(s) => break Stop::Exited(s),
                Err(e) => {
                    tracing::error!(job = id, error = %e, "waiting for the process failed");
                    break Stop::Control(Control::Stale, None);
                }
            },
            _ = timed_out => break Stop::TimedOut(terminate(&mut child, pid, shared.cfg.kill_grace).await),
            _ = lost.cancelled() => break Stop::Control(Control::Stale, terminate(&mut child, pid, shared.cfg.kill_grace).await),
            r = control.changed() => {
                let c = if r.is_ok() { *control.borrow_and_update() } else { Control::Stale };
                if c != Control::Run {
                    break Stop::Control(c, terminate(&mut child, pid, shared.cfg.kill_grace).await);
                }
            }
        }
    };
    // Whatever the job left running in its process group ends with it.
    signal_group(pid, rustix::process::Signal::KILL);
    for r in readers.into_iter().flatten() {
        // A process outside the group may still hold the pipe: do not wait for it forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    let _ = shipper.await;
    let elapsed = started.elapsed();
    let late = *control.borrow();
    let outcome = match stop {
        _ if lost.is_cancelled() || late == Control::Stale => Report::Lost,
        Stop::Control(Control::Release, _) => Report::Release,
        Stop::Control(Control::Cancel, status) => {
            Report::End(JobEnding::Cancelled, status.and_then(|s| s.code()), None)
        }
        Stop::Control(_, _) => Report::Lost,
        Stop::TimedOut(status) => Report::End(
            JobEnding::TimedOut,
            status.and_then(|s| s.code()),
            Some(format!("timed out after {:?}", timeout.unwrap_or_default())),
        ),
        Stop::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            let error = status.signal().map(|sig| format!("killed by signal {sig}"));
            Report::End(JobEnding::Exited, status.code(), error)
        }
    };
    tracing::info!(job = id, ?elapsed, "done");
    report(shared, id, token, outcome).await;
}

/// SIGTERM to the process group, SIGKILL after `grace`; the exit status.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    signal_group(pid, rustix::process::Signal::TERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => {
            signal_group(pid, rustix::process::Signal::KILL);
            child.wait().await.ok()
        }
    }
}

fn signal_group(pid: Option<u32>, sig: rustix::process::Signal) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        // The group may be gone already.
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Read lines (split at `MAX_LINE`) and send them, time-stamped, until end of file.
async fn read_lines(out: impl AsyncRead + Unpin, stream: LogStream, tx: mpsc::Sender<NewLogLine>) {
    let mut r = BufReader::new(out);
    let mut line = Vec::new();
    loop {
        let (done, used) = match r.fill_buf().await {
            Ok([]) | Err(_) => (true, 0),
            Ok(buf) => {
                let room = MAX_LINE - line.len();
                match buf.iter().take(room).position(|b| *b == b'\n') {
                    Some(i) => {
                        line.extend_from_slice(&buf[..i]);
                        (false, i + 1)
                    }
                    None => {
                        let n = buf.len().min(room);
                        line.extend_from_slice(&buf[..n]);
                        if line.len() < MAX_LINE {
                            r.consume(n);
                            continue;
                        }
                        (false, n)
                    }
                }
            }
        };
        r.consume(used);
        if done && line.is_empty() {
            return;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        line.clear();
        let l = NewLogLine {
            stream,
            time_ms: now_ms(),
            text,
        };
        if tx.send(l).await.is_err() || done {
            return;
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Ship lines in batches until every sender is gone; a refused token cancels `lost`.
async fn ship_logs(
    client: Client,
    id: u64,
    token: u64,
    mut rx: mpsc::Receiver<NewLogLine>,
    lost: CancellationToken,
) {
    let mut batch: Vec<NewLogLine> = Vec::new();
    let mut bytes = 0;
    // Lines shipped under this lease: a retried batch carries the same seq.
    let mut seq = 0u64;
    let mut open = true;
    while open || !batch.is_empty() {
        if open && batch.len() < LOG_BATCH_LINES && bytes < LOG_BATCH_BYTES {
            let flush = tokio::time::sleep(LOG_FLUSH);
            tokio::select! {
                l = rx.recv() => match l {
                    Some(l) => {
                        bytes += l.text.len();
                        batch.push(l);
                        // Take whatever else is already there before deciding to ship.
                        if batch.len() < LOG_BATCH_LINES && bytes < LOG_BATCH_BYTES {
                            continue;
                        }
                    }
                    None => open = false,
                },
                _ = flush, if !batch.is_empty() => {}
            }
        }
        if batch.is_empty() || lost.is_cancelled() {
            batch.clear();
            continue;
        }
        let mut pause = Duration::from_millis(100);
        let since = Instant::now();
        loop {
            match client.append_logs(id, token, seq, &batch).await {
                Ok(_) => {
                    seq += batch.len() as u64;
                    break;
                }
                Err(Error::Api { status, error }) if status.is_client_error() => {
                    tracing::warn!(job = id, error = %error.message, "log refused; the lease is lost");
                    lost.cancel();
                    break;
                }
                Err(e) if since.elapsed() >= REPORT_FOR => {
                    tracing::error!(job = id, error = %e, "could not ship log lines; giving the job up");
                    lost.cancel();
                    break;
                }
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "shipping log lines failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        batch.clear();
        bytes = 0;
    }
}

enum Report {
    End(JobEnding, Option<i32>, Option<String>),
    Failed(String),
    Release,
    Lost,
}

/// Tell the server how the attempt ended, retrying through connection trouble for up to
/// `REPORT_FOR` (after that the lease has long expired and the job runs again elsewhere).
async fn report(shared: &Shared, id: u64, token: u64, what: Report) {
    let client = &shared.client;
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    let tally = |f: fn(&mut Summary)| f(&mut shared.summary.lock().expect("not poisoned"));
    loop {
        let r = match &what {
            Report::Lost => {
                tracing::warn!(job = id, "lease lost while running; not reported");
                tally(|s| s.lost += 1);
                break;
            }
            Report::End(ending, code, error) => client
                .finish_job(id, token, *ending, *code, error.clone())
                .await
                .map(|_| tally(|s| s.finished += 1)),
            Report::Failed(error) => client
                .finish_job(id, token, JobEnding::Failed, None, Some(error.clone()))
                .await
                .map(|_| tally(|s| s.finished += 1)),
            Report::Release => client
                .release_job(id, token)
                .await
                .map(|_| tally(|s| s.released += 1)),
        };
        match r {
            Ok(()) => break,
            Err(Error::Api { status, error }) if status.is_client_error() => {
                tracing::warn!(job = id, error = %error.message, "report refused");
                tally(|s| s.lost += 1);
                break;
            }
            Err(e) if started.elapsed() >= REPORT_FOR => {
                tracing::error!(job = id, error = %e, "could not report; giving the job up");
                tally(|s| s.lost += 1);
                break;
            }
            Err(e) => {
                tracing::warn!(job = id, error = %e, "report failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    shared.held.lock().expect("not poisoned").remove(&id);
}
