//! The worked examples of the README, through `switchyard_client::Client` as a user's code
//! would drive a real cluster. Each runs twice on one seed and must give the same trace.

use std::time::Duration;

use switchyard_client::WatchItem;
use switchyard_testing::net::{Action, Gate, Kind, Rule, Stage};
use switchyard_testing::{SimCluster, SimOptions, run_seeded};

const WAIT: Duration = Duration::from_secs(30);

/// Run `example` twice on `seed`: both runs must trace the same, message for message.
fn twice<F>(seed: u64, example: impl Fn(u64) -> F)
where
    F: std::future::Future<Output = (u64, u64)>,
{
    let (hash, lines) = run_seeded(seed, example(seed));
    assert_eq!(
        run_seeded(seed, example(seed)),
        (hash, lines),
        "the same seed gave two traces"
    );
    assert!(lines > 10, "the trace holds the run ({lines} events)");
}

fn options(seed: u64) -> SimOptions {
    SimOptions {
        seed,
        ..SimOptions::default()
    }
}

/// (a) A user's TOML valve: the leader dies while the valve opens; the opening completes
/// exactly once under the new leader, and a watcher on a follower sees every phase in order.
async fn valve_failover(seed: u64) -> (u64, u64) {
    let mut opts = options(seed);
    opts.server
        .load_device_types(std::path::Path::new("tests/types/valve.toml"))
        .unwrap();
    let sim = SimCluster::start(opts).await;
    let client = sim.client();
    client.create_device("v1", "valve").await.unwrap();
    let leader = sim.leader().unwrap();
    let follower = sim.ids().into_iter().find(|id| *id != leader).unwrap();
    let from = client.status().await.unwrap().revision;
    let mut watch = sim
        .client_of(follower)
        .watch("devices/v1", Some(from))
        .await
        .unwrap();

    client
        .device_handle("v1")
        .command("open")
        .start()
        .await
        .unwrap();
    sim.advance(Duration::from_millis(1500)).await; // unlocking is over, opening is under way
    sim.crash(leader).await;

    let v1 = client.wait_for_state("v1", "OPEN", WAIT).await.unwrap();
    assert_eq!(v1.state.as_deref(), Some("OPEN"));
    assert_ne!(sim.leader(), Some(leader));
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("completed") {
        if let WatchItem::Event(e) = watch.next().await.unwrap() {
            let phase = e.event["device"]["transition"]["phase"].as_str();
            seen.push(match (e.event["kind"].as_str().unwrap(), phase) {
                (kind, Some(phase)) => format!("{kind} {phase}"),
                (kind, None) => kind.to_string(),
            });
        }
    }
    assert_eq!(seen, ["started unlocking", "phase opening", "completed"]);
    // Exactly once: one completion in the new leader's history.
    sim.advance(Duration::from_secs(5)).await;
    let new = sim.leader().unwrap();
    let completions = sim
        .history(new, from)
        .unwrap()
        .iter()
        .filter(|e| e.topic == "devices/v1" && e.kind == "completed")
        .count();
    assert_eq!(completions, 1);
    (sim.trace.hash(), sim.trace.events())
}

#[test]
fn a_valve_opening_when_the_leader_dies_completes_once_and_a_follower_sees_every_phase() {
    twice(21, valve_failover);
}

/// (b) The seed's recipe: every server stopped after the leader sent AppendEntries and before
/// the followers process it; then the leader crashes. The entry was on the wire: the followers
/// take it, one of them leads, and the write is committed (once) although its client never
/// heard back.
async fn appends_on_the_wire_when_the_leader_dies(seed: u64) -> (u64, u64) {
    let sim = SimCluster::start(options(seed)).await;
    let client = sim.client();
    client.open_account("alice", Some("open")).await.unwrap();
    let leader = sim.leader().unwrap();
    let index = sim.inspect(leader).last_log.unwrap().index + 1;

    let gate = Gate::new();
    sim.router
        .add_rule(
            Rule::new(
                "on-the-wire",
                Stage::BeforeProcess,
                Action::Park(gate.clone()),
            )
            .kind(Kind::Append)
            .from(leader),
        )
        .unwrap();
    let write = tokio::spawn({
        let client = sim.client_of(leader);
        async move { client.credit("alice", 5, Some("credit-1")).await }
    });
    let held = tokio::time::timeout(WAIT, gate.reached(2)).await.unwrap();
    assert!(
        held.iter()
            .all(|m| m.entries.iter().any(|e| e.index == index))
    );
    sim.pause_all();
    for id in sim.ids().into_iter().filter(|id| *id != leader) {
        assert!(
            sim.log(id).iter().all(|e| e.pos.index < index),
            "not processed yet"
        );
    }
    sim.crash(leader).await;
    sim.router.remove_rule("on-the-wire");
    gate.open();
    sim.resume_all();

    // The client of the dead leader learns nothing for sure.
    assert!(write.await.unwrap().is_err());
    let new = sim.wait_leader(WAIT).await.unwrap();
    assert_ne!(new, leader);
    // The outcome: the entry survived; retrying with the key gives the first answer.
    let again = client.credit("alice", 5, Some("credit-1")).await.unwrap();
    assert_eq!(again.balance, 5);
    assert_eq!(client.account("alice").await.unwrap().balance, 5);
    let entry = sim
        .log(new)
        .into_iter()
        .find(|e| e.pos.index == index)
        .unwrap();
    assert_eq!(
        entry.pos.term,
        sim.inspect(leader).term,
        "the old leader's entry"
    );
    (sim.trace.hash(), sim.trace.events())
}

#[test]
fn appends_sent_before_the_leader_crashed_are_committed_by_the_next_one() {
    twice(22, appends_on_the_wire_when_the_leader_dies);
}

/// (c) The bank: credits and debits through any node while every vote is dropped; the balance
/// is exact on every node.
async fn bank_without_votes(seed: u64) -> (u64, u64) {
    let sim = SimCluster::start(options(seed)).await;
    sim.router
        .add_rule(Rule::new("no-votes", Stage::BeforeSend, Action::Drop).kind(Kind::Vote))
        .unwrap();
    sim.client()
        .open_account("bob", Some("open"))
        .await
        .unwrap();
    let ids = sim.ids();
    for i in 0..30u64 {
        let via = sim.client_of(ids[i as usize % ids.len()]);
        let key = format!("op-{i}");
        if i % 3 == 2 {
            via.debit("bob", 4, Some(&key)).await.unwrap();
        } else {
            via.credit("bob", 10, Some(&key)).await.unwrap();
        }
    }
    for id in ids {
        let balance = sim.client_of(id).account("bob").await.unwrap().balance;
        assert_eq!(balance, 20 * 10 - 10 * 4, "on node {id}");
    }
    (sim.trace.hash(), sim.trace.events())
}

#[test]
fn credits_and_debits_through_any_node_while_votes_are_dropped_keep_the_balance_exact() {
    twice(23, bank_without_votes);
}

/// The leader crashes while a client's write is in flight, through the public API only: the
/// client hears an error, and its retry with the same key applies the write once.
async fn leader_crash_mid_write(seed: u64) -> (u64, u64) {
    let sim = SimCluster::start(options(seed)).await;
    let client = sim.client();
    client.open_account("carol", Some("open")).await.unwrap();
    let leader = sim.leader().unwrap();
    let write = tokio::spawn({
        let client = sim.client_of(leader);
        async move { client.credit("carol", 7, Some("pay-1")).await }
    });
    // The write is in flight once the leader's log holds it.
    let last = sim.inspect(leader).last_log.unwrap().index;
    sim.wait_until(WAIT, |s| s.inspect(leader).last_log.unwrap().index > last)
        .await
        .unwrap();
    sim.crash(leader).await;
    let first = write.await.unwrap();
    let retried = client.credit("carol", 7, Some("pay-1")).await.unwrap();
    assert_eq!(retried.balance, 7, "applied once (first answer: {first:?})");
    (sim.trace.hash(), sim.trace.events())
}

#[test]
fn a_write_in_flight_when_the_leader_crashes_applies_once_when_retried_with_its_key() {
    twice(24, leader_crash_mid_write);
}
