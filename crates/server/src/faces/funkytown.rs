//! The seed-004 face: funkytown's reporter (`--funkytown-listen`, port 3000 by the original).
//!
//! `GET /health` answers 200; `GET /results` is the original's HTML page: the run metadata
//! (tasks remaining, tasks finished, finished) and a row per task with its result (`passed`,
//! `failed`, `unknown` until it ends), status (`waiting`, `processing`, `complete`), spec,
//! viewport, browser and duration (Go's duration format). It shows the newest run, or
//! `?run=ID`. Differences from the original, on purpose: with no run yet it answers 404 with a
//! short page instead of a 500; a cancelled cell's result is `unknown` (the original had no
//! cancel); cells of a matrix without spec, viewport or browser dimensions show their other
//! values under Spec.

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
        .get("/health", || async { StatusCode::OK })
        .get("/results", results)
}

pub fn router(s: Shared) -> Router {
    let guard = crate::api::guard(&s, crate::auth::Style::Text);
    routes()
        .into_router()
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::auth::check,
        ))
        .with_state(s)
}

#[derive(Deserialize)]
struct Which {
    run: Option<u64>,
}

/// Go's `time.Duration` text for a number of milliseconds: `0s`, `850ms`, `1.25s`, `2m5s`.
pub fn go_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = |ms: i64| {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        s.trim_end_matches('0').trim_end_matches('.').to_string() + "s"
    };
    if ms < 60_000 {
        return secs(ms);
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    if h > 0 {
        format!("{h}h{m}m{}", secs(rest))
    } else {
        format!("{m}m{}", secs(rest))
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

fn page(run: &Run, now_ms: i64) -> String {
    let total = run.cells.len() as u32;
    let finished = run.ended();
    let mut rows = String::new();
    for (spec, cell) in run.spec.cells.iter().zip(&run.cells) {
        let status = match cell.status {
            Status::Queued => "waiting",
            Status::Running => "processing",
            _ => "complete",
        };
        let result = match cell.status {
            Status::Succeeded => "passed",
            Status::Failed | Status::TimedOut | Status::Dead => "failed",
            _ => "unknown",
        };
        let duration = match (cell.started_ms, cell.finished_ms) {
            (Some(s), Some(f)) => go_duration(f - s),
            (Some(s), None) => go_duration(now_ms - s),
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
    let now = s.node.now_ms();
    let html = s.node.view.read(|st| {
        let run = match w.run {
            Some(id) => st.runs.get(id),
            None => st.runs.iter().next_back(),
        };
        run.map(|r| page(r, now))
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
    #[test]
    fn durations_read_as_go_prints_them() {
        let cases = [
            (0, "0s"),
            (850, "850ms"),
            (1000, "1s"),
            (1250, "1.25s"),
            (125_000, "2m5s"),
            (3_725_500, "1h2m5.5s"),
        ];
        for (ms, text) in cases {
            assert_eq!(super::go_duration(ms), text);
        }
    }
}
