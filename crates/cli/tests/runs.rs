//! Runs on a real `switchyard serve`: `switchyard run --matrix FILE --workers 4` takes a run of
//! 200 cells (some failing on purpose) through 4 worker processes; every cell ends once, the
//! statistics and funkytown's run metadata match the truth, the CLI exits non-zero and its
//! JUnit file lists the failures. Malformed, empty and oversized matrices create nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::{Value, json};
use switchyard_client::{Client, WatchItem};
use tempfile::TempDir;

mod common;

#[tokio::test]
async fn a_run_of_200_cells_through_4_workers_ends_every_cell_once_and_reports_the_failures() {
    let dir = TempDir::new().unwrap();
    // n % 10 == 7 fails with exit 3: 4 values of n × 5 kinds = 20 failures.
    let script = common::script(
        dir.path(),
        "cell.sh",
        "echo \"cell $1 $2\"\nif [ $(( $1 % 10 )) -eq 7 ]; then echo boom >&2; exit 3; fi\n",
    );
    let matrix = dir.path().join("matrix.json");
    let n: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    std::fs::write(
        &matrix,
        json!({
            "name": "two-hundred",
            "matrix": {"n": n, "kind": ["a", "b", "c", "d", "e"]},
            "command": [script.to_str().unwrap(), "{n}", "{kind}"],
            "timeout": 60
        })
        .to_string(),
    )
    .unwrap();
    let junit = dir.path().join("junit.xml");
    let proc = common::serve_in(&dir.path().join("data"), &["--local-workers", "0"]);
    let client = Client::new(proc.url());
    common::ready(&client).await;
    let from = client.status().await.unwrap().revision;

    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--server", &proc.url(), "--workers", "4"])
        .arg("--matrix")
        .arg(&matrix)
        .arg("--junit")
        .arg(&junit)
        .output();
    let out = common::within(120, "switchyard run to end", cli)
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("run "), "{stderr}");
    assert_eq!(
        stderr.matches("FAIL ").count(),
        20,
        "each failure printed as it happens: {stderr}"
    );

    let runs = client.runs().await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = client.run(runs[0].id).await.unwrap();
    assert_eq!(
        (
            run.status.as_str(),
            run.total,
            run.passed,
            run.failed,
            run.queued,
            run.running
        ),
        ("failed", 200, 180, 20, 0, 0)
    );
    assert_eq!(run.funkytown.tasksfinished, 200);
    assert_eq!(run.funkytown.tasksremaining, 0);
    assert!(run.funkytown.finished);
    assert_eq!(run.eta_seconds, Some(0.0));
    let by_n = &run.breakdown.as_ref().unwrap()["n"];
    assert_eq!(by_n["7"].get("failed"), Some(&5));
    assert_eq!(by_n["8"].get("passed"), Some(&5));
    assert!(stdout.contains("180 passed, 20 failed"), "{stdout}");

    // Every cell ended once, on one of the run's 4 workers; the truth is the jobs themselves.
    let cells = client.run_cells(run.id).await.unwrap();
    let mut workers = BTreeSet::new();
    for c in &cells {
        let job = client.job(c.job_id).await.unwrap();
        let n: u32 = c.values["n"].parse().unwrap();
        let want = if n % 10 == 7 { "failed" } else { "succeeded" };
        assert_eq!((job.status.as_str(), job.attempts), (want, 1), "{c:?}");
        assert_eq!(c.status, want);
        workers.insert(job.worker.clone().unwrap());
    }
    assert!(
        workers.len() > 1,
        "the cells spread over the workers: {workers:?}"
    );
    assert!(
        workers
            .iter()
            .all(|w| w.starts_with(&format!("run{}-w", run.id))),
        "{workers:?}"
    );
    // One final event per cell on the run's topic.
    let mut watch = client
        .watch(&format!("runs/{}", run.id), Some(from))
        .await
        .unwrap();
    let mut ends: BTreeMap<u64, u32> = BTreeMap::new();
    common::within(30, "the run's events up to its end", async {
        loop {
            let WatchItem::Event(e) = watch.next().await.unwrap() else {
                continue;
            };
            if e.event["kind"] == "cell"
                && matches!(
                    e.event["cell"]["status"].as_str(),
                    Some("succeeded" | "failed")
                )
            {
                *ends
                    .entry(e.event["cell"]["index"].as_u64().unwrap())
                    .or_default() += 1;
            }
            if e.event["kind"] == "finished" {
                break;
            }
        }
    })
    .await;
    assert_eq!(ends.len(), 200);
    assert!(ends.values().all(|&n| n == 1), "a cell ended twice");

    // The JUnit file lists exactly the failures.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"200\" failures=\"20\""), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 200);
    assert_eq!(xml.matches("<failure ").count(), 20);
    for n in [7, 17, 27, 37] {
        assert!(
            xml.contains(&format!("[a {n}]\"")) || xml.contains(&format!("[{n} a]\"")),
            "{n} in {xml}"
        );
    }
}

#[tokio::test]
async fn malformed_empty_and_oversized_matrices_create_nothing() {
    let dir = TempDir::new().unwrap();
    let proc = common::serve_in(
        &dir.path().join("data"),
        &["--local-workers", "0", "--run-max-cells", "50"],
    );
    let client = Client::new(proc.url());
    common::ready(&client).await;
    let http = reqwest::Client::new();
    let cases = [
        (json!({"command": ["t"]}), "matrix"),
        (json!({"matrix": {}, "command": ["t"]}), "matrix"),
        (json!({"matrix": {"a": []}, "command": ["t"]}), "matrix.a"),
        (
            json!({"matrix": {"a": [1, 2]}, "command": ["t"]}),
            "matrix.a",
        ),
        (json!({"matrix": {"a": ["x"]}}), "command"),
        (json!({"matrix": {"a": ["x"]}, "command": []}), "command"),
        (
            json!({"matrix": {"a": ["x"]}, "command": ["t"], "exclude": [{"b": "y"}]}),
            "exclude[0].b",
        ),
        (
            json!({"matrix": {"a": ["x"]}, "command": ["t"], "exclude": [{"a": "x"}]}),
            "matrix",
        ),
        (
            json!({"matrix": {"a": (0..8).map(|i| i.to_string()).collect::<Vec<_>>(), "b": (0..8).map(|i| i.to_string()).collect::<Vec<_>>()}, "command": ["t"]}),
            "matrix",
        ),
        (
            json!({"matrix": {"a": ["x"]}, "command": ["t"], "colour": "red"}),
            "colour",
        ),
        (
            json!({"funkytown": {"groups": [{"name": "g", "tasks": [{"spec": "s"}]}]}}),
            "funkytown",
        ),
        (
            json!({"funkytown": {"groups": [{"name": "g", "tasks": [{"spec": "s", "viewports": ["mobile"], "browsers": ["firefox"]}]}]}}),
            "matrix",
        ),
        (
            json!({"matrix": {"a": ["x"]}, "funkytown": {"groups": []}, "command": ["t"]}),
            "funkytown",
        ),
    ];
    for (body, field) in cases {
        let resp = http
            .post(format!("{}/v1/runs", proc.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let err: Value = resp.json().await.unwrap();
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(field),
            "{body}: {message:?} names {field}"
        );
    }
    let resp = http
        .post(format!("{}/v1/runs", proc.url()))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // The CLI says what is wrong with a file and exits non-zero.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[1, 2").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--server", &proc.url(), "--matrix"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JSON document"));
    assert!(
        client.runs().await.unwrap().is_empty(),
        "nothing was created"
    );
    let jobs = client.jobs(None, None, None, 10).await.unwrap();
    assert!(jobs.jobs.is_empty(), "no job was queued");
}

#[tokio::test]
async fn a_funkytown_spec_file_runs_as_the_original_and_its_reporter_shows_it() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("spec_context_map.json");
    std::fs::write(
        &file,
        json!({"groups": [
            {"groupName": "alpha", "tasks": [
                {"spec": "alpha_01.spec.ts", "viewports": ["desktop", "mobile"], "browsers": ["chrome", "firefox", "webkit"]},
                {"spec": "alpha_02.spec.ts", "viewports": ["mobile"], "browsers": ["chrome", "webkit"]}]},
            {"name": "beta", "tasks": [
                {"spec": "beta_01.spec.ts", "viewports": ["mobile"], "browsers": ["webkit"]}]}
        ]})
        .to_string(),
    )
    .unwrap();
    let proc = common::serve_in(
        &dir.path().join("data"),
        &["--local-workers", "0", "--funkytown-listen", "127.0.0.1:0"],
    );
    let client = Client::new(proc.url());
    common::ready(&client).await;
    let reporter = format!("http://{}", proc.funkytown.as_ref().unwrap());
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{reporter}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let none = http
        .get(format!("{reporter}/results"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404, "no run yet");

    // webkit cells fail; everything else passes.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--server", &proc.url(), "--workers", "2", "--matrix"])
        .arg(&file)
        .args([
            "--command",
            r#"["sh", "-c", "echo {spec}; test {browser} != webkit"]"#,
        ])
        .output();
    let out = common::within(60, "the funkytown run", out).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("8 cells (1 excluded)"), "{stderr}");

    let run = &client.runs().await.unwrap()[0];
    let cells = client.run_cells(run.id).await.unwrap();
    let keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "task:alpha:0",
            "task:alpha:1",
            "task:alpha:2",
            "task:alpha:3",
            "task:alpha:4",
            "task:alpha:5",
            "task:alpha:6",
            "task:beta:0"
        ]
    );
    assert_eq!((run.passed, run.failed), (4, 4));

    let page = http
        .get(format!("{reporter}/results"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Tasks Remaining: 0</div>"), "{html}");
    assert!(html.contains("Tasks Finished: 8</div>"), "{html}");
    assert!(html.contains("Finished: true</div>"), "{html}");
    assert_eq!(html.matches("<td class='passed'>passed</td>").count(), 4);
    assert_eq!(html.matches("<td class='failed'>failed</td>").count(), 4);
    assert_eq!(
        html.matches("<td class='complete'>complete</td>").count(),
        8
    );
    assert!(
        html.contains("<td>beta_01.spec.ts</td><td>mobile</td><td>webkit</td>"),
        "{html}"
    );
}

/// funkytown's spec file through `switchyard run`: cells that exit 0, 1 and 2 and one whose
/// command does not exist read on the reporter page as the original's worker judged them
/// (passed, failed, error, error) with Go's durations; the reason a command could not start is
/// printed and is its log's last line; the run's workers leave the agents by themselves.
#[tokio::test]
async fn funkytown_results_show_each_outcome_as_the_original_and_the_workers_leave() {
    let dir = TempDir::new().unwrap();
    common::script(dir.path(), "ok", "echo fine\nsleep 1.2\n");
    common::script(dir.path(), "one", "echo no >&2\nexit 1\n");
    common::script(dir.path(), "two", "exit 2\n");
    let spec = dir.path().join("spec.json");
    let task = |s: &str| json!({"spec": s, "viewports": ["desktop"], "browsers": ["chrome"]});
    std::fs::write(
        &spec,
        json!({"groups": [{"name": "g", "tasks": [task("ok"), task("one"), task("two"), task("npx")]}]})
            .to_string(),
    )
    .unwrap();
    let proc = common::serve_in(
        &dir.path().join("data"),
        &["--local-workers", "0", "--funkytown-listen", "127.0.0.1:0"],
    );
    let client = Client::new(proc.url());
    common::ready(&client).await;
    let command = json!([format!("{}/{{spec}}", dir.path().display())]).to_string();
    let junit = dir.path().join("junit.xml");
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["run", "--server", &proc.url(), "--workers", "2"])
        .arg("--matrix")
        .arg(&spec)
        .args(["--command", &command])
        .arg("--junit")
        .arg(&junit)
        .output();
    let out = common::within(120, "switchyard run to end", cli)
        .await
        .unwrap();
    let exited = std::time::SystemTime::now();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let missing = format!("could not start \"{}/npx\"", dir.path().display());
    assert!(
        stderr.contains(&missing),
        "the reason, as it happens: {stderr}"
    );
    assert!(
        stdout.contains(&missing),
        "the reason, in the summary: {stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(&missing.replace('"', "&quot;")), "{xml}");

    // The workers exited by themselves once the queue drained, and left the agents.
    let run = client
        .run(client.runs().await.unwrap()[0].id)
        .await
        .unwrap();
    let finished = system_time(run.finished_at.as_deref().expect("finished"));
    let took = exited.duration_since(finished).unwrap_or_default();
    assert!(
        took < std::time::Duration::from_secs(2),
        "the CLI waits for its workers; they left {took:?} after the last cell"
    );
    let agents = client.agents().await.unwrap();
    assert!(
        agents.iter().all(|a| !a.id.starts_with("run")),
        "gone, not lost: {agents:?}"
    );

    // The reporter's page, in the spec's order; any method answers it.
    let page = reqwest::Client::new()
        .post(format!(
            "http://{}/results",
            proc.funkytown.as_ref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let rows: Vec<(String, String)> = html
        .lines()
        .filter(|l| l.starts_with("<tr><td class="))
        .map(|l| {
            let cells: Vec<&str> = l.split("<td").collect();
            let text = |c: &str| {
                let c = &c[c.find('>').unwrap() + 1..];
                c[..c.find('<').unwrap()].to_string()
            };
            (text(cells[1]), text(cells[6]))
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("passed".to_string(), "1s".to_string()),
            ("failed".into(), "0s".into()),
            ("error".into(), "0s".into()),
            ("error".into(), "0s".into())
        ],
        "{html}"
    );

    // The job whose command could not start says why as its log's last line.
    let cells = client.run_cells(run.id).await.unwrap();
    let npx = &cells[3];
    assert!(npx.error.as_deref().unwrap().starts_with(&missing));
    let log = client.logs(npx.job_id, 0).await.unwrap();
    assert_eq!(log.lines.last().unwrap().text, npx.error.clone().unwrap());
}

/// An RFC 3339 time as a system time.
fn system_time(t: &str) -> std::time::SystemTime {
    let t: jiff::Timestamp = t.parse().expect("an RFC 3339 time");
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.as_millisecond() as u64)
}
