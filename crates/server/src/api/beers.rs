//! `/v1/beers`: the beer-tap app with the project's conventions (cursor pages, filters by tap,
//! glass and time, the shared error body), on the same state as the Altair face.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::json;
use switchyard_core::beers::{BeerCommand, BeerReply};
use switchyard_core::{Command, Reply};
use switchyard_types::{Beer, BeerList, ErrorBody, PourRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Body, Consistency, IdempotencyKey, Shared};
use crate::error::ApiError;

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(pour, list))
        .routes(routes!(get_one, delete))
}

/// Pour a beer; the glass follows from the volume (half 100-300, pint 300-800, stein 800-1000
/// ml, inclusive, first match).
#[utoipa::path(post, path = "/v1/beers", tag = "beers", request_body = PourRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = Beer), (status = 400, description = "invalid: no glass for the volume, or a bad field", body = ErrorBody)))]
async fn pour(
    State(s): State<Shared>,
    IdempotencyKey(key): IdempotencyKey,
    Body(b): Body<PourRequest>,
) -> Result<(StatusCode, Json<Beer>), ApiError> {
    let cmd = Command::Beers(BeerCommand::Pour {
        tap_id: b.tap_id,
        volume: b.volume.to_string(),
    });
    match s.node.write(cmd, key).await? {
        (Reply::Beers(BeerReply::Poured(beer)), _) => Ok((StatusCode::CREATED, Json(beer.v1()))),
        (other, _) => Err(ApiError::internal(format!("pour answered {other:?}"))),
    }
}

fn parse<T: std::str::FromStr>(
    q: &BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| ApiError::invalid(name, format!("must be {what}; got {v:?}")))
        })
        .transpose()
}

fn time_ms(q: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    parse::<jiff::Timestamp>(q, name, "an RFC 3339 time, e.g. 2026-11-23T10:00:00Z")
        .map(|t| t.map(|t| t.as_millisecond()))
}

/// Beers in pour order, `limit` per page (1 to 1000, default 100) after the cursor `after`;
/// filters: `tap`, `type`, `since` and `until` (RFC 3339, inclusive).
#[utoipa::path(get, path = "/v1/beers", tag = "beers",
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 1000), ("after" = Option<u64>, Query), ("tap" = Option<i64>, Query),
        ("type" = Option<String>, Query), ("since" = Option<String>, Query), ("until" = Option<String>, Query),
        ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = BeerList), (status = 400, body = ErrorBody)))]
async fn list(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<BeerList>, ApiError> {
    for k in q.keys() {
        if ![
            "limit",
            "after",
            "tap",
            "type",
            "since",
            "until",
            "consistency",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::invalid(
                k,
                "unknown query parameter; allowed: limit, after, tap, type, since, until, consistency",
            ));
        }
    }
    let limit = parse::<usize>(&q, "limit", "1 to 1000")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to 1000; got {limit}"),
        ));
    }
    let after = parse::<u64>(&q, "after", "a beer id")?;
    let tap = parse::<i64>(&q, "tap", "a tap id")?;
    let glass = q.get("type");
    let glasses = switchyard_core::beers::GLASSES.map(|(name, _, _)| name);
    if let Some(g) = glass.filter(|g| !glasses.contains(&g.as_str())) {
        return Err(ApiError::invalid(
            "type",
            format!("must be one of {}; got {g:?}", glasses.join(", ")),
        ));
    }
    let (since, until) = (time_ms(&q, "since")?, time_ms(&q, "until")?);
    Consistency::from_query(&q)?.ready(&s.node).await?;
    let mut page: Vec<Beer> = s.node.view.read(|st| {
        st.beers
            .all()
            .filter(|b| after.is_none_or(|a| b.id > a))
            .filter(|b| tap.is_none_or(|t| b.tap_id == t))
            .filter(|b| glass.is_none_or(|g| &b.glass == g))
            .filter(|b| {
                since.is_none_or(|t| b.time_ms >= t) && until.is_none_or(|t| b.time_ms <= t)
            })
            .take(limit + 1)
            .map(|b| b.v1())
            .collect()
    });
    let next_after = (page.len() > limit).then(|| page[limit - 1].id);
    page.truncate(limit);
    Ok(Json(BeerList {
        beers: page,
        next_after,
    }))
}

/// One beer.
#[utoipa::path(get, path = "/v1/beers/{id}", tag = "beers", params(("id" = u64, Path), ("consistency" = Option<String>, Query, description = "linearizable (default) or stale")),
    responses((status = 200, body = Beer), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    consistency: Consistency,
) -> Result<Json<Beer>, ApiError> {
    let n: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("beer {id:?} does not exist")))?;
    consistency.ready(&s.node).await?;
    s.node
        .view
        .read(|st| st.beers.get(n).map(|b| b.v1()))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("beer {n} does not exist")))
}

/// Delete a beer (announced to the taps like the original's delete).
#[utoipa::path(delete, path = "/v1/beers/{id}", tag = "beers", params(("id" = u64, Path)),
    responses((status = 200, description = "{\"id\": N, \"deleted\": true}"), (status = 404, body = ErrorBody)))]
async fn delete(
    State(s): State<Shared>,
    Path(id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("beer {id:?} does not exist")))?;
    let cmd = Command::Beers(BeerCommand::Delete {
        id: n,
        announce_missing: false,
    });
    s.node.write(cmd, key).await?;
    Ok(Json(json!({"id": n, "deleted": true})))
}
