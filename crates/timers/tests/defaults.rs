//! Tmall/Taobao, Douyin and merchant-defined platforms: the generic pack with JD's numbers,
//! marked as defaults (RULES.md section 3, "Tmall/Taobao and Douyin"); and Kuaishou's one
//! rule (RULES.md section 3, "Kuaishou").

mod common;

use aftersales_ticket::{Reason::*, ServiceType::*};
use aftersales_timers::{deadlines_after, Timers, Trigger};
use common::{book, cal, check, ev, opened, pack, t, Case};

#[test]
fn default_rules_take_jds_numbers() {
    check(&[
        // jd.review's 48h.
        Case {
            name: "tmall review, JD default",
            platform: "tmall",
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[("generic.review", "2026-03-04 10:00")],
        },
        // "taobao" is read as tmall.
        Case {
            name: "taobao seven-day review, JD default",
            platform: "taobao",
            service: ReturnRefund,
            reason: SevenDayNoReason,
            signed_for: None,
            opened: "2026-11-20 20:00",
            steps: &[],
            armed: &[("generic.review.seven_day", "2026-11-21 20:00")],
        },
        // jd.refund_only.not_shipped's 1 business day, across National Day.
        Case {
            name: "douyin refund-only not shipped, JD default",
            platform: "douyin",
            service: RefundOnly,
            reason: CancelBeforeShipment,
            signed_for: None,
            opened: "2026-09-30 15:00",
            steps: &[],
            armed: &[("generic.refund_only.not_shipped", "2026-10-08 15:00")],
        },
        // jd.dispose_after_receipt's 48h.
        Case {
            name: "douyin dispose after receipt, JD default",
            platform: "douyin",
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[
                ("approved", "2026-03-03 09:00"),
                ("goods_received", "2026-03-06 16:30"),
            ],
            armed: &[("generic.dispose_after_receipt", "2026-03-08 16:30")],
        },
        // A merchant-defined platform without a pack uses the generic one.
        Case {
            name: "own shop pickup, JD default",
            platform: "myshop",
            service: Exchange,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[("approved_pickup", "2026-03-03 09:00")],
            armed: &[("generic.pickup", "2026-03-05 09:00")],
        },
        // Kuaishou: RULES.md has one rule, armed outside the events (below); no default.
        Case {
            name: "kuaishou has no event-armed clock",
            platform: "kuaishou",
            service: ReturnRefund,
            reason: QualityProblem,
            signed_for: None,
            opened: "2026-03-02 10:00",
            steps: &[],
            armed: &[],
        },
    ]);
}

#[test]
fn defaults_are_marked_and_decide_nothing() {
    for platform in ["tmall", "douyin", "myshop"] {
        let pack = pack(platform);
        let open = opened(
            platform,
            RefundOnly,
            CancelBeforeShipment,
            None,
            "2026-09-30 15:00",
        );
        let timers = Timers::fold(pack, cal(), [(&open, t("2026-09-30 15:00"))]);
        let armed: Vec<_> = timers.armed().collect();
        assert_eq!(armed.len(), 1, "{platform}");
        assert!(armed[0].is_default(), "{platform}");
        assert_eq!(armed[0].default_from.as_ref().unwrap().as_str(), "jd@2024");
        assert_eq!(armed[0].auto_outcome(), None, "C8: {platform}");
        let json = serde_json::to_value(armed[0]).unwrap();
        assert_eq!(json["default_from"], "jd@2024");
        assert_eq!(json["deadline"]["kind"], "refund_only_auto_approve");
    }
    // JD's own deadline is not a default.
    let jd = pack("jd");
    let open = opened(
        "jd",
        RefundOnly,
        CancelBeforeShipment,
        None,
        "2026-09-30 15:00",
    );
    let timers = Timers::fold(jd, cal(), [(&open, t("2026-09-30 15:00"))]);
    assert!(!timers.armed().next().unwrap().is_default());
}

#[test]
fn the_platforms_own_time_is_reported() {
    for (platform, rule) in [
        ("tmall", "tmall.refund_timeout"),
        ("douyin", "douyin.status_deadline"),
    ] {
        let pack = pack(platform);
        let open = opened(
            platform,
            ReturnRefund,
            QualityProblem,
            None,
            "2026-03-02 10:00",
        );
        let before = aftersales_ticket::Ticket::default();
        let changes = deadlines_after(pack, &before, &open, t("2026-03-02 10:00"), cal());
        let given: Vec<&str> = changes.platform_given.iter().map(|r| r.as_str()).collect();
        assert_eq!(given, [rule]);
        let armed: Vec<&str> = changes
            .armed
            .iter()
            .map(|a| a.deadline.rule_id.as_str())
            .collect();
        assert_eq!(armed, ["generic.review"]);
    }
}

#[test]
fn every_platform_finds_its_pack() {
    let id = |p: &str| book().pack_for(&p.parse().unwrap()).unwrap().id.to_string();
    assert_eq!(id("jd"), "jd@2024");
    assert_eq!(id("tmall"), "tmall@2024");
    assert_eq!(id("taobao"), "tmall@2024");
    assert_eq!(id("pdd"), "pdd@2024");
    assert_eq!(id("pinduoduo"), "pdd@2024");
    assert_eq!(id("kuaishou"), "kuaishou@2024");
    assert_eq!(id("douyin"), "douyin@2024");
    assert_eq!(id("myshop"), "generic@2024");
}

/// RULES.md §3 Kuaishou: "a ticket a service agent pre-fills for the customer must be
/// confirmed by the customer within 24h, else it lapses".
#[test]
fn kuaishou_prefilled_ticket_lapses_after_24h() {
    let pack = pack("kuaishou");
    let mut timers = Timers::new();
    let open = opened("kuaishou", RefundOnly, Other, None, "2026-03-02 10:00");
    timers.apply(pack, cal(), &open, t("2026-03-02 10:00"));
    timers.apply(pack, cal(), &ev("customer_asked"), t("2026-03-02 10:00"));
    let changes =
        timers.apply_external(pack, cal(), Trigger::AgentPrefilled, t("2026-03-02 10:00"));
    let a = &changes.armed[0];
    assert_eq!(a.deadline.rule_id.as_str(), "kuaishou.customer_confirm");
    assert_eq!(a.deadline.due_at, t("2026-03-03 10:00"));
    assert_eq!(
        a.auto_outcome(),
        Some(aftersales_ticket::AutoOutcome::Lapse)
    );
    // The aggregate accepts the lapse in awaiting_customer (C16).
    let ctx =
        aftersales_ticket::Context::new(a.deadline.due_at, aftersales_ticket::Actor::Platform);
    let lapse = aftersales_ticket::Command::ApplyPlatformOutcome {
        outcome: aftersales_ticket::AutoOutcome::Lapse,
        rule_id: a.deadline.rule_id.clone(),
    };
    assert!(aftersales_ticket::decide(timers.ticket(), lapse, &ctx).is_ok());
    // The customer's confirmation stops it.
    timers.apply(
        pack,
        cal(),
        &ev("customer_responded"),
        t("2026-03-02 20:00"),
    );
    assert_eq!(timers.armed().count(), 0);
}
