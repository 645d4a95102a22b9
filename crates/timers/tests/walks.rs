//! Whole ticket lives: what each event arms and disarms, and deadlines that expire.

mod common;

use aftersales_ticket::{
    decide, Actor, Command, Context, Event, Reason::*, ServiceType::*, State, Ticket,
};
use aftersales_timers::{deadlines_after, Changes, Timers};
use common::{cal, ev, opened, pack, t};

fn ids(changes: &Changes) -> (Vec<&str>, Vec<&str>) {
    let armed = changes
        .armed
        .iter()
        .map(|a| a.deadline.rule_id.as_str())
        .collect();
    let disarmed = changes.disarmed.iter().map(|r| r.as_str()).collect();
    (armed, disarmed)
}

fn running(timers: &Timers) -> Vec<(String, String)> {
    timers
        .armed()
        .map(|a| {
            (
                a.deadline.rule_id.to_string(),
                a.deadline.due_at.to_rfc3339(),
            )
        })
        .collect()
}

/// JD return-refund with merchant pickup: opened → review; approved → pickup; received →
/// dispose; refunded → nothing.
#[test]
fn jd_return_refund_walk() {
    let pack = pack("jd");
    let mut timers = Timers::new();

    let open = opened("jd", ReturnRefund, QualityProblem, None, "2026-03-02 10:00");
    let c = timers.apply(pack, cal(), &open, t("2026-03-02 10:00"));
    assert_eq!(ids(&c), (vec!["jd.review"], vec![]));
    assert_eq!(
        running(&timers),
        [("jd.review".into(), "2026-03-04T10:00:00+08:00".into())]
    );

    let c = timers.apply(pack, cal(), &ev("approved_pickup"), t("2026-03-03 09:00"));
    let (armed, disarmed) = ids(&c);
    assert_eq!(armed, ["jd.pickup"]);
    assert!(disarmed.contains(&"jd.review"), "{disarmed:?}");
    assert_eq!(
        running(&timers),
        [("jd.pickup".into(), "2026-03-05T09:00:00+08:00".into())]
    );

    let c = timers.apply(pack, cal(), &ev("return_shipped"), t("2026-03-04 14:00"));
    assert_eq!(ids(&c), (vec![], vec!["jd.pickup"]));
    assert!(running(&timers).is_empty());

    let c = timers.apply(pack, cal(), &ev("goods_received"), t("2026-03-06 16:30"));
    assert_eq!(ids(&c).0, ["jd.dispose_after_receipt"]);
    assert_eq!(
        running(&timers),
        [(
            "jd.dispose_after_receipt".into(),
            "2026-03-08T16:30:00+08:00".into()
        )]
    );

    let c = timers.apply(pack, cal(), &ev("refunded"), t("2026-03-07 10:00"));
    assert!(ids(&c).1.contains(&"jd.dispose_after_receipt"));
    assert!(running(&timers).is_empty());
    assert_eq!(timers.ticket().state(), Some(State::Refunded));
}

/// Rebuilding from the log gives the same running deadlines as applying one by one.
#[test]
fn fold_equals_step_by_step() {
    let pack = pack("jd");
    let log = [
        (
            opened("jd", ReturnRefund, QualityProblem, None, "2026-03-02 10:00"),
            "2026-03-02 10:00",
        ),
        (ev("approved_pickup"), "2026-03-03 09:00"),
    ];
    let folded = Timers::fold(pack, cal(), log.iter().map(|(e, at)| (e, t(at))));
    let mut stepped = Timers::new();
    for (e, at) in &log {
        stepped.apply(pack, cal(), e, t(at));
    }
    assert_eq!(folded, stepped);
    assert_eq!(
        folded.next_due().unwrap().deadline.rule_id.as_str(),
        "jd.pickup"
    );
}

/// An expiry-only deadline: the aggregate records the breach, the timer forgets it by its
/// own `deadline_expired` event, and the ticket keeps waiting for the merchant.
#[test]
fn an_expired_deadline_is_disarmed_by_its_own_event() {
    let pack = pack("jd");
    let mut timers = Timers::new();
    let open = opened("jd", ReturnRefund, QualityProblem, None, "2026-03-02 10:00");
    timers.apply(pack, cal(), &open, t("2026-03-02 10:00"));

    assert!(timers.due_by(t("2026-03-04 09:59")).is_empty());
    let due = timers.due_by(t("2026-03-04 10:00"));
    assert_eq!(due.len(), 1);
    let deadline = due[0].deadline.clone();

    let ctx = Context::new(deadline.due_at, Actor::Platform);
    let events = decide(
        timers.ticket(),
        Command::ExpireDeadline {
            deadline,
            outcome: None,
        },
        &ctx,
    )
    .unwrap();
    for e in &events {
        let c = timers.apply(pack, cal(), e, deadline_time());
        assert_eq!(ids(&c).1, ["jd.review"]);
    }
    assert_eq!(timers.armed().count(), 0);
    assert_eq!(timers.ticket().state(), Some(State::PendingReview));
}

fn deadline_time() -> aftersales_ticket::Timestamp {
    t("2026-03-04 10:00")
}

/// JD refund-only, not shipped, across National Day 2026: the timer fires at 10-08 15:00,
/// the platform approves, the ticket completes, nothing runs any more.
#[test]
fn jd_refund_only_auto_approval_end_to_end() {
    let pack = pack("jd");
    let mut timers = Timers::new();
    let open = opened(
        "jd",
        RefundOnly,
        CancelBeforeShipment,
        None,
        "2026-09-30 15:00",
    );
    timers.apply(pack, cal(), &open, t("2026-09-30 15:00"));
    assert!(timers.due_by(t("2026-10-08 14:59")).is_empty());
    let fired = timers.due_by(t("2026-10-08 15:00"))[0].clone();
    let ctx = Context::new(fired.deadline.due_at, Actor::Platform);

    let log: Vec<Event> = decide(
        timers.ticket(),
        Command::ExpireDeadline {
            deadline: fired.deadline.clone(),
            outcome: fired.auto_outcome(),
        },
        &ctx,
    )
    .unwrap();
    for e in &log {
        timers.apply(pack, cal(), e, fired.deadline.due_at);
    }
    assert_eq!(timers.ticket().state(), Some(State::Completed));
    assert_eq!(timers.armed().count(), 0);
}

/// `deadlines_after` is a function of (pack, ticket before, event, time, calendar) only.
#[test]
fn deadlines_after_is_pure() {
    let pack = pack("jd");
    let open = opened(
        "jd",
        ReturnRefund,
        SevenDayNoReason,
        None,
        "2026-11-20 20:00",
    );
    let a = deadlines_after(
        pack,
        &Ticket::default(),
        &open,
        t("2026-11-20 20:00"),
        cal(),
    );
    let b = deadlines_after(
        pack,
        &Ticket::default(),
        &open,
        t("2026-11-20 20:00"),
        cal(),
    );
    assert_eq!(a, b);
    assert_eq!(a.armed[0].deadline.due_at, t("2026-11-21 20:00"));
    // The start of an `opened` deadline is the ticket's opened_at, not the time passed in.
    let late = deadlines_after(
        pack,
        &Ticket::default(),
        &open,
        t("2026-11-20 23:00"),
        cal(),
    );
    assert_eq!(late.armed[0].deadline.due_at, t("2026-11-21 20:00"));
    // A repeated `opened` restarts nothing.
    let open_ticket = Ticket::replay([&open]);
    let again = deadlines_after(pack, &open_ticket, &open, t("2026-11-21 19:00"), cal());
    assert!(again.is_empty());
    // An event on an unopened ticket changes nothing.
    let none = deadlines_after(
        pack,
        &Ticket::default(),
        &ev("approved"),
        t("2026-11-20 20:00"),
        cal(),
    );
    assert!(none.is_empty());
}

/// A warning is an alert, not a step of the ticket's flow: folding `deadline_warned` for a
/// running deadline arms nothing, disarms nothing and leaves the ticket as it was, in every
/// built-in pack and at every step of these walks.
#[test]
fn a_warning_arms_and_disarms_nothing() {
    let walks: [(
        aftersales_ticket::ServiceType,
        aftersales_ticket::Reason,
        &[&str],
    ); 5] = [
        (
            ReturnRefund,
            QualityProblem,
            &["approved_pickup", "goods_received"],
        ),
        (
            ReturnRefund,
            QualityProblem,
            &["approved", "return_shipped"],
        ),
        (
            RefundOnly,
            CancelBeforeShipment,
            &["customer_asked", "customer_responded"],
        ),
        (
            RepairSendIn,
            QualityProblem,
            &["approved", "goods_received"],
        ),
        (ReturnRefund, QualityProblem, &["rejected", "resubmitted"]),
    ];
    let mut warned = 0;
    for pack in common::book().packs() {
        let platform = pack
            .platform
            .as_ref()
            .map_or("own_shop".into(), |p| p.to_string());
        for (service, reason, steps) in walks {
            let mut timers = Timers::new();
            let open = opened(&platform, service, reason, None, "2026-03-02 10:00");
            let mut events = vec![open];
            events.extend(steps.iter().map(|s| ev(s)));
            for (i, event) in events.iter().enumerate() {
                let at = t("2026-03-02 10:00") + chrono::Duration::hours(i as i64);
                timers.apply(pack, cal(), event, at);
                let deadlines: Vec<_> = timers.armed().map(|a| a.deadline.clone()).collect();
                for deadline in deadlines {
                    let before = timers.clone();
                    let ctx = Context::new(at, Actor::Platform);
                    let events = decide(timers.ticket(), Command::WarnDeadline { deadline }, &ctx)
                        .expect("an armed deadline can be warned about");
                    assert_eq!(events[0].name(), "deadline_warned");
                    let c = timers.apply(pack, cal(), &events[0], at);
                    assert!(c.is_empty(), "{}: {c:?}", pack.id);
                    assert_eq!(timers, before, "{}: a warning changed the timers", pack.id);
                    warned += 1;
                }
            }
        }
    }
    assert!(
        warned > 20,
        "the walks warned about {warned} deadlines only"
    );
}
