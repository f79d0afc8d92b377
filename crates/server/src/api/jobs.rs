//! `/v1/jobs/...`: queue jobs, lease them to workers with fencing tokens, and their logs.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchyard_core::jobs::{self, JobCommand, JobReply, Status};
use switchyard_core::{Command, Reply};
use switchyard_types::{
    ErrorBody, FinishRequest, Job, JobBatch, JobHeartbeat, JobIds, JobList, JobLogs, JobSpec,
    LeaseRequest, Leased, LeasedJob, LogBatch, TokenBody, rfc3339,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, IdempotencyKey, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(enqueue, list))
        .routes(routes!(enqueue_batch))
        .routes(routes!(get_one))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(lease))
        .routes(routes!(heartbeat))
        .routes(routes!(finish))
        .routes(routes!(release))
        .routes(routes!(append_logs, logs))
}

/// Ready jobs being claimed by lease requests in flight on this node, per queue. A parked
/// request that wakes proposes a lease only for ready jobs nobody here is claiming yet, so one
/// new job wakes every parked worker but costs one lease command, not one per worker.
#[derive(Debug, Default)]
pub struct Claims(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// A claim on `n` ready jobs of a queue; given back when dropped.
struct Claim<'a> {
    claims: &'a Claims,
    queue: String,
    n: usize,
}

impl Claims {
    /// Claim up to `max` of the jobs `count(k)` says are ready (counting at most `k`).
    fn claim(
        &self,
        queue: &str,
        max: usize,
        count: impl FnOnce(usize) -> usize,
    ) -> Option<Claim<'_>> {
        let mut m = self.0.lock().expect("not poisoned");
        let taken = m.get(queue).copied().unwrap_or(0);
        let free = count(taken + max).saturating_sub(taken);
        if free == 0 {
            return None;
        }
        let n = free.min(max);
        *m.entry(queue.to_string()).or_default() += n;
        Some(Claim {
            claims: self,
            queue: queue.to_string(),
            n,
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut m = self.claims.0.lock().expect("not poisoned");
        if let Some(t) = m.get_mut(&self.queue) {
            *t -= self.n;
            if *t == 0 {
                m.remove(&self.queue);
            }
        }
    }
}

/// Longest a lease request may wait for a job, in seconds.
const MAX_LEASE_WAIT: f64 = 60.0;
/// Most log lines one read returns.
pub const MAX_LOG_PAGE: usize = 10_000;

async fn run(s: &Shared, cmd: JobCommand, key: Option<String>) -> Result<JobReply, ApiError> {
    match s.node.write(Command::Jobs(cmd), key).await? {
        (Reply::Jobs(r), _) => Ok(r),
        (other, _) => Err(ApiError::internal(format!(
            "jobs command answered {other:?}"
        ))),
    }
}

fn job(r: JobReply) -> Result<Json<Job>, ApiError> {
    match r {
        JobReply::Job(j) => Ok(Json(*j)),
        other => Err(ApiError::internal(format!("expected a job, got {other:?}"))),
    }
}

/// A job id from the path.
fn job_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::invalid(
            "id",
            format!("must be a job id (a non-negative integer); got {raw:?}"),
        )
    })
}

fn lookup(s: &Shared, id: u64) -> Result<Job, ApiError> {
    s.node
        .view
        .read(|st| st.jobs.get(id).map(|j| j.view()))
        .ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))
}

/// Queue a job: `command` as argv (or a string: a shell line), the rest optional.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = JobSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Job), (status = 400, body = ErrorBody)))]
async fn enqueue(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(spec): Body<JobSpec>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let cmd = JobCommand::Enqueue {
        specs: vec![spec],
        retention_ms: s.node.config.job_retention_ms(),
    };
    jobs::validate(&cmd)?;
    let JobReply::Enqueued { ids } = run(&s, cmd, key).await? else {
        return Err(ApiError::internal("enqueue answered something else"));
    };
    Ok((StatusCode::CREATED, Json(lookup(&s, ids[0])?)))
}

/// Queue up to 1000 jobs at once: all of them, or none.
#[utoipa::path(post, path = "/v1/jobs/batch", tag = "jobs", request_body = JobBatch,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = JobIds), (status = 400, body = ErrorBody)))]
async fn enqueue_batch(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<JobBatch>,
) -> Result<(StatusCode, Json<JobIds>), ApiError> {
    let cmd = JobCommand::Enqueue {
        specs: b.jobs,
        retention_ms: s.node.config.job_retention_ms(),
    };
    if let JobCommand::Enqueue { specs, .. } = &cmd
        && specs.len() == 1
    {
        // One job in a batch is still named by its place.
        jobs::validate_spec(&specs[0], "jobs[0].")?;
    }
    jobs::validate(&cmd)?;
    let JobReply::Enqueued { ids } = run(&s, cmd, key).await? else {
        return Err(ApiError::internal("enqueue answered something else"));
    };
    Ok((StatusCode::CREATED, Json(JobIds { ids })))
}

/// Jobs oldest first, filtered by `status` and `queue`; `limit` (1 to 1000, default 100) per
/// page, `after` the `next` of the previous page.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(("status" = Option<String>, Query), ("queue" = Option<String>, Query),
        ("after" = Option<u64>, Query), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000),
        ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody)))]
async fn list(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<JobList>, ApiError> {
    let (mut status, mut queue, mut after, mut limit) = (None, None, None, 100usize);
    for (k, v) in &q {
        match k.as_str() {
            "status" => {
                status = Some(Status::from_name(v).ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        format!(
                            "must be one of queued, running, succeeded, failed, timed_out, \
                             cancelled, dead; got {v:?}"
                        ),
                    )
                })?)
            }
            "queue" => {
                jobs::validate_name("queue", v)?;
                queue = Some(v.clone());
            }
            "after" => {
                after = Some(v.parse().map_err(|_| {
                    ApiError::invalid("after", format!("must be a job id; got {v:?}"))
                })?)
            }
            "limit" => limit = super::parse_limit(v, 1000)?,
            "consistency" => {}
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown query parameter; allowed: status, queue, after, limit, consistency",
                ));
            }
        }
    }
    Consistency::from_query(&q)?.ready(&s.node).await?;
    let (jobs, next) = s
        .node
        .view
        .read(|st| st.jobs.list(status, queue.as_deref(), after, limit));
    Ok(Json(JobList { jobs, next }))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    consistency: Consistency,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    consistency.ready(&s.node).await?;
    lookup(&s, id).map(Json)
}

/// Cancel: a queued job ends `cancelled` at once; a running one is stopped by its worker
/// (SIGTERM, then SIGKILL after the grace period) and ends `cancelled`.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
async fn cancel(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    job(run(&s, JobCommand::Cancel { id }, None).await?)
}

/// Queue a finished (succeeded, failed, timed out, cancelled or dead) job again.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry(State(s): State<Shared>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    job(run(&s, JobCommand::Retry { id }, None).await?)
}

/// Lease up to `max` ready jobs of `queue` for `worker`, waiting up to `wait` seconds for one.
/// Each comes with the fencing token its heartbeats, logs and finish must carry.
#[utoipa::path(post, path = "/v1/jobs/lease", tag = "jobs", request_body = LeaseRequest,
    responses((status = 200, body = Leased), (status = 400, body = ErrorBody)))]
async fn lease(
    State(s): State<Shared>,
    Body(req): Body<LeaseRequest>,
) -> Result<Json<Leased>, ApiError> {
    if !(0.0..=MAX_LEASE_WAIT).contains(&req.wait) {
        return Err(ApiError::invalid(
            "wait",
            format!("must be 0 to {MAX_LEASE_WAIT} seconds; got {}", req.wait),
        ));
    }
    let lease = JobCommand::Lease {
        worker: req.worker,
        queue: req.queue.clone(),
        labels: req.labels.clone(),
        max: req.max,
    };
    jobs::validate(&lease)?;
    let mut finish = match req.finish {
        Some(f) => {
            check_error_text(&f.error)?;
            Some(JobCommand::Finish {
                id: f.id,
                token: f.token,
                ending: f.ending,
                exit_code: f.exit_code,
                error: f.error,
            })
        }
        None => None,
    };
    let mut finished = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(req.wait);
    let mut revisions = s.node.view.subscribe();
    loop {
        revisions.borrow_and_update();
        let claim = s.lease_claims.claim(&req.queue, req.max as usize, |up_to| {
            s.node.view.read(|st| {
                st.jobs
                    .ready_count(&req.queue, &req.labels, s.node.now_ms(), up_to)
            })
        });
        let leased = match (claim.is_some(), finish.take()) {
            (true, Some(f)) => {
                let cmd = JobCommand::FinishThenLease {
                    finish: Box::new(f),
                    lease: Box::new(claimed(&lease, claim.as_ref())),
                };
                match run(&s, cmd, None).await? {
                    JobReply::FinishedThenLeased { finished: f, jobs } => {
                        finished = Some(*f);
                        jobs
                    }
                    other => return Err(ApiError::internal(format!("answered {other:?}"))),
                }
            }
            (true, None) => match run(&s, claimed(&lease, claim.as_ref()), None).await? {
                JobReply::Leased { jobs } => jobs,
                other => return Err(ApiError::internal(format!("answered {other:?}"))),
            },
            // Nothing to lease now: the finish does not wait for one.
            (false, Some(f)) => {
                finished = Some(job(run(&s, f, None).await?)?.0);
                continue;
            }
            (false, None) => Vec::new(),
        };
        drop(claim);
        if !leased.is_empty() {
            let jobs = leased
                .into_iter()
                .map(|(job, token)| LeasedJob { job, token })
                .collect();
            return Ok(Json(Leased {
                jobs,
                drained: false,
                finished,
            }));
        }
        if req.until_drained && s.node.view.read(|st| st.jobs.drained(&req.queue)) {
            return Ok(Json(Leased {
                jobs: vec![],
                drained: true,
                finished,
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            // Read again: a finish just committed may have drained the queue.
            let drained = s.node.view.read(|st| st.jobs.drained(&req.queue));
            return Ok(Json(Leased {
                jobs: vec![],
                drained,
                finished,
            }));
        }
        tokio::select! {
            _ = revisions.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = s.shutdown.cancelled() => {
                return Err(ApiError::unavailable("the server is shutting down", None));
            }
        }
    }
}

/// The lease command for as many jobs as the claim holds.
fn claimed(lease: &JobCommand, claim: Option<&Claim<'_>>) -> JobCommand {
    let mut cmd = lease.clone();
    if let (JobCommand::Lease { max, .. }, Some(c)) = (&mut cmd, claim) {
        *max = c.n as u32;
    }
    cmd
}

fn check_error_text(error: &Option<String>) -> Result<(), ApiError> {
    match error {
        Some(e) if e.len() > 4096 => Err(ApiError::invalid("error", "at most 4096 bytes")),
        _ => Ok(()),
    }
}

/// Extend a lease by its TTL; the answer says whether a cancel is waiting. A stale token: 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/heartbeat", tag = "jobs", request_body = TokenBody,
    params(("id" = u64, Path)),
    responses((status = 200, body = JobHeartbeat), (status = 409, body = ErrorBody)))]
async fn heartbeat(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Body(b): Body<TokenBody>,
) -> Result<Json<JobHeartbeat>, ApiError> {
    let id = job_id(&id)?;
    match run(&s, JobCommand::Heartbeat { id, token: b.token }, None).await? {
        JobReply::Heartbeat {
            cancel_requested,
            expires_ms,
        } => Ok(Json(JobHeartbeat {
            cancel_requested,
            expires_at: rfc3339(expires_ms),
        })),
        other => Err(ApiError::internal(format!("heartbeat answered {other:?}"))),
    }
}

/// End the attempt holding `token`: `exited` (with `exit_code`; 0 is success), `timed_out`,
/// `cancelled` or `failed` (could not start; `error` says why). A stale token: 409, no change.
#[utoipa::path(post, path = "/v1/jobs/{id}/finish", tag = "jobs", request_body = FinishRequest,
    params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 409, body = ErrorBody)))]
async fn finish(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Body(b): Body<FinishRequest>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    check_error_text(&b.error)?;
    let cmd = JobCommand::Finish {
        id,
        token: b.token,
        ending: b.ending,
        exit_code: b.exit_code,
        error: b.error,
    };
    job(run(&s, cmd, None).await?)
}

/// Give a leased job back unrun (a worker shutting down): queued again, attempt not counted.
#[utoipa::path(post, path = "/v1/jobs/{id}/release", tag = "jobs", request_body = TokenBody,
    params(("id" = u64, Path)),
    responses((status = 200, body = Job), (status = 409, body = ErrorBody)))]
async fn release(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Body(b): Body<TokenBody>,
) -> Result<Json<Job>, ApiError> {
    let id = job_id(&id)?;
    job(run(&s, JobCommand::Release { id, token: b.token }, None).await?)
}

/// Append output lines to a leased job's log (the worker's batches). A stale token: 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/logs", tag = "jobs", request_body = LogBatch,
    params(("id" = u64, Path)),
    responses((status = 200, description = "`{\"next\": OFFSET}`"), (status = 409, body = ErrorBody)))]
async fn append_logs(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Body(b): Body<LogBatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = job_id(&id)?;
    let cmd = JobCommand::Log {
        id,
        token: b.token,
        seq: b.seq,
        lines: b.lines,
        cap_bytes: s.node.config.job_log_max_bytes,
    };
    jobs::validate(&cmd)?;
    match run(&s, cmd, None).await? {
        JobReply::Logged { next } => Ok(Json(json!({ "next": next }))),
        other => Err(ApiError::internal(format!("log answered {other:?}"))),
    }
}

/// A job's output from offset `from` (default 0; at most `limit` lines, default and most
/// 10000). With `follow=true`: Server-Sent Events, one `line` event per line (its offset as
/// the event id; `Last-Event-ID` resumes after it), then an `end` event once the job is over
/// and every line was sent.
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = u64, Path), ("from" = Option<u64>, Query), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000),
        ("follow" = Option<bool>, Query),
        ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, description = "a page of lines; with follow=true an event stream (`line` events, then `end`)",
        content((JobLogs = "application/json"), (String = "text/event-stream"))),
        (status = 404, body = ErrorBody)))]
async fn logs(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let (mut from, mut limit, mut follow) = (0u64, MAX_LOG_PAGE, false);
    for (k, v) in &q {
        match k.as_str() {
            "from" => {
                from = v.parse().map_err(|_| {
                    ApiError::invalid("from", format!("must be a log offset; got {v:?}"))
                })?
            }
            "limit" => limit = super::parse_limit(v, MAX_LOG_PAGE)?,
            "follow" => {
                follow = v.parse().map_err(|_| {
                    ApiError::invalid("follow", format!("must be true or false; got {v:?}"))
                })?
            }
            "consistency" | "token" => {}
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown query parameter; allowed: from, limit, follow, consistency",
                ));
            }
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let last: u64 = last
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be a log offset"))?;
        from = from.max(last + 1);
    }
    Consistency::from_query(&q)?.ready(&s.node).await?;
    let read = |from: u64| s.node.view.read(|st| st.jobs.log(id, from, limit));
    let page = read(from).ok_or_else(|| ApiError::not_found(format!("job {id} does not exist")))?;
    if !follow {
        return Ok(Json(page).into_response());
    }
    let followed = follow_log(s.node.view.clone(), id, from, s.shutdown.clone());
    Ok(sse_of(followed))
}

/// How long a followed log may stay silent before a comment keeps the connection alive.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A followed log as Server-Sent Events: every page of lines becomes one body chunk of
/// `line` events (each written once, rather than through a channel and a builder per line:
/// a hundred followers of a busy log spend their time there otherwise); an idle stream gets
/// a comment every [`SSE_KEEP_ALIVE`].
fn sse_of(followed: tokio::sync::mpsc::Receiver<Followed>) -> Response {
    let chunks = futures::stream::unfold(followed, |mut rx| async move {
        let chunk = match tokio::time::timeout(SSE_KEEP_ALIVE, rx.recv()).await {
            Err(_) => String::from(":\n\n"),
            Ok(None) => return None,
            Ok(Some(Followed::Lines(lines))) => {
                let mut out = String::with_capacity(lines.len() * 160);
                for line in &lines {
                    out.push_str("event: line\nid: ");
                    out.push_str(&line.offset.to_string());
                    out.push_str("\ndata: ");
                    out.push_str(&serde_json::to_string(line).expect("a log line serialises"));
                    out.push_str("\n\n");
                }
                out
            }
            Ok(Some(Followed::End {
                next,
                status,
                dropped,
            })) => {
                let end = json!({"next": next, "status": status, "dropped": dropped});
                format!("event: end\ndata: {end}\n\n")
            }
        };
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

/// What a log follower receives: the lines in pages as they are stored, then `End` once the
/// job is over and every line was sent.
pub enum Followed {
    /// The next lines, in order (never empty).
    Lines(Vec<switchyard_types::LogLine>),
    End {
        next: u64,
        status: Option<&'static str>,
        dropped: u64,
    },
}

/// Follow job `id`'s log from offset `from`: the lines stored, then the new ones as they are
/// applied (a page at a time), then `End`. The channel closes early if the job is forgotten, on shutdown, or when
/// the receiver is dropped.
pub fn follow_log(
    view: switchyard_store::StateView,
    id: u64,
    from: u64,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::sync::mpsc::Receiver<Followed> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut revisions = view.subscribe();
        let mut next = from;
        loop {
            revisions.borrow_and_update();
            let Some(page) = view.read(|st| st.jobs.log(id, next, MAX_LOG_PAGE)) else {
                return;
            };
            let got = !page.lines.is_empty();
            if got && tx.send(Followed::Lines(page.lines)).await.is_err() {
                return;
            }
            next = page.next;
            if page.complete {
                let status = view.read(|st| st.jobs.get(id).map(|j| j.status.as_str()));
                let _ = tx
                    .send(Followed::End {
                        next,
                        status,
                        dropped: page.dropped,
                    })
                    .await;
                return;
            }
            if got {
                continue;
            }
            tokio::select! {
                r = revisions.changed() => if r.is_err() { return },
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
            }
        }
    });
    rx
}
