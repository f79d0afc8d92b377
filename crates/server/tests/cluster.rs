//! Forming a cluster: nodes started with `join` are added as learners then voters, the log
//! replicates to them, and a follower refuses writes with 503 naming the leader.

mod common;

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use switchyard_client::Client;
use tempfile::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_join_replicate_and_followers_name_the_leader() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .try_init();
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let n1 = common::start(dirs[0].path(), |_| {}).await;
    let url1 = n1.url();
    let n2 = common::start(dirs[1].path(), |c| {
        c.node_id = 2;
        c.join = Some(url1.clone());
    })
    .await;
    let n3 = common::start(dirs[2].path(), |c| {
        c.node_id = 3;
        c.join = Some(url1.clone());
    })
    .await;

    // Phase 1: all three become voters, seen from every node.
    for n in [&n1, &n2, &n3] {
        n.node
            .raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(
                |m| m.membership_config.voter_ids().count() == 3,
                "three voters",
            )
            .await
            .expect("the cluster forms");
    }
    let cluster = Client::new(n2.url()).cluster().await.unwrap();
    assert_eq!(cluster.leader, Some(1));
    assert_eq!(cluster.members.iter().filter(|m| m.voter).count(), 3);

    // Phase 2: a write on the leader is applied on every node, with the same revision.
    let a = Client::new(&url1).open_account("a", None).await.unwrap();
    for n in [&n2, &n3] {
        let view = n.node.view.clone();
        let mut changes = view.subscribe();
        common::within(10, "replication", async {
            while view.revision() < a.revision {
                changes.changed().await.unwrap();
            }
        })
        .await;
        assert_eq!(view.read(|s| s.bank.get("a")), Some(a.clone()));
    }

    // Phase 3: a follower refuses a write with 503 and the leader's address.
    let err = Client::new(n3.url())
        .credit("a", 5, None)
        .await
        .unwrap_err();
    let switchyard_client::Error::Api { status, error } = err else {
        panic!("expected an API error")
    };
    assert_eq!(status, 503);
    let leader = error.details.unwrap()["leader"].clone();
    assert_eq!(leader["node_id"], 1);
    assert_eq!(leader["api"], n1.api_addr.to_string());
    let status = n3.node.raft.metrics().borrow_watched().state;
    assert_eq!(status, openraft::ServerState::Follower);

    n3.stop().await;
    n2.stop().await;
    n1.stop().await;
}
