//! Data directories written by the previous formats open in the current one. Both samples are
//! a single node that opened two accounts, credited one 130 times and transferred 90, with a
//! snapshot at index 99 and the log after it. Format 3 (`tests/data/format-3-dir`) kept the
//! snapshot in `state.redb`: it becomes the `snapshot` file. Formats 3 and 4
//! (`tests/data/format-4-dir`) kept the log in `raft-log.redb`: it becomes the segments of
//! `raft-log/`, entries, vote and pointers as they were.

use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{RaftLogReader, entry::RaftEntry};
use switchyard_store::log_store::{LOG_DIR, REDB_FILE};
use switchyard_store::snapshot::SNAPSHOT_FILE;
use switchyard_store::{FORMAT, LogStore, StateMachine, TypeConfig};

fn copy_sample(to: &Path) {
    copy_format(3, to)
}

fn copy_format(format: u32, to: &Path) {
    let from =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/format-{format}-dir"));
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn a_format_3_directory_keeps_its_snapshot_in_the_snapshot_file() {
    let d = tempfile::TempDir::new().unwrap();
    copy_sample(d.path());
    assert_eq!(
        std::fs::read_to_string(d.path().join("FORMAT")).unwrap(),
        "3\n"
    );

    switchyard_store::format::check(d.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("FORMAT")).unwrap(),
        format!("{FORMAT}\n")
    );
    assert!(!d.path().join("state.redb").exists(), "state.redb removed");
    assert!(d.path().join(SNAPSHOT_FILE).exists());
    // Opening again migrates nothing more and keeps the file.
    switchyard_store::format::check(d.path()).unwrap();

    let mut sm = StateMachine::open(d.path(), 1000).unwrap();
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta.last_log_id.map(|l| l.index()), Some(99));
    sm.install_snapshot(&current.meta, current.snapshot)
        .await
        .unwrap();
    let view = sm.view();
    assert_eq!(view.revision(), 99);
    let accounts = view.read(|s| s.bank.list());
    let balance = |id: &str| accounts.iter().find(|a| a.id == id).map(|a| a.balance);
    // Index 1 is the blank entry of the first term, 2-3 open the accounts: 96 credits of 3.
    assert_eq!(balance("alice"), Some(96 * 3));
    assert_eq!(balance("bob"), Some(0));
}

#[tokio::test]
async fn a_migration_interrupted_after_state_redb_was_removed_completes() {
    let d = tempfile::TempDir::new().unwrap();
    copy_sample(d.path());
    switchyard_store::snapshot::migrate_from_redb(d.path()).unwrap();
    // FORMAT still says 3: the next open runs the migration again, which finds nothing to move.
    assert_eq!(
        std::fs::read_to_string(d.path().join("FORMAT")).unwrap(),
        "3\n"
    );
    let before = std::fs::read(d.path().join(SNAPSHOT_FILE)).unwrap();
    switchyard_store::format::check(d.path()).unwrap();
    assert_eq!(std::fs::read(d.path().join(SNAPSHOT_FILE)).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(d.path().join("FORMAT")).unwrap(),
        format!("{FORMAT}\n")
    );
}

/// The log of a format-4 directory as the current store reads it after the migration: its
/// purged pointer, its entries after it up to the transfer, the vote and committed pointer.
async fn read_migrated_log(dir: &Path) -> (u64, Vec<u64>) {
    assert!(!dir.join(REDB_FILE).exists(), "raft-log.redb removed");
    let mut log = LogStore::<TypeConfig>::open(&dir.join(LOG_DIR)).unwrap();
    let state = log.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id.expect("a purged pointer").index();
    let entries = log.try_get_log_entries(0..u64::MAX).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.index()).collect();
    assert!(log.read_vote().await.unwrap().is_some(), "the vote");
    assert!(
        log.read_committed().await.unwrap().is_some(),
        "the committed pointer"
    );
    log.close();
    (purged, indexes)
}

#[tokio::test]
async fn a_format_4_directory_keeps_its_log_in_segments() {
    let d = tempfile::TempDir::new().unwrap();
    copy_format(4, d.path());
    assert_eq!(
        std::fs::read_to_string(d.path().join("FORMAT")).unwrap(),
        "4\n"
    );
    switchyard_store::format::check(d.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.path().join("FORMAT")).unwrap(),
        format!("{FORMAT}\n")
    );
    let (purged, indexes) = read_migrated_log(d.path()).await;
    // The snapshot at 99 keeps 10 entries behind it; the transfer is entry 137.
    assert_eq!(purged, 89);
    assert_eq!(indexes.first(), Some(&90));
    assert!(
        indexes.last().is_some_and(|last| *last >= 137),
        "{indexes:?}"
    );
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "{indexes:?}");
    // Opening again migrates nothing more.
    switchyard_store::format::check(d.path()).unwrap();
    assert_eq!(read_migrated_log(d.path()).await, (purged, indexes));
}

#[tokio::test]
async fn an_interrupted_log_migration_runs_again_whichever_step_it_stopped_at() {
    let whole = tempfile::TempDir::new().unwrap();
    copy_format(4, whole.path());
    switchyard_store::format::check(whole.path()).unwrap();
    let expected = read_migrated_log(whole.path()).await;

    // Stopped while writing the segments: a temporary directory is left.
    let d = tempfile::TempDir::new().unwrap();
    copy_format(4, d.path());
    std::fs::create_dir(d.path().join(format!("{LOG_DIR}.tmp"))).unwrap();
    std::fs::write(d.path().join(format!("{LOG_DIR}.tmp/garbage")), b"x").unwrap();
    switchyard_store::format::check(d.path()).unwrap();
    assert_eq!(read_migrated_log(d.path()).await, expected);

    // Stopped after the segments were in place, before the old file was removed.
    let d = tempfile::TempDir::new().unwrap();
    copy_format(4, d.path());
    switchyard_store::log_store::migrate_from_redb(d.path()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/format-4-dir")
            .join(REDB_FILE),
        d.path().join(REDB_FILE),
    )
    .unwrap();
    switchyard_store::format::check(d.path()).unwrap();
    assert_eq!(read_migrated_log(d.path()).await, expected);
}
