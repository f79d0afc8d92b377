//! A data directory written by format 3 (`tests/data/format-3-dir`: a single node that opened
//! two accounts, credited one 130 times and transferred 90, with a snapshot at index 99 kept
//! in `state.redb` and the log after it) opens in the current format: its snapshot becomes the
//! `snapshot` file, `state.redb` is gone, and the state reads as it was.

use std::path::Path;

use openraft::storage::RaftStateMachine;
use switchyard_store::snapshot::SNAPSHOT_FILE;
use switchyard_store::{FORMAT, StateMachine};

fn copy_sample(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/format-3-dir");
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
