//! The seed-004 face: funkytown's reporter (`--funkytown-listen`, port 3000 by the original).
//!
//! `/health` answers 200; `/results` is the original's HTML page: the run metadata (tasks
//! remaining, tasks finished, finished) and a row per task with its result, status (`waiting`,
//! `processing`, `complete`), spec, viewport, browser and duration. Both answer any method, as
//! the original's Go handlers do. The result is the original worker's: `passed` on exit 0,
//! `failed` on exit status 1, `error` for anything else (another exit code, a signal, a command
//! that could not start, a timeout, a lost worker), `unknown` until the cell ends. The duration
//! is Go's `duration.Truncate(time.Second).String()` of the run time (`0s` while processing).
//! It shows the newest run, or `?run=ID`. Differences from the original, on purpose: with no
//! run yet it answers 404 with a short page instead of a 500; a cancelled cell's result is
//! `unknown` (the original had no cancel); rows are in the spec's order (the original's came
//! in Go's map order, a new one each request) and the page names the run; cells of a matrix
//! without spec, viewport or browser dimensions show their other values under Spec.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use serde::Deserialize;
use switchyard_core::jobs::Status;
use switchyard_core::runs::Run;

use crate::api::Shared;
use crate::routes::Routes;

/// The face's routes.
pub fn routes() -> Routes<Shared> {
    Routes::new()
        .any("/health", || async { StatusCode::OK })
        .any("/results", results)
}

/// The face's routes and its document at `/openapi.json` (and `/docs`).
pub(crate) fn own_routes() -> Routes<Shared> {
    routes().merge(crate::docs_page::routes(openapi().to_string().into()))
}

pub fn router(s: Shared) -> Router {
    let guard = crate::api::guard(&s, crate::auth::Style::Text);
    own_routes()
        .into_router()
        .layer(crate::gate::GateLayer(guard))
        .with_state(s)
}

/// The reporter's OpenAPI document (the original served none; `/openapi.json` and `/docs`
/// are not among its routes). Both routes answer any method, as the original's. Errors are plain text, as Go's `http.Error` writes them; a fault of the node
/// itself (no leader) keeps the API's error body.
fn openapi() -> serde_json::Value {
    use serde_json::json;
    let text = |d: &str| json!({"description": d, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let html = |d: &str| json!({"description": d, "content": {"text/html": {"schema": {"type": "string"}}}});
    let node_error = json!({"description": "unavailable: no leader or no quorum (the API's error body)",
        "content": {"application/json": {"schema": {"type": "object", "required": ["error"]}}}});
    // Any method, as the original's handlers: the same operation under each.
    let any = |id: &str, op: serde_json::Value| {
        let methods = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let item: serde_json::Map<String, serde_json::Value> = methods
            .iter()
            .map(|m| {
                let mut op = op.clone();
                op["operationId"] = json!(if *m == "get" {
                    id.to_string()
                } else {
                    format!("{id}_{m}")
                });
                (m.to_string(), op)
            })
            .collect();
        serde_json::Value::Object(item)
    };
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "switchyard: the funkytown reporter face", "version": env!("CARGO_PKG_VERSION"),
            "description": "funkytown's reporter on `--funkytown-listen`: its health check and results page."},
        "paths": {
            "/health": any("health", json!({"summary": "200 while the server runs.",
                "responses": {"200": {"description": "OK (no body)"},
                    "401": text("tokens are on and none or an unknown one was given"),
                    "403": text("a browser page of another origin")}})),
            "/results": any("results", json!({
                "summary": "The newest run's (or run `run`'s) metadata and every task, as the original's HTML page.",
                "parameters": [{"name": "run", "in": "query", "required": false,
                    "schema": {"type": "integer", "format": "uint64", "minimum": 0, "maximum": u64::MAX}}],
                "responses": {"200": html("the page"),
                    "400": text("`run` is not a run id"),
                    "401": text("tokens are on and none or an unknown one was given"),
                    "403": text("a browser page of another origin"),
                    "404": html("no run yet, or no run `run`"),
                    "503": node_error}}))
        }
    });
    doc["paths"]
        .as_object_mut()
        .expect("paths are an object")
        .extend(crate::docs_page::paths());
    doc
}

#[derive(Deserialize)]
struct Which {
    run: Option<u64>,
}

/// Go's `d.Truncate(time.Second).String()` for `ms` milliseconds: `0s`, `2s`, `1m1s`,
/// `1h0m0s`.
pub fn go_seconds(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The original worker's verdict on an ended cell.
fn result_of(status: Status, exit_code: Option<i32>) -> &'static str {
    match (status, exit_code) {
        (Status::Succeeded, _) => "passed",
        (Status::Failed, Some(1)) => "failed",
        (Status::Failed | Status::TimedOut | Status::Dead, _) => "error",
        (Status::Queued | Status::Running | Status::Cancelled, _) => "unknown",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:Verdana,Arial,Tahoma,Serif;font-size:16px;background:#eee;padding:36px}\
.wrapper{max-width:768px;margin:0 auto;background:white;padding:3em;border-radius:16px}\
.unknown,.waiting{background:rgb(224,224,224)}.passed{background:rgb(84,255,84)}\
.failed,.error{background:rgb(255,120,120)}.processing{background:rgb(0,146,146)}\
.complete{background:rgb(175,175,175)}";

fn page(run: &Run) -> String {
    let total = run.cells.len() as u32;
    let finished = run.ended();
    let mut rows = String::new();
    for (spec, cell) in run.spec.cells.iter().zip(&run.cells) {
        let status = match cell.status {
            Status::Queued => "waiting",
            Status::Running => "processing",
            _ => "complete",
        };
        let result = result_of(cell.status, cell.exit_code);
        let duration = match (cell.started_ms, cell.finished_ms) {
            (Some(s), Some(f)) => go_seconds(f - s),
            _ => "0s".into(),
        };
        let v = |k: &str| spec.values.get(k).cloned().unwrap_or_default();
        let spec_text = if spec.values.contains_key("spec") {
            v("spec")
        } else {
            spec.values
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "viewport" | "browser"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        rows.push_str(&format!(
            "<tr><td class='{result}'>{result}</td><td class='{status}'>{status}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&spec_text),
            escape(&v("viewport")),
            escape(&v("browser")),
            duration
        ));
    }
    format!(
        "<html lang=\"en\"><head><meta charset=\"UTF-8\"><title>funkytown workqueue reporter</title><style>{STYLE}</style></head>\n\
         <body><div class=\"wrapper\"><h1>Funkytown spec execution results</h1>\n\
         <div>Run: {}</div><div>Tasks Remaining: {}</div><div>Tasks Finished: {finished}</div><div>Finished: {}</div>\n\
         <table><tr><th>Result</th><th>Status</th><th>Spec</th><th>Viewport</th><th>Browser</th><th>Duration</th></tr>\n{rows}</table></div></body></html>\n",
        run.id,
        total - finished,
        run.finished_ms.is_some()
    )
}

async fn results(State(s): State<Shared>, Query(w): Query<Which>) -> Response {
    if let Err(e) = s.node.linearizable().await {
        return crate::error::ApiError::from(e).into_response();
    }
    let html = s.node.view.read(|st| {
        let run = match w.run {
            Some(id) => st.runs.get(id),
            None => st.runs.iter().next_back(),
        };
        run.map(page)
    });
    match html {
        Some(h) => Html(h).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html("<html><body><h1>Funkytown spec execution results</h1><p>No run yet.</p></body></html>\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them_truncated_to_seconds() {
        // Go: time.Duration(ms * 1e6).Truncate(time.Second).String().
        let cases = [
            (0, "0s"),
            (900, "0s"),
            (2009, "2s"),
            (61_000, "1m1s"),
            (3_600_000, "1h0m0s"),
            (3_661_000, "1h1m1s"),
            (90_061_000, "25h1m1s"),
        ];
        for (ms, text) in cases {
            assert_eq!(go_seconds(ms), text, "{ms}");
        }
    }

    #[test]
    fn results_are_the_original_workers() {
        assert_eq!(result_of(Status::Succeeded, Some(0)), "passed");
        assert_eq!(result_of(Status::Failed, Some(1)), "failed");
        assert_eq!(result_of(Status::Failed, Some(2)), "error");
        assert_eq!(result_of(Status::Failed, None), "error");
        assert_eq!(result_of(Status::TimedOut, None), "error");
        assert_eq!(result_of(Status::Dead, None), "error");
        assert_eq!(result_of(Status::Running, None), "unknown");
    }
}
