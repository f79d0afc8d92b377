//! The controls one by one: every interceptor stage and action, rule order and names, pause
//! beating an earlier rule, heartbeats told from appends, predicates, the timer catalogue,
//! inspection and what-if changes. Each test plays one precise path on a 3-node cluster.

use std::time::Duration;

use openraft::ServerState;
use switchyard_core::devices::DeviceCommand;
use switchyard_core::{Command, Timer};
use switchyard_node::NodeError;
use switchyard_testing::cluster::{NodeTimer, TimerKind, WhatIfError};
use switchyard_testing::net::{Action, Gate, Kind, Rule, RuleError, Stage};
use switchyard_testing::{Effect, SimCluster, SimOptions, effect, run_seeded};

mod common;

use common::{TEN_S, balance, credit, open};

/// A cluster with account `a` open, its leader and a follower.
async fn cluster(seed: u64) -> (SimCluster, u64, u64) {
    let sim = SimCluster::start(SimOptions {
        seed,
        ..SimOptions::default()
    })
    .await;
    sim.write(open("a"), TEN_S).await.expect("opened");
    let leader = sim.leader().unwrap();
    let follower = sim.ids().into_iter().find(|i| *i != leader).unwrap();
    (sim, leader, follower)
}

/// A forwarded write (follower to leader) whose first forwarded request meets a rule: what its
/// client learns, and the balance the leader ends with.
fn forwarded_under(stage: Stage, action: Action, key: Option<&str>) -> (Effect, Option<u64>) {
    run_seeded(3, async {
        let (sim, leader, follower) = cluster(3).await;
        sim.router
            .add_rule(Rule::new("r", stage, action).kind(Kind::Forward).times(1))
            .unwrap();
        let r = sim
            .write_to(follower, credit("a", 5), key.map(String::from), TEN_S)
            .await;
        sim.advance(Duration::from_secs(1)).await;
        (effect(&r), balance(&sim, leader, "a"))
    })
}

#[test]
fn a_drop_before_send_is_known_unsent_later_drops_leave_the_outcome_unknown() {
    // Before send: the follower knows it never sent it, so it sends it again, and it applies.
    assert_eq!(
        forwarded_under(Stage::BeforeSend, Action::Drop, None),
        (Effect::Applied, Some(5))
    );
    assert_eq!(
        forwarded_under(Stage::BeforeSend, Action::Fail, None),
        (Effect::Applied, Some(5))
    );
    // On the wire and before process: lost, the sender cannot know, nothing applied.
    assert_eq!(
        forwarded_under(Stage::AfterSend, Action::Drop, None),
        (Effect::Unknown, Some(0))
    );
    assert_eq!(
        forwarded_under(Stage::BeforeProcess, Action::Drop, None),
        (Effect::Unknown, Some(0))
    );
    assert_eq!(
        forwarded_under(Stage::AfterSend, Action::Fail, None),
        (Effect::Unknown, Some(0))
    );
    // After process: the leader applied it, the answer is lost.
    assert_eq!(
        forwarded_under(Stage::AfterProcess, Action::Drop, None),
        (Effect::Unknown, Some(5))
    );
    // Pass and an action that does not end the message: applied and answered.
    assert_eq!(
        forwarded_under(Stage::BeforeProcess, Action::Pass, None),
        (Effect::Applied, Some(5))
    );
    assert_eq!(
        forwarded_under(
            Stage::AfterSend,
            Action::Jitter(Duration::from_millis(50)),
            None
        ),
        (Effect::Applied, Some(5))
    );
}

#[test]
fn a_duplicated_message_is_processed_twice_at_every_stage_before_process() {
    for stage in [Stage::BeforeSend, Stage::AfterSend, Stage::BeforeProcess] {
        // Without an idempotency key the leader applies the forwarded credit twice...
        assert_eq!(
            forwarded_under(stage, Action::Duplicate, None),
            (Effect::Applied, Some(10)),
            "{stage:?}"
        );
        // ...with one, once.
        assert_eq!(
            forwarded_under(stage, Action::Duplicate, Some("k")),
            (Effect::Applied, Some(5)),
            "{stage:?}"
        );
    }
    // After process there is nothing left to duplicate.
    assert_eq!(
        forwarded_under(Stage::AfterProcess, Action::Duplicate, None),
        (Effect::Applied, Some(5))
    );
}

#[test]
fn a_delay_holds_a_message_that_long_at_each_stage() {
    for stage in [
        Stage::BeforeSend,
        Stage::AfterSend,
        Stage::BeforeProcess,
        Stage::AfterProcess,
    ] {
        let took = run_seeded(4, async {
            let (sim, _, follower) = cluster(4).await;
            sim.router
                .add_rule(
                    Rule::new("slow", stage, Action::Delay(Duration::from_millis(1500)))
                        .kind(Kind::Forward),
                )
                .unwrap();
            let start = tokio::time::Instant::now();
            sim.write_to(follower, credit("a", 1), None, TEN_S)
                .await
                .expect("applied");
            start.elapsed()
        });
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(2),
            "{stage:?}: {took:?}"
        );
    }
}

#[test]
fn a_gate_reports_what_reached_it_at_each_stage_and_holds_it_until_opened() {
    for stage in [
        Stage::BeforeSend,
        Stage::AfterSend,
        Stage::BeforeProcess,
        Stage::AfterProcess,
    ] {
        run_seeded(5, async {
            let (sim, leader, _) = cluster(5).await;
            let index = sim.inspect(leader).last_log.unwrap().index + 1;
            let gate = Gate::new();
            sim.router
                .add_rule(
                    Rule::new("hold", stage, Action::Park(gate.clone()))
                        .kind(Kind::Append)
                        .from(leader)
                        .when(move |m| m.entries.iter().any(|e| e.index == index)),
                )
                .unwrap();
            let write = sim.write_to(leader, credit("a", 2), None, TEN_S);
            let watch = async {
                let held = tokio::time::timeout(TEN_S, gate.reached(2))
                    .await
                    .expect("both appends reach the gate");
                assert_eq!(held.len(), 2, "{stage:?}");
                assert!(
                    held.iter()
                        .all(|m| m.kind == Kind::Append && m.from == leader)
                );
                sim.advance(Duration::from_secs(1)).await;
                let followers: Vec<u64> = sim.ids().into_iter().filter(|i| *i != leader).collect();
                let has = |id: u64| sim.log(id).iter().any(|e| e.pos.index == index);
                // Before processing no follower holds the entry; after, both do, and still the
                // leader has committed nothing (their answers wait at the gate).
                let processed = stage == Stage::AfterProcess;
                assert!(followers.iter().all(|f| has(*f) == processed), "{stage:?}");
                assert!(sim.inspect(leader).committed.unwrap() < index, "{stage:?}");
                gate.open();
            };
            let (r, ()) = tokio::join!(write, watch);
            assert_eq!(r.expect("applied after the gate opened").1, index);
            assert_eq!(gate.arrived(), 2);
            assert!(gate.waiting().is_empty());
        });
    }
}

#[test]
fn heartbeats_and_appends_with_entries_are_told_apart() {
    run_seeded(6, async {
        let (sim, leader, follower) = cluster(6).await;
        let term = sim.inspect(leader).term;
        // No append with entries reaches the follower; heartbeats do: it stays a follower of
        // the same leader, but misses the write.
        sim.router
            .add_rule(
                Rule::new("no-entries", Stage::BeforeSend, Action::Drop)
                    .kind(Kind::Append)
                    .to(follower),
            )
            .unwrap();
        sim.write_to(leader, credit("a", 3), None, TEN_S)
            .await
            .expect("a majority without the follower");
        sim.advance(Duration::from_secs(3)).await;
        let f = sim.inspect(follower);
        assert_eq!(
            (f.role, f.term, f.leader),
            (Some(ServerState::Follower), term, Some(leader))
        );
        assert_eq!(balance(&sim, follower, "a"), Some(0));
        // Now only heartbeats are dropped and entries flow: the follower catches up, and while
        // the cluster is idle it hears nothing, so it stands for election.
        assert!(sim.router.remove_rule("no-entries"));
        sim.router
            .add_rule(
                Rule::new("no-heartbeats", Stage::BeforeSend, Action::Drop)
                    .kind(Kind::Heartbeat)
                    .to(follower),
            )
            .unwrap();
        sim.write_to(leader, credit("a", 1), None, TEN_S)
            .await
            .expect("applied");
        let caught_up = sim
            .wait_until(TEN_S, |s| balance(s, follower, "a") == Some(4))
            .await;
        assert!(caught_up.is_some(), "the follower applies both credits");
        let stood = sim
            .wait_until(TEN_S, |s| s.inspect(follower).term > term)
            .await;
        assert!(stood.is_some(), "without heartbeats the follower stands");
    });
}

#[test]
fn pause_beats_an_earlier_rule_a_paused_leader_commits_nothing() {
    run_seeded(7, async {
        let (sim, leader, _) = cluster(7).await;
        // An earlier rule lets the leader's appends through after a delay...
        sim.router
            .add_rule(
                Rule::new(
                    "delay",
                    Stage::BeforeSend,
                    Action::Delay(Duration::from_millis(5)),
                )
                .kinds(Kind::APPEND_ENTRIES),
            )
            .unwrap();
        let committed = sim.inspect(leader).committed;
        sim.pause(leader);
        assert!(sim.is_paused(leader));
        // ...but the paused leader sends nothing: a write through it stays uncommitted.
        let write = sim.write_to(leader, credit("a", 9), None, TEN_S);
        let check = async {
            sim.advance(Duration::from_secs(3)).await;
            assert_eq!(sim.inspect(leader).committed, committed);
            for id in sim.ids() {
                assert_eq!(balance(&sim, id, "a"), Some(0), "node {id}");
            }
            sim.resume(leader);
        };
        let (r, ()) = tokio::join!(write, check);
        // The followers elected no one else meanwhile? Either way the write's fate is known
        // to its client only if the leader kept leading.
        match r {
            Ok(_) => assert_eq!(balance(&sim, leader, "a"), Some(9)),
            Err(e) => assert!(matches!(
                e,
                NodeError::OutcomeUnknown { .. } | NodeError::NotLeader { .. }
            )),
        }
    });
}

#[test]
fn rules_are_named_ordered_and_removable() {
    run_seeded(8, async {
        let (sim, _, follower) = cluster(8).await;
        let r = &sim.router;
        r.add_rule(Rule::new("drop", Stage::BeforeSend, Action::Drop).kind(Kind::Forward))
            .unwrap();
        assert_eq!(
            r.add_rule(Rule::new("drop", Stage::BeforeSend, Action::Drop)),
            Err(RuleError::Duplicate("drop".into()))
        );
        assert_eq!(
            r.insert_rule(5, Rule::new("late", Stage::BeforeSend, Action::Pass)),
            Err(RuleError::Position { at: 5, len: 1 })
        );
        let refused = sim.write_to(follower, credit("a", 1), None, TEN_S).await;
        assert!(refused.is_err());
        // A pass put before it shields the forwarded write from the drop.
        r.insert_rule(
            0,
            Rule::new("shield", Stage::BeforeSend, Action::Pass).kind(Kind::Forward),
        )
        .unwrap();
        assert_eq!(r.rule_names(), ["shield", "drop"]);
        sim.write_to(follower, credit("a", 1), None, TEN_S)
            .await
            .expect("shielded");
        assert!(r.remove_rule("shield"));
        assert!(!r.remove_rule("shield"));
        assert_eq!(r.rule_names(), ["drop"]);
        let refused = sim.write_to(follower, credit("a", 1), None, TEN_S).await;
        assert!(refused.is_err());
        assert_eq!(balance(&sim, follower, "a"), Some(1));
        // A counted rule removes itself.
        r.clear_rules();
        r.add_rule(
            Rule::new("once", Stage::AfterSend, Action::Drop)
                .kind(Kind::Forward)
                .times(1),
        )
        .unwrap();
        let first = sim.write_to(follower, credit("a", 1), None, TEN_S).await;
        assert_eq!(effect(&first), Effect::Unknown);
        assert!(r.rule_names().is_empty());
        sim.write_to(follower, credit("a", 1), None, TEN_S)
            .await
            .expect("the rule is gone");
    });
}

#[test]
fn the_timer_catalogue_lists_a_device_phase_and_pausing_the_scheduler_holds_it() {
    run_seeded(9, async {
        let (sim, leader, follower) = cluster(9).await;
        let switch = switchyard_core::devices::types::builtin()
            .into_iter()
            .find(|t| t.name == "switch")
            .unwrap();
        let create = Command::Devices(DeviceCommand::Create {
            name: "sw".into(),
            def: switch,
        });
        sim.write(create, TEN_S).await.expect("created");
        sim.pause_timer(leader, NodeTimer::Scheduler);
        let run = Command::Devices(DeviceCommand::Run {
            name: "sw".into(),
            command: "switch_on".into(),
            duration_ms: Some(1000),
            args_json: None,
        });
        sim.write(run, TEN_S).await.expect("started");
        let phase = |id: u64| {
            sim.timers(id).into_iter().find_map(|t| match t.kind {
                TimerKind::App {
                    due_ms,
                    timer: Timer::DevicePhase { device, .. },
                } if device == "sw" => Some((due_ms, t.paused)),
                _ => None,
            })
        };
        let (due, paused) = phase(leader).expect("the leader lists the phase");
        assert!(paused, "its scheduler is paused");
        assert_eq!(
            phase(follower),
            Some((due, false)),
            "a follower lists it too"
        );
        let own = sim.timers(leader);
        assert!(
            own.iter()
                .any(|t| t.kind == TimerKind::Node(NodeTimer::Scheduler) && t.paused)
        );
        assert!(
            own.iter()
                .any(|t| t.kind == TimerKind::Node(NodeTimer::Election) && !t.paused)
        );
        // Well past due, the transition has not ended: nothing fired it.
        sim.advance(Duration::from_secs(5)).await;
        let state = |s: &SimCluster| {
            s.view(leader)
                .read(|st| st.devices.get("sw").and_then(|d| d.state.clone()))
        };
        assert_ne!(state(&sim).as_deref(), Some("ON"));
        assert_eq!(sim.leader(), Some(leader), "the rest of the node runs on");
        sim.resume_timer(leader, NodeTimer::Scheduler);
        let done = sim
            .wait_until(TEN_S, |s| state(s).as_deref() == Some("ON"))
            .await;
        assert!(done.is_some(), "the resumed scheduler fires it");
        assert_eq!(phase(leader), None);
    });
}

#[test]
fn a_leader_without_its_heartbeat_timer_loses_the_lead() {
    run_seeded(10, async {
        let (sim, leader, _) = cluster(10).await;
        let term = sim.inspect(leader).term;
        sim.pause_timer(leader, NodeTimer::Heartbeat);
        let other = sim
            .wait_until(TEN_S, |s| s.leader().is_some_and(|l| l != leader))
            .await;
        assert!(other.is_some(), "a follower that hears nothing takes over");
        assert!(sim.inspect(sim.leader().unwrap()).term > term);
    });
}

#[test]
fn inspection_shows_role_term_vote_and_the_log_entry_by_entry() {
    run_seeded(11, async {
        let (sim, leader, follower) = cluster(11).await;
        let (_, index) = sim.write(credit("a", 4), TEN_S).await.expect("applied");
        sim.wait_until(TEN_S, |s| s.inspect(follower).applied == Some(index))
            .await
            .expect("the follower applies it");
        let l = sim.inspect(leader);
        let f = sim.inspect(follower);
        assert_eq!(l.role, Some(ServerState::Leader));
        assert_eq!(f.role, Some(ServerState::Follower));
        assert_eq!(f.leader, Some(leader));
        assert_eq!(l.term, f.term);
        let vote = l.vote.unwrap();
        assert_eq!(
            (vote.term, vote.node, vote.committed),
            (l.term, leader, true)
        );
        assert_eq!(l.last_log.unwrap().index, index);
        assert!(l.committed.unwrap() >= index);
        let log = sim.log(follower);
        let last = log.last().unwrap();
        assert_eq!((last.pos.index, last.pos.term), (index, l.term));
        assert!(last.durable);
        assert_eq!(last.command(), Some(&credit("a", 4)));
        // Indexes are consecutive.
        assert!(log.windows(2).all(|w| w[1].pos.index == w[0].pos.index + 1));
        let events = sim.history(follower, 0).expect("history");
        assert!(
            events
                .iter()
                .any(|e| e.revision == index && e.topic == "bank/accounts/a")
        );
    });
}

#[test]
fn what_if_a_node_lost_its_log_tail_or_held_another_state() {
    run_seeded(12, async {
        let (sim, leader, follower) = cluster(12).await;
        let (_, index) = sim.write(credit("a", 6), TEN_S).await.expect("applied");
        sim.wait_until(TEN_S, |s| s.inspect(follower).applied == Some(index))
            .await
            .expect("replicated");
        // The log can only be changed on a node that is down.
        assert_eq!(
            sim.what_if_truncate_log(follower, index),
            Err(WhatIfError::NodeUp(follower))
        );
        sim.crash(follower).await;
        sim.what_if_truncate_log(follower, index).unwrap();
        assert!(sim.log(follower).iter().all(|e| e.pos.index < index));
        // Restarted, it gets the entry again from the leader.
        sim.restart(follower).await;
        let back = sim
            .wait_until(TEN_S, |s| balance(s, follower, "a") == Some(6))
            .await;
        assert!(back.is_some());
        // The applied state changed on one node only, outside the log.
        sim.what_if_state(follower, |s| s.bank = Default::default())
            .unwrap();
        assert_eq!(balance(&sim, follower, "a"), None);
        assert_eq!(balance(&sim, leader, "a"), Some(6));
        // An entry appended to a down node's disk shows in its log as given.
        let term = sim.inspect(leader).term;
        assert_eq!(
            sim.what_if_append_log(follower, term, leader, credit("a", 50)),
            Err(WhatIfError::NodeUp(follower))
        );
        sim.crash(follower).await;
        let at = sim
            .what_if_append_log(follower, term, leader, credit("a", 50))
            .unwrap();
        let last = sim.log(follower).pop().unwrap();
        assert_eq!((last.pos.index, last.pos.term), (at, term));
        assert_eq!(last.command(), Some(&credit("a", 50)));
    });
}
