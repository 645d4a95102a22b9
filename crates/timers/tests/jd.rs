//! JD's rules (rules/packs/jd.toml), one row per rule of RULES.md section 3 "JD", due times
//! worked out by hand. Calendar facts used: National Day 2026 is 10-01..07 off with Sunday
//! 09-20 and Saturday 10-10 worked; Spring Festival 2026 is 02-15..23 off with Saturdays
//! 02-14 and 02-28 worked; 2027 is not in the calendar (weekends only).

mod common;

use aftersales_ticket::{Reason::*, ServiceType::*};
use aftersales_timers::{deadlines_on, Timers, Trigger};
use common::{cal, check, ev, opened, pack, t, Case};

const JD: &str = "jd";

#[test]
fn jd_review_and_refund_only_rules() {
    check(&[
        // RULES.md §3 JD "Review: within 48h of the customer submitting the ticket".
        Case {
            name: "review 48h",
            platform: JD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: Some("2026-02-27 12:00"),
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[("jd.review", "2026-03-04 10:00")],
        },
        // Same line: "within 24h when the reason is seven-day no-reason" (issue example).
        Case {
            name: "seven-day no-reason review 24h",
            platform: JD,
            service: ReturnRefund,
            reason: SevenDayNoReason,
            signed_for: None,
            opened: "2026-11-20 20:00",
            steps: &[],
            armed: &[("jd.review.seven_day", "2026-11-21 20:00")],
        },
        // "Refund-only auto-approval: not shipped and untouched for more than 1 business
        // day" — across National Day 2026 (issue example).
        Case {
            name: "refund-only not shipped, before National Day",
            platform: JD,
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2026-09-30 15:00",
            steps: &[],
            armed: &[("jd.refund_only.not_shipped", "2026-10-08 15:00")],
        },
        // Same rule: Friday 2026-10-09 → the make-up Saturday 10-10 (issue example).
        Case {
            name: "refund-only not shipped, before a make-up Saturday",
            platform: JD,
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2026-10-09 10:00",
            steps: &[],
            armed: &[("jd.refund_only.not_shipped", "2026-10-10 10:00")],
        },
        // Same rule, opened on a Saturday: the first working day after it is Monday.
        Case {
            name: "refund-only not shipped, opened on a weekend",
            platform: JD,
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2026-03-07 09:30",
            steps: &[],
            armed: &[("jd.refund_only.not_shipped", "2026-03-09 09:30")],
        },
        // Same rule, Friday before Spring Festival 2026: Saturday 02-14 is a make-up day.
        Case {
            name: "refund-only not shipped, before Spring Festival",
            platform: JD,
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2026-02-13 18:00",
            steps: &[],
            armed: &[("jd.refund_only.not_shipped", "2026-02-14 18:00")],
        },
        // Same rule in 2027, a year the calendar does not know: weekends only, no panic.
        Case {
            name: "refund-only not shipped, 2027 fallback",
            platform: JD,
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2027-10-01 10:00",
            steps: &[],
            armed: &[("jd.refund_only.not_shipped", "2027-10-04 10:00")],
        },
        // "shipped and untouched for more than 7 days".
        Case {
            name: "refund-only shipped 7 days",
            platform: JD,
            service: RefundOnly,
            reason: NotAsDescribed,
            signed_for: Some("2026-03-01 12:00"),
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[("jd.refund_only.shipped", "2026-03-09 10:00")],
        },
        // C1: a cancellation reason with a recorded sign-for counts as shipped.
        Case {
            name: "refund-only, cancel reason but signed for",
            platform: JD,
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: Some("2026-03-01 12:00"),
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[("jd.refund_only.shipped", "2026-03-09 10:00")],
        },
        // "Pre-shipment cancellation: review within 24h" — plain hours, so across the
        // holiday it is 10-01 (contrast with the refund-only rule above).
        Case {
            name: "cancellation before shipment 24h",
            platform: JD,
            service: ReturnRefund,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2026-09-30 15:00",
            steps: &[],
            armed: &[("jd.cancel.before_shipment", "2026-10-01 15:00")],
        },
        // "Cancellation after shipment: review within 10 days".
        Case {
            name: "cancellation after shipment 10 days",
            platform: JD,
            service: ReturnRefund,
            reason: CancelBeforeShipment,
            signed_for: Some("2026-03-01 12:00"),
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[("jd.cancel.after_shipment", "2026-03-12 10:00")],
        },
        // C3: asking the customer is a review result; the answer starts a new 48h.
        Case {
            name: "review re-armed by the customer's answer",
            platform: JD,
            service: Exchange,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("customer_asked", "2026-03-02 12:00"),
                ("customer_responded", "2026-03-05 09:00"),
            ],
            armed: &[("jd.review", "2026-03-07 09:00")],
        },
        Case {
            name: "asking the customer stops the review",
            platform: JD,
            service: Exchange,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("customer_asked", "2026-03-02 12:00")],
            armed: &[],
        },
        // A rejection stops the review (JD has no resubmission clock); a resubmission is a
        // new submission.
        Case {
            name: "rejected then resubmitted",
            platform: JD,
            service: ReturnRefund,
            reason: SevenDayNoReason,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("rejected", "2026-03-02 11:00"),
                ("resubmitted", "2026-03-04 10:00"),
            ],
            armed: &[("jd.review.seven_day", "2026-03-05 10:00")],
        },
        Case {
            name: "intervention stops the review",
            platform: JD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("intervention_requested", "2026-03-03 10:00")],
            armed: &[],
        },
    ]);
}

#[test]
fn jd_return_and_repair_rules() {
    check(&[
        // "Pickup: when the merchant collects the goods, within 48h of processing".
        Case {
            name: "pickup 48h from approval",
            platform: JD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("approved_pickup", "2026-03-03 09:00")],
            armed: &[("jd.pickup", "2026-03-05 09:00")],
        },
        // The customer ships: JD has no clock on the customer.
        Case {
            name: "approved, customer ships",
            platform: JD,
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("approved", "2026-03-03 09:00")],
            armed: &[],
        },
        // "Dispose after receipt: within 48h of the merchant receiving the returned goods".
        Case {
            name: "dispose 48h after receipt",
            platform: JD,
            service: Exchange,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-03 09:00"),
                ("return_shipped", "2026-03-04 12:00"),
                ("goods_received", "2026-03-06 16:30"),
            ],
            armed: &[("jd.dispose_after_receipt", "2026-03-08 16:30")],
        },
        // "Repair, onsite: ticket finished within 7 days of submission" (and reviewed in 48h).
        Case {
            name: "onsite repair 7 days, review 48h",
            platform: JD,
            service: RepairOnsite,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[
                ("jd.review", "2026-03-04 10:00"),
                ("jd.repair.onsite", "2026-03-09 10:00"),
            ],
        },
        Case {
            name: "onsite repair keeps running after approval",
            platform: JD,
            service: RepairOnsite,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("approved", "2026-03-02 15:00")],
            armed: &[("jd.repair.onsite", "2026-03-09 10:00")],
        },
        Case {
            name: "onsite repair done",
            platform: JD,
            service: RepairOnsite,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-02 15:00"),
                ("repair_completed", "2026-03-04 15:00"),
            ],
            armed: &[],
        },
        // "Repair, send-in: within 30 days of receiving the goods".
        Case {
            name: "send-in repair 30 days from receipt",
            platform: JD,
            service: RepairSendIn,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-02 15:00"),
                ("return_shipped", "2026-03-03 10:00"),
                ("goods_received", "2026-03-05 11:00"),
            ],
            armed: &[("jd.repair.send_in", "2026-04-04 11:00")],
        },
    ]);
}

/// Violation appeal, complaint work order and mail: outside the ticket's events, armed by
/// `deadlines_on` with an external trigger.
#[test]
fn jd_external_rules() {
    let pack = pack(JD);
    let mut timers = Timers::new();
    let open = opened(JD, ReturnRefund, QualityProblem, None, "2026-11-20 10:00");
    timers.apply(pack, cal(), &open, t("2026-11-20 10:00"));
    let cases = [
        // "Violation appeal: within 7 days of a violation decision".
        (
            Trigger::ViolationDecided,
            "2026-11-20 10:00",
            "jd.violation_appeal",
            "2026-11-27 10:00",
        ),
        // "Complaint work order: reply within 3h".
        (
            Trigger::ComplaintReceived,
            "2026-11-20 10:00",
            "jd.complaint_reply",
            "2026-11-20 13:00",
        ),
        // "Mail: sent before 16:00 → answer by 18:00 the same day".
        (
            Trigger::MailReceived,
            "2026-11-20 15:59",
            "jd.mail_reply",
            "2026-11-20 18:00",
        ),
        // "sent after 16:00 → by 18:00 the next day": Friday → Saturday (C7).
        (
            Trigger::MailReceived,
            "2026-11-20 16:00",
            "jd.mail_reply",
            "2026-11-21 18:00",
        ),
    ];
    for (trigger, at, rule, due) in cases {
        let changes = deadlines_on(pack, timers.ticket(), trigger, t(at), cal());
        assert_eq!(changes.armed.len(), 1, "{trigger}");
        let a = &changes.armed[0];
        assert_eq!(
            (a.deadline.rule_id.as_str(), a.deadline.due_at),
            (rule, t(due))
        );
        assert_eq!(a.auto_outcome(), None);
    }
    // Timers keeps them; they stop when the ticket closes.
    timers.apply_external(
        pack,
        cal(),
        Trigger::ComplaintReceived,
        t("2026-11-20 10:00"),
    );
    assert!(timers
        .armed()
        .any(|a| a.deadline.rule_id.as_str() == "jd.complaint_reply"));
    timers.apply(pack, cal(), &ev("withdrawn"), t("2026-11-20 11:00"));
    assert_eq!(timers.armed().count(), 0);
    // An event trigger through deadlines_on arms nothing.
    let changes = deadlines_on(
        pack,
        timers.ticket(),
        Trigger::Opened,
        t("2026-11-20 10:00"),
        cal(),
    );
    assert!(changes.is_empty());
}
