//! Builders shared by the aggregate's tests: valid commands by name, tickets by path.
#![allow(dead_code)]

use aftersales_ticket::*;
use chrono::DateTime;

pub const PAID: Money = Money::from_cents(19_900);

pub fn at(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).expect("test timestamps are RFC 3339")
}

pub fn note(s: &str) -> Note {
    Note::parse(s).expect("test notes are not empty")
}

pub fn new_ticket(service_type: ServiceType) -> NewTicket {
    NewTicket {
        id: TicketId::parse("jd:100200300400500600").unwrap(),
        platform: Platform::Jd,
        platform_ticket_id: PlatformTicketId::parse("100200300400500600").unwrap(),
        order_id: OrderId::parse("300100200300").unwrap(),
        order_line_id: OrderLineId::parse("300100200300-1").unwrap(),
        sku: Some(Sku::parse("100012345678").unwrap()),
        amount_paid: PAID,
        refund_requested: None,
        customer_id: Some(CustomerId::parse("jd_c_8f3a").unwrap()),
        service_type,
        reason: Reason::QualityProblem,
        signed_for_at: None,
        order_shipped: Some(true),
    }
}

pub fn ctx() -> Context {
    Context::new(at("2026-11-20T10:00:00+08:00"), Actor::Merchant)
}

pub fn rule() -> RuleId {
    RuleId::parse("test.rule").unwrap()
}

/// The valid form of each command named in docs/TRANSITIONS.md.
pub fn canonical(name: &str, service_type: ServiceType) -> Command {
    let consent = Some(note("customer agreed on the phone, call #7"));
    let auto = |outcome| Command::ApplyPlatformOutcome {
        outcome,
        rule_id: rule(),
    };
    match name {
        "open" => Command::Open {
            ticket: Box::new(new_ticket(service_type)),
        },
        "approve" => Command::Approve {
            return_method: ReturnMethod::CustomerShips,
        },
        "reject" => Command::Reject {
            reason: Some(note("photos show wear from use")),
        },
        "ask_customer" => Command::AskCustomer { note: None },
        "customer_responded" => Command::CustomerResponded,
        "resubmit" => Command::Resubmit,
        "record_return_shipment" => Command::RecordReturnShipment {
            waybill: Some(Waybill::parse("JDV000123456789").unwrap()),
        },
        "confirm_receipt" => Command::ConfirmReceipt,
        "dispose_refund" => Command::Dispose {
            disposal: Disposal::Refund {
                amount: PAID,
                return_shipping: Money::from_cents(1_000),
                customer_consent: consent,
            },
        },
        "dispose_refund_without_return" => Command::Dispose {
            disposal: Disposal::RefundWithoutReturn {
                amount: PAID,
                customer_consent: consent,
            },
        },
        "dispose_exchange" => Command::Dispose {
            disposal: Disposal::Exchange {
                replacement_sku: None,
                customer_consent: consent,
            },
        },
        "dispose_offline_exchange" => Command::Dispose {
            disposal: Disposal::OfflineExchange {
                customer_consent: consent,
            },
        },
        "dispose_reissue_without_return" => Command::Dispose {
            disposal: Disposal::ReissueWithoutReturn {
                customer_consent: consent,
            },
        },
        "dispose_return_as_is" => Command::Dispose {
            disposal: Disposal::ReturnAsIs {
                conversation: Some(note("told the customer the seal was broken")),
            },
        },
        "dispose_repair_done" => Command::Dispose {
            disposal: Disposal::RepairDone {
                customer_consent: consent,
            },
        },
        "withdraw" => Command::Withdraw {
            confirmation: Some(note("customer confirmed in chat they keep the item")),
        },
        "request_intervention" => Command::RequestIntervention,
        "close_dispute" => Command::CloseDispute,
        "expire_deadline" => Command::ExpireDeadline {
            deadline: Deadline {
                kind: DeadlineKind::ComplaintReply,
                due_at: at("2026-11-20T13:00:00+08:00"),
                rule_id: rule(),
            },
            outcome: None,
        },
        "warn_deadline" => Command::WarnDeadline {
            deadline: Deadline {
                kind: DeadlineKind::ComplaintReply,
                due_at: at("2026-11-20T13:00:00+08:00"),
                rule_id: rule(),
            },
        },
        "auto_approve" => auto(AutoOutcome::Approve),
        "auto_refund" => auto(AutoOutcome::Refund),
        "auto_refund_without_return" => auto(AutoOutcome::RefundWithoutReturn),
        "auto_lapse" => auto(AutoOutcome::Lapse),
        "annotate" => Command::Annotate {
            note: note("audit: checked by supervisor"),
        },
        other => panic!("no canonical command named {other}"),
    }
}

/// Every command name the table has a column for.
pub const COMMANDS: [&str; 25] = [
    "open",
    "approve",
    "reject",
    "ask_customer",
    "customer_responded",
    "resubmit",
    "record_return_shipment",
    "confirm_receipt",
    "dispose_refund",
    "dispose_refund_without_return",
    "dispose_exchange",
    "dispose_offline_exchange",
    "dispose_reissue_without_return",
    "dispose_return_as_is",
    "dispose_repair_done",
    "withdraw",
    "request_intervention",
    "close_dispute",
    "expire_deadline",
    "warn_deadline",
    "auto_approve",
    "auto_refund",
    "auto_refund_without_return",
    "auto_lapse",
    "annotate",
];

/// Decides and applies each command in turn; every one must be accepted.
pub fn walk(service_type: ServiceType, path: &[&str]) -> (Ticket, Vec<Event>) {
    let mut ticket = Ticket::default();
    let mut history = Vec::new();
    for name in path {
        let events = decide(&ticket, canonical(name, service_type), &ctx())
            .unwrap_or_else(|r| panic!("path step {name} refused: {r}"));
        for e in &events {
            ticket = evolve(ticket, e);
        }
        history.extend(events);
    }
    (ticket, history)
}

pub fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::name).collect()
}
