//! The TestbedOS face against its original client: the released CLI's exact sequence of
//! requests, with its message types (`common/testbed_cli.rs`), on a real `switchyard serve`.
//! With `SWITCHYARD_TESTBED_CLI` naming a built `kvm-compose` binary, the real CLI runs too.

use std::path::Path;

use serde_json::{Value, json};
use tempfile::TempDir;

mod common;
use common::testbed_cli::*;

/// A server whose `up` prints two lines, `down` one (and fails while `fail-down` exists),
/// `snapshot` one, `testbed_snapshot` exits 3, and `exec` cannot start.
fn server(dir: &Path) -> common::Proc {
    let fail = dir.join("fail-down");
    let scripts = [
        (
            "up.sh",
            "echo \"provisioning $1\"\necho ready\n".to_string(),
        ),
        (
            "down.sh",
            format!(
                "echo stopping\nif [ -f '{}' ]; then echo 'no network' >&2; exit 4; fi\n",
                fail.display()
            ),
        ),
        ("snap.sh", "echo \"snapshot $1\"\n".to_string()),
        ("tbsnap.sh", "echo packing\nexit 3\n".to_string()),
    ];
    let mut toml = String::new();
    for (name, body) in &scripts {
        let path = common::script(dir, name, body);
        let action = match *name {
            "up.sh" => "up",
            "down.sh" => "down",
            "snap.sh" => "snapshot",
            _ => "testbed_snapshot",
        };
        let args = match action {
            "up" => ", \"{name}\", \"{args}\"",
            "snapshot" => ", \"{args}\"",
            _ => "",
        };
        toml.push_str(&format!(
            "[actions.{action}]\ncommand = [\"{}\"{args}]\n",
            path.display()
        ));
    }
    toml.push_str("[actions.exec]\ncommand = [\"./no-such-program\"]\n");
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, toml).unwrap();
    let data = dir.join("data");
    common::serve_in(
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--testbed-listen",
            "127.0.0.1:0",
        ],
    )
}

fn cli_of(proc: &common::Proc, location: &Path) -> Cli {
    Cli {
        http: reqwest::Client::new(),
        base: format!("http://{}/", proc.testbed.as_ref().unwrap()),
        name: "web".into(),
        location: location.to_str().unwrap().into(),
    }
}

/// The raw JSON of the deployment, which must parse as the CLI's `Deployment` and write back
/// the same.
async fn round_trip(cli: &Cli) -> Deployment {
    let raw: Value = cli
        .http
        .get(format!("{}api/deployments/{}", cli.base, cli.name))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d: Deployment = serde_json::from_value(raw.clone()).expect("a Deployment");
    assert_eq!(serde_json::to_value(&d).unwrap(), raw, "round trip");
    d
}

fn up() -> DeploymentCommand {
    DeploymentCommand::Up {
        up_cmd: UpCmd {
            provision: true,
            rerun_scripts: false,
            reapply_acl: false,
        },
    }
}

#[tokio::test]
async fn the_clis_sequence_runs_up_down_snapshot_a_failure_reset_and_delete() {
    let dir = TempDir::new().unwrap();
    let proc = server(dir.path());
    let project = dir.path().join("web");
    std::fs::create_dir(&project).unwrap();
    let cli = cli_of(&proc, &project);

    // First use: the CLI creates the deployment; its cluster configuration parses.
    let d = common::within(20, "prepare", cli.prepare()).await;
    assert_eq!(d.state, DeploymentState::Down);
    assert!(
        cli.cluster_config()
            .await
            .testbed_host_ssh_config
            .is_empty()
    );

    // up: Init runs the up action; its answer carries the action's log, then its outcome; the
    // instructions that follow are acknowledged and answered; the state is final at once.
    let s = common::within(60, "up", cli.orchestrate(&d, &up(), &up_instructions())).await;
    assert_eq!(s.answers.len(), 1 + up_instructions().len(), "{s:?}");
    assert!(s.answers.iter().all(|a| a.is_success()), "{s:?}");
    assert_eq!(
        s.info[..2],
        ["provisioning web".to_string(), "ready".into()]
    );
    assert!(s.info[2].starts_with("up succeeded"), "{:?}", s.info);
    assert!(s.failed.is_empty());
    assert!(s.successful());
    assert_eq!(s.deployment.unwrap().state, DeploymentState::Up);
    let d = round_trip(&cli).await;

    // down, then a snapshot from down, which returns to down (as the original does).
    let s = cli
        .orchestrate(&d, &DeploymentCommand::Down, &down_instructions())
        .await;
    assert!(s.successful(), "{s:?}");
    assert_eq!(s.info[0], "stopping");
    assert_eq!(s.deployment.unwrap().state, DeploymentState::Down);
    let snapshot = DeploymentCommand::Snapshot {
        snapshot_cmd: SnapshotSubCommand::Info { name: "g1".into() },
    };
    let then = [json!({"instruction": {"Snapshot": {"info": {"name": "g1"}}}})];
    let s = cli.orchestrate(&d, &snapshot, &then).await;
    assert!(s.successful(), "{s:?}");
    assert!(
        s.info[0].starts_with("snapshot {\"command\":{\"snapshot\""),
        "{s:?}"
    );
    assert_eq!(s.deployment.unwrap().state, DeploymentState::Down);
    let active = cli
        .http
        .get(format!("{}api/active-deployments", cli.base))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(active, json!({}), "a deployment back down is not active");

    // A failing action: the answer says why, the CLI stops sending, and the deployment reads
    // failed with the very command, which the CLI parses.
    let tb = DeploymentCommand::TestbedSnapshot {
        snapshot_guests: true,
    };
    let then = [json!({"instruction": {"TestbedSnapshot": {"snapshot_guests": true}}})];
    let s = cli.orchestrate(&d, &tb, &then).await;
    assert_eq!(s.answers.len(), 1, "nothing sent after a failure: {s:?}");
    assert_eq!(s.info, ["packing"]);
    assert_eq!(s.failed.len(), 1);
    assert!(s.failed[0].contains("exit code 3"), "{:?}", s.failed);
    assert!(!s.successful());
    assert_eq!(
        s.deployment.unwrap().state,
        DeploymentState::Failed(tb.clone())
    );
    round_trip(&cli).await;

    // reset-state: PUT of the deployment with state down.
    assert_eq!(cli.reset_state().await, 200);
    assert_eq!(round_trip(&cli).await.state, DeploymentState::Down);

    // A command that cannot start: the reason is in the answer.
    let exec = DeploymentCommand::Exec(ExecCmd {
        guest_name: "g1".into(),
        command_type: ExecCmdType::ShellCommand(ExecCmdShellCommand {
            command: vec!["ls".into()],
        }),
    });
    let s = cli.orchestrate(&d, &exec, &[]).await;
    assert!(
        s.failed[0].contains("could not start"),
        "the reason: {:?}",
        s.failed
    );
    assert_eq!(s.deployment.unwrap().state, DeploymentState::Failed(exec));
    assert_eq!(cli.reset_state().await, 200);

    // Not an Init first: the original's refusal; nothing changes.
    let url = format!(
        "{}api/orchestration/ws",
        cli.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Text("hello".into())).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1011);
            assert!(f.reason.contains("Init"), "{f:?}");
        }
        other => panic!("expected a close: {other:?}"),
    }
    assert_eq!(round_trip(&cli).await.state, DeploymentState::Down);

    // Delete, then it is gone.
    let r = cli
        .http
        .delete(format!("{}api/deployments/web", cli.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(cli.read_deployment().await.is_none());
}

#[tokio::test]
async fn every_state_the_face_shows_parses_as_the_clis_deployment_state() {
    let dir = TempDir::new().unwrap();
    let proc = server(dir.path());
    let cli = cli_of(&proc, Path::new("/srv/web"));
    let d = cli.prepare().await;
    let v1 = |path: &str| format!("{}{path}", proc.url());
    let http = reqwest::Client::new();

    // A reset to a failed state keeps the command whole, options included.
    let failed_up = DeploymentState::Failed(up());
    let mut put = d.clone();
    put.state = failed_up.clone();
    let r = http
        .put(format!("{}api/deployments/web", cli.base))
        .json(&put)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(round_trip(&cli).await.state, failed_up);
    // A state that is not the original's is refused, naming the field; nothing changes.
    let mut bad = serde_json::to_value(&put).unwrap();
    bad["state"] = json!({"failed": {"up": {}}});
    let r = http
        .put(format!("{}api/deployments/web", cli.base))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("state.failed.up"), "{text}");
    assert_eq!(round_trip(&cli).await.state, failed_up);

    // Actions started through /v1 (no original command to show): a custom action and a
    // snapshot read as the original's exec of a user script, and running is running.
    for (action, template) in [("check", "./no-such-check"), ("snapshot", "./no-such-snap")] {
        let spec = json!({"name": action, "actions": {action: [template, "--all"]}});
        let r = http
            .post(v1("/v1/deployments"))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let r = http
            .post(v1(&format!("/v1/deployments/{action}/actions/{action}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    common::within(30, "both /v1 actions to fail", async {
        loop {
            let list: DeploymentList = cli
                .http
                .get(format!("{}api/deployments", cli.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .expect("the whole list parses as the CLI's DeploymentList");
            let failed = ["check", "snapshot"]
                .iter()
                .filter(|n| matches!(list.deployments[**n].state, DeploymentState::Failed(_)))
                .count();
            if failed == 2 {
                return list;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    for name in ["check", "snapshot"] {
        let c = Cli {
            name: name.into(),
            ..cli_of(&proc, Path::new("/srv/web"))
        };
        let state = round_trip(&c).await.state;
        let DeploymentState::Failed(DeploymentCommand::Exec(e)) = state else {
            panic!("{name}: {state:?}");
        };
        let ExecCmdType::UserScript(script) = e.command_type else {
            panic!("{name}: a user script");
        };
        assert_eq!(script.script[0], name);
    }
}

#[tokio::test]
async fn a_client_joins_without_ovn_and_the_membership_check_answers_a_bare_200() {
    let dir = TempDir::new().unwrap();
    let proc = server(dir.path());
    let base = format!("http://{}", proc.testbed.as_ref().unwrap());
    let http = reqwest::Client::new();
    // host.json without `ovn`: the original's default chassis name, "ovn".
    let host = SshConfig {
        ip: "127.0.0.1".into(),
        user: "tb".into(),
        identity_file: "/home/tb/.ssh/id".into(),
        testbed_nic: "eth1".into(),
        main_interface: "eth0".into(),
        is_main_host: None,
        ovn: None,
    };
    let mut body = serde_json::to_value(&host).unwrap();
    body.as_object_mut().unwrap().remove("ovn");
    let r = http
        .post(format!("{base}/api/cluster"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tcp:127.0.0.1:6642");
    // The client's check compares the status alone: 200 with an empty body.
    let r = http
        .get(format!("{base}/api/cluster/ovn"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let r = http
        .get(format!("{base}/api/cluster/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (404, String::new())
    );
    // An `ovn` without its chassis name is refused, naming it.
    body["ovn"] = json!({});
    let r = http
        .post(format!("{base}/api/cluster"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("ovn.chassis_name"));
    // The cluster document lists the client and parses as the CLI's configuration.
    let cli = cli_of(&proc, Path::new("/srv/web"));
    let config = cli.cluster_config().await;
    assert_eq!(config.testbed_host_ssh_config["ovn"].ip, "127.0.0.1");
}

/// The released CLI itself, when `SWITCHYARD_TESTBED_CLI` names its binary (built from
/// Bristol-Cyber-Security-Group/testbed-os v1.1.0, `kvm-compose-cli`): `down` that works and
/// one that fails, and `deployment reset-state`, judged by what it prints (it exits 0 either
/// way).
#[tokio::test]
async fn the_released_cli_runs_against_the_face() {
    let Some(bin) = std::env::var_os("SWITCHYARD_TESTBED_CLI") else {
        eprintln!("SWITCHYARD_TESTBED_CLI is not set: the released CLI is not run");
        return;
    };
    let dir = TempDir::new().unwrap();
    let proc = server(dir.path());
    let project = dir.path().join("web");
    std::fs::create_dir(&project).unwrap();
    let base = format!("http://{}/", proc.testbed.as_ref().unwrap());
    let run = async |args: &[&str]| {
        let run = tokio::process::Command::new(&bin)
            .arg("--server-connection")
            .arg(&base)
            .args(args)
            .current_dir(&project)
            .kill_on_drop(true)
            .output();
        // The CLI hangs on some answers it cannot parse: a bound, not a wait.
        let out = common::within(120, "the CLI", run)
            .await
            .expect("the CLI runs");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let cli = cli_of(&proc, &project);
    // `up` reads the testbed's configuration on the CLI's machine; run it where there is one.
    if Path::new("/var/lib/testbedos/config/kvm-compose-config.json").exists() {
        std::fs::write(project.join("kvm-compose.yaml"), "network:\n  ovn: {}\n").unwrap();
        let out = run(&["up"]).await;
        assert!(out.contains("the command was successful"), "{out}");
        assert!(out.contains("provisioning web"), "the action's log: {out}");
        assert_eq!(round_trip(&cli).await.state, DeploymentState::Up);
    } else {
        eprintln!("no /var/lib/testbedos/config/kvm-compose-config.json: `up` is not run");
    }
    let out = run(&["down"]).await;
    assert!(out.contains("the command was successful"), "{out}");
    assert!(out.contains("stopping"), "the action's log: {out}");
    assert_eq!(round_trip(&cli).await.state, DeploymentState::Down);

    std::fs::write(dir.path().join("fail-down"), "").unwrap();
    let out = run(&["down"]).await;
    assert!(out.contains("not successful"), "{out}");
    assert!(out.contains("exit code 4"), "{out}");
    assert_eq!(
        round_trip(&cli).await.state,
        DeploymentState::Failed(DeploymentCommand::Down)
    );
    let out = run(&["deployment", "reset-state", "web"]).await;
    assert!(!out.contains("ERROR"), "{out}");
    assert_eq!(round_trip(&cli).await.state, DeploymentState::Down);
}
