//! The state machine: the core state in memory, snapshots kept durably by a [`SnapshotStore`]
//! (the `snapshot` file of a data directory, with fsync; see [`crate::snapshot`]).
//!
//! Applying does not write to disk: the log is the durable record. A snapshot (core state +
//! event history) is saved whenever openraft builds or installs one; on restart openraft
//! installs it and re-applies the log entries after it, up to the saved committed index.
//!
//! What a snapshot costs does not fall on the writes:
//! - Building one holds the state's lock only to clone it, which is cheap whatever its size
//!   (the core's collections share their structure, `imbl`); the encoding and the fsynced save
//!   run on a blocking thread ([`SnapshotStore::blocking`]) while applies go on.
//! - openraft asks for one every `snapshot_logs` entries; the state machine declines until the
//!   entries since the last snapshot number at least its size over
//!   [`SNAPSHOT_BYTES_PER_ENTRY`], so a large state is snapshotted less often and the
//!   snapshots' work per write stays bounded (about encoding and writing that many bytes).
//! - openraft purges the log behind a snapshot as soon as it is built. A follower being sent
//!   the previous one needs the entries after that one next, or it is sent a whole snapshot
//!   again: so a build reports itself done only once no send holds the previous snapshot's
//!   data (openraft holds it while it sends it; the state machine lends it and counts the
//!   loans, [`Loans`]), or after [`SEND_WAIT`] at most.
//! - A restart that installs the stored snapshot does not write it back, and reads its data
//!   once (openraft asks for the current snapshot twice at start; only its meta is read then).
//! - A snapshot is never whole in memory but to be encoded or decoded: it is sent in pieces
//!   read from the file, and received into a file ([`StateView::snapshot_writer`]); decoding
//!   runs on a blocking thread too.
//!
//! What differs between a server and a simulation is injected: where snapshots are kept
//! ([`SnapshotStore`]) and an optional [`ApplyGate`] that may hold an entry before it is
//! applied and sees every apply. The apply itself is this one.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use switchyard_core::{Ctx, State};
use tokio::sync::watch;

use crate::history::{History, ReadAfter};
pub use crate::snapshot::{BoxFuture, Meta, SnapshotStore};
use crate::snapshot::{FileSnapshots, Loans, SnapshotData, SnapshotWriter};
use crate::{Applied, TypeConfig, io_err};

/// A snapshot is built once the entries applied since the last one number at least its size
/// divided by this (and at least `snapshot_logs`): each entry then pays for encoding and
/// writing at most this many bytes of snapshot, whatever the size of the state.
pub const SNAPSHOT_BYTES_PER_ENTRY: u64 = 4096;

/// The longest a built snapshot waits for the send of the previous one to end before openraft
/// hears of it (and purges the log behind it).
pub const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

type Entry = openraft::alias::EntryOf<TypeConfig>;

/// Sees every entry the state machine applies, and may hold one before it is applied (the
/// simulation's "before apply" hook). Production runs without one.
pub trait ApplyGate: Send + Sync + 'static {
    /// Applying entry `index` waits for this future.
    fn before(&self, index: u64) -> BoxFuture<'static, ()>;
    /// The entry `log_id` was applied with this answer.
    fn applied(&self, log_id: &LogIdOf<TypeConfig>, answer: &Applied);
}

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// A handle for the API layer, watchers and the peer listener: reads the applied state, and
/// gives somewhere to receive a snapshot into.
#[derive(Clone)]
pub struct StateView {
    shared: Arc<Shared>,
}

struct Shared {
    inner: RwLock<Inner>,
    /// Last applied log index (the current revision), for waiters.
    applied: watch::Sender<u64>,
    /// When the earliest pending timer falls due, for the scheduler: changed only when that
    /// changes, so a write that moves no timer wakes nobody.
    next_timer: watch::Sender<Option<i64>>,
    snapshots: Arc<dyn SnapshotStore>,
    gate: Option<Arc<dyn ApplyGate>>,
    history_capacity: usize,
    /// The snapshot in the store, as last saved or loaded: its meta and data size.
    stored: Mutex<Option<(Meta, u64)>>,
    /// The current snapshot's data lent to whoever asked for it (openraft, to send it to a
    /// follower) and not yet returned.
    loans: Loans,
    /// Held while a snapshot is saved: a build and an install may overlap, and the older of
    /// two must not replace the newer.
    saving: tokio::sync::Mutex<()>,
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

impl Shared {
    fn set_next_timer(&self, due: Option<i64>) {
        self.next_timer.send_if_modified(|v| {
            let changed = *v != due;
            *v = due;
            changed
        });
    }
}

impl StateMachine {
    /// A state machine keeping its snapshots in the data directory `dir` (the file
    /// [`crate::snapshot::SNAPSHOT_FILE`]). The state starts empty; openraft installs the stored
    /// snapshot, if any, when the Raft node starts.
    pub fn open(dir: &Path, history_capacity: usize) -> io::Result<Self> {
        let snapshots = FileSnapshots::open(dir)?;
        Ok(Self::new(Arc::new(snapshots), None, history_capacity))
    }

    /// A state machine keeping its snapshots in `snapshots`, with an optional gate on applies.
    pub fn new(
        snapshots: Arc<dyn SnapshotStore>,
        gate: Option<Arc<dyn ApplyGate>>,
        history_capacity: usize,
    ) -> Self {
        let (applied, _) = watch::channel(0);
        let (next_timer, _) = watch::channel(None);
        Self {
            shared: Arc::new(Shared {
                inner: RwLock::new(Inner {
                    core: State::default(),
                    history: History::new(history_capacity),
                    last_applied: None,
                    membership: Default::default(),
                }),
                applied,
                next_timer,
                snapshots,
                gate,
                history_capacity,
                stored: Mutex::new(None),
                loans: Loans::default(),
                saving: tokio::sync::Mutex::new(()),
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
        let mut inner = self.shared.inner.write().unwrap();
        f(&mut inner.core);
        self.shared.set_next_timer(inner.core.timers.next_due());
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
        let next_timer = inner.core.timers.next_due();
        drop(inner);
        self.shared.applied.send_replace(index);
        self.shared.set_next_timer(next_timer);
        if let Some(gate) = &self.shared.gate {
            gate.applied(&entry.log_id, &resp);
        }
        resp
    }

    /// Save `data` as the current snapshot and remember what it holds, unless the stored one
    /// is newer; answer the stored data (or `data`, not saved).
    async fn save(&self, meta: &Meta, data: &SnapshotData) -> io::Result<SnapshotData> {
        let _saving = self.shared.saving.lock().await;
        let newer_stored = self
            .shared
            .stored
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|(m, _)| m.last_log_id > meta.last_log_id);
        if newer_stored {
            return Ok(data.clone());
        }
        let stored = self.shared.snapshots.save(meta, data).await?;
        *self.shared.stored.lock().unwrap() = Some((meta.clone(), data.len()));
        Ok(stored)
    }

    /// Run CPU-bound work of a snapshot where the store runs it (see
    /// [`SnapshotStore::blocking`]).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.shared
            .snapshots
            .blocking(Box::new(move || {
                let _ = tx.send(work());
            }))
            .await?;
        rx.try_recv()
            .map_err(|_| io_err("a snapshot's work ended without a result"))
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

    /// A receiver of when the earliest pending timer falls due (none: no timer), which sees a
    /// change only when that time changes.
    pub fn next_timer(&self) -> watch::Receiver<Option<i64>> {
        self.shared.next_timer.subscribe()
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

    /// Somewhere to receive a snapshot from the leader into, piece by piece (a temporary file
    /// beside the stored snapshot, on a server).
    pub fn snapshot_writer(&self) -> io::Result<SnapshotWriter> {
        self.shared.snapshots.writer()
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
    type SnapshotData = SnapshotData;

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
        let data = self
            .blocking(move || {
                postcard::to_allocvec(&BlobRef {
                    core: &core,
                    history: &history,
                })
            })
            .await?
            .map_err(io_err)?;
        // openraft gets the stored copy (a file on a server): the encoded bytes are freed now
        // rather than when openraft lets go of the snapshot.
        let data = self.save(&meta, &SnapshotData::from_vec(data)).await?;
        // Serialising the whole state and saving it durably: the cost that grows with it.
        metrics::histogram!("switchyard_snapshot_build_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(last_log_id = ?meta.last_log_id, bytes = data.len(), "snapshot built");
        // openraft purges the log behind it once it hears of it: not while a follower is being
        // sent the previous one, which needs the entries after that one next.
        if !self.shared.loans.returned(SEND_WAIT).await {
            tracing::warn!(
                waited = ?SEND_WAIT,
                "a snapshot is still being sent; the log behind the new one is purged anyway"
            );
        }
        Ok(SnapshotOf::<TypeConfig, _> {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
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
        let data = snapshot.clone();
        let blob: Blob = self
            .blocking(move || data.with_bytes(|b| postcard::from_bytes(b)))
            .await??
            .map_err(io_err)?;
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
            self.save(meta, &snapshot).await?;
        }
        drop(snapshot);
        let index = meta.last_log_id.map_or(0, |l| l.index());
        {
            let mut inner = self.shared.inner.write().unwrap();
            inner.core = blob.core;
            inner.history = blob.history;
            inner.history.set_capacity(self.shared.history_capacity);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            self.shared.set_next_timer(inner.core.timers.next_due());
        }
        self.shared.applied.send_replace(index);
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Self::SnapshotData>>, io::Error> {
        // Only the meta is read here; the data when it is installed or sent.
        let Some((meta, data)) = self.shared.snapshots.load()? else {
            return Ok(None);
        };
        *self.shared.stored.lock().unwrap() = Some((meta.clone(), data.len()));
        Ok(Some(SnapshotOf::<TypeConfig, _> {
            meta,
            snapshot: data.lent(&self.shared.loans),
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

    use crate::snapshot::BlockingWork;

    /// A snapshot store in memory that counts saves and can hold an encoding until told.
    #[derive(Default)]
    struct Probe {
        record: Mutex<Option<(Meta, SnapshotData)>>,
        saves: Mutex<u32>,
        hold: Mutex<Option<Arc<Notify>>>,
        encoding: Notify,
    }

    impl SnapshotStore for Probe {
        fn blocking(&self, work: BlockingWork) -> BoxFuture<'_, io::Result<()>> {
            Box::pin(async move {
                self.encoding.notify_one();
                let hold = self.hold.lock().unwrap().clone();
                if let Some(hold) = hold {
                    hold.notified().await;
                }
                work();
                Ok(())
            })
        }
        fn save(
            &self,
            meta: &Meta,
            data: &SnapshotData,
        ) -> BoxFuture<'_, io::Result<SnapshotData>> {
            *self.record.lock().unwrap() = Some((meta.clone(), data.clone()));
            *self.saves.lock().unwrap() += 1;
            let data = data.clone();
            Box::pin(async { Ok(data) })
        }
        fn load(&self) -> io::Result<Option<(Meta, SnapshotData)>> {
            Ok(self.record.lock().unwrap().clone())
        }
    }

    fn open_account(sm: &StateMachine, index: u64, id: &str) {
        apply(
            sm,
            index,
            Command::Bank(BankCommand::Open { id: id.into() }),
        );
    }

    fn machine(store: &Arc<Probe>) -> StateMachine {
        StateMachine::new(store.clone(), None, 1_000)
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
        let blob: Blob = snapshot
            .snapshot
            .with_bytes(|b| postcard::from_bytes(b))
            .unwrap()
            .unwrap();
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

    fn apply(sm: &StateMachine, index: u64, command: Command) {
        let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, index);
        let answer = sm.apply_entry(Entry::new_normal(log_id, Proposal::new(1_000, command)));
        assert!(matches!(answer, Some(Ok(_))), "{answer:?}");
    }

    #[test]
    fn the_next_timer_changes_only_when_the_earliest_due_time_does() {
        use switchyard_core::jobs::JobCommand;
        let store = Arc::new(Probe::default());
        let sm = machine(&store);
        let mut next = sm.view().next_timer();
        open_account(&sm, 1, "a");
        assert!(!next.has_changed().unwrap(), "no timer moved");
        let spec = switchyard_types::JobSpec::new(vec!["true".into()], "q");
        let enqueue = |n| {
            Command::Jobs(JobCommand::Enqueue {
                specs: vec![spec.clone(); n],
                retention_ms: 60_000,
            })
        };
        let lease = Command::Jobs(JobCommand::Lease {
            worker: "w".into(),
            queue: "q".into(),
            labels: Default::default(),
            max: 1,
        });
        apply(&sm, 2, enqueue(2));
        assert!(!next.has_changed().unwrap(), "queued jobs have no timer");
        apply(&sm, 3, lease.clone());
        assert!(
            next.has_changed().unwrap(),
            "a lease's expiry is the first timer"
        );
        let due = *next.borrow_and_update();
        assert_eq!(due, Some(1_000 + spec.lease_ttl as i64 * 1000));
        // A second lease at the same time expires no earlier: nobody is woken.
        apply(&sm, 4, lease);
        assert!(!next.has_changed().unwrap());
        assert_eq!(sm.view().read(|s| s.timers.next_due()), due);
    }

    #[tokio::test(start_paused = true)]
    async fn a_build_reports_itself_once_the_previous_snapshot_is_sent() {
        let store = Arc::new(Probe::default());
        let mut sm = machine(&store);
        open_account(&sm, 1, "a");
        sm.build_snapshot().await.unwrap();
        open_account(&sm, 2, "b");
        // openraft asks for the current snapshot to send it and holds its data (or a clone)
        // while it does.
        let sending = sm.get_current_snapshot().await.unwrap().unwrap().snapshot;
        let piece = sending.clone();
        drop(sending);
        let mut builder = sm.clone();
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        tokio::time::sleep(SEND_WAIT / 2).await;
        assert!(
            !build.is_finished(),
            "reported while the previous one is being sent"
        );
        assert_eq!(*store.saves.lock().unwrap(), 2, "built and saved meanwhile");
        drop(piece);
        let built = build.await.unwrap().unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index()), Some(2));
        // A send that never ends holds it up for SEND_WAIT, no longer.
        open_account(&sm, 3, "c");
        let stuck = sm.get_current_snapshot().await.unwrap().unwrap().snapshot;
        let started = tokio::time::Instant::now();
        sm.build_snapshot().await.unwrap();
        assert_eq!(started.elapsed(), SEND_WAIT);
        drop(stuck);
        // With nothing lent, a build reports at once.
        let started = tokio::time::Instant::now();
        sm.build_snapshot().await.unwrap();
        assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    }

    #[tokio::test]
    async fn an_older_snapshot_saved_late_does_not_replace_a_newer_one() {
        let store = Arc::new(Probe::default());
        let mut sm = machine(&store);
        open_account(&sm, 1, "a");
        let older = sm.build_snapshot().await.unwrap();
        open_account(&sm, 2, "b");
        sm.build_snapshot().await.unwrap();
        assert_eq!(*store.saves.lock().unwrap(), 2);
        // A build that finishes after an install of a newer snapshot (they may overlap).
        sm.save(&older.meta, &older.snapshot).await.unwrap();
        assert_eq!(*store.saves.lock().unwrap(), 2, "not saved");
        let (meta, _) = store.load().unwrap().unwrap();
        assert_eq!(meta.last_log_id.map(|l| l.index()), Some(2));
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
