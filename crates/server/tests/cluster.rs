//! Cluster mode with in-process nodes on loopback: forming, forwarding, reads from any node,
//! a watcher that fails over between nodes, a device transition that survives the leader,
//! snapshot catch-up of a new node, and removing it.
//! (Real processes killed with SIGKILL: crates/cli/tests/cluster.rs.)

mod common;

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use switchyard_client::{Client, CommandStarted, WatchItem};
use switchyard_node::ReadPath;
use switchyard_server::peer_auth::{self, ClusterSecret};
use switchyard_server::{Config, Server};
use switchyard_types::DeviceCommandRequest;
use tempfile::TempDir;

fn log_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TEST_LOG"))
        .try_init();
}

/// Short Raft timings (an election takes about a second), long enough that a stall of a loaded
/// machine does not move leadership in the middle of a test.
fn fast(c: &mut Config) {
    c.heartbeat_interval = Duration::from_millis(100);
    c.election_timeout = Duration::from_millis(1000);
}

/// Wait until `n` sees `voters` voters, settled (not a joint configuration), and a leader.
async fn await_voters(n: &Server, voters: usize) {
    n.node
        .raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| {
                m.membership_config.voter_ids().count() == voters
                    && m.membership_config.membership().get_joint_config().len() == 1
                    && m.current_leader.is_some()
            },
            "the expected voters, no membership change under way, and a leader",
        )
        .await
        .expect("the cluster forms");
}

/// The cluster secret (join token) of `n`'s cluster.
fn secret(n: &Server) -> ClusterSecret {
    ClusterSecret::parse(n.node.join_token()).unwrap()
}

/// Sign requests as a holder of `n`'s join token.
fn signer(
    n: &Server,
) -> impl Fn(&str, &str, &[u8]) -> (&'static str, String) + Send + Sync + use<> {
    let s = secret(n);
    move |m: &str, p: &str, b: &[u8]| (peer_auth::HEADER, s.sign(m, p, b))
}

/// Start `n` nodes: node 1 alone, the others joining it; every node tweaked by `tweak`.
async fn cluster(n: u64, tweak: impl Fn(&mut Config)) -> (Vec<TempDir>, Vec<Server>) {
    log_init();
    let dirs: Vec<TempDir> = (0..n).map(|_| TempDir::new().unwrap()).collect();
    let first = common::start(dirs[0].path(), |c| tweak(c)).await;
    let url = first.url();
    let token = secret(&first);
    let mut nodes = vec![first];
    for id in 2..=n {
        let node = common::start(dirs[id as usize - 1].path(), |c| {
            tweak(c);
            c.node_id = id;
            c.join = Some(url.clone());
            c.join_token = Some(token.clone());
        })
        .await;
        nodes.push(node);
    }
    for node in &nodes {
        await_voters(node, n as usize).await;
    }
    (dirs, nodes)
}

/// Wait until `n` has applied `revision`.
async fn await_revision(n: &Server, revision: u64) {
    let view = n.node.view.clone();
    let mut changes = view.subscribe();
    common::within(15, "replication", async {
        while view.revision() < revision {
            changes.changed().await.unwrap();
        }
    })
    .await;
}

fn leader_of(nodes: &[Server]) -> u64 {
    nodes[0]
        .node
        .raft
        .metrics()
        .borrow_watched()
        .current_leader
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_read_the_same_everywhere() {
    let (_dirs, nodes) = cluster(3, fast).await;
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new(n.url())).collect();
    let cluster = clients[1].cluster().await.unwrap();
    assert_eq!(cluster.members.iter().filter(|m| m.voter).count(), 3);

    // A write through each node; a follower forwards it and answers once it applied it too,
    // so a stale read on the same node already sees it.
    clients[0].open_account("a", None).await.unwrap();
    let via2 = clients[1].credit("a", 5, None).await.unwrap();
    assert_eq!(via2.balance, 5);
    let stale: serde_json::Value = clients[1]
        .request(
            reqwest::Method::GET,
            "/v1/bank/accounts/a?consistency=stale",
            None::<&()>,
            None,
        )
        .await
        .unwrap();
    assert_eq!(stale["balance"], 5);
    let via3 = clients[2].credit("a", 7, None).await.unwrap();
    assert_eq!(via3.balance, 12);
    assert!(via3.revision > via2.revision);

    // A linearizable read on every node sees the last write, with the same revision.
    for c in &clients {
        assert_eq!(c.account("a").await.unwrap(), via3);
    }
    // A refusal through a follower is the leader's refusal, and changes nothing.
    let err = clients[2].debit("a", 100, None).await.unwrap_err();
    assert_eq!(err.code(), Some("insufficient_funds"));
    assert_eq!(clients[1].account("a").await.unwrap(), via3);
    // The same Idempotency-Key through two different nodes is one write.
    let k1 = clients[1].credit("a", 1, Some("k")).await.unwrap();
    let k2 = clients[2].credit("a", 1, Some("k")).await.unwrap();
    assert_eq!(k1, k2);
    assert_eq!(clients[0].account("a").await.unwrap().balance, 13);
    // A bad consistency value is a 400 naming the field.
    let err = clients[1]
        .request::<serde_json::Value>(
            reqwest::Method::GET,
            "/v1/bank/accounts?consistency=eventual",
            None::<&()>,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid"));
    assert!(err.to_string().contains("consistency"), "{err}");

    // Leadership moves on request, through any node; writes follow it.
    let c = clients[1].transfer_leader(3).await.unwrap();
    assert_eq!(c.leader, Some(3));
    for n in &nodes {
        n.node
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(3), "node 3 leads")
            .await
            .unwrap();
    }
    let after = clients[0].credit("a", 1, None).await.unwrap();
    assert_eq!(after.balance, 14);
    // Node 9 is not a voter: a refusal from the cluster's state, 409.
    let err = clients[0].transfer_leader(9).await.unwrap_err();
    assert_eq!(err.code(), Some("conflict"));

    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

/// The next credit event: (revision, amount).
async fn next_credit(w: &mut switchyard_client::Watch) -> (u64, u64) {
    loop {
        if let WatchItem::Event(e) = w.next().await.unwrap() {
            return (
                e.revision,
                e.event["amount"].as_u64().expect("a credit event"),
            );
        }
    }
}

/// How a linearizable read on `n` went, once it also sees `revision`.
async fn read_path(n: &Server, revision: u64) -> ReadPath {
    let path = common::within(15, "a linearizable read", n.node.linearizable())
        .await
        .expect("a linearizable read succeeds");
    assert!(
        n.node.view.revision() >= revision,
        "a linearizable read on node {} saw revision {}, before the acknowledged write at {revision}",
        n.node.id,
        n.node.view.revision()
    );
    path
}

/// Each linearizable read takes the cheapest path that is safe where it runs, and each sees
/// the write acknowledged before it: no round on a sole voter, the lease on a leader a quorum
/// acknowledged recently, the leader's read index on a follower, and a heartbeat round on a
/// leader with lease reads off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_takes_the_cheapest_safe_path_and_sees_the_last_write() {
    let dir = TempDir::new().unwrap();
    let alone = common::start(dir.path(), fast).await;
    let w = Client::new(alone.url())
        .open_account("a", None)
        .await
        .unwrap();
    assert_eq!(read_path(&alone, w.revision).await, ReadPath::SoleVoter);
    assert_eq!(read_path(&alone, w.revision).await, ReadPath::SoleVoter);

    let (_dirs, nodes) = cluster(3, fast).await;
    reads_on_every_node_take(&nodes, ReadPath::Lease).await;
    let (_dirs, nodes) = cluster(2, |c| {
        fast(c);
        c.lease_reads = false;
    })
    .await;
    reads_on_every_node_take(&nodes, ReadPath::ReadIndex).await;
}

/// After a write through a follower, a linearizable read on the leader takes `on_leader` and
/// one on a follower asks the leader; each sees the write.
async fn reads_on_every_node_take(nodes: &[Server], on_leader: ReadPath) {
    let leader = leader_of(nodes);
    let w = Client::new(nodes[1].url())
        .open_account("a", None)
        .await
        .unwrap();
    for n in nodes {
        let want = if n.node.id == leader {
            on_leader
        } else {
            ReadPath::Leader
        };
        // The lease holds while heartbeats keep being acknowledged: a machine stalled past
        // the lease makes one read take a heartbeat round instead, so look again.
        common::within(15, "a read on the path expected", async {
            while read_path(n, w.revision).await != want {}
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_a_follower_sees_every_write_and_resumes_on_another_node() {
    let (_dirs, mut nodes) = cluster(3, fast).await;
    let leader = Client::new(nodes[0].url());
    let other = Client::new(nodes[2].url());
    leader.open_account("w", None).await.unwrap();
    let start = leader.status().await.unwrap().revision;
    await_revision(&nodes[1], start).await;

    // The watcher knows nodes 2 and 3 and starts on node 2, a follower.
    let watcher = Client::new(format!("{},{}", nodes[1].url(), nodes[2].url()));
    let mut w = watcher.watch("bank/", Some(start)).await.unwrap();
    assert_eq!(w.base(), nodes[1].url());

    // Credits 1..=20 through the leader and the other follower, alternately.
    let mut acked = Vec::new();
    for amount in 1..=20u64 {
        let via = if amount % 2 == 0 { &leader } else { &other };
        acked.push(via.credit("w", amount, None).await.unwrap().revision);
    }
    let mut seen = Vec::new();
    for _ in 0..20 {
        let ev = common::within(10, "an event", next_credit(&mut w)).await;
        seen.push(ev);
    }
    // Node 2 dies; more writes happen while the watcher is away.
    let dead = nodes.remove(1);
    dead.stop().await;
    for amount in 21..=40u64 {
        let via = if amount % 2 == 0 { &leader } else { &other };
        acked.push(via.credit("w", amount, None).await.unwrap().revision);
    }
    for _ in 0..20 {
        let ev = common::within(15, "an event after failover", next_credit(&mut w)).await;
        seen.push(ev);
    }
    assert_eq!(w.base(), nodes[1].url(), "resumed on node 3");
    assert!(w.reconnects >= 1);
    // Every write once, in order, at the revision its writer was told.
    let amounts: Vec<u64> = seen.iter().map(|(_, a)| *a).collect();
    assert_eq!(amounts, (1..=40).collect::<Vec<_>>());
    let revisions: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, acked);

    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_transition_in_flight_completes_on_time_under_the_new_leader() {
    let (_dirs, mut nodes) = cluster(3, fast).await;
    let leader = Client::new(nodes[0].url());
    leader.create_device("sw", "switch").await.unwrap();
    let req = DeviceCommandRequest {
        duration: Some(2.0),
        ..Default::default()
    };
    let CommandStarted::Started(st) = leader
        .device_command("sw", "switch_on", &req)
        .await
        .unwrap()
    else {
        panic!("expected a transition")
    };
    let due: jiff::Timestamp = st.transition.due_at.parse().expect("due_at is RFC 3339");
    for n in &nodes[1..] {
        await_revision(n, st.device.revision).await;
    }
    // The leader dies with the transition in flight.
    nodes.remove(0).stop().await;

    let survivors = Client::new(format!("{},{}", nodes[0].url(), nodes[1].url()));
    let d = survivors
        .wait_for_state("sw", "ON", Duration::from_secs(20))
        .await
        .unwrap();
    let observed = jiff::Timestamp::now();
    assert!(d.transition.is_none());
    let new_leader = leader_of(&nodes);
    assert_ne!(new_leader, 1);
    // Completed once, stamped at its due time, and observed soon after it.
    let h = survivors.device_history("sw", 10, None).await.unwrap();
    assert_eq!(h.transitions.len(), 1, "{h:?}");
    assert_eq!(h.transitions[0].id, st.transition.id);
    assert_eq!(h.transitions[0].outcome, "completed");
    assert_eq!(h.transitions[0].finished_at, st.transition.due_at);
    let late = observed.duration_since(due);
    assert!(
        late < jiff::SignedDuration::from_secs(5),
        "completed {late:?} after its due time"
    );

    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_catches_up_from_a_snapshot_and_is_removed_again() {
    let small_snapshots = |c: &mut Config| {
        fast(c);
        c.snapshot_logs = 100;
        c.snapshot_keep_logs = 0;
        // Snapshots cross in many pieces.
        c.snapshot_chunk_bytes = 1024;
    };
    let (_dirs, nodes) = cluster(3, small_snapshots).await;
    let leader = Client::new(nodes[0].url());
    // History: 300 writes, so several snapshots are built and the log before them is purged.
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let c = leader.clone();
            tokio::spawn(async move {
                for i in 0..38 {
                    c.open_account(&format!("a{t}-{i}"), None).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let head = leader.status().await.unwrap().revision;
    assert!(head >= 304);
    nodes[0]
        .node
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index() >= 200),
            "the log before a snapshot is purged",
        )
        .await
        .expect("log compaction");

    // Node 4 joins through a follower; the entries it lacks are gone from the leader's log,
    // so it can only catch up from a snapshot.
    let dir4 = TempDir::new().unwrap();
    let url2 = nodes[1].url();
    let n4 = common::start(dir4.path(), |c| {
        small_snapshots(c);
        c.node_id = 4;
        c.join = Some(url2);
        c.join_token = Some(secret(&nodes[0]));
        c.forward_writes = false;
    })
    .await;
    for n in nodes.iter().chain([&n4]) {
        await_voters(n, 4).await;
    }
    await_revision(&n4, head).await;
    let m4 = n4.node.raft.metrics().borrow_watched().clone();
    assert!(
        m4.snapshot.is_some_and(|s| s.index() >= 200),
        "node 4 installed a snapshot: {:?}",
        m4.snapshot
    );
    let all = |n: &Server| n.node.view.read(|s| s.bank.list());
    assert_eq!(all(&n4).len(), 8 * 38);
    assert_eq!(all(&n4), all(&nodes[0]));

    // With forwarding off, node 4 refuses a write with 503 naming the leader.
    let err = Client::new(n4.url())
        .with_failover(Duration::ZERO)
        .open_account("x", None)
        .await
        .unwrap_err();
    let switchyard_client::Error::Api { status, error } = err else {
        panic!("expected an API error")
    };
    assert_eq!(status, 503);
    // It names the leader (which may have moved since, on a loaded machine: any member).
    let named = error.details.unwrap()["leader"]["node_id"]
        .as_u64()
        .unwrap();
    assert!((1..=3).contains(&named), "{named}");

    // Removed through a follower; every remaining node sees three voters again.
    let c = Client::new(nodes[2].url()).remove_member(4).await.unwrap();
    assert_eq!(c.members.len(), 3);
    assert!(c.members.iter().all(|m| m.node_id != 4));
    for n in &nodes {
        await_voters(n, 3).await;
    }
    let again = Client::new(nodes[1].url()).remove_member(4).await.unwrap();
    assert_eq!(
        again.members.len(),
        3,
        "removing a non-member changes nothing"
    );
    leader.open_account("after-removal", None).await.unwrap();

    n4.stop().await;
    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_on_every_node_hear_pours_made_through_any_node() {
    use futures::StreamExt;
    let (_dirs, nodes) = cluster(3, fast).await;
    // One seed-001 tap socket on each node.
    let mut taps = Vec::new();
    for n in &nodes {
        let url = format!("ws://{}/sockets/beers", n.api_addr);
        taps.push(tokio_tungstenite::connect_async(&url).await.unwrap().0);
    }
    // A pour through each node, in turn: tap i pours through node i.
    let http = reqwest::Client::new();
    for (i, n) in nodes.iter().enumerate() {
        let r = http
            .post(format!("{}/api/beers", n.url()))
            .header("content-type", "application/json")
            .body(format!(r#"{{"tapId": {}, "volume": 500}}"#, i + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "pour through node {}", i + 1);
    }
    for (k, ws) in taps.iter_mut().enumerate() {
        for id in 0..3 {
            let m = common::within(10, "an announcement", ws.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                m.into_text().unwrap().as_str(),
                format!("Tap with id {} posted a new beer (id: {id})!", id + 1),
                "tap on node {}",
                k + 1
            );
        }
    }
    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_its_own_history_is_refused() {
    let (_dirs, nodes) = cluster(2, fast).await;
    // A node started without --join on an empty directory leads a cluster of its own.
    let other_dir = TempDir::new().unwrap();
    let other = common::start(other_dir.path(), |c| {
        fast(c);
        c.node_id = 7;
    })
    .await;
    Client::new(other.url())
        .open_account("elsewhere", None)
        .await
        .unwrap();
    let err = Client::new(nodes[1].url())
        .add_member(
            7,
            &other.api_addr.to_string(),
            &other.peer_addr.to_string(),
            &signer(&nodes[0]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("conflict"), "{err}");
    assert!(err.to_string().contains("another cluster"), "{err}");
    let c = Client::new(nodes[0].url()).cluster().await.unwrap();
    assert_eq!(c.members.len(), 2, "membership unchanged");
    other.stop().await;
    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_added_at_once_both_become_voters() {
    log_init();
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let first = common::start(dirs[0].path(), fast).await;
    // Two empty nodes waiting to be added (their --join target answers nothing), then both
    // added through the leader in the same instant: membership changes queue, none is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = format!("http://127.0.0.1:{port}");
    let mut waiting = Vec::new();
    for id in 2..=3u64 {
        let mut config = Config::new(dirs[id as usize - 1].path());
        fast(&mut config);
        config.node_id = id;
        config.join = Some(nobody.clone());
        config.join_token = Some(secret(&first));
        let listeners = switchyard_server::Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
            .await
            .unwrap();
        let config = config.validate().unwrap();
        waiting.push(switchyard_server::start(config, listeners).await.unwrap());
    }
    let c = Client::new(first.url());
    let addr: Vec<(String, String)> = waiting
        .iter()
        .map(|n| (n.api_addr.to_string(), n.peer_addr.to_string()))
        .collect();
    let sign = signer(&first);
    let (a, b) = tokio::join!(
        c.add_member(2, &addr[0].0, &addr[0].1, &sign),
        c.add_member(3, &addr[1].0, &addr[1].1, &sign),
    );
    a.expect("node 2 added");
    b.expect("node 3 added");
    let cl = c.cluster().await.unwrap();
    assert!(!cl.changing, "{cl:?}");
    assert_eq!(cl.members.iter().filter(|m| m.voter).count(), 3, "{cl:?}");
    for n in waiting.into_iter().rev() {
        n.stop().await;
    }
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_data_format_is_refused() {
    log_init();
    let dir = TempDir::new().unwrap();
    let node = common::start(dir.path(), fast).await;
    let status = Client::new(node.url()).status().await.unwrap();
    assert_eq!(status.format, switchyard_store::FORMAT);
    let url = format!("http://{}/raft/vote", node.peer_addr);
    let http = reqwest::Client::new();
    let other = (switchyard_store::FORMAT + 1).to_string();
    let secret = secret(&node);
    for (header, says) in [
        (Some(other.as_str()), format!("data format {other}")),
        (None, "no format".to_string()),
    ] {
        let mut r = http
            .post(&url)
            .header(peer_auth::HEADER, secret.sign("POST", "/raft/vote", b"{}"))
            .body("{}");
        if let Some(h) = header {
            r = r.header("x-switchyard-format", h);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(resp.status(), 409);
        let text = resp.text().await.unwrap();
        assert!(text.contains(&says), "{text}");
    }
    // The node's own peers (same format) still talk: it stays leader and takes writes.
    Client::new(node.url())
        .open_account("still", None)
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_on_the_peer_port_cannot_write_append_vote_or_install_a_snapshot() {
    log_init();
    let dir = TempDir::new().unwrap();
    let node = common::start(dir.path(), fast).await;
    let client = Client::new(node.url());
    client.open_account("before", None).await.unwrap();
    let before = client.status().await.unwrap();
    let http = reqwest::Client::new();
    let format = switchyard_store::FORMAT.to_string();

    // What an attacker would send: a forwarded write that queues a command, an append and a
    // vote claiming a far higher term, a snapshot.
    let write = serde_json::json!({"Write": {
        "time_ms": 0, "idempotency_key": null, "idempotency_window_ms": 1000,
        "command": {"Bank": {"Open": {"id": "intruder"}}}}});
    let vote = serde_json::json!({"vote": {"leader_id": {"term": 100, "node_id": 9},
        "committed": false}, "last_log_id": null});
    let append = serde_json::json!({"vote": {"leader_id": {"term": 100, "node_id": 9},
        "committed": true}, "prev_log_id": null, "entries": [], "leader_commit": null});
    let requests: [(&str, Vec<u8>); 4] = [
        ("/raft/leader", serde_json::to_vec(&write).unwrap()),
        ("/raft/vote", serde_json::to_vec(&vote).unwrap()),
        ("/raft/append", serde_json::to_vec(&append).unwrap()),
        ("/raft/snapshot", vec![0, 0, 0, 2, b'{', b'}']),
    ];
    let stranger = ClusterSecret::generate();
    let ours = secret(&node);
    for (path, body) in &requests {
        let url = format!("http://{}{path}", node.peer_addr);
        let replayed = ours.sign("POST", path, b"something else");
        for (what, header) in [
            ("no credential", None),
            (
                "another cluster's secret",
                Some(stranger.sign("POST", path, body)),
            ),
            ("a signature of another body", Some(replayed)),
            ("garbage", Some("v1 t=1 n=2 s=3".to_string())),
        ] {
            let mut r = http
                .post(&url)
                .header("x-switchyard-format", &format)
                .body(body.clone());
            if let Some(h) = header {
                r = r.header(peer_auth::HEADER, h);
            }
            let resp = r.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} with {what}");
            let e: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(
                e["error"]["code"], "unauthorized",
                "{path} with {what}: {e}"
            );
        }
    }
    // A signed request cannot be sent twice (a replay by someone who saw it on the wire).
    let stale = serde_json::to_vec(&serde_json::json!({"vote": {"leader_id": {"term": 0,
        "node_id": 9}, "committed": false}, "last_log_id": null}))
    .unwrap();
    let url = format!("http://{}/raft/vote", node.peer_addr);
    let sig = ours.sign("POST", "/raft/vote", &stale);
    let send = |sig: String, content_type: &'static str| {
        http.post(&url)
            .header("x-switchyard-format", &format)
            .header("content-type", content_type)
            .header(peer_auth::HEADER, sig)
            .body(stale.clone())
            .send()
    };
    // The first one is served (a stale vote: the node answers with its own, changing nothing).
    // JSON is what nodes sent before postcard: still taken, and answered in JSON.
    let first = send(sig.clone(), "application/json").await.unwrap();
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    let answer: serde_json::Value = first.json().await.unwrap();
    assert!(answer["Ok"]["vote"].is_object(), "{answer}");
    let replay = send(sig, "application/json").await.unwrap();
    assert_eq!(replay.status(), 401);
    // A signed message in an encoding no node speaks, or not a message at all: 4xx JSON
    // naming what is wrong, and nothing changes.
    let sig = ours.sign("POST", "/raft/vote", &stale);
    let resp = send(sig, "text/plain").await.unwrap();
    assert_eq!(resp.status(), 415);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["details"]["field"], "Content-Type", "{e}");
    let sig = ours.sign("POST", "/raft/vote", &stale);
    let resp = send(sig, switchyard_server::network::Wire::POSTCARD_TYPE)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["details"]["field"], "body", "{e}");
    // A body over the limit is refused before it is read: the answer comes with no byte of
    // the body sent.
    let limit = switchyard_server::network::peer_body_limit(node.node.config.max_body_bytes);
    let head = format!(
        "POST /raft/append HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    );
    let answer = common::raw_exchange(node.peer_addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Nothing changed: no write, no new term.
    let after = client.status().await.unwrap();
    assert_eq!(after.revision, before.revision, "no write went through");
    assert_eq!(after.term, before.term, "the term did not move");
    assert!(
        client.account("intruder").await.is_err(),
        "the forwarded write was refused"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_join_token_is_refused() {
    log_init();
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let first = common::start(dirs[0].path(), fast).await;
    // No token at all: the node does not start.
    let mut config = Config::new(dirs[1].path());
    fast(&mut config);
    config.node_id = 2;
    config.join = Some(first.url());
    let listeners = switchyard_server::Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
        .await
        .unwrap();
    let err = switchyard_server::start(config.clone().validate().unwrap(), listeners)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("--join-token"), "{err}");

    // A wrong token: it starts, asks, and is refused every time; the cluster stays as it was.
    config.join_token = Some(ClusterSecret::generate());
    config.data_dir = dirs[2].path().to_path_buf();
    let listeners = switchyard_server::Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
        .await
        .unwrap();
    let wrong = switchyard_server::start(config.validate().unwrap(), listeners)
        .await
        .unwrap();
    let c = Client::new(first.url());
    let stranger = ClusterSecret::generate();
    let sign = move |m: &str, p: &str, b: &[u8]| (peer_auth::HEADER, stranger.sign(m, p, b));
    let err = c
        .add_member(
            2,
            &wrong.api_addr.to_string(),
            &wrong.peer_addr.to_string(),
            &sign,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("forbidden"), "{err}");
    assert!(err.to_string().contains("join token"), "{err}");
    // Unsigned, as an API client with no token would send it.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/cluster/members", first.url()))
        .json(
            &serde_json::json!({"node_id": 2, "api": wrong.api_addr.to_string(),
            "peer": wrong.peer_addr.to_string()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let cl = c.cluster().await.unwrap();
    assert_eq!(cl.members.len(), 1, "{cl:?}");
    wrong.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_a_node_joins_with_the_join_token_alone() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("tokens.toml");
    std::fs::write(
        &file,
        "[[tokens]]\nname = \"w\"\ntoken = \"write-token-0123456789\"\naccess = \"write\"\n",
    )
    .unwrap();
    let auth = std::sync::Arc::new(switchyard_server::auth::Auth::load(&file).unwrap());
    // The joining node holds no bearer token: its signed join request is its credential.
    let (_dirs, nodes) = cluster(2, |c| {
        fast(c);
        c.auth = Some(auth.clone());
    })
    .await;
    let c = Client::new(nodes[1].url()).with_token("write-token-0123456789");
    c.open_account("through-the-joiner", None).await.unwrap();
    for n in nodes.into_iter().rev() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_unreachable_member_answers_503_and_leaves_no_learner_behind() {
    log_init();
    let dir = TempDir::new().unwrap();
    let node = common::start(dir.path(), |c| {
        fast(c);
        c.write_timeout = Duration::from_secs(2);
    })
    .await;
    // A port with nothing behind it.
    let (_held, addr) = common::refused_port();
    let addr = addr.to_string();
    let client = Client::new(node.url());
    let err = client
        .add_member(2, &addr, &addr, &signer(&node))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("unavailable"), "{err}");
    assert!(err.to_string().contains("was not added"), "{err}");
    let c = client.cluster().await.unwrap();
    assert_eq!(c.members.len(), 1, "no learner left behind: {c:?}");
    // The cluster still takes writes.
    client.open_account("a", None).await.unwrap();
    node.stop().await;
}
