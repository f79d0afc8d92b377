//! A follower of the log, over SSE or WebSocket: it checks order, loss and duplicates and
//! takes append-to-receive latency.

use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use switchyard_client::Client;
use switchyard_types::{JobEnding, NewLogLine};

use super::*;

/// Where the lines of one round go.
pub(super) enum Sink {
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
    pub(super) async fn append(&mut self, lines: &[NewLogLine]) -> anyhow::Result<()> {
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

    pub(super) async fn end(&self) -> anyhow::Result<()> {
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
pub(super) struct Seen {
    pub(super) latencies: Vec<u32>,
    pub(super) received: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    /// Offset of the next line expected.
    pub(super) next: u64,
    pub(super) ended: bool,
    pub(super) failed: Option<String>,
}

impl Seen {
    /// One line: its offset and its text (`NNNNNNNNNN TTTTTTTTTTTTTTTT ...`: number and
    /// send time in µs since `epoch`).
    pub(super) fn line(&mut self, offset: u64, text: &str, epoch: Instant) {
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
pub(super) fn parse_line(json: &str) -> Option<(u64, &str)> {
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
pub(super) async fn follow_sse(
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
pub(super) async fn follow_ws(
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
pub(super) enum Follower {
    Sse(reqwest::Response),
    Ws(
        Box<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
        >,
    ),
}

pub(super) async fn connect(
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
