//! The client API: `/v1/...` routes, `/metrics`, and the extractors every handler shares.

pub(crate) mod agents;
mod bank;
mod beers;
pub(crate) mod deployments;
pub mod devices;
pub(crate) mod doc;
pub mod jobs;
mod node;
pub(crate) mod runs;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use switchyard_types::ErrorCode;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::node::Node;

/// Shared by every handler.
pub struct AppState {
    pub node: Arc<Node>,
    /// Cancelled on shutdown; long-lived sessions (watches) end with it.
    pub shutdown: CancellationToken,
    pub prometheus: PrometheusHandle,
    /// Ready jobs that lease requests on this node are claiming right now, per queue.
    pub lease_claims: jobs::Claims,
}

pub type Shared = Arc<AppState>;

/// The OpenAPI document of every route, collected from the handlers' annotations.
pub fn openapi() -> serde_json::Value {
    doc::complete(collect().1)
}

fn collect() -> (Router<Shared>, utoipa::openapi::OpenApi) {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("switchyard")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Control-plane server: every change is a command in a Raft log; \
                     every change is an event with a revision.",
                ))
                .build(),
        )
        .build();
    doc.components = Some(utoipa::openapi::Components::new());
    OpenApiRouter::with_openapi(doc)
        .merge(node::routes())
        .merge(bank::routes())
        .merge(beers::routes())
        .merge(devices::routes())
        .merge(jobs::routes())
        .merge(agents::routes())
        .merge(deployments::routes())
        .merge(runs::routes())
        .merge(watch::routes())
        .split_for_parts()
}

/// The API listener's routes besides the /v1 ones: the Altair face's, the dashboard's, and
/// `/openapi.json` serving `doc` with `/docs` showing it.
pub(crate) fn extra_routes(doc: Arc<str>) -> crate::routes::Routes<Shared> {
    crate::faces::altair::routes()
        .merge(crate::dashboard::routes())
        .merge(crate::docs_page::routes(doc))
}

/// The whole client API router.
pub fn router(state: Shared) -> Router {
    let max_body = state.node.config.max_body_bytes;
    let (routes, doc) = collect();
    let doc: Arc<str> = serde_json::to_string_pretty(&doc::complete(doc))
        .expect("the OpenAPI document serialises")
        .into();
    routes
        .merge(extra_routes(doc).into_router())
        .fallback(|| async {
            ApiError::not_found("no such route; see /openapi.json for the routes")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(crate::gate::GateLayer(Metered {
            auth: guard(&state, crate::auth::Style::V1),
            handles: HttpMetrics::default(),
        }))
        .with_state(state)
}

/// The auth guard of a router's gate (`gate::GateLayer`; a pass-through when auth is off).
pub fn guard(state: &Shared, style: crate::auth::Style) -> crate::auth::Guard {
    crate::auth::Guard {
        auth: state.node.config.auth.clone(),
        style,
    }
}

/// The API's gate: the auth check, and every answer (a refusal too) counted and timed per
/// route, method and status.
#[derive(Clone)]
struct Metered {
    auth: crate::auth::Guard,
    handles: HttpMetrics,
}

/// The request metrics' handles, registered once per route, method and status (a lookup in
/// the recorder allocates the labels and hashes them: a few percent of a small GET).
#[derive(Clone, Default)]
struct HttpMetrics(Arc<RwLock<HashMap<Box<str>, Vec<RouteMetrics>>>>);

/// One route's metrics for one method and status.
#[derive(Clone)]
struct RouteMetrics {
    method: axum::http::Method,
    status: u16,
    count: metrics::Counter,
    seconds: metrics::Histogram,
}

impl HttpMetrics {
    fn get(&self, route: &str, method: &axum::http::Method, status: u16) -> RouteMetrics {
        let find = |map: &HashMap<Box<str>, Vec<RouteMetrics>>| {
            map.get(route)?
                .iter()
                .find(|m| m.status == status && m.method == *method)
                .cloned()
        };
        if let Some(m) = find(&self.0.read().unwrap_or_else(|e| e.into_inner())) {
            return m;
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = find(&map) {
            return m;
        }
        let labels = [
            ("route", route.to_owned()),
            ("method", method.as_str().to_owned()),
            ("status", status.to_string()),
        ];
        let m = RouteMetrics {
            method: method.clone(),
            status,
            count: metrics::counter!("switchyard_http_requests_total", &labels),
            seconds: metrics::histogram!("switchyard_http_request_seconds", &labels),
        };
        map.entry(route.into()).or_default().push(m.clone());
        m
    }
}

/// What [`Metered`] keeps of a request.
struct Metering {
    route: Option<MatchedPath>,
    method: axum::http::Method,
    start: Instant,
    handles: HttpMetrics,
}

impl crate::gate::Gate for Metered {
    type Memo = Metering;

    fn admit(&self, req: &Request) -> (Metering, Option<Response>) {
        let memo = Metering {
            route: req.extensions().get::<MatchedPath>().cloned(),
            method: req.method().clone(),
            start: Instant::now(),
            handles: self.handles.clone(),
        };
        (memo, self.auth.refusal(req))
    }

    fn answer(m: Metering, resp: Response) -> crate::gate::Answer {
        let route = m.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let handles = m.handles.get(route, &m.method, resp.status().as_u16());
        handles.count.increment(1);
        handles.seconds.record(m.start.elapsed().as_secs_f64());
        crate::gate::Answer::Now(resp)
    }
}

/// A JSON request body whose errors are JSON `invalid` answers naming the field.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                e.status(),
                crate::error_shape::code_of(e.status()),
                e.body_text(),
            )
        })?;
        parse_json(&bytes).map(Body)
    }
}

/// A request body's content type, when given, must be JSON (415 otherwise).
pub fn json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ok = ct.to_str().is_ok_and(|s| {
        s.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Invalid,
            "Content-Type must be application/json",
        )
        .with_details(serde_json::json!({"field": "Content-Type"})))
    }
}

/// Parse JSON, naming the path of the first bad field in the error.
///
/// A number with no fraction (`3.0`, `1e3`) counts as an integer, as JSON Schema and the
/// API document say; `1.5` for an integer field is still refused.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // A body whose numbers are all integers parses as it is, without a `Value` first (what
    // `integral` would change is not there); the path below decides everything else, and
    // names the field of every error.
    if !has_fraction_or_exponent(bytes)
        && let Ok(parsed) = serde_json::from_slice(bytes)
    {
        return Ok(parsed);
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::invalid("body", e))?;
    integral(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_string(),
            (".", None) => "body".to_string(),
            (p, Some(name)) => format!("{p}.{name}"),
            (p, None) => p.to_string(),
        };
        ApiError::invalid(&field, inner)
    })
}

/// Whether a JSON text has a number written with a fraction or an exponent (`1.0`, `1e3`):
/// outside strings, a `.` or an `e`/`E` after a digit.
fn has_fraction_or_exponent(bytes: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    let mut prev = 0u8;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'.' => return true,
                b'e' | b'E' if prev.is_ascii_digit() => return true,
                _ => {}
            }
        }
        prev = b;
    }
    false
}

/// A JSON number with no fraction and within ±2^53 written with one (`3.0`, `1e3`), as an
/// integer.
pub(crate) fn whole(v: &serde_json::Value) -> Option<i64> {
    v.as_f64()
        .filter(|f| v.is_f64() && f.fract() == 0.0)
        .filter(|f| f.abs() <= switchyard_core::bank::MAX_AMOUNT as f64)
        .map(|f| f as i64)
}

/// Write each number with no fraction and within ±2^53 as an integer.
fn integral(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(_) => {
            if let Some(i) = whole(v) {
                *v = Value::from(i);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral),
        Value::Object(o) => o.values_mut().for_each(integral),
        _ => {}
    }
}

/// A `limit` query parameter: 1 to `max`.
pub fn parse_limit(v: &str, max: usize) -> Result<usize, ApiError> {
    v.parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ApiError::invalid("limit", format!("must be 1 to {max}; got {v:?}")))
}

/// The optional `Idempotency-Key` header, checked.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let max = switchyard_core::idempotency::MAX_KEY_LEN;
        match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Self(Some(s.to_string())))
            }
            _ => Err(ApiError::invalid(
                "Idempotency-Key",
                format!("must be 1 to {max} visible ASCII characters"),
            )),
        }
    }
}

/// How fresh a read must be: `?consistency=linearizable` (the default: the read sees every
/// write acknowledged before it, through the leader's read index) or `?consistency=stale`
/// (this node's applied state as it is, without asking the leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Stale,
}

impl Consistency {
    /// Each value as the query spells it (the API document lists these).
    pub const NAMES: [(&'static str, Self); 2] =
        [("linearizable", Self::Linearizable), ("stale", Self::Stale)];

    /// From a route's query parameters.
    pub fn from_query(q: &std::collections::BTreeMap<String, String>) -> Result<Self, ApiError> {
        let Some(given) = q.get("consistency") else {
            return Ok(Self::Linearizable);
        };
        Self::NAMES
            .iter()
            .find(|(name, _)| name == given)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                ApiError::invalid(
                    "consistency",
                    format!("must be linearizable or stale; got {given:?}"),
                )
            })
    }

    /// Wait until a read at this consistency may look at local state.
    pub async fn ready(self, node: &Node) -> Result<(), ApiError> {
        match self {
            Self::Linearizable => node.linearizable().await.map(drop).map_err(Into::into),
            Self::Stale => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q: std::collections::BTreeMap<String, String> =
            axum::extract::Query::try_from_uri(&parts.uri)
                .map(|axum::extract::Query(q)| q)
                .map_err(|e| ApiError::invalid("query", e.body_text()))?;
        Self::from_query(&q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_or_exponent_is_found_outside_strings_only() {
        for (body, found) in [
            (r#"{"amount": 3}"#, false),
            (
                r#"{"amount": -12, "ok": true, "no": false, "n": null}"#,
                false,
            ),
            (r#"{"amount": 3.0}"#, true),
            (r#"{"amount": 1e3}"#, true),
            (r#"{"amount": 2E1}"#, true),
            (r#"{"text": "1.5 and 1e3", "n": 1}"#, false),
            (r#"{"text": "a \" 1.5 \\", "n": 1}"#, false),
            (r#"{"text": "a \\", "n": 1.5}"#, true),
        ] {
            assert_eq!(has_fraction_or_exponent(body.as_bytes()), found, "{body}");
        }
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Sample {
        n: i64,
        #[serde(default)]
        any: serde_json::Value,
    }

    #[test]
    fn whole_numbers_read_as_integers_on_either_path() {
        let fast: Sample = parse_json(br#"{"n": 3, "any": {"k": [2]}}"#).unwrap();
        let slow: Sample = parse_json(br#"{"n": 3.0, "any": {"k": [2.0]}}"#).unwrap();
        assert_eq!(fast, slow);
        assert!(slow.any["k"][0].is_i64());
        let kept: Sample = parse_json(br#"{"n": 1e1, "any": 2.5}"#).unwrap();
        assert_eq!((kept.n, kept.any.as_f64()), (10, Some(2.5)));
    }

    #[test]
    fn errors_name_the_field_on_either_path() {
        for body in [&br#"{"n": "x"}"#[..], br#"{"n": "x", "any": 1.5}"#] {
            let err = parse_json::<Sample>(body).unwrap_err();
            assert_eq!(
                err.details,
                Some(serde_json::json!({"field": "n"})),
                "{err:?}"
            );
        }
        let err = parse_json::<Sample>(br#"{"any": 1}"#).unwrap_err();
        assert_eq!(
            err.details,
            Some(serde_json::json!({"field": "n"})),
            "{err:?}"
        );
    }
}
