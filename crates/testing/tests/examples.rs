//! The worked examples of the README, through `switchyard_client::Client` as a user's code
//! would drive a real cluster. Each runs twice on one seed and must give the same trace.

use std::time::Duration;

use switchyard_client::WatchItem;
use switchyard_testing::net::{Action, Kind, Rule, Stage};
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
    assert!(lines > 100, "the trace holds the run ({lines} events)");
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
