//! The real binary: kill -9 under concurrent write load loses no acknowledged command, and
//! SIGTERM shuts down gracefully with exit code 0; a data directory of another format is
//! refused.
//!
//! `SWITCHYARD_KILL9_ROUNDS` sets the number of kill -9 rounds (default 10); the soak command
//! in the README runs many more.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchyard_client::Client;
use tempfile::TempDir;

mod common;

use common::Proc;

/// Start `switchyard serve` on port 0.
fn spawn(dir: &Path) -> Proc {
    spawn_at(dir, "127.0.0.1:0")
}

/// Start `switchyard serve` with its API on `listen`.
fn spawn_at(dir: &Path, listen: &str) -> Proc {
    let mut args: Vec<std::ffi::OsString> = ["--listen", listen, "--peer-listen", "127.0.0.1:0"]
        .map(Into::into)
        .into();
    args.extend(["--data-dir".into(), dir.into()]);
    common::serve("server", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_command() {
    let rounds: u64 = std::env::var("SWITCHYARD_KILL9_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let writers = 8usize;
    let dir = TempDir::new().unwrap();
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());

    let mut proc = spawn(dir.path());
    let client = Client::new(proc.url());
    common::ready(&client).await;
    for w in 0..writers {
        client.open_account(&format!("w{w}"), None).await.unwrap();
    }

    for round in 0..rounds {
        // Phase 1: concurrent writers credit 1 at a time until the server dies under them.
        let client = Client::new(proc.url());
        let total_before: u64 = acked.iter().map(|a| a.load(Ordering::SeqCst)).sum();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (c, acked, sent) = (client.clone(), acked.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    sent[w].fetch_add(1, Ordering::SeqCst);
                    match c.credit(&format!("w{w}"), 1, None).await {
                        Ok(_) => acked[w].fetch_add(1, Ordering::SeqCst),
                        Err(_) => return,
                    };
                }
            }));
        }
        // Phase 2: kill -9 once this round has acknowledged enough writes.
        let target = total_before + 100 + 37 * round;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>() < target {
            assert!(Instant::now() < deadline, "round {round}: writes stalled");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proc.child.kill().unwrap();
        proc.child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }

        // Phase 3: restart; every acknowledged credit is there, and nothing never sent.
        proc = spawn(dir.path());
        let client = Client::new(proc.url());
        common::ready(&client).await;
        for w in 0..writers {
            let balance = client.account(&format!("w{w}")).await.unwrap().balance;
            let (a, s) = (
                acked[w].load(Ordering::SeqCst),
                sent[w].load(Ordering::SeqCst),
            );
            assert!(
                a <= balance && balance <= s,
                "round {round}, writer {w}: balance {balance}, acknowledged {a}, sent {s}"
            );
            // Re-base: the credits in doubt (sent, not acknowledged) are settled by the read.
            acked[w].store(balance, Ordering::SeqCst);
            sent[w].store(balance, Ordering::SeqCst);
        }
    }
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_a_graceful_shutdown_with_exit_0_and_state_kept() {
    let dir = TempDir::new().unwrap();
    let mut proc = spawn(dir.path());
    let client = Client::new(proc.url());
    common::ready(&client).await;
    client.open_account("a", None).await.unwrap();
    client.credit("a", 42, None).await.unwrap();

    let pid = proc.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let exit = proc.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM exits 0");

    let mut proc = spawn(dir.path());
    let client = Client::new(proc.url());
    common::ready(&client).await;
    assert_eq!(client.account("a").await.unwrap().balance, 42);
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();

    // The data directory names its format; a binary refuses any other before reading a byte.
    let format = dir.path().join("FORMAT");
    let current = std::fs::read_to_string(&format).unwrap();
    let other = current.trim().parse::<u32>().unwrap() + 1;
    std::fs::write(&format, format!("{other}\n")).unwrap();
    let err = refused_start(dir.path(), "127.0.0.1:0");
    assert!(
        err.contains(&format!("data format {other}")) && err.contains("reads format"),
        "{err}"
    );
    // The previous format is migrated when the directory opens, keeping its data.
    let previous = other - 2;
    std::fs::write(&format, format!("{previous}\n")).unwrap();
    let mut proc = spawn(dir.path());
    let client = Client::new(proc.url());
    common::ready(&client).await;
    assert_eq!(client.account("a").await.unwrap().balance, 42);
    assert_eq!(std::fs::read_to_string(&format).unwrap(), current);
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}

/// Data directories written by earlier releases open with every acknowledged change: the
/// snapshot's state and the log after it. Format 3 kept the snapshot as a record of
/// `state.redb`, formats 3 and 4 the log in `raft-log.redb` (the committed samples in
/// `crates/store/tests/data/format-{3,4}-dir`).
async fn an_earlier_data_directory_opens_with_all_its_data(format: u32) {
    let dir = TempDir::new().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../store/tests/data/format-{format}-dir"));
    for entry in std::fs::read_dir(&sample).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let mut proc = spawn(dir.path());
    let client = Client::new(proc.url());
    common::ready(&client).await;
    // Opened, credited 130 times by 3 and then gave 90 to bob: the snapshot holds the state
    // at index 99, the log the rest.
    assert_eq!(client.account("alice").await.unwrap().balance, 130 * 3 - 90);
    assert_eq!(client.account("bob").await.unwrap().balance, 90);
    assert!(!dir.path().join("state.redb").exists());
    assert!(!dir.path().join("raft-log.redb").exists());
    assert!(dir.path().join("snapshot").exists());
    assert!(dir.path().join("raft-log").is_dir());
    let current = client.status().await.unwrap().format;
    assert!(current > format, "{current}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        format!("{current}\n")
    );
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_3_data_directory_opens_with_all_its_data() {
    an_earlier_data_directory_opens_with_all_its_data(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_4_data_directory_opens_with_all_its_data() {
    an_earlier_data_directory_opens_with_all_its_data(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_survives_a_server_restart_and_carries_on() {
    let dir = TempDir::new().unwrap();
    let mut proc = spawn(dir.path());
    let client = Client::new(proc.url());
    common::ready(&client).await;
    let addr = proc.api.clone();

    // Phase 1: a tap pouring every 20 ms until 40 pours are acknowledged.
    let mut tap = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "tap",
            "--id",
            "7",
            "--interval",
            "0.02",
            "--count",
            "40",
            "--server",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = |c: Client| async move {
        let r: serde_json::Value = c
            .request(
                reqwest::Method::GET,
                "/api/beers?page_size=1000",
                None::<&()>,
                None,
            )
            .await
            .unwrap_or_default();
        r["beers"].as_array().map_or(0, Vec::len)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(client.clone()).await < 5 {
        assert!(Instant::now() < deadline, "the tap did not pour");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Phase 2: the server goes away and comes back on the same address.
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
    let mut proc = spawn_at(dir.path(), &addr);
    let client = Client::new(proc.url());
    common::ready(&client).await;

    // Phase 3: the tap finishes its pours against the new process and exits 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = tap.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the tap did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "the tap exits 0: {status}");
    let n = count(client.clone()).await;
    assert!(
        (40..=41).contains(&n),
        "40 acknowledged pours (one more if a kill hid an ack): {n}"
    );
    proc.child.kill().unwrap();
    proc.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_pipe_ends_a_command_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    drop(out);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(first.trim(), "{");
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{status:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_given_as_host_and_port_is_plain_http() {
    let dir = TempDir::new().unwrap();
    let proc = spawn(dir.path());
    common::ready(&Client::new(proc.url())).await;
    common::succeeded(&common::cli(&["--server", &proc.api, "status"], &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_to_a_file_or_pipe_has_no_colour_codes() {
    let dir = TempDir::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("SWITCHYARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(err).map_while(Result::ok) {
        let done = line.contains("serving the API on");
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.len() > 1, "info lines were logged: {seen:?}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI escapes: {seen:?}"
    );
}

/// `switchyard serve` on `dir` with `listen` that must fail: its stderr.
fn refused_start(dir: &Path, listen: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", listen, "--peer-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .env("SWITCHYARD_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the start must fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_data_directory_is_told_once_why() {
    let dir = TempDir::new().unwrap();
    let first = spawn(dir.path());
    common::ready(&Client::new(first.url())).await;
    let err = refused_start(dir.path(), "127.0.0.1:0");
    assert_eq!(err.matches("another switchyard").count(), 1, "{err}");
    assert_eq!(err.matches("open in another process").count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_file_gets_no_hint_of_another_server() {
    let dir = TempDir::new().unwrap();
    // A directory as this binary leaves it, with its log file cut to garbage.
    let proc = spawn(dir.path());
    common::ready(&Client::new(proc.url())).await;
    drop(proc);
    let segment = std::fs::read_dir(dir.path().join("raft-log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("a segment");
    std::fs::write(&segment, b"not a log").unwrap();
    let err = refused_start(dir.path(), "127.0.0.1:0");
    assert!(err.contains("raft-log"), "{err}");
    assert!(err.contains("not a switchyard raft log segment"), "{err}");
    assert!(
        err.contains("join the node to the cluster again"),
        "says what to do: {err}"
    );
    assert!(!err.contains("another switchyard"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_named_with_the_flag_that_chose_it() {
    let dir = TempDir::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = refused_start(dir.path(), &addr);
    assert!(
        err.contains(&format!(
            "cannot listen on {addr} (the client API, --listen)"
        )),
        "{err}"
    );
}
