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

fn summary(j: &switchyard_types::Job) -> String {
    format!(
        "{:>6} {:<9} attempts={} exit={} queue={} {}",
        j.id,
        j.status,
        j.attempts,
        j.exit_code.map_or("-".into(), |c| c.to_string()),
        j.queue,
        j.spec.command.join(" ")
    )
}

pub async fn jobs(client: &Client, cmd: JobsCmd) -> anyhow::Result<ExitCode> {
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
                println!("{}", serde_json::to_string_pretty(&job)?);
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("job {} queued", job.id);
            return follow(client, job.id, 0, false).await;
        }
        JobsCmd::List {
            status,
            queue,
            limit,
        } => {
            let (mut after, mut left) = (None, limit);
            while left > 0 {
                let page = client
                    .jobs(status.as_deref(), queue.as_deref(), after, left.min(1000))
                    .await?;
                for j in &page.jobs {
                    println!("{}", summary(j));
                }
                left -= page.jobs.len();
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        JobsCmd::Get { id } => {
            println!("{}", serde_json::to_string_pretty(&client.job(id).await?)?)
        }
        JobsCmd::Cancel { id } => println!("{}", summary(&client.cancel_job(id).await?)),
        JobsCmd::Retry { id } => println!("{}", summary(&client.retry_job(id).await?)),
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

pub async fn logs(client: &Client, a: LogsArgs) -> anyhow::Result<ExitCode> {
    if a.follow {
        return follow(client, a.job, a.from, a.timestamps).await;
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
            print_line(l, a.timestamps)?;
        }
        if page.lines.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        from = page.next;
    }
}

fn print_line(l: &switchyard_types::LogLine, timestamps: bool) -> std::io::Result<()> {
    let text = if timestamps {
        format!("{:>6} {} {}", l.offset, l.time, l.text)
    } else {
        l.text.clone()
    };
    match l.stream {
        LogStream::Stdout => writeln!(std::io::stdout(), "{text}"),
        LogStream::Stderr => writeln!(std::io::stderr(), "{text}"),
    }
}

async fn follow(client: &Client, id: u64, from: u64, timestamps: bool) -> anyhow::Result<ExitCode> {
    let mut f = client.follow_logs(id, from);
    while let Some(l) = f.next().await? {
        print_line(&l, timestamps)?;
    }
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
pub async fn agents(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let agents = client.agents().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&agents)?);
        return Ok(ExitCode::SUCCESS);
    }
    for a in &agents {
        println!(
            "{:<24} {:<5} host={} cpus={} mem={}MiB queues={} last_seen={} running={:?}{}",
            a.id,
            a.status,
            a.hostname,
            a.cpus,
            a.memory_bytes >> 20,
            a.queues.join(","),
            a.last_seen,
            a.running,
            a.lost_reason
                .as_ref()
                .map_or(String::new(), |r| format!(" ({r})"))
        );
    }
    Ok(ExitCode::SUCCESS)
}
