//! The read models over a real sled store, fed by the real command handler and scheduler,
//! with figures computed by hand from the timeline below (JD pack: review 48h, dispose
//! 48h after receipt, refund-only shipped: auto-approve after 7 days).

use std::path::Path;
use std::sync::Arc;

use aftersales_app::{Submission, Tickets};
use aftersales_clock::ManualClock;
use aftersales_scheduler::Scheduler;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::*;
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::{AlertKind, ListQuery, Loaded, SharedViews, SlaQuery, Views};
use chrono::{DateTime, Utc};

fn at(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    at(s).to_utc()
}

fn tid(s: &str) -> TicketId {
    TicketId::parse(s).unwrap()
}

fn open_store(dir: &Path) -> Arc<Store> {
    let clock = ManualClock::new(utc("2026-01-01T00:00:00Z"));
    Arc::new(Store::open(dir, StoreConfig::new(Arc::new(clock))).unwrap())
}

/// The read models over `store` with their checkpoint at `path`, caught up.
fn shared(store: &Arc<Store>, path: &Path) -> (SharedViews, Loaded) {
    SharedViews::open(
        store.clone(),
        path.to_owned(),
        RuleBook::builtin(),
        Calendar::builtin(),
    )
    .unwrap()
}

/// The checkpoint at `path` as `store`'s read models would load it (not caught up).
fn load(store: &Store, path: &Path) -> (Views, Loaded) {
    aftersales_views::load(store, path, RuleBook::builtin(), Calendar::builtin()).unwrap()
}

fn submit(tickets: &Tickets, ticket: &str, command: Command, when: &str, actor: Actor) {
    let key = format!("{ticket}/{}/{when}", command.name());
    tickets
        .handle(Submission {
            ticket_id: tid(ticket),
            command,
            at: at(when),
            actor,
            idempotency_key: Some(key),
            causation_id: None,
        })
        .unwrap();
}

fn open(tickets: &Tickets, ticket: &str, service_type: ServiceType, when: &str) {
    let (platform, number) = ticket.split_once(':').unwrap();
    let new = NewTicket {
        id: tid(ticket),
        platform: platform.parse().unwrap(),
        platform_ticket_id: PlatformTicketId::parse(number).unwrap(),
        order_id: OrderId::parse(&format!("O-{number}")).unwrap(),
        order_line_id: OrderLineId::parse(&format!("O-{number}-1")).unwrap(),
        sku: None,
        amount_paid: Money::from_cents(10_000),
        refund_requested: None,
        customer_id: Some(CustomerId::parse("c-1").unwrap()),
        service_type,
        reason: Reason::QualityProblem,
        signed_for_at: None,
        order_shipped: Some(true),
    };
    let command = Command::Open {
        ticket: Box::new(new),
    };
    submit(tickets, ticket, command, when, Actor::Customer);
}

fn approve() -> Command {
    Command::Approve {
        return_method: ReturnMethod::CustomerShips,
    }
}

/// Days 20–22 of the timeline; returns the scheduler for the rest.
fn first_part(tickets: &Arc<Tickets>) -> Scheduler {
    let scheduler =
        Scheduler::start(tickets.clone(), RuleBook::builtin(), Calendar::builtin()).unwrap();
    for t in ["jd:1", "jd:2"] {
        open(
            tickets,
            t,
            ServiceType::ReturnRefund,
            "2026-11-20T10:00:00+08:00",
        );
    }
    open(
        tickets,
        "jd:3",
        ServiceType::RefundOnly,
        "2026-11-20T10:00:00+08:00",
    );
    open(
        tickets,
        "tmall:7",
        ServiceType::ReturnRefund,
        "2026-11-20T10:00:00+08:00",
    );
    // jd:1 reviewed in 2h: review met.
    submit(
        tickets,
        "jd:1",
        approve(),
        "2026-11-20T12:00:00+08:00",
        Actor::Merchant,
    );
    let ship = Command::RecordReturnShipment { waybill: None };
    submit(
        tickets,
        "jd:1",
        ship,
        "2026-11-21T09:00:00+08:00",
        Actor::Customer,
    );
    // jd:2's review passes untouched: a breach (deadline only, no automatic outcome).
    scheduler
        .fire_due(utc("2026-11-22T10:00:00+08:00"))
        .unwrap();
    submit(
        tickets,
        "jd:1",
        Command::ConfirmReceipt,
        "2026-11-22T10:00:00+08:00",
        Actor::Merchant,
    );
    submit(
        tickets,
        "jd:2",
        approve(),
        "2026-11-22T12:00:00+08:00",
        Actor::Merchant,
    );
    // jd:1 disposed 3h after receipt: dispose met; handling 2h + 3h.
    let refund = Command::Dispose {
        disposal: Disposal::Refund {
            amount: Money::from_cents(10_000),
            return_shipping: Money::ZERO,
            customer_consent: None,
        },
    };
    submit(
        tickets,
        "jd:1",
        refund,
        "2026-11-22T13:00:00+08:00",
        Actor::Merchant,
    );
    scheduler
}

/// Days 25–27: three new JD tickets, and jd:3's refund-only clock passes (the platform
/// approves and refunds by itself at 11-27 10:00).
fn second_part(tickets: &Arc<Tickets>, scheduler: &Scheduler) {
    open(
        tickets,
        "jd:4",
        ServiceType::Exchange,
        "2026-11-25T12:30:00+08:00",
    );
    open(
        tickets,
        "jd:6",
        ServiceType::ReturnRefund,
        "2026-11-26T06:00:00+08:00",
    );
    open(
        tickets,
        "jd:5",
        ServiceType::ReturnRefund,
        "2026-11-26T20:00:00+08:00",
    );
    scheduler
        .fire_due(utc("2026-11-27T12:00:00+08:00"))
        .unwrap();
}

const NOW: &str = "2026-11-27T12:00:00+08:00";

fn jd() -> Option<Platform> {
    Some(Platform::Jd)
}

fn ids(views: &Views, q: ListQuery) -> (Vec<String>, Option<String>) {
    let page = views.list(&q);
    (
        page.tickets.iter().map(|r| r.id.to_string()).collect(),
        page.next.map(|c| c.to_string()),
    )
}

fn check_figures(views: &Views) {
    let sla = views.sla(
        &SlaQuery {
            platform: jd(),
            ..SlaQuery::default()
        },
        utc(NOW),
    );
    assert_eq!(sla.tickets, 6);
    assert_eq!(sla.by_state[&State::Refunded], 1, "jd:1");
    // Refund without return is booked as 暂完结 (RULES.md 2).
    assert_eq!(
        sla.by_state[&State::Completed],
        1,
        "jd:3, refunded by the platform"
    );
    assert_eq!(sla.by_state[&State::AwaitingReturn], 1);
    assert_eq!(sla.by_state[&State::PendingReview], 3);
    assert_eq!(sla.by_state[&State::Received], 0);
    // jd:4 due 11-27 12:30 (30 min), jd:6 due 11-28 06:00 (18h), jd:5 due 11-28 20:00 (32h).
    assert_eq!(
        (sla.due_within_1h, sla.due_within_24h, sla.overdue),
        (1, 2, 0)
    );
    assert_eq!(sla.breached, 2);
    assert_eq!(sla.breached_by_kind[&DeadlineKind::Review], 1);
    assert_eq!(
        sla.breached_by_kind[&DeadlineKind::RefundOnlyAutoApprove],
        1
    );
    assert_eq!(sla.met, 2);
    assert_eq!(sla.met_pct, Some(50.0));
    // jd:1 5h; jd:3 168h (opened 11-20 10:00, approved by the platform 11-27 10:00).
    assert_eq!(sla.handling.tickets, 2);
    assert_eq!(sla.handling.mean_hours, Some(86.5));
    assert_eq!(sla.handling.p90_hours, Some(168.0));
    assert_eq!(sla.handling.within_6h_pct, Some(50.0));
    assert_eq!(sla.auto_outcomes.get(&AutoOutcome::Approve), Some(&1));
    assert_eq!(sla.auto_outcomes.len(), 1);

    // Without a range the dashboard sums running totals, with one it scans the rows: both
    // must give the same figures at any `now` (before, between and after the deadlines).
    let ever = Some(utc("2000-01-01T00:00:00Z"));
    for now in [
        NOW,
        "2026-11-20T10:00:00+08:00",
        "2026-11-27T12:30:00+08:00",
        "2026-11-28T06:00:00+08:00",
        "2026-12-30T00:00:00+08:00",
    ] {
        for platform in [None, jd(), Some(Platform::Tmall), Some(Platform::Pdd)] {
            let q = SlaQuery {
                platform: platform.clone(),
                ..SlaQuery::default()
            };
            let scan = SlaQuery {
                platform,
                from: ever,
                to: None,
            };
            assert_eq!(
                views.sla(&q, utc(now)),
                views.sla(&scan, utc(now)),
                "at {now}"
            );
        }
    }

    let recent = views.sla(
        &SlaQuery {
            platform: jd(),
            from: Some(utc("2026-11-25T00:00:00+08:00")),
            to: Some(utc("2026-11-26T20:00:00+08:00")),
        },
        utc(NOW),
    );
    assert_eq!(
        recent.tickets, 2,
        "jd:4 and jd:6; jd:5 opened at `to`, which is excluded"
    );
    assert_eq!(recent.met_pct, None);
    assert_eq!(recent.handling.tickets, 0);
    assert_eq!(views.sla(&SlaQuery::default(), utc(NOW)).tickets, 7);

    // The list: by next due time, then the tickets with nothing due, by id.
    let q = |after: Option<&str>| ListQuery {
        platform: jd(),
        limit: 2,
        after: after.map(|c| c.parse().unwrap()),
        ..ListQuery::default()
    };
    let (page1, next1) = ids(views, q(None));
    assert_eq!(page1, ["jd:4", "jd:6"]);
    let (page2, next2) = ids(views, q(next1.as_deref()));
    assert_eq!(page2, ["jd:5", "jd:1"]);
    let (page3, next3) = ids(views, q(next2.as_deref()));
    assert_eq!(page3, ["jd:2", "jd:3"]);
    assert_eq!(next3, None);
    let due = ListQuery {
        due_before: Some(utc("2026-11-28T07:00:00+08:00")),
        limit: 50,
        ..ListQuery::default()
    };
    assert_eq!(ids(views, due).0, ["jd:4", "jd:6"]);
    let pending = ListQuery {
        state: Some(State::PendingReview),
        platform: jd(),
        limit: 50,
        ..ListQuery::default()
    };
    assert_eq!(ids(views, pending).0, ["jd:4", "jd:6", "jd:5"]);

    // Alerts: the two JD expiries, and jd:4's warning (due 12:30, inside its 2h window at
    // 12:00); jd:6 (due 11-28 06:00) is not in its window yet.
    let expired: Vec<String> = views
        .alerts(Some("jd"), Some(AlertKind::Expired), 50)
        .iter()
        .map(|a| a.ticket.to_string())
        .collect();
    assert_eq!(expired, ["jd:3", "jd:2"], "newest first");
    let warned = views.alerts(Some("jd"), Some(AlertKind::Warning), 50);
    assert_eq!(warned.len(), 1);
    assert_eq!(
        (warned[0].ticket.as_str(), warned[0].deadline),
        ("jd:4", DeadlineKind::Review)
    );
    assert_eq!(warned[0].due_at, at("2026-11-27T12:30:00+08:00"));
    assert!(views.alerts(None, None, 1).len() == 1, "the limit holds");

    let row = views.row(&tid("jd:4")).unwrap();
    assert_eq!(row.open_deadlines.len(), 1);
    assert_eq!(row.open_deadlines[0].kind, DeadlineKind::Review);
    assert_eq!(
        row.open_deadlines[0].due_at,
        at("2026-11-27T12:30:00+08:00")
    );
    assert_eq!(
        views.breaches()[&("jd".to_string(), DeadlineKind::Review)],
        1
    );
}

#[test]
fn figures_match_the_timeline_and_a_checkpoint_resumes_to_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let checkpoint = dir.path().join("views.json");
    let store = open_store(&store_dir);
    let tickets = Arc::new(Tickets::new(store.clone()).unwrap());

    let scheduler = first_part(&tickets);
    let (views, _) = shared(&store, &checkpoint);
    let halfway = views.read().position();
    assert_eq!(halfway, store.head_position());
    views.save().unwrap();
    drop(views);

    second_part(&tickets, &scheduler);
    // Resumed: jd:3's expiry needs its running state, restored from its stream.
    let (mut resumed, loaded) = load(&store, &checkpoint);
    assert_eq!(loaded, Loaded::Resumed(halfway));
    aftersales_views::catch_up(&mut resumed, &store).unwrap();
    check_figures(&resumed);

    // Rebuilt from the log alone: the same rows, the same digest.
    let mut fresh = Views::new(RuleBook::builtin(), Calendar::builtin());
    aftersales_views::catch_up(&mut fresh, &store).unwrap();
    check_figures(&fresh);
    assert_eq!(fresh.digest(), resumed.digest());
    assert_eq!(fresh.position(), store.head_position());
}

#[test]
fn a_checkpoint_of_another_log_or_a_damaged_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("views.json");
    let one = open_store(&dir.path().join("one"));
    let tickets = Arc::new(Tickets::new(one.clone()).unwrap());
    first_part(&tickets);
    let (views, _) = shared(&one, &checkpoint);
    views.save().unwrap();

    // Another log with the same number of events: the hash link differs.
    let two = open_store(&dir.path().join("two"));
    let other = Arc::new(Tickets::new(two.clone()).unwrap());
    for n in 0..one.head_position() {
        let ticket = format!("pdd:{n}");
        open(
            &other,
            &ticket,
            ServiceType::RefundOnly,
            "2026-11-20T10:00:00+08:00",
        );
    }
    assert_eq!(two.head_position(), one.head_position());
    let (_, loaded) = load(&two, &checkpoint);
    assert_eq!(
        loaded,
        Loaded::Fresh("the checkpoint was made from another log".into())
    );

    // A log shorter than the checkpoint (restored from an older backup).
    let three = open_store(&dir.path().join("three"));
    let (_, loaded) = load(&three, &checkpoint);
    assert!(matches!(loaded, Loaded::Fresh(why) if why.contains("log ends at 0")));

    std::fs::write(&checkpoint, b"{not json").unwrap();
    let (views, loaded) = load(&one, &checkpoint);
    assert!(
        matches!(loaded, Loaded::Fresh(why) if why.starts_with("the checkpoint is unreadable"))
    );
    assert_eq!(views.position(), 0);
}

#[test]
fn the_follower_folds_live_appends_and_checkpoints_at_stop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("views.json");
    let store = open_store(&dir.path().join("store"));
    let tickets = Arc::new(Tickets::new(store.clone()).unwrap());
    let (views, _) = shared(&store, &checkpoint);
    let stop = Arc::new(AtomicBool::new(false));
    let follower = {
        let (views, stop) = (views.clone(), stop.clone());
        std::thread::spawn(move || {
            views.follow(&stop, Duration::from_millis(20), Duration::from_secs(3600))
        })
    };
    let scheduler = first_part(&tickets);
    second_part(&tickets, &scheduler);
    let head = store.head_position();
    let started = Instant::now();
    while views.read().position() < head {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the follower did not catch up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    check_figures(&views.read());
    stop.store(true, Ordering::Release);
    follower.join().unwrap();
    let (_, loaded) = load(&store, &checkpoint);
    assert_eq!(loaded, Loaded::Resumed(head));
}
