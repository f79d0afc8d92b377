//! `switchyard worker`, `switchyard jobs ...`, `switchyard logs`, `switchyard agents`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchyard_client::Client;
use switchyard_types::{JobSpec, LogStream};

use crate::output::{self, Format};

/// `KEY=VALUE` pairs from repeatable (or comma-separated) flags.
fn pairs(flag: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("{flag}: expected KEY=VALUE; got {kv:?}"),
        })
        .collect()
}

/// Run jobs from a queue on this machine.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queue to take jobs from.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// This worker's labels, KEY=VALUE (repeatable or comma-separated); a job runs only on a
    /// worker with every label it asks for.
    #[arg(long = "labels", value_delimiter = ',')]
    labels: Vec<String>,
    /// Exit once no job of the queue is queued or running.
    #[arg(long)]
    exit_when_empty: bool,
    /// Agent id [default: HOSTNAME-PID]
    #[arg(long)]
    id: Option<String>,
    /// Seconds between SIGTERM and SIGKILL when a job is stopped (cancel, timeout, shutdown).
    #[arg(long, default_value_t = 10.0)]
    kill_grace: f64,
    /// On SIGTERM, seconds running jobs may go on before they are stopped and released.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Seconds without a heartbeat before the server calls this agent lost (plus as much grace).
    #[arg(long, default_value_t = 15)]
    agent_ttl: u64,
    /// Host document (a JSON object, seed 003's host.json) sent with the join.
    #[arg(long)]
    host_file: Option<PathBuf>,
    /// Serve GET /health on this address so the server checks this agent actively.
    #[arg(long)]
    health_listen: Option<std::net::SocketAddr>,
    /// URL the server reaches --health-listen at [default: http:// + the bound address]
    #[arg(long)]
    advertise: Option<String>,
}

fn secs(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !(0.0..=86_400.0).contains(&v) {
        bail!("{flag}: must be 0 to 86400 seconds; got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

pub async fn worker(
    server: &str,
    token: Option<String>,
    ca_cert: Option<std::path::PathBuf>,
    a: WorkerArgs,
) -> anyhow::Result<()> {
    let mut cfg = switchyard_worker::Config::new(server, a.queue);
    cfg.token = token;
    cfg.ca_cert = ca_cert;
    if let Some(id) = a.id {
        cfg.id = id;
    }
    cfg.concurrency = a.concurrency;
    cfg.labels = pairs("--labels", &a.labels)?;
    cfg.exit_when_empty = a.exit_when_empty;
    cfg.kill_grace = secs("--kill-grace", a.kill_grace)?;
    cfg.shutdown_grace = secs("--shutdown-grace", a.shutdown_grace)?;
    cfg.agent_ttl = a.agent_ttl;
    cfg.health_listen = a.health_listen;
    cfg.advertise = a.advertise;
    if let Some(p) = &a.host_file {
        let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
        cfg.host =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
        if !cfg.host.is_object() {
            bail!("{}: must hold a JSON object", p.display());
        }
    }
    crate::serve::init_logging(false, None);
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        crate::serve::terminated().await;
        eprintln!("stopping: no new jobs; running ones get the shutdown grace");
        on_signal.cancel();
    });
    let s = switchyard_worker::run(cfg, stop)
        .await
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "worker done: {} finished, {} released, {} lost",
        s.finished, s.released, s.lost
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Queue a job: `switchyard jobs submit [OPTIONS] -- PROGRAM ARGS...`
    Submit(SubmitArgs),
    /// List jobs, oldest first.
    List {
        /// queued, running, succeeded, failed, timed_out, cancelled or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        /// Most jobs to list.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one job (JSON).
    Get { id: u64 },
    /// Cancel a job (a running one is stopped by its worker).
    Cancel { id: u64 },
    /// Queue a finished job again.
    Retry { id: u64 },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[arg(long, default_value = "default")]
    queue: String,
    /// Seconds before the worker stops it (timed_out).
    #[arg(long)]
    timeout: Option<u64>,
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,
    /// Seconds a lease lasts without a heartbeat.
    #[arg(long, default_value_t = 30)]
    lease_ttl: u64,
    /// Environment, KEY=VALUE (repeatable).
    #[arg(long)]
    env: Vec<String>,
    /// Labels a worker must have, KEY=VALUE (repeatable).
    #[arg(long)]
    label: Vec<String>,
    #[arg(long, default_value_t = 0)]
    priority: i32,
    /// Working directory on the worker.
    #[arg(long)]
    cwd: Option<String>,
    /// Run the words as one shell line (`/bin/sh -c`).
    #[arg(long)]
    shell: bool,
    /// Follow the job's output until it ends; exit non-zero unless it succeeded.
    #[arg(long, short)]
    follow: bool,
    /// The command.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

fn jobs_table(jobs: &[&switchyard_types::Job], wide: bool) -> String {
    let mut headers = vec!["id", "status", "attempts", "exit", "queue", "command"];
    if wide {
        headers.extend(["created", "finished", "worker", "owner", "error"]);
    }
    output::table(
        &headers,
        jobs.iter().map(|j| {
            let mut row = vec![
                j.id.to_string(),
                j.status.clone(),
                j.attempts.to_string(),
                output::opt(j.exit_code),
                j.queue.clone(),
                j.spec.command.join(" "),
            ];
            if wide {
                row.extend([
                    j.created_at.clone(),
                    output::opt(j.finished_at.as_deref()),
                    output::opt(j.worker.as_deref()),
                    output::opt(j.owner.as_deref()),
                    output::opt(j.error.as_deref()),
                ]);
            }
            row
        }),
    )
}

fn job_summary(j: &switchyard_types::Job) -> String {
    let mut pairs = vec![
        ("Id", j.id.to_string()),
        ("Status", j.status.clone()),
        ("Command", j.spec.command.join(" ")),
        ("Queue", j.queue.clone()),
        (
            "Attempts",
            format!("{} of {}", j.attempts, j.spec.max_attempts),
        ),
        ("Exit code", output::opt(j.exit_code)),
        ("Created", j.created_at.clone()),
        ("Started", output::opt(j.started_at.as_deref())),
        ("Finished", output::opt(j.finished_at.as_deref())),
        ("Worker", output::opt(j.worker.as_deref())),
    ];
    if let Some(e) = &j.error {
        pairs.push(("Error", e.clone()));
    }
    if let Some(o) = &j.owner {
        pairs.push(("Owner", o.clone()));
    }
    if j.cancel_requested {
        pairs.push(("Cancel", "requested".into()));
    }
    pairs.push(("Revision", j.revision.to_string()));
    output::summary(&pairs)
}

pub async fn jobs(client: &Client, out: Format, cmd: JobsCmd) -> anyhow::Result<ExitCode> {
    let one = |j: switchyard_types::Job| out.print(&j, |wide| jobs_table(&[&j], wide));
    match cmd {
        JobsCmd::Submit(a) => {
            let command = if a.shell {
                vec!["/bin/sh".into(), "-c".into(), a.command.join(" ")]
            } else {
                a.command
            };
            let spec = JobSpec {
                command,
                queue: a.queue,
                timeout: a.timeout,
                max_attempts: a.max_attempts,
                lease_ttl: a.lease_ttl,
                env: pairs("--env", &a.env)?,
                labels: pairs("--label", &a.label)?,
                priority: a.priority,
                cwd: a.cwd,
            };
            let job = client.enqueue(&spec, None).await?;
            if !a.follow {
                one(job)?;
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("job {} queued", job.id);
            return follow(client, out, job.id, 0, false).await;
        }
        JobsCmd::List {
            status,
            queue,
            limit,
        } => {
            let (mut after, mut left, mut all) = (None, limit, Vec::new());
            while left > 0 {
                let page = client
                    .jobs(status.as_deref(), queue.as_deref(), after, left.min(1000))
                    .await?;
                left -= page.jobs.len();
                all.extend(page.jobs);
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let list = switchyard_types::JobList {
                jobs: all,
                next: None,
            };
            out.print(&list, |wide| {
                jobs_table(&list.jobs.iter().collect::<Vec<_>>(), wide)
            })?
        }
        JobsCmd::Get { id } => {
            let j = client.job(id).await?;
            out.print(&j, |wide| {
                if wide {
                    jobs_table(&[&j], true)
                } else {
                    job_summary(&j)
                }
            })?
        }
        JobsCmd::Cancel { id } => one(client.cancel_job(id).await?)?,
        JobsCmd::Retry { id } => one(client.retry_job(id).await?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Show a job's output.
#[derive(Debug, Args)]
pub struct LogsArgs {
    job: u64,
    /// Keep printing until the job ends (resumes across reconnects and server restarts); exit
    /// non-zero unless the job succeeded.
    #[arg(long, short)]
    follow: bool,
    /// Start at this line offset.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Prefix each line with its offset and time.
    #[arg(long, short)]
    timestamps: bool,
}

pub async fn logs(client: &Client, out: Format, a: LogsArgs) -> anyhow::Result<ExitCode> {
    if a.follow {
        return follow(client, out, a.job, a.from, a.timestamps).await;
    }
    let mut from = a.from;
    loop {
        let page = client.logs(a.job, from).await?;
        if page.dropped > from {
            eprintln!(
                "[{} earlier lines dropped by the log size cap]",
                page.dropped
            );
        }
        for l in &page.lines {
            print_line(out, l, a.timestamps)?;
        }
        if page.lines.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        from = page.next;
    }
}

/// A log line: its text on stdout or stderr as the job wrote it; with `-o json|yaml`, the
/// whole line (offset, stream, time, text) on stdout.
fn print_line(out: Format, l: &switchyard_types::LogLine, timestamps: bool) -> anyhow::Result<()> {
    if out.machine() {
        return out.print_item(l, |_| String::new());
    }
    let text = if timestamps {
        format!("{:>6} {} {}", l.offset, l.time, l.text)
    } else {
        l.text.clone()
    };
    match l.stream {
        LogStream::Stdout => out.print_item(l, |_| text),
        LogStream::Stderr => Ok(writeln!(std::io::stderr(), "{text}")?),
    }
}

async fn follow(
    client: &Client,
    out: Format,
    id: u64,
    from: u64,
    timestamps: bool,
) -> anyhow::Result<ExitCode> {
    let mut f = client.follow_logs(id, from);
    let activity = crate::progress::Activity::new(format!("job {id}: following its output"));
    let mut lines = 0u64;
    while let Some(l) = f.next().await? {
        activity.suspend(|| print_line(out, &l, timestamps))?;
        lines += 1;
        activity.set(format!("job {id}: {lines} lines"));
    }
    activity.done();
    let status = f.status().unwrap_or("unknown").to_string();
    let job = client.job(id).await?;
    eprintln!(
        "job {id} {status} (attempts {}, exit code {}){}",
        job.attempts,
        job.exit_code.map_or("none".into(), |c| c.to_string()),
        job.error
            .as_ref()
            .map_or(String::new(), |e| format!(": {e}"))
    );
    Ok(if status == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The agents (hosts running jobs): id, status, host, jobs held.
pub async fn agents(client: &Client, out: Format) -> anyhow::Result<ExitCode> {
    let agents = switchyard_types::AgentList {
        agents: client.agents().await?,
    };
    out.print(&agents, |wide| {
        let mut headers = vec![
            "id", "status", "host", "cpus", "memory", "queues", "running",
        ];
        if wide {
            headers.extend(["last seen", "labels", "url", "lost because"]);
        }
        output::table(
            &headers,
            agents.agents.iter().map(|a| {
                let mut row = vec![
                    a.id.clone(),
                    a.status.clone(),
                    a.hostname.clone(),
                    a.cpus.to_string(),
                    format!("{}Mi", a.memory_bytes >> 20),
                    a.queues.join(","),
                    output::list(&a.running),
                ];
                if wide {
                    row.extend([
                        a.last_seen.clone(),
                        output::list(a.labels.iter().map(|(k, v)| format!("{k}={v}"))),
                        output::opt(a.url.as_deref()),
                        output::opt(a.lost_reason.as_deref()),
                    ]);
                }
                row
            }),
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
