//! Jobs: commands to run on workers, leased with fencing tokens, never lost.
//!
//! A job is `queued` until a worker leases it. A lease carries a fencing token (the revision of
//! the command that granted it) and an expiry; the worker extends it by heartbeat and ends the
//! job with its token. A lease that expires (a timer, fired through the leader's scheduler)
//! puts the job back in its queue after a backoff, or makes it `dead` once it has used
//! `max_attempts` leases. Every lease counts as an attempt, so a job that ran twice shows it.
//! Anything sent with a token that is no longer the job's current one is refused and changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use switchyard_types::{Job as JobView, JobSpec, rfc3339};

use crate::timers::Timers;
use crate::{CommandError, Ctx, Event, Timer};

/// Longest argv element list, environment, label sets: bounds on what one job stores.
pub const MAX_ARGS: usize = 1000;
pub const MAX_ENV_BYTES: usize = 64 * 1024;
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// Most jobs in one batch, and most jobs one lease request takes.
pub const MAX_BATCH: usize = 1000;
/// Backoff after an expired lease: 1 s, doubling per attempt, at most 60 s.
const BACKOFF_BASE_MS: i64 = 1000;
const BACKOFF_MAX_MS: i64 = 60_000;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
            Status::Dead => "dead",
        }
    }

    /// A final state: nothing happens to the job any more (but a retry by hand).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// How a worker says an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// The process exited; code 0 is success.
    Exited,
    /// The worker stopped it at its timeout.
    TimedOut,
    /// The worker stopped it because a cancel was requested.
    Cancelled,
    /// It could not be started (bad program, bad working directory, ...).
    Failed,
}

/// The current lease of a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Fencing token: the revision of the command that granted the lease.
    pub token: u64,
    pub worker: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub spec: JobSpec,
    pub status: Status,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Not leasable before this time (backoff after an expired lease).
    pub not_before_ms: i64,
    pub lease: Option<Lease>,
    pub worker: Option<String>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub revision: u64,
}

impl Job {
    pub fn view(&self) -> JobView {
        JobView {
            id: self.id,
            status: self.status.as_str().into(),
            attempts: self.attempts,
            exit_code: self.exit_code,
            queue: self.spec.queue.clone(),
            spec: self.spec.clone(),
            created_at: rfc3339(self.created_ms),
            started_at: self.started_ms.map(rfc3339),
            finished_at: self.finished_ms.map(rfc3339),
            worker: self.worker.clone(),
            error: self.error.clone(),
            cancel_requested: self.cancel_requested,
            revision: self.revision,
        }
    }
}

/// Commands of the jobs app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobCommand {
    /// Add jobs (one, or a batch: all or none).
    Enqueue { specs: Vec<JobSpec> },
    /// Lease up to `max` ready jobs of `queue` whose label constraints `labels` satisfies,
    /// highest priority first, then oldest.
    Lease {
        worker: String,
        queue: String,
        labels: BTreeMap<String, String>,
        max: u32,
    },
    /// Extend a lease by its TTL; the reply says whether a cancel is waiting.
    Heartbeat { id: u64, token: u64 },
    /// End the attempt holding `token`.
    Finish {
        id: u64,
        token: u64,
        ending: Ending,
        exit_code: Option<i32>,
        error: Option<String>,
    },
    /// Give a job back unrun (a worker shutting down): queued again, the attempt not counted.
    Release { id: u64, token: u64 },
    /// Cancel: a queued job ends `cancelled` now; a running one when its worker stops it.
    Cancel { id: u64 },
    /// Queue a job in a final state again, with its attempts reset.
    Retry { id: u64 },
}

/// Replies of the jobs app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobReply {
    Enqueued {
        ids: Vec<u64>,
    },
    /// Leased jobs with their tokens (possibly none).
    Leased {
        jobs: Vec<(JobView, u64)>,
    },
    Heartbeat {
        cancel_requested: bool,
        expires_ms: i64,
    },
    Job(Box<JobView>),
}

/// Every job, and the ready index the lease command scans.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Jobs {
    jobs: BTreeMap<u64, Job>,
    /// Queued jobs: (queue, -priority, id).
    ready: BTreeSet<(String, i64, u64)>,
    next_id: u64,
}

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Queue names and worker ids: 1 to 64 of `A-Z a-z 0-9 _ . -`.
pub fn validate_name(field: &str, s: &str) -> Result<(), CommandError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be 1 to 64 of A-Z a-z 0-9 _ . -; got {s:?}"),
        ))
    }
}

/// Check a job spec; the error names the field (prefixed with `prefix`, e.g. `jobs[3].`).
pub fn validate_spec(spec: &JobSpec, prefix: &str) -> Result<(), CommandError> {
    let f = |name: &str| format!("{prefix}{name}");
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(invalid(
            &f("command"),
            "must name a program: a non-empty argv",
        ));
    }
    if spec.command.len() > MAX_ARGS {
        return Err(invalid(
            &f("command"),
            format!("at most {MAX_ARGS} elements"),
        ));
    }
    if spec.command.iter().any(|a| a.contains('\0')) {
        return Err(invalid(&f("command"), "must not contain NUL characters"));
    }
    validate_name(&f("queue"), &spec.queue)?;
    if spec.timeout == Some(0) || spec.timeout.is_some_and(|t| t > 7 * 86_400) {
        return Err(invalid(
            &f("timeout"),
            "must be 1 to 604800 seconds, or absent",
        ));
    }
    if !(1..=100).contains(&spec.max_attempts) {
        return Err(invalid(&f("max_attempts"), "must be 1 to 100"));
    }
    if !(1..=3600).contains(&spec.lease_ttl) {
        return Err(invalid(&f("lease_ttl"), "must be 1 to 3600 seconds"));
    }
    let mut env_bytes = 0;
    for (k, v) in &spec.env {
        let key_ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(invalid(
                &f(&format!("env.{k}")),
                "names are A-Z a-z 0-9 _, not starting with a digit",
            ));
        }
        if v.contains('\0') {
            return Err(invalid(&f(&format!("env.{k}")), "must not contain NUL"));
        }
        env_bytes += k.len() + v.len();
    }
    if env_bytes > MAX_ENV_BYTES {
        return Err(invalid(
            &f("env"),
            format!("at most {MAX_ENV_BYTES} bytes of names and values; got {env_bytes}"),
        ));
    }
    for k in spec.labels.keys() {
        validate_name(&f(&format!("labels.{k}")), k)?;
    }
    if let Some(cwd) = &spec.cwd
        && (cwd.is_empty() || cwd.contains('\0'))
    {
        return Err(invalid(&f("cwd"), "must be a non-empty path without NUL"));
    }
    let size: usize = spec.command.iter().map(String::len).sum::<usize>()
        + env_bytes
        + spec
            .labels
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > MAX_SPEC_BYTES {
        return Err(invalid(
            &f("command"),
            format!("the job is {size} bytes; at most {MAX_SPEC_BYTES}"),
        ));
    }
    Ok(())
}

/// Validate a command before it is proposed (the same checks apply repeats).
pub fn validate(cmd: &JobCommand) -> Result<(), CommandError> {
    match cmd {
        JobCommand::Enqueue { specs } => {
            if specs.is_empty() || specs.len() > MAX_BATCH {
                return Err(invalid("jobs", format!("must hold 1 to {MAX_BATCH} jobs")));
            }
            let batch = specs.len() > 1;
            for (i, s) in specs.iter().enumerate() {
                let prefix = if batch {
                    format!("jobs[{i}].")
                } else {
                    String::new()
                };
                validate_spec(s, &prefix)?;
            }
            Ok(())
        }
        JobCommand::Lease {
            worker, queue, max, ..
        } => {
            validate_name("worker", worker)?;
            validate_name("queue", queue)?;
            if *max == 0 || *max as usize > MAX_BATCH {
                return Err(invalid("max", format!("must be 1 to {MAX_BATCH}")));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A queued job's place in the ready index: its queue, then highest priority, then oldest.
fn ready_key(job: &Job) -> (String, i64, u64) {
    (
        job.spec.queue.clone(),
        -i64::from(job.spec.priority),
        job.id,
    )
}

fn backoff_ms(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(16);
    (BACKOFF_BASE_MS << shift).min(BACKOFF_MAX_MS)
}

fn event(job: &Job, kind: &str) -> Event {
    Event {
        topic: format!("jobs/{}", job.id),
        body: serde_json::json!({"kind": kind, "job": job.view()}),
    }
}

impl Jobs {
    pub fn get(&self, id: u64) -> Option<&Job> {
        self.jobs.get(&id)
    }

    fn found(&mut self, id: u64) -> Result<&mut Job, CommandError> {
        self.jobs
            .get_mut(&id)
            .ok_or_else(|| CommandError::NotFound {
                message: format!("job {id} does not exist"),
            })
    }

    /// The running job `id` whose lease is `token`, or the refusal.
    fn leased(&mut self, id: u64, token: u64) -> Result<&mut Job, CommandError> {
        let job = self.found(id)?;
        match &job.lease {
            Some(l) if l.token == token => Ok(job),
            current => Err(CommandError::Conflict {
                message: format!(
                    "job {id}: lease token {token} is not current ({}); the lease expired or \
                     the job was re-leased, so this report is refused",
                    match current {
                        Some(l) => format!("current token {}", l.token),
                        None => format!("the job is {}", job.status.as_str()),
                    }
                ),
            }),
        }
    }

    fn enqueue_one(&mut self, id: u64, spec: JobSpec, now: i64, ctx: Ctx) -> Job {
        let job = Job {
            id,
            spec,
            status: Status::Queued,
            attempts: 0,
            exit_code: None,
            created_ms: now,
            started_ms: None,
            finished_ms: None,
            not_before_ms: now,
            lease: None,
            worker: None,
            error: None,
            cancel_requested: false,
            revision: ctx.index,
        };
        self.ready.insert(ready_key(&job));
        job
    }

    fn unready(&mut self, job: &Job) {
        self.ready.remove(&ready_key(job));
    }

    pub fn apply(
        &mut self,
        cmd: &JobCommand,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) -> Result<JobReply, CommandError> {
        validate(cmd)?;
        match cmd {
            JobCommand::Enqueue { specs } => {
                let mut ids = Vec::with_capacity(specs.len());
                for spec in specs {
                    let id = self.next_id;
                    self.next_id += 1;
                    let job = self.enqueue_one(id, spec.clone(), now, ctx);
                    events.push(event(&job, "queued"));
                    self.jobs.insert(id, job);
                    ids.push(id);
                }
                Ok(JobReply::Enqueued { ids })
            }
            JobCommand::Lease {
                worker,
                queue,
                labels,
                max,
            } => {
                let candidates: Vec<u64> = self
                    .ready
                    .range((queue.clone(), i64::MIN, 0)..)
                    .take_while(|(q, _, _)| q == queue)
                    .map(|(_, _, id)| *id)
                    .filter(|id| {
                        let j = &self.jobs[id];
                        j.not_before_ms <= now
                            && j.spec.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
                    .take(*max as usize)
                    .collect();
                let mut leased = Vec::new();
                for id in candidates {
                    let job = self.jobs.get_mut(&id).expect("indexed");
                    let ttl = job.spec.lease_ttl as i64 * 1000;
                    job.status = Status::Running;
                    job.attempts += 1;
                    job.started_ms = Some(now);
                    job.worker = Some(worker.clone());
                    job.lease = Some(Lease {
                        token: ctx.index,
                        worker: worker.clone(),
                        expires_ms: now + ttl,
                    });
                    job.revision = ctx.index;
                    timers.schedule(
                        now + ttl,
                        Timer::JobLease {
                            job: id,
                            token: ctx.index,
                        },
                    );
                    let job = job.clone();
                    self.unready(&job);
                    events.push(event(&job, "leased"));
                    leased.push((job.view(), ctx.index));
                }
                Ok(JobReply::Leased { jobs: leased })
            }
            JobCommand::Heartbeat { id, token } => {
                let job = self.leased(*id, *token)?;
                let ttl = job.spec.lease_ttl as i64 * 1000;
                let lease = job.lease.as_mut().expect("leased");
                lease.expires_ms = now + ttl;
                // The timer already scheduled finds the later expiry and re-arms itself.
                Ok(JobReply::Heartbeat {
                    cancel_requested: job.cancel_requested,
                    expires_ms: now + ttl,
                })
            }
            JobCommand::Finish {
                id,
                token,
                ending,
                exit_code,
                error,
            } => {
                let job = self.leased(*id, *token)?;
                job.status = match ending {
                    Ending::Exited if *exit_code == Some(0) => Status::Succeeded,
                    Ending::Exited | Ending::Failed => Status::Failed,
                    Ending::TimedOut => Status::TimedOut,
                    Ending::Cancelled => Status::Cancelled,
                };
                job.exit_code = *exit_code;
                job.error = error.clone();
                job.finished_ms = Some(now);
                job.lease = None;
                job.revision = ctx.index;
                let job = job.clone();
                events.push(event(&job, "finished"));
                Ok(JobReply::Job(Box::new(job.view())))
            }
            JobCommand::Release { id, token } => {
                let job = self.leased(*id, *token)?;
                job.status = Status::Queued;
                job.attempts -= 1;
                job.lease = None;
                job.not_before_ms = now;
                job.revision = ctx.index;
                let job = job.clone();
                self.ready.insert(ready_key(&job));
                events.push(event(&job, "released"));
                Ok(JobReply::Job(Box::new(job.view())))
            }
            JobCommand::Cancel { id } => {
                let job = self.found(*id)?;
                match job.status {
                    Status::Queued => {
                        job.status = Status::Cancelled;
                        job.finished_ms = Some(now);
                        job.revision = ctx.index;
                        let job = job.clone();
                        self.unready(&job);
                        events.push(event(&job, "cancelled"));
                        Ok(JobReply::Job(Box::new(job.view())))
                    }
                    Status::Running if !job.cancel_requested => {
                        job.cancel_requested = true;
                        job.revision = ctx.index;
                        let job = job.clone();
                        events.push(event(&job, "cancel_requested"));
                        Ok(JobReply::Job(Box::new(job.view())))
                    }
                    // Asked again, or already over: nothing changes.
                    _ => Ok(JobReply::Job(Box::new(job.view()))),
                }
            }
            JobCommand::Retry { id } => {
                let job = self.found(*id)?;
                if !job.status.is_final() {
                    return Err(CommandError::Conflict {
                        message: format!(
                            "job {id} is {}; only a finished job can be retried",
                            job.status.as_str()
                        ),
                    });
                }
                let spec = job.spec.clone();
                let created = job.created_ms;
                let mut again = self.enqueue_one(*id, spec, now, ctx);
                again.created_ms = created;
                events.push(event(&again, "queued"));
                self.jobs.insert(*id, again.clone());
                Ok(JobReply::Job(Box::new(again.view())))
            }
        }
    }

    /// The lease timer of job `id` with `token` fell due: re-arm it if a heartbeat moved the
    /// expiry, else requeue the job after a backoff, or make it dead.
    pub fn lease_due(
        &mut self,
        id: u64,
        token: u64,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(lease) = &job.lease else { return };
        if lease.token != token {
            return;
        }
        if lease.expires_ms > now {
            timers.schedule(lease.expires_ms, Timer::JobLease { job: id, token });
            return;
        }
        job.lease = None;
        job.revision = ctx.index;
        job.error = Some(format!(
            "lease of worker {} expired (attempt {})",
            job.worker.as_deref().unwrap_or("?"),
            job.attempts
        ));
        if job.cancel_requested {
            job.status = Status::Cancelled;
            job.finished_ms = Some(now);
            let job = job.clone();
            events.push(event(&job, "cancelled"));
        } else if job.attempts >= job.spec.max_attempts {
            job.status = Status::Dead;
            job.finished_ms = Some(now);
            let job = job.clone();
            events.push(event(&job, "dead"));
        } else {
            job.status = Status::Queued;
            job.not_before_ms = now + backoff_ms(job.attempts);
            timers.schedule(job.not_before_ms, Timer::JobReady { job: id });
            let job = job.clone();
            self.ready.insert(ready_key(&job));
            events.push(event(&job, "requeued"));
        }
    }

    /// A requeued job's backoff ended: say so, so waiting workers look again.
    pub fn ready_due(&mut self, id: u64, ctx: Ctx, events: &mut Vec<Event>) {
        if let Some(job) = self.jobs.get_mut(&id)
            && job.status == Status::Queued
        {
            job.revision = ctx.index;
            let job = job.clone();
            events.push(event(&job, "ready"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &[&str]) -> JobSpec {
        serde_json::from_value(serde_json::json!({"command": cmd})).unwrap()
    }

    struct World {
        jobs: Jobs,
        timers: Timers,
        index: u64,
        now: i64,
    }

    impl World {
        fn new() -> Self {
            Self {
                jobs: Jobs::default(),
                timers: Timers::default(),
                index: 0,
                now: 1_000_000,
            }
        }

        fn run(&mut self, cmd: JobCommand) -> (Result<JobReply, CommandError>, Vec<Event>) {
            self.index += 1;
            let mut events = Vec::new();
            let r = self.jobs.apply(
                &cmd,
                Ctx { index: self.index },
                self.now,
                &mut self.timers,
                &mut events,
            );
            (r, events)
        }

        /// Advance the clock and fire what falls due, as a tick does.
        fn advance(&mut self, ms: i64) -> Vec<Event> {
            self.now += ms;
            self.index += 1;
            let mut events = Vec::new();
            for t in self.timers.take_due(self.now) {
                let ctx = Ctx { index: self.index };
                match t {
                    Timer::JobLease { job, token } => self.jobs.lease_due(
                        job,
                        token,
                        ctx,
                        self.now,
                        &mut self.timers,
                        &mut events,
                    ),
                    Timer::JobReady { job } => self.jobs.ready_due(job, ctx, &mut events),
                    other => panic!("unexpected timer {other:?}"),
                }
            }
            events
        }

        fn lease(&mut self, worker: &str, max: u32) -> Vec<(u64, u64)> {
            match self.run(JobCommand::Lease {
                worker: worker.into(),
                queue: "default".into(),
                labels: BTreeMap::new(),
                max,
            }) {
                (Ok(JobReply::Leased { jobs }), _) => {
                    jobs.into_iter().map(|(j, t)| (j.id, t)).collect()
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        let cases = [
            (serde_json::json!({"command": []}), "command"),
            (serde_json::json!({"command": [""]}), "command"),
            (
                serde_json::json!({"command": ["x"], "queue": "a b"}),
                "queue",
            ),
            (serde_json::json!({"command": ["x"], "queue": ""}), "queue"),
            (
                serde_json::json!({"command": ["x"], "timeout": 0}),
                "timeout",
            ),
            (
                serde_json::json!({"command": ["x"], "max_attempts": 0}),
                "max_attempts",
            ),
            (
                serde_json::json!({"command": ["x"], "lease_ttl": 0}),
                "lease_ttl",
            ),
            (
                serde_json::json!({"command": ["x"], "env": {"1A": "v"}}),
                "env.1A",
            ),
            (
                serde_json::json!({"command": ["x"], "env": {"BIG": "v".repeat(70_000)}}),
                "env",
            ),
        ];
        for (json, field) in cases {
            let s: JobSpec = serde_json::from_value(json.clone()).unwrap();
            match validate_spec(&s, "") {
                Err(CommandError::Invalid { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        let mut w = World::new();
        let batch = vec![spec(&["ok"]), spec(&[])];
        let (r, events) = w.run(JobCommand::Enqueue { specs: batch });
        match r {
            Err(CommandError::Invalid { field, .. }) => assert_eq!(field, "jobs[1].command"),
            other => panic!("{other:?}"),
        }
        assert!(events.is_empty());
        assert_eq!(w.jobs, Jobs::default(), "a refused batch stores nothing");
    }

    #[test]
    fn lease_order_labels_and_completion() {
        let mut w = World::new();
        let mut low = spec(&["low"]);
        low.priority = -1;
        let mut gpu = spec(&["gpu"]);
        gpu.labels.insert("gpu".into(), "yes".into());
        w.run(JobCommand::Enqueue {
            specs: vec![low, spec(&["a"]), gpu, spec(&["b"])],
        })
        .0
        .unwrap();
        // Priority first, then enqueue order; the gpu job needs the label.
        let got = w.lease("w1", 10);
        let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![1, 3, 0]);
        let (r, _) = w.run(JobCommand::Lease {
            worker: "w2".into(),
            queue: "default".into(),
            labels: BTreeMap::from([("gpu".into(), "yes".into())]),
            max: 10,
        });
        let Ok(JobReply::Leased { jobs }) = r else {
            panic!()
        };
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].0.id, 2);
        assert!(w.lease("w1", 10).is_empty(), "nothing left");

        let (id, token) = got[0];
        let (r, events) = w.run(JobCommand::Finish {
            id,
            token,
            ending: Ending::Exited,
            exit_code: Some(0),
            error: None,
        });
        let Ok(JobReply::Job(j)) = r else { panic!() };
        assert_eq!(j.status, "succeeded");
        assert_eq!(events[0].topic, format!("jobs/{id}"));
        let (id, token) = got[1];
        w.run(JobCommand::Finish {
            id,
            token,
            ending: Ending::Exited,
            exit_code: Some(3),
            error: None,
        })
        .0
        .unwrap();
        assert_eq!(w.jobs.get(id).unwrap().status, Status::Failed);
        assert_eq!(w.jobs.get(id).unwrap().exit_code, Some(3));
    }

    #[test]
    fn a_stale_token_is_refused_and_changes_nothing() {
        let mut w = World::new();
        let mut s = spec(&["x"]);
        s.lease_ttl = 5;
        w.run(JobCommand::Enqueue { specs: vec![s] }).0.unwrap();
        let (id, old) = w.lease("w1", 1)[0];
        w.advance(5_001);
        w.advance(backoff_ms(1));
        let (_, new) = w.lease("w2", 1)[0];
        assert_ne!(old, new);
        let before = w.jobs.clone();
        for cmd in [
            JobCommand::Finish {
                id,
                token: old,
                ending: Ending::Exited,
                exit_code: Some(0),
                error: None,
            },
            JobCommand::Heartbeat { id, token: old },
            JobCommand::Release { id, token: old },
        ] {
            let (r, events) = w.run(cmd);
            assert!(matches!(r, Err(CommandError::Conflict { .. })), "{r:?}");
            assert!(events.is_empty());
            assert_eq!(w.jobs, before);
        }
        let j = w.jobs.get(id).unwrap();
        assert_eq!((j.status, j.attempts), (Status::Running, 2));
    }

    #[test]
    fn expired_leases_requeue_with_backoff_then_the_job_is_dead() {
        let mut w = World::new();
        let mut s = spec(&["x"]);
        s.lease_ttl = 10;
        s.max_attempts = 2;
        w.run(JobCommand::Enqueue { specs: vec![s] }).0.unwrap();
        let (id, token) = w.lease("w1", 1)[0];
        // Heartbeats keep it alive past its first TTL.
        w.advance(8_000);
        w.run(JobCommand::Heartbeat { id, token }).0.unwrap();
        w.advance(8_000);
        assert_eq!(w.jobs.get(id).unwrap().status, Status::Running);
        let events = w.advance(2_001);
        assert_eq!(events[0].body["kind"], "requeued");
        assert_eq!(w.jobs.get(id).unwrap().status, Status::Queued);
        assert!(w.lease("w2", 1).is_empty(), "in backoff");
        let events = w.advance(backoff_ms(1));
        assert_eq!(events[0].body["kind"], "ready");
        let (_, t2) = w.lease("w2", 1)[0];
        assert!(t2 > token);
        let events = w.advance(10_001);
        assert_eq!(events[0].body["kind"], "dead");
        let j = w.jobs.get(id).unwrap();
        assert_eq!((j.status, j.attempts), (Status::Dead, 2));
        assert!(j.error.as_deref().unwrap().contains("expired"));
        // A dead job can be retried by hand.
        let (r, _) = w.run(JobCommand::Retry { id });
        let Ok(JobReply::Job(j)) = r else { panic!() };
        assert_eq!((j.status.as_str(), j.attempts), ("queued", 0));
        assert_eq!(w.lease("w3", 1).len(), 1);
    }

    #[test]
    fn cancel_queued_now_running_through_the_worker() {
        let mut w = World::new();
        w.run(JobCommand::Enqueue {
            specs: vec![spec(&["a"]), spec(&["b"])],
        })
        .0
        .unwrap();
        let (r, _) = w.run(JobCommand::Cancel { id: 1 });
        let Ok(JobReply::Job(j)) = r else { panic!() };
        assert_eq!(j.status, "cancelled");
        let (id, token) = w.lease("w1", 10)[0];
        assert_eq!(id, 0, "the cancelled job is out of the queue");
        let (_, events) = w.run(JobCommand::Cancel { id });
        assert_eq!(events[0].body["kind"], "cancel_requested");
        let (r, events) = w.run(JobCommand::Cancel { id });
        assert!(
            r.is_ok() && events.is_empty(),
            "asking twice changes nothing"
        );
        let (r, _) = w.run(JobCommand::Heartbeat { id, token });
        assert!(matches!(
            r,
            Ok(JobReply::Heartbeat {
                cancel_requested: true,
                ..
            })
        ));
        w.run(JobCommand::Finish {
            id,
            token,
            ending: Ending::Cancelled,
            exit_code: None,
            error: None,
        })
        .0
        .unwrap();
        assert_eq!(w.jobs.get(id).unwrap().status, Status::Cancelled);
    }

    #[test]
    fn release_requeues_without_counting_the_attempt() {
        let mut w = World::new();
        w.run(JobCommand::Enqueue {
            specs: vec![spec(&["a"])],
        })
        .0
        .unwrap();
        let (id, token) = w.lease("w1", 1)[0];
        w.run(JobCommand::Release { id, token }).0.unwrap();
        let j = w.jobs.get(id).unwrap();
        assert_eq!((j.status, j.attempts), (Status::Queued, 0));
        assert_eq!(w.lease("w2", 1)[0].0, id);
        // The old lease's timer finds a different token and does nothing.
        let events = w.advance(31_000);
        assert!(events.iter().all(|e| e.body["job"]["worker"] == "w2"));
    }
}
