//! Helpers shared by the scheduler's tests: real sled stores in temporary directories,
//! stamped by a `ManualClock`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use aftersales_app::{Handled, Stored, Submission, Tickets};
use aftersales_clock::ManualClock;
use aftersales_scheduler::Scheduler;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::*;
use aftersales_timers::{Calendar, RuleBook};
use chrono::{DateTime, Utc};

pub fn at(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).unwrap()
}

pub fn utc(s: &str) -> DateTime<Utc> {
    at(s).to_utc()
}

pub fn id(s: &str) -> TicketId {
    TicketId::parse(s).unwrap()
}

/// A clock for the store's `recorded_at` stamps, far from the platform times on purpose.
pub fn store_clock() -> ManualClock {
    ManualClock::new(utc("2026-01-01T00:00:00Z"))
}

pub fn open_store(dir: &Path, clock: &ManualClock) -> Arc<Store> {
    Arc::new(Store::open(dir, StoreConfig::new(Arc::new(clock.clone()))).unwrap())
}

pub fn tickets(store: &Arc<Store>) -> Arc<Tickets> {
    Arc::new(Tickets::new(Arc::clone(store)).unwrap())
}

pub fn scheduler(tickets: &Arc<Tickets>) -> Scheduler {
    Scheduler::start(
        Arc::clone(tickets),
        RuleBook::builtin(),
        Calendar::builtin(),
    )
    .unwrap()
}

pub fn new_ticket(
    ticket: &str,
    service_type: ServiceType,
    reason: Reason,
    order_shipped: Option<bool>,
) -> NewTicket {
    let ticket = id(ticket);
    let (platform, number) = ticket.as_str().split_once(':').unwrap();
    NewTicket {
        id: ticket.clone(),
        platform: platform.parse().unwrap(),
        platform_ticket_id: PlatformTicketId::parse(number).unwrap(),
        order_id: OrderId::parse(&format!("O-{number}")).unwrap(),
        order_line_id: OrderLineId::parse(&format!("O-{number}-1")).unwrap(),
        sku: Some(Sku::parse("SKU-RED-M").unwrap()),
        amount_paid: Money::from_cents(19_900),
        refund_requested: None,
        customer_id: Some(CustomerId::parse("c-42").unwrap()),
        service_type,
        reason,
        signed_for_at: None,
        order_shipped,
    }
}

/// Handles a command; panics on a refusal.
pub fn submit(
    tickets: &Tickets,
    ticket: &str,
    command: Command,
    at_: &str,
    actor: Actor,
    key: &str,
) -> Handled {
    tickets
        .handle(Submission {
            ticket_id: id(ticket),
            command,
            at: at(at_),
            actor,
            idempotency_key: Some(key.to_owned()),
            causation_id: None,
        })
        .unwrap()
}

/// Opens a ticket at platform time `at_` (the customer submits it).
pub fn open(tickets: &Tickets, ticket: NewTicket, at_: &str) {
    let name = ticket.id.to_string();
    submit(
        tickets,
        &name,
        Command::Open {
            ticket: Box::new(ticket),
        },
        at_,
        Actor::Customer,
        &format!("open/{name}"),
    );
}

/// A JD return-refund for a quality problem: `jd.review`, 48h, deadline only.
pub fn open_jd_review(tickets: &Tickets, ticket: &str, at_: &str) {
    open(
        tickets,
        new_ticket(
            ticket,
            ServiceType::ReturnRefund,
            Reason::QualityProblem,
            None,
        ),
        at_,
    );
}

pub fn history(tickets: &Tickets, ticket: &str) -> Vec<Stored> {
    tickets.history(&id(ticket)).unwrap()
}

pub fn names(history: &[Stored]) -> Vec<&'static str> {
    history.iter().map(|s| s.envelope.event.name()).collect()
}

pub fn expiries(history: &[Stored]) -> usize {
    names(history)
        .iter()
        .filter(|n| **n == "deadline_expired")
        .count()
}
