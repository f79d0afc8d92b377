//! A listener's OpenAPI document at `/openapi.json` and the same as a page to read at `/docs`:
//! one HTML file compiled into the binary that renders the document in the browser. It loads
//! nothing from anywhere else (no CDN, no fonts): the page and its script are the file.

use std::sync::Arc;

use axum::http::header;

use crate::routes::Routes;

const PAGE: &str = include_str!("../assets/docs.html");

/// `/openapi.json` serving `doc`, and `/docs`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(doc: Arc<str>) -> Routes<S> {
    Routes::new()
        .get("/openapi.json", move || {
            let doc = doc.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.to_string(),
                )
            }
        })
        .get("/docs", || async {
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                PAGE,
            )
        })
}

/// The two routes above as a document's path items, for every listener's document.
pub(crate) fn paths() -> serde_json::Map<String, serde_json::Value> {
    let v = serde_json::json!({
        "/openapi.json": {"get": {
            "tags": ["docs"], "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "The OpenAPI document",
                "content": {"application/json": {"schema": {"type": "object"}}}}}
        }},
        "/docs": {"get": {
            "tags": ["docs"], "operationId": "docs",
            "summary": "This document as a page to read (compiled into the binary; it loads nothing from elsewhere).",
            "responses": {"200": {"description": "An HTML page",
                "content": {"text/html": {"schema": {"type": "string"}}}}}
        }}
    });
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a JSON object"),
    }
}
