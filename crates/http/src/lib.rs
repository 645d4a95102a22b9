//! The HTTP API: the webhook endpoint for sources without NATS (the same adapters and
//! deduplication as the NATS ingest), ticket reads for dashboards and auditors, health and
//! Prometheus metrics. JSON everywhere; every error is `{"error": {"code", "message"}}`
//! with a stable code.
//!
//! This crate must never decide or parse platform formats (it calls `aftersales-ingest`
//! and `aftersales-app`), serve without a token on anything but loopback (the binary checks
//! the address), or log request bodies (they hold personal data).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aftersales_alerts::PublisherStats;
use aftersales_app::{HandleError, Stored, Tickets};
use aftersales_clock::Clock;
use aftersales_ingest::{Outcome, Stats};
use aftersales_scheduler::Scheduler;
use aftersales_store::RecordedEvent;
use aftersales_ticket::{Platform, State, Ticket, TicketId};
use aftersales_views::SharedViews;
use axum::body::{to_bytes, Body};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State as Shared};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

pub mod bench;
pub mod signature;
mod views;

pub use views::{Reads, SLA_MAX_AGE};

pub use signature::WebhookSecrets;

/// Who may call what: read tokens see tickets and metrics; write tokens also post
/// webhooks. No tokens at all: everyone may do everything (the binary then binds to
/// loopback only).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub read: Vec<String>,
    pub write: Vec<String>,
}

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

/// What the API serves from.
#[derive(Clone)]
pub struct Api {
    pub tickets: TicketSource,
    pub scheduler: Option<Arc<Scheduler>>,
    pub ingest: Option<Arc<Stats>>,
    /// The alert publisher's counters, when NATS is configured.
    pub alerts: Option<Arc<PublisherStats>>,
    /// The events stream publisher's counters, when NATS is configured.
    pub events: Option<Arc<PublisherStats>>,
    pub tokens: Tokens,
    /// Set once the service is up (read models built, consumers attached).
    pub ready: Arc<AtomicBool>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Per-platform webhook secrets; a platform without one is accepted unsigned.
    pub secrets: Arc<WebhookSecrets>,
    /// The read models behind the list and the dashboard; `None`: those routes answer 503.
    pub views: Option<SharedViews>,
    /// "Now" for the dashboard's due-within figures.
    pub clock: Arc<dyn Clock>,
    /// Bounds and caches of the read routes; `Default` fits.
    pub reads: Arc<Reads>,
    /// More Prometheus text appended to `/metrics` (a partitioned instance's figures).
    pub extra_metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

/// Where the ticket routes find a ticket.
#[derive(Clone)]
pub enum TicketSource {
    /// One store holds every ticket.
    One(Arc<Tickets>),
    /// A partitioned deployment (docs/PARTITIONS.md): the ticket's partition's handler
    /// if this instance owns it; else its history from the events stream, if given
    /// (otherwise 421 `partition_elsewhere`). Webhooks come through NATS only (POST
    /// answers 421 `partitioned`).
    Partitioned {
        owner: OwnerOf,
        stream: Option<StreamHistory>,
    },
}

/// A partitioned instance's lookup: the handler of a ticket's partition, or why not here.
pub type OwnerOf = Arc<dyn Fn(&TicketId) -> Result<Arc<Tickets>, String> + Send + Sync>;

/// A ticket's records, in order, read from the events stream; or why they cannot be.
pub type StreamHistory = Arc<
    dyn Fn(
            TicketId,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Vec<RecordedEvent>, String>> + Send>,
        > + Send
        + Sync,
>;

impl Api {
    /// The ticket and its history as recorded up to `as_of` (all of it without), from the
    /// store that holds it or from the events stream.
    async fn ticket_history(
        &self,
        id: &TicketId,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<(Ticket, Vec<Stored>), ApiError> {
        let tickets = match &self.tickets {
            TicketSource::One(t) => t.clone(),
            TicketSource::Partitioned { owner, stream } => match (owner(id), stream) {
                (Ok(t), _) => t,
                (Err(_), Some(read)) => return from_stream(read, id, as_of).await,
                (Err(why), None) => {
                    return Err(ApiError::new(
                        StatusCode::MISDIRECTED_REQUEST,
                        "partition_elsewhere",
                        why,
                    ))
                }
            },
        };
        let key = id.clone();
        Ok(views::blocking(self, move || match as_of {
            Some(at) => tickets.load_as_of(&key, at),
            // One read of the stream: the ticket is the fold of the history just read.
            None => tickets.history(&key).map(|h| {
                let ticket = Ticket::replay(h.iter().map(|s| &s.envelope.event));
                (ticket, h)
            }),
        })
        .await??)
    }

    /// The one store's head, when there is one store.
    fn head(&self) -> Option<u64> {
        match &self.tickets {
            TicketSource::One(t) => Some(t.store().head_position()),
            TicketSource::Partitioned { .. } => None,
        }
    }
}

impl Api {
    /// An API over `tickets` alone: no scheduler, ingest, outboxes or read models, no tokens
    /// (loopback only), ready, a 1 MiB body limit, no webhook secrets, the system clock.
    /// Set the rest with struct update syntax: `Api { tokens, ..Api::new(tickets) }`.
    pub fn new(tickets: Arc<Tickets>) -> Api {
        Api {
            tickets: TicketSource::One(tickets),
            scheduler: None,
            ingest: None,
            alerts: None,
            events: None,
            tokens: Tokens::default(),
            ready: Arc::new(AtomicBool::new(true)),
            max_body_bytes: 1 << 20,
            secrets: Arc::default(),
            views: None,
            clock: Arc::new(aftersales_clock::SystemClock),
            reads: Arc::default(),
            extra_metrics: None,
        }
    }
}

/// Requests the API refuses, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<HandleError> for ApiError {
    fn from(e: HandleError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string())
    }
}

/// Every route: method, path, and whether it needs a token. The router is built from this
/// list, and a test holds it equal to the OpenAPI document ([`OPENAPI`]).
pub const ROUTES: [(&str, &str, bool); 10] = [
    ("GET", "/healthz", false),
    ("GET", "/readyz", false),
    ("GET", "/v1/openapi.json", false),
    ("GET", "/metrics", true),
    ("GET", "/v1/tickets", true),
    ("GET", "/v1/tickets/{id}", true),
    ("GET", "/v1/tickets/{id}/events", true),
    ("GET", "/v1/dashboard/sla", true),
    ("GET", "/v1/alerts", true),
    ("POST", "/v1/webhooks/{platform}", true),
];

/// The OpenAPI 3 document of this API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi/openapi.json");

fn handler(path: &str) -> MethodRouter<Api> {
    match path {
        "/healthz" => get(|| async { "ok\n" }),
        "/readyz" => get(readyz),
        "/v1/openapi.json" => {
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) })
        }
        "/metrics" => get(metrics),
        "/v1/tickets" => get(views::list),
        "/v1/tickets/{id}" => get(ticket),
        "/v1/tickets/{id}/events" => get(events),
        "/v1/dashboard/sla" => get(views::sla),
        "/v1/alerts" => get(views::alerts),
        "/v1/webhooks/{platform}" => post(webhook),
        other => unreachable!("ROUTES names {other} without a handler"),
    }
}

/// The routes (see docs/HTTP.md).
pub fn router(api: Api) -> Router {
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for (_, path, needs_token) in ROUTES {
        if needs_token {
            guarded = guarded.route(path, handler(path));
        } else {
            open = open.route(path, handler(path));
        }
    }
    let guarded = guarded.route_layer(middleware::from_fn_with_state(api.clone(), authorize));
    open.merge(guarded)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(api)
}

async fn authorize(
    Shared(api): Shared<Api>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if api.tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "an `Authorization: Bearer <token>` header is required",
            )
        })?;
    let writes = api.tokens.write.iter().any(|t| t == token);
    let reads = writes || api.tokens.read.iter().any(|t| t == token);
    let needs_write = request.method() != Method::GET;
    if (needs_write && !writes) || !reads {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            if reads {
                "this token may read, not write"
            } else {
                "unknown token"
            },
        ));
    }
    Ok(next.run(request).await)
}

async fn readyz(Shared(api): Shared<Api>) -> Response {
    if api.ready.load(Ordering::Acquire) {
        Json(json!({"ready": true})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the service is still starting",
        )
        .into_response()
    }
}

/// A ticket's history from the events stream (a partitioned instance that does not own
/// its partition): the same records the owner's store holds, folded the same way.
async fn from_stream(
    read: &StreamHistory,
    id: &TicketId,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Ticket, Vec<Stored>), ApiError> {
    let records = read(id.clone())
        .await
        .map_err(|why| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "events_stream", why))?;
    let history: Vec<Stored> = records
        .into_iter()
        .filter(|r| as_of.is_none_or(|at| r.recorded_at <= at))
        .map(aftersales_app::read_record)
        .collect::<Result<_, _>>()?;
    let ticket = Ticket::replay(history.iter().map(|s| &s.envelope.event));
    Ok((ticket, history))
}

fn ticket_id(id: Result<Path<String>, PathRejection>) -> Result<TicketId, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_ticket_id", message);
    // A segment that does not decode to UTF-8 (`%FF`) is refused like any other bad id,
    // as JSON, not with axum's plain-text rejection.
    let Path(id) = id.map_err(|e| bad(format!("the ticket id is not text: {e}")))?;
    TicketId::parse(&id).map_err(|e| bad(e.to_string()))
}

#[derive(Deserialize)]
struct AsOf {
    as_of: Option<String>,
}

async fn ticket(
    Shared(api): Shared<Api>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = ticket_id(id)?;
    // The only query parameter read is `as_of`: a query that does not deserialize (a
    // repeated `as_of`) is a bad `as_of`, answered as JSON.
    let Query(q) = q.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_as_of",
            format!("the query is not one `as_of`: {e}"),
        )
    })?;
    let as_of = views::instant("as_of", q.as_of.as_deref())?;
    let (ticket, history) = api.ticket_history(&id, as_of).await?;
    if history.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ticket_not_found",
            format!(
                "ticket {id} has no events{}",
                if as_of.is_some() { " as of then" } else { "" }
            ),
        ));
    }
    // Open deadlines are today's; an as-of view shows the state only. The read models have
    // them without taking the scheduler's lock; without them, ask the scheduler.
    let row = |v: &SharedViews| {
        v.read().row(&id).map(|r| {
            r.open_deadlines
                .iter()
                .map(|d| json!({"kind": d.kind, "due_at": d.due_at, "rule": d.rule}))
                .collect::<Vec<_>>()
        })
    };
    let deadlines = match (&api.views, &api.scheduler, as_of) {
        (_, _, Some(_)) => Vec::new(),
        (Some(v), _, None) => row(v).unwrap_or_default(),
        (None, Some(s), None) => s
            .armed(&id)
            .iter()
            .map(|d| json!({"kind": d.deadline.kind, "due_at": d.deadline.due_at, "rule": d.deadline.rule_id}))
            .collect(),
        (None, None, None) => Vec::new(),
    };
    Ok(Json(json!({
        "id": id,
        "state": ticket.state().map(State::as_str),
        "ticket": ticket,
        "open_deadlines": deadlines,
        "version": history.last().map(|s| s.version),
        "as_of": as_of,
    })))
}

async fn events(
    Shared(api): Shared<Api>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = ticket_id(id)?;
    let (_, history) = api.ticket_history(&id, None).await?;
    if history.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ticket_not_found",
            format!("ticket {id} has no events"),
        ));
    }
    Ok(Json(json!({
        "id": id,
        "events": history.iter().map(|s| json!({
            "position": s.position,
            "version": s.version,
            "envelope": s.envelope,
        })).collect::<Vec<_>>(),
    })))
}

async fn webhook(
    Shared(api): Shared<Api>,
    platform: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let unknown =
        |message: String| ApiError::new(StatusCode::NOT_FOUND, "unknown_platform", message);
    // A name that does not decode to UTF-8 (`%FF`) names no platform either.
    let Path(platform) = platform.map_err(|e| unknown(format!("the platform is not text: {e}")))?;
    let platform = Platform::from_str(&platform).map_err(|e| unknown(e.to_string()))?;
    let body = to_bytes(body, api.max_body_bytes).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body exceeds {} bytes", api.max_body_bytes),
        )
    })?;
    // Before the adapters parse it: an unsigned or forged push stores nothing.
    if let Err(e) = api.secrets.verify(&platform, &headers, &body) {
        tracing::warn!(
            platform = platform.as_str(),
            code = e.code(),
            "webhook refused: {e}"
        );
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            e.code(),
            e.to_string(),
        ));
    }
    let TicketSource::One(tickets) = api.tickets.clone() else {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "partitioned",
            "this deployment is partitioned: publish webhooks to NATS on \
             aftersales.webhooks.<platform>.<partition> (docs/PARTITIONS.md)",
        ));
    };
    let outcome =
        tokio::task::spawn_blocking(move || aftersales_ingest::apply(&tickets, &platform, &body))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
    match outcome {
        Outcome::Stored {
            applied,
            duplicates,
            ..
        } => Ok(Json(json!({"stored": applied, "duplicates": duplicates}))),
        Outcome::Unusable(u) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            u.code(),
            u.to_string(),
        )),
        // The sender should retry later: its ticket may not exist yet (platforms reorder).
        Outcome::Refused {
            ticket,
            rejection,
            parkable: true,
        } => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("refused_{}", rejection.code()),
            format!("ticket {ticket}: {rejection}; retry later"),
        )),
        Outcome::Refused {
            ticket, rejection, ..
        } => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("refused_{}", rejection.code()),
            format!("ticket {ticket}: {rejection}"),
        )),
        Outcome::Failed(e) | Outcome::StoreDown(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e,
        )),
    }
}

async fn metrics(Shared(api): Shared<Api>) -> impl IntoResponse {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    if let Some(head) = api.head() {
        gauge(
            &mut out,
            "aftersales_events_stored",
            "Events in the log (its head position).",
            "gauge",
            head,
        );
    }
    if let Some(s) = &api.scheduler {
        gauge(
            &mut out,
            "aftersales_deadlines_open",
            "Armed deadlines not yet fired.",
            "gauge",
            s.armed_count() as u64,
        );
    }
    if let Some(views) = &api.views {
        let v = views.read();
        if let Some(head) = api.head() {
            gauge(
                &mut out,
                "aftersales_read_model_lag_events",
                "Events in the log the read models have not folded in yet.",
                "gauge",
                head.saturating_sub(v.position()),
            );
        }
        gauge(
            &mut out,
            "aftersales_tickets",
            "Tickets in the read models.",
            "gauge",
            v.ticket_count() as u64,
        );
        out.push_str(
            "# HELP aftersales_deadlines_breached_total Deadlines missed (expired, or met only \
             after the due time), by platform and kind.\n# TYPE aftersales_deadlines_breached_total counter\n",
        );
        for ((platform, kind), n) in v.breaches() {
            out.push_str(&format!(
                "aftersales_deadlines_breached_total{{platform=\"{platform}\",kind=\"{kind}\"}} {n}\n"
            ));
        }
    }
    if let Some(st) = &api.ingest {
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "aftersales_ingest_received_total",
            "Messages received from NATS.",
            "counter",
            c(&st.received),
        );
        gauge(
            &mut out,
            "aftersales_ingest_stored_total",
            "Messages stored (or found stored).",
            "counter",
            c(&st.stored),
        );
        gauge(
            &mut out,
            "aftersales_ingest_redelivered_total",
            "Messages found stored already.",
            "counter",
            c(&st.duplicates),
        );
        gauge(
            &mut out,
            "aftersales_ingest_retried_total",
            "Messages parked or retried.",
            "counter",
            c(&st.retried),
        );
        gauge(
            &mut out,
            "aftersales_dead_letters_total",
            "Messages dead-lettered.",
            "counter",
            c(&st.dead_lettered),
        );
        gauge(
            &mut out,
            "aftersales_ingest_pending_messages",
            "Ingest lag: webhooks the broker still holds for the consumer (as of the last one settled).",
            "gauge",
            c(&st.pending),
        );
        gauge(
            &mut out,
            "aftersales_ingest_last_message_age_milliseconds",
            "Ingest lag: how long the last settled webhook waited since it was published.",
            "gauge",
            c(&st.last_age_ms),
        );
    }
    let head = api.head().unwrap_or(0);
    let outboxes = [
        (&api.alerts, "alerts", "Deadline warnings and expiries"),
        (&api.events, "events", "Committed events"),
    ];
    for (stats, name, what) in outboxes {
        let Some(a) = stats else { continue };
        gauge(
            &mut out,
            &format!("aftersales_{name}_published_total"),
            &format!("{what} published to NATS."),
            "counter",
            a.published.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            &format!("aftersales_{name}_failures_total"),
            &format!("{what}: publications the broker did not store (retried)."),
            "counter",
            a.failures.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            &format!("aftersales_{name}_lag_events"),
            &format!("Events in the log the {name} publisher has not handled yet."),
            "gauge",
            head.saturating_sub(a.cursor.load(Ordering::Relaxed)),
        );
    }
    if let Some(extra) = &api.extra_metrics {
        out.push_str(&extra());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Whether serving on `addr` without tokens is allowed (loopback only).
pub fn open_is_allowed(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
