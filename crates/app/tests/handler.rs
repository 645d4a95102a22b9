//! The command handler against a real sled store in a temporary directory.

use std::sync::Arc;
use std::thread;

use aftersales_app::{event_id, HandleError, Handled, Submission, Tickets};
use aftersales_clock::ManualClock;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::*;
use chrono::{DateTime, Duration, Utc};

fn at(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn id(s: &str) -> TicketId {
    TicketId::parse(s).unwrap()
}

fn open_cmd(ticket: &str, line: &str) -> Command {
    Command::Open {
        ticket: Box::new(NewTicket {
            id: id(ticket),
            platform: Platform::Jd,
            platform_ticket_id: PlatformTicketId::parse(ticket.trim_start_matches("jd:")).unwrap(),
            order_id: OrderId::parse("o-1").unwrap(),
            order_line_id: OrderLineId::parse(line).unwrap(),
            sku: Some(Sku::parse("sku-1").unwrap()),
            amount_paid: Money::from_cents(10_000),
            refund_requested: None,
            customer_id: Some(CustomerId::parse("c-1").unwrap()),
            service_type: ServiceType::ReturnRefund,
            reason: Reason::QualityProblem,
            signed_for_at: None,
            order_shipped: None,
        }),
    }
}

fn submit(ticket: &str, command: Command, key: Option<&str>) -> Submission {
    Submission {
        ticket_id: id(ticket),
        command,
        at: at("2026-11-20T10:00:00+08:00"),
        actor: Actor::Merchant,
        idempotency_key: key.map(str::to_owned),
        causation_id: None,
    }
}

fn refund() -> Command {
    Command::Dispose {
        disposal: Disposal::RefundWithoutReturn {
            amount: Money::from_cents(10_000),
            customer_consent: None,
        },
    }
}

fn open_store(dir: &std::path::Path, clock: &ManualClock) -> Arc<Store> {
    Arc::new(Store::open(dir, StoreConfig::new(Arc::new(clock.clone()))).unwrap())
}

fn clock() -> ManualClock {
    ManualClock::new(at("2026-11-20T02:00:00Z").with_timezone(&Utc))
}

#[test]
fn commands_are_decided_appended_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = Tickets::new(open_store(dir.path(), &clock())).unwrap();
    let Handled::Applied { ticket, events } = tickets
        .handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")))
        .unwrap()
    else {
        panic!("expected the opening to be applied")
    };
    assert_eq!(ticket.state(), Some(State::PendingReview));
    assert_eq!((events[0].position, events[0].version), (1, 1));
    assert_eq!(events[0].envelope.event_id, event_id(&id("jd:1"), "m1", 0));

    let approve = Command::Approve {
        return_method: ReturnMethod::CustomerShips,
    };
    tickets.handle(submit("jd:1", approve, Some("m2"))).unwrap();
    let history = tickets.history(&id("jd:1")).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].envelope.source_message_id.as_deref(), Some("m2"));
    assert!(
        history.iter().all(|s| s.envelope.recorded_at.is_some()),
        "reads carry the store's time"
    );
    assert_eq!(
        tickets.load(&id("jd:1")).unwrap().state(),
        Some(State::AwaitingReturn)
    );
}

/// Opens ticket jd:1 (message m1) and refunds it (m2): positions 1 and 2.
fn open_and_refund(tickets: &Tickets) {
    tickets
        .handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")))
        .unwrap();
    tickets
        .handle(submit("jd:1", refund(), Some("m2")))
        .unwrap();
}

#[test]
fn a_redelivery_to_a_ticket_no_handler_has_folded_is_answered_from_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &clock());
    open_and_refund(&Tickets::new(store.clone()).unwrap());
    let head = store.head_position();
    // A handler after a restart has folded nothing: the stream it reads for the ticket
    // answers the idempotency check.
    for (command, key, position) in [(refund(), "m2", 2), (open_cmd("jd:1", "l-1"), "m1", 1)] {
        let tickets = Tickets::new(store.clone()).unwrap();
        let Handled::Duplicate { events } =
            tickets.handle(submit("jd:1", command, Some(key))).unwrap()
        else {
            panic!("expected {key} to be a duplicate")
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].position, position);
        assert_eq!(events[0].envelope.source_message_id.as_deref(), Some(key));
    }
    assert_eq!(store.head_position(), head, "nothing was written");
}

#[test]
fn a_redelivered_message_is_answered_from_the_store_even_when_deciding_again_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = Tickets::new(open_store(dir.path(), &clock())).unwrap();
    open_and_refund(&tickets);
    let head = tickets.store().head_position();

    // Deciding the refund again on a completed ticket would be refused (final state);
    // the redelivery must instead be recognised as already done.
    let Handled::Duplicate { events } = tickets
        .handle(submit("jd:1", refund(), Some("m2")))
        .unwrap()
    else {
        panic!("expected a duplicate")
    };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].position, 2);
    assert_eq!(tickets.store().head_position(), head, "nothing was written");

    // Without a key the same command is a new one, and the rules refuse it.
    let err = tickets.handle(submit("jd:1", refund(), None)).unwrap_err();
    assert!(
        matches!(
            err,
            HandleError::Rejected {
                rejection: Rejection::TicketFinal { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn concurrent_commands_on_one_ticket_are_all_applied_in_some_order() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = Arc::new(Tickets::new(open_store(dir.path(), &clock())).unwrap());
    tickets
        .handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m0")))
        .unwrap();
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let tickets = Arc::clone(&tickets);
            thread::spawn(move || {
                for j in 0..10 {
                    let note = Note::parse(&format!("worker {i} note {j}")).unwrap();
                    let key = format!("w{i}-{j}");
                    tickets
                        .handle(submit("jd:1", Command::Annotate { note }, Some(&key)))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let history = tickets.history(&id("jd:1")).unwrap();
    assert_eq!(history.len(), 81);
    let versions: Vec<u64> = history.iter().map(|s| s.version).collect();
    assert_eq!(versions, (1..=81).collect::<Vec<_>>());
    let Ticket::Open(data) = tickets.load(&id("jd:1")).unwrap() else {
        panic!()
    };
    assert_eq!(data.annotations, 80);
}

#[test]
fn the_order_line_index_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    {
        let tickets = Tickets::new(open_store(dir.path(), &clock)).unwrap();
        open_and_refund(&tickets);
        let refused = tickets
            .handle(submit("jd:2", open_cmd("jd:2", "l-1"), Some("m3")))
            .unwrap_err();
        assert!(matches!(
            refused,
            HandleError::Rejected {
                rejection: Rejection::OrderLineAlreadyRefunded { .. },
                ..
            }
        ));
        tickets.store().close().unwrap();
    }
    let tickets = Tickets::new(open_store(dir.path(), &clock)).unwrap();
    let refused = tickets
        .handle(submit("jd:2", open_cmd("jd:2", "l-1"), Some("m3")))
        .unwrap_err();
    assert!(
        matches!(&refused, HandleError::Rejected { rejection: Rejection::OrderLineAlreadyRefunded { by, .. }, .. } if by == &id("jd:1")),
        "{refused}"
    );
    // Another line of the same order is free.
    assert!(tickets
        .handle(submit("jd:2", open_cmd("jd:2", "l-2"), Some("m4")))
        .is_ok());
}

#[test]
fn a_ticket_is_shown_as_it_stood_at_an_instant() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let tickets = Tickets::new(open_store(dir.path(), &clock)).unwrap();
    let t0 = aftersales_clock::Clock::now(&clock);
    tickets
        .handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")))
        .unwrap();
    clock.advance(Duration::hours(5));
    tickets
        .handle(submit("jd:1", refund(), Some("m2")))
        .unwrap();

    let (before, history) = tickets
        .load_as_of(&id("jd:1"), t0 + Duration::hours(1))
        .unwrap();
    assert_eq!(before.state(), Some(State::PendingReview));
    assert_eq!(history.len(), 1);
    let (after, _) = tickets
        .load_as_of(&id("jd:1"), t0 + Duration::hours(5))
        .unwrap();
    assert_eq!(after.state(), Some(State::Completed));
    let (none, _) = tickets
        .load_as_of(&id("jd:1"), t0 - Duration::seconds(1))
        .unwrap();
    assert_eq!(none, Ticket::Unopened);
}

#[test]
fn two_handlers_on_one_store_retry_on_version_conflicts_and_lose_nothing() {
    // Two handlers do not share locks, as two processes would not: conflicts are retried.
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &clock());
    let a = Arc::new(Tickets::new(Arc::clone(&store)).unwrap());
    let b = Arc::new(Tickets::new(store).unwrap());
    a.handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m0")))
        .unwrap();
    let workers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, tickets)| {
            thread::spawn(move || {
                for j in 0..25 {
                    let note = Note::parse("n").unwrap();
                    let key = format!("h{i}-{j}");
                    tickets
                        .handle(submit("jd:1", Command::Annotate { note }, Some(&key)))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let Ticket::Open(data) = b.load(&id("jd:1")).unwrap() else {
        panic!()
    };
    assert_eq!(data.annotations, 50);
}

#[test]
fn an_opening_routed_to_another_ticket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = Tickets::new(open_store(dir.path(), &clock())).unwrap();
    let err = tickets
        .handle(submit("jd:2", open_cmd("jd:1", "l-1"), Some("m1")))
        .unwrap_err();
    assert!(matches!(err, HandleError::TicketIdMismatch { .. }), "{err}");
    assert_eq!(tickets.store().head_position(), 0);
}

#[test]
fn a_new_ticket_records_the_rule_pack_chosen_for_its_platform() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = Tickets::new(open_store(dir.path(), &clock()))
        .unwrap()
        .with_rule_packs(Arc::new(|p: &Platform| {
            (p == &Platform::Jd).then(|| RulePackId::parse("jd@2024").unwrap())
        }));
    tickets
        .handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")))
        .unwrap();
    let Ticket::Open(data) = tickets.load(&id("jd:1")).unwrap() else {
        panic!()
    };
    assert_eq!(
        data.rule_pack.as_ref().map(RulePackId::as_str),
        Some("jd@2024")
    );
}

/// The handler keeps each ticket folded between commands; what another handler (another
/// process) appended in between is read and folded on top, never missed.
#[test]
fn a_handlers_folded_ticket_takes_in_what_others_appended_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &clock());
    let a = Tickets::new(Arc::clone(&store)).unwrap();
    let b = Tickets::new(store).unwrap();
    a.handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m0")))
        .unwrap();
    let note = || Command::Annotate {
        note: Note::parse("n").unwrap(),
    };
    for round in 0..3 {
        a.handle(submit("jd:1", note(), Some(&format!("a{round}"))))
            .unwrap();
        for j in 0..4 {
            b.handle(submit("jd:1", note(), Some(&format!("b{round}-{j}"))))
                .unwrap();
        }
    }
    let Handled::Applied { ticket, events } =
        a.handle(submit("jd:1", note(), Some("last"))).unwrap()
    else {
        panic!("applied")
    };
    assert_eq!(
        events[0].version,
        1 + 3 * 5 + 1,
        "appended at the stream's end"
    );
    assert_eq!(
        ticket,
        b.load(&id("jd:1")).unwrap(),
        "the same as a fresh fold"
    );
    let Ticket::Open(data) = ticket else { panic!() };
    assert_eq!(data.annotations, 16);
    // A state change made by b decides a's next command: the refund b made is final.
    b.handle(submit("jd:1", refund(), Some("refund"))).unwrap();
    assert!(matches!(
        a.handle(submit("jd:1", refund(), Some("refund-again"))),
        Err(HandleError::Rejected { .. })
    ));
}

#[test]
fn handle_many_answers_each_as_handle_would_in_one_flush_and_keeps_a_tickets_order() {
    let dir = tempfile::tempdir().unwrap();
    let tickets = Tickets::new(open_store(dir.path(), &clock())).unwrap();
    tickets
        .handle(submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")))
        .unwrap();
    let approve = || Command::Approve {
        return_method: ReturnMethod::CustomerShips,
    };
    let flushes = tickets.store().flushes();
    let outcomes = tickets.handle_many(vec![
        // A redelivery: answered from the store.
        submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")),
        submit("jd:2", open_cmd("jd:2", "l-2"), Some("m2")),
        // Refused: jd:9 was never opened.
        submit("jd:9", approve(), Some("m9")),
        submit("jd:3", open_cmd("jd:3", "l-3"), Some("m3")),
        // jd:2 again: after its opening, which is in this very batch.
        submit("jd:2", approve(), Some("m4")),
        // Routed to the wrong ticket.
        submit("jd:4", open_cmd("jd:5", "l-5"), Some("m5")),
    ]);
    assert_eq!(outcomes.len(), 6);
    assert!(matches!(&outcomes[0], Ok(Handled::Duplicate { events }) if events[0].position == 1));
    assert!(matches!(&outcomes[1], Ok(Handled::Applied { events, .. }) if events[0].position == 2));
    assert!(matches!(
        &outcomes[2],
        Err(HandleError::Rejected {
            rejection: Rejection::NotOpened { .. },
            ..
        })
    ));
    assert!(matches!(&outcomes[3], Ok(Handled::Applied { events, .. }) if events[0].position == 3));
    let Ok(Handled::Applied { ticket, events }) = &outcomes[4] else {
        panic!("the approval follows the opening: {:?}", outcomes[4])
    };
    assert_eq!(ticket.state(), Some(State::AwaitingReturn));
    assert_eq!((events[0].position, events[0].version), (4, 2));
    assert!(matches!(
        &outcomes[5],
        Err(HandleError::TicketIdMismatch { .. })
    ));
    // One flush for the batch's distinct tickets, one for the approval after it.
    assert_eq!(tickets.store().flushes() - flushes, 2);
    assert_eq!(tickets.store().head_position(), 4);
    assert_eq!(
        tickets.load(&id("jd:2")).unwrap().state(),
        Some(State::AwaitingReturn)
    );
}

/// In a batch, an opening of a ticket the handler has not folded is decided without
/// reading its stream; when the stream was not empty (the store finds the ids stored, or
/// the version is not `NoStream`), or the empty ticket refuses it, it is answered as
/// `handle` would: a redelivery with the stored events, another opening refused.
#[test]
fn handle_many_opens_unread_tickets_and_answers_existing_ones_from_their_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), &clock());
    {
        let tickets = Tickets::new(store.clone()).unwrap();
        open_and_refund(&tickets);
        tickets
            .handle(submit("jd:3", open_cmd("jd:3", "l-3"), Some("m4")))
            .unwrap();
    }

    // After a restart: nothing folded.
    let tickets = Tickets::new(store.clone()).unwrap();
    let outcomes = tickets.handle_many(vec![
        // Its line is refunded (by itself): an unopened ticket would refuse it.
        submit("jd:1", open_cmd("jd:1", "l-1"), Some("m1")),
        // Decided again as new; the store finds its id.
        submit("jd:3", open_cmd("jd:3", "l-3"), Some("m4")),
        submit("jd:2", open_cmd("jd:2", "l-2"), Some("m3")),
    ]);
    for (outcome, position) in outcomes.iter().zip([1, 3]) {
        let Ok(Handled::Duplicate { events }) = outcome else {
            panic!("expected a redelivered opening to be a duplicate: {outcome:?}")
        };
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].position, position);
        assert!(
            events[0].envelope.recorded_at.is_some(),
            "the stored event, read back, not the one decided again"
        );
    }
    assert!(matches!(&outcomes[2], Ok(Handled::Applied { events, .. }) if events[0].position == 4));
    assert_eq!(store.head_position(), 4);

    let tickets = Tickets::new(store.clone()).unwrap();
    let outcomes = tickets.handle_many(vec![
        submit("jd:3", open_cmd("jd:3", "l-3"), Some("m9")),
        // Refused by the unopened ticket (its line is refunded), and by the real one too,
        // for what it is: opened already.
        submit("jd:1", open_cmd("jd:1", "l-1"), Some("m8")),
    ]);
    for outcome in &outcomes {
        assert!(
            matches!(
                outcome,
                Err(HandleError::Rejected {
                    rejection: Rejection::AlreadyOpened { .. },
                    ..
                })
            ),
            "{outcome:?}"
        );
    }
    assert_eq!(store.head_position(), 4, "nothing was written");
    assert_eq!(
        tickets.load(&id("jd:3")).unwrap().state(),
        Some(State::PendingReview)
    );
}
