//! Firing deadlines against a real sled store: on time, in due order, never twice, never a
//! disarmed or stale one. Time comes from the arguments and a `ManualClock`; no test sleeps
//! for a deadline.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftersales_app::{event_id, Tickets};
use aftersales_clock::ManualClock;
use aftersales_scheduler::{deadline_key, Scheduler};
use aftersales_ticket::*;
use aftersales_timers::{Calendar, RuleBook, RulePack};
use common::*;

#[test]
fn jd_refund_only_not_shipped_is_approved_by_the_platform_at_its_due_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let tickets = tickets(&store);
    // Not shipped, derived from the reason (C1) and said by the platform.
    let derived = new_ticket(
        "jd:1001",
        ServiceType::RefundOnly,
        Reason::CancelBeforeShipment,
        None,
    );
    let said = new_ticket(
        "jd:1002",
        ServiceType::RefundOnly,
        Reason::QualityProblem,
        Some(false),
    );
    open(&tickets, derived, "2026-09-30T15:00:00+08:00");
    open(&tickets, said, "2026-09-30T15:00:00+08:00");
    let scheduler = scheduler(&tickets);
    assert_eq!(scheduler.armed_count(), 2);
    let head = store.head_position();

    // One business day across National Day: due Thursday 2026-10-08 15:00.
    let early = scheduler
        .fire_due(utc("2026-10-08T14:59:59+08:00"))
        .unwrap();
    assert!(early.is_empty(), "fired early: {early:?}");
    assert_eq!(store.head_position(), head);

    let fired = scheduler
        .fire_due(utc("2026-10-08T15:00:00+08:00"))
        .unwrap();
    assert_eq!(fired.len(), 2);
    for (f, ticket) in fired.iter().zip(["jd:1001", "jd:1002"]) {
        assert_eq!(f.ticket.as_str(), ticket);
        assert_eq!(f.deadline.rule_id.as_str(), "jd.refund_only.not_shipped");
        assert_eq!(f.deadline.due_at, at("2026-10-08T15:00:00+08:00"));
        assert_eq!(f.outcome, Some(AutoOutcome::Approve));
        assert_eq!(f.state, Some(State::Completed));
        assert_eq!(
            f.events,
            ["deadline_expired", "approved", "refunded_without_return"]
        );
        // Expiry and outcome: one append, one key, consecutive positions, due-time stamped.
        let h = history(&tickets, ticket);
        let fired_events = &h[h.len() - 3..];
        let key = deadline_key(&f.deadline);
        assert_eq!(
            key,
            "deadline/refund_only_auto_approve/jd.refund_only.not_shipped/2026-10-08T07:00:00Z"
        );
        for (i, stored) in fired_events.iter().enumerate() {
            assert_eq!(stored.position, f.position + i as u64);
            assert_eq!(stored.envelope.event_id, event_id(&id(ticket), &key, i));
            assert_eq!(stored.envelope.source_message_id.as_deref(), Some(&*key));
            assert_eq!(stored.envelope.occurred_at, f.deadline.due_at);
        }
        assert!(matches!(
            &fired_events[1].envelope.event,
            Event::Approved { by: Actor::Platform, rule_id: Some(r), .. } if r.as_str() == "jd.refund_only.not_shipped"
        ));
        assert!(matches!(
            &fired_events[2].envelope.event,
            Event::RefundedWithoutReturn { amount, by: Actor::Platform, .. } if amount.cents() == 19_900
        ));
    }
    let head = store.head_position();
    assert!(scheduler
        .fire_due(utc("2027-06-01T00:00:00+08:00"))
        .unwrap()
        .is_empty());
    assert_eq!(store.head_position(), head, "firing again stored something");
    assert_eq!(scheduler.stats().fired, 2);
    // Both tickets are final with nothing armed: the index forgot them.
    assert_eq!(scheduler.tracked_tickets(), 0);
    assert_eq!(scheduler.armed_count(), 0);
}

#[test]
fn a_deadline_disarmed_before_its_due_time_never_fires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:2001", "2026-11-20T10:00:00+08:00");
    let scheduler = scheduler(&tickets);
    assert_eq!(scheduler.next_due(), Some(utc("2026-11-22T10:00:00+08:00")));
    // The merchant reviews in time, after the scheduler built its index.
    submit(
        &tickets,
        "jd:2001",
        Command::Approve {
            return_method: ReturnMethod::CustomerShips,
        },
        "2026-11-21T09:00:00+08:00",
        Actor::Merchant,
        "jd/m2",
    );
    let fired = scheduler
        .fire_due(utc("2027-12-31T00:00:00+08:00"))
        .unwrap();
    assert!(fired.is_empty(), "{fired:?}");
    assert_eq!(expiries(&history(&tickets, "jd:2001")), 0);
    assert_eq!(scheduler.armed_count(), 0);
    assert_eq!(scheduler.stats().stale_dropped, 0);
    // A restart sees the same.
    let restarted = common::scheduler(&tickets);
    assert!(restarted
        .fire_due(utc("2027-12-31T00:00:00+08:00"))
        .unwrap()
        .is_empty());
}

#[test]
fn deadlines_that_passed_while_down_fire_at_start_in_due_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let tickets = tickets(&store);
    // Opened in an order unlike the due order; several rules and platforms.
    open_jd_review(&tickets, "jd:3001", "2026-11-20T12:00:00+08:00"); // 11-22 12:00
    open_jd_review(&tickets, "jd:3002", "2026-11-19T18:00:00+08:00"); // 11-21 18:00
    open(
        &tickets,
        new_ticket(
            "jd:3003",
            ServiceType::ReturnRefund,
            Reason::SevenDayNoReason,
            None,
        ),
        "2026-11-20T20:00:00+08:00", // 24h: 11-21 20:00
    );
    open(
        &tickets,
        new_ticket(
            "pdd:3004",
            ServiceType::ReturnRefund,
            Reason::QualityProblem,
            None,
        ),
        "2026-11-19T09:00:00+08:00", // 48h: 11-21 09:00, refund without return
    );
    open_jd_review(&tickets, "jd:3005", "2026-11-20T09:00:00+08:00"); // 11-22 09:00
    drop(tickets);
    drop(store);

    // The service comes back on 2026-12-01.
    let store = open_store(dir.path(), &clock);
    let tickets = common::tickets(&store);
    let scheduler = common::scheduler(&tickets);
    let fired = scheduler
        .fire_due(utc("2026-12-01T00:00:00+08:00"))
        .unwrap();
    let order: Vec<&str> = fired.iter().map(|f| f.ticket.as_str()).collect();
    assert_eq!(
        order,
        ["pdd:3004", "jd:3002", "jd:3003", "jd:3005", "jd:3001"]
    );
    assert!(fired.windows(2).all(|w| w[0].position < w[1].position));
    assert!(fired
        .windows(2)
        .all(|w| w[0].deadline.due_at <= w[1].deadline.due_at));
    assert_eq!(fired[0].outcome, Some(AutoOutcome::RefundWithoutReturn));
    assert_eq!(fired[0].state, Some(State::Completed));
    assert_eq!(fired[1].outcome, None);
    assert_eq!(fired[1].state, Some(State::PendingReview));
}

#[test]
fn two_schedulers_on_one_store_fire_each_deadline_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let a = tickets(&store);
    let b = tickets(&store);
    let n = 24;
    for i in 0..n {
        let ticket = format!("jd:{}", 4000 + i);
        if i % 2 == 0 {
            let t = new_ticket(
                &ticket,
                ServiceType::RefundOnly,
                Reason::CancelBeforeShipment,
                None,
            );
            open(&a, t, &format!("2026-11-02T10:{:02}:00+08:00", i));
        } else {
            open_jd_review(&b, &ticket, &format!("2026-11-02T10:{:02}:00+08:00", i));
        }
    }
    let first = Arc::new(scheduler(&a));
    let second = Arc::new(scheduler(&b));
    let now = utc("2026-12-01T00:00:00+08:00");
    let runs: Vec<_> = [Arc::clone(&first), Arc::clone(&second)]
        .into_iter()
        .map(|s| std::thread::spawn(move || s.fire_due(now).unwrap()))
        .collect();
    let fired: usize = runs.into_iter().map(|r| r.join().unwrap().len()).sum();
    assert_eq!(fired, n, "each deadline is stored by exactly one scheduler");
    for i in 0..n {
        let h = history(&a, &format!("jd:{}", 4000 + i));
        assert_eq!(expiries(&h), 1, "jd:{}: {:?}", 4000 + i, names(&h));
        let automatic = h
            .iter()
            .filter(|s| {
                matches!(
                    s.envelope.event,
                    Event::Approved {
                        by: Actor::Platform,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(automatic, usize::from(i % 2 == 0));
    }
    let (sa, sb) = (first.stats(), second.stats());
    eprintln!("first {sa:?}, second {sb:?}");
    assert_eq!(sa.fired + sb.fired, n as u64);
    assert_eq!(sa.stale_dropped + sb.stale_dropped, 0);
    // Another round, and a third instance started now, store nothing.
    let head = store.head_position();
    assert!(first.fire_due(now).unwrap().is_empty());
    assert!(second.fire_due(now).unwrap().is_empty());
    assert!(scheduler(&a).fire_due(now).unwrap().is_empty());
    assert_eq!(store.head_position(), head);
}

/// A pack whose expiry the aggregate refuses: an automatic refund while the ticket is still
/// pending review (an operator's mistake in a rule file).
const BAD_PACK: &str = r#"
id = "jd@broken"
platform = "jd"

[[rules]]
id = "jd.broken.refund_on_review"
kind = "review"
on = ["opened"]
due = { hours = 1 }
disarmed_by = ["approved"]
expiry = "refund"
"#;

#[test]
fn a_refused_expiry_is_dropped_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:5001", "2026-11-20T10:00:00+08:00");
    let book =
        RuleBook::from_packs(vec![RulePack::from_toml_str(BAD_PACK, "test").unwrap()]).unwrap();
    let scheduler = Scheduler::start(Arc::clone(&tickets), book, Calendar::builtin()).unwrap();
    assert_eq!(scheduler.armed_count(), 1);
    let head = store.head_position();
    for _ in 0..3 {
        let fired = scheduler
            .fire_due(utc("2026-11-21T00:00:00+08:00"))
            .unwrap();
        assert!(fired.is_empty());
    }
    let stats = scheduler.stats();
    assert_eq!(stats.stale_dropped, 1, "tried more than once: {stats:?}");
    assert_eq!(scheduler.armed_count(), 0);
    assert_eq!(scheduler.next_due(), None);
    assert_eq!(store.head_position(), head);
}

#[test]
fn the_recorded_pack_is_followed_a_missing_one_falls_back_and_platform_time_counts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    // JD tickets opened under the generic pack (present in the book) ...
    let generic = Tickets::new(Arc::clone(&store))
        .unwrap()
        .with_rule_packs(Arc::new(|_: &Platform| {
            RulePackId::parse("generic@2024").ok()
        }));
    open_jd_review(&generic, "jd:6001", "2026-11-20T10:00:00+08:00");
    // ... and under a pack the book does not have: the platform's current pack applies.
    let missing = Tickets::new(Arc::clone(&store))
        .unwrap()
        .with_rule_packs(Arc::new(|_: &Platform| RulePackId::parse("jd@1999").ok()));
    open_jd_review(&missing, "jd:6002", "2026-11-20T10:00:00+08:00");
    // The customer is asked and answers; the store records both much later (clock: 2030).
    clock.set(utc("2030-01-01T00:00:00Z"));
    submit(
        &missing,
        "jd:6002",
        Command::AskCustomer { note: None },
        "2026-11-20T11:00:00+08:00",
        Actor::Merchant,
        "jd/m-ask",
    );
    submit(
        &missing,
        "jd:6002",
        Command::CustomerResponded,
        "2026-11-21T08:30:00+08:00",
        Actor::Customer,
        "jd/m-answer",
    );
    let tickets = common::tickets(&store);
    let scheduler = common::scheduler(&tickets);
    let first = scheduler.armed(&id("jd:6001"));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].deadline.rule_id.as_str(), "generic.review");
    assert_eq!(first[0].pack.as_str(), "generic@2024");
    let second = scheduler.armed(&id("jd:6002"));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].deadline.rule_id.as_str(), "jd.review");
    assert_eq!(second[0].pack.as_str(), "jd@2024");
    // Re-armed by the answer at its platform time, not when the store recorded it.
    assert_eq!(second[0].deadline.due_at, at("2026-11-23T08:30:00+08:00"));
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_run_loop_fires_on_its_clock_and_a_clock_jumping_back_fires_nothing_early() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:7001", "2026-11-20T10:00:00+08:00"); // due 11-22 10:00
    let scheduler = Arc::new(scheduler(&tickets));
    let clock = ManualClock::new(utc("2026-11-22T09:00:00+08:00"));
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let (scheduler, clock, stop) = (Arc::clone(&scheduler), clock.clone(), Arc::clone(&stop));
        std::thread::spawn(move || scheduler.run(&clock, &stop, Duration::from_millis(5)))
    };
    // The loop goes round many times; nothing is due yet.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(scheduler.stats().fired, 0);

    clock.set(utc("2026-11-22T10:00:00+08:00"));
    wait_until("the first deadline fires", || scheduler.stats().fired == 1);

    // The clock jumps back ten hours; a ticket opened meanwhile is due an hour after the
    // first one: the loop must wait for the clock to reach it again.
    clock.set(utc("2026-11-22T00:00:00+08:00"));
    open_jd_review(&tickets, "jd:7002", "2026-11-20T11:00:00+08:00"); // due 11-22 11:00
    wait_until("the loop sees the new deadline", || {
        scheduler.armed_count() == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(scheduler.stats().fired, 1, "fired before its due time");
    clock.set(utc("2026-11-22T10:59:59+08:00"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(scheduler.stats().fired, 1, "fired a second early");
    clock.set(utc("2026-11-22T11:00:00+08:00"));
    wait_until("the second deadline fires", || scheduler.stats().fired == 2);

    stop.store(true, Ordering::Release);
    let stats = runner.join().unwrap();
    assert_eq!(stats.fired, 2);
    assert_eq!(
        stats.already_fired + stats.stale_dropped + stats.deferred,
        0
    );
    for ticket in ["jd:7001", "jd:7002"] {
        assert_eq!(expiries(&history(&tickets, ticket)), 1);
    }
}

#[test]
fn an_unreadable_event_isolates_its_ticket_and_the_others_still_fire() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:8001", "2026-11-20T10:00:00+08:00");
    open_jd_review(&tickets, "jd:8002", "2026-11-20T11:00:00+08:00");
    // A record no build can read (damage, or a newer writer) lands in jd:8001's stream.
    let stream = aftersales_store::StreamId::new("jd:8001").unwrap();
    let garbage = aftersales_store::NewEvent::new(
        event_id(&id("jd:8001"), "garbage", 0),
        "approved",
        vec![0xff; 16],
    );
    store
        .append(
            &stream,
            aftersales_store::ExpectedVersion::Any,
            vec![garbage],
        )
        .unwrap();
    let scheduler = scheduler(&tickets);
    assert_eq!(scheduler.armed_count(), 1);
    let fired = scheduler
        .fire_due(utc("2026-12-01T00:00:00+08:00"))
        .unwrap();
    let fired: Vec<&str> = fired.iter().map(|f| f.ticket.as_str()).collect();
    assert_eq!(fired, ["jd:8002"]);
    assert_eq!(expiries(&history(&tickets, "jd:8002")), 1);
}
