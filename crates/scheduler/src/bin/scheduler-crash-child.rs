//! Crash-test helper for `tests/crash.rs`, killed with SIGKILL at random moments.
//!
//! ```text
//! scheduler-crash-child open <dir> <count>   opens tickets jd:c0.. / pdd:c.. (4 threads)
//! scheduler-crash-child fire <dir> <now>     fires everything due by <now> (RFC 3339)
//! ```
//!
//! `open` prints `OPENED <ticket>` after each acknowledged opening and `DISARMED <ticket>`
//! after an acknowledged approval (every fourth ticket is reviewed by the merchant right
//! away, which stops its review clock). `fire` prints `FIRED <ticket> <rule> <position>` as
//! each expiry is stored (`WARNED …` for a warning), then `DONE`. Stdout is line-buffered, so a line is complete only
//! if the fact it reports was acknowledged.

use std::process::ExitCode;
use std::sync::Arc;

use aftersales_app::{Submission, Tickets};
use aftersales_scheduler::Scheduler;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::{
    Actor, Command, CustomerId, Money, NewTicket, OrderId, OrderLineId, Platform, PlatformTicketId,
    Reason, ReturnMethod, ServiceType, Sku, TicketId, Timestamp,
};
use aftersales_timers::{Calendar, RuleBook};
use chrono::DateTime;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
        (Some("open"), Some(dir), Some(count)) => count
            .parse()
            .map_err(Failure::from)
            .and_then(|n| open(dir, n)),
        (Some("fire"), Some(dir), Some(now)) => fire(dir, now),
        _ => {
            eprintln!("usage: scheduler-crash-child open <dir> <count> | fire <dir> <now>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scheduler-crash-child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tickets(dir: &str) -> Result<Arc<Tickets>, Failure> {
    let store = Arc::new(Store::open(dir, StoreConfig::default())?);
    Ok(Arc::new(Tickets::new(store)?))
}

/// Ticket `n`: JD refund-only not shipped (auto-approve), JD review (deadline only),
/// Pinduoduo return-refund (refund without return), JD review that the merchant approves.
fn ticket_of(n: usize) -> (TicketId, NewTicket) {
    let (platform, service_type, reason) = match n % 4 {
        0 => (
            Platform::Jd,
            ServiceType::RefundOnly,
            Reason::CancelBeforeShipment,
        ),
        2 => (
            Platform::Pdd,
            ServiceType::ReturnRefund,
            Reason::QualityProblem,
        ),
        _ => (
            Platform::Jd,
            ServiceType::ReturnRefund,
            Reason::QualityProblem,
        ),
    };
    let id = TicketId::parse(&format!("{platform}:c{n}")).expect("valid");
    let new = NewTicket {
        id: id.clone(),
        platform,
        platform_ticket_id: PlatformTicketId::parse(&format!("c{n}")).expect("valid"),
        order_id: OrderId::parse(&format!("O-{n}")).expect("valid"),
        order_line_id: OrderLineId::parse(&format!("O-{n}-1")).expect("valid"),
        sku: Some(Sku::parse("SKU-1").expect("valid")),
        amount_paid: Money::from_cents(10_000),
        refund_requested: None,
        customer_id: Some(CustomerId::parse("c-1").expect("valid")),
        service_type,
        reason,
        signed_for_at: None,
        order_shipped: None,
    };
    (id, new)
}

fn opened_at(n: usize) -> Timestamp {
    let base = DateTime::parse_from_rfc3339("2026-11-02T10:00:00+08:00").expect("valid");
    base + chrono::Duration::minutes(n as i64)
}

fn open(dir: &str, count: usize) -> Result<(), Failure> {
    let tickets = tickets(dir)?;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let tickets = &tickets;
                s.spawn(move || -> Result<(), Failure> {
                    for n in (t..count).step_by(4) {
                        open_one(tickets, n)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| Failure::from("a worker panicked"))?)
    })
}

fn open_one(tickets: &Tickets, n: usize) -> Result<(), Failure> {
    let (id, new) = ticket_of(n);
    let at = opened_at(n);
    tickets.handle(Submission {
        ticket_id: id.clone(),
        command: Command::Open {
            ticket: Box::new(new),
        },
        at,
        actor: Actor::Customer,
        idempotency_key: Some(format!("crash/open/{n}")),
        causation_id: None,
    })?;
    println!("OPENED {id}");
    if n % 4 == 3 {
        tickets.handle(Submission {
            ticket_id: id.clone(),
            command: Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
            at: at + chrono::Duration::hours(1),
            actor: Actor::Merchant,
            idempotency_key: Some(format!("crash/approve/{n}")),
            causation_id: None,
        })?;
        println!("DISARMED {id}");
    }
    Ok(())
}

fn fire(dir: &str, now: &str) -> Result<(), Failure> {
    let now = DateTime::parse_from_rfc3339(now)?.to_utc();
    let tickets = tickets(dir)?;
    let scheduler = Scheduler::start(tickets, RuleBook::builtin(), Calendar::builtin())?;
    scheduler.fire_due_with(now, &mut |f| {
        let what = if f.is_warning() { "WARNED" } else { "FIRED" };
        println!("{what} {} {} {}", f.ticket, f.deadline.rule_id, f.position)
    })?;
    let stats = scheduler.stats();
    println!(
        "DONE fired={} already={} stale={}",
        stats.fired, stats.already_fired, stats.stale_dropped
    );
    Ok(())
}
