//! Restarts keep every acknowledged command: graceful stop, and restart through a snapshot.

mod common;

use std::collections::BTreeMap;

use switchyard_client::Client;
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_command() {
    let dir = TempDir::new().unwrap();
    // A low snapshot threshold makes the restart go through snapshot install + log replay.
    let server = common::start(dir.path(), |c| c.snapshot_logs = 100).await;
    let client = Client::new(server.url());

    // Phase 1: concurrent writers, each on its own account; count what was acknowledged.
    let writers = 16u64;
    let per_writer = 25u64;
    for w in 0..writers {
        client.open_account(&format!("w{w}"), None).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..writers {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..per_writer {
                c.credit(&format!("w{w}"), i + 1, None).await.unwrap();
                acked += i + 1;
            }
            (w, acked)
        }));
    }
    let mut expected = BTreeMap::new();
    for t in tasks {
        let (w, acked) = t.await.unwrap();
        expected.insert(format!("w{w}"), acked);
    }
    let before = client.status().await.unwrap();
    assert!(
        before.applied_index > 400,
        "enough entries to pass the snapshot threshold"
    );
    server.stop().await;

    // Phase 2: restart on the same directory; every acknowledged credit is there.
    let server = common::start(dir.path(), |c| c.snapshot_logs = 100).await;
    let client = Client::new(server.url());
    let accounts = client.accounts().await.unwrap();
    let got: BTreeMap<_, _> = accounts.into_iter().map(|a| (a.id, a.balance)).collect();
    assert_eq!(got, expected);
    let after = client.status().await.unwrap();
    assert!(after.revision >= before.revision, "revisions never go back");

    // Phase 3: new writes get revisions above everything before the restart.
    let a = client.credit("w0", 1, None).await.unwrap();
    assert!(a.revision > before.revision);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_survives_restart() {
    let dir = TempDir::new().unwrap();
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    client.open_account("a", None).await.unwrap();
    let first = client.credit("a", 10, Some("pay-1")).await.unwrap();
    server.stop().await;

    // Why: a client retrying after a crash must not apply the credit twice.
    let server = common::start(dir.path(), |_| {}).await;
    let client = Client::new(server.url());
    let retry = client.credit("a", 10, Some("pay-1")).await.unwrap();
    assert_eq!(
        retry, first,
        "the retry answers what the first request answered"
    );
    assert_eq!(client.account("a").await.unwrap().balance, 10);
    let reused = client.credit("a", 11, Some("pay-1")).await.unwrap_err();
    assert_eq!(reused.code(), Some("conflict"));
    server.stop().await;
}
