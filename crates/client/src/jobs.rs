//! Jobs, leases, job logs and agents: the calls a user, a worker and an agent make.

use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use switchyard_types::{
    Agent, AgentHeartbeat, AgentHeartbeatReply, AgentJoin, AgentList, FinishRequest, HeldLease,
    Job, JobBatch, JobEnding, JobHeartbeat, JobIds, JobList, JobLogs, JobSpec, LeaseRequest,
    Leased, LogLine, NewLogLine,
};

use crate::{Client, Error};

impl Client {
    /// Queue one job.
    pub async fn enqueue(&self, spec: &JobSpec, key: Option<&str>) -> Result<Job, Error> {
        self.request(Method::POST, "/v1/jobs", Some(spec), key)
            .await
    }

    /// Queue up to 1000 jobs at once (all or none); their ids in order.
    pub async fn enqueue_batch(
        &self,
        jobs: Vec<JobSpec>,
        key: Option<&str>,
    ) -> Result<Vec<u64>, Error> {
        let body = JobBatch { jobs };
        let ids: JobIds = self
            .request(Method::POST, "/v1/jobs/batch", Some(&body), key)
            .await?;
        Ok(ids.ids)
    }

    pub async fn job(&self, id: u64) -> Result<Job, Error> {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// One page of jobs (oldest first) after job `after`, filtered by status and queue.
    pub async fn jobs(
        &self,
        status: Option<&str>,
        queue: Option<&str>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<JobList, Error> {
        let mut q = vec![format!("limit={limit}")];
        if let Some(s) = status {
            q.push(format!("status={s}"));
        }
        if let Some(s) = queue {
            q.push(format!("queue={s}"));
        }
        if let Some(a) = after {
            q.push(format!("after={a}"));
        }
        self.get(&format!("/v1/jobs?{}", q.join("&"))).await
    }

    pub async fn cancel_job(&self, id: u64) -> Result<Job, Error> {
        self.post(&format!("/v1/jobs/{id}/cancel"), json!({}), None)
            .await
    }

    pub async fn retry_job(&self, id: u64) -> Result<Job, Error> {
        self.post(&format!("/v1/jobs/{id}/retry"), json!({}), None)
            .await
    }

    /// Lease jobs; the server waits up to `req.wait` seconds for one.
    pub async fn lease(&self, req: &LeaseRequest) -> Result<Leased, Error> {
        self.request(Method::POST, "/v1/jobs/lease", Some(req), None)
            .await
    }

    pub async fn job_heartbeat(&self, id: u64, token: u64) -> Result<JobHeartbeat, Error> {
        self.post(
            &format!("/v1/jobs/{id}/heartbeat"),
            json!({ "token": token }),
            None,
        )
        .await
    }

    pub async fn finish_job(
        &self,
        id: u64,
        token: u64,
        ending: JobEnding,
        exit_code: Option<i32>,
        error: Option<String>,
    ) -> Result<Job, Error> {
        let body = FinishRequest {
            token,
            ending,
            exit_code,
            error,
        };
        self.request(
            Method::POST,
            &format!("/v1/jobs/{id}/finish"),
            Some(&body),
            None,
        )
        .await
    }

    pub async fn release_job(&self, id: u64, token: u64) -> Result<Job, Error> {
        self.post(
            &format!("/v1/jobs/{id}/release"),
            json!({ "token": token }),
            None,
        )
        .await
    }

    /// Append lines to a leased job's log; `seq` is how many lines were sent under this
    /// lease before (a retry with the same `seq` stores nothing twice). The offset after them.
    pub async fn append_logs(
        &self,
        id: u64,
        token: u64,
        seq: u64,
        lines: &[NewLogLine],
    ) -> Result<u64, Error> {
        let v: serde_json::Value = self
            .post(
                &format!("/v1/jobs/{id}/logs"),
                json!({ "token": token, "seq": seq, "lines": lines }),
                None,
            )
            .await?;
        v["next"]
            .as_u64()
            .ok_or_else(|| Error::Decode(format!("no next offset in {v}")))
    }

    /// A job's log from offset `from`.
    pub async fn logs(&self, id: u64, from: u64) -> Result<JobLogs, Error> {
        self.get(&format!("/v1/jobs/{id}/logs?from={from}")).await
    }

    /// Follow a job's log from offset `from` until the job ends, across dropped connections
    /// and server restarts (it resumes after the last line it delivered).
    pub fn follow_logs(&self, id: u64, from: u64) -> LogFollower {
        LogFollower {
            client: self.clone(),
            http: {
                let config = match &self.tls {
                    Some(c) => (**c).clone(),
                    None => (*switchyard_tls::system_client_config()).clone(),
                };
                reqwest::Client::builder()
                    .no_proxy()
                    .tls_backend_preconfigured(config)
                    .connect_timeout(Duration::from_secs(5))
                    // The server sends a keep-alive comment every 15 s.
                    .read_timeout(Duration::from_secs(40))
                    .build()
                    .expect("a client with a rustls configuration builds")
            },
            id,
            next: from,
            stream: None,
            buf: Vec::new(),
            pending: std::collections::VecDeque::new(),
            ended: None,
            reconnects: 0,
        }
    }

    /// Join (or join again) as an agent.
    pub async fn join_agent(&self, join: &AgentJoin) -> Result<Agent, Error> {
        self.request(Method::POST, "/v1/agents", Some(join), None)
            .await
    }

    pub async fn agent_heartbeat(
        &self,
        id: &str,
        leases: Vec<HeldLease>,
    ) -> Result<AgentHeartbeatReply, Error> {
        let body = AgentHeartbeat { leases };
        self.request(
            Method::POST,
            &format!("/v1/agents/{id}/heartbeat"),
            Some(&body),
            None,
        )
        .await
    }

    pub async fn agents(&self) -> Result<Vec<Agent>, Error> {
        Ok(self.get::<AgentList>("/v1/agents").await?.agents)
    }

    /// Leave (or forget an agent): the leases it still holds end now.
    pub async fn remove_agent(&self, id: &str) -> Result<(), Error> {
        self.delete_no_content(&format!("/v1/agents/{id}")).await
    }

    /// `DELETE path` answered 204 (no body to decode).
    async fn delete_no_content(&self, path: &str) -> Result<(), Error> {
        match self
            .request::<serde_json::Value>(Method::DELETE, path, None::<&()>, None)
            .await
        {
            Ok(_) | Err(Error::Decode(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// How long a follower keeps trying to reconnect before giving up.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// A job log followed over Server-Sent Events: [`LogFollower::next`] yields every line once,
/// in order, then `None` once the job has ended and every line was delivered.
pub struct LogFollower {
    client: Client,
    http: reqwest::Client,
    id: u64,
    /// Offset of the next line to deliver.
    next: u64,
    stream: Option<crate::connect::BodyStream>,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<LogLine>,
    /// The job's final status once the end was seen.
    ended: Option<String>,
    /// How many times it reconnected.
    pub reconnects: u64,
}

impl LogFollower {
    /// The job's final status, once `next` returned `None`.
    pub fn status(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// The next line, or `None` at the end of the log of an ended job.
    pub async fn next(&mut self) -> Result<Option<LogLine>, Error> {
        let mut failing_since: Option<Instant> = None;
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Ok(Some(line));
            }
            if self.ended.is_some() {
                return Ok(None);
            }
            let chunk = match &mut self.stream {
                Some(s) => s.next().await,
                None => match self.connect().await {
                    Ok(()) => {
                        failing_since = None;
                        continue;
                    }
                    Err(e) => {
                        let since = *failing_since.get_or_insert_with(Instant::now);
                        if matches!(&e, Error::Api { status, .. } if status.is_client_error())
                            || since.elapsed() >= RECONNECT_FOR
                        {
                            return Err(e);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            match chunk {
                Some(Ok(bytes)) => {
                    self.buf.extend_from_slice(&bytes);
                    self.parse()?;
                }
                // Dropped (or the server went away): resume after the last delivered line.
                Some(Err(_)) | None => {
                    self.stream = None;
                    self.buf.clear();
                    self.reconnects += 1;
                }
            }
        }
    }

    async fn connect(&mut self) -> Result<(), Error> {
        let base = self.client.base().to_string();
        let path = format!("/v1/jobs/{}/logs?follow=true&from={}", self.id, self.next);
        let mut headers = vec![("accept", "text/event-stream".to_string())];
        if let Some(t) = &self.client.token {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        let sent = match &self.client.connector {
            Some(c) => {
                crate::connect::send(c, &base, reqwest::Method::GET, &path, &headers, Vec::new())
                    .await
            }
            None => {
                let mut req = self.http.get(format!("{base}{path}"));
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                req.send().await.map_err(Error::from).map(|resp| {
                    let status = resp.status();
                    let stream = resp.bytes_stream().map(|r| r.map_err(|e| e.to_string()));
                    (status, stream.boxed())
                })
            }
        };
        let (status, mut stream) = match sent {
            Ok(r) => r,
            Err(e) => {
                // Try the next address of a cluster.
                self.client.rotate(self.client.index());
                return Err(e);
            }
        };
        if !status.is_success() {
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = stream.next().await {
                bytes.extend_from_slice(&chunk);
            }
            return Err(
                match serde_json::from_slice::<switchyard_types::ErrorBody>(&bytes) {
                    Ok(b) => Error::Api {
                        status,
                        error: b.error,
                    },
                    Err(_) => {
                        Error::Decode(format!("{status}: {}", String::from_utf8_lossy(&bytes)))
                    }
                },
            );
        }
        self.stream = Some(stream);
        Ok(())
    }

    /// Take every complete SSE event out of the buffer.
    fn parse(&mut self) -> Result<(), Error> {
        while let Some(end) = find_event_end(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end).collect();
            let text = String::from_utf8_lossy(&raw);
            let (mut kind, mut data) = ("message", String::new());
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = if v.trim() == "end" { "end" } else { "line" };
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            match kind {
                "line" => {
                    let line: LogLine = serde_json::from_str(&data)
                        .map_err(|e| Error::Decode(format!("log line {data:?}: {e}")))?;
                    // After a reconnect the server starts at `next`; never deliver twice.
                    if line.offset >= self.next {
                        self.next = line.offset + 1;
                        self.pending.push_back(line);
                    }
                }
                "end" => {
                    let v: serde_json::Value = serde_json::from_str(&data)
                        .map_err(|e| Error::Decode(format!("log end {data:?}: {e}")))?;
                    self.ended = Some(v["status"].as_str().unwrap_or("unknown").to_string());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The end of the first complete event (after its blank line), if any.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// Deployments (seed 003).
impl Client {
    pub async fn create_deployment(
        &self,
        d: &switchyard_types::CreateDeployment,
    ) -> Result<switchyard_types::Deployment, Error> {
        self.request(Method::POST, "/v1/deployments", Some(d), None)
            .await
    }

    /// Replace a deployment's templates and settings (refused while an action runs).
    pub async fn update_deployment(
        &self,
        d: &switchyard_types::CreateDeployment,
    ) -> Result<switchyard_types::Deployment, Error> {
        self.request(
            Method::PUT,
            &format!("/v1/deployments/{}", d.name),
            Some(d),
            None,
        )
        .await
    }

    pub async fn deployment(&self, name: &str) -> Result<switchyard_types::Deployment, Error> {
        self.get(&format!("/v1/deployments/{name}")).await
    }

    pub async fn deployments(&self) -> Result<Vec<switchyard_types::Deployment>, Error> {
        let l: switchyard_types::DeploymentList = self.get("/v1/deployments").await?;
        Ok(l.deployments)
    }

    pub async fn delete_deployment(&self, name: &str) -> Result<(), Error> {
        self.delete_no_content(&format!("/v1/deployments/{name}"))
            .await
    }

    /// Start an action; answers at once with its id and the job running it.
    pub async fn deployment_action(
        &self,
        name: &str,
        action: &str,
        args: &[String],
    ) -> Result<switchyard_types::ActionStarted, Error> {
        self.post(
            &format!("/v1/deployments/{name}/actions/{action}"),
            json!({ "args": args }),
            None,
        )
        .await
    }

    /// Set a deployment's state by hand (`up`, `down`, or `failed` naming the action); refused
    /// while an action runs.
    pub async fn set_deployment_state(
        &self,
        name: &str,
        state: &str,
        failed_action: Option<&str>,
    ) -> Result<switchyard_types::Deployment, Error> {
        let body = switchyard_types::DeploymentStateRequest {
            state: state.into(),
            failed_action: failed_action.map(str::to_string),
        };
        self.request(
            Method::PUT,
            &format!("/v1/deployments/{name}/state"),
            Some(&body),
            None,
        )
        .await
    }

    /// Every action of a deployment, oldest first.
    pub async fn deployment_actions(
        &self,
        name: &str,
    ) -> Result<Vec<switchyard_types::DeploymentAction>, Error> {
        let l: switchyard_types::ActionList =
            self.get(&format!("/v1/deployments/{name}/actions")).await?;
        Ok(l.actions)
    }
}

/// Runs (seed 004).
impl Client {
    /// Create a run from a `POST /v1/runs` body.
    pub async fn create_run(
        &self,
        body: &serde_json::Value,
    ) -> Result<switchyard_types::RunCreated, Error> {
        self.request(Method::POST, "/v1/runs", Some(body), None)
            .await
    }

    pub async fn run(&self, id: u64) -> Result<switchyard_types::Run, Error> {
        self.get(&format!("/v1/runs/{id}")).await
    }

    pub async fn runs(&self) -> Result<Vec<switchyard_types::Run>, Error> {
        let l: switchyard_types::RunList = self.get("/v1/runs").await?;
        Ok(l.runs)
    }

    pub async fn run_cells(&self, id: u64) -> Result<Vec<switchyard_types::RunCell>, Error> {
        let l: switchyard_types::RunCells = self.get(&format!("/v1/runs/{id}/cells")).await?;
        Ok(l.cells)
    }

    pub async fn cancel_run(&self, id: u64) -> Result<switchyard_types::Run, Error> {
        self.post(&format!("/v1/runs/{id}/cancel"), json!({}), None)
            .await
    }

    /// The base URL of the node this client talks to first (for links to show a person).
    pub fn base_url(&self) -> String {
        self.bases[0].clone()
    }
}
