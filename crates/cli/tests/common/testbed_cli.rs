//! The TestbedOS CLI (`kvm-compose`, Bristol-Cyber-Security-Group/testbed-os v1.1.0) as a test
//! client: its message types transcribed from its sources (`kvm-compose-schemas`:
//! `deployment_models.rs`, `cli_models.rs`, `exec.rs`, `settings.rs`; `kvm-compose`:
//! `orchestration/api.rs`), and its request sequence (`server_web_client/client.rs`,
//! `http_actions.rs`, `orchestration/websocket.rs`, `orchestration/orchestrator.rs`): the
//! same requests in the same order, every answer parsed into the CLI's types as it parses them.
//! Only serde attributes are kept from the types (their clap attributes do not reach the wire).

#![allow(dead_code)]

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

// deployment_models.rs

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "snake_case")]
pub struct NewDeployment {
    pub name: String,
    pub project_location: String,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "snake_case")]
pub struct Deployment {
    pub name: String,
    pub project_location: String,
    pub state: DeploymentState,
    pub last_action_uuid: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Up,
    Down,
    Running,
    Failed(DeploymentCommand),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
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

#[derive(Deserialize, Serialize, Debug)]
#[serde(rename_all = "snake_case")]
pub struct DeploymentList {
    pub deployments: HashMap<String, Deployment>,
}

// cli_models.rs

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct UpCmd {
    pub provision: bool,
    pub rerun_scripts: bool,
    pub reapply_acl: bool,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
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

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct SnapshotInfo {
    pub name: Option<String>,
    pub snapshot: Option<String>,
    pub all: bool,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct GuestSnapshot {
    pub name: Option<String>,
    pub all: bool,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct AnalysisToolsCmd {
    pub tool: AnalysisToolsSubCmd,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisToolsSubCmd {
    TcpDump {
        port_or_iface: String,
        output_file: String,
    },
}

// exec.rs

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmd {
    pub guest_name: String,
    pub command_type: ExecCmdType,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExecCmdType {
    ShellCommand(ExecCmdShellCommand),
    Tool(ExecCmdTool),
    UserScript(ExecCmdUserScript),
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmdShellCommand {
    pub command: Vec<String>,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmdTool {
    pub tool: TestbedTools,
}

#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct ExecCmdUserScript {
    pub run_on_main_testbed: bool,
    pub script: Vec<String>,
}

#[allow(clippy::upper_case_acronyms)]
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TestbedTools {
    ADB(ToolCommand),
    FridaSetup,
    TestPermissions(ToolCommand),
    TestPrivacy(ToolCommand),
    TLSIntercept(ToolCommand),
}

/// exec.rs's `Command`.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub struct ToolCommand {
    pub command: Vec<String>,
}

// settings.rs (what the CLI needs of `GET /api/config/cluster`)

#[derive(Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
pub struct TestbedClusterConfig {
    pub testbed_host_ssh_config: HashMap<String, SshConfig>,
}

#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(rename_all = "snake_case")]
pub struct SshConfig {
    pub ip: String,
    pub user: String,
    pub identity_file: String,
    pub testbed_nic: String,
    pub main_interface: String,
    pub is_main_host: Option<bool>,
    #[serde(default)]
    pub ovn: Option<Value>,
}

// orchestration/api.rs

/// `OrchestrationProtocolResponse`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub enum OrchestrationProtocolResponse {
    Generic { is_success: bool, message: String },
    Single(OrchestrationInstructionResultMessage),
    List(Vec<OrchestrationInstructionResultMessage>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OrchestrationInstructionResultMessage {
    pub is_success: bool,
    pub message: String,
}

/// `OrchestrationLogger`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub enum OrchestrationLogger {
    Log {
        message: String,
        level: OrchestrationLoggerLevel,
    },
    End,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub enum OrchestrationLoggerLevel {
    Info,
    Error,
}

impl OrchestrationProtocolResponse {
    /// `is_success()`: a list succeeds when none of its messages failed.
    pub fn is_success(&self) -> bool {
        match self {
            Self::Generic { is_success, .. } => *is_success,
            Self::Single(r) => r.is_success,
            Self::List(r) => r.iter().all(|m| m.is_success),
        }
    }

    /// What the CLI prints of it: (success messages, failure messages).
    pub fn messages(&self) -> (Vec<String>, Vec<String>) {
        let all: Vec<(bool, String)> = match self {
            Self::Generic {
                is_success,
                message,
            } => vec![(*is_success, message.clone())],
            Self::Single(r) => vec![(r.is_success, r.message.clone())],
            Self::List(r) => r
                .iter()
                .map(|m| (m.is_success, m.message.clone()))
                .collect(),
        };
        let ok = all.iter().filter(|m| m.0).map(|m| m.1.clone()).collect();
        let failed = all.iter().filter(|m| !m.0).map(|m| m.1.clone()).collect();
        (ok, failed)
    }
}

/// What a session printed and how it ended.
#[derive(Debug, Default)]
pub struct Session {
    /// Each answer, parsed, in order.
    pub answers: Vec<OrchestrationProtocolResponse>,
    /// `INFO` lines the CLI prints from answers.
    pub info: Vec<String>,
    /// `ERROR Instruction failed for: ...` lines.
    pub failed: Vec<String>,
    /// The close frame the server sent, if it closed first.
    pub closed_by_server: Option<(u16, String)>,
    /// The final `GET /api/deployments/{name}`, parsed.
    pub deployment: Option<Deployment>,
}

impl Session {
    /// The CLI's verdict: "the command was successful" unless the deployment reads `failed`.
    pub fn successful(&self) -> bool {
        !matches!(
            self.deployment.as_ref().map(|d| &d.state),
            Some(DeploymentState::Failed(_)) | None
        )
    }
}

/// The CLI against `base` (`http://HOST:PORT/`, with its trailing slash), for the project
/// `name` in folder `location`.
pub struct Cli {
    pub http: reqwest::Client,
    pub base: String,
    pub name: String,
    pub location: String,
}

impl Cli {
    /// The requests before the socket (`main.rs`, `client.rs`): `GET /api/` must answer at
    /// all; the deployment is read, created when it cannot be read, and read again.
    pub async fn prepare(&self) -> Deployment {
        self.http
            .get(format!("{}api/", self.base))
            .send()
            .await
            .expect("could not connect to testbed server");
        if let Some(d) = self.read_deployment().await {
            return d;
        }
        let new = NewDeployment {
            name: self.name.clone(),
            project_location: self.location.clone(),
        };
        let r = self
            .http
            .post(format!("{}api/deployments", self.base))
            .json(&new)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let d = self
            .read_deployment()
            .await
            .expect("the deployment, once created");
        assert_ne!(
            d.state,
            DeploymentState::Running,
            "the CLI stops on running"
        );
        assert_eq!(d.project_location, self.location);
        d
    }

    /// `GET /api/deployments/{name}` as the CLI reads it: `None` unless 2xx and parseable.
    pub async fn read_deployment(&self) -> Option<Deployment> {
        let r = self
            .http
            .get(format!("{}api/deployments/{}", self.base, self.name))
            .send()
            .await
            .unwrap();
        if !r.status().is_success() {
            return None;
        }
        serde_json::from_str(&r.text().await.unwrap()).ok()
    }

    /// `GET /api/config/cluster`, which the CLI parses with `expect`.
    pub async fn cluster_config(&self) -> TestbedClusterConfig {
        let text = self
            .http
            .get(format!("{}api/config/cluster", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&text).expect("deserialising kvm-compose-config")
    }

    /// One orchestration session: `Init` with `command`, then `then` (each an
    /// `OrchestrationProtocol` as JSON), one at a time: Binary out, a Text acknowledgement, a
    /// Text answer; the CLI stops sending after a failed answer; then Close(1000, "End of
    /// orchestration") without waiting, and the final read of the deployment.
    pub async fn orchestrate(
        &self,
        deployment: &Deployment,
        command: &DeploymentCommand,
        then: &[Value],
    ) -> Session {
        let url = format!(
            "{}api/orchestration/ws",
            self.base.replace("http://", "ws://")
        );
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("handshake");
        let (mut tx, mut rx) = ws.split();
        self.cluster_config().await;
        let mut session = Session::default();
        let init = json!({"instruction": {"Init": {
            "deployment": deployment, "deployment_command": command
        }}});
        for instruction in std::iter::once(&init).chain(then) {
            let bytes = serde_json::to_vec(instruction).unwrap();
            if tx.send(Message::Binary(bytes.into())).await.is_err() {
                break;
            }
            // The acknowledgement: any Text.
            match rx.next().await {
                Some(Ok(Message::Text(_))) => {}
                Some(Ok(Message::Close(f))) => {
                    session.closed_by_server = f.map(|f| (f.code.into(), f.reason.to_string()));
                    break;
                }
                other => panic!("got unexpected message type for acknowledgement: {other:?}"),
            }
            // The answer: a response or a log message.
            let text = match rx.next().await {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(Message::Close(f))) => {
                    session.closed_by_server = f.map(|f| (f.code.into(), f.reason.to_string()));
                    break;
                }
                other => panic!("got unexpected message type for the answer: {other:?}"),
            };
            let response = serde_json::from_str::<OrchestrationProtocolResponse>(&text);
            let log = serde_json::from_str::<OrchestrationLogger>(&text);
            assert!(
                response.is_ok() || log.is_ok(),
                "message received was neither a result or logging message: {text}"
            );
            if let Ok(r) = response {
                let (ok, failed) = r.messages();
                session.info.extend(ok);
                session.failed.extend(failed);
                let success = r.is_success();
                session.answers.push(r);
                if !success {
                    break;
                }
            }
        }
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "End of orchestration".into(),
            })))
            .await;
        session.deployment = self.read_deployment().await;
        session
    }

    /// `deployment reset-state NAME`: read the deployment, set it `down`, `PUT` it back.
    pub async fn reset_state(&self) -> u16 {
        let mut d = self.read_deployment().await.expect("the deployment");
        d.state = DeploymentState::Down;
        self.http
            .put(format!("{}api/deployments/{}", self.base, self.name))
            .json(&d)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// The CLI's `down` instructions after Init with an empty state: `TestbedHostCheck` and
/// `DestroyTempNetwork` (its payload, `OrchestrationCommon`, abridged: this face does not
/// read it).
pub fn down_instructions() -> Vec<Value> {
    vec![
        json!({"instruction": "TestbedHostCheck"}),
        json!({"instruction": {"DestroyTempNetwork": {"project_name": "web"}}}),
    ]
}

/// The CLI's `up` instructions after Init for a project with no guests.
pub fn up_instructions() -> Vec<Value> {
    vec![
        json!({"instruction": {"GenerateArtefacts": {"project_path": "/srv/web", "uid": 1000, "gid": 1000}}}),
        json!({"instruction": "TestbedHostCheck"}),
        json!({"instruction": "Setup"}),
    ]
}
