//! Wire types of the switchyard `/v1` API (`GET /openapi.json` documents every route).
//!
//! Everything here is plain data with serde derives, shared by the server, the client library
//! and the CLI so the two sides of the wire cannot drift apart.

mod device_types;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use device_types::{
    DeviceTypeFile, DeviceTypeList, PhaseDuration, TypeAbort, TypeAttribute, TypeCommand, TypePhase,
};

/// Error body of every 4xx/5xx answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// What went wrong: a stable snake_case code and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// `invalid`, `not_found`, `busy`, `not_allowed`, `conflict`, `insufficient_funds`,
    /// `unauthorized`, `forbidden`, `unavailable`, `timeout`, `internal`, ...
    pub code: String,
    /// What was wrong and what is allowed.
    pub message: String,
    /// Extra machine-readable facts (e.g. `field`, `leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A bank account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub id: String,
    /// Balance in minor units.
    pub balance: u64,
    /// Revision of the last change to this account.
    pub revision: u64,
}

/// `GET /v1/bank/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

/// Answer to a transfer: both accounts after it, and the revision of the transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    pub from: Account,
    pub to: Account,
    pub revision: u64,
}

/// `POST /v1/bank/accounts` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    /// 1 to 128 of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub id: String,
}

/// Body of credit and debit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// Minor units, 1 to 2^53 - 1 (the largest integer every JSON client reads exactly).
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    pub amount: u64,
}

/// `POST /v1/bank/transfers` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub from: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub to: String,
    /// Minor units, 1 to 2^53 - 1 (the largest integer every JSON client reads exactly).
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    pub amount: u64,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub node_id: u64,
    /// `leader`, `follower`, `learner`, `candidate` (or `shutdown`).
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub applied_index: u64,
    /// Current revision: every event up to it has been applied on this node.
    pub revision: u64,
    /// Oldest revision a watch can resume from (`from_revision` must be at least this).
    pub compact_revision: u64,
    pub members: Vec<Member>,
    /// The data format this node reads and writes (0: a node older than format checks).
    #[serde(default)]
    pub format: u32,
}

/// A cluster member. The fields after `voter` are the leader's view of the member: present
/// only in `GET /v1/cluster` answered by the leader (`answered_by` equals `leader`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub node_id: u64,
    /// Client API address (host:port).
    pub api: String,
    /// Peer RPC address (host:port).
    pub peer: String,
    pub voter: bool,
    /// The member acknowledged the leader within an election timeout (a follower that hears
    /// nothing for that long starts an election, so a member past it is down or cut off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// Seconds since the member last acknowledged the leader (a heartbeat or an append);
    /// absent when it never has since this leader was elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<f64>,
    /// The last log index the leader knows the member holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// Log entries the member is behind the leader's last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

/// `GET /v1/cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cluster {
    pub leader: Option<u64>,
    pub members: Vec<Member>,
    /// A membership change is under way (the cluster runs on the joint configuration of the
    /// old and the new voters until the change completes).
    #[serde(default)]
    pub changing: bool,
    /// The node that answered; members carry reachability and lag when it is the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<u64>,
}

/// One event as delivered to watchers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchEvent {
    pub revision: u64,
    pub topic: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// Messages the server sends on `/v1/watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchMessage {
    /// A change.
    Event {
        revision: u64,
        topic: String,
        #[schema(value_type = Object)]
        event: serde_json::Value,
    },
    /// Every matching event up to `revision` has been sent.
    Bookmark { revision: u64 },
    /// The stream ends; `error.code` is `compacted` or `lagging` (or `invalid`).
    Error { error: WatchError },
}

/// Why a watch ended: the code of a [`WatchError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchErrorCode {
    /// The resume point is older than retained history: re-read state, then watch from its
    /// revision.
    Compacted,
    /// The subscriber fell too far behind, or took no message for too long: resume from
    /// `resume_from`.
    Lagging,
    /// The client sent a message the server does not take.
    Invalid,
    /// A code this version does not know (a newer server's).
    #[serde(other)]
    Other,
}

impl WatchErrorCode {
    /// The code as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compacted => "compacted",
            Self::Lagging => "lagging",
            Self::Invalid => "invalid",
            Self::Other => "other",
        }
    }
}

/// Why a watch ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchError {
    pub code: WatchErrorCode,
    pub message: String,
    /// With `compacted`: the oldest revision that can be resumed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_revision: Option<u64>,
    /// With `lagging`: the last revision fully delivered; resume from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<u64>,
}

/// Messages a client may send on `/v1/watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WatchRequest {
    /// Ask for a bookmark now.
    Progress,
}

/// Labels attached to objects; kept here so later apps share one definition.
pub type Labels = BTreeMap<String, String>;

/// Format Unix milliseconds as an RFC 3339 UTC time, e.g. `2026-11-23T10:00:00.250Z`.
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

/// Attribute values of a device: attribute name -> value (`null` = no value).
pub type Attributes = BTreeMap<String, Option<String>>;

/// A device (`GET /v1/devices/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The type's primary attribute.
    pub state: Option<String>,
    pub attributes: Attributes,
    /// `idle`, or what the transition in flight is doing.
    pub status: String,
    pub transition: Option<Transition>,
    pub revision: u64,
}

/// A transition in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    /// Unique id (the revision of the command that started it).
    pub id: u64,
    pub command: String,
    /// Name of the current phase.
    pub phase: String,
    /// Index of the current phase and how many there are.
    pub phase_index: usize,
    pub phases: usize,
    pub started_at: String,
    /// When the current phase ends.
    pub phase_due_at: String,
    /// When the whole transition is due to complete.
    pub due_at: String,
}

/// `GET /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<Device>,
}

/// One finished transition in a device's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitionRecord {
    pub id: u64,
    pub command: String,
    /// `completed` or `aborted`.
    pub outcome: String,
    pub started_at: String,
    pub finished_at: String,
    pub from: Attributes,
    pub to: Attributes,
    /// Revision at which it finished.
    pub revision: u64,
}

/// `GET /v1/devices/{name}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceHistory {
    pub transitions: Vec<TransitionRecord>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// `POST /v1/devices` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// `POST /v1/devices/{name}/commands/{command}` body (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceCommandRequest {
    /// Seconds for the phases whose duration comes from the request.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub duration: Option<f64>,
    /// Answer when the transition completes (200 device) instead of at once (202).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`: seconds to wait before answering 504 (the transition keeps running).
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 3600)]
    pub timeout: Option<f64>,
    /// Passed to the type's phases (e.g. mv's `config`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub args: Option<serde_json::Value>,
}

/// 202 answer to a device command: the transition started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Started {
    pub transition: Transition,
    pub device: Device,
}

/// A pour (`/v1/beers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Beer {
    pub id: u64,
    pub tap_id: i64,
    /// `half`, `pint` or `stein`.
    #[serde(rename = "type")]
    pub glass: String,
    /// Millilitres, as the tap sent them.
    #[schema(value_type = f64)]
    pub volume: serde_json::Value,
    pub time: String,
    pub revision: u64,
}

/// `GET /v1/beers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BeerList {
    pub beers: Vec<Beer>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// `POST /v1/beers` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PourRequest {
    pub tap_id: i64,
    #[schema(value_type = f64)]
    pub volume: serde_json::Number,
}

/// `POST /v1/cluster/members` body: the node to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub node_id: u64,
    /// Its client API address (host:port).
    pub api: String,
    /// Its peer RPC address (host:port).
    pub peer: String,
}

/// `POST /v1/cluster/leader`: hand leadership to this voter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderRequest {
    pub node_id: u64,
}

/// `command` as an argv array, or a shell line run by `/bin/sh -c`. Only for human-readable
/// formats (JSON): binary formats (the Raft log) hold the argv itself and cannot take an
/// untagged choice.
fn argv_or_shell_line<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    if !d.is_human_readable() {
        return Vec::<String>::deserialize(d);
    }
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "an argv array of strings, or a shell line string"
    )]
    enum Command {
        Argv(Vec<String>),
        Line(String),
    }
    Ok(match Command::deserialize(d)? {
        Command::Argv(argv) => argv,
        Command::Line(line) => vec!["/bin/sh".into(), "-c".into(), line],
    })
}

fn default_queue() -> String {
    "default".into()
}
fn default_max_attempts() -> u32 {
    3
}
fn default_lease_ttl() -> u64 {
    30
}

/// A job to run: `POST /v1/jobs` body, and one element of `POST /v1/jobs/batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The program and its arguments (argv; no shell unless you run one). A JSON string
    /// instead of an array is a shell line: it becomes `["/bin/sh", "-c", LINE]`.
    #[serde(deserialize_with = "argv_or_shell_line")]
    #[schema(value_type = Vec<String>)]
    pub command: Vec<String>,
    /// Queue name: 1 to 64 of `A-Z a-z 0-9 _ . -` (default `default`).
    #[serde(default = "default_queue")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub queue: String,
    /// Seconds the command may run before the worker stops it (`timed_out`); none: no limit.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout: Option<u64>,
    /// Leases before the job is `dead` (1 to 100, default 3).
    #[serde(default = "default_max_attempts")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// Seconds a lease lasts without a heartbeat (1 to 3600, default 30).
    #[serde(default = "default_lease_ttl")]
    #[schema(minimum = 1, maximum = 3600)]
    pub lease_ttl: u64,
    /// Environment variables added for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels a worker must have (every key with the same value) to lease this job.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Higher runs first within a queue; equal priorities run in enqueue order.
    #[serde(default)]
    pub priority: i32,
    /// Working directory on the worker; none: the worker's own.
    #[serde(default)]
    pub cwd: Option<String>,
}

impl JobSpec {
    /// `command` on `queue`, every other field at the API's default (what a body that gives
    /// only these two gets).
    pub fn new(command: Vec<String>, queue: impl Into<String>) -> Self {
        Self {
            command,
            queue: queue.into(),
            timeout: None,
            max_attempts: default_max_attempts(),
            lease_ttl: default_lease_ttl(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            priority: 0,
            cwd: None,
        }
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: u64,
    /// `queued`, `running`, `succeeded`, `failed`, `timed_out`, `cancelled` or `dead`.
    pub status: String,
    /// How many times it was leased.
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub queue: String,
    pub spec: JobSpec,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The worker holding or last holding it.
    pub worker: Option<String>,
    /// Why the last attempt ended badly, when known.
    pub error: Option<String>,
    /// A cancel is waiting for the worker to stop the process.
    pub cancel_requested: bool,
    pub revision: u64,
    /// What queued it, when an app did (e.g. `deployments/NAME/ACTION_ID`). (Never skipped
    /// when empty: this type is also stored in the Raft log, whose format has no field names.)
    #[serde(default)]
    pub owner: Option<String>,
}

/// `POST /v1/jobs/batch` body: all the jobs are queued, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobBatch {
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<JobSpec>,
}

/// Ids of queued jobs, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobIds {
    pub ids: Vec<u64>,
}

/// A page of jobs (`GET /v1/jobs`), oldest first; `next` is the `after` of the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    pub next: Option<u64>,
}

/// How a worker says an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobEnding {
    /// The process exited; code 0 is success.
    Exited,
    /// The worker stopped it at its timeout.
    TimedOut,
    /// The worker stopped it because a cancel was requested.
    Cancelled,
    /// It could not be started (bad program, bad working directory, ...).
    Failed,
}

fn one() -> u32 {
    1
}

/// `POST /v1/jobs/lease`: take up to `max` ready jobs of `queue` whose labels the worker has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The worker (agent) id the leases are held by.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub worker: String,
    #[serde(default = "default_queue")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub queue: String,
    /// The worker's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Most jobs to take (1 to 1000, default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max: u32,
    /// Seconds to wait for a job when none is ready (0 to 60, default 0: answer at once).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 60)]
    pub wait: f64,
    /// End this job first, in the same command as the lease (one round trip and one log entry
    /// for "done with that one, give me the next"). A refused finish refuses the lease too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<FinishJob>,
    /// Stop waiting as soon as the queue is drained (nothing queued or running), answering
    /// `drained: true` at once: for a worker that exits when the work is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub until_drained: bool,
}

/// The `finish` of a lease request: `POST /v1/jobs/{id}/finish` with the job id inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishJob {
    pub id: u64,
    pub token: u64,
    pub ending: JobEnding,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
}

/// A leased job and the fencing token every report about it must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeasedJob {
    pub job: Job,
    pub token: u64,
}

/// `POST /v1/jobs/lease` answer. `drained`: no job of the queue is queued or running, so a
/// worker started with `--exit-when-empty` may stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Leased {
    pub jobs: Vec<LeasedJob>,
    pub drained: bool,
    /// The job the request's `finish` ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Job>,
}

/// A fencing token: `POST /v1/jobs/{id}/heartbeat` and `/release` bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub token: u64,
}

/// `POST /v1/jobs/{id}/heartbeat` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobHeartbeat {
    pub cancel_requested: bool,
    pub expires_at: String,
}

/// `POST /v1/jobs/{id}/finish`: how the attempt holding `token` ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    pub token: u64,
    pub ending: JobEnding,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub error: Option<String>,
}

/// Which output a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// A line a worker ships: `POST /v1/jobs/{id}/logs` carries a batch of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLogLine {
    pub stream: LogStream,
    /// When the worker read it, ms since the Unix epoch.
    pub time_ms: i64,
    pub text: String,
}

/// `POST /v1/jobs/{id}/logs` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    pub token: u64,
    /// Lines sent under this lease before these (0 for the first batch): a retried batch is
    /// recognised and not stored twice.
    #[serde(default)]
    pub seq: u64,
    #[schema(min_items = 1, max_items = 10000)]
    pub lines: Vec<NewLogLine>,
}

/// A stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Position in the job's log: 0, 1, 2, ... across attempts, never reused.
    pub offset: u64,
    pub stream: LogStream,
    pub time: String,
    pub text: String,
}

/// `GET /v1/jobs/{id}/logs` answer. `next` is the offset to ask from next; `complete`: the job
/// is over and every line was returned. `dropped`: how many lines the per-job size cap removed
/// from the head (offsets `0..dropped`; the tail is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogs {
    pub lines: Vec<LogLine>,
    pub next: u64,
    pub complete: bool,
    pub dropped: u64,
}

fn default_agent_ttl() -> u64 {
    15
}

/// `POST /v1/agents`: an agent (a worker host) joins, or joins again, with its host facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentJoin {
    /// 1 to 64 of `A-Z a-z 0-9 _ . -`.
    #[schema(pattern = "^(?!config$)[A-Za-z0-9._-]{1,64}$")]
    pub id: String,
    #[schema(min_length = 1, max_length = 255)]
    pub hostname: String,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub version: String,
    /// Queues it takes work from.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Free-form host document (seed 003's host.json), a JSON object.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub host: serde_json::Value,
    /// Seconds without a heartbeat before the agent is lost (1 to 3600, default 15); it is
    /// marked lost after `ttl` plus the same again as grace.
    #[serde(default = "default_agent_ttl")]
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl: u64,
    /// Where the server can reach it (`http://host:port`): the leader then also checks it
    /// actively (`GET {url}/health`, or `GET {url}` when the URL names a path) and marks it
    /// lost after repeated failures.
    #[serde(default)]
    pub url: Option<String>,
}

/// An agent as the inventory shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub id: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// `alive` or `lost`.
    pub status: String,
    pub last_seen: String,
    #[schema(value_type = Object)]
    pub host: serde_json::Value,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub version: String,
    pub queues: Vec<String>,
    pub joined_at: String,
    pub ttl: u64,
    pub url: Option<String>,
    /// Why it was marked lost.
    pub lost_reason: Option<String>,
    /// Jobs it holds leases on.
    pub running: Vec<u64>,
    pub revision: u64,
}

/// `GET /v1/agents` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// A lease an agent holds: job id and token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeldLease {
    pub job: u64,
    pub token: u64,
}

/// `POST /v1/agents/{id}/heartbeat` body: the agent is alive, and so are these leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentHeartbeat {
    #[serde(default)]
    pub leases: Vec<HeldLease>,
}

/// `POST /v1/agents/{id}/heartbeat` answer: jobs whose cancel was asked (stop them), and
/// leases that are no longer the agent's (stop them and report nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentHeartbeatReply {
    pub cancel: Vec<u64>,
    pub stale: Vec<u64>,
}

/// `POST /v1/deployments`: a deployment and the argv templates of its actions (these override
/// the server's default templates of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    /// 1 to 64 of `A-Z a-z 0-9 _ . -`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Action name → argv template; `{name}`, `{action}`, `{dir}` substitute inside an element,
    /// an element that is exactly `{args}` expands to the action's arguments.
    #[serde(default)]
    pub actions: BTreeMap<String, Vec<String>>,
    /// Project folder: `{dir}`, and the working directory of its actions.
    #[serde(default)]
    pub dir: Option<String>,
    /// Queue its actions go to (default `default`).
    #[serde(default = "default_queue")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub queue: String,
    /// Labels a worker must have to run its actions (e.g. to pin them to one agent).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds an action may run; none: no limit.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// One action of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentAction {
    pub action_id: String,
    pub action: String,
    pub args: Vec<String>,
    pub job_id: u64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    /// `running`, then the job's final status (`succeeded`, `failed`, `timed_out`, ...).
    pub state: String,
    /// The deployment's state once the action ended (`up`, `down` or `failed`).
    pub end_state: Option<String>,
}

/// A deployment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub name: String,
    /// `down`, `running`, `up` or `failed`.
    pub state: String,
    /// The action running now, if any.
    pub action: Option<DeploymentAction>,
    /// The action whose failure left it `failed`.
    pub failed_action: Option<String>,
    pub actions: BTreeMap<String, Vec<String>>,
    pub dir: Option<String>,
    pub queue: String,
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    pub revision: u64,
}

/// `GET /v1/deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentList {
    pub deployments: Vec<Deployment>,
}

/// `POST /v1/deployments/{name}/actions/{action}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    #[serde(default)]
    pub args: Vec<String>,
}

/// `PUT /v1/deployments/{name}/state` body: set the state by hand (e.g. reset a failed
/// deployment to `down`); refused while an action runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentStateRequest {
    /// `up`, `down` or `failed`.
    #[schema(pattern = "^(up|down|failed)$")]
    pub state: String,
    /// With `failed`: the action that failed.
    #[serde(default)]
    pub failed_action: Option<String>,
}

/// `POST /v1/deployments/{name}/actions/{action}` answer (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionStarted {
    pub action_id: String,
    pub job_id: u64,
}

/// `GET /v1/deployments/{name}/actions`: every action, oldest first, the running one last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActionList {
    pub actions: Vec<DeploymentAction>,
}

/// `POST /v1/runs`: a test matrix, or funkytown's spec file, and the command of each cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// A name to know it by (optional).
    #[serde(default)]
    pub name: Option<String>,
    /// Dimension → values; cells are every combination (the last dimension varies fastest).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub matrix: Option<serde_json::Map<String, serde_json::Value>>,
    /// funkytown's spec file as is, instead of `matrix`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub funkytown: Option<serde_json::Value>,
    /// Rules dropping every cell that matches all of their pairs. With `funkytown`, absent
    /// means the original's rule, `[{"viewport": "mobile", "browser": "firefox"}]`.
    #[serde(default)]
    pub exclude: Option<Vec<BTreeMap<String, String>>>,
    /// argv template; `{dimension}` is replaced inside elements. With `funkytown` it defaults
    /// to the original worker's `npx playwright test --project={viewport}-{browser} {spec}`.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of every cell.
    #[serde(default)]
    pub cwd: Option<String>,
    #[serde(default)]
    pub priority: i32,
}

/// Cells one exclusion rule dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExcludedCells {
    pub rule: BTreeMap<String, String>,
    pub cells: u32,
}

/// `POST /v1/runs` answer (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunCreated {
    pub id: u64,
    /// Cells queued (one job each).
    pub cells: u32,
    /// Cells left out.
    pub excluded: u32,
    pub excluded_by: Vec<ExcludedCells>,
}

/// The original funkytown's run metadata (its Redis hash `runmeta`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunkytownRunMeta {
    pub runid: String,
    pub tasksremaining: u32,
    pub tasksfinished: u32,
    pub finished: bool,
}

/// Dimension → value → status class (`passed`, `failed`, ...) → cells.
pub type Breakdown = BTreeMap<String, BTreeMap<String, BTreeMap<String, u32>>>;

/// A run and its statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: u64,
    pub name: String,
    /// `running`, `passed`, `failed` or `cancelled`.
    pub status: String,
    pub total: u32,
    pub queued: u32,
    pub running: u32,
    pub passed: u32,
    /// Failed, timed out included.
    pub failed: u32,
    pub timed_out: u32,
    pub cancelled: u32,
    pub dead: u32,
    pub excluded: u32,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Seconds from creation to the end, or to now.
    pub duration_seconds: f64,
    /// Cells ended per second so far.
    pub throughput: f64,
    /// Estimated seconds to the end at the throughput so far (none before a cell ended).
    pub eta_seconds: Option<f64>,
    /// Per dimension, per value: cells by status (`passed`, `failed`, ...). Only on
    /// `GET /v1/runs/{id}`.
    #[schema(value_type = Option<Object>)]
    pub breakdown: Option<Breakdown>,
    pub funkytown: FunkytownRunMeta,
    pub revision: u64,
}

/// `GET /v1/runs`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// One cell of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunCell {
    pub index: u32,
    /// `task:<group>:<index>` for funkytown files, `cell:<index>` otherwise.
    pub key: String,
    pub values: BTreeMap<String, String>,
    pub job_id: u64,
    /// The job's status: `queued`, `running`, `succeeded`, `failed`, `timed_out`, ...
    pub status: String,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_seconds: Option<f64>,
    /// Why the cell's job ended badly, when it says (a command that could not start, a lost
    /// lease); also the last line of its log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/runs/{id}/cells`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunCells {
    pub cells: Vec<RunCell>,
}

/// The error codes of [`ErrorInfo::code`] that a client acts on, typed. The wire keeps the
/// code a string, so a newer server's code reads as [`ErrorCode::Other`] here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Invalid,
    NotFound,
    Busy,
    NotAllowed,
    Conflict,
    InsufficientFunds,
    Unauthorized,
    Forbidden,
    Unavailable,
    Timeout,
    Internal,
    /// The route does not take this method (405).
    MethodNotAllowed,
    /// The body is over the server's limit (413).
    TooLarge,
    /// A code this version does not know.
    Other,
}

impl ErrorCode {
    /// The code of a wire string; unknown ones are [`ErrorCode::Other`].
    pub fn parse(code: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(code.to_string())).unwrap_or(Self::Other)
    }

    /// The wire spelling (what `serde` writes).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::Busy => "busy",
            Self::NotAllowed => "not_allowed",
            Self::Conflict => "conflict",
            Self::InsufficientFunds => "insufficient_funds",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge => "too_large",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorInfo {
    /// This error's code, typed.
    pub fn kind(&self) -> ErrorCode {
        ErrorCode::parse(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_error_code_is_spelled_as_serde_writes_it() {
        use ErrorCode::*;
        for code in [
            Invalid,
            NotFound,
            Busy,
            NotAllowed,
            Conflict,
            InsufficientFunds,
            Unauthorized,
            Forbidden,
            Unavailable,
            Timeout,
            Internal,
            MethodNotAllowed,
            TooLarge,
            Other,
        ] {
            let written = serde_json::to_value(code).unwrap();
            assert_eq!(written, code.as_str(), "{code:?}");
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
        assert_eq!(ErrorCode::parse("something_new"), Other);
    }
}
