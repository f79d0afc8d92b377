//! The state machine of a simulated node: the real core ([`switchyard_core::apply`]) and the
//! real event history, as `switchyard_store::StateMachine` keeps them, with snapshots kept on
//! the node's simulated disk. Applying can be held at a gate (the "before apply" hook).

use std::io::{self, Cursor};
use std::sync::{Arc, Mutex, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use switchyard_core::{Ctx, State};
use switchyard_store::{Applied, History};
use tokio::sync::watch;

use crate::SimConfig;
use crate::log::SharedDisk;

type C = SimConfig;
type Entry = openraft::alias::EntryOf<C>;

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

pub struct Inner {
    pub core: State,
    pub history: History,
    pub last_applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
}

/// The state machine handed to openraft; clones share it.
#[derive(Clone)]
pub struct SimStateMachine {
    pub inner: Arc<RwLock<Inner>>,
    applied: Arc<watch::Sender<u64>>,
    disk: SharedDisk,
    /// While `true`, applying waits (the node is held before apply).
    pub hold: Arc<watch::Sender<bool>>,
    /// While `Some(n)`, entries after `n` wait (the node is held after applying `n`).
    pub hold_after: Arc<watch::Sender<Option<u64>>>,
    /// Every applied index, in order (for determinism traces).
    pub trace: Arc<Mutex<Vec<u64>>>,
}

impl SimStateMachine {
    pub fn new(disk: SharedDisk, history: usize) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Inner {
                core: State::default(),
                history: History::new(history),
                last_applied: None,
                membership: Default::default(),
            })),
            applied: Arc::new(watch::channel(0).0),
            disk,
            hold: Arc::new(watch::channel(false).0),
            hold_after: Arc::new(watch::channel(None).0),
            trace: Default::default(),
        }
    }

    /// Run `f` on the applied state.
    pub fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.inner.read().unwrap())
    }

    /// The last applied index (the node's revision).
    pub fn revision(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn apply_entry(&self, entry: Entry) -> Applied {
        let index = entry.log_id.index();
        let mut inner = self.inner.write().unwrap();
        let resp = match entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Normal(proposal) => {
                let (outcome, events) =
                    switchyard_core::apply(&mut inner.core, &proposal, Ctx { index });
                inner.history.push(index, events);
                Some(outcome)
            }
            EntryPayload::Membership(m) => {
                inner.membership = StoredMembershipOf::<C>::new(Some(entry.log_id), m);
                None
            }
        };
        inner.last_applied = Some(entry.log_id);
        drop(inner);
        self.trace.lock().unwrap().push(index);
        self.applied.send_replace(index);
        resp
    }
}

impl RaftSnapshotBuilder<C> for SimStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Self::SnapshotData>, io::Error> {
        let (meta, data) = {
            let inner = self.inner.read().unwrap();
            let meta = SnapshotMetaOf::<C> {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            let data = postcard::to_allocvec(&BlobRef {
                core: &inner.core,
                history: &inner.history,
            })
            .map_err(io::Error::other)?;
            (meta, data)
        };
        self.disk.lock().unwrap().snapshot = Some((meta.clone(), data.clone()));
        Ok(SnapshotOf::<C, _> {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<C> for SimStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let inner = self.inner.read().unwrap();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index();
            let mut hold = self.hold.subscribe();
            let mut after = self.hold_after.subscribe();
            loop {
                let held = *hold.borrow_and_update();
                let held_after = after.borrow_and_update().is_some_and(|n| index > n);
                if !held && !held_after {
                    break;
                }
                tokio::select! {
                    biased;
                    r = hold.changed() => if r.is_err() { break },
                    r = after.changed() => if r.is_err() { break },
                }
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
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let blob: Blob = postcard::from_bytes(&data).map_err(io::Error::other)?;
        self.disk.lock().unwrap().snapshot = Some((meta.clone(), data));
        let index = meta.last_log_id.map_or(0, |l| l.index());
        {
            let mut inner = self.inner.write().unwrap();
            inner.core = blob.core;
            let capacity = inner.history.capacity();
            inner.history = blob.history;
            inner.history.set_capacity(capacity);
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
        }
        self.applied.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        Ok(self
            .disk
            .lock()
            .unwrap()
            .snapshot
            .clone()
            .map(|(meta, data)| SnapshotOf::<C, _> {
                meta,
                snapshot: Cursor::new(data),
            }))
    }
}
