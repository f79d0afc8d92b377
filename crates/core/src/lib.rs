//! The pure core of switchyard: every change is a [`Command`], wrapped in a [`Proposal`] that
//! the leader stamps with its time, applied by [`apply`] to a [`State`].
//!
//! `apply(state, proposal, ctx) -> (Outcome, events)` is deterministic: it reads no clock,
//! does no IO and draws no random numbers. The time it sees is the leader-stamped time of the
//! proposal (never allowed to go backwards, see [`State::now_ms`]); the revision it stamps on
//! everything it changes is the log index of the entry ([`Ctx::index`]). Replaying the same log
//! therefore gives the same state and the same events on every node.
//!
//! Timed behaviour goes through [`timers::Timers`]: apply schedules a timer at a due time, and
//! the server's leader-side scheduler proposes [`Command::Tick`] when a timer falls due; the tick
//! fires every due timer as part of an ordinary, replicated command.
//!
//! Apps live one per module ([`bank`]); this file dispatches with a plain `match`.
//!
//! The [`State`]'s collections that grow with use are `imbl` ordered maps and sets: they
//! behave and encode like `BTreeMap`/`BTreeSet`, and share their structure, so cloning a
//! state (what a snapshot does before encoding it off the lock) takes constant time.

pub mod agents;
pub mod bank;
pub mod beers;
pub mod deployments;
pub mod devices;
pub mod error;
pub mod idempotency;
pub mod jobs;
pub mod runs;
pub mod timers;

use serde::{Deserialize, Serialize};

pub use error::CommandError;

/// What apply knows about the log entry it is applying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctx {
    /// Log index of the entry; becomes the revision of every change it makes.
    pub index: u64,
}

/// A command as it travels through the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Leader-stamped wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Client-chosen key that makes a retry return the first response instead of applying twice.
    pub idempotency_key: Option<String>,
    /// How long (ms of stamped time) the key is remembered; set by the proposing node's config.
    pub idempotency_window_ms: i64,
    /// What to do.
    pub command: Command,
}

impl Proposal {
    /// A proposal without an idempotency key.
    pub fn new(time_ms: i64, command: Command) -> Self {
        Self {
            time_ms,
            idempotency_key: None,
            idempotency_window_ms: idempotency::DEFAULT_WINDOW_MS,
            command,
        }
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} at {}", self.command, self.time_ms)?;
        if let Some(k) = &self.idempotency_key {
            write!(f, " key {k:?}")?;
        }
        Ok(())
    }
}

/// Every change to the state, one variant per app or core mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Advance time: fire every timer whose due time is at or before the stamped time.
    Tick,
    /// A bank command.
    Bank(bank::BankCommand),
    /// A devices command.
    Devices(devices::DeviceCommand),
    /// A beers command.
    Beers(beers::BeerCommand),
    /// A jobs command.
    Jobs(jobs::JobCommand),
    /// An agents command.
    Agents(agents::AgentCommand),
    /// A deployments command.
    Deployments(deployments::DeploymentCommand),
    /// A runs command.
    Runs(runs::RunCommand),
    /// Fire one timer as a leader saw it due in its own state, without checking that it is
    /// still pending: the simulation's `timer-twice` bug (feature `bugs`, never proposed
    /// otherwise). A leader whose state lags fires again what its predecessor fired.
    #[cfg(feature = "bugs")]
    FireAsSeen(Timer),
}

/// What a command answers: a reply, or a refusal that changed nothing.
pub type Outcome = Result<Reply, CommandError>;

/// Successful replies, one variant per command family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Tick: how many timers fired.
    Ticked { fired: u32 },
    /// Bank replies.
    Bank(bank::BankReply),
    /// Devices replies (boxed: a device view is large).
    Devices(Box<devices::DeviceReply>),
    /// Beers replies.
    Beers(beers::BeerReply),
    /// Jobs replies.
    Jobs(jobs::JobReply),
    /// Agents replies.
    Agents(agents::AgentReply),
    /// Deployments replies.
    Deployments(deployments::DeploymentReply),
    /// Runs replies.
    Runs(runs::RunReply),
}

/// A change notification, emitted by apply; the revision is the log index of the entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Hierarchical topic, e.g. `bank/accounts/alice`.
    pub topic: String,
    /// The event body as sent to watchers.
    pub body: serde_json::Value,
}

/// The whole replicated state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Latest leader-stamped time seen; the time apply uses is never earlier than this.
    pub now_ms: i64,
    /// Pending timers, fired by `Command::Tick`.
    pub timers: timers::Timers,
    /// Recent idempotency records.
    pub idempotency: idempotency::Records,
    /// The bank app.
    pub bank: bank::Bank,
    /// The devices app.
    pub devices: devices::Devices,
    /// The beers app.
    pub beers: beers::Beers,
    /// Jobs and their leases.
    pub jobs: jobs::Jobs,
    /// The hosts that run jobs.
    pub agents: agents::Agents,
    /// Deployments and their actions.
    pub deployments: deployments::Deployments,
    /// Test-matrix runs.
    pub runs: runs::Runs,
}

/// Timers the core can schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timer {
    /// Forget an idempotency record once its window is over.
    ExpireIdempotencyKey(String),
    /// The current phase of a device's transition ends.
    DevicePhase {
        device: String,
        transition: u64,
        phase: usize,
    },
    /// A job's lease (with this fencing token) is due to expire.
    JobLease { job: u64, token: u64 },
    /// A requeued job's backoff ends.
    JobReady { job: u64 },
    /// A finished job's retention ends.
    JobExpire { job: u64 },
    /// An agent's heartbeat deadline (for the join or revival `epoch`).
    AgentCheck { agent: String, epoch: u64 },
    /// A finished run's retention ends.
    RunExpire { run: u64 },
}

/// Apply one proposal. Pure: the same state, proposal and ctx always give the same result.
///
/// A refused command (an `Err` outcome) leaves the state unchanged except for `now_ms`.
pub fn apply(state: &mut State, proposal: &Proposal, ctx: Ctx) -> (Outcome, Vec<Event>) {
    state.now_ms = state.now_ms.max(proposal.time_ms);
    let now = state.now_ms;

    if let Some(key) = &proposal.idempotency_key {
        match state.idempotency.lookup(key, &proposal.command) {
            idempotency::Lookup::Replay(outcome) => return (*outcome, Vec::new()),
            idempotency::Lookup::Mismatch => {
                return (
                    Err(CommandError::Conflict {
                        message: format!(
                            "Idempotency-Key {key:?} was already used for a different request; \
                             use a new key for a new request"
                        ),
                    }),
                    Vec::new(),
                );
            }
            idempotency::Lookup::New => {}
        }
    }

    let mut events = Vec::new();
    let outcome = match &proposal.command {
        Command::Tick => {
            let due = state.timers.take_due(now);
            let fired = due.len() as u32;
            for timer in due {
                fire(state, timer, ctx, &mut events);
            }
            Ok(Reply::Ticked { fired })
        }
        #[cfg(feature = "bugs")]
        Command::FireAsSeen(timer) => {
            state.timers.remove(timer);
            match timer.clone() {
                Timer::JobLease { job, .. } => {
                    let now = state.now_ms;
                    state
                        .jobs
                        .expire_as_seen(job, ctx, now, &mut state.timers, &mut events)
                }
                other => fire(state, other, ctx, &mut events),
            }
            Ok(Reply::Ticked { fired: 1 })
        }
        Command::Bank(cmd) => state.bank.apply(cmd, ctx, &mut events).map(Reply::Bank),
        Command::Devices(cmd) => state
            .devices
            .apply(cmd, ctx, now, &mut state.timers, &mut events)
            .map(|r| Reply::Devices(Box::new(r))),
        Command::Beers(cmd) => state
            .beers
            .apply(cmd, ctx, now, &mut events)
            .map(Reply::Beers),
        Command::Jobs(cmd) => state
            .jobs
            .apply(cmd, ctx, now, &mut state.timers, &mut events)
            .map(Reply::Jobs),
        Command::Agents(cmd) => state
            .agents
            .apply(
                cmd,
                &mut state.jobs,
                ctx,
                now,
                &mut state.timers,
                &mut events,
            )
            .map(Reply::Agents),
        Command::Deployments(cmd) => state
            .deployments
            .apply(cmd, &mut state.jobs, ctx, now, &mut events)
            .map(Reply::Deployments),
        Command::Runs(cmd) => state
            .runs
            .apply(
                cmd,
                &mut state.jobs,
                ctx,
                now,
                &mut state.timers,
                &mut events,
            )
            .map(Reply::Runs),
    };
    if outcome.is_ok() {
        jobs_changed(state, ctx, &mut events);
    }

    if let Some(key) = &proposal.idempotency_key {
        let expires = now.saturating_add(proposal.idempotency_window_ms.max(0));
        state.idempotency.insert(
            key.clone(),
            proposal.command.clone(),
            outcome.clone(),
            expires,
        );
        state
            .timers
            .schedule(expires, Timer::ExpireIdempotencyKey(key.clone()));
    }
    (outcome, events)
}

/// Tell the apps that own jobs which of them changed in this entry (each job once, as it is
/// now): deployments hear of the ends, runs of every change.
fn jobs_changed(state: &mut State, ctx: Ctx, events: &mut Vec<Event>) {
    let mut seen = std::collections::BTreeSet::new();
    let changed: Vec<(String, jobs::Job)> = events
        .iter()
        .filter(|e| e.topic.starts_with("jobs/"))
        .filter_map(|e| {
            let id = e.body["job"]["id"].as_u64()?;
            if !seen.insert(id) {
                return None;
            }
            let job = state.jobs.get(id)?;
            Some((job.owner.clone()?, job.clone()))
        })
        .collect();
    let now = state.now_ms;
    for (owner, job) in changed {
        if owner.starts_with("deployments/") && job.status.is_final() {
            let status = job.status.as_str();
            state
                .deployments
                .job_ended(&owner, status, job.exit_code, ctx, now, events);
        } else if owner.starts_with("runs/") {
            state.runs.job_changed(
                &owner,
                &job,
                &mut state.jobs,
                ctx,
                now,
                &mut state.timers,
                events,
            );
        }
    }
}

fn fire(state: &mut State, timer: Timer, ctx: Ctx, events: &mut Vec<Event>) {
    match timer {
        Timer::ExpireIdempotencyKey(key) => state.idempotency.expire(&key, state.now_ms),
        Timer::DevicePhase {
            device,
            transition,
            phase,
        } => state
            .devices
            .phase_due(&device, transition, phase, ctx, &mut state.timers, events),
        Timer::JobLease { job, token } => {
            let now = state.now_ms;
            state
                .jobs
                .lease_due(job, token, ctx, now, &mut state.timers, events)
        }
        Timer::JobReady { job } => state.jobs.ready_due(job, ctx, events),
        Timer::JobExpire { job } => {
            let now = state.now_ms;
            state.jobs.expire_due(job, now, events)
        }
        Timer::AgentCheck { agent, epoch } => {
            let now = state.now_ms;
            state.agents.check_due(
                &agent,
                epoch,
                &mut state.jobs,
                ctx,
                now,
                &mut state.timers,
                events,
            )
        }
        Timer::RunExpire { run } => {
            let now = state.now_ms;
            state.runs.expire_due(run, now, &mut state.jobs, events)
        }
    }
}

#[cfg(test)]
mod tests;
