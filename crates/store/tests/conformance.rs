//! openraft's storage conformance suite, run against the log store (segment files) and the state machine.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use switchyard_store::{LogStore, StateMachine, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<TypeConfig>, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft-log")).expect("open log");
        let sm = StateMachine::open(dir.path(), 1000).expect("open sm");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_passes_openraft_suite() {
    Suite::test_all(Builder)
        .await
        .expect("storage conformance suite");
}

/// Append blank entries at `indexes` and wait until they are flushed.
async fn append(store: &mut LogStore<TypeConfig>, indexes: std::ops::RangeInclusive<u64>) {
    use openraft::storage::RaftLogStorage;
    let entries: Vec<_> = indexes
        .map(|i| {
            <openraft::alias::EntryOf<TypeConfig> as openraft::entry::RaftEntry>::new_blank(
                openraft::testing::log_id::<TypeConfig>(1, 1, i),
            )
        })
        .collect();
    let (tx, rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
    let cb = openraft::storage::IOFlushed::<TypeConfig>::signal(tx);
    store.append(entries, cb).await.unwrap();
    rx.await.unwrap().unwrap();
}

#[tokio::test]
async fn log_survives_reopen() {
    use openraft::RaftLogReader;
    use openraft::storage::RaftLogStorage;
    use openraft::testing::log_id;

    // Why: what was flushed before close must be there after reopening the file.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft-log");
    let mut store = LogStore::<TypeConfig>::open(&path).unwrap();
    append(&mut store, 1..=5).await;
    store
        .truncate_after(Some(log_id::<TypeConfig>(1, 1, 4)))
        .await
        .unwrap();
    store.purge(log_id::<TypeConfig>(1, 1, 1)).await.unwrap();
    store
        .save_committed(Some(log_id::<TypeConfig>(1, 1, 3)))
        .await
        .unwrap();
    store.close();

    let mut reopened = LogStore::<TypeConfig>::open(&path).unwrap();
    let got = reopened.try_get_log_entries(0..100).await.unwrap();
    let idx: Vec<u64> = got.iter().map(|e| e.log_id.index()).collect();
    assert_eq!(idx, vec![2, 3, 4]);
    let state = reopened.get_log_state().await.unwrap();
    assert_eq!(
        state.last_purged_log_id,
        Some(log_id::<TypeConfig>(1, 1, 1))
    );
}

#[tokio::test]
async fn the_committed_pointer_is_never_stored_ahead_of_its_entry() {
    use openraft::storage::RaftLogStorage;
    use openraft::testing::log_id;

    // Why: openraft may save the committed pointer of an entry it has only handed to `append`
    // (a follower applies what the cluster committed). Written in a batch before its entry,
    // the pointer would survive a crash the entry does not, and the restart would re-apply an
    // entry the log lacks.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft-log");
    let mut store = LogStore::<TypeConfig>::open(&path).unwrap();
    append(&mut store, 1..=2).await;
    store
        .save_committed(Some(log_id::<TypeConfig>(1, 1, 2)))
        .await
        .unwrap();
    append(&mut store, 3..=3).await;
    // The pointer moves to 5 while entry 5 is not yet written; the next batch holds only 4.
    store
        .save_committed(Some(log_id::<TypeConfig>(1, 1, 5)))
        .await
        .unwrap();
    append(&mut store, 4..=4).await;
    // A crash now: what the files hold is what a reopening reads (closing would flush the
    // pending pointer if its entry were written; it is not).
    store.close();
    let mut reopened = LogStore::<TypeConfig>::open(&path).unwrap();
    assert_eq!(
        reopened.read_committed().await.unwrap(),
        Some(log_id::<TypeConfig>(1, 1, 2)),
        "the pointer to 5 waits for entry 5"
    );
    // Once its entry is written, the pointer goes with it.
    reopened
        .save_committed(Some(log_id::<TypeConfig>(1, 1, 5)))
        .await
        .unwrap();
    append(&mut reopened, 5..=5).await;
    reopened.close();
    let mut again = LogStore::<TypeConfig>::open(&path).unwrap();
    assert_eq!(
        again.read_committed().await.unwrap(),
        Some(log_id::<TypeConfig>(1, 1, 5))
    );
}
