//! Jobs: commands to run on workers, leased with fencing tokens, never lost.
//!
//! A job is `queued` until a worker leases it. A lease carries a fencing token (the revision of
//! the command that granted it) and an expiry; the worker extends it by heartbeat and ends the
//! job with its token. A lease that expires (a timer, fired through the leader's scheduler)
//! puts the job back in its queue after a backoff, or makes it `dead` once it has used
//! `max_attempts` leases. Every lease counts as an attempt, so a job that ran twice shows it.
//! Anything sent with a token that is no longer the job's current one is refused and changes
//! nothing.

use imbl::{OrdMap, OrdSet};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
pub use switchyard_types::JobEnding as Ending;
use switchyard_types::{Job as JobView, JobLogs, JobSpec, LogLine, LogStream, NewLogLine, rfc3339};

use crate::timers::{TimerKey, Timers};
use crate::{CommandError, Ctx, Event, Timer};

/// Longest argv element list, environment, label sets: bounds on what one job stores.
pub const MAX_ARGS: usize = 1000;
pub const MAX_ENV_BYTES: usize = 64 * 1024;
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// Most jobs in one batch, and most jobs one lease request takes.
pub const MAX_BATCH: usize = 1000;
/// Most lines in one log batch, and the longest line (workers split longer ones).
pub const MAX_LOG_BATCH: usize = 10_000;
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Default cap on one job's stored log; the oldest lines go first.
pub const DEFAULT_LOG_CAP_BYTES: u64 = 1024 * 1024;
/// How long a job in a final state (and its log) is kept before it is forgotten, unless the
/// server is configured otherwise: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 86_400_000;
/// The longest retention a job may ask for: 10 years.
pub const MAX_RETENTION_MS: i64 = 10 * 366 * 86_400_000;
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

    /// Every status, in the order a job can reach them (the API document lists these).
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Cancelled,
        Status::Dead,
    ];

    /// The status named `name` (as the API spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// A final state: nothing happens to the job any more (but a retry by hand).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// The current lease of a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Fencing token: the revision of the command that granted the lease.
    pub token: u64,
    pub worker: String,
    pub expires_ms: i64,
    /// Log lines appended under this lease: a retried batch is recognised by its `seq`.
    pub log_lines: u64,
    /// The expiry timer, cancelled when the lease ends first (so no tick is spent on it).
    pub timer: TimerKey,
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
    /// What queued it, when an app did (e.g. `deployments/NAME/ACTION_ID`).
    pub owner: Option<String>,
    /// How long it is kept once in a final state (a run's jobs: as long as the run).
    pub retention_ms: i64,
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
            owner: self.owner.clone(),
        }
    }
}

/// Commands of the jobs app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobCommand {
    /// Add jobs (one, or a batch: all or none), each kept for `retention_ms` once finished.
    Enqueue {
        specs: Vec<JobSpec>,
        retention_ms: i64,
    },
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
    /// A `Finish` and then a `Lease`, as one command: a worker that ends a job and wants the
    /// next one spends one round trip and one log entry. A refused finish refuses both.
    FinishThenLease {
        finish: Box<JobCommand>,
        lease: Box<JobCommand>,
    },
    /// Give a job back unrun (a worker shutting down): queued again, the attempt not counted.
    Release { id: u64, token: u64 },
    /// Append output lines to the log of the job leased with `token`, keeping at most
    /// `cap_bytes` of text (the oldest lines are dropped first). `seq` is how many lines the
    /// worker sent under this lease before these: lines already stored (a retried batch whose
    /// answer was lost) are skipped, so a retry never duplicates a line.
    Log {
        id: u64,
        token: u64,
        seq: u64,
        lines: Vec<NewLogLine>,
        cap_bytes: u64,
    },
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
    /// Lines appended; the offset after the last one.
    Logged {
        next: u64,
    },
    /// `FinishThenLease`: the finished job, then the leased ones.
    FinishedThenLeased {
        finished: Box<JobView>,
        jobs: Vec<(JobView, u64)>,
    },
}

/// One job's stored output: the kept tail, with the count of lines dropped before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLog {
    lines: VecDeque<StoredLine>,
    /// Offset of the first kept line (= lines dropped so far).
    first: u64,
    bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredLine {
    stream: LogStream,
    time_ms: i64,
    text: String,
}

impl JobLog {
    pub fn next(&self) -> u64 {
        self.first + self.lines.len() as u64
    }

    /// Why the job ended badly (a command that could not start, a lost lease), as its last
    /// line, so whoever reads the log reads the reason.
    fn push_reason(&mut self, why: &str, now: i64) {
        self.bytes += why.len() as u64;
        self.lines.push_back(StoredLine {
            stream: LogStream::Stderr,
            time_ms: now,
            text: why.to_string(),
        });
    }

    fn append(&mut self, lines: &[NewLogLine], cap_bytes: u64) {
        for l in lines {
            self.bytes += l.text.len() as u64;
            self.lines.push_back(StoredLine {
                stream: l.stream,
                time_ms: l.time_ms,
                text: l.text.clone(),
            });
        }
        while self.bytes > cap_bytes
            && let Some(old) = self.lines.pop_front()
        {
            self.bytes -= old.text.len() as u64;
            self.first += 1;
        }
    }

    /// Up to `limit` lines from offset `from` (or from the first kept line, if `from` was
    /// dropped).
    fn read(&self, from: u64, limit: usize) -> (Vec<LogLine>, u64) {
        let start = from.max(self.first);
        let lines: Vec<LogLine> = self
            .lines
            .iter()
            .enumerate()
            .skip((start - self.first) as usize)
            .take(limit)
            .map(|(i, l)| LogLine {
                offset: self.first + i as u64,
                stream: l.stream,
                time: rfc3339(l.time_ms),
                text: l.text.clone(),
            })
            .collect();
        let next = lines
            .last()
            .map_or(start.min(self.next()), |l| l.offset + 1);
        (lines, next)
    }
}

/// Every job, and the ready index the lease command scans.
///
/// Jobs and logs sit behind an `Arc` in their maps (encoded as themselves): a map's node holds
/// 16 entries inline, so a job inline would cost a node slot of its full size whether the node
/// is full or not, and a change to a node shared with a snapshot would clone its 16 jobs
/// deeply; behind an `Arc` a slot is a pointer and only the changed job is cloned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Jobs {
    jobs: OrdMap<u64, Arc<Job>>,
    /// Queued jobs: (queue, -priority, id).
    ready: OrdSet<(String, i64, u64)>,
    /// Jobs queued or running, per queue.
    open: OrdMap<String, u64>,
    /// Leased jobs, per worker.
    held: OrdMap<String, OrdSet<u64>>,
    logs: OrdMap<u64, Arc<JobLog>>,
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

/// Check a job's environment variables (names of `A-Z a-z 0-9 _` not starting with a digit,
/// values without NUL, [`MAX_ENV_BYTES`] in all); answers their size.
pub fn validate_env(env: &BTreeMap<String, String>, prefix: &str) -> Result<usize, CommandError> {
    let mut env_bytes = 0;
    for (k, v) in env {
        let key_ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(invalid(
                &format!("{prefix}env.{k}"),
                "names are A-Z a-z 0-9 _, not starting with a digit",
            ));
        }
        if v.contains('\0') {
            return Err(invalid(&format!("{prefix}env.{k}"), "must not contain NUL"));
        }
        env_bytes += k.len() + v.len();
    }
    if env_bytes > MAX_ENV_BYTES {
        return Err(invalid(
            &format!("{prefix}env"),
            format!("at most {MAX_ENV_BYTES} bytes of names and values; got {env_bytes}"),
        ));
    }
    Ok(env_bytes)
}

/// Check the labels a job asks a worker for: names as keys.
pub fn validate_labels(
    labels: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<(), CommandError> {
    for k in labels.keys() {
        validate_name(&format!("{prefix}labels.{k}"), k)?;
    }
    Ok(())
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
    let env_bytes = validate_env(&spec.env, prefix)?;
    validate_labels(&spec.labels, prefix)?;
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

/// A retention is more than 0 and at most [`MAX_RETENTION_MS`].
pub fn validate_retention(ms: i64) -> Result<(), CommandError> {
    if ms <= 0 || ms > MAX_RETENTION_MS {
        return Err(invalid(
            "retention",
            format!("must be more than 0 and at most {MAX_RETENTION_MS} ms; got {ms}"),
        ));
    }
    Ok(())
}

/// Validate a command before it is proposed (the same checks apply repeats).
pub fn validate(cmd: &JobCommand) -> Result<(), CommandError> {
    match cmd {
        JobCommand::Enqueue {
            specs,
            retention_ms,
        } => {
            validate_retention(*retention_ms)?;
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
        JobCommand::FinishThenLease { finish, lease } => {
            if !matches!(**finish, JobCommand::Finish { .. })
                || !matches!(**lease, JobCommand::Lease { .. })
            {
                return Err(invalid("finish", "must be a finish followed by a lease"));
            }
            validate(lease)
        }
        JobCommand::Log { lines, .. } => {
            if lines.is_empty() || lines.len() > MAX_LOG_BATCH {
                return Err(invalid(
                    "lines",
                    format!("must hold 1 to {MAX_LOG_BATCH} lines"),
                ));
            }
            if let Some(i) = lines.iter().position(|l| l.text.len() > MAX_LINE_BYTES) {
                return Err(invalid(
                    &format!("lines[{i}].text"),
                    format!("at most {MAX_LINE_BYTES} bytes; split longer lines"),
                ));
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
        self.jobs.get(&id).map(|j| &**j)
    }

    /// Jobs oldest first from id `after` (exclusive), filtered by status and queue.
    pub fn list(
        &self,
        status: Option<Status>,
        queue: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> (Vec<JobView>, Option<u64>) {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for job in self.jobs.range(start..).map(|(_, j)| j) {
            if status.is_some_and(|s| s != job.status) || queue.is_some_and(|q| q != job.spec.queue)
            {
                continue;
            }
            if out.len() == limit {
                let last = out.last().map(|j: &JobView| j.id);
                return (out, last);
            }
            out.push(job.view());
        }
        (out, None)
    }

    /// No job of `queue` is queued or running.
    pub fn drained(&self, queue: &str) -> bool {
        !self.open.contains_key(queue)
    }

    /// How many jobs of `queue` a worker with `labels` could lease at `now`, counting at most
    /// `up_to`.
    pub fn ready_count(
        &self,
        queue: &str,
        labels: &BTreeMap<String, String>,
        now: i64,
        up_to: usize,
    ) -> usize {
        self.ready_ids(queue, labels, now).take(up_to).count()
    }

    fn ready_ids<'a>(
        &'a self,
        queue: &'a str,
        labels: &'a BTreeMap<String, String>,
        now: i64,
    ) -> impl Iterator<Item = u64> + 'a {
        self.ready
            .range((queue.to_string(), i64::MIN, 0)..)
            .take_while(move |(q, _, _)| q == queue)
            .map(|(_, _, id)| *id)
            .filter(move |id| {
                let j = &self.jobs[id];
                j.not_before_ms <= now
                    && j.spec.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
    }

    /// Jobs `worker` holds leases on.
    pub fn held_by(&self, worker: &str) -> Vec<u64> {
        self.held
            .get(worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The log of job `id` from offset `from`, at most `limit` lines; none if no such job.
    pub fn log(&self, id: u64, from: u64, limit: usize) -> Option<JobLogs> {
        let job = self.jobs.get(&id)?;
        let empty = JobLog::default();
        let log = self.logs.get(&id).map_or(&empty, |l| &**l);
        let (lines, next) = log.read(from, limit);
        Some(JobLogs {
            complete: job.status.is_final() && next >= log.next(),
            lines,
            next,
            dropped: log.first,
        })
    }

    fn found(&mut self, id: u64) -> Result<&mut Job, CommandError> {
        self.jobs
            .get_mut(&id)
            .map(Arc::make_mut)
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

    /// Store a new queued job (also a retried one) and index it.
    fn enqueue_one(
        &mut self,
        id: u64,
        spec: JobSpec,
        times: (i64, i64),
        keep: i64,
        ctx: Ctx,
    ) -> Job {
        let (created, now) = times;
        let job = Job {
            id,
            retention_ms: keep,
            spec,
            status: Status::Queued,
            attempts: 0,
            exit_code: None,
            created_ms: created,
            started_ms: None,
            finished_ms: None,
            not_before_ms: now,
            lease: None,
            worker: None,
            error: None,
            cancel_requested: false,
            revision: ctx.index,
            owner: None,
        };
        self.ready.insert(ready_key(&job));
        *self.open.entry(job.spec.queue.clone()).or_default() += 1;
        self.jobs.insert(id, Arc::new(job.clone()));
        job
    }

    /// Queue a job on behalf of an app (`owner` names what it belongs to); its id.
    pub fn enqueue_owned(
        &mut self,
        spec: JobSpec,
        owner: String,
        retention_ms: i64,
        ctx: Ctx,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<u64, CommandError> {
        validate_spec(&spec, "")?;
        validate_retention(retention_ms)?;
        let id = self.next_id;
        self.next_id += 1;
        self.enqueue_one(id, spec, (now, now), retention_ms, ctx);
        let job = self
            .jobs
            .get_mut(&id)
            .map(Arc::make_mut)
            .expect("just queued");
        job.owner = Some(owner);
        let job = job.clone();
        events.push(event(&job, "queued"));
        Ok(id)
    }

    /// Index bookkeeping after `job` reached a final state, and its retention timer.
    fn closed(&mut self, job: &Job, timers: &mut Timers) {
        if let Some(n) = self.open.get_mut(&job.spec.queue) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&job.spec.queue);
            }
        }
        // A run keeps its jobs for as long as it is kept itself.
        if job.owner.as_deref().is_some_and(|o| o.starts_with("runs/")) {
            return;
        }
        let finished = job.finished_ms.unwrap_or_default();
        timers.schedule(
            finished.saturating_add(job.retention_ms),
            Timer::JobExpire { job: job.id },
        );
    }

    /// Forget a finished job and its log now (its owner is removing it).
    pub fn forget(&mut self, id: u64, events: &mut Vec<Event>) {
        if self.jobs.get(&id).is_some_and(|j| j.status.is_final()) {
            let job = self.jobs.remove(&id).expect("present");
            self.logs.remove(&id);
            events.push(event(&job, "expired"));
        }
    }

    /// A finished job's retention ended: forget it and its log (unless it was retried since).
    pub fn expire_due(&mut self, id: u64, now: i64, events: &mut Vec<Event>) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let over = job.status.is_final()
            && job
                .finished_ms
                .is_some_and(|f| f.saturating_add(job.retention_ms) <= now);
        if over {
            let job = self.jobs.remove(&id).expect("present");
            self.logs.remove(&id);
            events.push(event(&job, "expired"));
        }
    }

    /// Index bookkeeping after `lease` was taken off a job.
    fn unhold(&mut self, id: u64, lease: &Lease) {
        if let Some(set) = self.held.get_mut(&lease.worker) {
            set.remove(&id);
            if set.is_empty() {
                self.held.remove(&lease.worker);
            }
        }
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
            JobCommand::Enqueue {
                specs,
                retention_ms,
            } => {
                let mut ids = Vec::with_capacity(specs.len());
                for spec in specs {
                    let id = self.next_id;
                    self.next_id += 1;
                    let job = self.enqueue_one(id, spec.clone(), (now, now), *retention_ms, ctx);
                    events.push(event(&job, "queued"));
                    ids.push(id);
                }
                Ok(JobReply::Enqueued { ids })
            }
            JobCommand::Lease {
                worker,
                queue,
                labels,
                max,
            } => Ok(JobReply::Leased {
                jobs: self.lease(worker, queue, labels, *max, ctx, now, timers, events),
            }),
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
                let job = self.finish(*id, *token, *ending, *exit_code, error, ctx, now, timers)?;
                events.push(event(&job, "finished"));
                Ok(JobReply::Job(Box::new(job.view())))
            }
            JobCommand::FinishThenLease { finish, lease } => {
                let (
                    JobCommand::Finish {
                        id,
                        token,
                        ending,
                        exit_code,
                        error,
                    },
                    JobCommand::Lease {
                        worker,
                        queue,
                        labels,
                        max,
                    },
                ) = (&**finish, &**lease)
                else {
                    return Err(invalid("finish", "must be a finish followed by a lease"));
                };
                // The finish is refused before it changes anything, and a validated lease is
                // never refused: the pair is all or nothing.
                let job = self.finish(*id, *token, *ending, *exit_code, error, ctx, now, timers)?;
                events.push(event(&job, "finished"));
                let jobs = self.lease(worker, queue, labels, *max, ctx, now, timers, events);
                Ok(JobReply::FinishedThenLeased {
                    finished: Box::new(job.view()),
                    jobs,
                })
            }
            JobCommand::Release { id, token } => {
                let job = self.leased(*id, *token)?;
                job.status = Status::Queued;
                job.attempts -= 1;
                let lease = job.lease.take().expect("leased");
                timers.cancel(lease.timer);
                job.not_before_ms = now;
                job.revision = ctx.index;
                let job = job.clone();
                self.unhold(job.id, &lease);
                self.ready.insert(ready_key(&job));
                events.push(event(&job, "released"));
                Ok(JobReply::Job(Box::new(job.view())))
            }
            JobCommand::Log {
                id,
                token,
                seq,
                lines,
                cap_bytes,
            } => {
                let lease = self.leased(*id, *token)?.lease.as_mut().expect("leased");
                if *seq > lease.log_lines {
                    return Err(CommandError::Conflict {
                        message: format!(
                            "job {id}: seq {seq} is past the {} lines stored under this lease; \
                             send the missing lines first",
                            lease.log_lines
                        ),
                    });
                }
                let skip = ((lease.log_lines - seq) as usize).min(lines.len());
                lease.log_lines += (lines.len() - skip) as u64;
                let log = Arc::make_mut(self.logs.entry(*id).or_default());
                log.append(&lines[skip..], *cap_bytes);
                Ok(JobReply::Logged { next: log.next() })
            }
            JobCommand::Cancel { id } => {
                let job = self.found(*id)?;
                match job.status {
                    Status::Queued => {
                        job.status = Status::Cancelled;
                        job.finished_ms = Some(now);
                        job.revision = ctx.index;
                        let job = job.clone();
                        self.ready.remove(&ready_key(&job));
                        self.closed(&job, timers);
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
                let (spec, created, owner) = (job.spec.clone(), job.created_ms, job.owner.clone());
                let keep = job.retention_ms;
                self.enqueue_one(*id, spec, (created, now), keep, ctx);
                // A retried job stays its owner's (a run's cell reopens with it).
                let again = self
                    .jobs
                    .get_mut(id)
                    .map(Arc::make_mut)
                    .expect("just queued");
                again.owner = owner;
                let again = again.clone();
                events.push(event(&again, "queued"));
                Ok(JobReply::Job(Box::new(again.view())))
            }
        }
    }

    /// Lease up to `max` ready jobs of `queue` to `worker` (`Lease`).
    #[allow(clippy::too_many_arguments)]
    fn lease(
        &mut self,
        worker: &str,
        queue: &str,
        labels: &BTreeMap<String, String>,
        max: u32,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) -> Vec<(JobView, u64)> {
        let candidates: Vec<u64> = self
            .ready_ids(queue, labels, now)
            .take(max as usize)
            .collect();
        let mut leased = Vec::new();
        for id in candidates {
            let job = self.jobs.get_mut(&id).map(Arc::make_mut).expect("indexed");
            let ttl = job.spec.lease_ttl as i64 * 1000;
            job.status = Status::Running;
            job.attempts += 1;
            job.started_ms = Some(now);
            job.finished_ms = None;
            job.exit_code = None;
            job.worker = Some(worker.to_string());
            let timer = timers.schedule(
                now + ttl,
                Timer::JobLease {
                    job: id,
                    token: ctx.index,
                },
            );
            job.lease = Some(Lease {
                token: ctx.index,
                worker: worker.to_string(),
                expires_ms: now + ttl,
                log_lines: 0,
                timer,
            });
            job.revision = ctx.index;
            let job = job.clone();
            self.ready.remove(&ready_key(&job));
            self.held.entry(worker.to_string()).or_default().insert(id);
            events.push(event(&job, "leased"));
            leased.push((job.view(), ctx.index));
        }
        leased
    }

    /// End the attempt holding `token` (`Finish`); refused before any change if stale.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        id: u64,
        token: u64,
        ending: Ending,
        exit_code: Option<i32>,
        error: &Option<String>,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
    ) -> Result<Job, CommandError> {
        let job = self.leased(id, token)?;
        job.status = match ending {
            Ending::Exited if exit_code == Some(0) => Status::Succeeded,
            Ending::Exited | Ending::Failed => Status::Failed,
            Ending::TimedOut => Status::TimedOut,
            Ending::Cancelled => Status::Cancelled,
        };
        job.exit_code = exit_code;
        job.error = error.clone();
        job.finished_ms = Some(now);
        let lease = job.lease.take().expect("leased");
        timers.cancel(lease.timer);
        job.revision = ctx.index;
        let job = job.clone();
        if let Some(why) = error {
            Arc::make_mut(self.logs.entry(id).or_default()).push_reason(why, now);
        }
        self.unhold(job.id, &lease);
        self.closed(&job, timers);
        Ok(job)
    }

    /// Heartbeats for many leases of one worker at once: each current lease is extended; the
    /// answer lists the jobs whose cancel is waiting and the leases that are not current.
    pub fn heartbeat_many(&mut self, leases: &[(u64, u64)], now: i64) -> (Vec<u64>, Vec<u64>) {
        let (mut cancel, mut stale) = (Vec::new(), Vec::new());
        for &(id, token) in leases {
            match self.leased(id, token) {
                Ok(job) => {
                    let ttl = job.spec.lease_ttl as i64 * 1000;
                    job.lease.as_mut().expect("leased").expires_ms = now + ttl;
                    if job.cancel_requested {
                        cancel.push(id);
                    }
                }
                Err(_) => stale.push(id),
            }
        }
        (cancel, stale)
    }

    /// The lease timer of job `id` with `token` fell due: re-arm it if a heartbeat moved the
    /// expiry, else the lease is over.
    pub fn lease_due(
        &mut self,
        id: u64,
        token: u64,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        // A timer of an ended lease changes nothing: checked before the job is made this
        // state's own (cloned, when a snapshot shares it).
        let current = self
            .jobs
            .get(&id)
            .and_then(|j| j.lease.as_ref())
            .is_some_and(|l| l.token == token);
        if !current {
            return;
        }
        let Some(lease) = self
            .jobs
            .get_mut(&id)
            .map(Arc::make_mut)
            .and_then(|j| j.lease.as_mut())
        else {
            return;
        };
        if lease.expires_ms > now {
            lease.timer = timers.schedule(lease.expires_ms, Timer::JobLease { job: id, token });
            return;
        }
        let why = format!("lease of worker {} expired", lease.worker);
        self.end_lease(id, &why, ctx, now, timers, events);
    }

    /// Every lease `worker` holds ends now, as if expired (the worker was lost or left).
    pub fn end_leases_of(
        &mut self,
        worker: &str,
        why: &str,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        for id in self.held_by(worker) {
            self.end_lease(id, why, ctx, now, timers, events);
        }
    }

    /// A running job lost its lease without a report: requeue it after a backoff, or make it
    /// dead once it used all its attempts (or `cancelled`, if that was asked).
    fn end_lease(
        &mut self,
        id: u64,
        why: &str,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        let job = self
            .jobs
            .get_mut(&id)
            .map(Arc::make_mut)
            .expect("a leased job exists");
        let lease = job.lease.take().expect("leased");
        // Already fired when the lease expired; pending when the worker was lost or left.
        timers.cancel(lease.timer);
        job.revision = ctx.index;
        let reason = format!("{why} (attempt {})", job.attempts);
        Arc::make_mut(self.logs.entry(id).or_default()).push_reason(&reason, now);
        job.error = Some(reason);
        let kind = if job.cancel_requested {
            job.status = Status::Cancelled;
            job.finished_ms = Some(now);
            "cancelled"
        } else if job.attempts >= job.spec.max_attempts {
            job.status = Status::Dead;
            job.finished_ms = Some(now);
            "dead"
        } else {
            job.status = Status::Queued;
            job.not_before_ms = now + backoff_ms(job.attempts);
            timers.schedule(job.not_before_ms, Timer::JobReady { job: id });
            "requeued"
        };
        let job = job.clone();
        self.unhold(id, &lease);
        if job.status == Status::Queued {
            self.ready.insert(ready_key(&job));
        } else {
            self.closed(&job, timers);
        }
        events.push(event(&job, kind));
    }

    /// The `timer-twice` bug's lease expiry (feature `bugs`): the lease of job `id` ends, as
    /// the leader saw it due, whichever lease the job holds now; a job already requeued is
    /// announced requeued again.
    #[cfg(feature = "bugs")]
    pub fn expire_as_seen(
        &mut self,
        id: u64,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        let Some(job) = self.jobs.get_mut(&id).map(Arc::make_mut) else {
            return;
        };
        if job.lease.is_some() {
            self.end_lease(id, "lease expired", ctx, now, timers, events);
        } else if job.status == Status::Queued {
            job.revision = ctx.index;
            let job = job.clone();
            events.push(event(&job, "requeued"));
        }
    }

    /// A requeued job's backoff ended: say so, so waiting workers look again.
    pub fn ready_due(&mut self, id: u64, ctx: Ctx, events: &mut Vec<Event>) {
        if let Some(job) = self.jobs.get_mut(&id).map(Arc::make_mut)
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
                    Timer::JobExpire { job } => self.jobs.expire_due(job, self.now, &mut events),
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
        let (r, events) = w.run(JobCommand::Enqueue {
            specs: batch,
            retention_ms: DEFAULT_RETENTION_MS,
        });
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
            retention_ms: DEFAULT_RETENTION_MS,
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
        w.run(JobCommand::Enqueue {
            specs: vec![s],
            retention_ms: DEFAULT_RETENTION_MS,
        })
        .0
        .unwrap();
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
        w.run(JobCommand::Enqueue {
            specs: vec![s],
            retention_ms: DEFAULT_RETENTION_MS,
        })
        .0
        .unwrap();
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
            retention_ms: DEFAULT_RETENTION_MS,
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
            retention_ms: DEFAULT_RETENTION_MS,
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

    #[test]
    fn logs_keep_the_tail_under_the_cap_and_are_fenced() {
        let mut w = World::new();
        w.run(JobCommand::Enqueue {
            retention_ms: DEFAULT_RETENTION_MS,
            specs: vec![spec(&["a"])],
        })
        .0
        .unwrap();
        let (id, token) = w.lease("w1", 1)[0];
        let line = |i: u32| NewLogLine {
            stream: LogStream::Stdout,
            time_ms: 1,
            text: format!("line {i:03}"),
        };
        // Each line is 8 bytes; a 40-byte cap keeps the last 5.
        for batch in [0..4, 4..12] {
            let seq = batch.start as u64;
            let (r, _) = w.run(JobCommand::Log {
                id,
                token,
                seq,
                lines: batch.map(line).collect(),
                cap_bytes: 40,
            });
            assert!(r.is_ok(), "{r:?}");
        }
        let log = w.jobs.log(id, 0, 100).unwrap();
        assert_eq!(log.dropped, 7);
        let texts: Vec<&str> = log.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            ["line 007", "line 008", "line 009", "line 010", "line 011"]
        );
        assert_eq!(log.lines[0].offset, 7);
        assert_eq!((log.next, log.complete), (12, false));
        let from = w.jobs.log(id, 10, 1).unwrap();
        assert_eq!((from.lines[0].offset, from.next), (10, 11));
        assert_eq!(w.jobs.log(id, 12, 100).unwrap().lines, vec![]);
        // A retried batch (its answer lost) is not stored twice; only its new lines are.
        w.run(JobCommand::Log {
            id,
            token,
            seq: 10,
            lines: (10..13).map(line).collect(),
            cap_bytes: 40,
        })
        .0
        .unwrap();
        let log = w.jobs.log(id, 0, 100).unwrap();
        let texts: Vec<&str> = log.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            ["line 008", "line 009", "line 010", "line 011", "line 012"]
        );
        let (r, _) = w.run(JobCommand::Log {
            id,
            token,
            seq: 20,
            lines: vec![line(20)],
            cap_bytes: 40,
        });
        assert!(
            matches!(r, Err(CommandError::Conflict { .. })),
            "a gap is refused"
        );
        // A stale token writes nothing.
        let before = w.jobs.clone();
        let (r, _) = w.run(JobCommand::Log {
            id,
            token: token + 1,
            seq: 12,
            lines: vec![line(99)],
            cap_bytes: 40,
        });
        assert!(matches!(r, Err(CommandError::Conflict { .. })));
        assert_eq!(w.jobs, before);
        w.run(JobCommand::Finish {
            id,
            token,
            ending: Ending::Exited,
            exit_code: Some(0),
            error: None,
        })
        .0
        .unwrap();
        assert!(w.jobs.log(id, 0, 100).unwrap().complete);
        assert!(!w.jobs.log(id, 0, 2).unwrap().complete, "lines remain");
        assert!(w.jobs.drained("default"));
    }

    #[test]
    fn finish_then_lease_is_all_or_nothing() {
        let mut w = World::new();
        w.run(JobCommand::Enqueue {
            retention_ms: DEFAULT_RETENTION_MS,
            specs: vec![spec(&["a"]), spec(&["b"])],
        })
        .0
        .unwrap();
        let (id, token) = w.lease("w1", 1)[0];
        let pair = |token| JobCommand::FinishThenLease {
            finish: Box::new(JobCommand::Finish {
                id,
                token,
                ending: Ending::Exited,
                exit_code: Some(0),
                error: None,
            }),
            lease: Box::new(JobCommand::Lease {
                worker: "w1".into(),
                queue: "default".into(),
                labels: BTreeMap::new(),
                max: 1,
            }),
        };
        let before = w.jobs.clone();
        let (r, events) = w.run(pair(token + 100));
        assert!(matches!(r, Err(CommandError::Conflict { .. })), "{r:?}");
        assert!(events.is_empty());
        assert_eq!(w.jobs, before, "a refused finish leases nothing");
        let (r, events) = w.run(pair(token));
        let Ok(JobReply::FinishedThenLeased { finished, jobs }) = r else {
            panic!("{r:?}")
        };
        assert_eq!((finished.id, finished.status.as_str()), (id, "succeeded"));
        assert_eq!(jobs.len(), 1);
        assert_ne!(jobs[0].0.id, id);
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e.body["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["finished", "leased"]);
    }

    #[test]
    fn finished_jobs_are_forgotten_after_the_retention_unless_retried() {
        let mut w = World::new();
        w.run(JobCommand::Enqueue {
            retention_ms: DEFAULT_RETENTION_MS,
            specs: vec![spec(&["a"]), spec(&["b"])],
        })
        .0
        .unwrap();
        for (id, token) in w.lease("w1", 2) {
            w.run(JobCommand::Log {
                id,
                token,
                seq: 0,
                lines: vec![NewLogLine {
                    stream: LogStream::Stdout,
                    time_ms: 1,
                    text: "x".into(),
                }],
                cap_bytes: 100,
            })
            .0
            .unwrap();
            w.run(JobCommand::Finish {
                id,
                token,
                ending: Ending::Exited,
                exit_code: Some(0),
                error: None,
            })
            .0
            .unwrap();
        }
        // Job 1 is retried a day later: its first retention timer must not forget it.
        w.advance(86_400_000);
        w.run(JobCommand::Retry { id: 1 }).0.unwrap();
        let events = w.advance(DEFAULT_RETENTION_MS - 86_400_000);
        let kinds: Vec<(&str, u64)> = events
            .iter()
            .map(|e| {
                (
                    e.body["kind"].as_str().unwrap(),
                    e.body["job"]["id"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(kinds, [("expired", 0)]);
        assert!(w.jobs.get(0).is_none() && w.jobs.log(0, 0, 10).is_none());
        assert_eq!(w.jobs.get(1).unwrap().status, Status::Queued);
        assert_eq!(
            w.jobs.log(1, 0, 10).unwrap().lines.len(),
            1,
            "kept with the job"
        );
    }
}
