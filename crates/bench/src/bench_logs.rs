//! `switchyard-bench logs` (benchmark B6): log fan-out. The bench leases a job from
//! switchyard as a worker would and appends its output at a fixed rate, in batches, through
//! `POST /v1/jobs/{id}/logs`; followers read the log with `GET /v1/jobs/{id}/logs?follow=true`
//! (Server-Sent Events, one event per line). Side by side with a ceiling written for the bench
//! (`log-ceiling`, hidden): an axum server that takes the same batches and broadcasts each line,
//! serialised once, to every follower over WebSocket or SSE, keeping nothing.
//!
//! Every line carries its number and the time its batch was sent, so each follower checks that
//! lines arrive in order with none lost or repeated, and takes append-to-receive latency.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use std::fmt::Write as _;
use switchyard_client::Client;
use switchyard_types::{JobEnding, JobSpec, LeaseRequest, LogStream, NewLogLine};

use crate::bench::{System, free_port, median, pct, start_with, tempdir_here};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Followers per system, each on its own connection.
    #[arg(long, default_value_t = 100)]
    followers: usize,
    /// Lines appended per second.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Milliseconds between two appended batches (a batch holds the lines due by then).
    #[arg(long, default_value_t = 10)]
    batch_ms: u64,
    /// Seconds of appending per round.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds; the systems take turns within each.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds followers have after the last append to receive the rest.
    #[arg(long, default_value_t = 30.0)]
    drain: f64,
    /// Systems to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "switchyard,ceiling-ws,ceiling-sse"
    )]
    systems: Vec<Sys>,
    /// A short run that checks the command works (CI): 5 followers, 1,000 lines/s, 2 s.
    #[arg(long)]
    smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Sys {
    Switchyard,
    /// The bench's broadcast server, followers on WebSocket.
    CeilingWs,
    /// The same server, followers on SSE (switchyard's transport).
    CeilingSse,
}

impl Sys {
    fn label(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard (SSE, fsynced appends)",
            Sys::CeilingWs => "bare axum broadcast, WebSocket (ceiling)",
            Sys::CeilingSse => "bare axum broadcast, SSE (ceiling)",
        }
    }
}

/// Bytes of each line's text.
const LINE_BYTES: usize = 100;
/// Most lines switchyard takes in one `POST /v1/jobs/{id}/logs`.
const MAX_LOG_BATCH: usize = 10_000;

/// The ceiling process, killed on drop.
struct CeilingProc {
    child: Child,
    addr: String,
}

impl Drop for CeilingProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_ceiling() -> anyhow::Result<CeilingProc> {
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .args(["log-ceiling", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the log ceiling")?;
    let p = CeilingProc {
        child,
        addr: format!("127.0.0.1:{port}"),
    };
    let http = reqwest::Client::builder().no_proxy().build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("http://{}/followers", p.addr))
        .send()
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("the log ceiling did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(p)
}

/// Where the lines of one round go.
enum Sink {
    Switchyard {
        client: Client,
        id: u64,
        token: u64,
        seq: u64,
    },
    Ceiling {
        http: reqwest::Client,
        base: String,
    },
}

impl Sink {
    async fn append(&mut self, lines: &[NewLogLine]) -> anyhow::Result<()> {
        match self {
            Sink::Switchyard {
                client,
                id,
                token,
                seq,
            } => {
                client.append_logs(*id, *token, *seq, lines).await?;
                *seq += lines.len() as u64;
            }
            Sink::Ceiling { http, base } => {
                let resp = http
                    .post(format!("{base}/logs"))
                    .json(&serde_json::json!({"token": 0, "seq": 0, "lines": lines}))
                    .send()
                    .await?;
                if !resp.status().is_success() {
                    bail!("the ceiling answered {}", resp.status());
                }
            }
        }
        Ok(())
    }

    async fn end(&self) -> anyhow::Result<()> {
        match self {
            Sink::Switchyard {
                client, id, token, ..
            } => {
                client
                    .finish_job(*id, *token, JobEnding::Exited, Some(0), None)
                    .await?;
            }
            Sink::Ceiling { http, base } => {
                http.post(format!("{base}/end")).send().await?;
            }
        }
        Ok(())
    }
}

/// What one follower saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<u32>,
    received: u64,
    lost: u64,
    duplicated: u64,
    /// Offset of the next line expected.
    next: u64,
    ended: bool,
    failed: Option<String>,
}

impl Seen {
    /// One line: its offset and its text (`NNNNNNNNNN TTTTTTTTTTTTTTTT ...`: number and
    /// send time in µs since `epoch`).
    fn line(&mut self, offset: u64, text: &str, epoch: Instant) {
        self.received += 1;
        let number: Option<u64> = text.get(..10).and_then(|s| s.parse().ok());
        if number != Some(offset) {
            self.failed
                .get_or_insert_with(|| format!("line {offset} holds {text:?}"));
        }
        if offset < self.next {
            self.duplicated += 1;
            return;
        }
        self.lost += offset - self.next;
        self.next = offset + 1;
        if let Some(sent) = text.get(11..27).and_then(|s| s.parse::<u64>().ok()) {
            let now = epoch.elapsed().as_micros() as u64;
            self.latencies
                .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
        }
    }
}

/// The number after `"offset":` and the string after `"text":"` in a log line's JSON (the
/// text is digits, spaces and letters: nothing escaped).
fn parse_line(json: &str) -> Option<(u64, &str)> {
    let at = json.find("\"offset\":")? + 9;
    let digits = json[at..].trim_start();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let offset = digits[..end].parse().ok()?;
    let t = json.find("\"text\":\"")? + 8;
    let text = &json[t..];
    Some((offset, &text[..text.find('"')?]))
}

/// Follow over SSE (`event: line` with a log line's JSON as data, then `event: end`).
async fn follow_sse(
    resp: reqwest::Response,
    epoch: Instant,
    seen: &mut Seen,
) -> anyhow::Result<()> {
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut event = String::new();
    let mut data = String::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        let mut used = 0;
        while let Some(nl) = buf[used..].iter().position(|b| *b == b'\n') {
            let line = std::str::from_utf8(&buf[used..used + nl])?.trim_end_matches('\r');
            used += nl + 1;
            if line.is_empty() {
                match event.as_str() {
                    "line" => {
                        let (offset, text) =
                            parse_line(&data).with_context(|| format!("a line event {data:?}"))?;
                        seen.line(offset, text, epoch);
                    }
                    "end" => {
                        seen.ended = true;
                        return Ok(());
                    }
                    _ => {}
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim_start().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        buf.drain(..used);
    }
    Ok(())
}

/// Follow over WebSocket (a log line's JSON per text message, then the text `end`).
async fn follow_ws(
    mut ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    epoch: Instant,
    seen: &mut Seen,
) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::Message;
    while let Some(m) = ws.next().await {
        match m? {
            Message::Text(t) if t.as_str() == "end" => {
                seen.ended = true;
                let _ = ws.close(None).await;
                return Ok(());
            }
            Message::Text(t) => {
                let (offset, text) =
                    parse_line(t.as_str()).with_context(|| format!("a line message {t:?}"))?;
                seen.line(offset, text, epoch);
            }
            _ => {}
        }
    }
    Ok(())
}

/// A connected follower, before it reads.
enum Follower {
    Sse(reqwest::Response),
    Ws(
        Box<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
}

async fn connect(
    sys: Sys,
    addr: &str,
    job: u64,
    http: &reqwest::Client,
) -> anyhow::Result<Follower> {
    match sys {
        Sys::Switchyard | Sys::CeilingSse => {
            let url = if sys == Sys::Switchyard {
                format!("http://{addr}/v1/jobs/{job}/logs?follow=true&from=0")
            } else {
                format!("http://{addr}/sse")
            };
            let resp = http
                .get(url)
                .header("accept", "text/event-stream")
                .send()
                .await?;
            if !resp.status().is_success() {
                bail!("following answered {}", resp.status());
            }
            Ok(Follower::Sse(resp))
        }
        Sys::CeilingWs => {
            let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
            Ok(Follower::Ws(Box::new(ws)))
        }
    }
}

struct Cell {
    appended_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: u64,
    duplicated: u64,
    failed: Vec<String>,
}

async fn run_round(a: &LogsArgs, sys: Sys, addr: &str) -> anyhow::Result<Cell> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(a.followers + 2)
        .build()?;
    let mut sink = match sys {
        Sys::Switchyard => {
            let client = Client::new(format!("http://{addr}"));
            let spec = JobSpec {
                command: vec!["bench-log-feed".into()],
                queue: "bench-logs".into(),
                timeout: None,
                max_attempts: 1,
                lease_ttl: 3600,
                env: Default::default(),
                labels: Default::default(),
                priority: 0,
                cwd: None,
            };
            let job = client.enqueue(&spec, None).await?;
            let leased = client
                .lease(&LeaseRequest {
                    worker: "bench-log-feed".into(),
                    queue: "bench-logs".into(),
                    labels: Default::default(),
                    max: 1,
                    wait: 5.0,
                    finish: None,
                    until_drained: false,
                })
                .await?;
            let held = leased
                .jobs
                .into_iter()
                .find(|l| l.job.id == job.id)
                .context("the feed's job was not leased")?;
            Sink::Switchyard {
                client,
                id: job.id,
                token: held.token,
                seq: 0,
            }
        }
        Sys::CeilingWs | Sys::CeilingSse => Sink::Ceiling {
            http: http.clone(),
            base: format!("http://{addr}"),
        },
    };
    let job = match &sink {
        Sink::Switchyard { id, .. } => *id,
        Sink::Ceiling { .. } => 0,
    };

    // Every follower connected (and, on the ceiling, subscribed) before the first line.
    let followers: Vec<Follower> = futures::stream::iter(0..a.followers)
        .map(|_| connect(sys, addr, job, &http))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let epoch = Instant::now();
    let drain = Duration::from_secs_f64(a.drain);
    let seconds = a.seconds;
    let tasks: Vec<_> = followers
        .into_iter()
        .map(|f| {
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let follow = async {
                    match f {
                        Follower::Sse(resp) => follow_sse(resp, epoch, &mut seen).await,
                        Follower::Ws(ws) => follow_ws(*ws, epoch, &mut seen).await,
                    }
                };
                let limit = Duration::from_secs_f64(seconds) + drain;
                match tokio::time::timeout(limit, follow).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        seen.failed.get_or_insert(format!("{e:#}"));
                    }
                    Err(_) => {
                        seen.failed
                            .get_or_insert_with(|| "did not see the end in time".into());
                    }
                }
                seen
            })
        })
        .collect();

    let pad = "x".repeat(LINE_BYTES - 28);
    let start = tokio::time::Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(a.batch_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = tick.tick().await;
        if now >= end {
            break;
        }
        let due = (a.rate * (now - start).as_secs_f64()).floor() as u64 + 1;
        if due <= sent {
            continue;
        }
        let us = epoch.elapsed().as_micros() as u64;
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lines: Vec<NewLogLine> = (sent..due)
            .map(|n| NewLogLine {
                stream: LogStream::Stdout,
                time_ms,
                text: format!("{n:010} {us:016} {pad}"),
            })
            .collect();
        // At most the server's batch limit per request.
        for chunk in lines.chunks(MAX_LOG_BATCH) {
            sink.append(chunk).await?;
        }
        sent = due;
    }
    let append_secs = start.elapsed().as_secs_f64();
    sink.end().await?;

    let mut cell = Cell {
        appended_per_s: sent as f64 / append_secs,
        delivered_per_s: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        lost: 0,
        duplicated: 0,
        failed: Vec::new(),
    };
    let mut lat = Vec::new();
    let mut received = 0;
    for t in tasks {
        let seen = t.await?;
        received += seen.received;
        cell.duplicated += seen.duplicated;
        // Lines after the last one received are lost too.
        cell.lost += seen.lost + sent.saturating_sub(seen.next);
        match seen.failed {
            Some(f) => cell.failed.push(f),
            None if !seen.ended => cell.failed.push("its stream closed before the end".into()),
            None => {}
        }
        lat.extend(seen.latencies);
    }
    // Until the last follower has the last line: what the followers could take.
    cell.delivered_per_s = received as f64 / start.elapsed().as_secs_f64();
    lat.sort_unstable();
    cell.p50_ms = pct(&lat, 50.0);
    cell.p99_ms = pct(&lat, 99.0);
    Ok(cell)
}

pub async fn run(mut a: LogsArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.followers = 5;
        a.rate = 1000.0;
        a.seconds = 2.0;
        a.rounds = 1;
        a.drain = 10.0;
    }
    if a.followers == 0 || a.rounds == 0 || a.batch_ms == 0 {
        bail!("--followers, --rounds and --batch-ms must be at least 1");
    }
    if !(a.rate > 0.0 && a.seconds > 0.0 && a.drain > 0.0) {
        bail!("--rate, --seconds and --drain must be above 0");
    }
    let mut systems = a.systems.clone();
    systems.sort();
    systems.dedup();
    let dir = tempdir_here()?;
    // The log of a round must fit in the job's log: the oldest lines go first past the cap.
    let cap = ((a.rate * a.seconds) as u64 + 1) * (LINE_BYTES as u64) * 2;
    let cap = cap.clamp(1 << 20, 1 << 30);
    let mut switchyard = None;
    let mut ceiling = None;
    if systems.contains(&Sys::Switchyard) {
        let extra = [
            "--local-workers".to_string(),
            "0".into(),
            "--job-log-max-bytes".into(),
            cap.to_string(),
        ];
        switchyard = Some(start_with(System::Switchyard, &dir, 0, &extra).await?);
    }
    if systems.iter().any(|s| *s != Sys::Switchyard) {
        ceiling = Some(start_ceiling().await?);
    }
    let addr_of = |s: Sys| -> &str {
        match s {
            Sys::Switchyard => &switchyard.as_ref().expect("started above").addr,
            Sys::CeilingWs | Sys::CeilingSse => &ceiling.as_ref().expect("started above").addr,
        }
    };
    let mut cells: std::collections::BTreeMap<Sys, Vec<Cell>> = Default::default();
    for round in 0..a.rounds {
        let n = systems.len();
        for k in 0..n {
            let sys = systems[(k + round) % n];
            let cell = run_round(&a, sys, addr_of(sys)).await?;
            eprintln!(
                "round {} {:<42} appended {:>7.0}/s delivered {:>9.0}/s p50 {:>8.2} ms p99 {:>8.2} ms lost {} duplicated {}",
                round + 1,
                sys.label(),
                cell.appended_per_s,
                cell.delivered_per_s,
                cell.p50_ms,
                cell.p99_ms,
                cell.lost,
                cell.duplicated
            );
            for f in cell.failed.iter().take(3) {
                eprintln!("  a follower: {f}");
            }
            cells.entry(sys).or_default().push(cell);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    drop(switchyard);
    drop(ceiling);
    let _ = std::fs::remove_dir_all(&dir);

    let report = report(&a, &mut cells);
    print!("{report}");
    if let Some(out) = &a.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    if let Some(ours) = cells.get(&Sys::Switchyard) {
        let lost: u64 = ours.iter().map(|c| c.lost).sum();
        let dup: u64 = ours.iter().map(|c| c.duplicated).sum();
        let failed: usize = ours.iter().map(|c| c.failed.len()).sum();
        if lost + dup > 0 || failed > 0 {
            bail!("switchyard lost {lost} and repeated {dup} lines; {failed} follower(s) failed");
        }
    }
    Ok(())
}

fn report(a: &LogsArgs, cells: &mut std::collections::BTreeMap<Sys, Vec<Cell>>) -> String {
    let mut s = String::new();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            s,
            "(debug build: these switchyard numbers are not comparable; use --release)\n"
        );
    }
    let _ = writeln!(
        s,
        "Log fan-out: {} followers of one log, {} lines/s of {LINE_BYTES} bytes appended in a \
         batch every {} ms, {} s x {} round(s), systems interleaved; medians of rounds.\n",
        a.followers, a.rate, a.batch_ms, a.seconds, a.rounds
    );
    let _ = writeln!(
        s,
        "| system | appended lines/s | delivered lines/s | p50 ms | p99 ms | lost | duplicated | delivered switchyard / this | p99 this / switchyard |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ours = None;
    for (sys, runs) in cells.iter_mut() {
        let col = |f: fn(&Cell) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let (appended, delivered, p50, p99) = (
            col(|c| c.appended_per_s),
            col(|c| c.delivered_per_s),
            col(|c| c.p50_ms),
            col(|c| c.p99_ms),
        );
        if *sys == Sys::Switchyard {
            ours = Some((delivered, p99));
        }
        let (r1, r2) = ours.map_or((String::new(), String::new()), |(d, p)| {
            (format!("{:.2}x", d / delivered), format!("{:.2}x", p99 / p))
        });
        let _ = writeln!(
            s,
            "| {} | {appended:.0} | {delivered:.0} | {p50:.2} | {p99:.2} | {} | {} | {r1} | {r2} |",
            sys.label(),
            runs.iter().map(|c| c.lost).sum::<u64>(),
            runs.iter().map(|c| c.duplicated).sum::<u64>(),
        );
    }
    s
}

/// The ceiling: takes `POST /logs` batches (the body of switchyard's route), numbers the lines,
/// serialises each once and broadcasts it to every follower of `GET /ws` (a text message per
/// line) and `GET /sse` (an SSE `line` event per line); `POST /end` ends every follower's
/// stream and starts numbering again. It keeps nothing: a follower that falls behind by more
/// than the channel holds loses lines (and says so).
pub async fn ceiling(port: u16) -> anyhow::Result<()> {
    use axum::extract::ws::{Message, Utf8Bytes, WebSocketUpgrade};
    use axum::extract::{Json, State};
    use axum::response::sse::{Event, Sse};
    use axum::routing::{get, post};
    use tokio::sync::broadcast;

    #[derive(Clone)]
    struct Hub {
        tx: broadcast::Sender<Option<(u64, Utf8Bytes)>>,
        next: Arc<std::sync::atomic::AtomicU64>,
    }
    let hub = Hub {
        tx: broadcast::channel(1 << 20).0,
        next: Arc::new(0.into()),
    };
    async fn logs(
        State(h): State<Hub>,
        Json(b): Json<switchyard_types::LogBatch>,
    ) -> Json<serde_json::Value> {
        use std::sync::atomic::Ordering;
        let mut next = 0;
        for l in b.lines {
            let offset = h.next.fetch_add(1, Ordering::Relaxed);
            let line = switchyard_types::LogLine {
                offset,
                stream: l.stream,
                time: l.time_ms.to_string(),
                text: l.text,
            };
            let json = serde_json::to_string(&line).expect("a log line serialises");
            let _ = h.tx.send(Some((offset, json.into())));
            next = offset + 1;
        }
        Json(serde_json::json!({ "next": next }))
    }
    async fn end(State(h): State<Hub>) {
        h.next.store(0, std::sync::atomic::Ordering::Relaxed);
        let _ = h.tx.send(None);
    }
    async fn followers(State(h): State<Hub>) -> String {
        h.tx.receiver_count().to_string()
    }
    async fn ws(State(h): State<Hub>, up: WebSocketUpgrade) -> axum::response::Response {
        // Subscribed before the answer, so no line sent after it is missed.
        let mut rx = h.tx.subscribe();
        up.on_upgrade(move |mut socket| async move {
            loop {
                let msg = match rx.recv().await {
                    Ok(Some((_, json))) => Message::Text(json),
                    Ok(None) => Message::Text("end".into()),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Message::Text(format!("lagged {n}").into())
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let last = matches!(&msg, Message::Text(t) if t.as_str() == "end");
                if socket.send(msg).await.is_err() || last {
                    return;
                }
            }
        })
    }
    async fn sse(State(h): State<Hub>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let rx = h.tx.subscribe();
        let events = futures::stream::unfold((rx, false), |(mut rx, done)| async move {
            if done {
                return None;
            }
            let (event, done) = match rx.recv().await {
                Ok(Some((offset, json))) => (
                    Event::default()
                        .event("line")
                        .id(offset.to_string())
                        .data(json.as_str()),
                    false,
                ),
                Ok(None) => (Event::default().event("end").data("{}"), true),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    (Event::default().event("lagged").data(n.to_string()), false)
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok::<_, std::convert::Infallible>(event), (rx, done)))
        });
        Sse::new(events).into_response()
    }
    let app = axum::Router::new()
        .route("/logs", post(logs))
        .route("/end", post(end))
        .route("/followers", get(followers))
        .route("/ws", get(ws))
        .route("/sse", get(sse))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
