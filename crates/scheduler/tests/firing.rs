//! Firing deadlines against a real sled store: on time, in due order, never twice, never a
//! disarmed or stale one. Time comes from the arguments and a `ManualClock`; no test sleeps
//! for a deadline.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftersales_app::{event_id, Tickets};
use aftersales_clock::{Clock, ManualClock};
use aftersales_scheduler::{deadline_key, warning_key, Fired, Firing, Scheduler, WarningWindows};
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

    // One business day across National Day: due Thursday 2026-10-08 15:00. A second before,
    // nothing has expired; the two warnings (due in 2h, from 13:00) are all that is stored.
    let early = scheduler
        .fire_due(utc("2026-10-08T14:59:59+08:00"))
        .unwrap();
    assert!(
        early.iter().all(Fired::is_warning),
        "fired early: {early:?}"
    );
    assert_eq!(early.len(), 2);
    assert_eq!(store.head_position(), head + 2);

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

/// Both schedulers fire what is due by `now` at the same time; returns how many firings
/// they stored between them.
fn fire_together(
    first: &Arc<Scheduler>,
    second: &Arc<Scheduler>,
    now: chrono::DateTime<chrono::Utc>,
) -> usize {
    let runs: Vec<_> = [Arc::clone(first), Arc::clone(second)]
        .into_iter()
        .map(|s| std::thread::spawn(move || s.fire_due(now).unwrap()))
        .collect();
    runs.into_iter().map(|r| r.join().unwrap().len()).sum()
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
    let fired = fire_together(&first, &second, now);
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

/// A JD rule book of one pack with one rule: a one-hour review, armed by the opening and
/// stopped by the approval, with this expiry.
fn one_hour_review(pack: &str, rule: &str, expiry: &str) -> RuleBook {
    let text = format!(
        r#"
id = "{pack}"
platform = "jd"

[[rules]]
id = "{rule}"
kind = "review"
on = ["opened"]
due = {{ hours = 1 }}
disarmed_by = ["approved"]
expiry = "{expiry}"
"#
    );
    RuleBook::from_packs(vec![RulePack::from_toml_str(&text, "test").unwrap()]).unwrap()
}

#[test]
fn a_refused_expiry_is_dropped_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:5001", "2026-11-20T10:00:00+08:00");
    // An expiry the aggregate refuses: an automatic refund while the ticket is still
    // pending review (an operator's mistake in a rule file).
    let book = one_hour_review("jd@broken", "jd.broken.refund_on_review", "refund");
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
    // Due in an hour: the loop warns at once, and goes round many times; nothing is due yet.
    wait_until("the first deadline warns", || scheduler.stats().warned == 1);
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
    assert_eq!(scheduler.stats().warned, 1, "warned before the window");
    clock.set(utc("2026-11-22T10:59:59+08:00"));
    wait_until("the second deadline warns", || {
        scheduler.stats().warned == 2
    });
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

/// Runs a scheduler loop on `clock` until `stop`; the loop's stats come back from join.
fn run_loop(
    scheduler: &Arc<Scheduler>,
    clock: &ManualClock,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<aftersales_scheduler::FiringStats> {
    let (scheduler, clock, stop) = (Arc::clone(scheduler), clock.clone(), Arc::clone(stop));
    std::thread::spawn(move || scheduler.run(&clock, &stop, Duration::from_millis(5)))
}

#[test]
fn a_clock_jumping_forward_then_back_across_a_restart_fires_each_deadline_once_and_never_early() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:7101", "2026-11-20T10:00:00+08:00"); // due 11-22 10:00
    open_jd_review(&tickets, "jd:7102", "2026-11-21T10:00:00+08:00"); // due 11-23 10:00
    let clock = ManualClock::new(utc("2026-11-20T12:00:00+08:00"));
    let (first, stop) = (
        Arc::new(scheduler(&tickets)),
        Arc::new(AtomicBool::new(false)),
    );
    let runner = run_loop(&first, &clock, &stop);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(first.stats().fired + first.stats().warned, 0);

    // Forward two days at once (an NTP step, a VM resumed): the first deadline, which the
    // jump passed, fires once; the second, still a day away, neither fires nor warns.
    clock.set(utc("2026-11-22T12:00:00+08:00"));
    wait_until("the passed deadline fires", || first.stats().fired == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(first.stats().fired, 1);
    assert_eq!(first.stats().warned, 0, "a passed deadline warns no more");

    // Back three days, and the process restarts: the new scheduler rebuilds its index from
    // the log, where the firing is, so nothing fires again however long the clock stands.
    stop.store(true, Ordering::Release);
    runner.join().unwrap();
    clock.set(utc("2026-11-19T12:00:00+08:00"));
    let (second, stop) = (
        Arc::new(scheduler(&tickets)),
        Arc::new(AtomicBool::new(false)),
    );
    assert_eq!(
        second.armed_count(),
        1,
        "only the second deadline is still running"
    );
    let runner = run_loop(&second, &clock, &stop);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(second.stats().fired + second.stats().warned, 0);

    // Forward again, past the first deadline once more and to a second before the other.
    clock.set(utc("2026-11-23T09:59:59+08:00"));
    wait_until("the second deadline warns", || second.stats().warned == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        second.stats().fired,
        0,
        "fired early, or the first one twice"
    );
    clock.set(utc("2026-11-23T10:00:00+08:00"));
    wait_until("the second deadline fires", || second.stats().fired == 1);
    // And back once more, with the loop running: nothing.
    clock.set(utc("2026-11-21T00:00:00+08:00"));
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    let stats = runner.join().unwrap();
    assert_eq!((stats.fired, stats.warned), (1, 1));
    for (ticket, due) in [
        ("jd:7101", "2026-11-22T10:00:00+08:00"),
        ("jd:7102", "2026-11-23T10:00:00+08:00"),
    ] {
        let history = history(&tickets, ticket);
        assert_eq!(expiries(&history), 1, "{ticket}");
        let expired = history
            .iter()
            .find(|s| s.envelope.event.name() == "deadline_expired")
            .unwrap();
        assert_eq!(
            expired.envelope.occurred_at,
            at(due),
            "{ticket} fired at its due time"
        );
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

// --- warnings ---

fn warnings(history: &[aftersales_app::Stored]) -> usize {
    names(history)
        .iter()
        .filter(|n| **n == "deadline_warned")
        .count()
}

/// Fires what is due by the clock's time.
fn fire_at(scheduler: &Scheduler, clock: &ManualClock, time: &str) -> Vec<Fired> {
    clock.set(utc(time));
    scheduler.fire_due(clock.now()).unwrap()
}

#[test]
fn a_48h_review_warns_two_hours_before_it_is_due_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    // T = 2026-11-20 10:00: due T+48h = 11-22 10:00, warns at T+46h = 11-22 08:00.
    open_jd_review(&tickets, "jd:9001", "2026-11-20T10:00:00+08:00");
    let scheduler = scheduler(&tickets);
    assert_eq!(scheduler.pending_warnings(), 1);
    assert_eq!(
        scheduler.next_warning(),
        Some(utc("2026-11-22T08:00:00+08:00"))
    );
    let clock = ManualClock::new(utc("2026-11-20T10:00:00+08:00"));

    let head = store.head_position();
    assert!(fire_at(&scheduler, &clock, "2026-11-21T10:00:00+08:00").is_empty());
    assert!(fire_at(&scheduler, &clock, "2026-11-22T07:59:59+08:00").is_empty());
    assert_eq!(store.head_position(), head, "warned before the window");

    let fired = fire_at(&scheduler, &clock, "2026-11-22T08:00:00+08:00");
    assert_eq!(fired.len(), 1, "{fired:?}");
    let w = &fired[0];
    assert_eq!(w.what, Firing::Warned);
    assert_eq!(w.ticket.as_str(), "jd:9001");
    assert_eq!(w.deadline.kind, DeadlineKind::Review);
    assert_eq!(w.deadline.rule_id.as_str(), "jd.review");
    assert_eq!(w.deadline.due_at, at("2026-11-22T10:00:00+08:00"));
    assert_eq!(w.outcome, None);
    assert_eq!(w.state, Some(State::PendingReview));
    assert_eq!(w.events, ["deadline_warned"]);
    // Stored once under the warning's key, at the firing instant in the deadline's offset.
    let key = warning_key(&w.deadline);
    assert_eq!(key, "warning/review/jd.review/2026-11-22T02:00:00Z");
    let h = history(&tickets, "jd:9001");
    let stored = h.last().unwrap();
    assert_eq!(stored.position, w.position);
    assert_eq!(stored.envelope.event_id, event_id(&id("jd:9001"), &key, 0));
    assert_eq!(stored.envelope.source_message_id.as_deref(), Some(&*key));
    assert_eq!(
        stored.envelope.occurred_at.to_rfc3339(),
        "2026-11-22T08:00:00+08:00"
    );
    assert_eq!(w.at, stored.envelope.occurred_at);
    assert!(matches!(
        &stored.envelope.event,
        Event::DeadlineWarned { deadline } if *deadline == w.deadline
    ));
    let stats = scheduler.stats();
    assert_eq!((stats.warned, stats.fired), (1, 0));
    // The deadline is still armed; only its warning is spent.
    assert_eq!(scheduler.armed_count(), 1);
    assert_eq!(scheduler.pending_warnings(), 0);

    // A second round, and a scheduler rebuilt from the log, do not warn again.
    let head = store.head_position();
    assert!(fire_at(&scheduler, &clock, "2026-11-22T09:00:00+08:00").is_empty());
    let restarted = common::scheduler(&tickets);
    assert_eq!(restarted.pending_warnings(), 0);
    assert_eq!(restarted.armed_count(), 1);
    assert!(fire_at(&restarted, &clock, "2026-11-22T09:59:59+08:00").is_empty());
    assert_eq!(store.head_position(), head, "warned twice");

    // At its due time it expires, once.
    let fired = fire_at(&restarted, &clock, "2026-11-22T10:00:00+08:00");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].what, Firing::Expired);
    assert_eq!(fired[0].at, at("2026-11-22T10:00:00+08:00"));
    let h = history(&tickets, "jd:9001");
    assert_eq!((warnings(&h), expiries(&h)), (1, 1), "{:?}", names(&h));
    assert_eq!(restarted.stats().already_warned, 0);
}

#[test]
fn a_deadline_disarmed_before_its_window_never_warns() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:9011", "2026-11-20T10:00:00+08:00");
    let scheduler = scheduler(&tickets);
    let clock = ManualClock::new(utc("2026-11-20T10:00:00+08:00"));
    assert!(fire_at(&scheduler, &clock, "2026-11-22T07:00:00+08:00").is_empty());
    // Reviewed an hour before the window opens.
    submit(
        &tickets,
        "jd:9011",
        Command::Approve {
            return_method: ReturnMethod::CustomerShips,
        },
        "2026-11-22T07:00:00+08:00",
        Actor::Merchant,
        "jd/m9011",
    );
    for time in ["2026-11-22T08:00:00+08:00", "2027-12-31T00:00:00+08:00"] {
        assert!(fire_at(&scheduler, &clock, time).is_empty());
    }
    assert_eq!(scheduler.pending_warnings(), 0);
    assert_eq!(warnings(&history(&tickets, "jd:9011")), 0);
    assert_eq!(scheduler.stats(), Default::default());
}

#[test]
fn a_deadline_armed_with_less_than_its_window_left_warns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    // A one-hour clock: shorter than the two-hour window.
    let book = one_hour_review("jd@short", "jd.short.review", "deadline_only");
    let scheduler = Scheduler::start(Arc::clone(&tickets), book, Calendar::builtin()).unwrap();
    let clock = ManualClock::new(utc("2026-11-20T10:00:00+08:00"));
    // Opened at 10:00 while the scheduler runs: due 11:00, its window opened at 09:00.
    open_jd_review(&tickets, "jd:9021", "2026-11-20T10:00:00+08:00");
    let fired = fire_at(&scheduler, &clock, "2026-11-20T10:00:00+08:00");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].what, Firing::Warned);
    assert_eq!(fired[0].at.to_rfc3339(), "2026-11-20T10:00:00+08:00");
    assert!(fire_at(&scheduler, &clock, "2026-11-20T10:59:59+08:00").is_empty());
    let fired = fire_at(&scheduler, &clock, "2026-11-20T11:00:00+08:00");
    assert_eq!(
        fired.iter().map(|f| f.what).collect::<Vec<_>>(),
        [Firing::Expired]
    );
    let h = history(&tickets, "jd:9021");
    assert_eq!((warnings(&h), expiries(&h)), (1, 1));
}

#[test]
fn a_zero_window_disables_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:9031", "2026-11-20T10:00:00+08:00");
    let off = |windows: WarningWindows| {
        Scheduler::start_with(
            Arc::clone(&tickets),
            RuleBook::builtin(),
            Calendar::builtin(),
            windows,
        )
        .unwrap()
    };
    // No warnings at all, and no warnings for the review kind: the same.
    for windows in [
        WarningWindows::none(),
        WarningWindows::default().with(DeadlineKind::Review, chrono::Duration::zero()),
    ] {
        let scheduler = off(windows);
        assert_eq!(scheduler.pending_warnings(), 0);
        assert_eq!(scheduler.next_warning(), None);
        let clock = ManualClock::new(utc("2026-11-20T10:00:00+08:00"));
        assert!(fire_at(&scheduler, &clock, "2026-11-22T09:59:59+08:00").is_empty());
    }
    let scheduler = off(WarningWindows::none());
    let clock = ManualClock::new(utc("2026-11-22T10:00:00+08:00"));
    let fired = fire_at(&scheduler, &clock, "2026-11-22T10:00:00+08:00");
    assert_eq!(
        fired.iter().map(|f| f.what).collect::<Vec<_>>(),
        [Firing::Expired]
    );
    assert_eq!(warnings(&history(&tickets, "jd:9031")), 0);
}

#[test]
fn a_deadline_already_due_when_first_seen_only_expires_and_warnings_go_in_warning_order() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    open_jd_review(&tickets, "jd:9041", "2026-11-20T10:00:00+08:00"); // due 11-22 10:00
    open_jd_review(&tickets, "jd:9042", "2026-11-20T09:00:00+08:00"); // due 11-22 09:00
    open_jd_review(&tickets, "jd:9043", "2026-11-20T09:30:00+08:00"); // due 11-22 09:30
    open_jd_review(&tickets, "jd:9044", "2026-11-19T09:00:00+08:00"); // due 11-21 09:00
                                                                      // The scheduler first looks at 11-22 09:15: jd:9044 and jd:9042 are due (their windows
                                                                      // passed unseen), jd:9043 and jd:9041 are inside theirs.
    let scheduler = scheduler(&tickets);
    assert_eq!(scheduler.pending_warnings(), 4);
    let clock = ManualClock::new(utc("2026-11-22T09:15:00+08:00"));
    let fired = scheduler.fire_due(clock.now()).unwrap();
    let order: Vec<(Firing, &str)> = fired.iter().map(|f| (f.what, f.ticket.as_str())).collect();
    assert_eq!(
        order,
        [
            (Firing::Expired, "jd:9044"), // due 11-21 09:00
            (Firing::Warned, "jd:9043"),  // warns 07:30
            (Firing::Warned, "jd:9041"),  // warns 08:00
            (Firing::Expired, "jd:9042"), // due 09:00
        ]
    );
    assert!(fired.windows(2).all(|w| w[0].position < w[1].position));
    for f in fired.iter().filter(|f| f.is_warning()) {
        assert_eq!(f.at.to_rfc3339(), "2026-11-22T09:15:00+08:00");
    }
    for (ticket, warned) in [
        ("jd:9041", 1),
        ("jd:9042", 0),
        ("jd:9043", 1),
        ("jd:9044", 0),
    ] {
        assert_eq!(warnings(&history(&tickets, ticket)), warned, "{ticket}");
    }
    let stats = scheduler.stats();
    assert_eq!((stats.fired, stats.warned), (2, 2));
    assert_eq!(scheduler.pending_warnings(), 0);
}

#[test]
fn warning_windows_are_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    // Friday 2026-11-20 10:00.
    open_jd_review(&tickets, "jd:9051", "2026-11-20T10:00:00+08:00"); // review: 11-22 10:00
    open(
        &tickets,
        // Refund-only, not shipped: one business day, Monday 11-23 10:00.
        new_ticket(
            "jd:9052",
            ServiceType::RefundOnly,
            Reason::CancelBeforeShipment,
            None,
        ),
        "2026-11-20T10:00:00+08:00",
    );
    open(
        &tickets,
        // Cancellation before shipment: 24h, 11-21 10:00.
        new_ticket(
            "jd:9053",
            ServiceType::ReturnRefund,
            Reason::CancelBeforeShipment,
            None,
        ),
        "2026-11-20T10:00:00+08:00",
    );
    let windows = WarningWindows::default()
        .with(DeadlineKind::Review, chrono::Duration::hours(1))
        .with(
            DeadlineKind::RefundOnlyAutoApprove,
            chrono::Duration::zero(),
        );
    let scheduler = Scheduler::start_with(
        Arc::clone(&tickets),
        RuleBook::builtin(),
        Calendar::builtin(),
        windows.clone(),
    )
    .unwrap();
    assert_eq!(scheduler.warning_windows(), windows);
    assert_eq!(scheduler.pending_warnings(), 2);
    let clock = ManualClock::new(utc("2026-11-20T10:00:00+08:00"));
    let seen = |fired: Vec<Fired>| -> Vec<(Firing, String)> {
        fired
            .into_iter()
            .map(|f| (f.what, f.ticket.to_string()))
            .collect()
    };
    // The cancellation keeps the default two hours.
    assert!(fire_at(&scheduler, &clock, "2026-11-21T07:59:59+08:00").is_empty());
    assert_eq!(
        seen(fire_at(&scheduler, &clock, "2026-11-21T08:00:00+08:00")),
        [(Firing::Warned, "jd:9053".to_owned())]
    );
    // The review warns one hour ahead, not two.
    assert_eq!(
        seen(fire_at(&scheduler, &clock, "2026-11-22T08:59:59+08:00")),
        [(Firing::Expired, "jd:9053".to_owned())]
    );
    assert_eq!(
        seen(fire_at(&scheduler, &clock, "2026-11-22T09:00:00+08:00")),
        [(Firing::Warned, "jd:9051".to_owned())]
    );
    // The refund-only clock never warns.
    assert_eq!(
        seen(fire_at(&scheduler, &clock, "2026-11-23T10:00:00+08:00")),
        [
            (Firing::Expired, "jd:9051".to_owned()),
            (Firing::Expired, "jd:9052".to_owned())
        ]
    );
    assert_eq!(warnings(&history(&tickets, "jd:9052")), 0);
    assert_eq!(scheduler.stats().warned, 2);
}

#[test]
fn two_schedulers_on_one_store_warn_of_each_deadline_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = store_clock();
    let store = open_store(dir.path(), &clock);
    let a = tickets(&store);
    let b = tickets(&store);
    let n = 16;
    for i in 0..n {
        let ticket = format!("jd:{}", 9100 + i);
        open_jd_review(&a, &ticket, &format!("2026-11-02T10:{:02}:00+08:00", i));
    }
    let first = Arc::new(scheduler(&a));
    let second = Arc::new(scheduler(&b));
    // Inside every window (the last warns at 11-04 08:15), before every due time.
    let now = utc("2026-11-04T09:00:00+08:00");
    let warned = fire_together(&first, &second, now);
    assert_eq!(warned, n, "each warning is stored by exactly one scheduler");
    for i in 0..n {
        let h = history(&a, &format!("jd:{}", 9100 + i));
        assert_eq!((warnings(&h), expiries(&h)), (1, 0), "{:?}", names(&h));
    }
    let (sa, sb) = (first.stats(), second.stats());
    assert_eq!(sa.warned + sb.warned, n as u64);
    assert_eq!(sa.fired + sb.fired + sa.stale_dropped + sb.stale_dropped, 0);
    let head = store.head_position();
    assert!(first.fire_due(now).unwrap().is_empty());
    assert!(scheduler(&b).fire_due(now).unwrap().is_empty());
    assert_eq!(store.head_position(), head);
}

#[test]
fn a_stop_in_the_middle_of_a_burst_ends_the_loop_and_the_rest_fires_next_time() {
    const TICKETS: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store_clock = store_clock();
    let store = open_store(dir.path(), &store_clock);
    let tickets = tickets(&store);
    for n in 0..TICKETS {
        open_jd_review(
            &tickets,
            &format!("jd:{}", 8000 + n),
            "2026-11-20T10:00:00+08:00",
        );
    }
    let opened = store.head_position();
    let scheduler = Arc::new(scheduler(&tickets));
    // Every review has been due for days: one round would fire them all.
    let clock = ManualClock::new(utc("2026-12-01T00:00:00+08:00"));
    let stop = Arc::new(AtomicBool::new(false));
    let runner = run_loop(&scheduler, &clock, &stop);
    // Watched through the log: the scheduler's own counters wait for its lock.
    wait_until("the burst starts", || store.head_position() > opened + 5);
    stop.store(true, Ordering::Release);
    let first = runner.join().unwrap();
    assert!(
        first.fired < TICKETS,
        "the loop fired all {} before it looked at the stop",
        first.fired
    );

    // The next run fires the rest, each once.
    let stop = Arc::new(AtomicBool::new(false));
    let runner = run_loop(&scheduler, &clock, &stop);
    wait_until("the rest fires", || scheduler.stats().fired == TICKETS);
    stop.store(true, Ordering::Release);
    runner.join().unwrap();
    for n in [0, TICKETS / 2, TICKETS - 1] {
        assert_eq!(expiries(&history(&tickets, &format!("jd:{}", 8000 + n))), 1);
    }
}
