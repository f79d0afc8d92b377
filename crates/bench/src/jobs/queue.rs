//! Each system's queue as the workers and the bench speak to it: enqueue, lease, acknowledge.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use switchyard_client::Client;
use switchyard_types::{FinishJob, JobEnding, JobSpec, LeaseRequest};

use crate::wire::{Postgres, Redis};

use super::*;

pub(super) fn sy_spec(id: usize, ttl: u64) -> JobSpec {
    let command = vec!["noop".into(), id.to_string(), now_us().to_string()];
    JobSpec {
        max_attempts: 100,
        lease_ttl: ttl,
        ..JobSpec::new(command, "bench")
    }
}

/// Queue jobs `ids` in bulk (1000 per request or statement).
pub(super) async fn enqueue_bulk(
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
pub(super) enum OneAtATime {
    Switchyard(Client),
    Redis(Redis),
    Postgres(Postgres),
}

impl OneAtATime {
    pub(super) async fn connect(sys: Sys, addr: &str) -> anyhow::Result<Self> {
        Ok(match sys {
            Sys::Switchyard => OneAtATime::Switchyard(Client::new(format!("http://{addr}"))),
            Sys::Redis | Sys::RedisNoFsync => OneAtATime::Redis(Redis::connect(addr).await?),
            Sys::Postgres => {
                OneAtATime::Postgres(Postgres::connect(addr, "postgres", "postgres").await?)
            }
            Sys::Celery => bail!("celery has no latency phase here"),
        })
    }

    pub(super) async fn enqueue(&mut self, id: usize, ttl: u64) -> anyhow::Result<()> {
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

pub(super) enum Leased {
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

pub(super) enum Queue {
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

pub(super) fn parse_item(item: &str) -> anyhow::Result<(u64, i64)> {
    let (id, enq) = item
        .split_once(':')
        .context("a queue item is ID:ENQUEUED_US")?;
    Ok((id.parse()?, enq.parse()?))
}

impl Queue {
    pub(super) async fn lease(&mut self) -> anyhow::Result<Leased> {
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
                    crate::wire::Resp::Array(a) => a,
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

    pub(super) async fn complete(&mut self, handle: &str, token: u64) -> anyhow::Result<()> {
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
