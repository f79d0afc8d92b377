//! The Raft log in redb, with group commit.
//!
//! Every write (append, truncate, purge, vote, committed pointer) goes, in call order, through
//! one channel to one writer thread. The thread takes everything waiting, writes it in one
//! redb transaction and commits it with `Durability::Immediate` (one fsync), then completes
//! every callback of the batch. So concurrent commands share fsyncs, and a single client waits
//! about one fsync. The committed pointer is not a write of its own: the latest value rides
//! along with the next durable batch (and is flushed on close), so it costs no extra commit; a
//! committed pointer that lags on disk only means a restart re-applies a little less before
//! the leader commits the rest of the durable log again. An in-memory copy of the unpurged log serves reads at once, as openraft
//! requires entries to be readable as soon as `append` returns.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use openraft::alias::{LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, RaftTypeConfig};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::io_err;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// Most operations one commit takes; keeps a commit's latency bounded under heavy load.
const MAX_BATCH: usize = 4096;

/// The Raft log store. Cheap to clone: clones share the same log.
pub struct LogStore<C: RaftTypeConfig> {
    shared: Arc<Shared<C>>,
}

impl<C: RaftTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// The latest committed pointer not yet written, encoded; taken by the writer.
type PendingCommitted = Arc<Mutex<Option<Vec<u8>>>>;

struct Shared<C: RaftTypeConfig> {
    mem: Mutex<Mem<C>>,
    committed: PendingCommitted,
    tx: Mutex<Option<mpsc::Sender<Op<C>>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Mem<C: RaftTypeConfig> {
    log: BTreeMap<u64, C::Entry>,
    last_purged: Option<LogIdOf<C>>,
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
}

enum Op<C: RaftTypeConfig> {
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: IOFlushed<C>,
    },
    Truncate {
        from: u64,
    },
    Purge {
        upto: u64,
        log_id: Vec<u8>,
    },
    Vote {
        vote: Vec<u8>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
}

fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(io_err)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    postcard::from_bytes(b).map_err(io_err)
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    /// Open (or create) the log in `path` and start its writer thread.
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = crate::open_db(path)?;
        let mut mem = Mem {
            log: BTreeMap::new(),
            last_purged: None,
            vote: None,
            committed: None,
        };
        {
            let w = db.begin_write().map_err(io_err)?;
            w.open_table(LOG).map_err(io_err)?;
            w.open_table(META).map_err(io_err)?;
            w.commit().map_err(io_err)?;
            let r = db.begin_read().map_err(io_err)?;
            let log = r.open_table(LOG).map_err(io_err)?;
            for item in log.iter().map_err(io_err)? {
                let (k, v) = item.map_err(io_err)?;
                mem.log.insert(k.value(), decode(v.value())?);
            }
            let meta = r.open_table(META).map_err(io_err)?;
            if let Some(v) = meta.get(KEY_VOTE).map_err(io_err)? {
                mem.vote = Some(decode(v.value())?);
            }
            if let Some(v) = meta.get(KEY_COMMITTED).map_err(io_err)? {
                mem.committed = Some(decode(v.value())?);
            }
            if let Some(v) = meta.get(KEY_PURGED).map_err(io_err)? {
                mem.last_purged = Some(decode(v.value())?);
            }
        }
        let (tx, rx) = mpsc::channel();
        let committed = PendingCommitted::default();
        let pending = committed.clone();
        let writer = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop::<C>(db, rx, pending))?;
        Ok(Self {
            shared: Arc::new(Shared {
                mem: Mutex::new(mem),
                committed,
                tx: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// Stop the writer after everything already queued is written, and close the file.
    /// Later writes fail. Blocks until the file is closed.
    pub fn close(&self) {
        self.shared.tx.lock().unwrap().take();
        if let Some(h) = self.shared.writer.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    fn send(&self, op: Op<C>) -> io::Result<()> {
        let tx = self.shared.tx.lock().unwrap();
        let tx = tx
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "log store is closed"))?;
        tx.send(op)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "log writer has stopped"))
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Mem<C>> {
        self.shared.mem.lock().unwrap()
    }
}

fn writer_loop<C: RaftTypeConfig>(
    db: Database,
    rx: mpsc::Receiver<Op<C>>,
    committed: PendingCommitted,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let start = Instant::now();
        let pending = committed.lock().unwrap().take();
        let result = write_batch(&db, &batch, pending.as_deref());
        metrics::histogram!("switchyard_log_commit_seconds").record(start.elapsed().as_secs_f64());
        metrics::histogram!("switchyard_log_commit_batch_size").record(batch.len() as f64);
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft log write failed");
        }
        for op in batch {
            let r = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            match op {
                Op::Append { done, .. } => done.io_completed(r),
                Op::Vote { done, .. } => {
                    let _ = done.send(r);
                }
                Op::Truncate { .. } | Op::Purge { .. } => {}
            }
        }
    }
    // Closed: write the last committed pointer, if one is pending.
    let last = committed.lock().unwrap().take();
    if let Some(Err(e)) = last.map(|c| write_batch::<C>(&db, &[], Some(&c))) {
        tracing::warn!(error = %e, "could not save the committed pointer on close");
    }
}

fn write_batch<C: RaftTypeConfig>(
    db: &Database,
    batch: &[Op<C>],
    committed: Option<&[u8]>,
) -> io::Result<()> {
    let mut txn = db.begin_write().map_err(io_err)?;
    txn.set_durability(Durability::Immediate).map_err(io_err)?;
    {
        let mut log = txn.open_table(LOG).map_err(io_err)?;
        let mut meta = txn.open_table(META).map_err(io_err)?;
        for op in batch {
            match op {
                Op::Append { entries, .. } => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice()).map_err(io_err)?;
                    }
                }
                Op::Truncate { from } => {
                    log.retain_in(*from.., |_, _| false).map_err(io_err)?;
                }
                Op::Purge { upto, log_id } => {
                    log.retain_in(..=*upto, |_, _| false).map_err(io_err)?;
                    meta.insert(KEY_PURGED, log_id.as_slice()).map_err(io_err)?;
                }
                Op::Vote { vote, .. } => {
                    meta.insert(KEY_VOTE, vote.as_slice()).map_err(io_err)?;
                }
            }
        }
        if let Some(c) = committed {
            meta.insert(KEY_COMMITTED, c).map_err(io_err)?;
        }
    }
    txn.commit().map_err(io_err)
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        Ok(self
            .mem()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.mem().vote.clone())
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned + Clone,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let mem = self.mem();
        let last = mem.log.values().next_back().map(|e| e.log_id());
        Ok(LogState {
            last_purged_log_id: mem.last_purged.clone(),
            last_log_id: last.or_else(|| mem.last_purged.clone()),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.mem().vote = Some(vote.clone());
        self.send(Op::Vote {
            vote: encode(vote)?,
            done,
        })?;
        wait.await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "log writer has stopped"))?
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let Some(log_id) = committed else {
            return Ok(());
        };
        let bytes = encode(&log_id)?;
        self.mem().committed = Some(log_id);
        *self.shared.committed.lock().unwrap() = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.mem().committed.clone())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut mem = self.mem();
            for entry in entries {
                let index = entry.index();
                encoded.push((index, encode(&entry)?));
                mem.log.insert(index, entry);
            }
        }
        self.send(Op::Append {
            entries: encoded,
            done: callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.mem().log.split_off(&from);
        self.send(Op::Truncate { from })
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let upto = log_id.index();
        let bytes = encode(&log_id)?;
        {
            let mut mem = self.mem();
            let keep = mem.log.split_off(&(upto + 1));
            mem.log = keep;
            mem.last_purged = Some(log_id);
        }
        self.send(Op::Purge {
            upto,
            log_id: bytes,
        })
    }
}
