//! Pinduoduo's rules (rules/packs/pdd.toml), one row per rule of RULES.md section 3
//! "Pinduoduo", due times by hand. Pinduoduo counts plain hours and days: holidays do not
//! move its deadlines.

mod common;

use aftersales_ticket::{AutoOutcome, Reason::*, ServiceType::*};
use aftersales_timers::Timers;
use common::{cal, check, ev, opened, pack, t, Case};

const PDD: &str = "pdd";

#[test]
fn pdd_rules() {
    check(&[
        // "Refund-only and return-refund: merchant handles within 48h, else the system
        // agrees ... and refunds" — through National Day, plain hours.
        Case {
            name: "refund-only 48h",
            platform: PDD,
            service: RefundOnly,
            reason: NotAsDescribed,
            signed_for: None,
            opened: "2026-09-30 15:00",
            steps: &[],
            armed: &[("pdd.refund_only.review", "2026-10-02 15:00")],
        },
        Case {
            name: "return-refund 48h",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[("pdd.return_refund.review", "2026-03-04 10:00")],
        },
        // "After a merchant refusal the customer has 7 days to change and resubmit, or to
        // ask the platform to intervene; otherwise the request lapses."
        Case {
            name: "refusal: customer has 7 days",
            platform: PDD,
            service: RefundOnly,
            reason: NotAsDescribed,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("rejected", "2026-03-03 10:00")],
            armed: &[("pdd.customer_resubmit", "2026-03-10 10:00")],
        },
        Case {
            name: "refusal then resubmission: the merchant's 48h again",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("rejected", "2026-03-03 10:00"),
                ("resubmitted", "2026-03-05 08:00"),
            ],
            armed: &[("pdd.return_refund.review", "2026-03-07 08:00")],
        },
        Case {
            name: "refusal then intervention: no lapse",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("rejected", "2026-03-03 10:00"),
                ("intervention_requested", "2026-03-04 10:00"),
            ],
            armed: &[],
        },
        // "After the merchant agrees to a return the customer must ship within 7 days".
        Case {
            name: "agreed: customer ships within 7 days",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("approved", "2026-03-03 10:00")],
            armed: &[("pdd.customer_ship_back", "2026-03-10 10:00")],
        },
        // C13: no ship-back clock when the merchant collects.
        Case {
            name: "agreed with pickup: no ship-back clock",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("approved_pickup", "2026-03-03 10:00")],
            armed: &[],
        },
        // "After the customer ships, the merchant has 7 days to confirm the refund or
        // refuse, else the system refunds."
        Case {
            name: "shipped: merchant confirms within 7 days",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-03 10:00"),
                ("return_shipped", "2026-03-04 18:00"),
            ],
            armed: &[("pdd.merchant_confirm_refund", "2026-03-11 18:00")],
        },
        // C14: the receipt does not stop it.
        Case {
            name: "received: the 7 days keep running",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-03 10:00"),
                ("return_shipped", "2026-03-04 18:00"),
                ("goods_received", "2026-03-06 09:00"),
            ],
            armed: &[("pdd.merchant_confirm_refund", "2026-03-11 18:00")],
        },
        Case {
            name: "refunded: nothing runs",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-03 10:00"),
                ("return_shipped", "2026-03-04 18:00"),
                ("refunded", "2026-03-05 09:00"),
            ],
            armed: &[],
        },
        // "The customer may withdraw at any step before the refund succeeds."
        Case {
            name: "withdrawn: nothing runs",
            platform: PDD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-03 10:00"),
                ("withdrawn", "2026-03-04 10:00"),
            ],
            armed: &[],
        },
        // C15: RULES.md gives Pinduoduo no exchange or repair deadline.
        Case {
            name: "exchange: no clock",
            platform: PDD,
            service: Exchange,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[],
        },
    ]);
}

#[test]
fn pdd_outcomes_are_the_platforms() {
    let pack = pack(PDD);
    let outcome = |rule: &str| {
        pack.rules
            .iter()
            .find(|r| r.id.as_str() == rule)
            .and_then(|r| r.expiry.auto_outcome())
    };
    assert_eq!(
        outcome("pdd.refund_only.review"),
        Some(AutoOutcome::Approve)
    );
    assert_eq!(
        outcome("pdd.return_refund.review"),
        Some(AutoOutcome::RefundWithoutReturn)
    );
    assert_eq!(outcome("pdd.customer_resubmit"), Some(AutoOutcome::Lapse));
    assert_eq!(outcome("pdd.customer_ship_back"), Some(AutoOutcome::Lapse));
    assert_eq!(
        outcome("pdd.merchant_confirm_refund"),
        Some(AutoOutcome::Refund)
    );
}

#[test]
fn the_ship_back_clock_becomes_the_confirm_clock() {
    let pack = pack(PDD);
    let mut timers = Timers::new();
    let open = opened(PDD, ReturnRefund, QualityProblem, None, "2026-03-02 10:00");
    timers.apply(pack, cal(), &open, t("2026-03-02 10:00"));
    timers.apply(pack, cal(), &ev("approved"), t("2026-03-03 10:00"));
    let changes = timers.apply(pack, cal(), &ev("return_shipped"), t("2026-03-04 18:00"));
    let disarmed: Vec<&str> = changes.disarmed.iter().map(|r| r.as_str()).collect();
    assert_eq!(disarmed, ["pdd.customer_ship_back"]);
    let armed: Vec<&str> = changes
        .armed
        .iter()
        .map(|a| a.deadline.rule_id.as_str())
        .collect();
    assert_eq!(armed, ["pdd.merchant_confirm_refund"]);
}
