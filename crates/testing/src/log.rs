//! An in-memory Raft log that models fsync, for the simulation.
//!
//! As the real store (`switchyard_store::LogStore`), writes go in call order through one queue
//! to a writer task that makes them durable in batches (after a virtual fsync delay) and then
//! reports them flushed; reads are served from memory at once. The durable part ([`Disk`])
//! survives a crash of its node; the queue and the memory do not. With the
//! [`Bug::AckBeforeFsync`](crate::Bug) switch, appends are reported flushed before they are
//! written. [`SimSnapshots`] keeps the state machine's snapshot (meta and data) on the same disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};
use tokio::sync::mpsc;

use switchyard_store::TypeConfig;
use switchyard_store::snapshot::{BoxFuture, Meta, SnapshotData, SnapshotStore};

type C = TypeConfig;

/// What a node's disk holds: it survives crashes.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub log: BTreeMap<u64, EntryOf<C>>,
    pub vote: Option<VoteOf<C>>,
    pub committed: Option<LogIdOf<C>>,
    pub last_purged: Option<LogIdOf<C>>,
    /// The state machine's last snapshot: its meta and data.
    pub snapshot: Option<(Meta, SnapshotData)>,
}

pub type SharedDisk = Arc<Mutex<Disk>>;

enum Op {
    Append {
        entries: Vec<EntryOf<C>>,
        done: Option<IOFlushed<C>>,
    },
    Truncate {
        from: u64,
    },
    Purge {
        log_id: LogIdOf<C>,
    },
    Vote {
        vote: VoteOf<C>,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

#[derive(Clone)]
pub struct SimLog {
    mem: Arc<Mutex<Disk>>,
    tx: mpsc::UnboundedSender<Op>,
    ack_before_fsync: bool,
}

impl SimLog {
    /// A log over `disk` whose writer makes writes durable after `fsync`; the writer task stops
    /// when `writer` is aborted (a crash), losing what it had not written.
    pub fn open(
        disk: SharedDisk,
        fsync: Duration,
        ack_before_fsync: bool,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let mem = Arc::new(Mutex::new(disk.lock().unwrap().clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer(disk, rx, fsync));
        (
            Self {
                mem,
                tx,
                ack_before_fsync,
            },
            writer,
        )
    }

    /// The last entry held now (flushed or not).
    pub fn last(&self) -> Option<LogIdOf<C>> {
        self.mem
            .lock()
            .unwrap()
            .log
            .values()
            .next_back()
            .map(|e| e.log_id())
    }

    /// Every entry held now (flushed or not), in index order.
    pub fn entries(&self) -> Vec<EntryOf<C>> {
        self.mem.lock().unwrap().log.values().cloned().collect()
    }

    fn send(&self, op: Op) -> io::Result<()> {
        self.tx
            .send(op)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the node has crashed"))
    }
}

async fn writer(disk: SharedDisk, mut rx: mpsc::UnboundedReceiver<Op>, fsync: Duration) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(op) = rx.try_recv() {
            batch.push(op);
        }
        // The fsync: a crash now loses the whole batch.
        tokio::time::sleep(fsync).await;
        let mut d = disk.lock().unwrap();
        let mut done = Vec::new();
        for op in batch {
            match op {
                Op::Append { entries, done: cb } => {
                    for e in entries {
                        d.log.insert(e.index(), e);
                    }
                    done.extend(cb);
                }
                Op::Truncate { from } => {
                    d.log.split_off(&from);
                }
                Op::Purge { log_id } => {
                    let keep = d.log.split_off(&(log_id.index() + 1));
                    d.log = keep;
                    d.last_purged = Some(log_id);
                }
                Op::Vote { vote, done: cb } => {
                    d.vote = Some(vote);
                    let _ = cb.send(());
                }
            }
        }
        drop(d);
        for cb in done {
            cb.io_completed(Ok(()));
        }
    }
}

impl RaftLogReader<C> for SimLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        Ok(self
            .mem
            .lock()
            .unwrap()
            .log
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.mem.lock().unwrap().vote)
    }
}

impl RaftLogStorage<C> for SimLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let mem = self.mem.lock().unwrap();
        let last = mem.log.values().next_back().map(|e| e.log_id());
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last.or(mem.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.mem.lock().unwrap().vote = Some(*vote);
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Op::Vote { vote: *vote, done })?;
        wait.await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the node has crashed"))
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // As the real store: the committed pointer rides along, it is not a write of its own.
        self.mem.lock().unwrap().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.mem.lock().unwrap().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<EntryOf<C>> = entries.into_iter().collect();
        {
            let mut mem = self.mem.lock().unwrap();
            for e in &entries {
                mem.log.insert(e.index(), e.clone());
            }
        }
        let done = if self.ack_before_fsync {
            callback.io_completed(Ok(()));
            None
        } else {
            Some(callback)
        };
        self.send(Op::Append { entries, done })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.mem.lock().unwrap().log.split_off(&from);
        self.send(Op::Truncate { from })
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        {
            let mut mem = self.mem.lock().unwrap();
            let keep = mem.log.split_off(&(log_id.index() + 1));
            mem.log = keep;
            mem.last_purged = Some(log_id);
        }
        self.send(Op::Purge { log_id })
    }
}

/// The state machine's snapshot store on a node's simulated disk (durable at once).
pub struct SimSnapshots(pub SharedDisk);

impl SnapshotStore for SimSnapshots {
    fn save(&self, meta: &Meta, data: &SnapshotData) -> BoxFuture<'_, io::Result<SnapshotData>> {
        self.0.lock().unwrap().snapshot = Some((meta.clone(), data.clone()));
        let data = data.clone();
        Box::pin(async { Ok(data) })
    }

    fn load(&self) -> io::Result<Option<(Meta, SnapshotData)>> {
        Ok(self.0.lock().unwrap().snapshot.clone())
    }
}
