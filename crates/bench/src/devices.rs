//! `switchyard-bench devices` (B4): `GET /v1/devices/{name}` and a device command
//! (`POST .../commands/switch_on` on a switch that is ON: the busy check and the no-op, which
//! switchyard still decides through its durable log) under wrk, side by side with the same
//! routes in FastAPI (uvicorn, 1 worker) and Tornado (`bench/peers/`, in memory, with a lock
//! so they refuse correctly), and a bare axum handler answering a fixed body as the ceiling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use std::fmt::Write as _;

use crate::process::{free_port, tempdir_here, which};
use crate::stats::median;

#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Rounds; systems are interleaved within each round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Short run that checks the command works (CI); missing peers are skipped.
    #[arg(long)]
    pub smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sys {
    Switchyard,
    Ceiling,
    FastApi,
    Tornado,
}

impl Sys {
    fn name(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard",
            Sys::Ceiling => "bare axum (ceiling)",
            Sys::FastApi => "FastAPI (uvicorn, 1 worker)",
            Sys::Tornado => "Tornado",
        }
    }
}

struct Proc {
    sys: Sys,
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peers_dir() -> PathBuf {
    std::env::current_dir()
        .unwrap_or_default()
        .join("bench/peers")
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn available(sys: Sys) -> Result<(), String> {
    match sys {
        Sys::Switchyard | Sys::Ceiling => Ok(()),
        Sys::FastApi if !python_has("fastapi") || !python_has("uvicorn") => {
            Err("python3 with fastapi and uvicorn is needed (pip install fastapi uvicorn)".into())
        }
        Sys::Tornado if !python_has("tornado") => {
            Err("python3 with tornado is needed (pip install tornado)".into())
        }
        Sys::FastApi | Sys::Tornado if !peers_dir().is_dir() => {
            Err("run from the repository root (bench/peers/ holds the peers)".into())
        }
        _ => Ok(()),
    }
}

async fn start(sys: Sys, dir: &Path) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let mut cmd = match sys {
        Sys::Switchyard => {
            let mut c = Command::new(crate::process::switchyard_binary()?);
            c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--peer-listen", &format!("127.0.0.1:{}", free_port()?)])
                .arg("--data-dir")
                .arg(dir.join("switchyard"))
                .env("SWITCHYARD_LOG", "warn");
            c
        }
        Sys::Ceiling => {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["ceiling", &port.to_string()]);
            c
        }
        Sys::FastApi | Sys::Tornado => {
            let file = if sys == Sys::FastApi {
                "switch_fastapi.py"
            } else {
                "switch_tornado.py"
            };
            let mut c = Command::new("python3");
            c.arg(peers_dir().join(file)).arg(port.to_string());
            c
        }
    };
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", sys.name()))?;
    let p = Proc {
        sys,
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    prepare(&p).await?;
    Ok(p)
}

/// Wait for the system, create `sw1` and switch it ON (so the benchmarked command is a no-op).
async fn prepare(p: &Proc) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .post(format!("{}/v1/devices", p.base))
            .json(&serde_json::json!({"name": "sw1", "type": "switch"}))
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() || resp.status() == 409 => break,
            // Not ready yet (connection refused, or no leader yet).
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(resp) => bail!(
                "{}: creating the device answered {}",
                p.sys.name(),
                resp.status()
            ),
            Err(e) => bail!("{} did not start: {e}", p.sys.name()),
        }
    }
    if p.sys == Sys::Ceiling {
        return Ok(());
    }
    http.post(format!("{}/v1/devices/sw1/commands/switch_on", p.base))
        .json(&serde_json::json!({"duration": 0}))
        .send()
        .await?;
    loop {
        let v: serde_json::Value = http
            .get(format!("{}/v1/devices/sw1", p.base))
            .send()
            .await?
            .json()
            .await?;
        if v["state"] == "ON" && v["transition"].is_null() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{}: the switch did not turn ON", p.sys.name());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every round's results of one (route, system) cell.
#[derive(Default)]
struct Runs {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    non_2xx: u64,
}

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        _ => return None,
    })
}

fn wrk(url: &str, script: Option<&Path>, connections: usize, seconds: f64) -> anyhow::Result<Wrk> {
    let mut c = Command::new("wrk");
    c.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{}s", seconds.ceil() as u64),
        "--latency",
    ]);
    if let Some(s) = script {
        c.arg("-s").arg(s);
    }
    let out = c
        .arg(url)
        .output()
        .context("running wrk (Debian package wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|r| r.trim().to_string()))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("unexpected wrk output:\n{text}"))?;
    Ok(Wrk {
        rps,
        p50_ms: field("50%").and_then(|v| ms(&v)).unwrap_or(f64::NAN),
        p99_ms: field("99%").and_then(|v| ms(&v)).unwrap_or(f64::NAN),
        non_2xx: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

pub async fn run(mut a: DevicesArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.seconds = 1.0;
        a.rounds = 1;
        a.connections = 10;
    }
    if which("wrk").is_none() {
        if a.smoke {
            eprintln!("skipping bench devices: wrk is not installed");
            return Ok(());
        }
        bail!("wrk is not installed (Debian package wrk)");
    }
    let mut systems = Vec::new();
    for sys in [Sys::Switchyard, Sys::Ceiling, Sys::FastApi, Sys::Tornado] {
        match available(sys) {
            Ok(()) => systems.push(sys),
            Err(why) if a.smoke => eprintln!("skipping {}: {why}", sys.name()),
            Err(why) => bail!("{}: {why}", sys.name()),
        }
    }
    let dir = tempdir_here()?;
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"duration\": 0}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )?;
    let mut procs = Vec::new();
    for sys in &systems {
        procs.push(start(*sys, &dir).await?);
    }
    let mut results: std::collections::BTreeMap<(&'static str, Sys), Runs> = Default::default();
    for round in 0..a.rounds {
        for (route, path, post) in [
            ("GET device", "/v1/devices/sw1", false),
            ("POST command", "/v1/devices/sw1/commands/switch_on", true),
        ] {
            let n = procs.len();
            for k in 0..n {
                let p = &procs[(k + round) % n];
                let w = wrk(
                    &format!("{}{path}", p.base),
                    post.then_some(script.as_path()),
                    a.connections,
                    a.seconds,
                )?;
                eprintln!(
                    "round {} {route:<12} {:<28} {:>9.0} req/s",
                    round + 1,
                    p.sys.name(),
                    w.rps
                );
                let e = results.entry((route, p.sys)).or_default();
                e.rps.push(w.rps);
                e.p50.push(w.p50_ms);
                e.p99.push(w.p99_ms);
                e.non_2xx += w.non_2xx;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);

    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let _ = writeln!(
        s,
        "wrk -t1 -c{} -d{}s, {} round(s), systems interleaved; medians of rounds.\n",
        a.connections, a.seconds, a.rounds
    );
    let _ = writeln!(
        s,
        "| route | system | req/s | p50 ms | p99 ms | non-2xx | switchyard / this |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    let mut ours = std::collections::BTreeMap::new();
    for ((route, sys), runs) in results.iter_mut() {
        let r = median(&mut runs.rps);
        if *sys == Sys::Switchyard {
            ours.insert(*route, r);
        }
        let ratio = ours
            .get(route)
            .map_or(String::new(), |o| format!("{:.2}x", o / r));
        let _ = writeln!(
            s,
            "| {route} | {} | {r:.0} | {:.2} | {:.2} | {} | {ratio} |",
            sys.name(),
            median(&mut runs.p50),
            median(&mut runs.p99),
            runs.non_2xx
        );
    }
    crate::cli::emit(&s, a.out.as_deref())?;
    Ok(())
}

/// The ceiling: a bare axum server answering fixed bodies on the same routes.
pub async fn ceiling(port: u16) -> anyhow::Result<()> {
    use axum::routing::{get, post};
    let device = r#"{"name":"sw1","type":"switch","state":"ON","attributes":{"state":"ON"},"status":"idle","transition":null,"revision":1}"#;
    const JSON: [(axum::http::HeaderName, &str); 1] =
        [(axum::http::header::CONTENT_TYPE, "application/json")];
    let app = axum::Router::new()
        .route(
            "/v1/devices",
            post(move || async move { (axum::http::StatusCode::CREATED, JSON, device) }),
        )
        .route(
            "/v1/devices/{name}",
            get(move || async move { (JSON, device) }),
        )
        .route(
            "/v1/devices/{name}/commands/{command}",
            post(move || async move { (JSON, device) }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
