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

#[tokio::test]
async fn log_survives_reopen() {
    use openraft::RaftLogReader;
    use openraft::storage::RaftLogStorage;
    use openraft::testing::log_id;

    // Why: what was flushed before close must be there after reopening the file.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("raft-log");
    let mut store = LogStore::<TypeConfig>::open(&path).unwrap();
    let entries: Vec<_> = (1..=5)
        .map(|i| {
            <openraft::alias::EntryOf<TypeConfig> as openraft::entry::RaftEntry>::new_blank(
                log_id::<TypeConfig>(1, 1, i),
            )
        })
        .collect();
    let (tx, rx) = <TypeConfig as openraft::type_config::TypeConfigExt>::oneshot();
    let cb = openraft::storage::IOFlushed::<TypeConfig>::signal(tx);
    store.append(entries, cb).await.unwrap();
    rx.await.unwrap().unwrap();
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
