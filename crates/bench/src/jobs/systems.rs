//! The systems B3 runs: how each is found, started on ports of its own and stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchyard_client::Client;

use crate::process::{free_port, which};
use crate::wire::{Postgres, Redis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Sys {
    Switchyard,
    Redis,
    RedisNoFsync,
    Postgres,
    Celery,
}

impl Sys {
    pub(super) fn name(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard",
            Sys::Redis => "redis",
            Sys::RedisNoFsync => "redis-nofsync",
            Sys::Postgres => "postgres",
            Sys::Celery => "celery",
        }
    }

    pub(super) fn parse(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "switchyard" => Sys::Switchyard,
            "redis" => Sys::Redis,
            "redis-nofsync" => Sys::RedisNoFsync,
            "postgres" => Sys::Postgres,
            "celery" => Sys::Celery,
            other => bail!(
                "--systems: unknown system {other:?}; allowed: switchyard, redis, redis-nofsync, \
                 postgres, celery"
            ),
        })
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard (fsync per command)",
            Sys::Redis => "Redis lease queue (AOF always)",
            Sys::RedisNoFsync => "Redis lease queue (AOF off: NOT durable)",
            Sys::Postgres => "PostgreSQL SKIP LOCKED (synchronous_commit on)",
            Sys::Celery => "Celery 8 processes (Redis AOF always, late ack)",
        }
    }
}

pub(super) fn pg_bin(name: &str) -> Option<PathBuf> {
    let p = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if p.is_file() { Some(p) } else { which(name) }
}

pub(super) fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn peers_dir() -> PathBuf {
    std::env::current_dir()
        .unwrap_or_default()
        .join("bench/peers")
}

/// Why a system cannot run here, if it cannot.
pub(super) fn missing(sys: Sys) -> Option<String> {
    match sys {
        Sys::Switchyard => None,
        Sys::Redis | Sys::RedisNoFsync => which("redis-server")
            .is_none()
            .then(|| "redis-server is not installed (Debian: redis-server)".into()),
        Sys::Postgres => {
            if pg_bin("postgres").is_none() || pg_bin("initdb").is_none() {
                Some("PostgreSQL is not installed (Debian: postgresql)".into())
            } else if running_as_root() && which("runuser").is_none() {
                Some("running as root needs runuser to start PostgreSQL as postgres".into())
            } else {
                None
            }
        }
        Sys::Celery => {
            if which("redis-server").is_none() {
                Some("redis-server is not installed".into())
            } else if !python_has("celery, redis, kombu.transport.redis") {
                Some("Python packages celery, redis and packaging are not installed (pip)".into())
            } else if !peers_dir().join("celery_jobs.py").is_file() {
                Some("run from the repository root (bench/peers/ holds the peers)".into())
            } else {
                None
            }
        }
    }
}

pub(super) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A server process, killed on drop (with its data when it lives outside the bench dir).
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) addr: String,
    pub(super) scratch: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.scratch {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub(super) async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut ok: impl FnMut() -> F,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        if Instant::now() > deadline {
            bail!("{what} did not become ready within {secs} s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

pub(super) async fn start(sys: Sys, dir: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    // PostgreSQL runs as its own user, who may not reach the working directory: its data goes
    // under the system temp directory.
    let data = if sys == Sys::Postgres {
        std::env::temp_dir().join(format!("switchyard-bench-pg-{}-{port}", std::process::id()))
    } else {
        dir.join(format!("{}-{}", sys.name(), port))
    };
    std::fs::create_dir_all(&data)?;
    let child = match sys {
        Sys::Switchyard => Command::new(crate::process::switchyard_binary()?)
            .args(["serve", "--local-workers", "0", "--listen", &addr])
            .args(["--peer-listen", &format!("127.0.0.1:{}", free_port()?)])
            .arg("--data-dir")
            .arg(&data)
            .env("SWITCHYARD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
        Sys::Redis | Sys::RedisNoFsync | Sys::Celery => {
            let aof: &[&str] = if sys == Sys::RedisNoFsync {
                &["--appendonly", "no"]
            } else {
                &["--appendonly", "yes", "--appendfsync", "always"]
            };
            Command::new(which("redis-server").context("redis-server")?)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(aof)
                .args(["--save", "", "--protected-mode", "no"])
                .arg("--dir")
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?
        }
        Sys::Postgres => {
            let as_root = running_as_root();
            // PostgreSQL refuses to run as root: run it as the `postgres` user.
            let runner = |bin: PathBuf| {
                if as_root {
                    let mut c = Command::new("runuser");
                    c.args(["-u", "postgres", "--"]).arg(bin);
                    c
                } else {
                    Command::new(bin)
                }
            };
            if as_root {
                let ok = Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(&data)
                    .status()?;
                if !ok.success() {
                    bail!("cannot give {} to the postgres user", data.display());
                }
            }
            let init = runner(pg_bin("initdb").context("initdb")?)
                .args(["-U", "postgres", "-A", "trust", "-D"])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !init.success() {
                bail!("initdb failed");
            }
            runner(pg_bin("postgres").context("postgres")?)
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&data)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
                .args(["-c", "synchronous_commit=on", "-c", "max_connections=100"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?
        }
    };
    let server = Server {
        child,
        addr,
        scratch: (sys == Sys::Postgres).then_some(data),
    };
    let addr = server.addr.clone();
    match sys {
        Sys::Switchyard => {
            let c = Client::new(format!("http://{addr}"));
            wait_until("switchyard", 30, || {
                let c = c.clone();
                async move { c.status().await.is_ok_and(|s| s.role == "leader") }
            })
            .await?
        }
        Sys::Redis | Sys::RedisNoFsync | Sys::Celery => {
            wait_until("redis", 30, || {
                let addr = addr.clone();
                async move {
                    match Redis::connect(&addr).await {
                        Ok(mut r) => r.cmd(&[b"PING"]).await.is_ok(),
                        Err(_) => false,
                    }
                }
            })
            .await?
        }
        Sys::Postgres => {
            wait_until("postgres", 60, || {
                let addr = addr.clone();
                async move {
                    match Postgres::connect(&addr, "postgres", "postgres").await {
                        Ok(mut p) => p.query("SELECT 1").await.is_ok(),
                        Err(_) => false,
                    }
                }
            })
            .await?;
            let mut pg = Postgres::connect(&addr, "postgres", "postgres").await?;
            pg.query(
                "CREATE TABLE jobs (id bigint PRIMARY KEY, enq_us bigint NOT NULL, \
                 status smallint NOT NULL DEFAULT 0, leased_until timestamptz, \
                 attempts int NOT NULL DEFAULT 0); \
                 CREATE INDEX jobs_queued ON jobs (id) WHERE status = 0; \
                 CREATE INDEX jobs_leased ON jobs (leased_until) WHERE status = 1;",
            )
            .await?;
        }
    }
    Ok(server)
}
