//! The state machine: the core state in memory, snapshots kept durably by a [`SnapshotStore`]
//! (`state.redb` in a data directory, with fsync).
//!
//! Applying does not write to disk: the log is the durable record. A snapshot (core state +
//! event history) is saved whenever openraft builds or installs one; on restart openraft
//! installs it and re-applies the log entries after it, up to the saved committed index.
//!
//! What a snapshot costs does not fall on the writes:
//! - Building one holds the state's lock only to clone it, which is cheap whatever its size
//!   (the core's collections share their structure, `imbl`); the encoding and the fsynced save
//!   run on a blocking thread ([`SnapshotStore::encode`]) while applies go on.
//! - openraft asks for one every `snapshot_logs` entries; the state machine declines until the
//!   entries since the last snapshot number at least its size over
//!   [`SNAPSHOT_BYTES_PER_ENTRY`], so a large state is snapshotted less often and the
//!   snapshots' work per write stays bounded (about encoding and writing that many bytes).
//! - A restart that installs the stored snapshot does not write it back.
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

/// A snapshot is built once the entries applied since the last one number at least its size
/// divided by this (and at least `snapshot_logs`): each entry then pays for encoding and
/// writing at most this many bytes of snapshot, whatever the size of the state.
pub const SNAPSHOT_BYTES_PER_ENTRY: u64 = 4096;

type Entry = openraft::alias::EntryOf<TypeConfig>;
type Meta = SnapshotMetaOf<TypeConfig>;

/// A boxed future, as the injected parts return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// CPU-bound work of a snapshot (encoding it), run by [`SnapshotStore::encode`].
pub type EncodeWork = Box<dyn FnOnce() -> io::Result<Encoded> + Send>;

/// An encoded snapshot: its data, and the record kept in the store (meta and data).
pub struct Encoded {
    pub data: Vec<u8>,
    pub record: Vec<u8>,
}

/// Where the current snapshot is kept. `save` returns once the record is durable.
pub trait SnapshotStore: Send + Sync + 'static {
    /// Run a snapshot's encoding. Inline by default (the simulation, where a real thread would
    /// break virtual time); a server runs it on a blocking thread so that the async runtime's
    /// workers go on serving.
    fn encode(&self, work: EncodeWork) -> BoxFuture<'_, io::Result<Encoded>> {
        Box::pin(async move { work() })
    }
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
    fn encode(&self, work: EncodeWork) -> BoxFuture<'_, io::Result<Encoded>> {
        Box::pin(async move { tokio::task::spawn_blocking(work).await.map_err(io_err)? })
    }

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
    /// The snapshot in the store, as last saved or loaded: its meta and record size.
    stored: Mutex<Option<(Meta, u64)>>,
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

/// The stored record. `data` is written as one byte string (postcard: its length, then the
/// bytes), which is what a `Vec<u8>` field always encoded to, but copied at once rather than
/// byte by byte.
#[derive(Serialize, Deserialize)]
struct Record {
    meta: Meta,
    #[serde(with = "byte_string")]
    data: Vec<u8>,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    meta: &'a Meta,
    #[serde(with = "byte_string")]
    data: &'a [u8],
}

/// Serde for a byte vector as one byte string (`serialize_bytes`), accepted back as bytes or
/// as a sequence.
mod byte_string {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;
    use std::fmt;

    pub fn serialize<S: Serializer, B: AsRef<[u8]> + ?Sized>(
        bytes: &B,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes.as_ref())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(v)
            }
        }
        d.deserialize_bytes(Bytes)
    }
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
                stored: Mutex::new(None),
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

    /// Save an encoded record as the current snapshot and remember what it holds.
    async fn save(&self, meta: &Meta, record: Vec<u8>, data_len: usize) -> io::Result<()> {
        self.shared.snapshots.save(record).await?;
        *self.shared.stored.lock().unwrap() = Some((meta.clone(), data_len as u64));
        Ok(())
    }

    /// Whether a snapshot is worth building now (see [`SNAPSHOT_BYTES_PER_ENTRY`]): there is
    /// none yet, or enough entries were applied since the stored one for its size.
    fn snapshot_due(&self) -> bool {
        let applied = self.shared.inner.read().unwrap().last_applied;
        let applied = applied.map_or(0, |l| l.index());
        match &*self.shared.stored.lock().unwrap() {
            None => true,
            Some((meta, bytes)) => {
                let since = applied.saturating_sub(meta.last_log_id.map_or(0, |l| l.index()));
                since.saturating_mul(SNAPSHOT_BYTES_PER_ENTRY) >= *bytes
            }
        }
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
        // The lock is held for the clone only: the core's collections share their structure,
        // so this copies a few pointers and the bounded history, whatever the state's size.
        let (meta, core, history) = {
            let inner = self.shared.inner.read().unwrap();
            let meta = Meta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            (meta, inner.core.clone(), inner.history.clone())
        };
        let record_meta = meta.clone();
        let Encoded { data, record } = self
            .shared
            .snapshots
            .encode(Box::new(move || {
                let data = postcard::to_allocvec(&BlobRef {
                    core: &core,
                    history: &history,
                })
                .map_err(io_err)?;
                drop((core, history));
                let record = postcard::to_allocvec(&RecordRef {
                    meta: &record_meta,
                    data: &data,
                })
                .map_err(io_err)?;
                Ok(Encoded { data, record })
            }))
            .await?;
        self.save(&meta, record, data.len()).await?;
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

    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<Self::SnapshotBuilder> {
        (force || self.snapshot_due()).then(|| self.clone())
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
        // On a restart openraft installs the snapshot it just read from the store: it is
        // already there, durably. A snapshot from the leader is saved before it is used.
        let already_stored = self
            .shared
            .stored
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(m, _)| m == meta);
        if !already_stored {
            let record = postcard::to_allocvec(&RecordRef { meta, data: &data }).map_err(io_err)?;
            self.save(meta, record, data.len()).await?;
        }
        drop(data);
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
        drop(v);
        *self.shared.stored.lock().unwrap() = Some((record.meta.clone(), record.data.len() as u64));
        Ok(Some(SnapshotOf::<TypeConfig, _> {
            meta: record.meta,
            snapshot: Cursor::new(record.data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::entry::RaftEntry;
    use switchyard_core::bank::BankCommand;
    use switchyard_core::{Command, Proposal};
    use tokio::sync::Notify;

    /// A snapshot store in memory that counts saves and can hold an encoding until told.
    #[derive(Default)]
    struct Probe {
        record: Mutex<Option<Vec<u8>>>,
        saves: Mutex<u32>,
        hold: Mutex<Option<Arc<Notify>>>,
        encoding: Notify,
    }

    impl SnapshotStore for Probe {
        fn encode(&self, work: EncodeWork) -> BoxFuture<'_, io::Result<Encoded>> {
            Box::pin(async move {
                self.encoding.notify_one();
                let hold = self.hold.lock().unwrap().clone();
                if let Some(hold) = hold {
                    hold.notified().await;
                }
                work()
            })
        }
        fn save(&self, record: Vec<u8>) -> BoxFuture<'_, io::Result<()>> {
            *self.record.lock().unwrap() = Some(record);
            *self.saves.lock().unwrap() += 1;
            Box::pin(async { Ok(()) })
        }
        fn load(&self) -> io::Result<Option<Vec<u8>>> {
            Ok(self.record.lock().unwrap().clone())
        }
    }

    fn open_account(sm: &StateMachine, index: u64, id: &str) {
        let proposal = Proposal::new(1_000, Command::Bank(BankCommand::Open { id: id.into() }));
        let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
        let answer = sm.apply_entry(Entry::new_normal(log_id, proposal));
        assert!(matches!(answer, Some(Ok(_))), "{answer:?}");
    }

    fn machine(store: &Arc<Probe>) -> StateMachine {
        StateMachine::new(store.clone(), None, 1_000)
    }

    #[test]
    fn the_record_encodes_as_a_derived_byte_vector_did() {
        #[derive(Serialize)]
        struct Derived {
            meta: Meta,
            data: Vec<u8>,
        }
        let meta = Meta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(3, 1, 42)),
            last_membership: Default::default(),
        };
        let data: Vec<u8> = (0..=255).chain(0..=255).collect();
        let derived = postcard::to_allocvec(&Derived {
            meta: meta.clone(),
            data: data.clone(),
        })
        .unwrap();
        let now = postcard::to_allocvec(&RecordRef {
            meta: &meta,
            data: &data,
        })
        .unwrap();
        assert_eq!(now, derived);
        let back: Record = postcard::from_bytes(&derived).unwrap();
        assert_eq!((back.meta, back.data), (meta, data));
    }

    #[tokio::test]
    async fn applies_go_on_while_a_snapshot_is_encoded_and_it_holds_the_state_it_was_taken_at() {
        let store = Arc::new(Probe::default());
        let hold = Arc::new(Notify::new());
        *store.hold.lock().unwrap() = Some(hold.clone());
        let sm = machine(&store);
        open_account(&sm, 1, "before");
        let mut builder = sm.clone();
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        store.encoding.notified().await;
        // The build is under way and holds no lock: an apply goes through.
        open_account(&sm, 2, "during");
        assert_eq!(sm.view().revision(), 2);
        hold.notify_one();
        let snapshot = build.await.unwrap().unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index()), Some(1));
        let blob: Blob = postcard::from_bytes(snapshot.snapshot.get_ref()).unwrap();
        let ids: Vec<_> = blob.core.bank.list().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["before"]);
    }

    #[tokio::test]
    async fn a_large_snapshot_waits_for_entries_in_proportion_to_its_size() {
        let store = Arc::new(Probe::default());
        let mut sm = machine(&store);
        assert!(
            sm.try_create_snapshot_builder(false).await.is_some(),
            "the first one is due at once"
        );
        open_account(&sm, 1, "a");
        sm.build_snapshot().await.unwrap();
        // Pretend it was a large one: every entry pays for SNAPSHOT_BYTES_PER_ENTRY bytes.
        let large = 100 * SNAPSHOT_BYTES_PER_ENTRY;
        store.stored_size(&sm, large);
        for i in 2..=100 {
            assert!(
                sm.try_create_snapshot_builder(false).await.is_none(),
                "at {i}"
            );
            open_account(&sm, i, &format!("a{i}"));
        }
        assert!(sm.try_create_snapshot_builder(false).await.is_none());
        open_account(&sm, 101, "a101");
        assert!(sm.try_create_snapshot_builder(false).await.is_some());
        // A forced one (a follower needs it) is never declined.
        store.stored_size(&sm, u64::MAX);
        assert!(sm.try_create_snapshot_builder(true).await.is_some());
    }

    impl Probe {
        fn stored_size(&self, sm: &StateMachine, bytes: u64) {
            sm.shared.stored.lock().unwrap().as_mut().unwrap().1 = bytes;
        }
    }

    #[tokio::test]
    async fn a_restart_installs_the_stored_snapshot_without_writing_it_again() {
        let store = Arc::new(Probe::default());
        let mut sm = machine(&store);
        open_account(&sm, 1, "a");
        sm.build_snapshot().await.unwrap();
        assert_eq!(*store.saves.lock().unwrap(), 1);

        // A new process: openraft reads the current snapshot and installs it.
        let mut restarted = machine(&store);
        let current = restarted.get_current_snapshot().await.unwrap().unwrap();
        restarted
            .install_snapshot(&current.meta, current.snapshot)
            .await
            .unwrap();
        assert_eq!(*store.saves.lock().unwrap(), 1, "not written back");
        assert_eq!(restarted.view().revision(), 1);
        assert_eq!(restarted.view().read(|s| s.bank.list().len()), 1);

        // A different snapshot (one from a leader) is saved before it is used.
        open_account(&sm, 2, "b");
        let newer = sm.build_snapshot().await.unwrap();
        assert_eq!(*store.saves.lock().unwrap(), 2);
        let mut follower = machine(&Arc::new(Probe::default()));
        follower
            .install_snapshot(&newer.meta, newer.snapshot)
            .await
            .unwrap();
        assert_eq!(follower.view().read(|s| s.bank.list().len()), 2);
        assert!(follower.shared.snapshots.load().unwrap().is_some());
    }
}
