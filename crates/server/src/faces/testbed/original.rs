//! The original's wire types, transcribed from TestbedOS (`kvm-compose-schemas`:
//! `deployment_models.rs`, `cli_models.rs`, `exec.rs`; `kvm-compose`:
//! `orchestration/api.rs`), so that what this face accepts and answers is what its client
//! parses. Field and variant names, casing and optionality are the original's; only the serde
//! attributes matter here (its clap attributes are left out).
//!
//! Commands are parsed into these types to be checked (a 400 names the field) and kept as the
//! JSON these types write (fields the original does not know are dropped, as it drops them), so
//! that a failed state reads back as it was given.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `DeploymentCommand`: what an action of a deployment is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentCommand {
    Up { up_cmd: UpCmd },
    Down,
    GenerateArtefacts,
    ClearArtefacts,
    Snapshot { snapshot_cmd: SnapshotSubCommand },
    TestbedSnapshot { snapshot_guests: bool },
    AnalysisTool(AnalysisToolsCmd),
    Exec(ExecCmd),
    ListCloudImages,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct UpCmd {
    pub provision: bool,
    pub rerun_scripts: bool,
    pub reapply_acl: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotSubCommand {
    Create(SnapshotInfo),
    Delete {
        name: Option<String>,
        snapshot: Option<String>,
        all: bool,
    },
    Info {
        name: String,
    },
    List(GuestSnapshot),
    Restore(SnapshotInfo),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct SnapshotInfo {
    pub name: Option<String>,
    pub snapshot: Option<String>,
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct GuestSnapshot {
    pub name: Option<String>,
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct AnalysisToolsCmd {
    pub tool: AnalysisToolsSubCmd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisToolsSubCmd {
    TcpDump {
        port_or_iface: String,
        output_file: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmd {
    pub guest_name: String,
    pub command_type: ExecCmdType,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecCmdType {
    ShellCommand(Argv),
    Tool(ExecCmdTool),
    UserScript(ExecCmdUserScript),
}

/// `ExecCmdShellCommand` and the tools' `Command`: one argv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct Argv {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmdTool {
    pub tool: TestbedTools,
}

/// serde's snake case of the original's `ADB` and `TLSIntercept` puts `_` before each capital.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestbedTools {
    #[serde(rename = "a_d_b")]
    Adb(Argv),
    FridaSetup,
    TestPermissions(Argv),
    TestPrivacy(Argv),
    #[serde(rename = "t_l_s_intercept")]
    TlsIntercept(Argv),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmdUserScript {
    pub run_on_main_testbed: bool,
    pub script: Vec<String>,
}

/// What a success of `command` leaves, by the original server's rule: `up` up, `down` and
/// `clear_artefacts` down, anything else the state before (`None`).
pub fn leaves(command: &DeploymentCommand) -> Option<switchyard_core::deployments::State> {
    use switchyard_core::deployments::State;
    match command {
        DeploymentCommand::Up { .. } => Some(State::Up),
        DeploymentCommand::Down | DeploymentCommand::ClearArtefacts => Some(State::Down),
        _ => None,
    }
}

/// The action (server template) a command runs: the command's name, `up`, `down`,
/// `snapshot`, `testbed_snapshot`, `exec`, ...
pub fn action_name(command: &DeploymentCommand) -> &'static str {
    match command {
        DeploymentCommand::Up { .. } => "up",
        DeploymentCommand::Down => "down",
        DeploymentCommand::GenerateArtefacts => "generate_artefacts",
        DeploymentCommand::ClearArtefacts => "clear_artefacts",
        DeploymentCommand::Snapshot { .. } => "snapshot",
        DeploymentCommand::TestbedSnapshot { .. } => "testbed_snapshot",
        DeploymentCommand::AnalysisTool(_) => "analysis_tool",
        DeploymentCommand::Exec(_) => "exec",
        DeploymentCommand::ListCloudImages => "list_cloud_images",
    }
}

/// The original's form of an action that was not started through this face (no command was
/// given): its commands without data by name, `up` and `testbed_snapshot` with their options
/// off, and any other action (a custom one, or a snapshot without its subcommand) as what it
/// is here, a script the server runs: `exec` of a user script `[action, args...]` on the main
/// testbed.
pub fn command_for_action(action: &str, args: &[String]) -> Value {
    let plain = match action {
        "up" => Some(DeploymentCommand::Up {
            up_cmd: UpCmd {
                provision: false,
                rerun_scripts: false,
                reapply_acl: false,
            },
        }),
        "down" => Some(DeploymentCommand::Down),
        "generate_artefacts" => Some(DeploymentCommand::GenerateArtefacts),
        "clear_artefacts" => Some(DeploymentCommand::ClearArtefacts),
        "list_cloud_images" => Some(DeploymentCommand::ListCloudImages),
        "testbed_snapshot" => Some(DeploymentCommand::TestbedSnapshot {
            snapshot_guests: false,
        }),
        _ => None,
    };
    let command = plain.unwrap_or_else(|| {
        DeploymentCommand::Exec(ExecCmd {
            guest_name: String::new(),
            command_type: ExecCmdType::UserScript(ExecCmdUserScript {
                run_on_main_testbed: true,
                script: std::iter::once(action.to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            }),
        })
    });
    serde_json::to_value(command).expect("a command serialises")
}

/// `OrchestrationProtocol`, the first message of the orchestration socket: only its `Init` is
/// read (the instructions after it are named, not parsed: see [`instruction_name`]).
#[derive(Debug, Deserialize)]
pub struct InitProtocol {
    pub instruction: InitInstruction,
}

#[derive(Debug, Deserialize)]
pub enum InitInstruction {
    Init {
        deployment: InitDeployment,
        deployment_command: Value,
    },
}

/// The part of the Init's `Deployment` the original server reads: its name (the rest is
/// looked up by name).
#[derive(Debug, Deserialize)]
pub struct InitDeployment {
    pub name: String,
}

/// The instructions the original's orchestration protocol has, by their variant names.
pub const INSTRUCTIONS: [&str; 22] = [
    "Init",
    "TestbedHostCheck",
    "Setup",
    "CreateTempNetwork",
    "DestroyTempNetwork",
    "GenerateArtefacts",
    "ClearArtefacts",
    "SetupImage",
    "PushArtefacts",
    "PushBackingImages",
    "RebaseRemoteBackingImages",
    "Deploy",
    "Destroy",
    "Edit",
    "RunSetupScripts",
    "Snapshot",
    "TestbedSnapshot",
    "AnalysisTool",
    "ListCloudImages",
    "Exec",
    "Cancel",
    "End",
];

/// The variant name of an `OrchestrationProtocol` message, `{"instruction": "Setup"}` or
/// `{"instruction": {"Deploy": [...]}}`, when it is one of the original's.
pub fn instruction_name(message: &Value) -> Option<&str> {
    let name = match message.get("instruction")? {
        Value::String(s) => s.as_str(),
        Value::Object(m) if m.len() == 1 => m.keys().next()?.as_str(),
        _ => return None,
    };
    INSTRUCTIONS.contains(&name).then_some(name)
}

/// `OrchestrationProtocolResponse`: the answer to an instruction.
#[derive(Debug, Clone, Serialize)]
pub enum Response {
    Generic { is_success: bool, message: String },
    List(Vec<ResultMessage>),
}

/// `OrchestrationInstructionResultMessage`.
#[derive(Debug, Clone, Serialize)]
pub struct ResultMessage {
    pub is_success: bool,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_read_and_write_as_the_original_writes_them() {
        // JSON as the original's serde writes each variant.
        let cases = [
            json!({"up": {"up_cmd": {"provision": true, "rerun_scripts": false, "reapply_acl": false}}}),
            json!("down"),
            json!("generate_artefacts"),
            json!("clear_artefacts"),
            json!({"snapshot": {"snapshot_cmd": {"create": {"name": "g1", "snapshot": "s1", "all": false}}}}),
            json!({"snapshot": {"snapshot_cmd": {"delete": {"name": null, "snapshot": null, "all": true}}}}),
            json!({"snapshot": {"snapshot_cmd": {"info": {"name": "g1"}}}}),
            json!({"snapshot": {"snapshot_cmd": {"list": {"name": null, "all": true}}}}),
            json!({"testbed_snapshot": {"snapshot_guests": true}}),
            json!({"analysis_tool": {"tool": {"tcp_dump": {"port_or_iface": "eth0", "output_file": "o.pcap"}}}}),
            json!({"exec": {"guest_name": "g", "command_type": {"shell_command": {"command": ["ls"]}}}}),
            json!({"exec": {"guest_name": "p", "command_type": {"tool": {"tool": {"a_d_b": {"command": ["devices"]}}}}}}),
            json!({"exec": {"guest_name": "p", "command_type": {"tool": {"tool": "frida_setup"}}}}),
            json!({"exec": {"guest_name": "p", "command_type": {"tool": {"tool": {"t_l_s_intercept": {"command": []}}}}}}),
            json!({"exec": {"guest_name": "g", "command_type": {"user_script": {"run_on_main_testbed": false, "script": ["./s.sh"]}}}}),
            json!("list_cloud_images"),
        ];
        for v in cases {
            let c: DeploymentCommand = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(serde_json::to_value(&c).unwrap(), v);
        }
        for bad in [
            json!("Down"),
            json!({"up": {}}),
            json!("snapshot"),
            json!({"command": "up"}),
        ] {
            assert!(
                serde_json::from_value::<DeploymentCommand>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_action_has_a_command_the_original_reads() {
        for action in [
            "up",
            "down",
            "snapshot",
            "testbed_snapshot",
            "check",
            "generate_artefacts",
        ] {
            let v = command_for_action(action, &["a".into()]);
            serde_json::from_value::<DeploymentCommand>(v.clone())
                .unwrap_or_else(|e| panic!("{action}: {v} {e}"));
        }
    }

    #[test]
    fn instructions_are_named_by_their_variant() {
        assert_eq!(
            instruction_name(&json!({"instruction": "Setup"})),
            Some("Setup")
        );
        assert_eq!(
            instruction_name(&json!({"instruction": {"Deploy": []}})),
            Some("Deploy")
        );
        assert_eq!(instruction_name(&json!({"instruction": "Banana"})), None);
        assert_eq!(instruction_name(&json!({"other": 1})), None);
    }
}
