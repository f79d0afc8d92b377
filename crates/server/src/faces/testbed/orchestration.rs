//! `/api/orchestration/ws`. Without a query it speaks the released CLI's orchestration
//! protocol: Binary `OrchestrationProtocol` messages in, each answered by the Text
//! `Receiving instruction OK` and then one Text `OrchestrationProtocolResponse`. With
//! `?uuid=UUID` it streams that action's log, a Text message per line (the design document's
//! form).
//!
//! The protocol on this face: the first message must be `Init` with the deployment and its
//! `DeploymentCommand`. Init starts the deployment's action for that command (the same action
//! `POST /api/deployments/{name}/action` starts, in its history, log index and jobs) and its
//! answer waits until the action has ended: a `List` with a success message per line of the
//! action's log, and last the outcome, so the CLI prints the log and then stops on a failure.
//! The deployment's state is final before that answer is sent, so the CLI's closing read sees
//! it. The instructions that follow Init (which the original server carries out itself,
//! against libvirt and OVN) are acknowledged and answered with a success naming the action
//! that did the work, or, after a failed action, with a failure. A client that goes away
//! leaves its action running (cancel its job through /v1); `Cancel` is answered as the
//! original answers it between instructions, `Generic` failure "Cancel request", and the
//! socket closes.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::IntoResponse;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::deployments::State as DeployState;

use super::deployments::{job_of, log_file, parse_command, start};
use super::original::{self, InitInstruction, InitProtocol, Response, ResultMessage};
use super::{Answer, error, linearizable};
use crate::api::Shared;
use crate::api::jobs::{Followed, follow_log};

/// Most log lines an Init answer carries (the latest; the log file has them all).
const MAX_ANSWER_LINES: usize = 2000;

#[derive(Deserialize)]
pub(super) struct WsQuery {
    uuid: Option<String>,
}

pub(super) async fn ws(
    State(s): State<Shared>,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Answer {
    let Some(uuid) = q.uuid else {
        let upgrade = upgrade.map_err(|e| error(e.status(), e.body_text()))?;
        return Ok(upgrade
            .on_upgrade(move |socket| orchestrate(socket, s))
            .into_response());
    };
    linearizable(&s).await?;
    let job = job_of(&s, &uuid)?;
    let upgrade = upgrade.map_err(|e| error(e.status(), e.body_text()))?;
    Ok(upgrade
        .on_upgrade(move |socket| stream_log(socket, s, job))
        .into_response())
}

/// Send each line of `job`'s log as a text message, then close once the job is over.
async fn stream_log(socket: WebSocket, s: Shared, job: u64) {
    let (mut sink, mut incoming) = socket.split();
    let mut lines = follow_log(s.node.view.clone(), job, 0, s.shutdown.clone());
    loop {
        tokio::select! {
            f = lines.recv() => match f {
                Some(Followed::Lines(page)) => {
                    for line in page {
                        if sink.feed(Message::Text(line.text.into())).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                Some(Followed::End { .. }) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::NORMAL,
                            reason: "action ended".into(),
                        })))
                        .await;
                    return;
                }
                None => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: close_code::AWAY,
                            reason: "log no longer available".into(),
                        })))
                        .await;
                    return;
                }
            },
            m = incoming.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

const ACK: &str = "Receiving instruction OK";

fn text(response: &Response) -> Message {
    Message::Text(
        serde_json::to_string(response)
            .expect("a response serialises")
            .into(),
    )
}

fn close(code: u16, reason: &str) -> Message {
    // A close reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(&reason[..end]),
    }))
}

fn generic(is_success: bool, message: impl Into<String>) -> Response {
    Response::Generic {
        is_success,
        message: message.into(),
    }
}

/// How the action started by Init ended.
enum Outcome {
    Succeeded,
    Failed,
}

/// One orchestration session of the released CLI.
async fn orchestrate(mut socket: WebSocket, s: Shared) {
    let Some(Ok(first)) = socket.recv().await else {
        return;
    };
    let Message::Binary(bytes) = first else {
        let why = "The client did not begin orchestration with an Init instruction";
        let _ = socket.send(close(close_code::ERROR, why)).await;
        return;
    };
    let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
        let why = "Could not deserialise the Init instruction";
        let _ = socket.send(close(close_code::ERROR, why)).await;
        return;
    };
    if socket.send(Message::Text(ACK.into())).await.is_err() {
        return;
    }
    let action = match init(&s, &message).await {
        Ok(started) => started,
        Err(why) => {
            let _ = socket.send(text(&generic(false, why.clone()))).await;
            let _ = socket.send(close(close_code::ERROR, &why)).await;
            return;
        }
    };
    let Some((answer, outcome)) = run_to_end(&mut socket, &s, &action).await else {
        return;
    };
    if socket.send(text(&answer)).await.is_err() {
        return;
    }
    // The instructions that follow, until the client closes.
    while let Some(Ok(m)) = socket.recv().await {
        let bytes = match m {
            Message::Binary(b) => b,
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Text(_) => {
                let why = "instructions are Binary messages of JSON";
                let _ = socket.send(close(close_code::UNSUPPORTED, why)).await;
                return;
            }
        };
        let name = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| original::instruction_name(&v).map(str::to_string));
        let Some(name) = name else {
            let why = "not an OrchestrationProtocol instruction";
            let _ = socket.send(close(close_code::ERROR, why)).await;
            return;
        };
        if socket.send(Message::Text(ACK.into())).await.is_err() {
            return;
        }
        let (response, done) = match (name.as_str(), &outcome) {
            ("Cancel", _) => (generic(false, "Cancel request"), true),
            ("Init", _) => (generic(false, "Init: the session has begun already"), true),
            (_, Outcome::Succeeded) => (
                generic(true, format!("{name}: done by the {} action", action.name)),
                false,
            ),
            (_, Outcome::Failed) => (
                generic(
                    false,
                    format!("{name}: not run, the {} action failed", action.name),
                ),
                true,
            ),
        };
        if socket.send(text(&response)).await.is_err() {
            return;
        }
        if done {
            let _ = socket
                .send(close(close_code::NORMAL, "orchestration ended"))
                .await;
            return;
        }
    }
}

/// The action an Init started.
struct Started {
    name: &'static str,
    deployment: String,
    action_id: String,
    job: u64,
}

/// Check the Init and start its action; a refusal's message otherwise.
async fn init(s: &Shared, message: &Value) -> Result<Started, String> {
    if original::instruction_name(message) != Some("Init") {
        return Err("Did not start orchestration with an Init instruction".into());
    }
    let init: InitProtocol = serde_path_to_error::deserialize(message).map_err(|e| {
        let path = e.path().to_string();
        format!("Init: {path}: {}", e.into_inner())
    })?;
    let InitInstruction::Init {
        deployment,
        deployment_command,
    } = init.instruction;
    let command = parse_command("instruction.Init.deployment_command", &deployment_command)
        .map_err(|r| r.message)?;
    let (action_id, job) = start(s, deployment.name.clone(), &command, false)
        .await
        .map_err(|r| r.message)?;
    Ok(Started {
        name: original::action_name(&command),
        deployment: deployment.name,
        action_id,
        job,
    })
}

/// Wait for the action to end, collecting its log; the answer to Init and the outcome, or
/// `None` when the client went away first.
async fn run_to_end(
    socket: &mut WebSocket,
    s: &Shared,
    action: &Started,
) -> Option<(Response, Outcome)> {
    let mut lines = follow_log(s.node.view.clone(), action.job, 0, s.shutdown.clone());
    let mut messages = std::collections::VecDeque::new();
    let mut dropped = 0usize;
    loop {
        tokio::select! {
            f = lines.recv() => match f {
                Some(Followed::Lines(page)) => {
                    for line in page {
                        if messages.len() == MAX_ANSWER_LINES {
                            messages.pop_front();
                            dropped += 1;
                        }
                        messages.push_back(ResultMessage { is_success: true, message: line.text });
                    }
                }
                Some(Followed::End { .. }) | None => break,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Nothing else is expected while the action runs: the CLI waits for the answer.
                _ => return None,
            },
        }
    }
    let (outcome, last) = ending(s, action);
    let mut all: Vec<ResultMessage> = Vec::with_capacity(messages.len() + 2);
    if dropped > 0 {
        let file = s.node.view.read(|st| {
            let d = st.deployments.get(&action.deployment)?;
            super::deployments::runs(d)
                .find(|r| r.action_id == action.action_id)
                .map(|r| log_file(d, r))
        });
        all.push(ResultMessage {
            is_success: true,
            message: format!(
                "({dropped} earlier lines: /api/orchestration/logs/{})",
                file.unwrap_or_default()
            ),
        });
    }
    all.extend(messages);
    all.push(last);
    Some((Response::List(all), outcome))
}

/// How the action's job ended, as the last message of Init's answer.
fn ending(s: &Shared, action: &Started) -> (Outcome, ResultMessage) {
    let found = s.node.view.read(|st| {
        let d = st.deployments.get(&action.deployment)?;
        let run = super::deployments::runs(d).find(|r| r.action_id == action.action_id)?;
        let error = st.jobs.get(action.job).and_then(|j| j.error.clone());
        Some((run.clone(), d.state, error))
    });
    let Some((run, state, error)) = found else {
        let message = format!("{} action: its record is gone", action.name);
        return (
            Outcome::Failed,
            ResultMessage {
                is_success: false,
                message,
            },
        );
    };
    // The run's end and the deployment's state are one revision: an ended run that did not
    // leave `failed` succeeded.
    let ended = run.finished_ms.and(run.end_state);
    if ended.is_some_and(|st| st != DeployState::Failed) {
        let message = format!(
            "{} succeeded (job {}); the deployment is {}",
            action.name,
            action.job,
            state.as_str()
        );
        return (
            Outcome::Succeeded,
            ResultMessage {
                is_success: true,
                message,
            },
        );
    }
    let job_status = run.state.replace('_', " ");
    let why = error
        .or_else(|| run.exit_code.map(|c| format!("exit code {c}")))
        .unwrap_or_else(|| job_status.clone());
    let message = format!("{} {job_status} (job {}): {why}", action.name, action.job);
    (
        Outcome::Failed,
        ResultMessage {
            is_success: false,
            message,
        },
    )
}
