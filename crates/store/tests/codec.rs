//! Everything the Raft log and snapshots hold survives postcard: every command kind, and a
//! state holding every app's data, decode to what was encoded. And the stored format does not
//! change under a data directory's feet: samples written in the current format
//! (`tests/data/format-N.bin`, N = `switchyard_store::FORMAT`) still decode and re-encode to
//! the same bytes.

use std::collections::BTreeMap;

use switchyard_core::agents::{AgentCommand, AgentInfo};
use switchyard_core::bank::BankCommand;
use switchyard_core::beers::BeerCommand;
use switchyard_core::deployments::{DeploymentCommand, Spec};
use switchyard_core::devices::DeviceCommand;
use switchyard_core::devices::types::builtin;
use switchyard_core::jobs::{Ending, JobCommand};
use switchyard_core::runs::{RunCommand, RunSpec, expand_matrix};
use switchyard_core::{Command, Ctx, Outcome, Proposal, State, apply};
use switchyard_types::{JobSpec, LogStream, NewLogLine};

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    let bytes = postcard::to_allocvec(v).expect("encodes");
    postcard::from_bytes(&bytes).expect("decodes")
}

#[test]
fn every_command_and_the_state_roundtrip_through_postcard() {
    // A spec read from JSON as a shell line, with every optional field set.
    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "command": "echo hi", "queue": "q1", "timeout": 5, "max_attempts": 2, "lease_ttl": 9,
        "env": {"A": "1"}, "labels": {"zone": "a"}, "priority": -3, "cwd": "/tmp"
    }))
    .unwrap();
    let matrix = vec![
        (
            "browser".to_string(),
            vec!["chrome".into(), "firefox".into()],
        ),
        (
            "viewport".to_string(),
            vec!["desktop".into(), "mobile".into()],
        ),
    ];
    let skip = BTreeMap::from([
        ("browser".to_string(), "firefox".to_string()),
        ("viewport".to_string(), "mobile".to_string()),
    ]);
    let (cells, excluded) = expand_matrix(&matrix, &[skip], 100).unwrap();
    let commands = vec![
        Command::Bank(BankCommand::Open { id: "a".into() }),
        Command::Jobs(JobCommand::Enqueue {
            retention_ms: switchyard_core::jobs::DEFAULT_RETENTION_MS,
            specs: vec![spec.clone(), spec],
        }),
        Command::Agents(AgentCommand::Join(AgentInfo {
            id: "w1".into(),
            hostname: "h".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            version: "1".into(),
            queues: vec!["q1".into()],
            host_json: r#"{"ip":"10.0.0.1"}"#.into(),
            ttl_s: 5,
            url: Some("http://h:1".into()),
        })),
        Command::Jobs(JobCommand::Lease {
            worker: "w1".into(),
            queue: "q1".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            max: 1,
        }),
        Command::Jobs(JobCommand::Log {
            id: 0,
            token: 4,
            seq: 0,
            lines: vec![NewLogLine {
                stream: LogStream::Stderr,
                time_ms: 7,
                text: "hello".into(),
            }],
            cap_bytes: 1 << 20,
        }),
        Command::Agents(AgentCommand::Heartbeat {
            id: "w1".into(),
            leases: vec![(0, 4)],
        }),
        Command::Jobs(JobCommand::Finish {
            id: 0,
            token: 4,
            ending: Ending::Exited,
            exit_code: Some(0),
            error: None,
        }),
        Command::Jobs(JobCommand::Cancel { id: 1 }),
        Command::Deployments(DeploymentCommand::Create(Spec {
            name: "web".into(),
            actions: BTreeMap::from([("up".into(), vec!["up.sh".into(), "{args}".into()])]),
            dir: Some("/srv".into()),
            queue: "q1".into(),
            labels: BTreeMap::new(),
            timeout: Some(5),
            env: BTreeMap::new(),
        })),
        Command::Deployments(DeploymentCommand::Act {
            name: "web".into(),
            action: "up".into(),
            args: vec!["a b".into()],
            retention_ms: 86_400_000,
        }),
        Command::Deployments(DeploymentCommand::SetDocument {
            name: "web".into(),
            document: "{\"machines\": []}".into(),
        }),
        Command::Deployments(DeploymentCommand::Create(Spec {
            name: "db".into(),
            actions: BTreeMap::from([("up".into(), vec!["up.sh".into()])]),
            dir: None,
            queue: "q1".into(),
            labels: BTreeMap::new(),
            timeout: None,
            env: BTreeMap::new(),
        })),
        Command::Deployments(DeploymentCommand::Amend {
            name: "db".into(),
            dir: Some("/srv/db".into()),
            state: switchyard_core::deployments::State::Failed,
            failed_action: Some("up".into()),
        }),
        Command::Deployments(DeploymentCommand::Delete {
            name: "db".into(),
            refuse_up: true,
        }),
        Command::Devices(DeviceCommand::Create {
            name: "sw".into(),
            def: builtin().into_iter().find(|t| t.name == "switch").unwrap(),
        }),
        Command::Devices(DeviceCommand::Run {
            name: "sw".into(),
            command: "switch_on".into(),
            duration_ms: Some(0),
            args_json: None,
        }),
        Command::Beers(BeerCommand::Pour {
            tap_id: 1,
            volume: "450".into(),
        }),
        Command::Runs(RunCommand::Create(Box::new(RunSpec {
            name: "matrix".into(),
            cells,
            excluded,
            job: serde_json::from_value(serde_json::json!({"command": ["t", "{browser}"]}))
                .unwrap(),
            retention_ms: 60_000,
            keep: 10,
        }))),
        Command::Tick,
        // Format 3.
        Command::Deployments(DeploymentCommand::Create(Spec {
            name: "cache".into(),
            actions: BTreeMap::from([("snapshot".into(), vec!["snap.sh".into()])]),
            dir: None,
            queue: "q1".into(),
            labels: BTreeMap::new(),
            timeout: None,
            env: BTreeMap::new(),
        })),
        Command::Deployments(DeploymentCommand::ActLeaving {
            name: "cache".into(),
            action: "snapshot".into(),
            args: vec![],
            retention_ms: 60_000,
            on_success: None,
        }),
    ];
    let mut state = State::default();
    let mut proposals = Vec::new();
    let mut outcomes = Vec::new();
    for (i, command) in commands.into_iter().enumerate() {
        let p = Proposal::new(1_000 + i as i64, command);
        assert_eq!(roundtrip(&p), p);
        proposals.push(p.clone());
        let (outcome, _) = apply(
            &mut state,
            &p,
            Ctx {
                index: i as u64 + 1,
            },
        );
        assert!(outcome.is_ok(), "command {i}: {outcome:?}");
        assert_eq!(roundtrip(&outcome), outcome);
        outcomes.push(outcome);
    }
    assert_eq!(state.jobs.get(0).unwrap().status.as_str(), "succeeded");
    assert_eq!(state.jobs.log(0, 0, 10).unwrap().lines.len(), 1);
    assert_eq!(roundtrip(&state), state);
    check_format_samples(&(proposals, outcomes, state));
}

/// The samples of every format this binary migrates from decode, whole, with today's types
/// and encode back to the same bytes: their data reads as it did (the migration only renames
/// the format).
#[test]
fn the_samples_of_the_formats_migrated_from_read_unchanged() {
    for from in switchyard_store::format::MIGRATES_FROM {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/data/format-{from}.bin"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (samples, rest) = postcard::take_from_bytes::<Samples>(&bytes)
            .unwrap_or_else(|e| panic!("{} no longer decodes: {e}", path.display()));
        assert!(rest.is_empty(), "{}: bytes left over", path.display());
        assert_eq!(
            postcard::to_allocvec(&samples).unwrap(),
            bytes,
            "{} re-encodes differently",
            path.display()
        );
        assert!(!samples.0.is_empty() && samples.2.deployments.iter().next().is_some());
    }
}

type Samples = (Vec<Proposal>, Vec<Outcome>, State);

/// The samples of the current format decode, whole, and encode back to the same bytes: a
/// change to a stored type that would misread existing data directories fails here until
/// `FORMAT` is raised. With `SWITCHYARD_BLESS_FORMAT=1` a missing sample file for the current
/// format is written from this test's data.
fn check_format_samples(fresh: &Samples) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/data/format-{}.bin",
        switchyard_store::FORMAT
    ));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if std::env::var_os("SWITCHYARD_BLESS_FORMAT").is_some() => {
            eprintln!("writing {} ({e})", path.display());
            let b = postcard::to_allocvec(fresh).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &b).unwrap();
            b
        }
        Err(e) => panic!(
            "{}: {e}; a new FORMAT needs its samples: run this test with \
             SWITCHYARD_BLESS_FORMAT=1 and commit the file",
            path.display()
        ),
    };
    let decoded = postcard::take_from_bytes::<Samples>(&bytes);
    let (samples, rest) = decoded.unwrap_or_else(|e| {
        panic!(
            "{} no longer decodes ({e}): a stored type changed its encoding; raise FORMAT in \
             crates/store/src/format.rs and record new samples (SWITCHYARD_BLESS_FORMAT=1)",
            path.display()
        )
    });
    assert!(
        rest.is_empty(),
        "{}: {} bytes left over: a stored type changed its encoding; raise FORMAT",
        path.display(),
        rest.len()
    );
    assert_eq!(
        postcard::to_allocvec(&samples).unwrap(),
        bytes,
        "{} re-encodes differently: a stored type changed its encoding; raise FORMAT",
        path.display()
    );
    // And they mean what they meant: the same values as this test builds today (a swapped
    // field or a changed integer type can keep the bytes and change the meaning). Should this
    // test's own data change, record the samples again for the same FORMAT.
    assert!(
        samples == *fresh,
        "{} decodes to other values than this test builds: if a stored type changed, raise \
         FORMAT; if only the test's data changed, record the samples again \
         (SWITCHYARD_BLESS_FORMAT=1 after deleting the file)",
        path.display()
    );
}
