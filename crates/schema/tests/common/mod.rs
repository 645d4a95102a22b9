//! Envelopes shared by the tests: one or more of every event variant, every enum value, and
//! every optional field both set and unset.

#![allow(dead_code)]

use aftersales_schema::EventEnvelope;
use aftersales_ticket::{
    Actor, CustomerId, Deadline, DeadlineKind, Event, ExchangeMethod, Money, Note, Opened, OrderId,
    OrderLineId, Platform, PlatformTicketId, Reason, ReturnMethod, RuleId, ServiceType, Sku,
    TicketId, Timestamp, Waybill,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub fn at(rfc3339: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(rfc3339).expect("a valid RFC 3339 time")
}

pub fn utc(rfc3339: &str) -> DateTime<Utc> {
    at(rfc3339).with_timezone(&Utc)
}

pub fn note(s: &str) -> Note {
    Note::parse(s).expect("a valid note")
}

pub fn rule(s: &str) -> RuleId {
    RuleId::parse(s).expect("a valid rule id")
}

fn opened(n: u32, platform: Platform, service_type: ServiceType, reason: Reason) -> Opened {
    let id = TicketId::for_platform(&platform, &format!("{}", 1000 + n)).unwrap();
    Opened {
        id,
        platform,
        platform_ticket_id: PlatformTicketId::parse(&format!("{}", 1000 + n)).unwrap(),
        order_id: OrderId::parse(&format!("3{n:018}")).unwrap(),
        order_line_id: OrderLineId::parse(&format!("3{n:018}-1")).unwrap(),
        sku: Some(Sku::parse(&format!("SKU-{n}-RED-M")).unwrap()),
        amount_paid: Money::from_cents(19_900 + u64::from(n)),
        refund_requested: Money::from_cents(19_900 - u64::from(n) * 100),
        customer_id: Some(CustomerId::parse(&format!("c-{n}")).unwrap()),
        service_type,
        reason,
        signed_for_at: n.is_multiple_of(2).then(|| at("2026-11-18T14:03:00+08:00")),
        opened_at: at("2026-11-20T20:00:00+08:00"),
        // Fields added after v1 was frozen: v1 wrote none of them.
        order_shipped: None,
        rule_pack: None,
    }
}

/// The envelopes the v1 fixture was written from (`AFTERSALES_WRITE_FIXTURE=1`). The fixture
/// test reads the frozen files, not this list: editing the list later only changes what the
/// round-trip tests cover.
pub fn fixture_envelopes() -> Vec<EventEnvelope> {
    let platforms = [
        Platform::Jd,
        Platform::Tmall,
        Platform::Pdd,
        Platform::Kuaishou,
        Platform::Douyin,
        "own_shop".parse::<Platform>().unwrap(),
        Platform::Jd,
    ];
    let service_types = [
        ServiceType::ReturnRefund,
        ServiceType::Exchange,
        ServiceType::RepairOnsite,
        ServiceType::RepairSendIn,
        ServiceType::RefundOnly,
        ServiceType::ReturnRefund,
        ServiceType::Exchange,
    ];
    let reasons = [
        Reason::SevenDayNoReason,
        Reason::QualityProblem,
        Reason::NotAsDescribed,
        Reason::WrongOrMissingItem,
        Reason::DamagedInTransit,
        Reason::CancelBeforeShipment,
        Reason::Other,
    ];

    let mut events: Vec<Event> = Vec::new();
    for n in 0..7 {
        events.push(Event::Opened(Box::new(opened(
            n as u32,
            platforms[n].clone(),
            service_types[n],
            reasons[n],
        ))));
    }
    events.extend([
        Event::Approved {
            return_method: ReturnMethod::CustomerShips,
            by: Actor::Merchant,
            rule_id: None,
        },
        Event::Approved {
            return_method: ReturnMethod::MerchantPickup,
            by: Actor::Platform,
            rule_id: Some(rule("jd.review.auto_approve_48h")),
        },
        Event::Rejected {
            reason: note("商品已拆封使用，不符合七天无理由退货条件"),
        },
        Event::CustomerAsked {
            note: Some(note("please send a photo of the damaged box")),
        },
        Event::CustomerAsked { note: None },
        Event::CustomerResponded,
        Event::Resubmitted,
        Event::ReturnShipped {
            waybill: Some(Waybill::parse("SF1234567890123").unwrap()),
        },
        Event::ReturnShipped { waybill: None },
        Event::GoodsReceived,
        Event::Refunded {
            amount: Money::from_cents(19_900),
            return_shipping: Money::from_cents(1_200),
            deduction: Money::ZERO,
            customer_consent: None,
            by: Actor::Merchant,
            rule_id: None,
        },
        Event::Refunded {
            amount: Money::from_cents(15_000),
            return_shipping: Money::ZERO,
            deduction: Money::from_cents(4_900),
            customer_consent: Some(note("客户同意扣除包装损耗 49 元")),
            by: Actor::Platform,
            rule_id: Some(rule("tmall.refund.auto_after_receipt")),
        },
        Event::RefundedWithoutReturn {
            amount: Money::from_cents(9_900),
            deduction: Money::ZERO,
            customer_consent: None,
            by: Actor::Platform,
            rule_id: Some(rule("pdd.refund_only.auto_approve")),
        },
        Event::RefundedWithoutReturn {
            amount: Money::from_cents(u64::MAX),
            deduction: Money::from_cents(1),
            customer_consent: Some(note("consent recorded on the phone")),
            by: Actor::Customer,
            rule_id: None,
        },
        Event::Exchanged {
            method: ExchangeMethod::Replacement,
            replacement_sku: Some(Sku::parse("SKU-0-BLUE-L").unwrap()),
            customer_consent: Some(note("customer asked for blue, size L")),
            by: Actor::Merchant,
        },
        Event::Exchanged {
            method: ExchangeMethod::Offline,
            replacement_sku: Some(Sku::parse("SKU-1-RED-M").unwrap()),
            customer_consent: None,
            by: Actor::Merchant,
        },
        Event::Exchanged {
            method: ExchangeMethod::ReissueWithoutReturn,
            replacement_sku: Some(Sku::parse("SKU-2-RED-M").unwrap()),
            customer_consent: None,
            by: Actor::Platform,
        },
        Event::ReturnedAsIs {
            conversation: note("told the customer the seal was broken; goods sent back"),
            by: Actor::Merchant,
        },
        Event::RepairCompleted {
            customer_consent: Some(note("customer confirmed the repair")),
            by: Actor::Merchant,
        },
        Event::RepairCompleted {
            customer_consent: None,
            by: Actor::Platform,
        },
        Event::Withdrawn {
            confirmation: note("客户来电确认取消售后"),
        },
        Event::InterventionRequested {
            by: Actor::Customer,
        },
        Event::InterventionRequested {
            by: Actor::Merchant,
        },
        Event::DisputeClosed,
    ]);
    // One deadline of every kind.
    let deadlines = || {
        DeadlineKind::ALL
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Deadline {
                kind,
                due_at: at(&format!("2026-11-{:02}T20:00:00+08:00", 21 + i % 7)),
                rule_id: rule(&format!("rules.{}", kind.as_str())),
            })
    };
    events.extend(deadlines().map(|deadline| Event::DeadlineExpired { deadline }));
    events.extend([
        Event::Lapsed {
            rule_id: rule("kuaishou.resubmit.lapse_7d"),
        },
        Event::Annotated {
            note: note("called the customer, will ship tomorrow"),
            by: Actor::Merchant,
        },
        Event::Annotated {
            note: note("a platform note"),
            by: Actor::Platform,
        },
    ]);
    // Event types added after v1 was frozen, last so the v1 envelopes keep their places.
    events.extend(deadlines().map(|deadline| Event::DeadlineWarned { deadline }));

    // Envelope variety: offsets (+08:00, UTC, +05:45, -03:30), sub-second times, and each
    // optional header both set and unset.
    let occurred = [
        "2026-11-20T20:00:00+08:00",
        "2026-11-20T12:00:00.123456789Z",
        "2026-11-21T09:15:30.5+05:45",
        "1969-12-31T20:29:59.999999-03:30",
        "2026-11-22T08:00:00.000001+08:00",
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let ticket_id = match &event {
                Event::Opened(o) => o.id.clone(),
                _ => TicketId::parse(&format!("jd:{}", 5000 + i % 4)).unwrap(),
            };
            EventEnvelope {
                event_id: Uuid::from_u128(0x0193_5f1e_7c00_7000_8000_0000_0000_0000 + i as u128),
                ticket_id,
                schema_version: aftersales_schema::CURRENT_SCHEMA_VERSION,
                occurred_at: at(occurred[i % occurred.len()]),
                recorded_at: (i % 3 == 0).then(|| {
                    utc("2026-11-20T12:00:01.000002Z") + chrono::Duration::seconds(i as i64)
                }),
                source_message_id: (i % 2 == 0).then(|| format!("tmc-msg-{}", 90_000 + i)),
                causation_id: (i % 4 == 1).then(|| Uuid::from_u128(0xC0FFEE + i as u128)),
                event,
            }
        })
        .collect()
}

/// The JSON of a value, which (unlike chrono's `PartialEq`) shows the offsets of timestamps.
pub fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("envelopes serialize")
}
