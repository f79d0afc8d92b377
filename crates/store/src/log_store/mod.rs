//! The Raft log in its own append-only files, with group commit.
//!
//! - [`segments`]: the files (a directory of preallocated segments of records; crash
//!   recovery; deleting what is purged).
//! - [`record`]: a record of the files (length, checksum, kind, body), written and read back.
//! - [`migrate`]: the log of format 4 and before, a redb file, moved into segments.
//!
//! Every write (append, truncate, purge, vote, committed pointer) goes, in call order, through
//! one channel to one writer thread. The thread takes everything waiting, appends it to the
//! current segment in one write and makes it durable with one `fdatasync`, then completes
//! every callback of the batch. So concurrent commands share fsyncs, and a single client waits
//! about one fsync of a page or two (redb's commit, before, wrote eight scattered pages). The
//! committed pointer is not a write of its own: the latest value rides along with the next
//! durable batch that holds its entry (and is flushed on close), so it costs no extra fsync
//! and is never on disk ahead of the log it names; a committed pointer
//! that lags on disk only means a restart re-applies a little less before the leader commits
//! the rest of the durable log again. An in-memory copy of the unpurged log serves reads at
//! once, as openraft requires entries to be readable as soon as `append` returns.

mod migrate;
mod record;
mod segments;

pub use migrate::{REDB_FILE, migrate_from_redb};

/// The directory of the log's segments, in the data directory.
pub const LOG_DIR: &str = "raft-log";

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
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::io_err;
use record::Record;
use segments::Segments;

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

/// The latest committed pointer not yet written: its index and its encoding. The writer takes
/// it once the log up to that index is written (see [`take_covered`]).
type PendingCommitted = Arc<Mutex<Option<(u64, Vec<u8>)>>>;

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
    /// Open (or create) the log in the directory `dir` and start its writer thread.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let (files, replayed) = Segments::open(dir, segments::SEGMENT_BYTES)?;
        let state = &replayed.state;
        let mem = Mem {
            log: (replayed.entries.iter())
                .map(|(index, bytes)| Ok((*index, decode(bytes)?)))
                .collect::<io::Result<_>>()?,
            last_purged: state.purged.as_ref().map(|(_, b)| decode(b)).transpose()?,
            vote: state.vote.as_deref().map(decode).transpose()?,
            committed: state.committed.as_deref().map(decode).transpose()?,
        };
        // The last index the files hold: an entry, or the purged one (in a snapshot).
        let written = (replayed.entries.keys().next_back().copied())
            .max(state.purged.as_ref().map(|(index, _)| *index))
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel();
        let committed = PendingCommitted::default();
        let pending = committed.clone();
        let writer = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop::<C>(files, written, rx, pending))?;
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
    mut files: Segments,
    mut written: u64,
    rx: mpsc::Receiver<Op<C>>,
    committed: PendingCommitted,
) {
    // After a failed write the files may end in a partial batch: nothing more is written, and
    // every later operation fails (openraft stops on a storage error; a restart recovers).
    let mut failed: Option<(io::ErrorKind, String)> = None;
    let commit_seconds = metrics::histogram!("switchyard_log_commit_seconds");
    let batch_size = metrics::histogram!("switchyard_log_commit_batch_size");
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let start = Instant::now();
        let after = written_after(written, &batch);
        let pending = take_covered(&committed, after);
        let result = match &failed {
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!("an earlier raft log write failed: {msg}"),
            )),
            None => write_batch(&mut files, &batch, pending.as_deref()),
        };
        if result.is_ok() {
            written = after;
        }
        commit_seconds.record(start.elapsed().as_secs_f64());
        batch_size.record(batch.len() as f64);
        if let Err(e) = &result
            && failed.is_none()
        {
            tracing::error!(error = %e, "raft log write failed");
            failed = Some((e.kind(), e.to_string()));
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
    let last = take_covered(&committed, written);
    if failed.is_none()
        && let Some(Err(e)) = last.map(|c| write_batch::<C>(&mut files, &[], Some(&c)))
    {
        tracing::warn!(error = %e, "could not save the committed pointer on close");
    }
}

/// The last index the files hold once `batch` is written after `written`: appends move it to
/// their last entry, a truncation back below its start, a purge up to the purged entry (which
/// a snapshot holds, saved before the purge).
fn written_after<C: RaftTypeConfig>(mut written: u64, batch: &[Op<C>]) -> u64 {
    for op in batch {
        match op {
            Op::Append { entries, .. } => {
                if let Some((index, _)) = entries.last() {
                    written = *index;
                }
            }
            Op::Truncate { from } => written = written.min(from.saturating_sub(1)),
            Op::Purge { upto, .. } => written = written.max(*upto),
            Op::Vote { .. } => {}
        }
    }
    written
}

/// The pending committed pointer, if the files will hold its entry once `written` is:
/// openraft may commit, and save the pointer of, an entry it has only handed to `append` (a
/// follower applies what the cluster committed), and a pointer written ahead of its entry would
/// survive a crash that the entry does not (a restart would then re-apply an entry the log
/// lacks). Otherwise the pointer stays pending for a later batch.
fn take_covered(committed: &PendingCommitted, written: u64) -> Option<Vec<u8>> {
    let mut pending = committed.lock().unwrap();
    match &*pending {
        Some((index, _)) if *index <= written => pending.take().map(|(_, bytes)| bytes),
        _ => None,
    }
}

fn write_batch<C: RaftTypeConfig>(
    files: &mut Segments,
    batch: &[Op<C>],
    committed: Option<&[u8]>,
) -> io::Result<()> {
    let mut records = Vec::with_capacity(batch.len() + 1);
    for op in batch {
        match op {
            Op::Append { entries, .. } => {
                records.extend(entries.iter().map(|(index, bytes)| Record::Entry {
                    index: *index,
                    entry: bytes,
                }));
            }
            Op::Truncate { from } => records.push(Record::Truncate { from: *from }),
            Op::Purge { upto, log_id } => records.push(Record::Purge {
                upto: *upto,
                log_id,
            }),
            Op::Vote { vote, .. } => records.push(Record::Vote(vote)),
        }
    }
    if let Some(c) = committed {
        records.push(Record::Committed(c));
    }
    files.write(&records)
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
        let index = log_id.index();
        self.mem().committed = Some(log_id);
        *self.shared.committed.lock().unwrap() = Some((index, bytes));
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
                let bytes = encode(&entry)?;
                if bytes.len() > record::MAX_ENTRY_BYTES {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "log entry {index} is {} bytes; a log record holds at most {}",
                            bytes.len(),
                            record::MAX_ENTRY_BYTES
                        ),
                    ));
                }
                encoded.push((index, bytes));
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
