//! The worker processes (`switchyard-bench jobs-worker`): one job at a time, lease then
//! acknowledge; and the bench's handle on the eight of them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::bail;
use clap::Args;
use switchyard_client::Client;

use crate::wire::{Postgres, Redis};

use super::*;

/// One worker process of the benchmark (started by `switchyard-bench jobs`).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub(super) system: String,
    #[arg(long)]
    pub(super) addr: String,
    #[arg(long)]
    pub(super) id: String,
    /// Executions are appended here, one `ID LATENCY_US` line each.
    #[arg(long)]
    pub(super) out: PathBuf,
    #[arg(long)]
    pub(super) lease_ttl: u64,
    /// Keep waiting for jobs when the queue is empty (the driver stops it).
    #[arg(long)]
    pub(super) stay: bool,
}

pub(super) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub async fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let sys = Sys::parse(&a.system)?;
    let mut q = match sys {
        Sys::Switchyard => Queue::Switchyard(Client::new(format!("http://{}", a.addr)), a.id, None),
        Sys::Redis | Sys::RedisNoFsync => Queue::Redis {
            r: Redis::connect(&a.addr).await?,
            ttl: a.lease_ttl,
            suspects: BTreeMap::new(),
        },
        Sys::Postgres => Queue::Postgres(
            Postgres::connect(&a.addr, "postgres", "postgres").await?,
            a.lease_ttl,
        ),
        Sys::Celery => bail!("celery runs its own worker"),
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)?;
    loop {
        match q.lease().await? {
            Leased::Job {
                id,
                enq_us,
                handle,
                token,
            } => {
                // Recorded before the acknowledgement: a worker killed in between ran it.
                writeln!(out, "{id} {}", now_us() - enq_us)?;
                q.complete(&handle, token).await?;
            }
            Leased::Empty { drained: true } if !a.stay => return Ok(()),
            Leased::Empty { .. } => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The driver.

pub(super) struct Workers {
    pub(super) sys: Sys,
    pub(super) addr: String,
    pub(super) dir: PathBuf,
    pub(super) ttl: u64,
    pub(super) stay: bool,
    pub(super) children: Vec<Child>,
    pub(super) started: usize,
}

impl Workers {
    pub(super) fn spawn_one(&mut self) -> anyhow::Result<Child> {
        let id = format!("bw{}", self.started);
        self.started += 1;
        Ok(Command::new(std::env::current_exe()?)
            .args(["jobs-worker", "--system", self.sys.name()])
            .args(["--addr", &self.addr, "--id", &id])
            .args(["--lease-ttl", &self.ttl.to_string()])
            .arg("--out")
            .arg(self.dir.join(format!("{id}.out")))
            .args(if self.stay { &["--stay"][..] } else { &[][..] })
            .stdout(Stdio::null())
            .spawn()?)
    }

    pub(super) fn start(
        sys: Sys,
        addr: &str,
        dir: &Path,
        n: usize,
        ttl: u64,
        stay: bool,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut w = Workers {
            sys,
            addr: addr.into(),
            dir: dir.into(),
            ttl,
            stay,
            children: Vec::new(),
            started: 0,
        };
        for _ in 0..n {
            let c = w.spawn_one()?;
            w.children.push(c);
        }
        Ok(w)
    }

    /// kill -9 a worker that still runs (the `turn`-th, or the next live one after it) and
    /// start a replacement; false when none runs any more (the queue is drained).
    pub(super) fn kill_and_replace(&mut self, turn: usize) -> anyhow::Result<bool> {
        let n = self.children.len();
        for k in 0..n {
            let i = (turn + k) % n;
            if self.children[i].try_wait()?.is_none() {
                let _ = self.children[i].kill();
                let _ = self.children[i].wait();
                self.children[i] = self.spawn_one()?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn all_exited(&mut self) -> anyhow::Result<bool> {
        for c in &mut self.children {
            match c.try_wait()? {
                None => return Ok(false),
                Some(s) if !s.success() => bail!("a {} worker failed: {s}", self.sys.name()),
                Some(_) => {}
            }
        }
        Ok(true)
    }

    /// Every execution recorded: (job id, enqueue-to-start µs).
    pub(super) fn executions(&self) -> anyhow::Result<Vec<(u64, i64)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let text = std::fs::read_to_string(e?.path())?;
            for line in text.lines() {
                // A line cut by kill -9 mid-write is not a complete record.
                let mut f = line.split(' ');
                if let (Some(Ok(id)), Some(Ok(lat))) = (
                    f.next().map(str::parse::<u64>),
                    f.next().map(str::parse::<i64>),
                ) {
                    out.push((id, lat));
                }
            }
        }
        Ok(out)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
