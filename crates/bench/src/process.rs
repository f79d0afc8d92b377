//! The systems under test as processes: finding the switchyard binary, starting a system on
//! free ports in a directory of its own, waiting until it serves, stopping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum System {
    Switchyard,
    /// switchyard with the API on HTTPS (a certificate of a CA made for the run).
    SwitchyardTls,
    Etcd,
    Redis,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Switchyard => "switchyard",
            System::SwitchyardTls => "switchyard-tls",
            System::Etcd => "etcd",
            System::Redis => "redis",
        }
    }

    fn switchyard(self) -> bool {
        matches!(self, System::Switchyard | System::SwitchyardTls)
    }

    pub(crate) fn binary(self) -> Option<PathBuf> {
        match self {
            System::Switchyard | System::SwitchyardTls => switchyard_binary().ok(),
            System::Etcd => which("etcd"),
            System::Redis => which("redis-server"),
        }
    }
}

/// The switchyard binary the benchmarks run: `SWITCHYARD_BIN`, else `switchyard` beside this
/// binary (the same cargo target directory), else the one on the PATH.
pub(crate) fn switchyard_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SWITCHYARD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()?.with_file_name("switchyard");
    if beside.is_file() {
        return Ok(beside);
    }
    which("switchyard").context(
        "no switchyard binary: build it (cargo build --release -p switchyard) or set SWITCHYARD_BIN",
    )
}

pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A peer process, killed on drop.
pub(crate) struct Running {
    pub(crate) system: System,
    child: Child,
    /// Its command line, to start it again on the same data dir and ports.
    command: Command,
    /// host:port of its client endpoint.
    pub(crate) addr: String,
    /// What a client trusts to reach it over TLS (switchyard-tls).
    tls: Option<rustls::ClientConfig>,
}

impl Running {
    /// The process id, to read its memory from `/proc`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kill the process with SIGKILL and start it again with the same command line (same data
    /// dir and ports). Returns once it is spawned, not once it serves.
    pub(crate) fn kill_and_respawn(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = self
            .command
            .spawn()
            .with_context(|| format!("starting {} again", self.system.name()))?;
        Ok(())
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub(crate) fn http(&self) -> reqwest::ClientBuilder {
        let b = reqwest::Client::builder().no_proxy();
        match &self.tls {
            Some(c) => b.tls_backend_preconfigured(c.clone()),
            None => b,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start(
    system: System,
    dir: &Path,
    max_clients: usize,
) -> anyhow::Result<Running> {
    start_with(system, dir, max_clients, &[]).await
}

/// Start `system` as [`start`] does, with `extra` arguments added to its command line (for
/// switchyard: settings of `serve`).
pub(crate) async fn start_with(
    system: System,
    dir: &Path,
    max_clients: usize,
    extra: &[String],
) -> anyhow::Result<Running> {
    let bin = system
        .binary()
        .with_context(|| format!("{} is not installed", system.name()))?;
    let port = free_port()?;
    let peer = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let data = dir.join(system.name());
    std::fs::create_dir_all(&data)?;
    let mut cmd = Command::new(bin);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut tls = None;
    match system {
        System::Switchyard | System::SwitchyardTls => {
            cmd.arg("serve");
            if system == System::SwitchyardTls {
                let certs = dir.join("certs");
                switchyard_tls::certs::init(&certs)?;
                let (cert, key) = switchyard_tls::certs::node(
                    &certs,
                    "bench",
                    &["127.0.0.1".parse().expect("an address")],
                    &[],
                )?;
                // The serve's local worker trusts the run's CA too.
                cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
                cmd.arg("--ca-cert").arg(certs.join("ca.pem"));
                tls = Some(switchyard_tls::client_config(
                    &[&certs.join("ca.pem")],
                    None,
                )?);
            }
            cmd.args([
                "--listen",
                &addr,
                "--peer-listen",
                &format!("127.0.0.1:{peer}"),
            ])
            .arg("--data-dir")
            .arg(&data)
            .env("SWITCHYARD_LOG", "warn");
        }
        System::Etcd => {
            let purl = format!("http://127.0.0.1:{peer}");
            let curl = format!("http://{addr}");
            cmd.args(["--name", "bench", "--log-level", "error", "--logger", "zap"])
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &curl,
                    "--advertise-client-urls",
                    &curl,
                ])
                .args([
                    "--listen-peer-urls",
                    &purl,
                    "--initial-advertise-peer-urls",
                    &purl,
                ])
                .args(["--initial-cluster", &format!("bench={purl}")]);
        }
        System::Redis => {
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ])
                .args(["--daemonize", "no", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&data);
        }
    }
    let child = cmd
        .args(extra)
        .spawn()
        .with_context(|| format!("starting {}", system.name()))?;
    let running = Running {
        system,
        child,
        command: cmd,
        addr,
        tls,
    };
    wait_ready(&running, max_clients).await?;
    Ok(running)
}

async fn wait_ready(r: &Running, max_clients: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = r.http().build()?;
    loop {
        let ok = match r.system {
            System::Switchyard | System::SwitchyardTls => match http
                .get(format!("{}://{}/v1/status", r.scheme(), r.addr))
                .send()
                .await
            {
                Ok(resp) => resp
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["role"] == "leader"),
                Err(_) => false,
            },
            System::Etcd => match http.get(format!("http://{}/health", r.addr)).send().await {
                Ok(resp) => resp.text().await.is_ok_and(|t| t.contains("true")),
                Err(_) => false,
            },
            System::Redis => match tokio::net::TcpStream::connect(&r.addr).await {
                Ok(mut s) => {
                    let mut buf = [0u8; 7];
                    s.write_all(b"PING\r\n").await.is_ok()
                        && s.read_exact(&mut buf).await.is_ok()
                        && &buf == b"+PONG\r\n"
                }
                Err(_) => false,
            },
        };
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!("{} did not become ready within 30 s", r.system.name());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if r.system.switchyard() {
        for i in 0..max_clients {
            let resp = http
                .post(format!("{}://{}/v1/bank/accounts", r.scheme(), r.addr))
                .json(&serde_json::json!({"id": format!("bench-{i}")}))
                .send()
                .await?;
            if !resp.status().is_success() && resp.status() != reqwest::StatusCode::CONFLICT {
                bail!(
                    "switchyard: opening bench accounts answered {}",
                    resp.status()
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn tempdir_here() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_dir()?.join(format!("target/bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
