//! Jobs, leases, logs and agents over the real HTTP API of an in-process node.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::within;
use serde_json::json;
use switchyard_client::{Client, Error, WatchItem};
use switchyard_types::{AgentJoin, JobEnding, JobSpec, LeaseRequest, LogStream, NewLogLine};
use tempfile::TempDir;

fn spec(v: serde_json::Value) -> JobSpec {
    serde_json::from_value(v).unwrap()
}

fn lease_req(worker: &str, wait: f64) -> LeaseRequest {
    LeaseRequest {
        worker: worker.into(),
        queue: "default".into(),
        labels: BTreeMap::new(),
        max: 1,
        wait,
        finish: None,
        until_drained: false,
    }
}

fn field(e: &Error) -> (u16, String) {
    match e {
        Error::Api { status, error } => (
            status.as_u16(),
            error.details.as_ref().map_or(String::new(), |d| {
                d["field"].as_str().unwrap_or_default().to_string()
            }),
        ),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn post_raw(base: &str, path: &str, body: String) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Wait for the next event on `w` whose body kind is `kind`; every event before it is returned
/// too.
async fn until_kind(w: &mut switchyard_client::Watch, kind: &str) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    loop {
        if let WatchItem::Event(e) = w.next().await.unwrap() {
            let done = e.event["kind"] == kind;
            seen.push(e.event);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn bad_job_specs_get_4xx_naming_the_field_and_store_nothing() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let base = server.url();
    let cases = [
        (json!({"command": []}), "command"),
        (json!({"command": [""]}), "command"),
        (json!({}), "command"),
        (json!({"command": 7}), "command"),
        (json!({"command": ["x"], "timeout": -1}), "timeout"),
        (json!({"command": ["x"], "timeout": 0}), "timeout"),
        (json!({"command": ["x"], "queue": "a/b"}), "queue"),
        (json!({"command": ["x"], "queue": "ünïcode"}), "queue"),
        (json!({"command": ["x"], "max_attempts": 0}), "max_attempts"),
        (json!({"command": ["x"], "lease_ttl": 0}), "lease_ttl"),
        (json!({"command": ["x"], "env": {"A-B": "1"}}), "env.A-B"),
        (
            json!({"command": ["x"], "env": {"BIG": "v".repeat(70_000)}}),
            "env",
        ),
        (json!({"command": ["x"], "colour": "red"}), "colour"),
    ];
    for (body, want) in &cases {
        let (status, err) = post_raw(&base, "/v1/jobs", body.to_string()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "invalid", "{body}");
        if !want.is_empty() {
            assert_eq!(err["error"]["details"]["field"], *want, "{body}: {err}");
        }
    }
    let client = Client::new(&base);
    let list = client.jobs(None, None, None, 1000).await.unwrap();
    assert!(list.jobs.is_empty(), "refused specs store nothing");
    // A batch with one bad job stores none of them, and names the bad one.
    let batch = json!({"jobs": [{"command": ["ok"]}, {"command": ["ok"], "lease_ttl": 0}]});
    let (status, err) = post_raw(&base, "/v1/jobs/batch", batch.to_string()).await;
    assert_eq!(
        (status, &err["error"]["details"]["field"]),
        (400, &json!("jobs[1].lease_ttl"))
    );
    let too_many = json!({"jobs": vec![json!({"command": ["ok"]}); 1001]});
    let (status, _) = post_raw(&base, "/v1/jobs/batch", too_many.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        client
            .jobs(None, None, None, 1000)
            .await
            .unwrap()
            .jobs
            .is_empty()
    );
    // A string command is a shell line.
    let sh = client
        .enqueue(&spec(json!({"command": "echo hi"})), None)
        .await
        .unwrap();
    assert_eq!(sh.spec.command, ["/bin/sh", "-c", "echo hi"]);
    // Bad lease requests and bad query parameters too.
    let e = client.lease(&lease_req("a b", 0.0)).await.unwrap_err();
    assert_eq!(field(&e), (400, "worker".into()));
    let e = client.lease(&lease_req("w", 61.0)).await.unwrap_err();
    assert_eq!(field(&e), (400, "wait".into()));
    let e = client.jobs(Some("done"), None, None, 10).await.unwrap_err();
    assert_eq!(field(&e), (400, "status".into()));
    let e = client.job(u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::Api { status, .. } if status.as_u16() == 404));
    server.stop().await;
}

#[tokio::test]
async fn a_stale_fencing_token_is_refused_and_changes_nothing() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    let job = client
        .enqueue(&spec(json!({"command": ["true"], "lease_ttl": 1})), None)
        .await
        .unwrap();
    let mut w = client
        .watch(&format!("jobs/{}", job.id), Some(0))
        .await
        .unwrap();
    let first = client.lease(&lease_req("w1", 0.0)).await.unwrap();
    let old = first.jobs[0].token;
    // The lease expires (no heartbeat), the job is requeued after its backoff, w2 takes it.
    within(30, "the lease to expire", until_kind(&mut w, "requeued")).await;
    let second = within(30, "a new lease", client.lease(&lease_req("w2", 30.0)))
        .await
        .unwrap();
    assert_eq!(second.jobs[0].job.id, job.id);
    let new = second.jobs[0].token;
    assert!(new > old);
    let before = client.job(job.id).await.unwrap();
    let line = NewLogLine {
        stream: LogStream::Stdout,
        time_ms: 0,
        text: "late".into(),
    };
    for refused in [
        client
            .finish_job(job.id, old, JobEnding::Exited, Some(0), None)
            .await
            .map(|_| ()),
        client.job_heartbeat(job.id, old).await.map(|_| ()),
        client.release_job(job.id, old).await.map(|_| ()),
        client
            .append_logs(job.id, old, 0, std::slice::from_ref(&line))
            .await
            .map(|_| ()),
    ] {
        let e = refused.unwrap_err();
        assert!(
            matches!(&e, Error::Api { status, .. } if status.as_u16() == 409),
            "{e}"
        );
    }
    let after = client.job(job.id).await.unwrap();
    assert_eq!(after, before, "refused reports change nothing");
    assert_eq!((after.status.as_str(), after.attempts), ("running", 2));
    // The log holds no refused line, only why the first attempt ended (its lease ran out).
    let lines = client.logs(job.id, 0).await.unwrap().lines;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].text.ends_with("(attempt 1)"), "{lines:?}");
    assert_eq!(Some(&lines[0].text), after.error.as_ref());
    // The current token is taken.
    let done = client
        .finish_job(job.id, new, JobEnding::Exited, Some(0), None)
        .await
        .unwrap();
    assert_eq!((done.status.as_str(), done.attempts), ("succeeded", 2));
    server.stop().await;
}

#[tokio::test]
async fn a_finished_job_and_its_log_are_forgotten_after_the_configured_retention() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |c| {
        c.job_retention = Duration::from_secs(1);
    })
    .await;
    let client = Client::new(server.url());
    let job = client
        .enqueue(&spec(json!({"command": ["true"]})), None)
        .await
        .unwrap();
    let mut w = client
        .watch(&format!("jobs/{}", job.id), Some(0))
        .await
        .unwrap();
    let lease = client.lease(&lease_req("w1", 0.0)).await.unwrap();
    let token = lease.jobs[0].token;
    let line = NewLogLine {
        stream: LogStream::Stdout,
        time_ms: 0,
        text: "kept a while".into(),
    };
    client
        .append_logs(job.id, token, 0, std::slice::from_ref(&line))
        .await
        .unwrap();
    client
        .finish_job(job.id, token, JobEnding::Exited, Some(0), None)
        .await
        .unwrap();
    // Finished: still there, log too, until the retention (1 s of leader time) ends.
    assert_eq!(client.logs(job.id, 0).await.unwrap().lines.len(), 1);
    within(30, "the job to expire", until_kind(&mut w, "expired")).await;
    for gone in [
        client.job(job.id).await.map(|_| ()),
        client.logs(job.id, 0).await.map(|_| ()),
    ] {
        let e = gone.unwrap_err();
        assert!(
            matches!(&e, Error::Api { status, .. } if status.as_u16() == 404),
            "{e}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_lease_wakes_on_enqueue_and_says_when_the_queue_is_drained() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    let empty = client.lease(&lease_req("w1", 0.0)).await.unwrap();
    assert!(empty.jobs.is_empty() && empty.drained);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.lease(&lease_req("w1", 60.0)).await })
    };
    // The poll is parked server-side: the job queued now is handed to it.
    let job = client
        .enqueue(&spec(json!({"command": ["true"]})), None)
        .await
        .unwrap();
    let got = within(30, "the parked lease to wake", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.jobs[0].job.id, job.id);
    let running = client.lease(&lease_req("w2", 0.0)).await.unwrap();
    assert!(
        running.jobs.is_empty() && !running.drained,
        "a job still runs"
    );
    // A worker that exits when the work is done waits for the drain, not for its whole poll.
    let until = {
        let client = client.clone();
        let mut req = lease_req("w2", 60.0);
        req.until_drained = true;
        tokio::spawn(async move { client.lease(&req).await })
    };
    // Finishing with the next lease request: nothing else is queued, so the finish commits
    // alone, and the queue is drained.
    let mut next = lease_req("w1", 0.0);
    next.finish = Some(switchyard_types::FinishJob {
        id: job.id,
        token: got.jobs[0].token,
        ending: JobEnding::Exited,
        exit_code: Some(0),
        error: None,
    });
    let after = client.lease(&next).await.unwrap();
    assert_eq!(after.finished.unwrap().status, "succeeded");
    assert!(after.jobs.is_empty() && after.drained);
    let drained = within(
        10,
        "the until-drained poll to answer (it waits 60 s)",
        until,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(drained.jobs.is_empty() && drained.drained);
    let again = client.lease(&next).await.unwrap_err();
    assert!(matches!(again, Error::Api { status, .. } if status.as_u16() == 409));
    server.stop().await;
}

#[tokio::test]
async fn a_log_follower_gets_every_line_in_order_from_its_offset_then_the_end() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |c| c.job_log_max_bytes = 1 << 20).await;
    let client = Client::new(server.url());
    let job = client
        .enqueue(&spec(json!({"command": ["true"]})), None)
        .await
        .unwrap();
    let token = client.lease(&lease_req("w1", 0.0)).await.unwrap().jobs[0].token;
    let line = |i: u64| NewLogLine {
        stream: if i.is_multiple_of(3) {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        },
        time_ms: 1_700_000_000_000 + i as i64,
        text: format!("line {i}"),
    };
    let first: Vec<NewLogLine> = (0..10).map(line).collect();
    client.append_logs(job.id, token, 0, &first).await.unwrap();
    let mut follower = client.follow_logs(job.id, 4);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(l) = follower.next().await.unwrap() {
            got.push(l);
        }
        (got, follower.status().map(str::to_string))
    });
    for start in (10..100).step_by(10) {
        let batch: Vec<NewLogLine> = (start..start + 10).map(line).collect();
        client
            .append_logs(job.id, token, start, &batch)
            .await
            .unwrap();
    }
    client
        .finish_job(job.id, token, JobEnding::Exited, Some(0), None)
        .await
        .unwrap();
    let (got, status) = within(30, "the follower to end", reader).await.unwrap();
    let offsets: Vec<u64> = got.iter().map(|l| l.offset).collect();
    assert_eq!(offsets, (4..100).collect::<Vec<_>>());
    assert!(got.iter().all(|l| l.text == format!("line {}", l.offset)));
    assert_eq!(got[5].stream, LogStream::Stderr);
    assert_eq!(status.as_deref(), Some("succeeded"));
    let page = client.logs(job.id, 95).await.unwrap();
    assert_eq!((page.lines.len(), page.next, page.complete), (5, 100, true));
    // On the wire: one `line` event per line with its offset as the id, resumed after
    // `Last-Event-ID`, then `end`.
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/v1/jobs/{}/logs?follow=true",
            server.url(),
            job.id
        ))
        .header("last-event-id", "97")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = within(30, "the event stream to end", resp.text())
        .await
        .unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 3, "{text}");
    for (e, offset) in events.iter().zip([98u64, 99]) {
        let fields: Vec<&str> = e.lines().collect();
        assert_eq!(
            fields[..2],
            ["event: line", &format!("id: {offset}")],
            "{text}"
        );
        let data: serde_json::Value =
            serde_json::from_str(fields[2].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(
            (data["offset"].as_u64(), data["text"].as_str()),
            (Some(offset), Some(format!("line {offset}").as_str()))
        );
    }
    assert!(events[2].starts_with("event: end\ndata: "), "{text}");
    server.stop().await;
}

fn join(id: &str, ttl: u64, url: Option<String>) -> AgentJoin {
    AgentJoin {
        id: id.into(),
        hostname: "test-host".into(),
        cpus: 4,
        memory_bytes: 1 << 30,
        labels: BTreeMap::from([("zone".into(), "a".into())]),
        version: "test".into(),
        queues: vec!["default".into()],
        // A testbed host's document: the fields seed 003's SshConfig requires, and more.
        host: json!({
            "ip": "10.0.0.7", "user": "tb", "identity_file": "/keys/id", "testbed_nic": "eth1",
            "main_interface": "eth0", "interfaces": ["eth0"]
        }),
        ttl,
        url,
    }
}

#[tokio::test]
async fn a_silent_agent_is_lost_once_and_its_leases_are_released() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |c| {
        c.agent_check_interval = Duration::from_millis(200);
    })
    .await;
    let client = Client::new(server.url());
    let mut agents = client.watch("agents/", Some(0)).await.unwrap();
    let a = client.join_agent(&join("a1", 1, None)).await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.host["ip"].as_str()),
        ("alive", Some("10.0.0.7"))
    );
    let job = client
        .enqueue(&spec(json!({"command": ["true"], "lease_ttl": 3600})), None)
        .await
        .unwrap();
    let leased = client.lease(&lease_req("a1", 0.0)).await.unwrap();
    assert_eq!(leased.jobs[0].job.id, job.id);
    let listed = client.agents().await.unwrap();
    assert_eq!(listed[0].running, vec![job.id]);
    // a1 stops heartbeating. b1 joins once a1 is lost and goes silent too: its loss comes
    // after any second loss of a1 could, so a1's events are complete by then.
    until_kind(&mut agents, "joined").await;
    let a1_events = within(30, "a1 to be lost", until_kind(&mut agents, "lost")).await;
    assert_eq!(a1_events.last().unwrap()["agent"]["id"], "a1");
    let j = client.job(job.id).await.unwrap();
    assert_eq!(j.status, "queued", "the lease ended with the agent");
    assert!(j.error.unwrap().contains("a1 was lost"));
    client.join_agent(&join("b1", 1, None)).await.unwrap();
    let later = within(30, "b1 to be lost", until_kind(&mut agents, "lost")).await;
    assert_eq!(later.last().unwrap()["agent"]["id"], "b1");
    assert!(
        later.iter().all(|e| e["agent"]["id"] != "a1"),
        "a1 was lost once: {later:?}"
    );
    let a1 = client
        .agents()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == "a1")
        .unwrap();
    assert_eq!((a1.status.as_str(), a1.running.len()), ("lost", 0));
    // A heartbeat brings it back, and tells it the lease it held is gone.
    let hb = client
        .agent_heartbeat(
            "a1",
            vec![switchyard_types::HeldLease {
                job: job.id,
                token: leased.jobs[0].token,
            }],
        )
        .await
        .unwrap();
    assert_eq!(hb.stale, vec![job.id]);
    assert_eq!(
        until_kind(&mut agents, "alive").await.last().unwrap()["agent"]["id"],
        "a1"
    );

    // The server's active check: an agent whose health URL does not answer is lost after
    // three failed probes, long before its (one-hour) heartbeat deadline.
    let (_held, addr) = common::refused_port();
    let url = format!("http://{addr}");
    client
        .join_agent(&join("c1", 3600, Some(url)))
        .await
        .unwrap();
    // (a1, whose short heartbeat deadline passes again meanwhile, may be lost first.)
    let lost = within(30, "c1 to fail its checks", async {
        loop {
            let ev = until_kind(&mut agents, "lost").await;
            let last = ev.last().unwrap().clone();
            if last["agent"]["id"] == "c1" {
                return last;
            }
        }
    })
    .await;
    assert!(
        lost["agent"]["lost_reason"]
            .as_str()
            .unwrap()
            .contains("health check failed")
    );
    server.stop().await;
}

#[tokio::test]
async fn agents_joining_and_leaving_rewrite_the_cluster_configuration_document() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("config/kvm-compose-config.json");
    // An operator's key and the main host's entry already in the file are kept; another entry
    // of no live agent is not.
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let main = json!({
        "ip": "10.0.0.1", "user": "tb", "identity_file": "/keys/id", "testbed_nic": "eth1",
        "main_interface": "eth0", "is_main_host": true
    });
    let before = json!({
        "ssh_public_key_location": "/keys/id.pub",
        "testbed_host_ssh_config": {"main": main, "gone": {"ip": "10.0.0.9"}}
    });
    std::fs::write(&file, before.to_string()).unwrap();
    let data = dir.path().join("data");
    let server = common::start(&data, |c| c.cluster_config_file = Some(file.clone())).await;
    let client = Client::new(server.url());
    let hosts_in_file = |want: &'static [&'static str]| {
        let file = file.clone();
        async move {
            loop {
                let doc: serde_json::Value = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let hosts = &doc["testbed_host_ssh_config"];
                let mut ids: Vec<&str> = hosts
                    .as_object()
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                ids.sort_unstable();
                if ids == want {
                    return doc;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    within(30, "only the main host", hosts_in_file(&["main"])).await;
    client.join_agent(&join("a1", 3600, None)).await.unwrap();
    client.join_agent(&join("b1", 3600, None)).await.unwrap();
    // A plain worker is no testbed host: its document lacks the required fields.
    let mut plain = join("w1", 3600, None);
    plain.host = json!({"os": "linux"});
    client.join_agent(&plain).await.unwrap();
    let doc = within(30, "both hosts", hosts_in_file(&["a1", "b1", "main"])).await;
    assert_eq!(doc["testbed_host_ssh_config"]["a1"]["ip"], "10.0.0.7");
    assert_eq!(doc["testbed_host_ssh_config"]["main"], main);
    assert_eq!(doc["ssh_public_key_location"], "/keys/id.pub");
    client.remove_agent("a1").await.unwrap();
    within(30, "a1 gone", hosts_in_file(&["b1", "main"])).await;
    let served: serde_json::Value = client
        .request(reqwest::Method::GET, "/v1/agents/config", None::<&()>, None)
        .await
        .unwrap();
    assert_eq!(
        served["testbed_host_ssh_config"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["b1"]
    );
    let e = client
        .join_agent(&join("config", 10, None))
        .await
        .unwrap_err();
    assert_eq!(field(&e), (400, "id".into()));
    server.stop().await;
}
