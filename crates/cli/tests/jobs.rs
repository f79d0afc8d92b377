//! Jobs through real `switchyard worker` processes: exactly-once endings, kill -9 of workers,
//! cancel reaching the process, and a log follower across a server restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_client::{Client, WatchItem};
use switchyard_types::{Job, JobSpec};
use tempfile::TempDir;

mod common;

use common::Proc;

/// `switchyard serve` without a local worker, API on `listen`.
fn spawn_at(dir: &Path, listen: &str, peer: &str) -> Proc {
    let mut args: Vec<std::ffi::OsString> = [
        "--listen",
        listen,
        "--peer-listen",
        peer,
        "--local-workers",
        "0",
    ]
    .map(Into::into)
    .into();
    args.extend(["--data-dir".into(), dir.into()]);
    common::serve("server", args)
}

fn spawn(dir: &Path) -> Proc {
    spawn_at(dir, "127.0.0.1:0", "127.0.0.1:0")
}

/// A `switchyard worker` process, killed on drop.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn worker(url: &str, args: &[&str]) -> Worker {
    Worker(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["worker", "--server", url])
            .args(args)
            .env("SWITCHYARD_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start a worker"),
    )
}

/// Wait for a child to exit, for at most `secs`.
async fn exited(w: &mut Worker, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = w.0.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not exit in {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `f` until it gives `Some`, for at most `secs`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs}s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec(v: serde_json::Value) -> JobSpec {
    serde_json::from_value(v).unwrap()
}

async fn all_jobs(client: &Client) -> Vec<Job> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = client.jobs(None, None, after, 1000).await.unwrap();
        out.extend(page.jobs);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// Every `jobs/` event from `from` up to the server's current revision.
async fn job_events(client: &Client, from: u64) -> Vec<serde_json::Value> {
    let until_rev = client.status().await.unwrap().revision;
    let mut w = client.watch("jobs/", Some(from)).await.unwrap();
    let mut out = Vec::new();
    w.request_progress().await.unwrap();
    loop {
        match common::within(30, "job events", w.next()).await.unwrap() {
            WatchItem::Event(e) => out.push(e.event),
            WatchItem::Bookmark(r) if r >= until_rev => return out,
            WatchItem::Bookmark(_) => w.request_progress().await.unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_through_four_worker_processes_each_end_exactly_once() {
    let dir = TempDir::new().unwrap();
    let server = spawn(dir.path());
    let client = Client::new(server.url());
    common::ready(&client).await;
    let start = client.status().await.unwrap().revision;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let batch = vec![spec(json!({"command": ["true"]})); 250];
        ids.extend(client.enqueue_batch(batch, None).await.unwrap());
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 1000);
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| {
            let id = format!("w{i}");
            worker(
                &server.url(),
                &["--id", &id, "--concurrency", "4", "--exit-when-empty"],
            )
        })
        .collect();
    for w in &mut workers {
        assert!(
            exited(w, 240).await.success(),
            "a worker exits 0 once drained"
        );
    }
    let jobs = all_jobs(&client).await;
    assert_eq!(jobs.len(), 1000);
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        assert_eq!(
            (j.status.as_str(), j.attempts, j.exit_code),
            ("succeeded", 1, Some(0)),
            "job {}",
            j.id
        );
        *per_worker.entry(j.worker.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(
        per_worker.keys().cloned().collect::<Vec<_>>(),
        ["w0", "w1", "w2", "w3"],
        "every worker ran jobs: {per_worker:?}"
    );
    // Exactly one ending per job in the event history.
    let mut finished: BTreeMap<u64, usize> = BTreeMap::new();
    for e in job_events(&client, start).await {
        if e["kind"] == "finished" {
            *finished
                .entry(e["job"]["id"].as_u64().unwrap())
                .or_default() += 1;
        }
    }
    assert_eq!(finished.len(), 1000);
    assert!(finished.values().all(|n| *n == 1), "one ending each");
    // The workers left the inventory when they exited.
    assert!(client.agents().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_workers_mid_job_loses_no_job_and_counts_every_rerun() {
    let dir = TempDir::new().unwrap();
    let server = spawn(dir.path());
    let client = Client::new(server.url());
    common::ready(&client).await;
    let start = client.status().await.unwrap().revision;
    let jobs =
        vec![spec(json!({"command": ["sleep", "0.3"], "lease_ttl": 2, "max_attempts": 50})); 20];
    client.enqueue_batch(jobs, None).await.unwrap();
    for round in 0..10 {
        let id = format!("doomed{round}");
        let mut w = worker(
            &server.url(),
            &["--id", &id, "--concurrency", "2", "--agent-ttl", "1"],
        );
        // Wait until it holds a running job, then kill -9 it mid-job.
        until(30, "the worker to run a job", || {
            let (client, id) = (client.clone(), id.clone());
            async move {
                let page = client.jobs(Some("running"), None, None, 100).await.ok()?;
                page.jobs
                    .iter()
                    .any(|j| j.worker.as_deref() == Some(id.as_str()))
                    .then_some(())
            }
        })
        .await;
        w.0.kill().unwrap();
        w.0.wait().unwrap();
    }
    let mut last = worker(
        &server.url(),
        &[
            "--id",
            "survivor",
            "--concurrency",
            "4",
            "--exit-when-empty",
        ],
    );
    assert!(exited(&mut last, 240).await.success());
    let jobs = all_jobs(&client).await;
    assert_eq!(jobs.len(), 20);
    assert!(
        jobs.iter().all(|j| j.status == "succeeded"),
        "no job lost: {jobs:?}"
    );
    // A job ran more than once only after a lease of it ended unreported, and each such run
    // is counted in its attempts.
    let events = job_events(&client, start).await;
    let ended_unreported = events.iter().filter(|e| e["kind"] == "requeued").count();
    let attempts: u32 = jobs.iter().map(|j| j.attempts).sum();
    assert_eq!(attempts as usize, 20 + ended_unreported);
    assert!(
        ended_unreported >= 10,
        "each kill left a lease to expire: {ended_unreported}"
    );
}

/// The pid the job printed as its first line.
async fn first_line(client: &Client, id: u64) -> String {
    until(30, "the job's first log line", || async move {
        client
            .logs(id, 0)
            .await
            .ok()?
            .lines
            .first()
            .map(|l| l.text.clone())
    })
    .await
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_process_within_the_grace_period() {
    let dir = TempDir::new().unwrap();
    let server = spawn(dir.path());
    let client = Client::new(server.url());
    common::ready(&client).await;
    let _w = worker(&server.url(), &["--concurrency", "2", "--kill-grace", "2"]);
    // One exits on SIGTERM; the other ignores it and needs the SIGKILL after the grace.
    let polite = client
        .enqueue(&spec(json!({"command": "echo $$; exec sleep 600"})), None)
        .await
        .unwrap();
    let stubborn = client
        .enqueue(
            &spec(json!({"command": "trap '' TERM; echo $$; sleep 600; echo done"})),
            None,
        )
        .await
        .unwrap();
    for job in [polite, stubborn] {
        let pid = first_line(&client, job.id).await;
        assert!(alive(&pid), "the job's process {pid} runs");
        let mut w = client
            .watch(&format!("jobs/{}", job.id), None)
            .await
            .unwrap();
        let cancelled = client.cancel_job(job.id).await.unwrap();
        assert!(cancelled.cancel_requested);
        // Heartbeat (1 s) + grace (2 s) + reporting; the budget is the grace plus slack.
        let end = common::within(30, "the cancelled job to end", async {
            loop {
                if let WatchItem::Event(e) = w.next().await.unwrap()
                    && e.event["kind"] == "finished"
                {
                    return e.event;
                }
            }
        })
        .await;
        assert_eq!(end["job"]["status"], "cancelled");
        assert!(!alive(&pid), "process {pid} is gone");
        let log = client.logs(job.id, 0).await.unwrap();
        assert!(log.lines.iter().all(|l| l.text != "done"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_follower_sees_every_line_in_order_across_a_server_restart() {
    let dir = TempDir::new().unwrap();
    let mut server = spawn(dir.path());
    let (api, peer) = (server.api.clone(), server.peer.clone());
    let client = Client::new(server.url());
    common::ready(&client).await;
    let _w = worker(&server.url(), &[]);
    // Half the lines, then a wait for the release file (made after the restart), then the rest:
    // the job cannot end before the server is killed.
    let release = dir.path().join("release");
    let command = format!(
        "for i in $(seq 1 20); do echo line $i; sleep 0.05; done; \
         while [ ! -e '{}' ]; do sleep 0.05; done; \
         for i in $(seq 21 40); do echo line $i; sleep 0.05; done",
        release.display()
    );
    let job = client
        .enqueue(
            &spec(json!({
                "command": command,
                "lease_ttl": 30,
            })),
            None,
        )
        .await
        .unwrap();
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let mut follower = client.follow_logs(job.id, 3);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(l) = follower.next().await.unwrap() {
            got.push(l);
            count_tx.send_replace(got.len());
        }
        (
            got,
            follower.status().map(str::to_string),
            follower.reconnects,
        )
    });
    common::within(
        30,
        "the follower's first lines",
        count_rx.wait_for(|n| *n >= 5),
    )
    .await
    .unwrap();
    // kill -9 and restart on the same addresses while the job keeps printing.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = spawn_at(dir.path(), &api, &peer);
    common::ready(&Client::new(server.url())).await;
    std::fs::write(&release, "").unwrap();
    let (got, status, reconnects) = common::within(90, "the follower to end", reader)
        .await
        .unwrap();
    let offsets: Vec<u64> = got.iter().map(|l| l.offset).collect();
    assert_eq!(
        offsets,
        (3..40).collect::<Vec<_>>(),
        "every line once, in order"
    );
    for l in &got {
        assert_eq!(l.text, format!("line {}", l.offset + 1));
    }
    assert_eq!(status.as_deref(), Some("succeeded"));
    assert!(reconnects >= 1, "the follower did reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_taking_work_and_releases_what_runs_past_the_grace() {
    let dir = TempDir::new().unwrap();
    let server = spawn(dir.path());
    let client = Client::new(server.url());
    common::ready(&client).await;
    let mut w = worker(
        &server.url(),
        &[
            "--id",
            "leaving",
            "--shutdown-grace",
            "0.5",
            "--kill-grace",
            "1",
        ],
    );
    let job = client
        .enqueue(&spec(json!({"command": "echo $$; exec sleep 600"})), None)
        .await
        .unwrap();
    let pid = first_line(&client, job.id).await;
    let term = Command::new("kill")
        .args(["-TERM", &w.0.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(exited(&mut w, 30).await.success(), "SIGTERM exits 0");
    assert!(!alive(&pid), "the job's process was stopped");
    let j = client.job(job.id).await.unwrap();
    assert_eq!(
        (j.status.as_str(), j.attempts),
        ("queued", 0),
        "released: queued again, the attempt not counted"
    );
    assert!(client.agents().await.unwrap().is_empty(), "the worker left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_local_worker_by_default() {
    let dir = TempDir::new().unwrap();
    let server = common::serve_in(dir.path(), &[]);
    let client = Client::new(server.url());
    common::ready(&client).await;
    let job = client
        .enqueue(
            &spec(json!({"command": ["echo", "from the local worker"]})),
            None,
        )
        .await
        .unwrap();
    let mut f = client.follow_logs(job.id, 0);
    let line = common::within(30, "the job's output", f.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.text, "from the local worker");
    assert_eq!(common::within(30, "the end", f.next()).await.unwrap(), None);
    assert_eq!(f.status(), Some("succeeded"));
    let agents = client.agents().await.unwrap();
    assert_eq!(agents[0].id, "local-node1");
}
