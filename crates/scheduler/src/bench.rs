//! `aftersales bench timers`: what the deadline index costs and how punctually deadlines fire.
//!
//! Three cases, each in a fresh store under a scratch directory (the store's defaults,
//! `fsync_after_flush` on, stamped by the system clock):
//!
//! - **index**: N JD tickets are opened (one `opened` event per append, from many threads so
//!   that group commit is used), each arming one 48h review deadline. Then the log is scanned
//!   three ways: raw (`Store::iter_all`, no decoding: the limit), decoded (`decode_stored` on
//!   every record), and folded into a [`DeadlineIndex`] (the rebuild on start). Memory per
//!   armed deadline is the growth of the process's resident set (`VmRSS` in
//!   `/proc/self/status`) across the index build, divided by the armed deadlines; the log
//!   was scanned twice before, so sled's page cache is warm and does not count.
//! - **burst**: K deadlines are overdue at start; one `fire_due` fires them all. Compared with
//!   one thread appending one event at a time to the same store (firing is sequential, one
//!   durable append per deadline, so that is its limit).
//! - **lag**: [`Scheduler::run`] runs on the system clock while writer threads open other
//!   tickets through the command handler; M tickets are opened with a platform time 48h
//!   minus a few seconds in the past, so their review deadlines fall due over the next
//!   seconds. Lag = the time `run` reports a deadline stored minus its due time. Warnings
//!   are off in this case (each of those deadlines would warn at once when opened).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aftersales_app::{event_id, Submission, Tickets};
use aftersales_clock::{Clock, SystemClock};
use aftersales_schema::{decode_stored, encode, EventEnvelope};
use aftersales_store::{ExpectedVersion, NewEvent, Store, StoreConfig, StreamId};
use aftersales_ticket::{
    china_offset, Actor, Command, CustomerId, Event, Money, NewTicket, Opened, OrderId,
    OrderLineId, Platform, PlatformTicketId, Reason, RulePackId, ServiceType, Sku, TicketId,
    Timestamp,
};
use aftersales_timers::{Calendar, RuleBook};

use crate::error::SchedulerError;
use crate::index::DeadlineIndex;
use crate::scheduler::Scheduler;
use crate::warnings::WarningWindows;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Armed deadlines for the index case (N).
    pub deadlines: usize,
    /// Overdue deadlines for the burst case (K).
    pub burst: usize,
    /// Deadlines falling due during the lag case (M).
    pub lag_deadlines: usize,
    /// How long the lag case's deadlines are spread over.
    pub lag_window: Duration,
    /// Threads opening other tickets during the lag case.
    pub lag_writers: usize,
    /// Threads opening the tickets of the index case.
    pub fill_threads: usize,
    /// The run loop's poll interval.
    pub poll: Duration,
    /// Where the scratch stores go (default: the OS temp dir).
    pub dir: Option<PathBuf>,
}

impl BenchConfig {
    /// The full run: 1,000,000 armed deadlines.
    pub fn full() -> BenchConfig {
        BenchConfig {
            deadlines: 1_000_000,
            burst: 2_000,
            lag_deadlines: 1_000,
            lag_window: Duration::from_secs(10),
            lag_writers: 4,
            fill_threads: 64,
            poll: Duration::from_millis(250),
            dir: None,
        }
    }

    /// The CI run: 20,000 armed deadlines, a few seconds per case.
    pub fn quick() -> BenchConfig {
        BenchConfig {
            deadlines: 20_000,
            burst: 1_000,
            lag_deadlines: 200,
            lag_window: Duration::from_secs(3),
            ..BenchConfig::full()
        }
    }
}

/// The index case.
#[derive(Debug, Clone)]
pub struct IndexCase {
    pub opened: usize,
    pub fill: Duration,
    pub records: u64,
    pub log_bytes: u64,
    pub raw_scan: Duration,
    pub decode_scan: Duration,
    pub build: Duration,
    pub armed: usize,
    pub tracked_tickets: usize,
    /// Resident-set growth across the build (`None` where `/proc` is missing).
    pub rss_growth: Option<u64>,
}

/// The burst case.
#[derive(Debug, Clone)]
pub struct BurstCase {
    pub fired: usize,
    pub elapsed: Duration,
    pub raw_appends: usize,
    pub raw_elapsed: Duration,
}

/// The lag case.
#[derive(Debug, Clone)]
pub struct LagCase {
    pub fired: usize,
    pub expected: usize,
    pub window: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Deadlines reported stored before their due time (must be 0).
    pub early: usize,
    /// The same lags measured to the store's `recorded_at` (stamped when the writer takes the
    /// append, before the group flush): p50, p99, max. Tells a late scheduler from a slow
    /// flush.
    pub written: [Duration; 3],
    pub background_appends: u64,
    pub elapsed: Duration,
}

/// Everything measured in one run; `Display` prints it.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub cpus: usize,
    pub index: IndexCase,
    pub burst: BurstCase,
    pub lag: LagCase,
}

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (i, b, l) = (&self.index, &self.burst, &self.lag);
        writeln!(f, "timer benchmark, {} CPUs", self.cpus)?;
        writeln!(
            f,
            "index: {} tickets opened in {:.1} s ({:.0}/s, {} threads); {} armed deadlines, {} tickets followed",
            i.opened,
            i.fill.as_secs_f64(),
            per_sec(i.opened as f64, i.fill),
            self.config.fill_threads,
            i.armed,
            i.tracked_tickets
        )?;
        match i.rss_growth {
            Some(bytes) => writeln!(
                f,
                "  memory: {:.0} B per armed deadline (RSS growth {:.1} MiB over the build)",
                bytes as f64 / i.armed.max(1) as f64,
                bytes as f64 / (1 << 20) as f64
            )?,
            None => writeln!(f, "  memory: not measured (no /proc/self/status)")?,
        }
        writeln!(
            f,
            "  rebuild: {:.2} s ({:.0} events/s) | raw scan {:.2} s ({:.0} events/s, {:.1} MiB) ratio {:.1}x | scan+decode {:.2} s",
            i.build.as_secs_f64(),
            per_sec(i.records as f64, i.build),
            i.raw_scan.as_secs_f64(),
            per_sec(i.records as f64, i.raw_scan),
            i.log_bytes as f64 / (1 << 20) as f64,
            i.build.as_secs_f64() / i.raw_scan.as_secs_f64().max(1e-9),
            i.decode_scan.as_secs_f64()
        )?;
        writeln!(
            f,
            "burst: {} overdue deadlines fired in {:.2} s = {:.0} firings/s | raw: 1 thread, 1 event per durable append: {:.0} appends/s, ratio {:.2}",
            b.fired,
            b.elapsed.as_secs_f64(),
            per_sec(b.fired as f64, b.elapsed),
            per_sec(b.raw_appends as f64, b.raw_elapsed),
            per_sec(b.fired as f64, b.elapsed) / per_sec(b.raw_appends as f64, b.raw_elapsed).max(1e-9)
        )?;
        writeln!(
            f,
            "lag: {}/{} deadlines due over {:.0} s ({:.0}/s), poll {} ms, while {} writers stored {} other openings ({:.0}/s)",
            l.fired,
            l.expected,
            l.window.as_secs_f64(),
            per_sec(l.expected as f64, l.window),
            self.config.poll.as_millis(),
            self.config.lag_writers,
            l.background_appends,
            per_sec(l.background_appends as f64, l.elapsed)
        )?;
        writeln!(
            f,
            "  firing lag (stored minus due): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; fired early: {}",
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            l.early
        )?;
        writeln!(
            f,
            "  of which before the write (recorded_at minus due): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(l.written[0]),
            ms(l.written[1]),
            ms(l.written[2])
        )
    }
}

/// Runs the three cases.
pub fn run(config: &BenchConfig) -> Result<BenchReport, SchedulerError> {
    let parent = config.dir.clone().unwrap_or_else(std::env::temp_dir);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let index = with_scratch(&parent, "index", |dir| index_case(config, dir))?;
    let burst = with_scratch(&parent, "burst", |dir| burst_case(config, dir))?;
    let lag = with_scratch(&parent, "lag", |dir| lag_case(config, dir))?;
    Ok(BenchReport {
        config: config.clone(),
        cpus,
        index,
        burst,
        lag,
    })
}

fn with_scratch<T>(
    parent: &Path,
    name: &str,
    case: impl FnOnce(&Path) -> Result<T, SchedulerError>,
) -> Result<T, SchedulerError> {
    let nanos = SystemClock.now().timestamp_subsec_nanos();
    let dir = parent.join(format!(
        "aftersales-timers-bench-{}-{nanos}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| SchedulerError::Bench {
        action: "create its scratch directory",
        reason: format!("{}: {e}", dir.display()),
    })?;
    let result = case(&dir);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove a benchmark directory");
    }
    result
}

fn open_store(dir: &Path) -> Result<Arc<Store>, SchedulerError> {
    Ok(Arc::new(Store::open(
        dir,
        StoreConfig::new(Arc::new(SystemClock)),
    )?))
}

/// A JD return-refund for a quality problem: it arms `jd.review`, due 48h after opening.
fn new_ticket(id: &TicketId, n: usize) -> NewTicket {
    NewTicket {
        id: id.clone(),
        platform: Platform::Jd,
        platform_ticket_id: PlatformTicketId::parse(&n.to_string()).expect("digits"),
        order_id: OrderId::parse(&format!("O-{n}")).expect("valid"),
        order_line_id: OrderLineId::parse(&format!("O-{n}-1")).expect("valid"),
        sku: Some(Sku::parse("SKU-RED-M").expect("valid")),
        amount_paid: Money::from_cents(19_900),
        refund_requested: None,
        customer_id: Some(CustomerId::parse(&format!("c-{n}")).expect("valid")),
        service_type: ServiceType::ReturnRefund,
        reason: Reason::QualityProblem,
        signed_for_at: None,
        order_shipped: None,
    }
}

/// Appends the `opened` event of ticket `jd:<prefix>-<n>` for every `n` in `0..count`, from
/// `threads` threads, one event per append. `opened_at(n)` is the platform time.
fn fill(
    store: &Store,
    prefix: &str,
    count: usize,
    threads: usize,
    opened_at: &(dyn Fn(usize) -> Timestamp + Sync),
) -> Result<Duration, SchedulerError> {
    let pack = RulePackId::parse("jd@2024").expect("valid");
    let started = Instant::now();
    let failure: Mutex<Option<SchedulerError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads.max(1) {
            let (pack, failure) = (&pack, &failure);
            s.spawn(move || {
                for n in (t..count).step_by(threads.max(1)) {
                    if let Err(e) = append_opening(store, prefix, n, pack, opened_at(n)) {
                        *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        return;
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok(started.elapsed()),
    }
}

fn append_opening(
    store: &Store,
    prefix: &str,
    n: usize,
    pack: &RulePackId,
    opened_at: Timestamp,
) -> Result<(), SchedulerError> {
    let id = TicketId::parse(&format!("jd:{prefix}-{n}")).expect("valid");
    let t = new_ticket(&id, n);
    let event = Event::Opened(Box::new(Opened {
        id: t.id,
        platform: t.platform,
        platform_ticket_id: t.platform_ticket_id,
        order_id: t.order_id,
        order_line_id: t.order_line_id,
        sku: t.sku,
        amount_paid: t.amount_paid,
        refund_requested: t.amount_paid,
        customer_id: t.customer_id,
        service_type: t.service_type,
        reason: t.reason,
        signed_for_at: None,
        opened_at,
        order_shipped: None,
        rule_pack: Some(pack.clone()),
    }));
    let event_id = event_id(&id, "bench/open", 0);
    let envelope = EventEnvelope::new(event_id, id.clone(), opened_at, event);
    let stream = StreamId::new(id.as_str())?;
    let new = NewEvent::new(event_id, "opened", encode(&envelope));
    store.append(&stream, ExpectedVersion::NoStream, vec![new])?;
    Ok(())
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn index_case(config: &BenchConfig, dir: &Path) -> Result<IndexCase, SchedulerError> {
    let store = open_store(dir)?;
    let base = china_now() + chrono::Duration::days(1);
    let opened_at = move |n: usize| base + chrono::Duration::milliseconds(n as i64);
    let fill_time = fill(
        &store,
        "idx",
        config.deadlines,
        config.fill_threads,
        &opened_at,
    )?;

    let started = Instant::now();
    let (mut records, mut log_bytes) = (0u64, 0u64);
    for record in store.iter_all(1) {
        let record = record?;
        records += 1;
        log_bytes += record.payload.len() as u64;
    }
    let raw_scan = started.elapsed();

    let started = Instant::now();
    for record in store.iter_all(1) {
        let record = record?;
        decode_stored(&record.payload, record.recorded_at).map_err(|error| {
            SchedulerError::Unreadable {
                position: record.position,
                error,
            }
        })?;
    }
    let decode_scan = started.elapsed();

    let rss_before = resident_bytes();
    let started = Instant::now();
    let mut index = DeadlineIndex::new(RuleBook::builtin(), Calendar::builtin());
    index.catch_up(&store)?;
    let build = started.elapsed();
    let rss_after = resident_bytes();
    let case = IndexCase {
        opened: config.deadlines,
        fill: fill_time,
        records,
        log_bytes,
        raw_scan,
        decode_scan,
        build,
        armed: index.armed_count(),
        tracked_tickets: index.tracked_tickets(),
        rss_growth: rss_before.zip(rss_after).map(|(b, a)| a.saturating_sub(b)),
    };
    drop(index);
    Ok(case)
}

fn china_now() -> Timestamp {
    SystemClock.now().with_timezone(&china_offset())
}

fn burst_case(config: &BenchConfig, dir: &Path) -> Result<BurstCase, SchedulerError> {
    let store = open_store(dir)?;
    // Overdue by an hour and more, a millisecond apart, so the due order is defined.
    let base = china_now() - chrono::Duration::hours(49);
    let opened_at = move |n: usize| base + chrono::Duration::milliseconds(n as i64);
    fill(
        &store,
        "burst",
        config.burst,
        config.fill_threads,
        &opened_at,
    )?;
    let tickets = Arc::new(Tickets::new(Arc::clone(&store)).map_err(bench_err("open tickets"))?);
    let scheduler = Scheduler::start(tickets, RuleBook::builtin(), Calendar::builtin())?;
    let started = Instant::now();
    let fired = scheduler.fire_due(SystemClock.now())?.len();
    let elapsed = started.elapsed();

    // The limit: one thread, one event per durable append, as the firings are.
    let stream = StreamId::new("bench-raw")?;
    let payload = vec![0x5a; 300];
    let started = Instant::now();
    let mut raw_appends = 0;
    while raw_appends < config.burst.max(100)
        && started.elapsed() < elapsed.max(Duration::from_secs(1))
    {
        let id = event_id(
            &TicketId::parse("bench-raw").expect("valid"),
            "raw",
            raw_appends,
        );
        store.append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new(id, "raw", payload.clone())],
        )?;
        raw_appends += 1;
    }
    Ok(BurstCase {
        fired,
        elapsed,
        raw_appends,
        raw_elapsed: started.elapsed(),
    })
}

fn bench_err<E: fmt::Display>(action: &'static str) -> impl Fn(E) -> SchedulerError {
    move |e| SchedulerError::Bench {
        action,
        reason: e.to_string(),
    }
}

fn open_via_handler(
    tickets: &Tickets,
    prefix: &str,
    n: usize,
    at: Timestamp,
) -> Result<(), SchedulerError> {
    let id = TicketId::parse(&format!("jd:{prefix}-{n}")).expect("valid");
    tickets
        .handle(Submission {
            ticket_id: id.clone(),
            command: Command::Open {
                ticket: Box::new(new_ticket(&id, n)),
            },
            at,
            actor: Actor::Customer,
            idempotency_key: Some(format!("jd/open-{prefix}-{n}")),
            causation_id: None,
        })
        .map(drop)
        .map_err(bench_err("open a ticket"))
}

fn lag_case(config: &BenchConfig, dir: &Path) -> Result<LagCase, SchedulerError> {
    let store = open_store(dir)?;
    let tickets = Arc::new(Tickets::new(Arc::clone(&store)).map_err(bench_err("open tickets"))?);
    // Expiries only: each lag deadline would otherwise warn as soon as it is opened (its
    // due time is seconds away), adding appends the figures never had.
    let scheduler = Scheduler::start_with(
        Arc::clone(&tickets),
        RuleBook::builtin(),
        Calendar::builtin(),
        WarningWindows::none(),
    )?;
    let clock = SystemClock;
    let stop_loop = AtomicBool::new(false);
    let stop_writers = AtomicBool::new(false);
    let background = AtomicU64::new(0);
    let lags: Mutex<Vec<chrono::Duration>> = Mutex::new(Vec::new());
    let m = config.lag_deadlines.max(1);
    // The openings must be stored before their deadlines fall due: start the window later.
    let lead = Duration::from_millis(1500);
    let step = config.lag_window / m as u32;
    let first_due = china_now() + chrono::Duration::from_std(lead).unwrap_or_default();
    let started = Instant::now();
    let outcome = std::thread::scope(|s| -> Result<(), SchedulerError> {
        s.spawn(|| {
            scheduler.run_with(&clock, &stop_loop, config.poll, |fired| {
                if fired.is_warning() {
                    return;
                }
                let lag = clock.now() - fired.deadline.due_at.to_utc();
                lags.lock().unwrap_or_else(|e| e.into_inner()).push(lag);
            })
        });
        for w in 0..config.lag_writers {
            let (tickets, stop, background) = (&tickets, &stop_writers, &background);
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Acquire) {
                    if open_via_handler(tickets, &format!("bg{w}"), n, china_now()).is_err() {
                        return;
                    }
                    background.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
        let result = (|| {
            for n in 0..m {
                let due =
                    first_due + chrono::Duration::from_std(step * n as u32).unwrap_or_default();
                open_via_handler(&tickets, "lag", n, due - chrono::Duration::hours(48))?;
            }
            let patience = lead + config.lag_window + Duration::from_secs(60);
            while scheduler.stats().fired < m as u64 && started.elapsed() < patience {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })();
        stop_writers.store(true, Ordering::Release);
        stop_loop.store(true, Ordering::Release);
        result
    });
    let elapsed = started.elapsed();
    outcome?;
    let mut written = Vec::new();
    for record in store.iter_all(1) {
        let record = record?;
        if record.event_type != "deadline_expired" || !record.stream.as_str().starts_with("jd:lag-")
        {
            continue;
        }
        if let Ok(e) = decode_stored(&record.payload, record.recorded_at) {
            let lag = record.recorded_at - e.occurred_at.to_utc();
            written.push(lag.to_std().unwrap_or(Duration::ZERO));
        }
    }
    written.sort_unstable();
    let lags = lags.into_inner().unwrap_or_else(|e| e.into_inner());
    let early = lags
        .iter()
        .filter(|d| *d < &chrono::Duration::zero())
        .count();
    let mut lags: Vec<Duration> = lags
        .into_iter()
        .map(|d| d.to_std().unwrap_or(Duration::ZERO))
        .collect();
    lags.sort_unstable();
    let pct = |lags: &[Duration], p: f64| {
        lags.get(((lags.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(LagCase {
        fired: lags.len(),
        expected: m,
        window: config.lag_window,
        p50: pct(&lags, 0.5),
        p99: pct(&lags, 0.99),
        max: pct(&lags, 1.0),
        early,
        written: [pct(&written, 0.5), pct(&written, 0.99), pct(&written, 1.0)],
        background_appends: background.load(Ordering::Relaxed),
        elapsed,
    })
}
