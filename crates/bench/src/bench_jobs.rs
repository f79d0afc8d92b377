//! `switchyard-bench jobs` (benchmark B3): a work queue drained by 8 worker processes, side by
//! side with the Kubernetes work-queue tutorial's Redis lease protocol (AOF always, and AOF off
//! labelled as such), a PostgreSQL `FOR UPDATE SKIP LOCKED` queue, and Celery.
//!
//! Every side is durable except the labelled Redis run: switchyard fsyncs each command, Redis
//! runs `appendfsync always`, PostgreSQL `synchronous_commit = on`, Celery's broker is that
//! Redis. The workers are separate processes (`switchyard-bench jobs-worker`, hidden) that
//! speak each system's lease protocol one job at a time (lease, then acknowledge) and run
//! nothing: the jobs are no-ops. Celery runs its own worker (`-c 8`, prefork, late acks).
//!
//! Phases, each on a fresh server: **throughput** (N jobs queued first, then 8 workers drain
//! them until the queue is provably empty: jobs/s), **dispatch latency** (workers waiting, jobs
//! queued one at a time at a fixed rate: enqueue-to-start p50/p99), and **chaos** (as
//! throughput, with `kill -9` of one worker every few seconds and a replacement started:
//! lost jobs, must be 0, and duplicate executions, allowed only after a lease expired).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use switchyard_client::Client;
use switchyard_types::{FinishJob, JobEnding, JobSpec, LeaseRequest};

use crate::bench::{free_port, median, tempdir_here, which};
use crate::bench_wire::{Postgres, Redis};

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Systems: switchyard, redis, redis-nofsync, postgres, celery.
    #[arg(
        long,
        default_value = "switchyard,redis,redis-nofsync,postgres,celery",
        value_delimiter = ','
    )]
    systems: Vec<String>,
    /// Jobs per throughput and chaos run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs per Celery throughput run (it is an order of magnitude slower).
    #[arg(long, default_value_t = 20_000)]
    celery_jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Rounds, the systems interleaved in each; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Dispatch-latency phase: jobs queued one at a time, at this rate per second.
    #[arg(long, default_value_t = 1000)]
    latency_jobs: usize,
    #[arg(long, default_value_t = 200.0)]
    latency_rate: f64,
    /// Chaos phase: kill -9 a worker every this many seconds (0: no chaos phase).
    #[arg(long, default_value_t = 10.0)]
    chaos_every: f64,
    /// Lease TTL in seconds on every system.
    #[arg(long, default_value_t = 5)]
    lease_ttl: u64,
    /// Short run that checks the command works (CI); missing peers are skipped.
    #[arg(long)]
    smoke: bool,
    /// Also write the markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One worker process of the benchmark (started by `switchyard-bench jobs`).
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[arg(long)]
    system: String,
    #[arg(long)]
    addr: String,
    #[arg(long)]
    id: String,
    /// Executions are appended here, one `ID LATENCY_US` line each.
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    lease_ttl: u64,
    /// Keep waiting for jobs when the queue is empty (the driver stops it).
    #[arg(long)]
    stay: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Sys {
    Switchyard,
    Redis,
    RedisNoFsync,
    Postgres,
    Celery,
}

impl Sys {
    fn name(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard",
            Sys::Redis => "redis",
            Sys::RedisNoFsync => "redis-nofsync",
            Sys::Postgres => "postgres",
            Sys::Celery => "celery",
        }
    }

    fn parse(s: &str) -> anyhow::Result<Self> {
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

    fn label(self) -> &'static str {
        match self {
            Sys::Switchyard => "switchyard (fsync per command)",
            Sys::Redis => "Redis lease queue (AOF always)",
            Sys::RedisNoFsync => "Redis lease queue (AOF off: NOT durable)",
            Sys::Postgres => "PostgreSQL SKIP LOCKED (synchronous_commit on)",
            Sys::Celery => "Celery 8 processes (Redis AOF always, late ack)",
        }
    }
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let p = Path::new("/usr/lib/postgresql/15/bin").join(name);
    if p.is_file() { Some(p) } else { which(name) }
}

fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn peers_dir() -> PathBuf {
    std::env::current_dir()
        .unwrap_or_default()
        .join("bench/peers")
}

/// Why a system cannot run here, if it cannot.
fn missing(sys: Sys) -> Option<String> {
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

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A server process, killed on drop (with its data when it lives outside the bench dir).
struct Server {
    child: Child,
    addr: String,
    scratch: Option<PathBuf>,
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

async fn wait_until<F: std::future::Future<Output = bool>>(
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

async fn start(sys: Sys, dir: &Path) -> anyhow::Result<Server> {
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
        Sys::Switchyard => Command::new(crate::bench::switchyard_binary()?)
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

fn sy_spec(id: usize, ttl: u64) -> JobSpec {
    JobSpec {
        command: vec!["noop".into(), id.to_string(), now_us().to_string()],
        queue: "bench".into(),
        timeout: None,
        max_attempts: 100,
        lease_ttl: ttl,
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
        priority: 0,
        cwd: None,
    }
}

/// Queue jobs `ids` in bulk (1000 per request or statement).
async fn enqueue_bulk(
    sys: Sys,
    addr: &str,
    ids: std::ops::Range<usize>,
    ttl: u64,
) -> anyhow::Result<()> {
    let chunks: Vec<Vec<usize>> = ids
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[usize]>::to_vec)
        .collect();
    match sys {
        Sys::Switchyard => {
            let c = Client::new(format!("http://{addr}"));
            for chunk in chunks {
                let specs = chunk.iter().map(|i| sy_spec(*i, ttl)).collect();
                c.enqueue_batch(specs, None).await?;
            }
        }
        Sys::Redis | Sys::RedisNoFsync => {
            let mut r = Redis::connect(addr).await?;
            for chunk in chunks {
                let items: Vec<String> =
                    chunk.iter().map(|i| format!("{i}:{}", now_us())).collect();
                let mut args: Vec<&[u8]> = vec![b"LPUSH", b"bench"];
                args.extend(items.iter().map(|s| s.as_bytes()));
                r.cmd(&args).await?;
            }
        }
        Sys::Postgres => {
            let mut pg = Postgres::connect(addr, "postgres", "postgres").await?;
            for chunk in chunks {
                let values: Vec<String> = chunk
                    .iter()
                    .map(|i| format!("({i},{})", now_us()))
                    .collect();
                pg.query(&format!(
                    "INSERT INTO jobs (id, enq_us) VALUES {}",
                    values.join(",")
                ))
                .await?;
            }
        }
        Sys::Celery => {
            let st = Command::new("python3")
                .arg(peers_dir().join("celery_jobs.py"))
                .args([
                    "enqueue",
                    &chunks.iter().map(Vec::len).sum::<usize>().to_string(),
                ])
                .env("BENCH_BROKER", format!("redis://{addr}/0"))
                .current_dir(peers_dir())
                .status()?;
            if !st.success() {
                bail!("celery enqueue failed");
            }
        }
    }
    Ok(())
}

/// Queue one job (the latency phase).
enum OneAtATime {
    Switchyard(Client),
    Redis(Redis),
    Postgres(Postgres),
}

impl OneAtATime {
    async fn connect(sys: Sys, addr: &str) -> anyhow::Result<Self> {
        Ok(match sys {
            Sys::Switchyard => OneAtATime::Switchyard(Client::new(format!("http://{addr}"))),
            Sys::Redis | Sys::RedisNoFsync => OneAtATime::Redis(Redis::connect(addr).await?),
            Sys::Postgres => {
                OneAtATime::Postgres(Postgres::connect(addr, "postgres", "postgres").await?)
            }
            Sys::Celery => bail!("celery has no latency phase here"),
        })
    }

    async fn enqueue(&mut self, id: usize, ttl: u64) -> anyhow::Result<()> {
        match self {
            OneAtATime::Switchyard(c) => {
                c.enqueue(&sy_spec(id, ttl), None).await?;
            }
            OneAtATime::Redis(r) => {
                let item = format!("{id}:{}", now_us());
                r.cmd(&[b"LPUSH", b"bench", item.as_bytes()]).await?;
            }
            OneAtATime::Postgres(pg) => {
                pg.query(&format!(
                    "INSERT INTO jobs (id, enq_us) VALUES ({id},{})",
                    now_us()
                ))
                .await?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The worker process.

enum Leased {
    Job {
        id: u64,
        enq_us: i64,
        handle: String,
        token: u64,
    },
    Empty {
        drained: bool,
    },
}

enum Queue {
    /// The client, the worker id, and the job to finish with the next lease.
    Switchyard(Client, String, Option<(String, u64)>),
    Redis {
        r: Redis,
        ttl: u64,
        /// Items seen in the processing list without a lease key, and since when.
        suspects: BTreeMap<String, Instant>,
    },
    Postgres(Postgres, u64),
}

fn parse_item(item: &str) -> anyhow::Result<(u64, i64)> {
    let (id, enq) = item
        .split_once(':')
        .context("a queue item is ID:ENQUEUED_US")?;
    Ok((id.parse()?, enq.parse()?))
}

impl Queue {
    async fn lease(&mut self) -> anyhow::Result<Leased> {
        match self {
            Queue::Switchyard(c, worker, done) => {
                // "Done with that one, give me the next" in one request and one log entry.
                let finish = match done.take() {
                    Some((handle, token)) => Some(FinishJob {
                        id: handle.parse()?,
                        token,
                        ending: JobEnding::Exited,
                        exit_code: Some(0),
                        error: None,
                    }),
                    None => None,
                };
                let mut req = LeaseRequest {
                    worker: worker.clone(),
                    queue: "bench".into(),
                    labels: BTreeMap::new(),
                    max: 1,
                    wait: 1.0,
                    finish,
                    until_drained: false,
                };
                let l = match c.lease(&req).await {
                    // The finish came after the lease expired (a slow machine): the job was
                    // queued again and runs once more; lease without it, as a real worker does.
                    Err(switchyard_client::Error::Api { status, .. })
                        if status.as_u16() == 409 && req.finish.is_some() =>
                    {
                        req.finish = None;
                        c.lease(&req).await?
                    }
                    r => r?,
                };
                Ok(match l.jobs.into_iter().next() {
                    Some(lj) => Leased::Job {
                        id: lj.job.spec.command[1].parse()?,
                        enq_us: lj.job.spec.command[2].parse()?,
                        handle: lj.job.id.to_string(),
                        token: lj.token,
                    },
                    None => Leased::Empty { drained: l.drained },
                })
            }
            Queue::Redis { r, ttl, suspects } => {
                // rediswq.lease(): move an item to the processing list, then set its lease key.
                let item = r
                    .cmd(&[b"BLMOVE", b"bench", b"processing", b"RIGHT", b"LEFT", b"1"])
                    .await?
                    .bulk()?;
                if let Some(item) = item {
                    let key = [b"lease:".as_slice(), &item].concat();
                    r.cmd(&[b"SETEX", &key, ttl.to_string().as_bytes(), b"1"])
                        .await?;
                    let item = String::from_utf8(item)?;
                    let (id, enq_us) = parse_item(&item)?;
                    return Ok(Leased::Job {
                        id,
                        enq_us,
                        handle: item,
                        token: 0,
                    });
                }
                let lens = r
                    .pipeline(&[
                        vec![b"LLEN".as_slice(), b"bench"],
                        vec![b"LLEN".as_slice(), b"processing"],
                    ])
                    .await?;
                if lens[0].int()? == 0 && lens[1].int()? == 0 {
                    return Ok(Leased::Empty { drained: true });
                }
                // Requeue items whose lease key expired (a dead worker's), once seen so for a
                // second (an item just moved may not have its key yet).
                let Some(items) = (match r.cmd(&[b"LRANGE", b"processing", b"0", b"-1"]).await? {
                    crate::bench_wire::Resp::Array(a) => a,
                    _ => None,
                }) else {
                    return Ok(Leased::Empty { drained: false });
                };
                for it in items {
                    let Some(item) = it.bulk()? else { continue };
                    let key = [b"lease:".as_slice(), &item].concat();
                    if r.cmd(&[b"EXISTS", &key]).await?.int()? == 1 {
                        continue;
                    }
                    let name = String::from_utf8(item.clone())?;
                    let since = *suspects.entry(name.clone()).or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(1) {
                        suspects.remove(&name);
                        if r.cmd(&[b"LREM", b"processing", b"1", &item]).await?.int()? == 1 {
                            r.cmd(&[b"RPUSH", b"bench", &item]).await?;
                        }
                    }
                }
                Ok(Leased::Empty { drained: false })
            }
            Queue::Postgres(pg, ttl) => {
                let set = format!(
                    "UPDATE jobs SET status = 1, leased_until = clock_timestamp() + \
                     interval '{ttl} seconds', attempts = attempts + 1 WHERE id = "
                );
                for pick in [
                    "(SELECT id FROM jobs WHERE status = 0 ORDER BY id LIMIT 1 \
                     FOR UPDATE SKIP LOCKED)",
                    "(SELECT id FROM jobs WHERE status = 1 AND leased_until < clock_timestamp() \
                     ORDER BY leased_until LIMIT 1 FOR UPDATE SKIP LOCKED)",
                ] {
                    let rows = pg
                        .query(&format!("{set}{pick} RETURNING id, enq_us"))
                        .await?;
                    if let Some(row) = rows.first() {
                        let id: u64 = row[0].as_deref().context("id")?.parse()?;
                        return Ok(Leased::Job {
                            id,
                            enq_us: row[1].as_deref().context("enq_us")?.parse()?,
                            handle: id.to_string(),
                            token: 0,
                        });
                    }
                }
                let open = pg
                    .query("SELECT count(*) FROM jobs WHERE status <> 2")
                    .await?;
                if open[0][0].as_deref() == Some("0") {
                    return Ok(Leased::Empty { drained: true });
                }
                // No notification channel here: poll.
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(Leased::Empty { drained: false })
            }
        }
    }

    async fn complete(&mut self, handle: &str, token: u64) -> anyhow::Result<()> {
        match self {
            Queue::Switchyard(_, _, done) => *done = Some((handle.to_string(), token)),
            Queue::Redis { r, .. } => {
                // rediswq.complete(): drop it from the processing list and its lease key.
                let key = format!("lease:{handle}");
                r.pipeline(&[
                    vec![b"LREM".as_slice(), b"processing", b"0", handle.as_bytes()],
                    vec![b"DEL".as_slice(), key.as_bytes()],
                ])
                .await?;
            }
            Queue::Postgres(pg, _) => {
                pg.query(&format!("UPDATE jobs SET status = 2 WHERE id = {handle}"))
                    .await?;
            }
        }
        Ok(())
    }
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

struct Workers {
    sys: Sys,
    addr: String,
    dir: PathBuf,
    ttl: u64,
    stay: bool,
    children: Vec<Child>,
    started: usize,
}

impl Workers {
    fn spawn_one(&mut self) -> anyhow::Result<Child> {
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

    fn start(
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
    fn kill_and_replace(&mut self, turn: usize) -> anyhow::Result<bool> {
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

    fn all_exited(&mut self) -> anyhow::Result<bool> {
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
    fn executions(&self) -> anyhow::Result<Vec<(u64, i64)>> {
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

#[derive(Debug, Clone, Default)]
struct Outcome {
    jobs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: usize,
    duplicates: usize,
    kills: usize,
}

fn pct(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn summarise(n: usize, elapsed: Duration, execs: &[(u64, i64)], kills: usize) -> Outcome {
    let mut seen = std::collections::HashSet::new();
    let mut lats: Vec<i64> = Vec::with_capacity(execs.len());
    for (id, lat) in execs {
        seen.insert(*id);
        lats.push(*lat);
    }
    lats.sort_unstable();
    Outcome {
        jobs_per_s: n as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(&lats, 0.5),
        p99_ms: pct(&lats, 0.99),
        lost: (0..n as u64).filter(|i| !seen.contains(i)).count(),
        duplicates: execs.len() - seen.len(),
        kills,
    }
}

/// Throughput (and chaos, when `chaos_every` is set): queue `n`, then drain with the workers.
async fn drain(
    sys: Sys,
    a: &JobsArgs,
    dir: &Path,
    n: usize,
    chaos_every: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let server = start(sys, dir).await?;
    enqueue_bulk(sys, &server.addr, 0..n, a.lease_ttl).await?;
    if sys == Sys::Celery {
        return drain_celery(&server.addr, n).await;
    }
    let out_dir = dir.join(format!("out-{}-{}", sys.name(), free_port()?));
    let t0 = Instant::now();
    let mut w = Workers::start(sys, &server.addr, &out_dir, a.workers, a.lease_ttl, false)?;
    let mut kills = 0;
    let mut next_kill = chaos_every.map(|e| t0 + e);
    let deadline = t0 + Duration::from_secs(1800);
    while !w.all_exited()? {
        if let Some(at) = next_kill
            && Instant::now() >= at
        {
            // Once every job has run, no more kills: the last workers only need to see the
            // queue drained (a replacement started now would keep the run alive forever).
            let ran: std::collections::HashSet<u64> =
                w.executions()?.into_iter().map(|(id, _)| id).collect();
            if ran.len() >= n {
                next_kill = None;
            } else {
                if w.kill_and_replace(kills)? {
                    kills += 1;
                }
                next_kill = chaos_every.map(|e| at + e);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{}: the workers did not drain the queue in 30 min",
                sys.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t0.elapsed();
    Ok(summarise(n, elapsed, &w.executions()?, kills))
}

async fn drain_celery(addr: &str, n: usize) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    let mut worker = Command::new("celery")
        .args([
            "-A",
            "celery_jobs",
            "worker",
            "-c",
            "8",
            "--pool",
            "prefork",
        ])
        .args(["--loglevel", "WARNING", "-Q", "bench", "--without-gossip"])
        .args(["--without-mingle", "--without-heartbeat"])
        .env("BENCH_BROKER", format!("redis://{addr}/0"))
        .current_dir(peers_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the celery worker")?;
    let mut r = Redis::connect(addr).await?;
    let deadline = t0 + Duration::from_secs(1800);
    loop {
        if r.cmd(&[b"LLEN", b"done"]).await?.int()? as usize >= n {
            break;
        }
        if let Some(s) = worker.try_wait()? {
            bail!("the celery worker exited: {s}");
        }
        if Instant::now() > deadline {
            bail!("celery did not drain the queue in 30 min");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = t0.elapsed();
    let _ = worker.kill();
    let _ = worker.wait();
    let mut execs = Vec::new();
    if let crate::bench_wire::Resp::Array(Some(items)) =
        r.cmd(&[b"LRANGE", b"done", b"0", b"-1"]).await?
    {
        for it in items {
            let s = String::from_utf8(it.bulk()?.unwrap_or_default())?;
            if let Some((id, lat)) = s.split_once(' ') {
                execs.push((id.parse()?, lat.parse()?));
            }
        }
    }
    Ok(summarise(n, elapsed, &execs, 0))
}

/// Dispatch latency: workers waiting, jobs queued one at a time at `latency_rate`.
async fn latency(sys: Sys, a: &JobsArgs, dir: &Path) -> anyhow::Result<Outcome> {
    let server = start(sys, dir).await?;
    let out_dir = dir.join(format!("lat-{}-{}", sys.name(), free_port()?));
    let w = Workers::start(sys, &server.addr, &out_dir, a.workers, a.lease_ttl, true)?;
    let mut q = OneAtATime::connect(sys, &server.addr).await?;
    // Let the workers connect and park before the first job.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / a.latency_rate);
    for i in 0..a.latency_jobs {
        tokio::time::sleep_until((t0 + gap * i as u32).into()).await;
        q.enqueue(i, a.lease_ttl).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let execs = w.executions()?;
        if execs.len() >= a.latency_jobs {
            return Ok(summarise(a.latency_jobs, t0.elapsed(), &execs, 0));
        }
        if Instant::now() > deadline {
            bail!("{}: latency jobs not all run in 120 s", sys.name());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(mut a: JobsArgs) -> anyhow::Result<()> {
    if a.smoke {
        a.jobs = 600;
        a.celery_jobs = 300;
        a.rounds = 1;
        a.latency_jobs = 100;
        if a.chaos_every > 0.0 {
            a.chaos_every = 0.5;
        }
        a.lease_ttl = a.lease_ttl.min(5);
    }
    if a.workers == 0 || a.jobs == 0 || a.rounds == 0 || a.latency_rate <= 0.0 {
        bail!("--workers, --jobs, --rounds and --latency-rate must be positive");
    }
    let mut systems = Vec::new();
    for s in &a.systems {
        let sys = Sys::parse(s)?;
        match missing(sys) {
            Some(why) => eprintln!("skipping {}: {why}", sys.name()),
            None => systems.push(sys),
        }
    }
    if !systems.contains(&Sys::Switchyard) {
        bail!("--systems must include switchyard (the ratios are against it)");
    }
    let dir = tempdir_here()?;
    let mut results: BTreeMap<(&str, Sys), Vec<Outcome>> = BTreeMap::new();
    let mut broken = std::collections::BTreeSet::new();
    for round in 0..a.rounds {
        for &sys in &systems {
            if broken.contains(&sys) {
                continue;
            }
            let n = if sys == Sys::Celery {
                a.celery_jobs
            } else {
                a.jobs
            };
            let mut phases: Vec<&str> = vec!["throughput"];
            if sys != Sys::Celery {
                phases.push("latency");
                if a.chaos_every > 0.0 {
                    phases.push("chaos");
                }
            }
            for phase in phases {
                let o = match phase {
                    "throughput" => drain(sys, &a, &dir, n, None).await,
                    "latency" => latency(sys, &a, &dir).await,
                    _ => {
                        drain(
                            sys,
                            &a,
                            &dir,
                            n,
                            Some(Duration::from_secs_f64(a.chaos_every)),
                        )
                        .await
                    }
                }
                .with_context(|| format!("{} {phase}", sys.name()));
                let o = match o {
                    Ok(o) => o,
                    // A peer that breaks is reported and left out; switchyard breaking is fatal.
                    Err(e) if sys != Sys::Switchyard => {
                        eprintln!("round {round} {}: {e:#}; left out from here on", sys.name());
                        broken.insert(sys);
                        break;
                    }
                    Err(e) => return Err(e),
                };
                eprintln!(
                    "round {round} {:<14} {phase:<10} {:>9.0} jobs/s  p50 {:>8.2} ms  p99 {:>8.2} ms  \
                     lost {}  duplicates {}  kills {}",
                    sys.name(),
                    o.jobs_per_s,
                    o.p50_ms,
                    o.p99_ms,
                    o.lost,
                    o.duplicates,
                    o.kills
                );
                if o.lost > 0 && sys != Sys::RedisNoFsync {
                    eprintln!("  ^ {} LOST jobs", o.lost);
                }
                results.entry((phase, sys)).or_default().push(o);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let report = report(&a, &results);
    println!("{report}");
    if let Some(p) = &a.out {
        std::fs::write(p, &report)?;
    }
    let lost_sy: usize = results
        .iter()
        .filter(|((_, s), _)| *s == Sys::Switchyard)
        .flat_map(|(_, v)| v.iter().map(|o| o.lost))
        .sum();
    if lost_sy > 0 {
        bail!("switchyard lost {lost_sy} jobs");
    }
    Ok(())
}

fn report(a: &JobsArgs, results: &BTreeMap<(&str, Sys), Vec<Outcome>>) -> String {
    let med = |phase: &str, sys: Sys, f: fn(&Outcome) -> f64| -> Option<f64> {
        let mut v: Vec<f64> = results.get(&(phase, sys))?.iter().map(f).collect();
        Some(median(&mut v))
    };
    let mut s = format!(
        "B3 work queue: {} no-op jobs (Celery {}), {} worker processes, lease TTL {} s, {} \
         round(s) interleaved, medians; latency phase {} jobs at {}/s; chaos: kill -9 a worker \
         every {} s.\n\n",
        a.jobs,
        a.celery_jobs,
        a.workers,
        a.lease_ttl,
        a.rounds,
        a.latency_jobs,
        a.latency_rate,
        a.chaos_every
    );
    s += "| system | jobs/s | switchyard ÷ it | dispatch p50 ms | p99 ms | chaos jobs/s | chaos lost | chaos duplicates |\n|---|---|---|---|---|---|---|---|\n";
    let sy = med("throughput", Sys::Switchyard, |o| o.jobs_per_s).unwrap_or(f64::NAN);
    for sys in [
        Sys::Switchyard,
        Sys::Redis,
        Sys::RedisNoFsync,
        Sys::Postgres,
        Sys::Celery,
    ] {
        let Some(tp) = med("throughput", sys, |o| o.jobs_per_s) else {
            continue;
        };
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |x| format!("{x:.digits$}"));
        let chaos_sum = |f: fn(&Outcome) -> usize| {
            results.get(&("chaos", sys)).map_or("-".to_string(), |v| {
                v.iter().map(f).sum::<usize>().to_string()
            })
        };
        s += &format!(
            "| {} | {:.0} | {:.2}x | {} | {} | {} | {} | {} |\n",
            sys.label(),
            tp,
            sy / tp,
            opt(med("latency", sys, |o| o.p50_ms), 2),
            opt(med("latency", sys, |o| o.p99_ms), 2),
            opt(med("chaos", sys, |o| o.jobs_per_s), 0),
            chaos_sum(|o| o.lost),
            chaos_sum(|o| o.duplicates),
        );
    }
    s
}
