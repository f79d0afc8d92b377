//! `switchyard run --matrix FILE`: a test matrix as one run, with its progress, its failures as
//! they happen, a summary, JUnit XML, and local workers; funkytown's controller and workers in
//! one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use switchyard_client::{Client, WatchItem};
use switchyard_types::{Run, RunCell};

use crate::output::{self, Format};
use crate::progress::{Counts, RunProgress, Target};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunArgs {
    #[command(subcommand)]
    cmd: Option<RunCmd>,
    /// The matrix file (JSON): a `POST /v1/runs` body (`matrix`, `exclude`, `command`, ...) or
    /// funkytown's spec file (`{"groups": [...]}`).
    #[arg(long)]
    matrix: Option<PathBuf>,
    /// argv template of each cell as a JSON array, e.g. '["./t.sh", "{spec}"]' (overrides the
    /// file's).
    #[arg(long)]
    command: Option<String>,
    /// Start N local worker processes for this run (they exit when its queue is empty).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Queue of the run's jobs (overrides the file's).
    #[arg(long)]
    queue: Option<String>,
    /// A name for the run.
    #[arg(long)]
    name: Option<String>,
    /// Write a JUnit XML report here at the end.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Submit and print the run id, without waiting.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Subcommand)]
enum RunCmd {
    /// Cancel a run.
    Cancel { id: u64 },
    /// List runs.
    List,
    /// A run's statistics.
    Get { id: u64 },
    /// A run's cells.
    Cells { id: u64 },
}

/// The `POST /v1/runs` body from the file and the flags.
fn body(args: &RunArgs) -> anyhow::Result<Value> {
    let path = args
        .matrix
        .as_ref()
        .context("--matrix FILE is required (or a subcommand: cancel, list, get, cells)")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON document", path.display()))?;
    let Value::Object(map) = &file else {
        bail!("{}: must be a JSON object", path.display());
    };
    let mut body = if map.contains_key("groups") {
        serde_json::json!({ "funkytown": file })
    } else {
        file
    };
    if let Some(c) = &args.command {
        let argv: Vec<String> =
            serde_json::from_str(c).context("--command: not a JSON array of strings")?;
        body["command"] = argv.into();
    }
    if let Some(q) = &args.queue {
        body["queue"] = q.clone().into();
    }
    if let Some(n) = &args.name {
        body["name"] = n.clone().into();
    }
    Ok(body)
}

fn label(c: &RunCell) -> String {
    let values: Vec<String> = c.values.values().cloned().collect();
    format!("{} [{}]", c.key, values.join(" "))
}

fn runs_table(runs: &[&Run], wide: bool) -> String {
    let mut headers = vec![
        "id", "status", "cells", "passed", "failed", "running", "queued", "name",
    ];
    if wide {
        headers.extend(["cancelled", "dead", "started", "duration", "cells/s"]);
    }
    output::table(
        &headers,
        runs.iter().map(|r| {
            let mut row = vec![
                r.id.to_string(),
                r.status.clone(),
                r.total.to_string(),
                r.passed.to_string(),
                r.failed.to_string(),
                r.running.to_string(),
                r.queued.to_string(),
                if r.name.is_empty() {
                    "-".into()
                } else {
                    r.name.clone()
                },
            ];
            if wide {
                row.extend([
                    r.cancelled.to_string(),
                    r.dead.to_string(),
                    r.started_at.clone(),
                    format!("{:.1}s", r.duration_seconds),
                    format!("{:.2}", r.throughput),
                ]);
            }
            row
        }),
    )
}

fn run_summary(r: &Run) -> String {
    output::summary(&[
        ("Run", r.id.to_string()),
        (
            "Name",
            if r.name.is_empty() {
                "-".into()
            } else {
                r.name.clone()
            },
        ),
        ("Status", r.status.clone()),
        (
            "Cells",
            format!(
                "{} ({} excluded): {}",
                r.total,
                r.excluded,
                Counts::of_run(r).describe()
            ),
        ),
        ("Started", r.started_at.clone()),
        ("Finished", output::opt(r.finished_at.as_deref())),
        (
            "Duration",
            format!("{:.1}s ({:.2} cells/s)", r.duration_seconds, r.throughput),
        ),
        (
            "ETA",
            output::opt(r.eta_seconds.map(|e| format!("{}s", e.ceil()))),
        ),
    ])
}

pub async fn run(
    client: &Client,
    token: Option<String>,
    out: Format,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    match &args.cmd {
        Some(RunCmd::Cancel { id }) => {
            let r = client.cancel_run(*id).await?;
            out.print(&r, |wide| runs_table(&[&r], wide))?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(RunCmd::List) => {
            let list = switchyard_types::RunList {
                runs: client.runs().await?,
            };
            out.print(&list, |wide| {
                runs_table(&list.runs.iter().collect::<Vec<_>>(), wide)
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(RunCmd::Get { id }) => {
            let r = client.run(*id).await?;
            out.print(&r, |wide| {
                if wide {
                    runs_table(&[&r], true)
                } else {
                    run_summary(&r)
                }
            })?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(RunCmd::Cells { id }) => {
            let cells = switchyard_types::RunCells {
                cells: client.run_cells(*id).await?,
            };
            out.print(&cells, |wide| cells_table(&cells.cells, wide))?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let body = body(&args)?;
    let queue = body["queue"].as_str().unwrap_or("default").to_string();
    // Watch from before the run exists, so no event of it is missed.
    let mut watch = client.watch("runs/", None).await?;
    let created = client.create_run(&body).await?;
    let id = created.id;
    eprintln!(
        "run {id}: {} cells ({} excluded)",
        created.cells, created.excluded
    );
    for e in &created.excluded_by {
        eprintln!("  excluded {} by {:?}", e.cells, e.rule);
    }
    if args.detach {
        out.print(&created, |_| format!("{id}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut workers = start_workers(client, token, &queue, id, args.workers)?;
    let base = client.base_url();
    let topic = format!("runs/{id}");
    let mut cancelled = false;
    let cells: Vec<RunCell> = client.run_cells(id).await?;
    // One Ctrl-C handler for the whole wait, so no press is lost between polls.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut stats = client.run(id).await?;
    let mut progress = RunProgress::new(Target::Stderr);
    // Every event of the run carries its counts: the display follows the events, and asks
    // for the statistics only when the watch is quiet.
    progress.update(Counts::of_run(&stats));
    // The run's events come in order, every cell's before `finished`: wait for that one, so
    // no failure goes unprinted (or, should the watch be silent, 10 s past the statistics'
    // end).
    let mut seen_end = false;
    let mut finished_seen_at: Option<Instant> = None;
    while !seen_end && finished_seen_at.is_none_or(|t| t.elapsed() < Duration::from_secs(10)) {
        if stats.finished_at.is_some() && finished_seen_at.is_none() {
            finished_seen_at = Some(Instant::now());
        }
        let item = tokio::select! {
            item = tokio::time::timeout(Duration::from_secs(1), watch.next()) => item,
            _ = &mut ctrl_c, if !cancelled => {
                cancelled = true;
                progress.println(&format!("cancelling run {id} (Ctrl-C again to leave it running)"));
                let _ = client.cancel_run(id).await;
                tokio::spawn(async {
                    let _ = tokio::signal::ctrl_c().await;
                    std::process::exit(130);
                });
                continue;
            }
        };
        match item {
            Ok(Ok(WatchItem::Event(e))) if e.topic == topic => {
                let kind = e.event["kind"].as_str().unwrap_or_default();
                if kind == "cell"
                    && let Some(line) = failure(&e.event["cell"], &cells, &base)
                {
                    progress.println(&line);
                }
                if kind == "finished" {
                    seen_end = true;
                }
                if let Some(c) = Counts::of_event(&e.event) {
                    progress.update(c);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e).context("watching the run"),
            // Quiet for a second: ask for the statistics (a watch that stalls).
            Err(_) => {
                stats = client.run(id).await?;
                progress.update(Counts::of_run(&stats));
            }
        }
    }
    let stats = client.run(id).await?;
    progress.finish(Counts::of_run(&stats), &stats.status);
    stop_workers(client, &mut workers, id).await;
    let cells = client.run_cells(id).await?;
    out.print(&stats, |_| summary(&stats, &cells, &base))?;
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&stats, &cells))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("JUnit report: {}", path.display());
    }
    Ok(if stats.status == "passed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cells_table(cells: &[RunCell], wide: bool) -> String {
    let mut headers = vec!["cell", "status", "exit", "job"];
    if wide {
        headers.extend(["duration", "error"]);
    }
    output::table(
        &headers,
        cells.iter().map(|c| {
            let mut row = vec![
                label(c),
                c.status.clone(),
                output::opt(c.exit_code),
                c.job_id.to_string(),
            ];
            if wide {
                row.extend([
                    output::opt(c.duration_seconds.map(|d| format!("{d:.1}s"))),
                    output::opt(c.error.as_deref()),
                ]);
            }
            row
        }),
    )
}

/// How long the local workers get to exit by themselves once the run has ended.
const WORKER_EXIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The local workers exit by themselves once their queue is drained, leaving the agent
/// inventory as they go; one still running after [`WORKER_EXIT`] is stopped and removed.
async fn stop_workers(client: &Client, workers: &mut [std::process::Child], run: u64) {
    let deadline = std::time::Instant::now() + WORKER_EXIT;
    for (i, w) in workers.iter_mut().enumerate() {
        while matches!(w.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if matches!(w.try_wait(), Ok(None)) {
            let _ = w.kill();
            let _ = w.wait();
            let id = worker_id(run, i);
            if let Err(e) = client.remove_agent(&id).await {
                eprintln!("could not remove worker {id} from the agents: {e}");
            }
        }
    }
}

fn worker_id(run: u64, i: usize) -> String {
    format!("run{run}-w{i}")
}

fn start_workers(
    client: &Client,
    token: Option<String>,
    queue: &str,
    run: u64,
    n: usize,
) -> anyhow::Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("finding the switchyard binary")?;
    (0..n)
        .map(|i| {
            let mut c = std::process::Command::new(&exe);
            c.args(["worker", "--server", &client.base_url(), "--queue", queue])
                .args(["--exit-when-empty", "--id", &worker_id(run, i)])
                .env("SWITCHYARD_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            if let Some(t) = &token {
                c.env("SWITCHYARD_TOKEN", t);
            }
            c.spawn().context("starting a local worker")
        })
        .collect()
}

/// The line of a failed cell as it ends, with the link to its log; none for other cells.
fn failure(cell: &Value, cells: &[RunCell], base: &str) -> Option<String> {
    let status = cell["status"].as_str().unwrap_or_default();
    if !matches!(status, "failed" | "timed_out" | "dead") {
        return None;
    }
    let c = cell["index"].as_u64().and_then(|i| cells.get(i as usize))?;
    let code = cell["exit_code"]
        .as_i64()
        .map_or("-".to_string(), |c| c.to_string());
    let why = cell["error"]
        .as_str()
        .map_or(String::new(), |e| format!(": {e}"));
    Some(format!(
        "FAIL {} {status} (exit {code}){why} log: {base}/v1/jobs/{}/logs",
        label(c),
        c.job_id
    ))
}

fn summary(r: &Run, cells: &[RunCell], base: &str) -> String {
    let mut out = format!(
        "run {} {}: {} cells, {} passed, {} failed ({} timed out), {} cancelled, {} dead in {:.1}s ({:.1} cells/s)\n",
        r.id,
        r.status,
        r.total,
        r.passed,
        r.failed,
        r.timed_out,
        r.cancelled,
        r.dead,
        r.duration_seconds,
        r.throughput
    );
    for c in cells
        .iter()
        .filter(|c| matches!(c.status.as_str(), "failed" | "timed_out" | "dead"))
    {
        out += &format!(
            "  {} {} (exit {}){} {base}/v1/jobs/{}/logs\n",
            c.status,
            label(c),
            c.exit_code.map_or("-".into(), |c| c.to_string()),
            reason(c),
            c.job_id
        );
    }
    out
}

/// `: REASON` when the cell's job says why it ended badly, else nothing.
fn reason(c: &RunCell) -> String {
    c.error.as_ref().map_or(String::new(), |e| format!(": {e}"))
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// A JUnit XML report: one test case per cell.
pub fn junit(r: &Run, cells: &[RunCell]) -> String {
    let failures = r.failed + r.dead;
    let skipped = r.cancelled + r.queued + r.running;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"switchyard run {}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">\n",
        r.id,
        r.total,
        r.duration_seconds,
        xml(if r.name.is_empty() { "run" } else { &r.name }),
        r.total,
        r.duration_seconds,
        xml(&r.started_at),
    );
    for c in cells {
        let class = c
            .values
            .get("spec")
            .or_else(|| c.values.values().next())
            .cloned()
            .unwrap_or_default();
        out.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml(&class),
            xml(&label(c)),
            c.duration_seconds.unwrap_or(0.0)
        ));
        match c.status.as_str() {
            "succeeded" => out.push_str("/>\n"),
            "failed" | "timed_out" | "dead" => out.push_str(&format!(
                ">\n      <failure message=\"{} (exit {}){}\" type=\"{}\">job {}</failure>\n    </testcase>\n",
                xml(&c.status),
                c.exit_code.map_or("-".into(), |c| c.to_string()),
                xml(&reason(c)),
                xml(&c.status),
                c.job_id
            )),
            other => out.push_str(&format!(
                ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                xml(other)
            )),
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
