//! Table-driven and property tests of the pure core.

use proptest::prelude::*;

use crate::bank::{BankCommand, BankReply};
use crate::{Command, CommandError, Ctx, Outcome, Proposal, Reply, State, apply, idempotency};
use switchyard_types::ErrorCode;

fn bank(cmd: BankCommand) -> Command {
    Command::Bank(cmd)
}

fn run(state: &mut State, index: u64, time_ms: i64, cmd: Command) -> Outcome {
    apply(state, &Proposal::new(time_ms, cmd), Ctx { index }).0
}

fn open(id: &str) -> Command {
    bank(BankCommand::Open { id: id.into() })
}
fn credit(id: &str, amount: u64) -> Command {
    bank(BankCommand::Credit {
        id: id.into(),
        amount,
    })
}
fn debit(id: &str, amount: u64) -> Command {
    bank(BankCommand::Debit {
        id: id.into(),
        amount,
    })
}

#[test]
fn bank_commands_answer_as_documented() {
    // Why: each row is one rule of the bank; the table keeps them side by side.
    let mut s = State::default();
    assert!(run(&mut s, 1, 0, open("alice")).is_ok());
    assert!(run(&mut s, 2, 0, open("bob")).is_ok());
    let cases: Vec<(Command, Result<u64, ErrorCode>)> = vec![
        (open("alice"), Err(ErrorCode::Conflict)),
        (open(""), Err(ErrorCode::Invalid)),
        (open("a/b"), Err(ErrorCode::Invalid)),
        (credit("alice", 100), Ok(100)),
        (credit("alice", 0), Err(ErrorCode::Invalid)),
        (credit("carol", 5), Err(ErrorCode::NotFound)),
        (debit("alice", 101), Err(ErrorCode::InsufficientFunds)),
        (debit("alice", 40), Ok(60)),
        (credit("alice", u64::MAX), Err(ErrorCode::Invalid)),
    ];
    for (i, (cmd, want)) in cases.into_iter().enumerate() {
        let before = s.clone();
        let got = run(&mut s, 10 + i as u64, 0, cmd.clone());
        match (got, want) {
            (Ok(Reply::Bank(BankReply::Account(a))), Ok(balance)) => {
                assert_eq!(a.balance, balance, "{cmd:?}");
                assert_eq!(a.revision, 10 + i as u64, "{cmd:?}");
            }
            (Err(e), Err(code)) => {
                assert_eq!(e.code(), code, "{cmd:?}");
                assert_eq!(s, before, "a refused command changed state: {cmd:?}");
            }
            (got, want) => panic!("{cmd:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn transfer_is_atomic_and_emits_both_sides_in_one_revision() {
    let mut s = State::default();
    run(&mut s, 1, 0, open("a")).unwrap();
    run(&mut s, 2, 0, open("b")).unwrap();
    run(&mut s, 3, 0, credit("a", 10)).unwrap();
    let t = Command::Bank(BankCommand::Transfer {
        from: "a".into(),
        to: "b".into(),
        amount: 7,
    });
    let (out, events) = apply(&mut s, &Proposal::new(0, t.clone()), Ctx { index: 4 });
    match out.unwrap() {
        Reply::Bank(BankReply::Transfer { from, to, revision }) => {
            assert_eq!((from.balance, to.balance, revision), (3, 7, 4));
        }
        other => panic!("unexpected {other:?}"),
    }
    let topics: Vec<_> = events.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(topics, ["bank/accounts/a", "bank/accounts/b"]);

    // Why: a transfer larger than the balance must leave both accounts untouched.
    let before = s.clone();
    let (out, events) = apply(&mut s, &Proposal::new(0, t), Ctx { index: 5 });
    assert!(matches!(out, Err(CommandError::InsufficientFunds { .. })));
    assert!(events.is_empty());
    assert_eq!(s, before);
}

#[test]
fn idempotency_key_replays_first_outcome_and_expires_by_timer() {
    let mut s = State::default();
    run(&mut s, 1, 1_000, open("a")).unwrap();
    let keyed = |cmd: Command| Proposal {
        time_ms: 2_000,
        idempotency_key: Some("k1".into()),
        idempotency_window_ms: idempotency::DEFAULT_WINDOW_MS,
        command: cmd,
    };
    let (first, ev1) = apply(&mut s, &keyed(credit("a", 5)), Ctx { index: 2 });
    let (again, ev2) = apply(&mut s, &keyed(credit("a", 5)), Ctx { index: 3 });
    assert_eq!(
        first, again,
        "a retry answers what the first request answered"
    );
    assert_eq!((ev1.len(), ev2.len()), (1, 0), "the retry emits nothing");
    assert_eq!(
        s.bank.get("a").unwrap().balance,
        5,
        "the retry applied nothing"
    );

    let (other, _) = apply(&mut s, &keyed(credit("a", 6)), Ctx { index: 4 });
    assert!(matches!(other, Err(CommandError::Conflict { .. })));

    // Why: the record is kept for the window and dropped by the timer when the window ends.
    assert_eq!(
        s.timers.next_due(),
        Some(2_000 + idempotency::DEFAULT_WINDOW_MS)
    );
    run(
        &mut s,
        5,
        2_000 + idempotency::DEFAULT_WINDOW_MS - 1,
        Command::Tick,
    )
    .unwrap();
    assert_eq!(s.idempotency.len(), 1);
    let fired = run(
        &mut s,
        6,
        2_000 + idempotency::DEFAULT_WINDOW_MS,
        Command::Tick,
    )
    .unwrap();
    assert_eq!(fired, Reply::Ticked { fired: 1 });
    assert!(s.idempotency.is_empty() && s.timers.is_empty());
}

#[test]
fn stamped_time_never_goes_backwards() {
    let mut s = State::default();
    run(&mut s, 1, 5_000, Command::Tick).unwrap();
    run(&mut s, 2, 4_000, Command::Tick).unwrap();
    assert_eq!(s.now_ms, 5_000);
}

fn arb_command() -> impl Strategy<Value = Command> {
    let id = prop::sample::select(vec!["a", "b", "c", "d"]);
    prop_oneof![
        id.clone().prop_map(open),
        (id.clone(), 0u64..200).prop_map(|(i, n)| credit(i, n)),
        (id.clone(), 0u64..200).prop_map(|(i, n)| debit(i, n)),
        (id.clone(), id, 0u64..200).prop_map(|(f, t, n)| bank(BankCommand::Transfer {
            from: f.into(),
            to: t.into(),
            amount: n,
        })),
        Just(Command::Tick),
    ]
}

proptest! {
    #[test]
    fn random_bank_sequences_conserve_money_and_replay_identically(
        cmds in prop::collection::vec((arb_command(), any::<bool>()), 0..200)
    ) {
        let log: Vec<Proposal> = cmds
            .into_iter()
            .enumerate()
            .map(|(i, (c, keyed))| Proposal {
                time_ms: i as i64 * 10,
                idempotency_key: keyed.then(|| format!("k{}", i % 7)),
                idempotency_window_ms: 500,
                command: c,
            })
            .collect();
        let mut s = State::default();
        let mut outcomes = Vec::new();
        for (i, p) in log.iter().enumerate() {
            let (out, _) = apply(&mut s, p, Ctx { index: i as u64 + 1 });
            outcomes.push(out);
            // Invariant: money is conserved after every command.
            prop_assert_eq!(s.bank.total_balance(), s.bank.total_credited - s.bank.total_debited);
        }
        // Balances are u64, so "never negative" means no debit was accepted beyond a balance:
        // that is exactly what conservation with unsigned balances enforces.
        let mut replay = State::default();
        let mut replay_outcomes = Vec::new();
        for (i, p) in log.iter().enumerate() {
            replay_outcomes.push(apply(&mut replay, p, Ctx { index: i as u64 + 1 }).0);
        }
        prop_assert_eq!(&s, &replay);
        prop_assert_eq!(outcomes, replay_outcomes);
    }
}

mod devices {
    use super::*;
    use crate::devices::{DeviceCommand, DeviceReply, types::builtin};

    fn create(name: &str, ty: &str) -> Command {
        let def = builtin().into_iter().find(|t| t.name == ty).unwrap();
        Command::Devices(DeviceCommand::Create {
            name: name.into(),
            def,
        })
    }

    fn run_cmd(name: &str, command: &str, duration_ms: Option<i64>, args: Option<&str>) -> Command {
        Command::Devices(DeviceCommand::Run {
            name: name.into(),
            command: command.into(),
            duration_ms,
            args_json: args.map(str::to_string),
        })
    }

    fn attr(s: &State, dev: &str, a: &str) -> Option<String> {
        s.devices.get(dev).unwrap().attributes[a].clone()
    }

    #[test]
    fn a_switch_transition_takes_its_duration_and_refuses_commands_meanwhile() {
        let mut s = State::default();
        run(&mut s, 1, 1_000, create("sw", "switch")).unwrap();
        let started = run(
            &mut s,
            2,
            1_000,
            run_cmd("sw", "switch_on", Some(500), None),
        )
        .unwrap();
        let Reply::Devices(r) = started else { panic!() };
        let DeviceReply::Started(st) = *r else {
            panic!("expected a transition")
        };
        assert_eq!(
            (st.transition.id, st.transition.phase.as_str()),
            (2, "switching_on")
        );
        assert_eq!(
            st.device.state.as_deref(),
            Some("OFF"),
            "the state changes when done"
        );

        // Why: a second command while in flight is refused and changes nothing.
        let before = s.clone();
        let refused = run(&mut s, 3, 1_100, run_cmd("sw", "switch_off", None, None));
        assert!(
            matches!(refused, Err(CommandError::Busy { .. })),
            "{refused:?}"
        );
        let mut expected = before;
        expected.now_ms = 1_100;
        assert_eq!(s, expected);

        // A tick before the due time fires nothing; at the due time the switch is ON.
        assert_eq!(
            run(&mut s, 4, 1_499, Command::Tick).unwrap(),
            Reply::Ticked { fired: 0 }
        );
        assert_eq!(
            run(&mut s, 5, 1_500, Command::Tick).unwrap(),
            Reply::Ticked { fired: 1 }
        );
        assert_eq!(attr(&s, "sw", "state").as_deref(), Some("ON"));
        assert!(s.devices.get("sw").unwrap().transition.is_none());
        let h = s.devices.history("sw").unwrap();
        assert_eq!((h[0].outcome.as_str(), h[0].revision), ("completed", 5));

        // switch_on on an ON switch is a successful no-op.
        let noop = run(&mut s, 6, 2_000, run_cmd("sw", "switch_on", None, None)).unwrap();
        assert!(matches!(noop, Reply::Devices(r) if matches!(*r, DeviceReply::Device(_))));
        assert_eq!(s.devices.get("sw").unwrap().revision, 5);
    }

    #[test]
    fn mv_phases_follow_the_table_and_late_ticks_keep_the_schedule() {
        let mut s = State::default();
        run(&mut s, 1, 0, create("mv", "mv")).unwrap();
        let r = run(&mut s, 2, 0, run_cmd("mv", "assign_resources", None, None));
        assert!(matches!(r, Err(CommandError::NotAllowed { .. })), "{r:?}");
        run(&mut s, 3, 0, run_cmd("mv", "switch_on", Some(100), None)).unwrap();
        assert_eq!(attr(&s, "mv", "state").as_deref(), Some("BUSY"));
        run(&mut s, 4, 100, Command::Tick).unwrap();
        assert_eq!(attr(&s, "mv", "state").as_deref(), Some("ON"));
        assert_eq!(attr(&s, "mv", "obs_state").as_deref(), Some("EMPTY"));

        let args = r#"{"config": {"delay": 0.2}}"#;
        run(
            &mut s,
            5,
            1_000,
            run_cmd("mv", "assign_resources", Some(100), Some(args)),
        )
        .unwrap();
        assert_eq!(attr(&s, "mv", "obs_state").as_deref(), Some("BUSY"));
        // A late tick (at 1_150, due 1_100) moves on; the next phase is due 200 ms after 1_100.
        run(&mut s, 6, 1_150, Command::Tick).unwrap();
        assert_eq!(attr(&s, "mv", "obs_state").as_deref(), Some("RESOURCING"));
        assert_eq!(s.timers.next_due(), Some(1_300));
        run(&mut s, 7, 1_300, Command::Tick).unwrap();
        assert_eq!(attr(&s, "mv", "obs_state").as_deref(), Some("IDLE"));
    }

    #[test]
    fn abort_restores_and_bad_durations_are_refused() {
        let mut s = State::default();
        run(&mut s, 1, 0, create("sw", "switch")).unwrap();
        for (d, args) in [(Some(3_600_001), None), (None, Some("[1"))] {
            let r = run(&mut s, 2, 0, run_cmd("sw", "switch_on", d, args));
            assert!(matches!(r, Err(CommandError::Invalid { .. })), "{r:?}");
        }
        let r = run(&mut s, 2, 0, run_cmd("sw", "explode", None, None));
        assert!(matches!(r, Err(CommandError::NotFound { .. })));
        let r = run(
            &mut s,
            2,
            0,
            Command::Devices(DeviceCommand::Abort { name: "sw".into() }),
        );
        assert!(
            matches!(r, Err(CommandError::NotAllowed { .. })),
            "nothing to abort"
        );

        run(&mut s, 3, 0, run_cmd("sw", "switch_on", Some(1_000), None)).unwrap();
        run(
            &mut s,
            4,
            10,
            Command::Devices(DeviceCommand::Abort { name: "sw".into() }),
        )
        .unwrap();
        assert_eq!(attr(&s, "sw", "state").as_deref(), Some("OFF"));
        // The stale timer fires into nothing.
        run(&mut s, 5, 1_000, Command::Tick).unwrap();
        assert_eq!(attr(&s, "sw", "state").as_deref(), Some("OFF"));
        assert_eq!(s.devices.history("sw").unwrap()[0].outcome, "aborted");
    }
}

mod device_properties {
    use super::*;
    use crate::devices::{DeviceCommand, types::builtin};

    fn arb_device_command() -> impl Strategy<Value = Command> {
        let name = prop::sample::select(vec!["s", "m"]);
        let cmd = prop::sample::select(vec![
            "switch_on",
            "switch_off",
            "assign_resources",
            "release_resources",
            "configure",
            "scan",
            "clear_config",
        ]);
        prop_oneof![
            4 => (name.clone(), cmd, prop::option::of(0i64..300), prop::option::of(0u32..300)).prop_map(
                |(n, c, d, delay)| Command::Devices(DeviceCommand::Run {
                    name: n.into(),
                    command: c.into(),
                    duration_ms: d,
                    args_json: delay.map(|ms| format!(r#"{{"config": {{"delay": {}}}}}"#, ms as f64 / 1000.0)),
                })
            ),
            1 => name.clone().prop_map(|n| Command::Devices(DeviceCommand::Abort { name: n.into() })),
            1 => name.prop_map(|n| Command::Devices(DeviceCommand::Reset { name: n.into() })),
            3 => Just(Command::Tick),
        ]
    }

    proptest! {
        #[test]
        fn random_device_sequences_replay_identically_and_keep_invariants(
            cmds in prop::collection::vec((arb_device_command(), 0i64..200), 0..150)
        ) {
            let types = builtin();
            let mut log = vec![
                Proposal::new(0, Command::Devices(DeviceCommand::Create { name: "s".into(), def: types[0].clone() })),
                Proposal::new(0, Command::Devices(DeviceCommand::Create { name: "m".into(), def: types[1].clone() })),
            ];
            let mut t = 0;
            for (c, dt) in cmds {
                t += dt;
                log.push(Proposal::new(t, c));
            }
            let play = |log: &[Proposal]| {
                let mut s = State::default();
                let mut out = Vec::new();
                for (i, p) in log.iter().enumerate() {
                    out.push(apply(&mut s, p, Ctx { index: i as u64 + 1 }));
                }
                (s, out)
            };
            let (s, out) = play(&log);
            for d in s.devices.list() {
                // A device in flight has its phase end in the future of its start, and every
                // finished transition ended no earlier than it started.
                if let Some(tr) = &d.transition {
                    prop_assert!(tr.phase_due_at >= tr.started_at);
                }
                for h in s.devices.history(&d.name).unwrap() {
                    prop_assert!(h.finished_at >= h.started_at, "{h:?}");
                }
            }
            let (s2, out2) = play(&log);
            prop_assert_eq!(s, s2);
            prop_assert_eq!(out, out2);
        }
    }
}
