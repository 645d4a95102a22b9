//! `aftersales bench api`: what the dashboards' queries cost over HTTP with many tickets
//! loaded, and how fast the read models are rebuilt from the log.
//!
//! One run, in a fresh store under a scratch directory (the store's defaults,
//! `fsync_after_flush` on, records stamped by the system clock):
//!
//! - **load**: N tickets go through [`Tickets::handle`] from 64 threads (one durable
//!   append per command, so group commit is used), over the five platforms and five
//!   service types, opened at platform times spread over the 30 days before a fixed
//!   instant ([`NOW`]); about half are moved on (approved, settled, rejected, asked,
//!   withdrawn, disputed) a few minutes to three days apart, so reviews are met or missed.
//!   Every ticket follows a fixed plan ([`Plan`]), so the expected figures are known.
//! - **replay**: [`Views`] rebuilt from position 1 ([`catch_up`] on a fresh model), next to
//!   a raw [`Store::iter_all`] scan with no decoding (the limit); memory is the growth of
//!   the resident set (`VmRSS`) across the rebuild, per ticket. The scan runs twice first,
//!   so sled's page cache is warm and not counted. The model served below is built again
//!   by [`SharedViews::open`] (as `serve` does without a checkpoint) and must have the
//!   replay's digest.
//! - **queries**: the real [`router`] on 127.0.0.1 (no tokens, clock fixed at [`NOW`], no
//!   scheduler), C client tasks with one keep-alive HTTP/1.1 connection each (a minimal
//!   client on tokio's `TcpStream`, in a runtime of its own), S seconds per query kind.
//!   Rate = responses completed within the S seconds / S; latency = request written to
//!   response read, for every response (those in flight at the end are awaited).
//!   `GET /healthz` under the same clients is the limit (the HTTP stack's own cost). Each
//!   query is also timed as a direct call in the process (the query plus its JSON), which
//!   says what the HTTP figures are made of.
//!
//! Correctness is checked where it is cheap, so a broken query cannot give pretty
//! numbers: every row has its plan's state; the dashboard counts N tickets without a
//! filter, the plan's count per platform, per state and in the date range; paging the
//! `state=` list visits every such ticket once, in due order; and every response of the
//! timed runs is compared with what the model answers in process (byte for byte for the
//! list and the dashboard, id and state for a ticket). A mismatch counts as an error.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aftersales_app::{Submission, Tickets};
use aftersales_clock::{Clock, ManualClock, SystemClock};
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::{
    Actor, Command, CustomerId, Disposal, Money, NewTicket, Note, OrderId, OrderLineId, Platform,
    PlatformTicketId, Reason, ReturnMethod, ServiceType, Sku, State, TicketId, Timestamp, Waybill,
};
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::{catch_up, ListQuery, SharedViews, SlaQuery, Views};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;

use crate::{router, Api};

/// The fixed "now" of the run: platform times lie in the 30 days before it, and the
/// dashboard's clock stands at it.
pub const NOW: &str = "2026-11-30T12:00:00+08:00";

/// How far back tickets are opened.
const SPREAD_SECS: i64 = 30 * 86_400;

/// Page size of the list queries.
const PAGE: usize = 50;

/// Cursors the paged list query picks from.
const CURSORS: usize = 64;

/// The state the paged list query filters on.
const PAGED_STATE: State = State::AwaitingReturn;

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
#[error("the API benchmark could not {action}: {reason}")]
pub struct BenchError {
    pub action: &'static str,
    pub reason: String,
}

fn fail<E: fmt::Display>(action: &'static str) -> impl FnOnce(E) -> BenchError {
    move |e| BenchError {
        action,
        reason: e.to_string(),
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), BenchError> {
    if ok {
        Ok(())
    } else {
        Err(BenchError {
            action: "check the answers",
            reason: what(),
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Tickets loaded (N).
    pub tickets: usize,
    /// Concurrent HTTP clients, one keep-alive connection each (C).
    pub clients: usize,
    /// How long each query kind is driven (S).
    pub seconds: Duration,
    /// Threads loading the tickets.
    pub fill_threads: usize,
    /// Where the scratch store goes (default: the OS temp dir).
    pub dir: Option<PathBuf>,
}

impl BenchConfig {
    /// The full run: 1,000,000 tickets, 200 clients, 10 s per query kind.
    pub fn full() -> BenchConfig {
        BenchConfig {
            tickets: 1_000_000,
            clients: 200,
            seconds: Duration::from_secs(10),
            fill_threads: 64,
            dir: None,
        }
    }

    /// The CI run: 20,000 tickets, 50 clients, 2 s per query kind.
    pub fn quick() -> BenchConfig {
        BenchConfig {
            tickets: 20_000,
            clients: 50,
            seconds: Duration::from_secs(2),
            ..BenchConfig::full()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tickets: a fixed plan per ticket number.

/// What happens to a ticket after it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Course {
    Pending,
    Approved,
    /// Carried to its disposal (refund, exchange, repair done).
    Settled,
    Rejected,
    AskedCustomer,
    Withdrawn,
    Disputed,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(n: usize, salt: u64) -> u64 {
    splitmix64((n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt.wrapping_mul(0x9E37_79B9))
}

fn platform(n: usize) -> Platform {
    match n % 5 {
        0 => Platform::Jd,
        1 => Platform::Tmall,
        2 => Platform::Pdd,
        3 => Platform::Kuaishou,
        _ => Platform::Douyin,
    }
}

fn ticket_id(n: usize) -> TicketId {
    TicketId::for_platform(&platform(n), &n.to_string()).expect("digits make a valid id")
}

fn fixed_now() -> Timestamp {
    DateTime::parse_from_rfc3339(NOW).expect("NOW is RFC 3339")
}

/// Ticket `n`'s platform, service type, course and times.
#[derive(Debug, Clone)]
struct Plan {
    n: usize,
    platform: Platform,
    service: ServiceType,
    reason: Reason,
    course: Course,
    cents: u64,
    opened_at: Timestamp,
    /// Platform time between two steps.
    gap: chrono::Duration,
}

impl Plan {
    fn new(n: usize, now: Timestamp) -> Plan {
        let service = match mix(n, 1) % 20 {
            0..=9 => ServiceType::ReturnRefund,
            10..=13 => ServiceType::RefundOnly,
            14..=16 => ServiceType::Exchange,
            17..=18 => ServiceType::RepairSendIn,
            _ => ServiceType::RepairOnsite,
        };
        let course = match mix(n, 2) % 100 {
            0..=24 => Course::Approved,
            25..=34 => Course::Settled,
            35..=39 => Course::Rejected,
            40..=43 => Course::AskedCustomer,
            44..=46 => Course::Withdrawn,
            47..=48 => Course::Disputed,
            _ => Course::Pending,
        };
        let reason = match mix(n, 5) % 4 {
            0 => Reason::QualityProblem,
            1 => Reason::NotAsDescribed,
            2 => Reason::WrongOrMissingItem,
            _ => Reason::DamagedInTransit,
        };
        let min_age = 2 * 3600;
        let age = min_age + (mix(n, 3) % (SPREAD_SECS - min_age) as u64) as i64;
        let mut plan = Plan {
            n,
            platform: platform(n),
            service,
            reason,
            course,
            cents: 1_000 + mix(n, 6) % 50_000,
            opened_at: now - chrono::Duration::seconds(age),
            gap: chrono::Duration::zero(),
        };
        // Ten minutes to three days between steps (so some reviews come late), all before
        // `now`.
        let steps = plan.steps().len() as i64;
        let gap = (600 + (mix(n, 4) % (72 * 3600)) as i64).min(age / (steps + 1));
        plan.gap = chrono::Duration::seconds(gap);
        plan
    }

    fn new_ticket(&self) -> NewTicket {
        let n = self.n;
        NewTicket {
            id: ticket_id(n),
            platform: self.platform.clone(),
            platform_ticket_id: PlatformTicketId::parse(&n.to_string()).expect("digits"),
            order_id: OrderId::parse(&format!("O-{n}")).expect("valid"),
            order_line_id: OrderLineId::parse(&format!("O-{n}-1")).expect("valid"),
            sku: Some(Sku::parse(&format!("SKU-{}", n % 97)).expect("valid")),
            amount_paid: Money::from_cents(self.cents),
            refund_requested: None,
            customer_id: Some(CustomerId::parse(&format!("c-{n}")).expect("valid")),
            service_type: self.service,
            reason: self.reason,
            signed_for_at: None,
            order_shipped: None,
        }
    }

    /// The commands after the opening, in order.
    fn steps(&self) -> Vec<(Actor, Command)> {
        let approve = (
            Actor::Merchant,
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
        );
        let ship = (
            Actor::Customer,
            Command::RecordReturnShipment {
                waybill: Some(Waybill::parse(&format!("SF{}", self.n)).expect("valid")),
            },
        );
        let receive = (Actor::Merchant, Command::ConfirmReceipt);
        let dispose = |disposal| (Actor::Merchant, Command::Dispose { disposal });
        let paid = Money::from_cents(self.cents);
        let note = |s: &str| Some(Note::parse(s).expect("not empty"));
        match self.course {
            Course::Pending => vec![],
            Course::Approved => vec![approve],
            Course::Settled => match self.service {
                ServiceType::ReturnRefund => vec![
                    approve,
                    ship,
                    receive,
                    dispose(Disposal::Refund {
                        amount: paid,
                        return_shipping: Money::ZERO,
                        customer_consent: None,
                    }),
                ],
                ServiceType::RefundOnly => vec![dispose(Disposal::RefundWithoutReturn {
                    amount: paid,
                    customer_consent: None,
                })],
                ServiceType::Exchange => vec![
                    approve,
                    ship,
                    receive,
                    dispose(Disposal::Exchange {
                        replacement_sku: None,
                        customer_consent: None,
                    }),
                ],
                ServiceType::RepairSendIn => vec![
                    approve,
                    ship,
                    receive,
                    dispose(Disposal::RepairDone {
                        customer_consent: None,
                    }),
                ],
                ServiceType::RepairOnsite => vec![
                    approve,
                    dispose(Disposal::RepairDone {
                        customer_consent: None,
                    }),
                ],
            },
            Course::Rejected => vec![(
                Actor::Merchant,
                Command::Reject {
                    reason: note("not covered: damage by use"),
                },
            )],
            Course::AskedCustomer => vec![(Actor::Merchant, Command::AskCustomer { note: None })],
            Course::Withdrawn => vec![(
                Actor::Customer,
                Command::Withdraw {
                    confirmation: note("customer confirmed by phone"),
                },
            )],
            Course::Disputed => vec![(Actor::Customer, Command::RequestIntervention)],
        }
    }

    /// The state the ticket ends in.
    fn state(&self) -> State {
        use ServiceType::*;
        match (self.course, self.service) {
            (Course::Pending, _) => State::PendingReview,
            (Course::Approved, RepairOnsite) => State::InRepair,
            (Course::Approved, RefundOnly) => State::Completed,
            (Course::Approved, _) => State::AwaitingReturn,
            (Course::Settled, ReturnRefund) => State::Refunded,
            (Course::Settled, Exchange) => State::Exchanged,
            (Course::Settled, _) => State::Completed,
            (Course::Rejected, _) => State::Rejected,
            (Course::AskedCustomer, _) => State::AwaitingCustomer,
            (Course::Withdrawn, _) => State::ClosedByCustomer,
            (Course::Disputed, _) => State::InDispute,
        }
    }

    /// Every submission of the ticket, the opening first.
    fn submissions(&self) -> Vec<Submission> {
        let id = ticket_id(self.n);
        let open = (
            Actor::Customer,
            Command::Open {
                ticket: Box::new(self.new_ticket()),
            },
        );
        std::iter::once(open)
            .chain(self.steps())
            .enumerate()
            .map(|(i, (actor, command))| Submission {
                ticket_id: id.clone(),
                command,
                at: self.opened_at + self.gap * i as i32,
                actor,
                idempotency_key: Some(format!("{}/bench-{}-{i}", self.platform, self.n)),
                causation_id: None,
            })
            .collect()
    }
}

/// What the plans say the model must show.
#[derive(Debug, Default)]
struct Expected {
    by_state: BTreeMap<State, u64>,
    jd: u64,
    in_range: u64,
}

// ---------------------------------------------------------------------------------------
// The report.

/// Loading the tickets.
#[derive(Debug, Clone)]
pub struct LoadCase {
    pub tickets: usize,
    pub commands: u64,
    pub events: u64,
    pub elapsed: Duration,
    pub by_state: BTreeMap<State, u64>,
}

/// Rebuilding the read models next to a raw scan.
#[derive(Debug, Clone)]
pub struct ReplayCase {
    pub records: u64,
    pub log_bytes: u64,
    pub raw_scan: Duration,
    pub replay: Duration,
    pub tickets: usize,
    /// Resident-set growth across the rebuild (`None` where `/proc` is missing).
    pub rss_growth: Option<u64>,
    /// `SharedViews::open` building the served model again.
    pub open: Duration,
}

/// One query kind under C clients.
#[derive(Debug, Clone)]
pub struct QueryCase {
    pub name: String,
    /// Responses received (every request gets one, or counts as a connection error).
    pub requests: u64,
    /// From the start to the last response: the clients stop sending after S seconds and
    /// wait for the responses in flight.
    pub elapsed: Duration,
    /// Body bytes of the 200 responses.
    pub body_bytes: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Responses other than 200.
    pub non_200: u64,
    /// 200 responses that differ from the model's own answer.
    pub mismatched: u64,
    /// Connections that failed mid-request.
    pub io_errors: u64,
    pub first_error: Option<String>,
    /// The query and its JSON as a direct call in the process, single-threaded, per call.
    pub direct: Option<Duration>,
}

impl QueryCase {
    pub fn rate(&self) -> f64 {
        per_sec(self.requests as f64, self.elapsed)
    }

    pub fn errors(&self) -> u64 {
        self.non_200 + self.mismatched + self.io_errors
    }
}

/// Everything measured in one run; `Display` prints it.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub cpus: usize,
    pub load: LoadCase,
    pub replay: ReplayCase,
    /// The raw limit: `GET /healthz`.
    pub health: QueryCase,
    pub queries: Vec<QueryCase>,
    /// Cursors the paged list query picks from.
    pub cursors: usize,
    /// What the correctness checks saw.
    pub checks: Vec<String>,
}

impl BenchReport {
    /// Whether any response was an error or differed from the model's answer.
    pub fn failed(&self) -> bool {
        std::iter::once(&self.health)
            .chain(&self.queries)
            .any(|q| q.errors() > 0)
    }
}

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn short(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", ms(d))
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, r, c) = (&self.load, &self.replay, &self.config);
        writeln!(
            f,
            "api benchmark, {} CPUs: {} tickets, {} clients, {} s per query",
            self.cpus,
            c.tickets,
            c.clients,
            c.seconds.as_secs_f64()
        )?;
        writeln!(
            f,
            "load: {} tickets ({} commands, {} events) through Tickets::handle in {:.1} s: {:.0} tickets/s, {:.0} commands/s ({} threads)",
            l.tickets,
            l.commands,
            l.events,
            l.elapsed.as_secs_f64(),
            per_sec(l.tickets as f64, l.elapsed),
            per_sec(l.commands as f64, l.elapsed),
            c.fill_threads
        )?;
        let states: Vec<String> = l
            .by_state
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
        writeln!(f, "  states: {}", states.join(", "))?;
        writeln!(
            f,
            "replay: {} events in {:.2} s ({:.0} events/s) | raw scan {:.2} s ({:.0} events/s, {:.1} MiB) ratio {:.1}x",
            r.records,
            r.replay.as_secs_f64(),
            per_sec(r.records as f64, r.replay),
            r.raw_scan.as_secs_f64(),
            per_sec(r.records as f64, r.raw_scan),
            mib(r.log_bytes),
            r.replay.as_secs_f64() / r.raw_scan.as_secs_f64().max(1e-9)
        )?;
        match r.rss_growth {
            Some(bytes) => writeln!(
                f,
                "  memory: {:.0} B per ticket (RSS growth {:.1} MiB over the replay, {} tickets)",
                bytes as f64 / r.tickets.max(1) as f64,
                mib(bytes),
                r.tickets
            )?,
            None => writeln!(f, "  memory: not measured (no /proc/self/status)")?,
        }
        writeln!(
            f,
            "  served model: SharedViews::open (no checkpoint) {:.2} s, same digest as the replay",
            r.open.as_secs_f64()
        )?;
        writeln!(
            f,
            "queries: {} keep-alive HTTP/1.1 clients, {:.0} s each (then the responses in flight are awaited: \
             req/s = responses / time to the last); ratio = req/s over GET /healthz's; \
             direct = the query and its JSON called in process, 1 thread",
            c.clients,
            c.seconds.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {:<56} {:>9} {:>7} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6}  direct",
            "query",
            "responses",
            "body B",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "ratio"
        )?;
        let health = self.health.rate();
        for q in std::iter::once(&self.health).chain(&self.queries) {
            let ratio = if std::ptr::eq(q, &self.health) {
                "raw".to_owned()
            } else {
                let r = q.rate() / health.max(1e-9);
                if r < 0.01 {
                    format!("{r:.4}")
                } else {
                    format!("{r:.3}")
                }
            };
            write!(
                f,
                "  {:<56} {:>9} {:>7} {:>8.0} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>6}",
                q.name,
                q.requests,
                q.body_bytes / q.requests.max(1),
                q.rate(),
                ms(q.p50),
                ms(q.p99),
                ms(q.max),
                q.errors(),
                ratio
            )?;
            match q.direct {
                Some(d) => writeln!(
                    f,
                    "  {} (≤ {:.0}/s on {} CPUs)",
                    short(d),
                    self.cpus as f64 / d.as_secs_f64().max(1e-9),
                    self.cpus
                )?,
                None => writeln!(f)?,
            }
            if q.errors() > 0 {
                writeln!(
                    f,
                    "    !! {} non-200, {} differing from the model, {} connection errors; first: {}",
                    q.non_200,
                    q.mismatched,
                    q.io_errors,
                    q.first_error.as_deref().unwrap_or("?")
                )?;
            }
        }
        writeln!(
            f,
            "  ({{id}}: a random ticket of the {}; cursor: {} cursors spread over the order; from/to: the 7 days before {NOW})",
            c.tickets, self.cursors
        )?;
        for line in &self.checks {
            writeln!(f, "check: {line}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The run.

/// Runs the load, the replay and the queries.
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let parent = config.dir.clone().unwrap_or_else(std::env::temp_dir);
    let nanos = SystemClock.now().timestamp_subsec_nanos();
    let dir = parent.join(format!(
        "aftersales-api-bench-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError {
        action: "create its scratch directory",
        reason: format!("{}: {e}", dir.display()),
    })?;
    let result = run_in(config, &dir);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove the benchmark directory");
    }
    result
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn run_in(config: &BenchConfig, dir: &Path) -> Result<BenchReport, BenchError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let now = fixed_now();
    let now_utc = now.to_utc();
    let store = Arc::new(
        Store::open(dir.join("store"), StoreConfig::new(Arc::new(SystemClock)))
            .map_err(fail("open its store"))?,
    );
    let book = RuleBook::builtin();
    let tickets = Arc::new(
        Tickets::new(Arc::clone(&store))
            .map_err(fail("open the command handler"))?
            .with_rule_packs(Arc::new(move |p| book.pack_for(p).map(|p| p.id.clone()))),
    );

    // Load.
    let (load_time, commands) = load(&tickets, config.tickets, config.fill_threads, now)?;
    let range = (now_utc - chrono::Duration::days(7), now_utc);
    let mut expected = Expected::default();
    for n in 0..config.tickets {
        let plan = Plan::new(n, now);
        *expected.by_state.entry(plan.state()).or_default() += 1;
        expected.jd += u64::from(plan.platform == Platform::Jd);
        let opened = plan.opened_at.to_utc();
        expected.in_range += u64::from(opened >= range.0 && opened < range.1);
    }
    let load = LoadCase {
        tickets: config.tickets,
        commands,
        events: store.head_position(),
        elapsed: load_time,
        by_state: expected.by_state.clone(),
    };

    // Replay, next to a raw scan (run twice: the first warms sled's cache).
    let mut raw = (Duration::ZERO, 0u64, 0u64);
    for _ in 0..2 {
        let started = Instant::now();
        let (mut records, mut bytes) = (0u64, 0u64);
        for record in store.iter_all(1) {
            let record = record.map_err(fail("scan the log"))?;
            records += 1;
            bytes += record.payload.len() as u64;
        }
        raw = (started.elapsed(), records, bytes);
    }
    let rss_before = resident_bytes();
    let started = Instant::now();
    let mut views = Views::new(RuleBook::builtin(), Calendar::builtin());
    let folded = catch_up(&mut views, &store).map_err(fail("replay the log"))?;
    let replay_time = started.elapsed();
    let rss_after = resident_bytes();
    check(folded == raw.1, || {
        format!("the replay folded {folded} events, the log holds {}", raw.1)
    })?;
    let digest = views.digest();
    let replayed_tickets = views.ticket_count();
    drop(views);

    let started = Instant::now();
    let (shared, _) = SharedViews::open(
        Arc::clone(&store),
        dir.join("views.checkpoint.json"),
        RuleBook::builtin(),
        Calendar::builtin(),
    )
    .map_err(fail("open the read models"))?;
    let open_time = started.elapsed();
    check(shared.read().digest() == digest, || {
        "the served model's digest differs from the replay's".into()
    })?;
    let replay = ReplayCase {
        records: raw.1,
        log_bytes: raw.2,
        raw_scan: raw.0,
        replay: replay_time,
        tickets: replayed_tickets,
        rss_growth: rss_before.zip(rss_after).map(|(b, a)| a.saturating_sub(b)),
        open: open_time,
    };

    let mut checks = Vec::new();
    let prepared = prepare(
        &shared,
        &tickets,
        config,
        now,
        range,
        &expected,
        &mut checks,
    )?;
    let cursors = prepared.cursors;
    let (health, queries) = drive(config, tickets, shared, prepared, &mut checks)?;
    Ok(BenchReport {
        config: config.clone(),
        cpus,
        load,
        replay,
        health,
        queries,
        cursors,
        checks,
    })
}

/// Opens and moves on every ticket from `threads` threads; returns the time and commands.
fn load(
    tickets: &Tickets,
    count: usize,
    threads: usize,
    now: Timestamp,
) -> Result<(Duration, u64), BenchError> {
    let threads = threads.max(1);
    let failure: Mutex<Option<BenchError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let commands = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (failure, stop, commands) = (&failure, &stop, &commands);
            s.spawn(move || {
                for n in (t..count).step_by(threads) {
                    for submission in Plan::new(n, now).submissions() {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let command = submission.command.name();
                        if let Err(e) = tickets.handle(submission) {
                            stop.store(true, Ordering::Relaxed);
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(BenchError {
                                action: "load its tickets",
                                reason: format!("ticket {} `{command}`: {e}", ticket_id(n)),
                            });
                            return;
                        }
                        commands.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok((started.elapsed(), commands.into_inner())),
    }
}

// ---------------------------------------------------------------------------------------
// The query kinds, what they must answer, and the in-process checks.

/// A query kind: a fixed set of (path, expected body), or random tickets.
enum Kind {
    Exact(Vec<(String, Vec<u8>)>),
    /// Ticket numbers `0..N`; the body must carry the id and the plan's state.
    Ticket {
        count: usize,
        now: Timestamp,
    },
}

struct Case {
    name: String,
    kind: Kind,
}

enum Expect<'a> {
    Exact(&'a [u8]),
    Contains([String; 2]),
}

impl Expect<'_> {
    fn matches(&self, body: &[u8]) -> bool {
        let has = |pat: &[u8]| body.windows(pat.len()).any(|w| w == pat);
        match self {
            Expect::Exact(b) => body == *b,
            Expect::Contains(pats) => pats.iter().all(|p| has(p.as_bytes())),
        }
    }
}

impl Case {
    fn request(&self, rng: &mut u64) -> (String, Expect<'_>) {
        *rng = splitmix64(*rng);
        match &self.kind {
            Kind::Exact(all) => {
                let (path, body) = &all[(*rng % all.len() as u64) as usize];
                (path.clone(), Expect::Exact(body))
            }
            Kind::Ticket { count, now } => {
                let n = (*rng % *count as u64) as usize;
                let id = ticket_id(n);
                let state = Plan::new(n, *now).state();
                (
                    format!("/v1/tickets/{id}"),
                    Expect::Contains([
                        format!("\"id\":\"{id}\""),
                        format!("\"state\":\"{}\"", state.as_str()),
                    ]),
                )
            }
        }
    }
}

/// The cases with their expected answers, and the direct-call cost of each.
struct Prepared {
    cursors: usize,
    health: Case,
    cases: Vec<(Case, Duration)>,
}

fn body_of<T: serde::Serialize>(value: T) -> Vec<u8> {
    // As the routes answer: `Json(json!(value))`.
    serde_json::to_vec(&json!(value)).expect("JSON values serialize")
}

/// Mean time per call of `f`, over at least 3 calls and about 0.3 s.
fn time_direct(mut f: impl FnMut(u64)) -> Duration {
    let started = Instant::now();
    let mut calls = 0u64;
    while calls < 3 || started.elapsed() < Duration::from_millis(300) {
        f(calls);
        calls += 1;
    }
    started.elapsed() / calls as u32
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn prepare(
    shared: &SharedViews,
    tickets: &Tickets,
    config: &BenchConfig,
    now: Timestamp,
    range: (DateTime<Utc>, DateTime<Utc>),
    expected: &Expected,
    checks: &mut Vec<String>,
) -> Result<Prepared, BenchError> {
    let n = config.tickets;
    let now_utc = now.to_utc();
    let views = shared.read();

    // Every row has its plan's state and platform.
    check(views.ticket_count() == n, || {
        format!(
            "the model holds {} tickets, {n} were loaded",
            views.ticket_count()
        )
    })?;
    for i in 0..n {
        let plan = Plan::new(i, now);
        let row = views.row(&ticket_id(i));
        check(
            row.is_some_and(|r| r.state == plan.state() && r.platform == plan.platform),
            || {
                format!(
                    "ticket {} is {:?} in the model, its plan ends in {}",
                    ticket_id(i),
                    row.map(|r| r.state.as_str()),
                    plan.state().as_str()
                )
            },
        )?;
    }
    checks.push(format!("all {n} rows have their plan's state and platform"));

    // The dashboard's counts.
    let all = views.sla(&SlaQuery::default(), now_utc);
    check(all.tickets == n as u64, || {
        format!(
            "the dashboard counts {} tickets, {n} were loaded",
            all.tickets
        )
    })?;
    for (state, count) in &all.by_state {
        let want = expected.by_state.get(state).copied().unwrap_or(0);
        check(*count == want, || {
            format!(
                "the dashboard counts {count} {} tickets, the plans {want}",
                state.as_str()
            )
        })?;
    }
    let jd_query = SlaQuery {
        platform: Some(Platform::Jd),
        ..SlaQuery::default()
    };
    let jd = views.sla(&jd_query, now_utc);
    check(jd.tickets == expected.jd, || {
        format!(
            "the dashboard counts {} jd tickets, the plans {}",
            jd.tickets, expected.jd
        )
    })?;
    let range_query = SlaQuery {
        platform: None,
        from: Some(range.0),
        to: Some(range.1),
    };
    let ranged = views.sla(&range_query, now_utc);
    check(ranged.tickets == expected.in_range, || {
        format!(
            "the dashboard counts {} tickets opened in the last 7 days, the plans {}",
            ranged.tickets, expected.in_range
        )
    })?;
    checks.push(format!(
        "dashboard: {} tickets without a filter and by state as planned, jd {}, last 7 days {}; \
         overdue {}, due within 24h {}, met {}, breached {}, auto outcomes {}",
        all.tickets,
        jd.tickets,
        ranged.tickets,
        all.overdue,
        all.due_within_24h,
        all.met,
        all.breached,
        all.auto_outcomes.values().sum::<u64>()
    ));

    // The list: the first jd page, and every page of one state in due order.
    let jd_list = ListQuery {
        platform: Some(Platform::Jd),
        limit: PAGE,
        ..ListQuery::default()
    };
    let first = views.list(&jd_list);
    check(
        first.tickets.len() == PAGE.min(expected.jd as usize)
            && first.tickets.iter().all(|r| r.platform == Platform::Jd),
        || format!("the first jd page has {} tickets", first.tickets.len()),
    )?;
    let due_key = |r: &aftersales_views::TicketRow| {
        (
            r.next_due()
                .map_or(i64::MAX, |d| d.due_at.timestamp_millis()),
            r.id.clone(),
        )
    };
    let mut paged = ListQuery {
        state: Some(PAGED_STATE),
        limit: PAGE,
        ..ListQuery::default()
    };
    let (mut seen, mut pages, mut cursors) = (0u64, 0u64, Vec::new());
    let mut last: Option<(i64, TicketId)> = None;
    loop {
        let page = views.list(&paged);
        pages += 1;
        for row in &page.tickets {
            let key = due_key(row);
            check(row.state == PAGED_STATE, || {
                format!("ticket {} is on a {} page", row.id, PAGED_STATE.as_str())
            })?;
            check(last.as_ref().is_none_or(|l| *l < key), || {
                format!("ticket {} is out of due order or seen twice", row.id)
            })?;
            last = Some(key);
            seen += 1;
        }
        match page.next {
            Some(next) => {
                cursors.push(next.clone());
                paged.after = Some(next);
            }
            None => break,
        }
    }
    let want = expected.by_state.get(&PAGED_STATE).copied().unwrap_or(0);
    check(seen == want, || {
        format!(
            "paging {} visited {seen} tickets, the plans have {want}",
            PAGED_STATE.as_str()
        )
    })?;
    checks.push(format!(
        "paging state={}: {pages} pages, {seen} tickets, each once, in due order",
        PAGED_STATE.as_str()
    ));
    // Cursors spread over the whole order.
    let step = (cursors.len() / CURSORS).max(1);
    let cursors: Vec<_> = cursors.into_iter().step_by(step).take(CURSORS).collect();

    // The cases, with what the model answers in process.
    let health = Case {
        name: "GET /healthz (raw)".into(),
        kind: Kind::Exact(vec![("/healthz".into(), b"ok\n".to_vec())]),
    };
    let mut cases = Vec::new();

    let direct = time_direct(|i| {
        let id = ticket_id((splitmix64(i) % n as u64) as usize);
        let _ = tickets.history(&id);
        let _ = tickets.load(&id);
    });
    cases.push((
        Case {
            name: "GET /v1/tickets/{id}".into(),
            kind: Kind::Ticket { count: n, now },
        },
        direct,
    ));

    let path = format!("/v1/tickets?platform=jd&limit={PAGE}");
    let direct = time_direct(|_| drop(body_of(views.list(&jd_list))));
    cases.push((
        Case {
            name: format!("GET {path}"),
            kind: Kind::Exact(vec![(path, body_of(first))]),
        },
        direct,
    ));

    let mut bodies = Vec::new();
    for cursor in &cursors {
        let q = ListQuery {
            after: Some(cursor.clone()),
            ..paged.clone()
        };
        bodies.push((
            format!(
                "/v1/tickets?state={}&limit={PAGE}&cursor={cursor}",
                PAGED_STATE.as_str()
            ),
            body_of(views.list(&q)),
        ));
    }
    if bodies.is_empty() {
        let q = ListQuery {
            after: None,
            ..paged.clone()
        };
        bodies.push((
            format!("/v1/tickets?state={}&limit={PAGE}", PAGED_STATE.as_str()),
            body_of(views.list(&q)),
        ));
    }
    let direct = time_direct(|i| {
        let q = ListQuery {
            after: cursors.get(i as usize % cursors.len().max(1)).cloned(),
            ..paged.clone()
        };
        drop(body_of(views.list(&q)));
    });
    cases.push((
        Case {
            name: format!(
                "GET /v1/tickets?state={}&limit={PAGE}&cursor=…",
                PAGED_STATE.as_str()
            ),
            kind: Kind::Exact(bodies),
        },
        direct,
    ));

    let path = "/v1/dashboard/sla?platform=jd".to_owned();
    let direct = time_direct(|_| drop(body_of(views.sla(&jd_query, now_utc))));
    cases.push((
        Case {
            name: format!("GET {path}"),
            kind: Kind::Exact(vec![(path, body_of(jd))]),
        },
        direct,
    ));

    let path = format!(
        "/v1/dashboard/sla?from={}&to={}",
        rfc3339(range.0),
        rfc3339(range.1)
    );
    let direct = time_direct(|_| drop(body_of(views.sla(&range_query, now_utc))));
    cases.push((
        Case {
            name: "GET /v1/dashboard/sla?from=…&to=…".into(),
            kind: Kind::Exact(vec![(path, body_of(ranged))]),
        },
        direct,
    ));
    Ok(Prepared {
        cursors: cursors.len(),
        health,
        cases,
    })
}

// ---------------------------------------------------------------------------------------
// The server and the clients.

/// One keep-alive HTTP/1.1 connection: GET only, `Content-Length` or chunked bodies.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    chunks: Vec<u8>,
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.reserve(16 * 1024);
    if stream.read_buf(buf).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

fn bad_response(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(64 * 1024),
            chunks: Vec::new(),
        }
    }

    async fn connect(&mut self) -> io::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        Ok(())
    }

    /// Sends one GET and reads its response: the status and the body.
    async fn get(&mut self, path: &str) -> io::Result<(u16, &[u8])> {
        self.connect().await?;
        let stream = self.stream.as_mut().expect("connected");
        let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let buf = &mut self.buf;
        buf.clear();
        let head_end = loop {
            if let Some(i) = find(buf, b"\r\n\r\n", 0) {
                break i + 4;
            }
            fill(stream, buf).await?;
        };
        let head =
            std::str::from_utf8(&buf[..head_end]).map_err(|_| bad_response("non-UTF-8 head"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_response("no status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| bad_response("bad content-length"))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let body = if let Some(len) = length {
            while buf.len() < head_end + len {
                fill(stream, buf).await?;
            }
            (false, head_end, head_end + len)
        } else if chunked {
            self.chunks.clear();
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(i) = find(buf, b"\r\n", pos) {
                        break i;
                    }
                    fill(stream, buf).await?;
                };
                let size_text = std::str::from_utf8(&buf[pos..line_end])
                    .map_err(|_| bad_response("bad chunk size"))?;
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| bad_response("bad chunk size"))?;
                pos = line_end + 2;
                while buf.len() < pos + size + 2 {
                    fill(stream, buf).await?;
                }
                if size == 0 {
                    break;
                }
                self.chunks.extend_from_slice(&buf[pos..pos + size]);
                pos += size + 2;
            }
            (true, 0, self.chunks.len())
        } else {
            return Err(bad_response("a response without a length"));
        };
        if close {
            self.stream = None;
        }
        let bytes = if body.0 {
            &self.chunks[body.1..body.2]
        } else {
            &self.buf[body.1..body.2]
        };
        Ok((status, bytes))
    }
}

struct ClientRun {
    conn: Conn,
    latencies: Vec<u32>,
    last: Option<Instant>,
    body_bytes: u64,
    non_200: u64,
    mismatched: u64,
    io_errors: u64,
    first_error: Option<String>,
}

async fn client(mut conn: Conn, case: Arc<Case>, until: Instant, seed: u64) -> ClientRun {
    let mut rng = seed;
    let addr = conn.addr;
    let mut run = ClientRun {
        conn: Conn::new(addr),
        latencies: Vec::with_capacity(4096),
        last: None,
        body_bytes: 0,
        non_200: 0,
        mismatched: 0,
        io_errors: 0,
        first_error: None,
    };
    while Instant::now() < until {
        let (path, expect) = case.request(&mut rng);
        let started = Instant::now();
        let result = conn.get(&path).await;
        let done = Instant::now();
        match result {
            Ok((status, body)) => {
                let micros = (done - started).as_micros().min(u32::MAX as u128) as u32;
                run.latencies.push(micros);
                run.last = Some(done);
                run.body_bytes += body.len() as u64;
                if status != 200 {
                    run.non_200 += 1;
                    run.first_error.get_or_insert_with(|| {
                        format!(
                            "{status} on {path}: {}",
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )
                    });
                } else if !expect.matches(body) {
                    run.mismatched += 1;
                    run.first_error.get_or_insert_with(|| {
                        format!(
                            "{path} answered {} bytes that differ from the model's answer: {}",
                            body.len(),
                            String::from_utf8_lossy(&body[..body.len().min(200)])
                        )
                    });
                }
            }
            Err(e) => {
                run.io_errors += 1;
                run.first_error
                    .get_or_insert_with(|| format!("{path}: connection error: {e}"));
                conn.stream = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    run.conn = conn;
    run
}

/// Nearest rank.
fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Duration::from_micros(u64::from(sorted[rank - 1]))
}

fn run_case(
    rt: &Runtime,
    conns: &mut Vec<Conn>,
    case: Case,
    direct: Option<Duration>,
    seconds: Duration,
    addr: SocketAddr,
) -> QueryCase {
    let case = Arc::new(case);
    rt.block_on(async {
        let started = Instant::now();
        let until = started + seconds;
        let tasks: Vec<_> = conns
            .drain(..)
            .enumerate()
            .map(|(i, c)| {
                let seed = splitmix64(0xA11CE ^ ((i as u64) << 20));
                tokio::spawn(client(c, Arc::clone(&case), until, seed))
            })
            .collect();
        let mut out = QueryCase {
            name: case.name.clone(),
            requests: 0,
            elapsed: Duration::ZERO,
            body_bytes: 0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
            non_200: 0,
            mismatched: 0,
            io_errors: 0,
            first_error: None,
            direct,
        };
        let mut latencies = Vec::new();
        for task in tasks {
            match task.await {
                Ok(run) => {
                    conns.push(run.conn);
                    out.requests += run.latencies.len() as u64;
                    out.body_bytes += run.body_bytes;
                    if let Some(last) = run.last {
                        out.elapsed = out.elapsed.max(last - started);
                    }
                    latencies.extend(run.latencies);
                    out.non_200 += run.non_200;
                    out.mismatched += run.mismatched;
                    out.io_errors += run.io_errors;
                    if out.first_error.is_none() {
                        out.first_error = run.first_error;
                    }
                }
                Err(e) => {
                    conns.push(Conn::new(addr));
                    out.io_errors += 1;
                    out.first_error
                        .get_or_insert_with(|| format!("a client task failed: {e}"));
                }
            }
        }
        latencies.sort_unstable();
        out.p50 = percentile(&latencies, 0.50);
        out.p99 = percentile(&latencies, 0.99);
        out.max = percentile(&latencies, 1.0);
        out
    })
}

/// Every expected answer once over HTTP before the timed runs.
async fn preflight(conn: &mut Conn, case: &Case) -> Result<(), BenchError> {
    let paths: Vec<(String, Expect<'_>)> = match &case.kind {
        Kind::Exact(all) => all
            .iter()
            .map(|(p, b)| (p.clone(), Expect::Exact(b)))
            .collect(),
        Kind::Ticket { .. } => {
            let mut rng = 7;
            (0..100).map(|_| case.request(&mut rng)).collect()
        }
    };
    for (path, expect) in paths {
        let (status, body) = conn.get(&path).await.map_err(fail("query the API"))?;
        check(status == 200 && expect.matches(body), || {
            format!(
                "GET {path} answered {status} with {} bytes that differ from the model's answer: {}",
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        })?;
    }
    Ok(())
}

fn drive(
    config: &BenchConfig,
    tickets: Arc<Tickets>,
    shared: SharedViews,
    prepared: Prepared,
    checks: &mut Vec<String>,
) -> Result<(QueryCase, Vec<QueryCase>), BenchError> {
    // The server's runtime is the one `serve` uses: two workers.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .map_err(fail("start the server's runtime"))?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(fail("start the clients' runtime"))?;
    let api = Api {
        views: Some(shared),
        clock: Arc::new(ManualClock::new(fixed_now().to_utc())),
        ..Api::new(tickets)
    };
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(fail("bind 127.0.0.1:0"))?;
    let addr = listener.local_addr().map_err(fail("bind 127.0.0.1:0"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(async move {
        axum::serve(listener, router(api))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });

    let result = (|| {
        let mut conns: Vec<Conn> = (0..config.clients.max(1))
            .map(|_| Conn::new(addr))
            .collect();
        client_rt.block_on(async {
            preflight(&mut conns[0], &prepared.health).await?;
            for (case, _) in &prepared.cases {
                preflight(&mut conns[0], case).await?;
            }
            for conn in &mut conns {
                conn.connect().await.map_err(fail("connect to the API"))?;
            }
            Ok::<_, BenchError>(())
        })?;
        checks.push(format!(
            "every expected answer fetched once over HTTP before the runs; {} connections open",
            conns.len()
        ));
        let health = run_case(
            &client_rt,
            &mut conns,
            prepared.health,
            None,
            config.seconds,
            addr,
        );
        let mut queries = Vec::new();
        for (case, direct) in prepared.cases {
            queries.push(run_case(
                &client_rt,
                &mut conns,
                case,
                Some(direct),
                config.seconds,
                addr,
            ));
        }
        client_rt.block_on(async move { drop(conns) });
        Ok((health, queries))
    })();

    let _ = stop_tx.send(());
    server_rt.block_on(async {
        match tokio::time::timeout(Duration::from_secs(10), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the benchmark's server failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the benchmark's server task failed"),
            Err(_) => tracing::warn!("the benchmark's server did not stop within 10 s"),
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_fixed_spread_and_before_now() {
        let now = fixed_now();
        let a = Plan::new(12_345, now);
        let b = Plan::new(12_345, now);
        assert_eq!(
            (a.service, a.course, a.opened_at, a.gap),
            (b.service, b.course, b.opened_at, b.gap)
        );
        let mut states = BTreeMap::new();
        for n in 0..10_000 {
            let p = Plan::new(n, now);
            let last = p.submissions().last().expect("an opening").at;
            assert!(p.opened_at >= now - chrono::Duration::seconds(SPREAD_SECS));
            assert!(last < now, "ticket {n}'s last step is after now");
            *states.entry(p.state()).or_insert(0) += 1;
        }
        assert!(states[&State::PendingReview] > 4_000);
        assert!(states[&State::AwaitingReturn] > 1_500);
        assert!(states[&State::Refunded] > 300);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_micros(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_quick_run_answers_correctly() {
        let dir = tempfile::tempdir().unwrap();
        let config = BenchConfig {
            tickets: 600,
            clients: 4,
            seconds: Duration::from_millis(200),
            fill_threads: 8,
            dir: Some(dir.path().to_owned()),
        };
        let report = run(&config).unwrap();
        assert!(!report.failed(), "{report}");
        assert_eq!(report.replay.tickets, 600);
        assert!(report.queries.iter().all(|q| q.requests > 0), "{report}");
    }
}
