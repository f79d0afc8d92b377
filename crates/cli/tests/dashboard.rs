//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads it from a
//! real `switchyard serve`, driven over the DevTools protocol; the grid of a running run changes
//! colour as its cells finish, without a reload; the other pages list what the server holds. A
//! screenshot is saved as an artefact (`dashboard-run.png` in the target's test directory).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard_client::Client;
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

mod common;

struct Browser {
    child: Child,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn launch(profile: &std::path::Path) -> Self {
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                // A container's small /dev/shm can stall or crash it.
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium is installed (Debian: apt-get install chromium)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium prints its DevTools address");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Browser { child, ws, next: 1 }
    }

    /// One DevTools call (on a page's session, when given); its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let Message::Text(t) = self.ws.next().await.unwrap().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    async fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Evaluate `expression` until it equals `want` (30 s at most).
    async fn wait_for(&mut self, session: &str, what: &str, expression: &str, want: Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.eval(session, expression).await;
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {expression} is {got}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn count(selector: &str) -> String {
    format!("document.querySelectorAll({selector:?}).length")
}

#[tokio::test]
async fn the_dashboard_grid_changes_colour_as_cells_finish() {
    let dir = TempDir::new().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let proc = common::serve_in(&dir.path().join("data"), &["--local-workers", "0"]);
    let client = Client::new(proc.url());
    common::ready(&client).await;
    // 24 cells; each waits for its file go-N, then fails when N % 5 == 4.
    let created = client
        .create_run(&json!({
            "name": "browser",
            "matrix": {"n": (0..24).map(|i| i.to_string()).collect::<Vec<_>>()},
            "command": ["sh", "-c", "while [ ! -e go-$1 ]; do sleep 0.2; done; [ $(( $1 % 5 )) -ne 4 ]", "cell", "{n}"],
            "cwd": work.to_str().unwrap(),
        }))
        .await
        .unwrap();
    let worker = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "worker",
            "--server",
            &proc.url(),
            "--concurrency",
            "24",
            "--id",
            "browser-worker",
        ])
        .env("SWITCHYARD_LOG", "warn")
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _worker = Kill(worker);

    let mut b = Browser::launch(&dir.path().join("profile")).await;
    let target = b
        .call(None, "Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let attached = b
        .call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    let s = attached["sessionId"].as_str().unwrap().to_string();
    let url = format!("{}/#/runs/{}", proc.url(), created.id);
    b.call(Some(&s), "Page.navigate", json!({"url": url})).await;
    b.wait_for(&s, "the grid", &count("#grid .cell"), json!(24))
        .await;
    b.wait_for(
        &s,
        "the live badge",
        "document.getElementById('live').textContent",
        json!("live"),
    )
    .await;
    b.eval(&s, "window.__no_reload = true").await;
    b.wait_for(
        &s,
        "every cell running",
        &count("#grid .cell.s-running"),
        json!(24),
    )
    .await;

    // Half the cells finish: 10 turn green, 2 (4 and 9) red, the rest stay blue.
    for n in 0..12 {
        std::fs::write(work.join(format!("go-{n}")), "").unwrap();
    }
    b.wait_for(
        &s,
        "10 passed cells",
        &count("#grid .cell.s-succeeded"),
        json!(10),
    )
    .await;
    b.wait_for(
        &s,
        "2 failed cells",
        &count("#grid .cell.s-failed"),
        json!(2),
    )
    .await;
    assert_eq!(b.eval(&s, &count("#grid .cell.s-running")).await, json!(12));
    let shot = b
        .call(Some(&s), "Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5000,
        "a real screenshot"
    );
    let artefact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-run.png");
    std::fs::write(&artefact, &png).unwrap();
    eprintln!("screenshot: {}", artefact.display());

    // The rest finish; the statistics on the page follow.
    for n in 12..24 {
        std::fs::write(work.join(format!("go-{n}")), "").unwrap();
    }
    b.wait_for(
        &s,
        "20 passed cells",
        &count("#grid .cell.s-succeeded"),
        json!(20),
    )
    .await;
    b.wait_for(
        &s,
        "4 failed cells",
        &count("#grid .cell.s-failed"),
        json!(4),
    )
    .await;
    b.wait_for(
        &s,
        "the passed statistic",
        "document.querySelector('#stats [data-stat=passed] b').textContent",
        json!("20"),
    )
    .await;
    assert_eq!(
        b.eval(&s, "window.__no_reload === true").await,
        json!(true),
        "no reload"
    );

    // A failed cell's page shows its log tail; the other pages list what the server holds.
    b.call(
        Some(&s),
        "Page.navigate",
        json!({"url": format!("{}/#/runs/{}/cells/4", proc.url(), created.id)}),
    )
    .await;
    b.wait_for(&s, "the cell page", "document.querySelector('h1') && document.querySelector('h1').textContent.startsWith('cell:4')", json!(true))
        .await;
    b.call(
        Some(&s),
        "Page.navigate",
        json!({"url": format!("{}/#/agents", proc.url())}),
    )
    .await;
    b.wait_for(
        &s,
        "the agents page",
        "document.body.innerText.includes('browser-worker')",
        json!(true),
    )
    .await;
    b.call(
        Some(&s),
        "Page.navigate",
        json!({"url": format!("{}/#/jobs", proc.url())}),
    )
    .await;
    b.wait_for(&s, "the jobs page", &count("#jobs tr"), json!(25))
        .await;
    // A failed job's Retry button queues it again (its cell runs, and fails, once more).
    let failed_row = "[...document.querySelectorAll('#jobs tr')].find((r) => r.querySelector('.badge.s-failed')).querySelector('button.act')";
    let path = b.eval(&s, &format!("{failed_row}.dataset.path")).await;
    let retried: u64 = path
        .as_str()
        .unwrap()
        .split('/')
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    let before = client.job(retried).await.unwrap();
    assert_eq!(before.status, "failed", "{before:?}");
    let mut events = client
        .watch(&format!("jobs/{retried}"), Some(before.revision))
        .await
        .unwrap();
    assert!(path.as_str().unwrap().ends_with("/retry"), "{path}");
    b.eval(&s, &format!("{failed_row}.click()")).await;
    common::within(30, "the retried job to be queued", async {
        loop {
            if let switchyard_client::WatchItem::Event(e) = events.next().await.unwrap()
                && e.event["kind"] == "queued"
            {
                return;
            }
        }
    })
    .await;
    b.call(
        Some(&s),
        "Page.navigate",
        json!({"url": format!("{}/#/runs", proc.url())}),
    )
    .await;
    b.wait_for(&s, "the runs page", "document.querySelector('#runs') !== null && document.querySelector('#runs').innerText.includes('browser')", json!(true))
        .await;
}
