//! The state machine: the core state in memory, snapshots kept durably by a [`SnapshotStore`]
//! (`state.redb` in a data directory, with fsync).
//!
//! Applying does not write to disk: the log is the durable record. A snapshot (core state +
//! event history) is saved whenever openraft builds or installs one; on restart openraft
//! installs it and re-applies the log entries after it, up to the saved committed index.
//!
//! What differs between a server and a simulation is injected: where snapshots are kept
//! ([`SnapshotStore`]) and an optional [`ApplyGate`] that may hold an entry before it is
//! applied and sees every apply. The apply itself is this one.

use std::future::Future;
use std::io::{self, Cursor};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use switchyard_core::{Ctx, State};
use tokio::sync::watch;

use crate::history::{History, ReadAfter};
use crate::{Applied, TypeConfig, io_err};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const KEY_CURRENT: &str = "current";

type Entry = openraft::alias::EntryOf<TypeConfig>;
type Meta = SnapshotMetaOf<TypeConfig>;

/// A boxed future, as the injected parts return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the current snapshot is kept. `save` returns once the record is durable.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Replace the current snapshot record (durable when the future resolves).
    fn save(&self, record: Vec<u8>) -> BoxFuture<'_, io::Result<()>>;
    /// The current snapshot record, if any.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Close the store; later saves fail.
    fn close(&self) {}
}

/// Sees every entry the state machine applies, and may hold one before it is applied (the
/// simulation's "before apply" hook). Production runs without one.
pub trait ApplyGate: Send + Sync + 'static {
    /// Applying entry `index` waits for this future.
    fn before(&self, index: u64) -> BoxFuture<'static, ()>;
    /// The entry `log_id` was applied with this answer.
    fn applied(&self, log_id: &LogIdOf<TypeConfig>, answer: &Applied);
}

/// Snapshots in `state.redb`, written with fsync.
struct RedbSnapshots {
    db: Mutex<Option<Arc<Database>>>,
}

impl RedbSnapshots {
    fn db(&self) -> io::Result<Arc<Database>> {
        self.db
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "state store is closed"))
    }
}

impl SnapshotStore for RedbSnapshots {
    fn save(&self, bytes: Vec<u8>) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let db = self.db()?;
            tokio::task::spawn_blocking(move || -> io::Result<()> {
                let mut w = db.begin_write().map_err(io_err)?;
                w.set_durability(Durability::Immediate).map_err(io_err)?;
                w.open_table(SNAPSHOT)
                    .map_err(io_err)?
                    .insert(KEY_CURRENT, bytes.as_slice())
                    .map_err(io_err)?;
                w.commit().map_err(io_err)
            })
            .await
            .map_err(io_err)?
        })
    }

    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        let db = self.db()?;
        let r = db.begin_read().map_err(io_err)?;
        let t = r.open_table(SNAPSHOT).map_err(io_err)?;
        Ok(t.get(KEY_CURRENT)
            .map_err(io_err)?
            .map(|v| v.value().to_vec()))
    }

    fn close(&self) {
        self.db.lock().unwrap().take();
    }
}

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// A read-only handle on the applied state, for the API layer and watchers.
#[derive(Clone)]
pub struct StateView {
    shared: Arc<Shared>,
}

struct Shared {
    inner: RwLock<Inner>,
    /// Last applied log index (the current revision), for waiters.
    applied: watch::Sender<u64>,
    snapshots: Arc<dyn SnapshotStore>,
    gate: Option<Arc<dyn ApplyGate>>,
    history_capacity: usize,
}

struct Inner {
    core: State,
    history: History,
    last_applied: Option<LogIdOf<TypeConfig>>,
    membership: StoredMembershipOf<TypeConfig>,
}

#[derive(Serialize)]
struct BlobRef<'a> {
    core: &'a State,
    history: &'a History,
}

#[derive(Deserialize)]
struct Blob {
    core: State,
    history: History,
}

#[derive(Serialize, Deserialize)]
struct Record {
    meta: Meta,
    data: Vec<u8>,
}

impl StateMachine {
    /// Open (or create) the snapshot file at `path`. The state starts empty; openraft installs
    /// the stored snapshot, if any, when the Raft node starts.
    pub fn open(path: &Path, history_capacity: usize) -> io::Result<Self> {
        let db = crate::open_db(path)?;
        let w = db.begin_write().map_err(io_err)?;
        w.open_table(SNAPSHOT).map_err(io_err)?;
        w.commit().map_err(io_err)?;
        let snapshots = RedbSnapshots {
            db: Mutex::new(Some(Arc::new(db))),
        };
        Ok(Self::new(Arc::new(snapshots), None, history_capacity))
    }

    /// A state machine keeping its snapshots in `snapshots`, with an optional gate on applies.
    pub fn new(
        snapshots: Arc<dyn SnapshotStore>,
        gate: Option<Arc<dyn ApplyGate>>,
        history_capacity: usize,
    ) -> Self {
        let (applied, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                inner: RwLock::new(Inner {
                    core: State::default(),
                    history: History::new(history_capacity),
                    last_applied: None,
                    membership: Default::default(),
                }),
                applied,
                snapshots,
                gate,
                history_capacity,
            }),
        }
    }

    /// A read-only view for the API layer.
    pub fn view(&self) -> StateView {
        StateView {
            shared: self.shared.clone(),
        }
    }

    /// What-if, for tests only: change the applied state outside the log. The change is not
    /// replicated and no event records it, so this replica no longer matches the others.
    pub fn modify_state_outside_the_log(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.shared.inner.write().unwrap().core);
    }

    /// Close the snapshot store. Later snapshot writes fail.
    pub fn close(&self) {
        self.shared.snapshots.close();
    }

    fn apply_entry(&self, entry: Entry) -> Applied {
        let index = entry.log_id.index();
        let mut inner = self.shared.inner.write().unwrap();
        let resp = match entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Normal(proposal) => {
                let (outcome, events) =
                    switchyard_core::apply(&mut inner.core, &proposal, Ctx { index });
                inner.history.push(index, events);
                Some(outcome)
            }
            EntryPayload::Membership(m) => {
                inner.membership = StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), m);
                None
            }
        };
        inner.last_applied = Some(entry.log_id);
        drop(inner);
        self.shared.applied.send_replace(index);
        if let Some(gate) = &self.shared.gate {
            gate.applied(&entry.log_id, &resp);
        }
        resp
    }

    async fn save(&self, record: Record) -> io::Result<()> {
        let bytes = postcard::to_allocvec(&record).map_err(io_err)?;
        self.shared.snapshots.save(bytes).await
    }
}

impl StateView {
    /// Run `f` on the applied state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.inner.read().unwrap().core)
    }

    /// The current revision: the last applied log index.
    pub fn revision(&self) -> u64 {
        *self.shared.applied.borrow()
    }

    /// A receiver that sees every change of the current revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// Oldest revision a watch can resume from.
    pub fn compact_revision(&self) -> u64 {
        self.shared.inner.read().unwrap().history.compact_revision()
    }

    /// Events after `after` with topics starting with `prefix`; see [`History::read_after`].
    pub fn read_events(&self, after: u64, prefix: &str, limit: usize) -> ReadAfter {
        let inner = self.shared.inner.read().unwrap();
        let head = inner.last_applied.as_ref().map_or(0, |l| l.index());
        inner.history.read_after(after, prefix, limit, head)
    }

    /// How many events of any topic come after `revision`.
    pub fn events_after(&self, revision: u64) -> usize {
        self.shared
            .inner
            .read()
            .unwrap()
            .history
            .count_after(revision)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> Result<SnapshotOf<TypeConfig, Self::SnapshotData>, io::Error> {
        let started = std::time::Instant::now();
        let (meta, data) = {
            let inner = self.shared.inner.read().unwrap();
            let meta = Meta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            let data = postcard::to_allocvec(&BlobRef {
                core: &inner.core,
                history: &inner.history,
            })
            .map_err(io_err)?;
            (meta, data)
        };
        self.save(Record {
            meta: meta.clone(),
            data: data.clone(),
        })
        .await?;
        // Serialising the whole state and saving it durably: the cost that grows with it.
        metrics::histogram!("switchyard_snapshot_build_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "snapshot built");
        Ok(SnapshotOf::<TypeConfig, _> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let inner = self.shared.inner.read().unwrap();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            if let Some(gate) = &self.shared.gate {
                gate.before(entry.log_id.index()).await;
            }
            let resp = self.apply_entry(entry);
            if let Some(responder) = responder {
                responder.send(resp);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let blob: Blob = postcard::from_bytes(&data).map_err(io_err)?;
        self.save(Record {
            meta: meta.clone(),
            data,
        })
        .await?;
        let index = meta.last_log_id.map_or(0, |l| l.index());
        {
            let mut inner = self.shared.inner.write().unwrap();
            inner.core = blob.core;
            inner.history = blob.history;
            inner.history.set_capacity(self.shared.history_capacity);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
        }
        self.shared.applied.send_replace(index);
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        let Some(v) = self.shared.snapshots.load()? else {
            return Ok(None);
        };
        let record: Record = postcard::from_bytes(&v).map_err(io_err)?;
        Ok(Some(SnapshotOf::<TypeConfig, _> {
            meta: record.meta,
            snapshot: Cursor::new(record.data),
        }))
    }
}
