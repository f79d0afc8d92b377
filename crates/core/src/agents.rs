//! Agents: the hosts (workers) that run jobs, with their host facts and liveness.
//!
//! An agent joins with its facts and a TTL, then heartbeats; a heartbeat also extends every
//! lease it names. An agent silent for its TTL plus the same again as grace is marked `lost`
//! exactly once (a timer, fired through the leader's scheduler), and every lease it held ends
//! as if expired, so its jobs run elsewhere. The server's active check can mark it lost sooner.
//! A lost agent that heartbeats again is alive again; the leases it lost stay lost.

use imbl::OrdMap;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_types::{Agent as AgentView, rfc3339};

use crate::jobs::{Jobs, validate_name};
use crate::timers::Timers;
use crate::{CommandError, Ctx, Event, Timer};

/// Bounds on what one agent stores.
pub const MAX_HOST_BYTES: usize = 64 * 1024;
pub const MAX_LEASES_PER_HEARTBEAT: usize = 10_000;

/// What an agent says about itself when it joins (the host document as JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub id: String,
    pub hostname: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub queues: Vec<String>,
    pub host_json: String,
    pub ttl_s: u64,
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub info: AgentInfo,
    pub lost: Option<String>,
    pub joined_ms: i64,
    pub last_seen_ms: i64,
    /// Revision of the join (or revival) whose check timer is the live one.
    epoch: u64,
    pub revision: u64,
}

impl Agent {
    fn deadline(&self) -> i64 {
        self.last_seen_ms + 2 * self.info.ttl_s as i64 * 1000
    }

    pub fn view(&self, running: Vec<u64>) -> AgentView {
        AgentView {
            id: self.info.id.clone(),
            hostname: self.info.hostname.clone(),
            labels: self.info.labels.clone(),
            status: if self.lost.is_some() { "lost" } else { "alive" }.into(),
            last_seen: rfc3339(self.last_seen_ms),
            host: serde_json::from_str(&self.info.host_json).unwrap_or_default(),
            cpus: self.info.cpus,
            memory_bytes: self.info.memory_bytes,
            version: self.info.version.clone(),
            queues: self.info.queues.clone(),
            joined_at: rfc3339(self.joined_ms),
            ttl: self.info.ttl_s,
            url: self.info.url.clone(),
            lost_reason: self.lost.clone(),
            running,
            revision: self.revision,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentCommand {
    /// Join, or join again with new facts (an agent that restarted).
    Join(AgentInfo),
    /// Alive, and so are these leases (job, token).
    Heartbeat { id: String, leases: Vec<(u64, u64)> },
    /// The active check could not reach it.
    Lost { id: String, reason: String },
    /// It left (or an operator forgets it): its leases end now.
    Remove { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentReply {
    /// The agent, and the jobs it holds leases on.
    Agent {
        agent: Box<Agent>,
        running: Vec<u64>,
    },
    Heartbeat {
        cancel: Vec<u64>,
        stale: Vec<u64>,
    },
    Removed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Agents {
    agents: OrdMap<String, Agent>,
}

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn printable(field: &str, s: &str, max: usize) -> Result<(), CommandError> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("at most {max} bytes, no control characters"),
        ));
    }
    Ok(())
}

pub fn validate(cmd: &AgentCommand) -> Result<(), CommandError> {
    match cmd {
        AgentCommand::Join(a) => {
            validate_name("id", &a.id)?;
            if a.id == "config" {
                return Err(invalid(
                    "id",
                    "\"config\" is reserved (GET /v1/agents/config is the cluster document)",
                ));
            }
            if a.hostname.is_empty() {
                return Err(invalid("hostname", "must not be empty"));
            }
            printable("hostname", &a.hostname, 255)?;
            printable("version", &a.version, 64)?;
            for (k, v) in &a.labels {
                validate_name(&format!("labels.{k}"), k)?;
                printable(&format!("labels.{k}"), v, 256)?;
            }
            if a.queues.len() > 64 {
                return Err(invalid("queues", "at most 64 queues"));
            }
            for (i, q) in a.queues.iter().enumerate() {
                validate_name(&format!("queues[{i}]"), q)?;
            }
            if a.host_json.len() > MAX_HOST_BYTES {
                return Err(invalid(
                    "host",
                    format!("at most {MAX_HOST_BYTES} bytes of JSON"),
                ));
            }
            if let Some(url) = &a.url {
                let ok = (url.starts_with("http://") || url.starts_with("https://"))
                    && url.len() <= 512
                    && !url.chars().any(|c| c.is_control() || c.is_whitespace());
                if !ok {
                    return Err(invalid(
                        "url",
                        "must be an http:// or https:// URL of at most 512 bytes",
                    ));
                }
            }
            if !(1..=3600).contains(&a.ttl_s) {
                return Err(invalid("ttl", "must be 1 to 3600 seconds"));
            }
            Ok(())
        }
        AgentCommand::Heartbeat { id, leases } => {
            validate_name("id", id)?;
            if leases.len() > MAX_LEASES_PER_HEARTBEAT {
                return Err(invalid(
                    "leases",
                    format!("at most {MAX_LEASES_PER_HEARTBEAT}"),
                ));
            }
            Ok(())
        }
        AgentCommand::Lost { id, .. } | AgentCommand::Remove { id } => validate_name("id", id),
    }
}

fn event(agent: &Agent, kind: &str, jobs: &Jobs) -> Event {
    Event {
        topic: format!("agents/{}", agent.info.id),
        body: serde_json::json!({"kind": kind, "agent": agent.view(jobs.held_by(&agent.info.id))}),
    }
}

impl Agents {
    pub fn get(&self, id: &str) -> Option<&Agent> {
        self.agents.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values()
    }

    fn found(&mut self, id: &str) -> Result<&mut Agent, CommandError> {
        self.agents
            .get_mut(id)
            .ok_or_else(|| CommandError::NotFound {
                message: format!("agent {id:?} is not known; join first (POST /v1/agents)"),
            })
    }

    pub fn apply(
        &mut self,
        cmd: &AgentCommand,
        jobs: &mut Jobs,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) -> Result<AgentReply, CommandError> {
        validate(cmd)?;
        match cmd {
            AgentCommand::Join(info) => {
                let joined_ms = match self.agents.get(&info.id) {
                    Some(old) if old.lost.is_none() => old.joined_ms,
                    _ => now,
                };
                let agent = Agent {
                    info: info.clone(),
                    lost: None,
                    joined_ms,
                    last_seen_ms: now,
                    epoch: ctx.index,
                    revision: ctx.index,
                };
                timers.schedule(
                    agent.deadline(),
                    Timer::AgentCheck {
                        agent: info.id.clone(),
                        epoch: ctx.index,
                    },
                );
                events.push(event(&agent, "joined", jobs));
                self.agents.insert(info.id.clone(), agent.clone());
                Ok(AgentReply::Agent {
                    agent: Box::new(agent),
                    running: jobs.held_by(&info.id),
                })
            }
            AgentCommand::Heartbeat { id, leases } => {
                let agent = self.found(id)?;
                agent.last_seen_ms = now;
                if agent.lost.take().is_some() {
                    agent.epoch = ctx.index;
                    agent.revision = ctx.index;
                    timers.schedule(
                        agent.deadline(),
                        Timer::AgentCheck {
                            agent: id.clone(),
                            epoch: ctx.index,
                        },
                    );
                    events.push(event(agent, "alive", jobs));
                }
                let (cancel, stale) = jobs.heartbeat_many(leases, now);
                Ok(AgentReply::Heartbeat { cancel, stale })
            }
            AgentCommand::Lost { id, reason } => {
                if self.found(id)?.lost.is_none() {
                    self.mark_lost(id, reason, jobs, ctx, now, timers, events);
                }
                Ok(AgentReply::Agent {
                    agent: Box::new(self.agents[id].clone()),
                    running: jobs.held_by(id),
                })
            }
            AgentCommand::Remove { id } => {
                let agent = self.found(id)?.clone();
                jobs.end_leases_of(id, &format!("worker {id} left"), ctx, now, timers, events);
                events.push(event(&agent, "left", jobs));
                self.agents.remove(id);
                Ok(AgentReply::Removed)
            }
        }
    }

    /// The check timer of agent `id` fell due: re-arm it if a heartbeat came since, else the
    /// agent is lost.
    #[allow(clippy::too_many_arguments)]
    pub fn check_due(
        &mut self,
        id: &str,
        epoch: u64,
        jobs: &mut Jobs,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        let Some(agent) = self.agents.get(id) else {
            return;
        };
        if agent.epoch != epoch || agent.lost.is_some() {
            return;
        }
        if agent.deadline() > now {
            timers.schedule(
                agent.deadline(),
                Timer::AgentCheck {
                    agent: id.into(),
                    epoch,
                },
            );
            return;
        }
        let why = format!("no heartbeat for {} s", (now - agent.last_seen_ms) / 1000);
        self.mark_lost(id, &why, jobs, ctx, now, timers, events);
    }

    #[allow(clippy::too_many_arguments)]
    fn mark_lost(
        &mut self,
        id: &str,
        why: &str,
        jobs: &mut Jobs,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        jobs.end_leases_of(
            id,
            &format!("worker {id} was lost: {why}"),
            ctx,
            now,
            timers,
            events,
        );
        let agent = self.agents.get_mut(id).expect("known");
        agent.lost = Some(why.into());
        agent.revision = ctx.index;
        let agent = agent.clone();
        events.push(event(&agent, "lost", jobs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobCommand, JobReply, Status};

    fn info(id: &str, ttl_s: u64) -> AgentInfo {
        AgentInfo {
            id: id.into(),
            hostname: "host-a".into(),
            cpus: 2,
            memory_bytes: 1 << 30,
            labels: BTreeMap::new(),
            version: "0.1.0".into(),
            queues: vec!["default".into()],
            host_json: r#"{"ip":"10.0.0.1"}"#.into(),
            ttl_s,
            url: None,
        }
    }

    #[test]
    fn a_silent_agent_is_lost_once_and_its_leases_end() {
        let (mut agents, mut jobs, mut timers) =
            (Agents::default(), Jobs::default(), Timers::default());
        let mut index = 0;
        let mut step = |agents: &mut Agents,
                        jobs: &mut Jobs,
                        timers: &mut Timers,
                        now: i64,
                        cmd: Option<AgentCommand>| {
            index += 1;
            let ctx = Ctx { index };
            let mut events = Vec::new();
            if let Some(cmd) = cmd {
                agents
                    .apply(&cmd, jobs, ctx, now, timers, &mut events)
                    .unwrap();
            }
            for t in timers.take_due(now) {
                match t {
                    Timer::AgentCheck { agent, epoch } => {
                        agents.check_due(&agent, epoch, jobs, ctx, now, timers, &mut events)
                    }
                    Timer::JobLease { job, token } => {
                        jobs.lease_due(job, token, ctx, now, timers, &mut events)
                    }
                    Timer::JobReady { job } => jobs.ready_due(job, ctx, &mut events),
                    other => panic!("{other:?}"),
                }
            }
            events
        };
        let t0 = 1_000_000;
        step(
            &mut agents,
            &mut jobs,
            &mut timers,
            t0,
            Some(AgentCommand::Join(info("a1", 5))),
        );
        let spec: switchyard_types::JobSpec =
            serde_json::from_value(serde_json::json!({"command": ["x"], "lease_ttl": 3600}))
                .unwrap();
        let mut events = Vec::new();
        jobs.apply(
            &JobCommand::Enqueue {
                specs: vec![spec],
                retention_ms: crate::jobs::DEFAULT_RETENTION_MS,
            },
            Ctx { index: 100 },
            t0,
            &mut timers,
            &mut events,
        )
        .unwrap();
        let Ok(JobReply::Leased { jobs: got }) = jobs.apply(
            &JobCommand::Lease {
                worker: "a1".into(),
                queue: "default".into(),
                labels: BTreeMap::new(),
                max: 1,
            },
            Ctx { index: 101 },
            t0,
            &mut timers,
            &mut events,
        ) else {
            panic!()
        };
        let (id, token) = (got[0].0.id, got[0].1);
        // Heartbeats keep it alive well past 2 x TTL.
        for s in 1..=4 {
            let ev = step(
                &mut agents,
                &mut jobs,
                &mut timers,
                t0 + s * 4_000,
                Some(AgentCommand::Heartbeat {
                    id: "a1".into(),
                    leases: vec![(id, token)],
                }),
            );
            assert!(ev.is_empty(), "{ev:?}");
        }
        let last = t0 + 16_000;
        assert!(step(&mut agents, &mut jobs, &mut timers, last + 9_999, None).is_empty());
        let ev = step(&mut agents, &mut jobs, &mut timers, last + 10_000, None);
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| e.body["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["requeued", "lost"]);
        assert_eq!(agents.get("a1").unwrap().view(vec![]).status, "lost");
        assert_eq!(jobs.get(id).unwrap().status, Status::Queued);
        assert!(jobs.held_by("a1").is_empty());
        // Once: nothing more happens to it however long it stays silent (the requeued job
        // only becomes ready after its backoff).
        let ev = step(&mut agents, &mut jobs, &mut timers, last + 100_000, None);
        let kinds: Vec<&str> = ev
            .iter()
            .map(|e| e.body["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["ready"]);
        // A heartbeat brings it back; the lease it lost is reported stale.
        index += 1;
        let mut ev = Vec::new();
        let r = agents
            .apply(
                &AgentCommand::Heartbeat {
                    id: "a1".into(),
                    leases: vec![(id, token)],
                },
                &mut jobs,
                Ctx { index },
                last + 100_001,
                &mut timers,
                &mut ev,
            )
            .unwrap();
        assert_eq!(
            r,
            AgentReply::Heartbeat {
                cancel: vec![],
                stale: vec![id]
            }
        );
        assert_eq!(ev[0].body["kind"], "alive");
    }

    #[test]
    fn bad_joins_name_the_field() {
        let mut bad = info("a b", 5);
        let check = |a: &AgentInfo, field: &str| match validate(&AgentCommand::Join(a.clone())) {
            Err(CommandError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        };
        check(&bad, "id");
        bad.id = "ok".into();
        bad.ttl_s = 0;
        check(&bad, "ttl");
        bad.ttl_s = 5;
        bad.host_json = "x".repeat(MAX_HOST_BYTES + 1);
        check(&bad, "host");
    }
}
