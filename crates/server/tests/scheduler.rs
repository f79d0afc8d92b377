//! The leader-side scheduler turns timers in the replicated state into `Tick` commands: a timer
//! fires through the log, once, and a timer pending across a restart still fires.

mod common;

use std::time::Duration;

use switchyard_client::Client;
use switchyard_server::Server;
use tempfile::TempDir;

/// Wait, driven by applied-revision changes, until `cond` holds on the state.
async fn wait_state(server: &Server, what: &str, cond: impl Fn(&switchyard_core::State) -> bool) {
    let view = server.node.view.clone();
    let mut changes = view.subscribe();
    common::within(10, what, async {
        while !view.read(&cond) {
            changes.changed().await.unwrap();
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_timers_fire_through_the_log_and_survive_restart() {
    let dir = TempDir::new().unwrap();
    let window =
        |c: &mut switchyard_server::Config| c.idempotency_window = Duration::from_millis(1500);
    let server = common::start(dir.path(), window).await;
    let client = Client::new(server.url());
    client.open_account("a", None).await.unwrap();

    // Phase 1: a keyed write schedules the key's expiry; the scheduler fires it.
    client.credit("a", 1, Some("k1")).await.unwrap();
    assert_eq!(server.node.view.read(|s| s.timers.len()), 1);
    let before = server.node.view.revision();
    wait_state(&server, "the expiry timer to fire", |s| {
        s.idempotency.is_empty() && s.timers.is_empty()
    })
    .await;
    assert!(
        server.node.view.revision() > before,
        "the timer fired through a logged command"
    );
    // The key is forgotten: the same key with another body is now a new request.
    client.credit("a", 2, Some("k1")).await.unwrap();
    assert_eq!(client.account("a").await.unwrap().balance, 3);

    // Phase 2: a timer pending when the node stops fires after the restart.
    client.credit("a", 1, Some("k2")).await.unwrap();
    server.stop().await;
    let server = common::start(dir.path(), window).await;
    assert!(
        server.node.view.read(|s| s.idempotency.contains("k2")),
        "the pending record came back from disk"
    );
    wait_state(&server, "pending timers to fire after restart", |s| {
        s.timers.is_empty()
    })
    .await;
    assert!(server.node.view.read(|s| s.idempotency.is_empty()));
    server.stop().await;
}
