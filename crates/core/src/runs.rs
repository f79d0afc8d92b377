//! Runs (seed 004): a test matrix fanned out as jobs, one per valid cell, with live counts.
//!
//! A run is created from its cells (expanded from a matrix with [`expand_matrix`] or from
//! funkytown's spec file with [`expand_funkytown`]; both pure, both here so every node would
//! expand alike) and a command template whose `{dimension}` placeholders take the cell's
//! values inside argv elements. Creating it queues every cell's job in the same command, all or
//! nothing. Each cell follows its job (queued, running, then the job's final status); the counts
//! are kept as cells change, so reading them costs nothing. A run is `running` until every cell
//! ended, then `passed` (all succeeded), `failed` (any did not), or `cancelled` (cancelled by
//! hand). A finished run, its jobs and their logs are kept for the run's retention and while it
//! is among the newest `keep` finished runs, then removed through the log.

use imbl::OrdMap;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_types::JobSpec;

use crate::jobs::{Jobs, Status, validate_name};
use crate::timers::Timers;
use crate::{CommandError, Ctx, Event, Timer};

/// Most dimensions a matrix has.
pub const MAX_DIMENSIONS: usize = 16;
/// Most characters of a dimension value.
pub const MAX_VALUE: usize = 256;
/// The dimensions of a funkytown cell (what its exclude rules may name).
pub const FUNKYTOWN_DIMENSIONS: [&str; 4] = ["spec", "viewport", "browser", "group"];

fn invalid(field: &str, message: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// One cell: its key (`task:<group>:<index>` for funkytown, `cell:<index>` otherwise) and its
/// value for each dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpec {
    pub key: String,
    pub values: BTreeMap<String, String>,
}

/// Why cells were left out: the rule and how many cells it dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub rule: BTreeMap<String, String>,
    pub cells: u32,
}

/// The cells of a matrix (dimensions in the given order, the last varying fastest), less every
/// cell matching all pairs of some exclusion rule.
pub fn expand_matrix(
    matrix: &[(String, Vec<String>)],
    exclude: &[BTreeMap<String, String>],
    max_cells: usize,
) -> Result<(Vec<CellSpec>, Vec<Exclusion>), CommandError> {
    if matrix.is_empty() {
        return Err(invalid(
            "matrix",
            "needs at least one dimension with values",
        ));
    }
    if matrix.len() > MAX_DIMENSIONS {
        return Err(invalid(
            "matrix",
            format!("at most {MAX_DIMENSIONS} dimensions"),
        ));
    }
    let mut product: usize = 1;
    for (dim, values) in matrix {
        validate_name(&format!("matrix.{dim}"), dim)?;
        if values.is_empty() {
            return Err(invalid(
                &format!("matrix.{dim}"),
                "needs at least one value",
            ));
        }
        for v in values {
            check_value(&format!("matrix.{dim}"), v)?;
        }
        product = product.saturating_mul(values.len());
    }
    for (i, rule) in exclude.iter().enumerate() {
        if rule.is_empty() {
            return Err(invalid(
                &format!("exclude[{i}]"),
                "an empty rule would exclude every cell",
            ));
        }
        for dim in rule.keys() {
            if !matrix.iter().any(|(d, _)| d == dim) {
                return Err(invalid(
                    &format!("exclude[{i}].{dim}"),
                    format!(
                        "not a dimension of the matrix; dimensions: {}",
                        matrix
                            .iter()
                            .map(|(d, _)| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
    // The full product bounds the work even when exclusions would bring it under the maximum.
    if product > max_cells.saturating_mul(4) {
        return Err(too_many(product, max_cells));
    }
    let mut exclusions: Vec<Exclusion> = exclude
        .iter()
        .map(|rule| Exclusion {
            rule: rule.clone(),
            cells: 0,
        })
        .collect();
    let mut cells = Vec::new();
    let mut index = vec![0usize; matrix.len()];
    'cells: for _ in 0..product {
        let values: BTreeMap<String, String> = matrix
            .iter()
            .zip(&index)
            .map(|((d, vs), &i)| (d.clone(), vs[i].clone()))
            .collect();
        // Advance the odometer, last dimension fastest.
        for k in (0..matrix.len()).rev() {
            index[k] += 1;
            if index[k] < matrix[k].1.len() {
                break;
            }
            index[k] = 0;
        }
        for e in exclusions.iter_mut() {
            if e.rule.iter().all(|(d, v)| values.get(d) == Some(v)) {
                e.cells += 1;
                continue 'cells;
            }
        }
        cells.push(CellSpec {
            key: format!("cell:{}", cells.len()),
            values,
        });
    }
    check_count(cells.len(), max_cells)?;
    Ok((cells, exclusions))
}

fn too_many(n: usize, max: usize) -> CommandError {
    invalid(
        "matrix",
        format!("expands to {n} cells; at most {max} (run_max_cells)"),
    )
}

fn check_count(n: usize, max: usize) -> Result<(), CommandError> {
    if n == 0 {
        return Err(invalid(
            "matrix",
            "expands to no cells (every combination is excluded)",
        ));
    }
    if n > max {
        return Err(too_many(n, max));
    }
    Ok(())
}

fn check_value(field: &str, v: &str) -> Result<(), CommandError> {
    if v.is_empty() || v.len() > MAX_VALUE || v.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("values must be 1 to {MAX_VALUE} characters, no control characters; got {v:?}"),
        ));
    }
    Ok(())
}

/// funkytown's spec file: `{"groups": [{"groupName" | "name", "tasks": [{"spec", "viewports",
/// "browsers"}]}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunkytownFile {
    pub groups: Vec<FunkytownGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunkytownGroup {
    #[serde(rename = "groupName", default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tasks: Vec<FunkytownTask>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunkytownTask {
    pub spec: String,
    pub viewports: Vec<String>,
    pub browsers: Vec<String>,
}

/// funkytown's expansion: for each task every viewport × browser, less the combinations that
/// match a skip rule (the original's: `mobile` + `firefox`); keys `task:<group>:<index>`, the
/// index counting the group's cells.
pub fn expand_funkytown(
    file: &FunkytownFile,
    skip: &[BTreeMap<String, String>],
    max_cells: usize,
) -> Result<(Vec<CellSpec>, Vec<Exclusion>), CommandError> {
    let mut exclusions: Vec<Exclusion> = skip
        .iter()
        .map(|rule| Exclusion {
            rule: rule.clone(),
            cells: 0,
        })
        .collect();
    for (i, rule) in skip.iter().enumerate() {
        if rule.is_empty() {
            return Err(invalid(
                &format!("exclude[{i}]"),
                "an empty rule would exclude every cell",
            ));
        }
        for dim in rule.keys() {
            if !FUNKYTOWN_DIMENSIONS.contains(&dim.as_str()) {
                return Err(invalid(
                    &format!("exclude[{i}].{dim}"),
                    "funkytown cells have spec, viewport, browser and group",
                ));
            }
        }
    }
    // The combinations before skipping bound the work, as for a matrix.
    let product: usize = file
        .groups
        .iter()
        .flat_map(|g| &g.tasks)
        .map(|t| t.viewports.len().saturating_mul(t.browsers.len()))
        .fold(0usize, usize::saturating_add);
    if product > max_cells.saturating_mul(4) {
        return Err(too_many(product, max_cells));
    }
    let mut cells = Vec::new();
    for (g, group) in file.groups.iter().enumerate() {
        let name = group
            .group_name
            .clone()
            .or_else(|| group.name.clone())
            .unwrap_or_default();
        if !name.is_empty() {
            check_value(&format!("groups[{g}].groupName"), &name)?;
        }
        let mut index = 0;
        for (t, task) in group.tasks.iter().enumerate() {
            let field = format!("groups[{g}].tasks[{t}]");
            check_value(&format!("{field}.spec"), &task.spec)?;
            for v in &task.viewports {
                check_value(&format!("{field}.viewports"), v)?;
            }
            for b in &task.browsers {
                check_value(&format!("{field}.browsers"), b)?;
            }
            for v in &task.viewports {
                'browsers: for b in &task.browsers {
                    let values = BTreeMap::from([
                        ("browser".to_string(), b.clone()),
                        ("group".to_string(), name.clone()),
                        ("spec".to_string(), task.spec.clone()),
                        ("viewport".to_string(), v.clone()),
                    ]);
                    for e in exclusions.iter_mut() {
                        if e.rule.iter().all(|(d, x)| values.get(d) == Some(x)) {
                            e.cells += 1;
                            continue 'browsers;
                        }
                    }
                    cells.push(CellSpec {
                        key: format!("task:{name}:{index}"),
                        values,
                    });
                    index += 1;
                    if cells.len() > max_cells {
                        return Err(too_many(cells.len(), max_cells));
                    }
                }
            }
        }
    }
    check_count(cells.len(), max_cells)?;
    Ok((cells, exclusions))
}

/// The original's skip rule: `mobile` + `firefox`.
pub fn funkytown_default_skip() -> Vec<BTreeMap<String, String>> {
    vec![BTreeMap::from([
        ("viewport".to_string(), "mobile".to_string()),
        ("browser".to_string(), "firefox".to_string()),
    ])]
}

/// `{dimension}` placeholders substituted inside every element.
pub fn render(template: &[String], values: &BTreeMap<String, String>) -> Vec<String> {
    template
        .iter()
        .map(|e| {
            values
                .iter()
                .fold(e.clone(), |e, (d, v)| e.replace(&format!("{{{d}}}"), v))
        })
        .collect()
}

/// What a run is made of, as created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    pub name: String,
    pub cells: Vec<CellSpec>,
    pub excluded: Vec<Exclusion>,
    /// Each cell's job, with `{dimension}` placeholders in `command`.
    pub job: JobSpec,
    /// How long a finished run is kept, and how many finished runs at most.
    pub retention_ms: i64,
    pub keep: u32,
}

/// A cell as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub job_id: u64,
    pub status: Status,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: u64,
    pub spec: RunSpec,
    pub cells: Vec<Cell>,
    /// Cells per status (as [`Status::as_str`]).
    pub counts: BTreeMap<String, u32>,
    pub cancelled: bool,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub revision: u64,
}

impl Run {
    pub fn count(&self, status: Status) -> u32 {
        self.counts.get(status.as_str()).copied().unwrap_or(0)
    }

    /// Cells whose job ended.
    pub fn ended(&self) -> u32 {
        self.cells.len() as u32 - self.count(Status::Queued) - self.count(Status::Running)
    }

    /// `running`, then `passed`, `failed` or `cancelled`.
    pub fn status(&self) -> &'static str {
        if self.finished_ms.is_none() {
            "running"
        } else if self.cancelled {
            "cancelled"
        } else if self.count(Status::Succeeded) as usize == self.cells.len() {
            "passed"
        } else {
            "failed"
        }
    }

    fn summary(&self, kind: &str) -> serde_json::Value {
        serde_json::json!({
            "kind": kind,
            "id": self.id,
            "status": self.status(),
            "total": self.cells.len(),
            "counts": self.counts,
            "revision": self.revision,
        })
    }
}

/// The API's class of a job status: `passed` for succeeded, else its own name.
fn class(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "passed",
        other => other.as_str(),
    }
}

impl Run {
    /// The run with its statistics at `now_ms`; `breakdown` adds the per-dimension counts.
    pub fn view(&self, now_ms: i64, breakdown: bool) -> switchyard_types::Run {
        use switchyard_types::rfc3339;
        let total = self.cells.len() as u32;
        let ended = self.ended();
        let end = self.finished_ms.unwrap_or(now_ms.max(self.created_ms));
        let duration = (end - self.created_ms) as f64 / 1000.0;
        let throughput = if duration > 0.0 {
            ended as f64 / duration
        } else {
            0.0
        };
        let eta = match self.finished_ms {
            Some(_) => Some(0.0),
            None if throughput > 0.0 => Some((total - ended) as f64 / throughput),
            None => None,
        };
        let breakdown = breakdown.then(|| {
            let mut b = switchyard_types::Breakdown::new();
            for (spec, cell) in self.spec.cells.iter().zip(&self.cells) {
                for (dim, value) in &spec.values {
                    *b.entry(dim.clone())
                        .or_default()
                        .entry(value.clone())
                        .or_default()
                        .entry(class(cell.status).to_string())
                        .or_default() += 1;
                }
            }
            b
        });
        switchyard_types::Run {
            id: self.id,
            name: self.spec.name.clone(),
            status: self.status().into(),
            total,
            queued: self.count(Status::Queued),
            running: self.count(Status::Running),
            passed: self.count(Status::Succeeded),
            failed: self.count(Status::Failed) + self.count(Status::TimedOut),
            timed_out: self.count(Status::TimedOut),
            cancelled: self.count(Status::Cancelled),
            dead: self.count(Status::Dead),
            excluded: self.spec.excluded.iter().map(|e| e.cells).sum(),
            started_at: rfc3339(self.created_ms),
            finished_at: self.finished_ms.map(rfc3339),
            duration_seconds: duration,
            throughput,
            eta_seconds: eta,
            breakdown,
            funkytown: switchyard_types::FunkytownRunMeta {
                runid: self.id.to_string(),
                tasksremaining: total - ended,
                tasksfinished: ended,
                finished: self.finished_ms.is_some(),
            },
            revision: self.revision,
        }
    }

    /// Every cell, in order, with its job's reason for a bad end from `jobs`.
    pub fn cell_views(&self, jobs: &crate::jobs::Jobs) -> Vec<switchyard_types::RunCell> {
        use switchyard_types::rfc3339;
        self.spec
            .cells
            .iter()
            .zip(&self.cells)
            .enumerate()
            .map(|(i, (spec, c))| switchyard_types::RunCell {
                index: i as u32,
                key: spec.key.clone(),
                values: spec.values.clone(),
                job_id: c.job_id,
                status: c.status.as_str().into(),
                attempts: c.attempts,
                exit_code: c.exit_code,
                started_at: c.started_ms.map(rfc3339),
                finished_at: c.finished_ms.map(rfc3339),
                duration_seconds: c
                    .started_ms
                    .zip(c.finished_ms)
                    .map(|(s, f)| (f - s) as f64 / 1000.0),
                error: jobs.get(c.job_id).and_then(|j| j.error.clone()),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunCommand {
    Create(Box<RunSpec>),
    /// Cancel every cell not yet ended.
    Cancel {
        id: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunReply {
    Created { id: u64, cells: u32 },
    Cancelled { id: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    runs: OrdMap<u64, Run>,
}

pub fn validate(cmd: &RunCommand) -> Result<(), CommandError> {
    match cmd {
        RunCommand::Create(spec) => {
            if !spec.name.is_empty() {
                validate_name("name", &spec.name)?;
            }
            if spec.cells.is_empty() {
                return Err(invalid("matrix", "expands to no cells"));
            }
            if spec.retention_ms <= 0 || spec.keep == 0 {
                return Err(invalid(
                    "retention",
                    "must keep runs for some time, and at least one",
                ));
            }
            Ok(())
        }
        RunCommand::Cancel { .. } => Ok(()),
    }
}

fn topic(id: u64) -> String {
    format!("runs/{id}")
}

impl Runs {
    pub fn get(&self, id: u64) -> Option<&Run> {
        self.runs.get(&id)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Run> {
        self.runs.values()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        cmd: &RunCommand,
        jobs: &mut Jobs,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) -> Result<RunReply, CommandError> {
        validate(cmd)?;
        match cmd {
            RunCommand::Create(spec) => {
                let id = ctx.index;
                // Every cell's job is checked before any is queued: all or nothing.
                let specs: Vec<JobSpec> = spec
                    .cells
                    .iter()
                    .map(|c| JobSpec {
                        command: render(&spec.job.command, &c.values),
                        ..spec.job.clone()
                    })
                    .collect();
                for (i, s) in specs.iter().enumerate() {
                    crate::jobs::validate_spec(s, "").map_err(|e| match e {
                        CommandError::Invalid { field, message } => CommandError::Invalid {
                            field,
                            message: format!("{message} (cell {i})"),
                        },
                        other => other,
                    })?;
                }
                let mut cells = Vec::with_capacity(specs.len());
                for (i, s) in specs.into_iter().enumerate() {
                    let owner = format!("runs/{id}/{i}");
                    let keep = spec.retention_ms;
                    let job_id = jobs.enqueue_owned(s, owner, keep, ctx, now, events)?;
                    cells.push(Cell {
                        job_id,
                        status: Status::Queued,
                        attempts: 0,
                        exit_code: None,
                        started_ms: None,
                        finished_ms: None,
                    });
                }
                let n = cells.len() as u32;
                let run = Run {
                    id,
                    spec: (**spec).clone(),
                    cells,
                    counts: BTreeMap::from([(Status::Queued.as_str().to_string(), n)]),
                    cancelled: false,
                    created_ms: now,
                    finished_ms: None,
                    revision: ctx.index,
                };
                events.push(Event {
                    topic: topic(id),
                    body: run.summary("created"),
                });
                self.runs.insert(id, run);
                Ok(RunReply::Created { id, cells: n })
            }
            RunCommand::Cancel { id } => {
                let run = self
                    .runs
                    .get_mut(id)
                    .ok_or_else(|| CommandError::NotFound {
                        message: format!("run {id} does not exist"),
                    })?;
                if run.finished_ms.is_some() {
                    return Err(CommandError::Conflict {
                        message: format!("run {id} has already finished ({})", run.status()),
                    });
                }
                run.cancelled = true;
                run.revision = ctx.index;
                let open: Vec<u64> = run
                    .cells
                    .iter()
                    .filter(|c| !c.status.is_final())
                    .map(|c| c.job_id)
                    .collect();
                events.push(Event {
                    topic: topic(*id),
                    body: run.summary("cancelling"),
                });
                for job in open {
                    jobs.apply(
                        &crate::jobs::JobCommand::Cancel { id: job },
                        ctx,
                        now,
                        timers,
                        events,
                    )?;
                }
                Ok(RunReply::Cancelled { id: *id })
            }
        }
    }

    /// A job owned by `runs/ID/CELL` changed: the cell follows it; the run finishes with its
    /// last cell.
    #[allow(clippy::too_many_arguments)]
    pub fn job_changed(
        &mut self,
        owner: &str,
        job: &crate::jobs::Job,
        jobs: &mut Jobs,
        ctx: Ctx,
        now: i64,
        timers: &mut Timers,
        events: &mut Vec<Event>,
    ) {
        let Some((id, cell)) = owner
            .strip_prefix("runs/")
            .and_then(|r| r.split_once('/'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)))
        else {
            return;
        };
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        let Some(c) = run.cells.get_mut(cell) else {
            return;
        };
        let (before, after) = (c.status, job.status);
        c.attempts = job.attempts;
        c.exit_code = job.exit_code;
        c.started_ms = job.started_ms;
        c.finished_ms = job.finished_ms;
        if before == after {
            return;
        }
        c.status = after;
        if let Some(n) = run.counts.get_mut(before.as_str()) {
            *n -= 1;
            if *n == 0 {
                run.counts.remove(before.as_str());
            }
        }
        *run.counts.entry(after.as_str().to_string()).or_default() += 1;
        run.revision = ctx.index;
        let mut body = run.summary("cell");
        body["cell"] = serde_json::json!({
            "index": cell, "key": run.spec.cells[cell].key, "job_id": job.id,
            "status": after.as_str(), "exit_code": job.exit_code, "error": job.error,
        });
        events.push(Event {
            topic: topic(id),
            body,
        });
        if run.finished_ms.is_none() && run.ended() as usize == run.cells.len() {
            run.finished_ms = Some(now);
            events.push(Event {
                topic: topic(id),
                body: run.summary("finished"),
            });
            timers.schedule(
                now.saturating_add(run.spec.retention_ms),
                Timer::RunExpire { run: id },
            );
            let keep = run.spec.keep;
            self.keep_newest(keep, id, jobs, events);
        } else if run.finished_ms.is_some() && !after.is_final() {
            // A cell retried by hand reopens its run (no longer a cancelled one).
            run.finished_ms = None;
            run.cancelled = false;
        }
    }

    /// Remove the finished runs that finished first, beyond `keep`; never `just_finished`.
    fn keep_newest(
        &mut self,
        keep: u32,
        just_finished: u64,
        jobs: &mut Jobs,
        events: &mut Vec<Event>,
    ) {
        let mut finished: Vec<(i64, u64)> = self
            .runs
            .values()
            .filter_map(|r| Some((r.finished_ms?, r.id)))
            .collect();
        finished.sort_unstable();
        let over = finished.len().saturating_sub(keep as usize);
        for (_, id) in finished.into_iter().take(over) {
            if id != just_finished {
                self.remove(id, jobs, events);
            }
        }
    }

    fn remove(&mut self, id: u64, jobs: &mut Jobs, events: &mut Vec<Event>) {
        let Some(run) = self.runs.remove(&id) else {
            return;
        };
        for c in &run.cells {
            jobs.forget(c.job_id, events);
        }
        events.push(Event {
            topic: topic(id),
            body: run.summary("expired"),
        });
    }

    /// A finished run's retention ended.
    pub fn expire_due(&mut self, id: u64, now: i64, jobs: &mut Jobs, events: &mut Vec<Event>) {
        let over = self.runs.get(&id).is_some_and(|r| {
            r.finished_ms
                .is_some_and(|f| f.saturating_add(r.spec.retention_ms) <= now)
        });
        if over {
            self.remove(id, jobs, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(dims: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        dims.iter()
            .map(|(d, vs)| (d.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    fn rule(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_matrix_expands_to_every_cell_but_the_excluded_ones() {
        let matrix = m(&[
            ("spec", &["a", "b"]),
            ("browser", &["chrome", "firefox"]),
            ("viewport", &["desktop", "mobile"]),
        ]);
        let ex = [rule(&[("browser", "firefox"), ("viewport", "mobile")])];
        let (cells, excluded) = expand_matrix(&matrix, &ex, 100).unwrap();
        assert_eq!(cells.len(), 6);
        assert_eq!(excluded[0].cells, 2);
        assert!(
            cells
                .iter()
                .all(|c| !(c.values["browser"] == "firefox" && c.values["viewport"] == "mobile"))
        );
        assert_eq!(
            cells[0].values,
            rule(&[
                ("spec", "a"),
                ("browser", "chrome"),
                ("viewport", "desktop")
            ])
        );
        assert_eq!(
            cells[1].values["viewport"], "mobile",
            "the last dimension varies fastest"
        );
        // Errors name the field.
        let e = |r: Result<_, CommandError>| match r {
            Err(CommandError::Invalid { field, message }) => format!("{field}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(e(expand_matrix(&matrix, &ex, 5)).contains("at most 5"));
        assert!(e(expand_matrix(&[], &[], 5)).starts_with("matrix:"));
        assert!(e(expand_matrix(&m(&[("spec", &[])]), &[], 5)).starts_with("matrix.spec:"));
        assert!(
            e(expand_matrix(&matrix, &[rule(&[("os", "x")])], 100)).starts_with("exclude[0].os:")
        );
        let all = [rule(&[("spec", "a")]), rule(&[("spec", "b")])];
        assert!(e(expand_matrix(&matrix, &all, 100)).contains("no cells"));
        assert_eq!(
            render(
                &[
                    "run".into(),
                    "{spec}".into(),
                    "--b={browser}".into(),
                    "{x}".into()
                ],
                &cells[0].values
            ),
            ["run", "a", "--b=chrome", "{x}"]
        );
    }

    fn spec(n: usize, keep: u32) -> RunSpec {
        let matrix = m(&[("spec", &["a", "b", "c", "d", "e"][..n])]);
        let (cells, excluded) = expand_matrix(&matrix, &[], 100).unwrap();
        RunSpec {
            name: String::new(),
            cells,
            excluded,
            job: serde_json::from_value(serde_json::json!({"command": ["t", "{spec}"]})).unwrap(),
            retention_ms: 60_000,
            keep,
        }
    }

    /// Drive the whole core: create, lease and finish through `apply`.
    struct World {
        state: crate::State,
        index: u64,
        now: i64,
    }

    impl World {
        fn run(&mut self, command: crate::Command) -> (crate::Outcome, Vec<Event>) {
            self.index += 1;
            let p = crate::Proposal::new(self.now, command);
            crate::apply(&mut self.state, &p, Ctx { index: self.index })
        }

        fn finish_one(&mut self, code: i32) {
            use crate::jobs::{Ending, JobCommand, JobReply};
            let lease = JobCommand::Lease {
                worker: "w".into(),
                queue: "default".into(),
                labels: BTreeMap::new(),
                max: 1,
            };
            let Ok(crate::Reply::Jobs(JobReply::Leased { jobs })) =
                self.run(crate::Command::Jobs(lease)).0
            else {
                panic!("lease")
            };
            let (job, token) = (jobs[0].0.id, jobs[0].1);
            let finish = JobCommand::Finish {
                id: job,
                token,
                ending: Ending::Exited,
                exit_code: Some(code),
                error: None,
            };
            assert!(self.run(crate::Command::Jobs(finish)).0.is_ok());
        }
    }

    #[test]
    fn cells_follow_their_jobs_and_finished_runs_are_kept_by_time_and_count() {
        let mut w = World {
            state: crate::State::default(),
            index: 0,
            now: 1000,
        };
        let (r, events) = w.run(crate::Command::Runs(RunCommand::Create(Box::new(spec(
            3, 1,
        )))));
        let Ok(crate::Reply::Runs(RunReply::Created { id, cells: 3 })) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            events
                .iter()
                .filter(|e| e.topic.starts_with("jobs/"))
                .count(),
            3
        );
        let run = w.state.runs.get(id).unwrap();
        assert_eq!((run.count(Status::Queued), run.status()), (3, "running"));
        let job0 = w.state.jobs.get(run.cells[0].job_id).unwrap();
        assert_eq!(job0.spec.command, ["t", "a"]);
        w.finish_one(0);
        w.finish_one(1);
        let run = w.state.runs.get(id).unwrap();
        assert_eq!(
            (
                run.count(Status::Succeeded),
                run.count(Status::Failed),
                run.count(Status::Queued)
            ),
            (1, 1, 1)
        );
        assert_eq!(run.cells[1].exit_code, Some(1));
        w.now = 2000;
        w.finish_one(0);
        let run = w.state.runs.get(id).unwrap().clone();
        assert_eq!((run.status(), run.finished_ms), ("failed", Some(2000)));
        let r = w.run(crate::Command::Runs(RunCommand::Cancel { id })).0;
        assert!(matches!(r, Err(CommandError::Conflict { .. })), "{r:?}");
        // A second run: cancelled; then keep = 1 removes the first with its jobs.
        let first_jobs: Vec<u64> = run.cells.iter().map(|c| c.job_id).collect();
        let (r, _) = w.run(crate::Command::Runs(RunCommand::Create(Box::new(spec(
            2, 1,
        )))));
        let Ok(crate::Reply::Runs(RunReply::Created { id: second, .. })) = r else {
            panic!()
        };
        let (r, events) = w.run(crate::Command::Runs(RunCommand::Cancel { id: second }));
        assert!(r.is_ok(), "{r:?}");
        assert!(events.iter().any(|e| e.body["kind"] == "finished"));
        let run2 = w.state.runs.get(second).unwrap().clone();
        assert_eq!(
            (run2.status(), run2.count(Status::Cancelled)),
            ("cancelled", 2)
        );
        assert!(
            w.state.runs.get(id).is_none(),
            "only the newest finished run is kept"
        );
        assert!(
            first_jobs.iter().all(|j| w.state.jobs.get(*j).is_none()),
            "its jobs went with it"
        );
        // Retention: a minute after it finished, the run and its jobs are removed by a timer.
        w.now = 2000 + 60_000;
        assert!(w.run(crate::Command::Tick).0.is_ok());
        assert!(w.state.runs.get(second).is_none());
        assert!(
            run2.cells
                .iter()
                .all(|c| w.state.jobs.get(c.job_id).is_none())
        );
    }

    #[test]
    fn a_retried_cell_reopens_its_run_and_the_last_finished_run_is_kept() {
        use crate::jobs::JobCommand;
        let mut w = World {
            state: crate::State::default(),
            index: 0,
            now: 1000,
        };
        // A: 2 cells, created first; B: 1 cell. keep = 1.
        let create = |n| crate::Command::Runs(RunCommand::Create(Box::new(spec(n, 1))));
        let Ok(crate::Reply::Runs(RunReply::Created { id: a, .. })) = w.run(create(2)).0 else {
            panic!()
        };
        let Ok(crate::Reply::Runs(RunReply::Created { id: b, .. })) = w.run(create(1)).0 else {
            panic!()
        };
        // Jobs are leased in order: A's two, then B's.
        w.finish_one(1);
        w.finish_one(0);
        w.finish_one(0);
        // A finished first, then B: A goes, B (the last to finish) stays.
        assert!(w.state.runs.get(a).is_none());
        assert_eq!(w.state.runs.get(b).unwrap().status(), "passed");
        // Now a run that fails, and its cell retried by hand: the run reopens and passes.
        let Ok(crate::Reply::Runs(RunReply::Created { id: c, .. })) = w.run(create(1)).0 else {
            panic!()
        };
        w.finish_one(5);
        assert_eq!(w.state.runs.get(c).unwrap().status(), "failed");
        assert!(
            w.state.runs.get(b).is_none(),
            "keep = 1: the older finished run went"
        );
        let job = w.state.runs.get(c).unwrap().cells[0].job_id;
        assert!(
            w.run(crate::Command::Jobs(JobCommand::Retry { id: job }))
                .0
                .is_ok()
        );
        assert_eq!(w.state.runs.get(c).unwrap().status(), "running");
        w.finish_one(0);
        let run = w.state.runs.get(c).unwrap();
        assert_eq!((run.status(), run.count(Status::Succeeded)), ("passed", 1));
    }

    #[test]
    fn funkytown_files_expand_as_the_original_skipping_mobile_firefox() {
        let text = r#"{"groups": [
            {"groupName": "search", "tasks": [
                {"spec": "album.spec.ts", "viewports": ["desktop", "mobile"], "browsers": ["chrome", "firefox", "webkit"]},
                {"spec": "label.spec.ts", "viewports": ["mobile"], "browsers": ["chrome", "webkit"]}]},
            {"name": "beta", "tasks": [
                {"spec": "beta.spec.ts", "viewports": ["mobile"], "browsers": ["firefox"]}]}]}"#;
        let file: FunkytownFile = serde_json::from_str(text).unwrap();
        let (cells, excluded) = expand_funkytown(&file, &funkytown_default_skip(), 100).unwrap();
        let keys: Vec<(&str, String)> = cells
            .iter()
            .map(|c| {
                (
                    c.key.as_str(),
                    format!(
                        "{} {} {}",
                        c.values["spec"], c.values["viewport"], c.values["browser"]
                    ),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("task:search:0", "album.spec.ts desktop chrome".to_string()),
                ("task:search:1", "album.spec.ts desktop firefox".into()),
                ("task:search:2", "album.spec.ts desktop webkit".into()),
                ("task:search:3", "album.spec.ts mobile chrome".into()),
                ("task:search:4", "album.spec.ts mobile webkit".into()),
                ("task:search:5", "label.spec.ts mobile chrome".into()),
                ("task:search:6", "label.spec.ts mobile webkit".into()),
            ]
        );
        assert_eq!(
            excluded[0].cells, 2,
            "album mobile firefox and beta mobile firefox"
        );
        // The skip rule is configurable: without it, beta's one cell is there too.
        let (all, _) = expand_funkytown(&file, &[], 100).unwrap();
        assert_eq!(all.len(), 9);
        assert_eq!(all[8].key, "task:beta:0");
        assert!(expand_funkytown(&file, &[], 8).is_err());
        // The combinations bound the work before any skipping, and an empty rule is refused.
        let many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let big = FunkytownFile {
            groups: vec![FunkytownGroup {
                group_name: Some("g".into()),
                name: None,
                tasks: vec![FunkytownTask {
                    spec: "s".into(),
                    viewports: many.clone(),
                    browsers: many,
                }],
            }],
        };
        let skip_all = [BTreeMap::from([("spec".to_string(), "s".to_string())])];
        assert!(expand_funkytown(&big, &skip_all, 100).is_err());
        assert!(expand_funkytown(&file, &[BTreeMap::new()], 100).is_err());
        let bad: Result<FunkytownFile, _> =
            serde_json::from_str(r#"{"groups": [{"tasks": [{"spec": "a"}]}]}"#);
        assert!(bad.is_err(), "viewports and browsers are required");
    }
}
