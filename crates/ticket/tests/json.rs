//! The JSON form of commands and events is what the API and exports show: it must round-trip
//! and keep its shape.

mod support;

use aftersales_ticket::*;
use serde_json::json;
use support::*;

#[test]
fn every_command_round_trips_through_json() {
    for service_type in ServiceType::ALL {
        for name in COMMANDS {
            let command = canonical(name, service_type);
            let text = serde_json::to_string(&command).unwrap();
            let back: Command = serde_json::from_str(&text).unwrap();
            assert_eq!(back, command, "{text}");
        }
    }
}

#[test]
fn every_event_round_trips_through_json() {
    let paths: [(ServiceType, &[&str]); 6] = [
        (
            ServiceType::ReturnRefund,
            &[
                "open",
                "ask_customer",
                "customer_responded",
                "reject",
                "resubmit",
                "approve",
                "record_return_shipment",
                "confirm_receipt",
                "expire_deadline",
                "warn_deadline",
                "dispose_refund",
                "annotate",
            ],
        ),
        (ServiceType::RefundOnly, &["open", "approve"]),
        (
            ServiceType::Exchange,
            &["open", "request_intervention", "dispose_exchange"],
        ),
        (
            ServiceType::RepairSendIn,
            &["open", "approve", "confirm_receipt", "dispose_return_as_is"],
        ),
        (
            ServiceType::RepairOnsite,
            &["open", "approve", "dispose_repair_done"],
        ),
        (ServiceType::ReturnRefund, &["open", "reject", "auto_lapse"]),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (service_type, path) in paths {
        let (_, events) = walk(service_type, path);
        for event in events {
            let text = serde_json::to_string(&event).unwrap();
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event, "{text}");
            seen.insert(event.name());
        }
    }
    let (_, more) = walk(ServiceType::ReturnRefund, &["open", "withdraw"]);
    let (_, dispute) = walk(
        ServiceType::ReturnRefund,
        &["open", "request_intervention", "close_dispute"],
    );
    seen.extend(names(&more));
    seen.extend(names(&dispute));
    assert_eq!(seen.len(), 20, "every event variant was covered: {seen:?}");
}

#[test]
fn the_json_shape_is_tagged_snake_case_with_cents_and_offsets() {
    let (_, events) = walk(
        ServiceType::ReturnRefund,
        &["open", "approve", "confirm_receipt", "dispose_refund"],
    );
    assert_eq!(
        serde_json::to_value(&events[0]).unwrap()["opened_at"],
        json!("2026-11-20T10:00:00+08:00")
    );
    assert_eq!(
        serde_json::to_value(&events[3]).unwrap(),
        json!({
            "type": "refunded",
            "amount": 19900,
            "return_shipping": 1000,
            "deduction": 0,
            "customer_consent": "customer agreed on the phone, call #7",
            "by": "merchant",
            "rule_id": null
        })
    );
    let reject: Result<Command, _> =
        serde_json::from_value(json!({"type": "reject", "reason": "   "}));
    assert!(
        reject.is_err(),
        "a blank note is not accepted from JSON either"
    );
    let bad_id: Result<TicketId, _> = serde_json::from_value(json!("../etc/passwd"));
    assert!(bad_id.is_err());
}

#[test]
fn rejections_serialize_with_their_stable_code() {
    let (pending, _) = walk(ServiceType::ReturnRefund, &["open"]);
    let r = decide(&pending, Command::Reject { reason: None }, &ctx()).unwrap_err();
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"code": "rejection_without_reason"})
    );
    assert_eq!(
        r.to_string(),
        "rejection refused: a rejection must state its reason"
    );
}

#[test]
fn money_parses_platform_yuan_strings_exactly() {
    assert_eq!(
        Money::parse_yuan("100.00").unwrap(),
        Money::from_cents(10_000)
    );
    assert_eq!(Money::parse_yuan("0.5").unwrap(), Money::from_cents(50));
    assert_eq!(Money::parse_yuan("12").unwrap(), Money::from_cents(1_200));
    for bad in [
        "",
        "-1",
        "1.234",
        "1e3",
        "abc",
        ".5",
        "99999999999999999999",
    ] {
        assert!(Money::parse_yuan(bad).is_err(), "{bad}");
    }
    assert_eq!(Money::from_cents(19_905).to_string(), "¥199.05");
}
