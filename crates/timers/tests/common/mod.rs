//! Helpers shared by the integration tests: tickets, events, and the rule-table harness.
#![allow(dead_code)] // each test binary uses its own part

use std::sync::OnceLock;

use aftersales_ticket::{
    decide, Actor, Command, Context, CustomerId, Event, ExchangeMethod, Money, Note, Opened,
    OrderId, OrderLineId, Platform, PlatformTicketId, Reason, ReturnMethod, ServiceType, Sku,
    Ticket, TicketId, Timestamp,
};
use aftersales_timers::{Calendar, RuleBook, RulePack, Timers};
use chrono::{NaiveDateTime, TimeZone};

/// A China time written `2026-09-30 15:00`.
pub fn t(s: &str) -> Timestamp {
    let local = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("YYYY-MM-DD HH:MM");
    aftersales_ticket::china_offset()
        .from_local_datetime(&local)
        .single()
        .unwrap()
}

pub fn book() -> &'static RuleBook {
    static BOOK: OnceLock<RuleBook> = OnceLock::new();
    BOOK.get_or_init(RuleBook::builtin)
}

pub fn cal() -> &'static Calendar {
    static CAL: OnceLock<Calendar> = OnceLock::new();
    CAL.get_or_init(Calendar::builtin)
}

pub fn pack(platform: &str) -> &'static RulePack {
    book()
        .pack_for(&platform.parse().unwrap())
        .expect("a pack for every platform")
}

pub fn note(s: &str) -> Note {
    Note::parse(s).unwrap()
}

pub fn opened(
    platform: &str,
    service_type: ServiceType,
    reason: Reason,
    signed_for: Option<&str>,
    at: &str,
) -> Event {
    let platform: Platform = platform.parse().unwrap();
    Event::Opened(Box::new(Opened {
        id: TicketId::for_platform(&platform, "T1").unwrap(),
        platform,
        platform_ticket_id: PlatformTicketId::parse("T1").unwrap(),
        order_id: OrderId::parse("O-1").unwrap(),
        order_line_id: OrderLineId::parse("O-1-1").unwrap(),
        sku: Some(Sku::parse("SKU-1").unwrap()),
        amount_paid: Money::from_cents(19_900),
        refund_requested: Money::from_cents(19_900),
        customer_id: Some(CustomerId::parse("c-1").unwrap()),
        service_type,
        reason,
        signed_for_at: signed_for.map(t),
        order_shipped: None,
        rule_pack: None,
        opened_at: t(at),
    }))
}

/// An event by name, with plain payloads. `approved` means the customer ships back;
/// `approved_pickup` means the merchant collects.
pub fn ev(name: &str) -> Event {
    let amount = Money::from_cents(19_900);
    match name {
        "approved" => Event::Approved {
            return_method: ReturnMethod::CustomerShips,
            by: Actor::Merchant,
            rule_id: None,
        },
        "approved_pickup" => Event::Approved {
            return_method: ReturnMethod::MerchantPickup,
            by: Actor::Merchant,
            rule_id: None,
        },
        "rejected" => Event::Rejected {
            reason: note("out of policy"),
        },
        "customer_asked" => Event::CustomerAsked { note: None },
        "customer_responded" => Event::CustomerResponded,
        "resubmitted" => Event::Resubmitted,
        "return_shipped" => Event::ReturnShipped { waybill: None },
        "goods_received" => Event::GoodsReceived,
        "refunded" => Event::Refunded {
            amount,
            return_shipping: Money::ZERO,
            deduction: Money::ZERO,
            customer_consent: None,
            by: Actor::Merchant,
            rule_id: None,
        },
        "refunded_without_return" => Event::RefundedWithoutReturn {
            amount,
            deduction: Money::ZERO,
            customer_consent: None,
            by: Actor::Merchant,
            rule_id: None,
        },
        "exchanged" => Event::Exchanged {
            method: ExchangeMethod::Replacement,
            replacement_sku: Some(Sku::parse("SKU-1").unwrap()),
            customer_consent: None,
            by: Actor::Merchant,
        },
        "repair_completed" => Event::RepairCompleted {
            customer_consent: None,
            by: Actor::Merchant,
        },
        "withdrawn" => Event::Withdrawn {
            confirmation: note("customer confirmed by phone"),
        },
        "intervention_requested" => Event::InterventionRequested {
            by: Actor::Customer,
        },
        other => panic!("no test event named {other}"),
    }
}

/// One row of a platform's rule table.
pub struct Case {
    /// What the row checks, and the RULES.md line it comes from.
    pub name: &'static str,
    pub platform: &'static str,
    pub service: ServiceType,
    pub reason: Reason,
    pub signed_for: Option<&'static str>,
    pub opened: &'static str,
    /// Events after the opening, each with its time.
    pub steps: &'static [(&'static str, &'static str)],
    /// Every running deadline afterwards: rule id and due time, by hand.
    pub armed: &'static [(&'static str, &'static str)],
}

/// Folds each case's events and compares the running deadlines with the row. Then, for every
/// running deadline, asks the aggregate to expire it and to apply the rule's automatic
/// outcome: a pack must never arm what the aggregate would refuse to fire.
pub fn check(cases: &[Case]) {
    for c in cases {
        let pack = pack(c.platform);
        let mut events = vec![(
            opened(c.platform, c.service, c.reason, c.signed_for, c.opened),
            t(c.opened),
        )];
        events.extend(c.steps.iter().map(|(name, at)| (ev(name), t(at))));
        let timers = Timers::fold(pack, cal(), events.iter().map(|(e, at)| (e, *at)));
        let mut got: Vec<(String, Timestamp)> = timers
            .armed()
            .map(|a| (a.deadline.rule_id.to_string(), a.deadline.due_at))
            .collect();
        got.sort();
        let mut want: Vec<(String, Timestamp)> = c
            .armed
            .iter()
            .map(|(rule, due)| (rule.to_string(), t(due)))
            .collect();
        want.sort();
        assert_eq!(got, want, "case: {}", c.name);
        for a in timers.armed() {
            fire(timers.ticket(), a, c.name);
        }
    }
}

fn fire(ticket: &Ticket, a: &aftersales_timers::ArmedDeadline, case: &str) {
    let ctx = Context::new(a.deadline.due_at, Actor::Platform);
    // The expiry and the rule's automatic outcome are one decision, as the scheduler sends it.
    let expire = Command::ExpireDeadline {
        deadline: a.deadline.clone(),
        outcome: a.auto_outcome(),
    };
    let events = decide(ticket, expire, &ctx).unwrap_or_else(|r| {
        panic!(
            "case {case}: the aggregate refuses the expiry with {:?}: {r}",
            a.auto_outcome()
        )
    });
    assert_eq!(events.len() > 1, a.auto_outcome().is_some(), "case {case}");
}
