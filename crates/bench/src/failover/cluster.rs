//! A three-member cluster of either system as processes: start, find the leader, kill it,
//! restart it on its data directory and ports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::process::which;
use crate::wire::base64;

use super::*;

pub(super) struct Member {
    pub(super) api: u16,
    pub(super) peer: u16,
    pub(super) dir: PathBuf,
    pub(super) child: Option<Child>,
}

/// A cluster of `n` local processes of one system.
pub(super) struct Cluster {
    pub(super) sys: Sys,
    pub(super) bin: PathBuf,
    pub(super) members: Vec<Member>,
    pub(super) heartbeat_ms: u64,
    pub(super) election_ms: u64,
    pub(super) http: reqwest::Client,
    /// Key prefix of this cluster's writes (etcd) / account id (switchyard).
    pub(super) tag: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Cluster {
    pub(super) async fn start(
        sys: Sys,
        n: usize,
        dir: &Path,
        a: &FailoverArgs,
    ) -> anyhow::Result<Self> {
        let bin = match sys {
            Sys::Switchyard => crate::process::switchyard_binary()?,
            Sys::Etcd => which("etcd").context("etcd is not installed (Debian: etcd-server)")?,
        };
        // Switchyard binds port 0 at its first start and says which ports it got (no window in
        // which another process can take them); it restarts on those. etcd cannot, so it gets
        // every port chosen at once, each listener held until all are chosen.
        let held: Vec<std::net::TcpListener> = (0..2 * n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()?;
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()?;
        drop(held);
        let mut members = Vec::new();
        let pick = |k: usize| if sys == Sys::Switchyard { 0 } else { ports[k] };
        for i in 0..n {
            let d = dir.join(format!("{}-{n}-{}", sys.name(), i + 1));
            std::fs::create_dir_all(&d)?;
            members.push(Member {
                api: pick(2 * i),
                peer: pick(2 * i + 1),
                dir: d,
                child: None,
            });
        }
        let mut c = Cluster {
            sys,
            bin,
            members,
            heartbeat_ms: a.heartbeat_ms,
            election_ms: a.election_timeout_ms,
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(a.clients.max(4))
                .build()?,
            tag: format!("b5-{n}"),
        };
        for i in 0..n {
            c.spawn(i)?;
            if sys == Sys::Switchyard && i == 0 {
                // Node 1 initialises the cluster; the others join it once it leads.
                c.await_ready(&[0]).await?;
            }
        }
        let all: Vec<usize> = (0..n).collect();
        c.await_ready(&all).await?;
        if sys == Sys::Switchyard {
            let r = c
                .http
                .post(format!("{}/v1/bank/accounts", c.url(0)))
                .json(&json!({"id": c.tag}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!(
                    "switchyard: opening the bench account answered {}",
                    r.status()
                );
            }
        }
        Ok(c)
    }

    pub(super) fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].api)
    }

    pub(super) fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let n = self.members.len();
        let m = &self.members[i];
        let mut cmd = Command::new(&self.bin);
        // Each process's own log beside its data, appended across restarts, for a failure report.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.with_extension("log"))?;
        cmd.stdout(Stdio::null()).stderr(log);
        let (api, peer) = (
            format!("127.0.0.1:{}", m.api),
            format!("127.0.0.1:{}", m.peer),
        );
        match self.sys {
            Sys::Switchyard => {
                cmd.args(["serve", "--node-id", &(i + 1).to_string()])
                    .args(["--listen", &api, "--peer-listen", &peer])
                    .args(["--heartbeat-ms", &self.heartbeat_ms.to_string()])
                    .args(["--election-timeout-ms", &self.election_ms.to_string()])
                    .arg("--data-dir")
                    .arg(&m.dir)
                    .env("SWITCHYARD_LOG", "warn")
                    // Every member of one benchmark cluster runs with the same join token.
                    .env("SWITCHYARD_JOIN_TOKEN", "switchyard-failover-bench-token");
                if i > 0 {
                    cmd.args(["--join", &self.url(0)]);
                }
            }
            Sys::Etcd => {
                let initial: Vec<String> = self
                    .members
                    .iter()
                    .enumerate()
                    .map(|(k, o)| format!("n{}=http://127.0.0.1:{}", k + 1, o.peer))
                    .collect();
                let curl = format!("http://{api}");
                let purl = format!("http://{peer}");
                cmd.args(["--name", &format!("n{}", i + 1)])
                    .args(["--log-level", "error", "--logger", "zap"])
                    .arg("--data-dir")
                    .arg(&m.dir)
                    .args(["--listen-client-urls", &curl])
                    .args(["--advertise-client-urls", &curl])
                    .args(["--listen-peer-urls", &purl])
                    .args(["--initial-advertise-peer-urls", &purl])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args(["--initial-cluster-token", &format!("b5-{n}")])
                    .args(["--heartbeat-interval", &self.heartbeat_ms.to_string()])
                    .args(["--election-timeout", &self.election_ms.to_string()]);
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.sys.name()))?;
        self.members[i].child = Some(child);
        if self.members[i].api == 0 {
            let (api, peer) = self.announced(i)?;
            self.members[i].api = api;
            self.members[i].peer = peer;
        }
        Ok(())
    }

    /// The ports switchyard member `i` bound, from the line its log starts with ("... serving
    /// the API on http://A (peer RPC on P)").
    pub(super) fn announced(&mut self, i: usize) -> anyhow::Result<(u16, u16)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let path = self.members[i].dir.with_extension("log");
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if let Some(rest) = text.split("serving the API on http://").nth(1) {
                let port = |s: &str| -> Option<u16> { s.rsplit(':').next()?.parse().ok() };
                let api = rest.split_whitespace().next().and_then(port);
                let peer = rest
                    .split("peer RPC on ")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .and_then(port);
                if let (Some(api), Some(peer)) = (api, peer) {
                    return Ok((api, peer));
                }
            }
            let exited = self.members[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                bail!("switchyard member {} exited ({status}):\n{text}", i + 1);
            }
            if Instant::now() > deadline {
                bail!(
                    "switchyard member {} did not say its ports within 30 s:\n{text}",
                    i + 1
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether member `i` leads, as it says itself.
    pub(super) async fn is_leader(&self, i: usize) -> bool {
        let t = Duration::from_secs(2);
        match self.sys {
            Sys::Switchyard => {
                let r = self
                    .http
                    .get(format!("{}/v1/status", self.url(i)))
                    .timeout(t)
                    .send()
                    .await;
                match r {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["role"] == "leader"),
                    Err(_) => false,
                }
            }
            Sys::Etcd => {
                let r = self
                    .http
                    .post(format!("{}/v3/maintenance/status", self.url(i)))
                    .json(&json!({}))
                    .timeout(t)
                    .send()
                    .await;
                match r {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| {
                        v["leader"].is_string() && v["leader"] == v["header"]["member_id"]
                    }),
                    Err(_) => false,
                }
            }
        }
    }

    pub(super) async fn leader(&self) -> Option<usize> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_some() && self.is_leader(i).await {
                return Some(i);
            }
        }
        None
    }

    /// The leader, asking again for up to 30 s (a loaded machine may answer a status slowly,
    /// or be between leaders for a moment).
    pub(super) async fn await_leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("{}: no leader within 30 s", self.sys.name());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One durable write through member `i`; `true` when acknowledged.
    pub(super) async fn write(&self, i: usize, seq: u64, timeout: Duration) -> bool {
        let req = match self.sys {
            Sys::Switchyard => self
                .http
                .post(format!(
                    "{}/v1/bank/accounts/{}/credit",
                    self.url(i),
                    self.tag
                ))
                .json(&json!({"amount": 1})),
            Sys::Etcd => self
                .http
                .post(format!("{}/v3/kv/put", self.url(i)))
                .json(&json!({
                    // Readiness probes (seq from READY) stay outside the counted range.
                    "key": base64(if seq >= READY {
                        format!("{}-ready/{seq}", self.tag)
                    } else {
                        format!("{}/{seq:012}", self.tag)
                    }.as_bytes()),
                    "value": base64(b"v"),
                })),
        };
        match req.timeout(timeout).send().await {
            // etcd's gateway answers errors with 200 and an "error" field on some paths.
            Ok(r) if r.status().is_success() => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v.get("error").is_none()),
            _ => false,
        }
    }

    /// The last lines each member's process wrote, for an error message.
    pub(super) fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let text = std::fs::read_to_string(m.dir.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
            let _ = write!(
                out,
                "\n  member {} (api port {}):\n    {tail}",
                i + 1,
                m.api
            );
        }
        out
    }

    /// Whether member `i` sees a settled membership of every started member as a voter
    /// (switchyard).
    pub(super) async fn settled_voters(&self, i: usize) -> bool {
        let running = self.members.iter().filter(|m| m.child.is_some()).count();
        let r = self
            .http
            .get(format!("{}/v1/cluster", self.url(i)))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let Ok(r) = r else { return false };
        r.json::<switchyard_types::Cluster>().await.is_ok_and(|c| {
            !c.changing && c.members.len() == running && c.members.iter().all(|m| m.voter)
        })
    }

    /// How many writes the cluster holds (read through member `i`).
    pub(super) async fn count(&self, i: usize) -> anyhow::Result<u64> {
        match self.sys {
            Sys::Switchyard => {
                let v: Value = self
                    .http
                    .get(format!("{}/v1/bank/accounts/{}", self.url(i), self.tag))
                    .send()
                    .await?
                    .json()
                    .await?;
                v["balance"].as_u64().context("balance")
            }
            Sys::Etcd => {
                let prefix = format!("{}/", self.tag);
                let end = format!("{}0", self.tag); // '/' + 1
                let v: Value = self
                    .http
                    .post(format!("{}/v3/kv/range", self.url(i)))
                    .json(&json!({
                        "key": base64(prefix.as_bytes()),
                        "range_end": base64(end.as_bytes()),
                        "count_only": true,
                    }))
                    .send()
                    .await?
                    .json()
                    .await?;
                Ok(v["count"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0))
            }
        }
    }

    /// Wait until the given members answer, a leader exists, and a write through each
    /// succeeds (so each is caught up enough to serve).
    pub(super) async fn await_ready(&self, which: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seq = READY;
        loop {
            let mut ok = self.leader().await.is_some();
            for &i in which {
                if !ok {
                    break;
                }
                seq += 1;
                ok = match self.sys {
                    // The bench account may not exist yet: a linearizable read is enough then.
                    // A member that has just joined serves before its promotion to voter has
                    // completed; killing the leader then could leave no quorum, so every
                    // member must also see all of them as voters, with no change under way.
                    Sys::Switchyard => {
                        self.http
                            .get(format!("{}/v1/bank/accounts", self.url(i)))
                            .timeout(Duration::from_secs(2))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success())
                            && self.settled_voters(i).await
                    }
                    Sys::Etcd => {
                        self.write(i, seq, Duration::from_secs(2)).await
                            && self.count(i).await.is_ok()
                    }
                };
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not become ready within 60 s{}",
                    self.sys.name(),
                    self.logs_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
