//! Pinned scenarios: each runs twice with the same seed and must give the same trace.

use std::time::Duration;

use switchyard_core::bank::BankCommand;
use switchyard_core::{Command, Reply};
use switchyard_sim::{Sim, SimOptions, run_seeded};

fn open(id: &str) -> Command {
    Command::Bank(BankCommand::Open { id: id.into() })
}

fn credit(id: &str, amount: u64) -> Command {
    Command::Bank(BankCommand::Credit {
        id: id.into(),
        amount,
    })
}

/// Run `scenario` twice on the same seed: the traces must be equal.
fn twice(
    seed: u64,
    scenario: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>>,
) -> String {
    let a = run_seeded(seed, scenario());
    let b = run_seeded(seed, scenario());
    assert_eq!(a, b, "the same seed gave two traces");
    a
}

#[test]
fn a_new_leader_is_elected_after_the_leader_is_isolated() {
    let trace = twice(7, || {
        Box::pin(async {
            let mut sim = Sim::start(SimOptions::default()).await;
            let mut trace = String::new();
            let l1 = sim.leader().unwrap();
            let t1 = sim.metrics(l1).unwrap().1;
            sim.write(open("a"), Duration::from_secs(5)).await.unwrap();
            sim.isolate(l1);
            let start = tokio::time::Instant::now();
            let l2 = loop {
                if let Some(l) = sim.leader().filter(|l| *l != l1) {
                    break l;
                }
                assert!(start.elapsed() < Duration::from_secs(10), "no new leader");
                sim.advance(Duration::from_millis(10)).await;
            };
            let t2 = sim.metrics(l2).unwrap().1;
            assert!(t2 > t1);
            let (outcome, index) = sim
                .write(credit("a", 5), Duration::from_secs(5))
                .await
                .unwrap();
            assert!(matches!(outcome, Ok(Reply::Bank(_))), "{outcome:?}");
            // The isolated old leader did not apply it; after healing it does.
            assert!(sim.sm(l1).revision() < index);
            assert!(sim.settle(Duration::from_secs(10)).await);
            let balance = |id| sim.sm(id).read(|i| i.core.bank.get("a").map(|a| a.balance));
            for id in sim.ids() {
                assert_eq!(balance(id), Some(5), "node {id}");
            }
            trace.push_str(&format!(
                "leader {l1} term {t1}; isolated; leader {l2} term {t2} after {:?}; write at {index}",
                start.elapsed()
            ));
            sim.shutdown().await;
            trace
        })
    });
    eprintln!("{trace}");
}
