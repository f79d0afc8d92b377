//! One subscriber on each system: its watch stream (switchyard's `Watch`, etcd's gateway
//! `/v3/watch`, a NATS push consumer), resumed from its last revision when its connection is
//! closed, and what it counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use switchyard_client::{Client, Watch, WatchItem};

use crate::wire::Nats;
use crate::wire::base64;

use super::*;

/// A subscriber's connection, resumed from the last revision it delivered.
pub(super) enum Feed {
    /// switchyard's own client: it resumes by itself after `disconnect`.
    Switchyard(Box<Watch>),
    Etcd(EtcdWatch),
    Nats(NatsWatch),
}

impl Feed {
    pub(super) async fn open(r: &Round, server: &Server, from: u64) -> anyhow::Result<Self> {
        let base = format!("http://{}", server.addr());
        Ok(match r.sys {
            Sys::Switchyard => {
                let prefix = format!("bank/accounts/w{}-", r.index);
                let w = Client::new(base).watch(&prefix, Some(from)).await?;
                Feed::Switchyard(Box::new(w))
            }
            Sys::Etcd => Feed::Etcd(EtcdWatch {
                http: reqwest::Client::builder().no_proxy().build()?,
                base,
                prefix: format!("fan/{}/", r.index),
                next_rev: from + 1,
                stream: None,
                buf: Vec::new(),
                reconnects: 0,
                opened: false,
            }),
            Sys::Nats => {
                let mut w = NatsWatch {
                    addr: server.addr().to_string(),
                    filter: format!("$KV.{BUCKET}.r{}.>", r.index),
                    next_seq: from + 1,
                    conn: None,
                    reconnects: 0,
                };
                w.connect().await?;
                Feed::Nats(w)
            }
        })
    }

    /// Wait for the next events and append them to `out` (none for a bookmark).
    pub(super) async fn next(&mut self, r: &Round, out: &mut Vec<Ev>) -> anyhow::Result<()> {
        match self {
            Feed::Switchyard(w) => {
                if let WatchItem::Event(e) = w.next().await? {
                    if e.event["kind"] != "credited" {
                        return Ok(());
                    }
                    let key = key_of(&e.topic).context("an event of another topic")?;
                    let seq = e.event["account"]["balance"]
                        .as_u64()
                        .context("a credit event without a balance")?;
                    out.push(Ev { key, seq });
                }
                Ok(())
            }
            Feed::Etcd(w) => w.next(r, out).await,
            Feed::Nats(w) => w.next(out).await,
        }
    }

    /// Close the connection now; the next call to `next` resumes where it left off.
    pub(super) fn kick(&mut self) {
        match self {
            Feed::Switchyard(w) => w.disconnect(),
            Feed::Etcd(w) => w.stream = None,
            Feed::Nats(w) => w.conn = None,
        }
    }

    pub(super) fn reconnects(&self) -> u64 {
        match self {
            Feed::Switchyard(w) => w.reconnects,
            Feed::Etcd(w) => w.reconnects,
            Feed::Nats(w) => w.reconnects,
        }
    }
}

pub(super) type Body = futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>;

/// An etcd watch over the gateway's `POST /v3/watch` (a stream of JSON objects).
pub(super) struct EtcdWatch {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) prefix: String,
    /// The revision to resume from: one past the last one received.
    pub(super) next_rev: u64,
    pub(super) stream: Option<Body>,
    pub(super) buf: Vec<u8>,
    pub(super) reconnects: u64,
    pub(super) opened: bool,
}

impl EtcdWatch {
    pub(super) async fn connect(&mut self) -> anyhow::Result<()> {
        let mut end = self.prefix.clone().into_bytes();
        *end.last_mut().expect("a non-empty prefix") += 1;
        let body = serde_json::json!({"create_request": {
            "key": base64(self.prefix.as_bytes()),
            "range_end": base64(&end),
            "start_revision": self.next_rev.to_string(),
        }});
        let resp = self
            .http
            .post(format!("{}/v3/watch", self.base))
            .json(&body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("etcd watch answered {}", resp.status());
        }
        self.stream = Some(resp.bytes_stream().boxed());
        self.buf.clear();
        if self.opened {
            self.reconnects += 1;
        }
        self.opened = true;
        Ok(())
    }

    pub(super) async fn next(&mut self, r: &Round, out: &mut Vec<Ev>) -> anyhow::Result<()> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.connect().await?;
                continue;
            };
            match stream.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(_)) | None => {
                    self.stream = None;
                    continue;
                }
            }
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<EtcdMsg>();
            let mut used = 0;
            let mut got = false;
            while let Some(m) = it.next() {
                let m = match m {
                    Ok(m) => m,
                    Err(e) if e.is_eof() => break,
                    Err(e) => bail!("etcd watch: {e}"),
                };
                used = it.byte_offset();
                let Some(res) = m.result else {
                    bail!("etcd watch: {}", m.error.unwrap_or_default());
                };
                if res.canceled {
                    bail!(
                        "etcd watch cancelled (compacted at {:?})",
                        res.compact_revision
                    );
                }
                for e in res.events {
                    let rev: u64 = e.kv.mod_revision.parse()?;
                    let key = *r
                        .etcd_keys
                        .get(&e.kv.key)
                        .context("an etcd event of another key")?;
                    out.push(Ev {
                        key,
                        seq: e.kv.version.parse()?,
                    });
                    self.next_rev = self.next_rev.max(rev + 1);
                    got = true;
                }
            }
            self.buf.drain(..used);
            if got {
                return Ok(());
            }
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct EtcdMsg {
    pub(super) result: Option<EtcdResult>,
    pub(super) error: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
pub(super) struct EtcdResult {
    #[serde(default)]
    pub(super) events: Vec<EtcdEvent>,
    #[serde(default)]
    pub(super) canceled: bool,
    pub(super) compact_revision: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct EtcdEvent {
    pub(super) kv: EtcdKv,
}

#[derive(serde::Deserialize)]
pub(super) struct EtcdKv {
    pub(super) key: String,
    pub(super) mod_revision: String,
    pub(super) version: String,
}

/// A NATS KV watch: an ephemeral push consumer on the bucket's stream from a stream sequence,
/// with flow control and heartbeats as NATS's own clients make their ordered consumers.
pub(super) struct NatsWatch {
    pub(super) addr: String,
    pub(super) filter: String,
    /// The stream sequence to resume from.
    pub(super) next_seq: u64,
    pub(super) conn: Option<Nats>,
    pub(super) reconnects: u64,
}

impl NatsWatch {
    pub(super) async fn connect(&mut self) -> anyhow::Result<()> {
        let mut n = Nats::connect(&self.addr).await?;
        // A subscription of its own, outside the inbox wildcard (which the server does not
        // count as interest in a push consumer's deliveries).
        let deliver = format!("{}_deliver", n.inbox);
        n.sub(&deliver, 1).await?;
        let config = serde_json::json!({"stream_name": format!("KV_{BUCKET}"), "config": {
            "deliver_subject": deliver,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": self.next_seq,
            "ack_policy": "none",
            "replay_policy": "instant",
            "filter_subject": self.filter,
            "flow_control": true,
            "idle_heartbeat": 5_000_000_000u64,
            "mem_storage": true,
            "num_replicas": 1,
        }});
        let reply = n
            .request(
                &format!("$JS.API.CONSUMER.CREATE.KV_{BUCKET}"),
                config.to_string().as_bytes(),
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&reply)?;
        if v.get("error").is_some() {
            bail!("nats: creating a consumer answered {v}");
        }
        self.conn = Some(n);
        Ok(())
    }

    pub(super) async fn next(&mut self, out: &mut Vec<Ev>) -> anyhow::Result<()> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                self.reconnects += 1;
                self.connect().await?;
                continue;
            };
            let m = match conn.next_msg().await {
                Ok(m) => m,
                Err(_) => {
                    self.conn = None;
                    continue;
                }
            };
            if m.is_status() {
                // A flow control request carries a subject to answer on.
                if let Some(reply) = &m.reply {
                    conn.publish(reply, None, b"").await?;
                }
                continue;
            }
            // $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
            let reply = m
                .reply
                .as_deref()
                .context("a NATS delivery without a reply")?;
            let tokens: Vec<&str> = reply.split('.').collect();
            let sseq: u64 = match tokens.len() {
                9 => tokens[5].parse()?,
                n if n >= 12 => tokens[7].parse()?,
                _ => bail!("nats: unexpected delivery subject {reply}"),
            };
            self.next_seq = self.next_seq.max(sseq + 1);
            out.push(Ev {
                key: key_of(&m.subject).context("a NATS message of another subject")?,
                seq: std::str::from_utf8(&m.payload)?.parse()?,
            });
            return Ok(());
        }
    }
}

/// What one subscriber saw in a round.
#[derive(Default)]
pub(super) struct SubResult {
    /// Publish-to-receive latencies, µs.
    pub(super) latencies: Vec<u32>,
    pub(super) received: u64,
    /// Writes never received (a jump in a key's sequence, or missing at the end).
    pub(super) gaps: u64,
    /// Writes received again.
    pub(super) duplicates: u64,
    pub(super) reconnects: u64,
    /// Why it stopped early, if it did.
    pub(super) failed: Option<String>,
}

pub(super) async fn subscriber(
    mut feed: Feed,
    r: Arc<Round>,
    kick: Arc<tokio::sync::Notify>,
    mut done: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> SubResult {
    let mut res = SubResult::default();
    let mut last = vec![0u64; r.published.len()];
    let mut evs = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if *done.borrow() {
            if last.iter().sum::<u64>() >= r.published_total() {
                break;
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + drain);
        }
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + drain);
        tokio::select! {
            got = feed.next(&r, &mut evs) => {
                if let Err(e) = got {
                    res.failed = Some(format!("{e:#}"));
                    break;
                }
                let now = r.now_us();
                for ev in evs.drain(..) {
                    res.received += 1;
                    let Some(prev) = last.get_mut(ev.key) else { continue };
                    if ev.seq <= *prev {
                        res.duplicates += 1;
                        continue;
                    }
                    res.gaps += ev.seq - *prev - 1;
                    *prev = ev.seq;
                    if let Some(sent) = r.sent_us[ev.key].get(ev.seq as usize - 1) {
                        let sent = sent.load(Ordering::Acquire);
                        res.latencies.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                    }
                }
            }
            _ = kick.notified() => feed.kick(),
            _ = done.changed(), if !*done.borrow() => {}
            _ = tokio::time::sleep_until(until), if deadline.is_some() => break,
        }
    }
    for (k, l) in last.iter().enumerate() {
        res.gaps += r.published[k].load(Ordering::Acquire).saturating_sub(*l);
    }
    res.reconnects = feed.reconnects();
    res
}
