//! The dashboards' routes over the read models (`aftersales-views`): the ticket list in
//! due order, the SLA dashboard and the alerts.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aftersales_ticket::{Platform, State};
use aftersales_views::{AlertKind, Cursor, ListQuery, SharedViews, SlaQuery};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State as Shared};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{Api, ApiError};

/// The list's page size when none is asked for, and the largest one served.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
pub(crate) struct ListParams {
    state: Option<String>,
    platform: Option<String>,
    due_before: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SlaParams {
    platform: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AlertParams {
    platform: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
}

/// The query's parameters, or a JSON 400 for a query that does not deserialize (a repeated
/// parameter, bytes that are not text) instead of axum's plain-text rejection.
fn params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| bad("bad_query", format!("the query cannot be read: {e}")))
}

fn bad(code: &str, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

pub(crate) fn instant(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.to_utc())
                .map_err(|_| {
                    bad(
                        &format!("bad_{name}"),
                        format!("{name} `{t}` is not an RFC 3339 instant"),
                    )
                })
        })
        .transpose()
}

fn limit(value: Option<&str>) -> Result<usize, ApiError> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(
                    "bad_limit",
                    format!("limit `{l}` is not a whole number from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

fn platform(value: Option<&str>) -> Result<Option<Platform>, ApiError> {
    value
        .map(|p| Platform::from_str(p).map_err(|e| bad("bad_platform", e.to_string())))
        .transpose()
}

fn views(api: &Api) -> Result<SharedViews, ApiError> {
    api.views.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "views_unavailable",
            "the read models are not running in this process",
        )
    })
}

/// How old a dashboard answer may be when served again.
pub const SLA_MAX_AGE: Duration = Duration::from_secs(1);

/// What keeps the read routes responsive under many clients: a bound on blocking work at
/// once (more threads than cores only take turns), and the dashboard's last answers.
#[derive(Debug)]
pub struct Reads {
    permits: Semaphore,
    sla: tokio::sync::Mutex<HashMap<String, (Instant, Value)>>,
}

impl Default for Reads {
    fn default() -> Reads {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Reads {
            permits: Semaphore::new(2 * cores),
            sla: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// Runs blocking work (a read-model scan, a stream read) off the async workers, a few at
/// a time.
pub(crate) async fn blocking<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
    let _permit = api
        .reads
        .permits
        .acquire()
        .await
        .map_err(|e| internal(e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(e.to_string()))
}

async fn query<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&aftersales_views::Views) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let views = views(api)?;
    blocking(api, move || f(&views.read())).await
}

/// `GET /v1/tickets?state=&platform=&due_before=&limit=&cursor=`.
pub(crate) async fn list(
    Shared(api): Shared<Api>,
    p: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = params(p)?;
    let state = p
        .state
        .as_deref()
        .map(|s| State::from_str(s).map_err(|e| bad("bad_state", e)))
        .transpose()?;
    let limit = limit(p.limit.as_deref())?;
    let after = p
        .cursor
        .as_deref()
        .map(|c| Cursor::from_str(c).map_err(|e| bad("bad_cursor", e)))
        .transpose()?;
    let q = ListQuery {
        state,
        platform: platform(p.platform.as_deref())?,
        due_before: instant("due_before", p.due_before.as_deref())?,
        limit,
        after,
    };
    let page = query(&api, move |v| v.list(&q)).await?;
    Ok(Json(json!(page)))
}

/// `GET /v1/dashboard/sla?platform=&from=&to=`: tickets opened in `[from, to)`.
pub(crate) async fn sla(
    Shared(api): Shared<Api>,
    p: Result<Query<SlaParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = params(p)?;
    let q = SlaQuery {
        platform: platform(p.platform.as_deref())?,
        from: instant("from", p.from.as_deref())?,
        to: instant("to", p.to.as_deref())?,
    };
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(bad("bad_range", format!("from {from} is after to {to}")));
        }
    }
    // The dashboard scans every row: one computation per query and second serves every
    // client asking meanwhile (they wait on the lock instead of scanning too).
    let key = format!("{:?}|{:?}|{:?}", q.platform, q.from, q.to);
    let mut cached = api.reads.sla.lock().await;
    if let Some((at, value)) = cached.get(&key) {
        if at.elapsed() < SLA_MAX_AGE {
            return Ok(Json(value.clone()));
        }
    }
    let now = api.clock.now();
    let value = json!(query(&api, move |v| v.sla(&q, now)).await?);
    if cached.len() >= 1024 {
        cached.clear(); // many distinct ranges: keep the cache small rather than clever
    }
    cached.insert(key, (Instant::now(), value.clone()));
    Ok(Json(value))
}

/// `GET /v1/alerts?platform=&kind=&limit=`: the newest alerts first.
pub(crate) async fn alerts(
    Shared(api): Shared<Api>,
    p: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = params(p)?;
    // Alerts carry the platform's name as in ticket ids, so `taobao` is asked as `tmall`.
    let platform = platform(p.platform.as_deref())?.map(|p| p.as_str().to_owned());
    let kind = p
        .kind
        .as_deref()
        .map(|k| AlertKind::from_str(k).map_err(|e| bad("bad_kind", e)))
        .transpose()?;
    let limit = limit(p.limit.as_deref())?;
    let alerts = query(&api, move |v| v.alerts(platform.as_deref(), kind, limit)).await?;
    Ok(Json(json!({ "alerts": alerts })))
}
