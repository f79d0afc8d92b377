//! Deployments (seed 003): named projects whose actions (`up`, `down`, `snapshot`, custom) run as
//! jobs, one at a time, with a state that follows them and a history of every action.
//!
//! An action's command comes from the deployment's argv template for it: `{name}`, `{action}`
//! and `{dir}` are substituted inside an element; an element that is exactly `{args}` becomes the
//! request's arguments, one element each. Nothing goes through a shell unless the template
//! itself runs one, so an argument is always one literal argv element.
//!
//! States: `down` at creation; `running` while an action runs; a successful `up` or `snapshot`
//! leaves `up` (the /v1 contract: a snapshot is of a live deployment), a successful `down`
//! leaves `down`, another successful action returns to the state before it; a failed one
//! leaves `failed`, naming the action. An action started with `ActLeaving` names the state
//! its success leaves instead (a face whose original has its own rule).
//!
//! A deployment also keeps its orchestrator's state document (seed 003's `{name}-state.json`),
//! an opaque JSON text of at most [`MAX_DOCUMENT`] bytes, replicated like everything else.

use imbl::OrdMap;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_types::{JobSpec, rfc3339};

use crate::jobs::{Jobs, validate_name};
use crate::{CommandError, Ctx, Event};

/// Most actions kept in a deployment's history (the oldest go first).
pub const MAX_HISTORY: usize = 1000;
/// Most arguments one action takes.
pub const MAX_ARGS: usize = 256;
/// Largest command text a reset may name as the one that failed (`Amend`), in bytes.
pub const MAX_FAILED_COMMAND: usize = 4096;
/// Largest orchestrator state document, in bytes.
pub const MAX_DOCUMENT: usize = 2 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Down,
    Running,
    Up,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Down => "down",
            State::Running => "running",
            State::Up => "up",
            State::Failed => "failed",
        }
    }
}

/// One action: requested, running as a job, then ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRun {
    pub action_id: String,
    pub action: String,
    pub args: Vec<String>,
    pub job_id: u64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub exit_code: Option<i32>,
    /// `running`, then the job's final status (`succeeded`, `failed`, `timed_out`, ...).
    pub state: String,
    /// The deployment's state once the action ended. While it runs: the state a success will
    /// leave when the action was started with one (`ActLeaving`), else `None`.
    pub end_state: Option<State>,
}

/// Where and how a deployment's actions run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    /// Action name → argv template.
    pub actions: BTreeMap<String, Vec<String>>,
    /// The project folder (`{dir}`, and the job's working directory when set).
    pub dir: Option<String>,
    pub queue: String,
    /// Labels a worker must have to run its actions (e.g. one agent's).
    pub labels: BTreeMap<String, String>,
    /// Seconds an action may run (none: no limit).
    pub timeout: Option<u64>,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub spec: Spec,
    pub state: State,
    /// The state an action other than up/down/snapshot returns to when it succeeds.
    pub before: State,
    /// The action whose failure left the deployment `failed`: its name, or, when a reset set
    /// the state by hand (`Amend`), possibly the command itself as a JSON object (a face's
    /// original names a failure by its whole command, options included).
    pub failed_action: Option<String>,
    pub current: Option<ActionRun>,
    pub history: Vec<ActionRun>,
    /// The orchestrator's state document (JSON text), once one was stored.
    pub document: Option<String>,
    pub created_ms: i64,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentCommand {
    Create(Spec),
    /// Replace the spec of an existing deployment (refused while an action runs).
    Update(Spec),
    /// Forget a deployment (refused while an action runs; with `refuse_up`, also while `up`).
    Delete {
        name: String,
        refuse_up: bool,
    },
    /// Start `action` with `args`; its job is kept for `retention_ms` once finished.
    Act {
        name: String,
        action: String,
        args: Vec<String>,
        retention_ms: i64,
    },
    /// Set the state and the project folder by hand (seed 003's `PUT`, e.g. to reset a failed
    /// deployment); refused while an action runs; `running` only comes from an action.
    Amend {
        name: String,
        dir: Option<String>,
        state: State,
        failed_action: Option<String>,
    },
    /// Store the orchestrator's state document.
    SetDocument {
        name: String,
        document: String,
    },
    /// `Act`, with the state a success leaves: `on_success`, or the state before the action
    /// when `None`. (Appended last: variants are stored by position.)
    ActLeaving {
        name: String,
        action: String,
        args: Vec<String>,
        retention_ms: i64,
        on_success: Option<State>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentReply {
    Deployment(Box<Deployment>),
    Started { action_id: String, job_id: u64 },
    Deleted,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployments {
    deployments: OrdMap<String, Deployment>,
}

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub fn validate(cmd: &DeploymentCommand) -> Result<(), CommandError> {
    match cmd {
        DeploymentCommand::Create(s) | DeploymentCommand::Update(s) => {
            validate_name("name", &s.name)?;
            validate_name("queue", &s.queue)?;
            for (a, argv) in &s.actions {
                validate_name(&format!("actions.{a}"), a)?;
                if argv.is_empty() || argv[0].is_empty() {
                    return Err(invalid(
                        &format!("actions.{a}"),
                        "must be a non-empty argv template",
                    ));
                }
                if argv.iter().any(|e| e.contains('\0')) {
                    return Err(invalid(&format!("actions.{a}"), "must not contain NUL"));
                }
            }
            validate_dir(&s.dir)
        }
        DeploymentCommand::Delete { name, .. } => validate_name("name", name),
        DeploymentCommand::Amend {
            name,
            dir,
            state,
            failed_action,
        } => {
            validate_name("name", name)?;
            validate_dir(dir)?;
            if *state == State::Running {
                return Err(invalid(
                    "state",
                    "cannot be set to running: an action sets it; allowed: up, down, failed",
                ));
            }
            let not_a_command = |a: &str| {
                a.len() > MAX_FAILED_COMMAND
                    || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(a)
                        .is_err()
            };
            match failed_action {
                Some(a) if a.starts_with('{') && not_a_command(a) => {
                    return Err(invalid(
                        "failed_action",
                        format!(
                            "an action name, or a command as a JSON object of at most \
                             {MAX_FAILED_COMMAND} bytes"
                        ),
                    ));
                }
                Some(a) if a.starts_with('{') => {}
                Some(a) => validate_name("failed_action", a)?,
                None => {}
            }
            Ok(())
        }
        DeploymentCommand::SetDocument { name, document } => {
            validate_name("name", name)?;
            if document.len() > MAX_DOCUMENT {
                return Err(invalid(
                    "document",
                    format!("at most {MAX_DOCUMENT} bytes; got {}", document.len()),
                ));
            }
            Ok(())
        }
        DeploymentCommand::Act {
            name,
            action,
            args,
            retention_ms,
        }
        | DeploymentCommand::ActLeaving {
            name,
            action,
            args,
            retention_ms,
            ..
        } => {
            if let DeploymentCommand::ActLeaving {
                on_success: Some(State::Running | State::Failed),
                ..
            } = cmd
            {
                return Err(invalid(
                    "on_success",
                    "a success leaves up, down or the state before (none)",
                ));
            }
            crate::jobs::validate_retention(*retention_ms)?;
            validate_name("name", name)?;
            validate_name("action", action)?;
            if args.len() > MAX_ARGS {
                return Err(invalid("args", format!("at most {MAX_ARGS} arguments")));
            }
            if args.iter().any(|a| a.contains('\0')) {
                return Err(invalid("args", "must not contain NUL characters"));
            }
            Ok(())
        }
    }
}

fn validate_dir(dir: &Option<String>) -> Result<(), CommandError> {
    match dir {
        Some(d) if d.is_empty() || d.contains('\0') => {
            Err(invalid("dir", "must be a non-empty path without NUL"))
        }
        _ => Ok(()),
    }
}

/// The argv of `action` from `template`: placeholders substituted, `{args}` expanded.
pub fn render(template: &[String], spec: &Spec, action: &str, args: &[String]) -> Vec<String> {
    let mut argv = Vec::with_capacity(template.len() + args.len());
    for element in template {
        if element == "{args}" {
            argv.extend(args.iter().cloned());
        } else {
            argv.push(
                element
                    .replace("{name}", &spec.name)
                    .replace("{action}", action)
                    .replace("{dir}", spec.dir.as_deref().unwrap_or("")),
            );
        }
    }
    argv
}

/// A unique action id in the form of a UUID, derived from the log index (apply stays pure).
fn action_id(index: u64, name: &str) -> String {
    // FNV-1a of the name, so two deployments acting at the same index still differ.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (index >> 32) as u32,
        (index >> 16) as u16,
        index as u16 & 0xfff,
        (h >> 48) as u16 & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

fn event(d: &Deployment, kind: &str) -> Event {
    Event {
        topic: format!("deployments/{}", d.spec.name),
        body: serde_json::json!({
            "kind": kind,
            "name": d.spec.name,
            "state": d.state.as_str(),
            "failed_action": d.failed_action,
            "action": d.current.as_ref().or(d.history.last()).map(|a| serde_json::json!({
                "action_id": a.action_id, "action": a.action, "job_id": a.job_id,
                "exit_code": a.exit_code, "state": a.state,
            })),
            "revision": d.revision,
        }),
    }
}

/// Stamp `d` as changed by this entry, announce it, and answer it.
fn changed(d: &mut Deployment, ctx: Ctx, kind: &str, events: &mut Vec<Event>) -> DeploymentReply {
    d.revision = ctx.index;
    events.push(event(d, kind));
    DeploymentReply::Deployment(Box::new(d.clone()))
}

impl ActionRun {
    pub fn view(&self) -> switchyard_types::DeploymentAction {
        switchyard_types::DeploymentAction {
            action_id: self.action_id.clone(),
            action: self.action.clone(),
            args: self.args.clone(),
            job_id: self.job_id,
            started_at: rfc3339(self.started_ms),
            finished_at: self.finished_ms.map(rfc3339),
            exit_code: self.exit_code,
            state: self.state.clone(),
            end_state: self
                .finished_ms
                .and(self.end_state)
                .map(|s| s.as_str().to_string()),
        }
    }
}

impl Deployment {
    pub fn view(&self) -> switchyard_types::Deployment {
        switchyard_types::Deployment {
            name: self.spec.name.clone(),
            state: self.state.as_str().into(),
            action: self.current.as_ref().map(ActionRun::view),
            failed_action: self.failed_action.clone(),
            actions: self.spec.actions.clone(),
            dir: self.spec.dir.clone(),
            queue: self.spec.queue.clone(),
            labels: self.spec.labels.clone(),
            created_at: rfc3339(self.created_ms),
            revision: self.revision,
        }
    }

    /// Every action, oldest first, the running one last.
    pub fn actions(&self) -> Vec<switchyard_types::DeploymentAction> {
        self.history
            .iter()
            .chain(self.current.iter())
            .map(ActionRun::view)
            .collect()
    }
}

impl Deployments {
    pub fn get(&self, name: &str) -> Option<&Deployment> {
        self.deployments.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    fn found(&mut self, name: &str) -> Result<&mut Deployment, CommandError> {
        self.deployments
            .get_mut(name)
            .ok_or_else(|| CommandError::NotFound {
                message: format!("deployment {name:?} does not exist"),
            })
    }

    fn busy(d: &Deployment) -> CommandError {
        let a = d.current.as_ref().expect("running");
        CommandError::ActionRunning {
            message: format!(
                "deployment {:?} is running action {} ({}); wait for it to end",
                d.spec.name, a.action, a.action_id
            ),
            action_id: a.action_id.clone(),
            action: a.action.clone(),
            job_id: a.job_id,
        }
    }

    pub fn apply(
        &mut self,
        cmd: &DeploymentCommand,
        jobs: &mut Jobs,
        ctx: Ctx,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<DeploymentReply, CommandError> {
        validate(cmd)?;
        match cmd {
            DeploymentCommand::Create(spec) => {
                if self.deployments.contains_key(&spec.name) {
                    return Err(CommandError::Conflict {
                        message: format!("deployment {:?} already exists", spec.name),
                    });
                }
                let d = Deployment {
                    spec: spec.clone(),
                    state: State::Down,
                    before: State::Down,
                    failed_action: None,
                    current: None,
                    history: Vec::new(),
                    document: None,
                    created_ms: now,
                    revision: ctx.index,
                };
                events.push(event(&d, "created"));
                self.deployments.insert(spec.name.clone(), d.clone());
                Ok(DeploymentReply::Deployment(Box::new(d)))
            }
            DeploymentCommand::Update(spec) => {
                let d = self.found(&spec.name)?;
                if d.current.is_some() {
                    return Err(Self::busy(d));
                }
                d.spec = spec.clone();
                Ok(changed(d, ctx, "updated", events))
            }
            DeploymentCommand::Delete { name, refuse_up } => {
                let d = self.found(name)?;
                if d.current.is_some() {
                    return Err(Self::busy(d));
                }
                if *refuse_up && d.state == State::Up {
                    return Err(CommandError::Conflict {
                        message: format!(
                            "cannot delete deployment {name:?} while it is up; run its down action first"
                        ),
                    });
                }
                let mut d = d.clone();
                d.revision = ctx.index;
                events.push(event(&d, "deleted"));
                self.deployments.remove(name);
                Ok(DeploymentReply::Deleted)
            }
            DeploymentCommand::Act {
                name,
                action,
                args,
                retention_ms,
            }
            | DeploymentCommand::ActLeaving {
                name,
                action,
                args,
                retention_ms,
                ..
            } => {
                let leaves = match cmd {
                    DeploymentCommand::ActLeaving { on_success, .. } => Some(*on_success),
                    _ => None,
                };
                let d = self.found(name)?;
                if d.current.is_some() {
                    return Err(Self::busy(d));
                }
                let Some(template) = d.spec.actions.get(action) else {
                    return Err(CommandError::NotFound {
                        message: if d.spec.actions.is_empty() {
                            format!(
                                "deployment {name:?} has no actions: give it `actions` or \
                                 configure the server's defaults ([actions.NAME] command = [...])"
                            )
                        } else {
                            format!(
                                "deployment {name:?} has no action {action:?}; actions: {}",
                                d.spec
                                    .actions
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        },
                    });
                };
                let action_id = action_id(ctx.index, name);
                let spec = JobSpec {
                    command: render(template, &d.spec, action, args),
                    queue: d.spec.queue.clone(),
                    timeout: d.spec.timeout,
                    max_attempts: 1,
                    lease_ttl: 30,
                    env: d.spec.env.clone(),
                    labels: d.spec.labels.clone(),
                    priority: 0,
                    cwd: d.spec.dir.clone(),
                };
                let owner = format!("deployments/{name}/{action_id}");
                let job_id = jobs.enqueue_owned(spec, owner, *retention_ms, ctx, now, events)?;
                let d = self.found(name)?;
                d.before = d.state;
                d.state = State::Running;
                d.current = Some(ActionRun {
                    action_id: action_id.clone(),
                    action: action.clone(),
                    args: args.clone(),
                    job_id,
                    started_ms: now,
                    finished_ms: None,
                    exit_code: None,
                    state: "running".into(),
                    end_state: leaves.map(|on| on.unwrap_or(d.before)),
                });
                d.revision = ctx.index;
                let d = d.clone();
                events.push(event(&d, "action_started"));
                Ok(DeploymentReply::Started { action_id, job_id })
            }
            DeploymentCommand::Amend {
                name,
                dir,
                state,
                failed_action,
            } => {
                let d = self.found(name)?;
                if d.current.is_some() {
                    return Err(Self::busy(d));
                }
                d.spec.dir = dir.clone();
                d.state = *state;
                d.failed_action = if *state == State::Failed {
                    failed_action.clone()
                } else {
                    None
                };
                Ok(changed(d, ctx, "updated", events))
            }
            DeploymentCommand::SetDocument { name, document } => {
                let d = self.found(name)?;
                d.document = Some(document.clone());
                Ok(changed(d, ctx, "document", events))
            }
        }
    }

    /// The job of an action ended (`owner` is the job's, `status` its final status).
    pub fn job_ended(
        &mut self,
        owner: &str,
        status: &str,
        exit_code: Option<i32>,
        ctx: Ctx,
        now: i64,
        events: &mut Vec<Event>,
    ) {
        let Some((name, action_id)) = owner
            .strip_prefix("deployments/")
            .and_then(|r| r.split_once('/'))
        else {
            return;
        };
        let Some(d) = self.deployments.get_mut(name) else {
            return;
        };
        let Some(mut run) = d.current.take_if(|c| c.action_id == action_id) else {
            return;
        };
        run.finished_ms = Some(now);
        run.exit_code = exit_code;
        run.state = status.to_string();
        d.state = if status == "succeeded" {
            d.failed_action = None;
            match (run.end_state, run.action.as_str()) {
                (Some(named), _) => named,
                (None, "up" | "snapshot") => State::Up,
                (None, "down") => State::Down,
                (None, _) => d.before,
            }
        } else {
            d.failed_action = Some(run.action.clone());
            State::Failed
        };
        run.end_state = Some(d.state);
        d.history.push(run);
        if d.history.len() > MAX_HISTORY {
            d.history.remove(0);
        }
        d.revision = ctx.index;
        let d = d.clone();
        events.push(event(&d, "action_ended"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            name: "web".into(),
            actions: BTreeMap::from([
                (
                    "up".into(),
                    vec!["deploy".into(), "--name={name}".into(), "{args}".into()],
                ),
                ("check".into(), vec!["check".into(), "{dir}/x".into()]),
            ]),
            dir: Some("/srv/web".into()),
            queue: "default".into(),
            labels: BTreeMap::new(),
            timeout: None,
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn templates_keep_every_argument_one_literal_element() {
        let args = vec![
            "a b".to_string(),
            "$(rm -rf /); echo `x` | y > z".into(),
            "".into(),
        ];
        let argv = render(&spec().actions["up"], &spec(), "up", &args);
        assert_eq!(
            argv,
            [
                "deploy",
                "--name=web",
                "a b",
                "$(rm -rf /); echo `x` | y > z",
                ""
            ]
        );
        assert_eq!(
            render(&spec().actions["check"], &spec(), "check", &[]),
            ["check", "/srv/web/x"]
        );
    }

    #[test]
    fn a_deployment_without_templates_is_kept_and_its_actions_refused_saying_how_to_add_them() {
        let (mut ds, mut jobs) = (Deployments::default(), Jobs::default());
        let mut ev = Vec::new();
        let bare = Spec {
            actions: BTreeMap::new(),
            ..spec()
        };
        let create = DeploymentCommand::Create(bare);
        validate(&create).unwrap();
        ds.apply(&create, &mut jobs, Ctx { index: 1 }, 0, &mut ev)
            .unwrap();
        let act = DeploymentCommand::Act {
            name: "web".into(),
            action: "up".into(),
            args: vec![],
            retention_ms: crate::jobs::DEFAULT_RETENTION_MS,
        };
        let before = ds.clone();
        let r = ds.apply(&act, &mut jobs, Ctx { index: 2 }, 0, &mut ev);
        // What exists depends on the state, so no template is "not found", not a bad field.
        let Err(CommandError::NotFound { message }) = r else {
            panic!("{r:?}")
        };
        assert!(message.contains("[actions.NAME]"), "{message}");
        assert_eq!(ds, before);
        assert_eq!(ds.get("web").unwrap().state, State::Down);
    }

    #[test]
    fn states_follow_actions_and_a_second_action_is_busy() {
        let (mut ds, mut jobs) = (Deployments::default(), Jobs::default());
        let mut ev = Vec::new();
        let mut at = |i: u64| Ctx { index: i };
        ds.apply(
            &DeploymentCommand::Create(spec()),
            &mut jobs,
            at(1),
            0,
            &mut ev,
        )
        .unwrap();
        let act = |a: &str| DeploymentCommand::Act {
            name: "web".into(),
            action: a.into(),
            args: vec![],
            retention_ms: crate::jobs::DEFAULT_RETENTION_MS,
        };
        let Ok(DeploymentReply::Started { action_id, job_id }) =
            ds.apply(&act("up"), &mut jobs, at(2), 0, &mut ev)
        else {
            panic!()
        };
        assert_eq!(
            jobs.get(job_id).unwrap().owner.as_deref(),
            Some(format!("deployments/web/{action_id}").as_str())
        );
        assert_eq!(ds.get("web").unwrap().state, State::Running);
        let before = ds.clone();
        let r = ds.apply(&act("check"), &mut jobs, at(3), 0, &mut ev);
        assert!(
            matches!(r, Err(CommandError::ActionRunning { .. })),
            "{r:?}"
        );
        assert_eq!(ds, before, "nothing started");
        ds.job_ended(
            &format!("deployments/web/{action_id}"),
            "succeeded",
            Some(0),
            at(4),
            5,
            &mut ev,
        );
        assert_eq!(ds.get("web").unwrap().state, State::Up);
        // A failing custom action leaves failed, naming it; the history has both.
        let Ok(DeploymentReply::Started { action_id, .. }) =
            ds.apply(&act("check"), &mut jobs, at(5), 0, &mut ev)
        else {
            panic!()
        };
        ds.job_ended(
            &format!("deployments/web/{action_id}"),
            "failed",
            Some(3),
            at(6),
            9,
            &mut ev,
        );
        let d = ds.get("web").unwrap();
        assert_eq!(
            (d.state, d.failed_action.as_deref()),
            (State::Failed, Some("check"))
        );
        assert_eq!(d.history.len(), 2);
        assert_eq!(d.history[1].exit_code, Some(3));
        assert_eq!(d.history[1].end_state, Some(State::Failed));
        let _ = &mut at;
    }

    #[test]
    fn custom_actions_return_to_the_state_before_and_a_reset_is_refused_while_running() {
        let (mut ds, mut jobs) = (Deployments::default(), Jobs::default());
        let mut ev = Vec::new();
        let mut s = spec();
        s.actions
            .insert("snapshot".into(), vec!["snap".into(), "{args}".into()]);
        let at = |i: u64| Ctx { index: i };
        ds.apply(&DeploymentCommand::Create(s), &mut jobs, at(1), 0, &mut ev)
            .unwrap();
        let mut run = |ds: &mut Deployments, jobs: &mut Jobs, action: &str, i: u64, status| {
            let act = DeploymentCommand::Act {
                name: "web".into(),
                action: action.into(),
                args: vec![],
                retention_ms: crate::jobs::DEFAULT_RETENTION_MS,
            };
            let Ok(DeploymentReply::Started { action_id, .. }) =
                ds.apply(&act, jobs, at(i), 0, &mut ev)
            else {
                panic!("{action} did not start")
            };
            let reset = DeploymentCommand::Amend {
                name: "web".into(),
                dir: None,
                state: State::Down,
                failed_action: None,
            };
            let r = ds.apply(&reset, jobs, at(i), 0, &mut ev);
            assert!(
                matches!(r, Err(CommandError::ActionRunning { .. })),
                "{r:?}"
            );
            let owner = format!("deployments/web/{action_id}");
            ds.job_ended(&owner, status, Some(0), at(i + 1), 1, &mut ev);
            ds.get("web").unwrap().state
        };
        // A snapshot leaves up; a custom action returns to the state before it.
        assert_eq!(
            run(&mut ds, &mut jobs, "check", 2, "succeeded"),
            State::Down
        );
        assert_eq!(
            run(&mut ds, &mut jobs, "snapshot", 4, "succeeded"),
            State::Up
        );
        assert_eq!(run(&mut ds, &mut jobs, "check", 6, "succeeded"), State::Up);
        assert_eq!(
            run(&mut ds, &mut jobs, "snapshot", 8, "failed"),
            State::Failed
        );
        // A reset by hand: state and folder; running cannot be set; up refuses a guarded delete.
        let amend = |state| DeploymentCommand::Amend {
            name: "web".into(),
            dir: Some("/srv/new".into()),
            state,
            failed_action: Some("snapshot".into()),
        };
        assert!(validate(&amend(State::Running)).is_err());
        ds.apply(&amend(State::Up), &mut jobs, at(10), 0, &mut ev)
            .unwrap();
        let d = ds.get("web").unwrap();
        assert_eq!(
            (d.state, d.failed_action.as_deref(), d.spec.dir.as_deref()),
            (State::Up, None, Some("/srv/new"))
        );
        let delete = |refuse_up| DeploymentCommand::Delete {
            name: "web".into(),
            refuse_up,
        };
        let r = ds.apply(&delete(true), &mut jobs, at(11), 0, &mut ev);
        assert!(matches!(r, Err(CommandError::Conflict { .. })), "{r:?}");
        ds.apply(&delete(false), &mut jobs, at(12), 0, &mut ev)
            .unwrap();
        assert!(ds.get("web").is_none());
    }

    #[test]
    fn an_action_started_with_the_state_its_success_leaves_ends_there() {
        let (mut ds, mut jobs) = (Deployments::default(), Jobs::default());
        let mut ev = Vec::new();
        let mut s = spec();
        s.actions
            .insert("snapshot".into(), vec!["snap".into(), "{args}".into()]);
        let at = |i: u64| Ctx { index: i };
        ds.apply(&DeploymentCommand::Create(s), &mut jobs, at(1), 0, &mut ev)
            .unwrap();
        let mut run =
            |ds: &mut Deployments, jobs: &mut Jobs, action: &str, on_success, i, status| {
                let act = DeploymentCommand::ActLeaving {
                    name: "web".into(),
                    action: String::from(action),
                    args: vec![],
                    retention_ms: crate::jobs::DEFAULT_RETENTION_MS,
                    on_success,
                };
                validate(&act).unwrap();
                let Ok(DeploymentReply::Started { action_id, .. }) =
                    ds.apply(&act, jobs, at(i), 0, &mut ev)
                else {
                    panic!("{action} did not start")
                };
                assert_eq!(ds.get("web").unwrap().state, State::Running);
                let owner = format!("deployments/web/{action_id}");
                ds.job_ended(&owner, status, Some(0), at(i + 1), 1, &mut ev);
                let d = ds.get("web").unwrap();
                assert_eq!(d.history.last().unwrap().end_state, Some(d.state));
                d.state
            };
        // A snapshot from down returns to down (where plain `Act` would leave up).
        assert_eq!(
            run(&mut ds, &mut jobs, "snapshot", None, 2, "succeeded"),
            State::Down
        );
        assert_eq!(
            run(&mut ds, &mut jobs, "check", Some(State::Up), 4, "succeeded"),
            State::Up
        );
        assert_eq!(
            run(&mut ds, &mut jobs, "snapshot", None, 6, "succeeded"),
            State::Up
        );
        assert_eq!(
            run(
                &mut ds,
                &mut jobs,
                "snapshot",
                Some(State::Down),
                8,
                "failed"
            ),
            State::Failed
        );
        for bad in [State::Running, State::Failed] {
            let act = DeploymentCommand::ActLeaving {
                name: "web".into(),
                action: "up".into(),
                args: vec![],
                retention_ms: crate::jobs::DEFAULT_RETENTION_MS,
                on_success: Some(bad),
            };
            assert!(validate(&act).is_err(), "{bad:?}");
        }
    }
}
