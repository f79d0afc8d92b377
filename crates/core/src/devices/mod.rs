//! The devices app (seed 000): named state machines whose commands take time.
//!
//! A device holds the attribute values of its type. A command, when neither a no-op nor
//! refused, starts a transition: its first phase's attributes are set at once and a timer is
//! scheduled at the phase's end; each timer firing (inside a `Tick`) moves to the next phase,
//! and the last one applies the command's `finish` assignments. Phase ends are computed from
//! the previous phase's due time, never from when the tick happened to run, so a transition
//! completes at start + durations in leader-stamped time, also across restarts and leader
//! changes. A device with a transition in flight refuses every other command with `busy`
//! (checked first, before no-op and allowed guards).
//!
//! Each device keeps a copy of its type from creation, so a changed type file never changes
//! what an existing device does.

pub mod types;

use imbl::OrdMap;
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::json;
use switchyard_types::{Device, Started, Transition, TransitionRecord, rfc3339};

pub use types::{Assign, DeviceType, DurationSource, Guard, TypeError};

use crate::timers::Timers;
use crate::{CommandError, Ctx, Event, Timer};

/// Finished transitions kept per device (the oldest are dropped first).
pub const HISTORY_PER_DEVICE: usize = 1000;

/// Device commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceCommand {
    Create {
        name: String,
        def: DeviceType,
    },
    Delete {
        name: String,
    },
    /// Run a command of the device's type.
    Run {
        name: String,
        command: String,
        /// Duration for the phases that take it from the request.
        duration_ms: Option<i64>,
        /// The request's `args`, as JSON text (kept as text so the log stays compact).
        args_json: Option<String>,
    },
    Abort {
        name: String,
    },
    /// Back to the type's initial attributes, aborting anything in flight (for tests).
    Reset {
        name: String,
    },
}

/// Device replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceReply {
    /// The device as it is now (create, abort, reset, no-op command).
    Device(Device),
    /// A transition started.
    Started(Started),
    Deleted,
}

/// A transition in flight, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Flight {
    id: u64,
    command: String,
    /// Index of the current phase.
    phase: usize,
    /// (name, assignments, duration in ms) of every phase.
    phases: Vec<(String, Assign, i64)>,
    finish: Assign,
    started_ms: i64,
    phase_started_ms: i64,
    /// Attributes before the transition started (for abort and history).
    before: Assign,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    def: DeviceType,
    attributes: Assign,
    flight: Option<Flight>,
    revision: u64,
    history: VecDeque<TransitionRecord>,
}

/// Every device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Devices {
    by_name: OrdMap<String, Stored>,
}

/// Check a device name: 1 to 128 characters from `A-Z a-z 0-9 . _ -`.
pub fn validate_name(name: &str) -> Result<(), CommandError> {
    crate::bank::validate_id("name", name)
}

fn not_found(name: &str) -> CommandError {
    CommandError::NotFound {
        message: format!("device {name:?} does not exist"),
    }
}

fn matches(guard: &Guard, attrs: &Assign) -> bool {
    guard
        .iter()
        .all(|(k, allowed)| allowed.contains(attrs.get(k).unwrap_or(&None)))
}

fn render(attrs: &Assign) -> String {
    let parts: Vec<String> = attrs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("null")))
        .collect();
    parts.join(", ")
}

impl Flight {
    fn due_ms(&self) -> i64 {
        self.phase_started_ms + self.phases[self.phase].2
    }

    fn view(&self) -> Transition {
        let remaining: i64 = self.phases[self.phase..].iter().map(|p| p.2).sum();
        Transition {
            id: self.id,
            command: self.command.clone(),
            phase: self.phases[self.phase].0.clone(),
            phase_index: self.phase,
            phases: self.phases.len(),
            started_at: rfc3339(self.started_ms),
            phase_due_at: rfc3339(self.due_ms()),
            due_at: rfc3339(self.phase_started_ms + remaining),
        }
    }
}

impl Stored {
    fn view(&self, name: &str) -> Device {
        let status = match &self.flight {
            None => "idle".to_string(),
            Some(f) => format!(
                "{}: {} (phase {} of {})",
                f.command,
                f.phases[f.phase].0,
                f.phase + 1,
                f.phases.len()
            ),
        };
        Device {
            name: name.to_string(),
            type_name: self.def.name.clone(),
            state: self.attributes.get(&self.def.primary).cloned().flatten(),
            attributes: self.attributes.clone(),
            status,
            transition: self.flight.as_ref().map(Flight::view),
            revision: self.revision,
        }
    }

    fn record(&mut self, f: &Flight, outcome: &str, now_ms: i64, revision: u64) {
        if self.history.len() >= HISTORY_PER_DEVICE {
            self.history.pop_front();
        }
        self.history.push_back(TransitionRecord {
            id: f.id,
            command: f.command.clone(),
            outcome: outcome.to_string(),
            started_at: rfc3339(f.started_ms),
            finished_at: rfc3339(now_ms),
            from: f.before.clone(),
            to: self.attributes.clone(),
            revision,
        });
    }
}

/// Look up a number at `path` in `args`; `None` when absent or null.
fn arg_ms(
    args: &serde_json::Value,
    path: &[String],
    def: &types::CommandDef,
) -> Result<Option<i64>, CommandError> {
    let mut v = args;
    for key in path {
        match v.get(key) {
            Some(next) => v = next,
            None => return Ok(None),
        }
    }
    let field = format!("args.{}", path.join("."));
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => {
            let s = n.as_f64().unwrap_or(f64::NAN);
            Ok(Some(check_ms(&field, s, def)?))
        }
        other => Err(CommandError::Invalid {
            field,
            message: format!("must be a number of seconds; got {other}"),
        }),
    }
}

fn check_ms(field: &str, seconds: f64, def: &types::CommandDef) -> Result<i64, CommandError> {
    let ms = seconds * 1000.0;
    if !ms.is_finite() || ms < def.min_ms as f64 || ms > def.max_ms as f64 {
        return Err(CommandError::Invalid {
            field: field.to_string(),
            message: format!(
                "must be {} to {} seconds; got {seconds}",
                def.min_ms as f64 / 1000.0,
                def.max_ms as f64 / 1000.0
            ),
        });
    }
    Ok(ms.round() as i64)
}

/// Check a command request's durations against the command's range before it is proposed: the
/// request's `duration` (seconds) and each phase's argument in `args`. Apply checks them again
/// only when the command runs; this refuses them also where it would be a no-op.
pub fn check_request(
    def: &types::CommandDef,
    duration_s: Option<f64>,
    args: &serde_json::Value,
) -> Result<(), CommandError> {
    if let Some(s) = duration_s {
        check_ms("duration", s, def)?;
    }
    for p in &def.phases {
        if let DurationSource::Arg(path) = &p.duration {
            arg_ms(args, path, def)?;
        }
    }
    Ok(())
}

/// Check a requested duration (seconds) against a command's range, giving milliseconds.
pub fn duration_ms(def: &types::CommandDef, seconds: f64) -> Result<i64, CommandError> {
    check_ms("duration", seconds, def)
}

impl Devices {
    /// One device.
    pub fn get(&self, name: &str) -> Option<Device> {
        self.by_name.get(name).map(|s| s.view(name))
    }

    /// Every device, by name.
    pub fn list(&self) -> Vec<Device> {
        self.by_name.iter().map(|(n, s)| s.view(n)).collect()
    }

    /// When the transition in flight on `name` is due to complete (ms of stamped time).
    pub fn due_ms(&self, name: &str) -> Option<i64> {
        let f = self.by_name.get(name)?.flight.as_ref()?;
        Some(f.phase_started_ms + f.phases[f.phase..].iter().map(|p| p.2).sum::<i64>())
    }

    /// The type a device was created with.
    pub fn def(&self, name: &str) -> Option<&DeviceType> {
        self.by_name.get(name).map(|s| &s.def)
    }

    /// Finished transitions of a device, oldest first.
    pub fn history(&self, name: &str) -> Option<Vec<TransitionRecord>> {
        self.by_name
            .get(name)
            .map(|s| s.history.iter().cloned().collect())
    }

    /// Apply one device command; on `Err` nothing changed.
    pub fn apply(
        &mut self,
        cmd: &DeviceCommand,
        ctx: Ctx,
        now_ms: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) -> Result<DeviceReply, CommandError> {
        let rev = ctx.index;
        match cmd {
            DeviceCommand::Create { name, def } => {
                validate_name(name)?;
                if self.by_name.contains_key(name) {
                    return Err(CommandError::Conflict {
                        message: format!("device {name:?} already exists"),
                    });
                }
                let stored = Stored {
                    attributes: def.initial(),
                    def: def.clone(),
                    flight: None,
                    revision: rev,
                    history: VecDeque::new(),
                };
                let view = stored.view(name);
                self.by_name.insert(name.clone(), stored);
                events.push(event(name, "created", &view));
                Ok(DeviceReply::Device(view))
            }
            DeviceCommand::Delete { name } => {
                let s = self.by_name.get(name).ok_or_else(|| not_found(name))?;
                if let Some(f) = &s.flight {
                    return Err(busy(name, f));
                }
                let view = s.view(name);
                self.by_name.remove(name);
                events.push(event(name, "deleted", &view));
                Ok(DeviceReply::Deleted)
            }
            DeviceCommand::Run {
                name,
                command,
                duration_ms,
                args_json,
            } => {
                let s = self.by_name.get_mut(name).ok_or_else(|| not_found(name))?;
                let Some(def) = s.def.commands.get(command) else {
                    return Err(CommandError::NotFound {
                        message: format!(
                            "type {:?} has no command {command:?}; commands: {}",
                            s.def.name,
                            s.def
                                .commands
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                };
                if let Some(f) = &s.flight {
                    return Err(busy(name, f));
                }
                if def.noop_when.iter().any(|g| matches(g, &s.attributes)) {
                    return Ok(DeviceReply::Device(s.view(name)));
                }
                if !def.allowed_when.is_empty()
                    && !def.allowed_when.iter().any(|g| matches(g, &s.attributes))
                {
                    let allowed: Vec<BTreeMap<String, Vec<Option<String>>>> = def
                        .allowed_when
                        .iter()
                        .map(|g| {
                            g.iter()
                                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                                .collect()
                        })
                        .collect();
                    return Err(CommandError::NotAllowed {
                        message: format!(
                            "{command} is not allowed on {name:?} when {}",
                            render(&s.attributes)
                        ),
                        allowed_from: allowed,
                    });
                }
                let args: serde_json::Value = match args_json {
                    Some(text) => {
                        serde_json::from_str(text).map_err(|e| CommandError::Invalid {
                            field: "args".into(),
                            message: e.to_string(),
                        })?
                    }
                    None => serde_json::Value::Null,
                };
                let request_ms = match duration_ms {
                    Some(ms) => {
                        if *ms < def.min_ms || *ms > def.max_ms {
                            return Err(CommandError::Invalid {
                                field: "duration".into(),
                                message: format!(
                                    "must be {} to {} seconds; got {}",
                                    def.min_ms as f64 / 1000.0,
                                    def.max_ms as f64 / 1000.0,
                                    *ms as f64 / 1000.0
                                ),
                            });
                        }
                        *ms
                    }
                    None => def.default_ms,
                };
                let mut phases = Vec::new();
                for p in &def.phases {
                    let ms = match &p.duration {
                        DurationSource::Request => request_ms,
                        DurationSource::Arg(path) => {
                            arg_ms(&args, path, def)?.unwrap_or(def.default_ms)
                        }
                        DurationSource::Fixed(ms) => *ms,
                    };
                    phases.push((p.name.clone(), p.set.clone(), ms));
                }
                let flight = Flight {
                    id: rev,
                    command: command.clone(),
                    phase: 0,
                    phases,
                    finish: def.finish.clone(),
                    started_ms: now_ms,
                    phase_started_ms: now_ms,
                    before: s.attributes.clone(),
                };
                s.revision = rev;
                if flight.phases.is_empty() {
                    s.attributes.extend(flight.finish.clone());
                    s.record(&flight, "completed", now_ms, rev);
                    let view = s.view(name);
                    events.push(event(name, "completed", &view));
                    return Ok(DeviceReply::Device(view));
                }
                s.attributes.extend(flight.phases[0].1.clone());
                timers.schedule(
                    flight.due_ms(),
                    Timer::DevicePhase {
                        device: name.clone(),
                        transition: flight.id,
                        phase: 0,
                    },
                );
                let transition = flight.view();
                s.flight = Some(flight);
                let view = s.view(name);
                events.push(event(name, "started", &view));
                Ok(DeviceReply::Started(Started {
                    transition,
                    device: view,
                }))
            }
            DeviceCommand::Abort { name } => {
                let s = self.by_name.get_mut(name).ok_or_else(|| not_found(name))?;
                let Some(f) = s.flight.take() else {
                    return Err(CommandError::NotAllowed {
                        message: format!("{name:?} has no transition in flight to abort"),
                        allowed_from: Vec::new(),
                    });
                };
                match &s.def.abort_set {
                    Some(set) => s.attributes.extend(set.clone()),
                    None => s.attributes = f.before.clone(),
                }
                s.revision = rev;
                s.record(&f, "aborted", now_ms, rev);
                let view = s.view(name);
                events.push(event(name, "aborted", &view));
                Ok(DeviceReply::Device(view))
            }
            DeviceCommand::Reset { name } => {
                let s = self.by_name.get_mut(name).ok_or_else(|| not_found(name))?;
                s.attributes = s.def.initial();
                if let Some(f) = s.flight.take() {
                    s.record(&f, "aborted", now_ms, rev);
                }
                s.revision = rev;
                let view = s.view(name);
                events.push(event(name, "reset", &view));
                Ok(DeviceReply::Device(view))
            }
        }
    }

    /// A phase's timer fired: move the transition on, if it is still the one in flight.
    pub fn phase_due(
        &mut self,
        name: &str,
        transition: u64,
        phase: usize,
        ctx: Ctx,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        let Some(s) = self.by_name.get_mut(name) else {
            return;
        };
        let Some(f) = s.flight.as_mut() else { return };
        if f.id != transition || f.phase != phase {
            return; // aborted or reset since: a stale timer
        }
        let due = f.due_ms();
        s.revision = ctx.index;
        if f.phase + 1 < f.phases.len() {
            f.phase += 1;
            f.phase_started_ms = due;
            let set = f.phases[f.phase].1.clone();
            let next = Timer::DevicePhase {
                device: name.to_string(),
                transition,
                phase: f.phase,
            };
            timers.schedule(f.due_ms(), next);
            s.attributes.extend(set);
            let view = s.view(name);
            events.push(event(name, "phase", &view));
        } else {
            let f = s.flight.take().expect("checked above");
            s.attributes.extend(f.finish.clone());
            s.record(&f, "completed", due, ctx.index);
            let view = s.view(name);
            events.push(event(name, "completed", &view));
        }
    }
}

fn busy(name: &str, f: &Flight) -> CommandError {
    CommandError::Busy {
        message: format!(
            "{name:?} is busy: {} is in flight (phase {}), due at {}",
            f.command,
            f.phases[f.phase].0,
            rfc3339(f.phase_started_ms + f.phases[f.phase..].iter().map(|p| p.2).sum::<i64>())
        ),
        transition: Box::new(f.view()),
    }
}

fn event(name: &str, kind: &str, device: &Device) -> Event {
    Event {
        topic: format!("devices/{name}"),
        body: json!({"kind": kind, "device": device}),
    }
}
