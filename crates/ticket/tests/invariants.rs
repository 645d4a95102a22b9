//! One test per invariant of RULES.md section 4: refused without what it needs, allowed with it.

mod support;

use aftersales_ticket::*;
use support::*;

fn decide_on(ticket: &Ticket, command: Command) -> Result<Vec<Event>, Rejection> {
    decide(ticket, command, &ctx())
}

fn refund(amount: u64, consent: Option<&str>) -> Command {
    Command::Dispose {
        disposal: Disposal::Refund {
            amount: Money::from_cents(amount),
            return_shipping: Money::ZERO,
            customer_consent: consent.map(note),
        },
    }
}

#[test]
fn inv1_a_disposal_other_than_asked_needs_consent() {
    let (received, _) = walk(
        ServiceType::Exchange,
        &["open", "approve", "confirm_receipt"],
    );
    assert_eq!(
        decide_on(&received, refund(PAID.cents(), None)),
        Err(Rejection::DisposalDiffersWithoutConsent {
            requested: Outcome::Exchange,
            disposal: Outcome::Refund
        })
    );
    let ok = decide_on(
        &received,
        refund(PAID.cents(), Some("customer chose money instead")),
    )
    .unwrap();
    assert_eq!(names(&ok), ["refunded"]);

    // The platform's automatic outcomes obey it too: it never records consent.
    let (awaiting, _) = walk(ServiceType::Exchange, &["open", "approve"]);
    let auto = Command::ApplyPlatformOutcome {
        outcome: AutoOutcome::Refund,
        rule_id: rule(),
    };
    assert!(matches!(
        decide_on(&awaiting, auto),
        Err(Rejection::DisposalDiffersWithoutConsent { .. })
    ));
    // A repair request finished as an exchange (换新) needs consent as well.
    let (in_repair, _) = walk(
        ServiceType::RepairSendIn,
        &["open", "approve", "confirm_receipt"],
    );
    let exchange = |consent: Option<&str>| Command::Dispose {
        disposal: Disposal::Exchange {
            replacement_sku: None,
            customer_consent: consent.map(note),
        },
    };
    assert!(decide_on(&in_repair, exchange(None)).is_err());
    assert!(decide_on(&in_repair, exchange(Some("agreed to a new unit"))).is_ok());
}

#[test]
fn inv2_a_deduction_from_the_refund_needs_consent() {
    let (received, _) = walk(
        ServiceType::ReturnRefund,
        &["open", "approve", "confirm_receipt"],
    );
    assert_eq!(
        decide_on(&received, refund(15_000, None)),
        Err(Rejection::DeductionWithoutConsent {
            requested: PAID,
            refund: Money::from_cents(15_000)
        })
    );
    let events = decide_on(
        &received,
        refund(15_000, Some("agreed to ¥49 off for the scratch")),
    )
    .unwrap();
    let Event::Refunded { deduction, .. } = &events[0] else {
        panic!("expected a refund, got {events:?}")
    };
    assert_eq!(*deduction, Money::from_cents(4_900));
    // Consent does not allow refunding more than was paid.
    assert_eq!(
        decide_on(&received, refund(PAID.cents() + 1, Some("ok"))),
        Err(Rejection::RefundExceedsPaid {
            refund: Money::from_cents(PAID.cents() + 1),
            paid: PAID
        })
    );
    // Refund without return is held to the same rule.
    let (pending, _) = walk(ServiceType::RefundOnly, &["open"]);
    let partial = Command::Dispose {
        disposal: Disposal::RefundWithoutReturn {
            amount: Money::from_cents(100),
            customer_consent: None,
        },
    };
    assert!(matches!(
        decide_on(&pending, partial),
        Err(Rejection::DeductionWithoutConsent { .. })
    ));
}

#[test]
fn inv3_a_rejection_states_its_reason() {
    let (pending, _) = walk(ServiceType::ReturnRefund, &["open"]);
    assert_eq!(
        decide_on(&pending, Command::Reject { reason: None }),
        Err(Rejection::RejectionWithoutReason)
    );
    assert!(
        Note::parse("   ").is_err(),
        "a blank reason is not a reason"
    );
    let events = decide_on(
        &pending,
        Command::Reject {
            reason: Some(note("item was used")),
        },
    )
    .unwrap();
    assert_eq!(names(&events), ["rejected"]);
}

#[test]
fn inv4_closed_by_customer_needs_a_confirmation_and_no_refund() {
    let (awaiting, _) = walk(ServiceType::ReturnRefund, &["open", "approve"]);
    assert_eq!(
        decide_on(&awaiting, Command::Withdraw { confirmation: None }),
        Err(Rejection::WithdrawalWithoutConfirmation)
    );
    let ok = decide_on(
        &awaiting,
        Command::Withdraw {
            confirmation: Some(note("confirmed by phone")),
        },
    )
    .unwrap();
    assert_eq!(
        ok.iter().fold(awaiting, evolve).state(),
        Some(State::ClosedByCustomer)
    );

    // After the refund succeeded, even a confirmed withdrawal is refused, with its own reason.
    for path in [
        &["open", "approve", "confirm_receipt", "dispose_refund"][..],
        &["open", "dispose_refund_without_return"][..],
    ] {
        let (refunded, _) = walk(ServiceType::ReturnRefund, path);
        assert_eq!(
            decide_on(&refunded, canonical("withdraw", ServiceType::ReturnRefund)),
            Err(Rejection::WithdrawalAfterRefund { refunded: PAID })
        );
    }
}

#[test]
fn inv5_a_refunded_order_line_cannot_be_returned_again() {
    let open = canonical("open", ServiceType::ReturnRefund);
    let mut ctx = ctx();
    ctx.order_line_refunded_by = Some(TicketId::parse("jd:99").unwrap());
    assert_eq!(
        decide(&Ticket::default(), open.clone(), &ctx),
        Err(Rejection::OrderLineAlreadyRefunded {
            order_line: OrderLineId::parse("300100200300-1").unwrap(),
            by: TicketId::parse("jd:99").unwrap()
        })
    );
    ctx.order_line_refunded_by = None;
    assert!(decide(&Ticket::default(), open, &ctx).is_ok());
}

fn open_seven_day(signed_for_at: &str, opened_at: &str) -> Result<Vec<Event>, Rejection> {
    let mut ticket = new_ticket(ServiceType::ReturnRefund);
    ticket.reason = Reason::SevenDayNoReason;
    ticket.signed_for_at = Some(at(signed_for_at));
    let ctx = Context::new(at(opened_at), Actor::Customer);
    decide(
        &Ticket::default(),
        Command::Open {
            ticket: Box::new(ticket),
        },
        &ctx,
    )
}

#[test]
fn inv6_seven_day_window_counts_from_midnight_after_the_sign_for() {
    // Signed for on 10 Nov; the 7 days run from 11 Nov 00:00 to 18 Nov 00:00 (+08:00).
    let signed = "2026-11-10T14:30:00+08:00";
    assert!(open_seven_day(signed, "2026-11-17T23:59:00+08:00").is_ok());
    assert_eq!(
        open_seven_day(signed, "2026-11-18T00:00:00+08:00"),
        Err(Rejection::OutsideSevenDayWindow {
            signed_for_at: at(signed),
            window_closed_at: at("2026-11-18T00:00:00+08:00"),
            opened_at: at("2026-11-18T00:00:00+08:00"),
        })
    );
    // The day of the sign-for is the China day, whatever offset the time came in:
    // 10 Nov 16:30 UTC is 11 Nov 00:30 in China, so the window closes on 19 Nov.
    assert!(open_seven_day("2026-11-10T16:30:00Z", "2026-11-18T23:59:00+08:00").is_ok());
    assert!(open_seven_day("2026-11-10T16:30:00Z", "2026-11-19T00:00:00+08:00").is_err());
    // The same instant in UTC is judged the same: 23:59 +08:00 is 15:59 UTC.
    assert!(open_seven_day(signed, "2026-11-17T15:59:00Z").is_ok());
    assert!(open_seven_day(signed, "2026-11-17T16:00:00Z").is_err());
}

#[test]
fn inv6_other_reasons_and_unknown_sign_for_are_not_window_checked() {
    let mut late = new_ticket(ServiceType::ReturnRefund);
    late.signed_for_at = Some(at("2026-01-01T10:00:00+08:00"));
    let ctx = Context::new(at("2026-11-20T10:00:00+08:00"), Actor::Customer);
    assert!(decide(
        &Ticket::default(),
        Command::Open {
            ticket: Box::new(late.clone())
        },
        &ctx
    )
    .is_ok());
    // Seven-day reason but no sign-for time in the message: the platform accepted it, we do too.
    late.reason = Reason::SevenDayNoReason;
    late.signed_for_at = None;
    assert!(decide(
        &Ticket::default(),
        Command::Open {
            ticket: Box::new(late)
        },
        &ctx
    )
    .is_ok());
}

#[test]
fn inv7_return_as_is_needs_a_recorded_conversation() {
    let (received, _) = walk(
        ServiceType::ReturnRefund,
        &["open", "approve", "confirm_receipt"],
    );
    let as_is = |conversation: Option<&str>| Command::Dispose {
        disposal: Disposal::ReturnAsIs {
            conversation: conversation.map(note),
        },
    };
    assert_eq!(
        decide_on(&received, as_is(None)),
        Err(Rejection::ReturnAsIsWithoutConversation)
    );
    let events = decide_on(
        &received,
        as_is(Some("explained the seal policy, customer agreed")),
    )
    .unwrap();
    assert_eq!(
        events.iter().fold(received, evolve).state(),
        Some(State::ReturnedAsIs)
    );
}

#[test]
fn inv8_final_states_accept_only_annotations() {
    let finals: [(ServiceType, &[&str]); 5] = [
        (
            ServiceType::ReturnRefund,
            &["open", "approve", "confirm_receipt", "dispose_refund"],
        ),
        (
            ServiceType::Exchange,
            &["open", "approve", "confirm_receipt", "dispose_exchange"],
        ),
        (
            ServiceType::ReturnRefund,
            &["open", "approve", "confirm_receipt", "dispose_return_as_is"],
        ),
        (ServiceType::ReturnRefund, &["open", "withdraw"]),
        (
            ServiceType::RepairOnsite,
            &["open", "approve", "dispose_repair_done"],
        ),
    ];
    for (service_type, path) in finals {
        let (ticket, _) = walk(service_type, path);
        let state = ticket.state().unwrap();
        assert!(state.is_final(), "{path:?} ends final");
        for command in COMMANDS {
            let result = decide_on(&ticket, canonical(command, service_type));
            match command {
                "annotate" => {
                    let events = result.expect("annotations are always accepted");
                    assert_eq!(
                        events.iter().fold(ticket.clone(), evolve).state(),
                        Some(state)
                    );
                }
                "open" => assert!(matches!(result, Err(Rejection::AlreadyOpened { .. }))),
                _ => assert!(
                    matches!(
                        result,
                        Err(Rejection::TicketFinal { .. } | Rejection::WithdrawalAfterRefund { .. })
                    ),
                    "{state} accepted {command}: {result:?}"
                ),
            }
        }
    }
}

#[test]
fn lapse_is_refused_once_the_goods_are_on_their_way_back() {
    let (shipped, _) = walk(
        ServiceType::ReturnRefund,
        &["open", "approve", "record_return_shipment"],
    );
    assert_eq!(
        decide_on(&shipped, canonical("auto_lapse", ServiceType::ReturnRefund)),
        Err(Rejection::LapseAfterShipment)
    );
}

#[test]
fn a_stale_expiry_is_refused() {
    let (awaiting, _) = walk(ServiceType::ReturnRefund, &["open", "approve"]);
    let review = Command::ExpireDeadline {
        deadline: Deadline {
            kind: DeadlineKind::Review,
            due_at: at("2026-11-22T10:00:00+08:00"),
            rule_id: rule(),
        },
        outcome: None,
    };
    assert_eq!(
        decide_on(&awaiting, review),
        Err(Rejection::DeadlineNotRunning {
            kind: DeadlineKind::Review,
            state: State::AwaitingReturn
        })
    );
}

#[test]
fn a_refund_request_above_the_amount_paid_is_refused_at_opening() {
    let mut ticket = new_ticket(ServiceType::RefundOnly);
    ticket.refund_requested = Some(Money::from_cents(PAID.cents() + 1));
    assert!(matches!(
        decide(
            &Ticket::default(),
            Command::Open {
                ticket: Box::new(ticket)
            },
            &ctx()
        ),
        Err(Rejection::RefundRequestExceedsPaid { .. })
    ));
}

fn expire(kind: DeadlineKind, outcome: Option<AutoOutcome>) -> Command {
    Command::ExpireDeadline {
        deadline: Deadline {
            kind,
            due_at: at("2026-11-21T10:00:00+08:00"),
            rule_id: rule(),
        },
        outcome,
    }
}

#[test]
fn an_expiry_and_its_automatic_outcome_are_one_decision() {
    let (pending, _) = walk(ServiceType::RefundOnly, &["open"]);
    let events = decide_on(
        &pending,
        expire(
            DeadlineKind::RefundOnlyAutoApprove,
            Some(AutoOutcome::Approve),
        ),
    )
    .unwrap();
    assert_eq!(
        names(&events),
        ["deadline_expired", "approved", "refunded_without_return"]
    );
    let Event::Approved { by, rule_id, .. } = &events[1] else {
        panic!()
    };
    assert_eq!((*by, rule_id.as_ref()), (Actor::Platform, Some(&rule())));
    assert_eq!(
        events.iter().fold(pending, evolve).state(),
        Some(State::Completed)
    );

    // An outcome the rules refuse takes the expiry down with it: nothing is half-stored.
    let (exchange, _) = walk(
        ServiceType::Exchange,
        &["open", "approve", "record_return_shipment"],
    );
    assert!(matches!(
        decide_on(
            &exchange,
            expire(
                DeadlineKind::MerchantConfirmRefund,
                Some(AutoOutcome::Refund)
            )
        ),
        Err(Rejection::DisposalDiffersWithoutConsent { .. })
    ));
    assert_eq!(
        names(&decide_on(&exchange, expire(DeadlineKind::MerchantConfirmRefund, None)).unwrap()),
        ["deadline_expired"]
    );
}

fn warn(kind: DeadlineKind) -> Command {
    Command::WarnDeadline {
        deadline: Deadline {
            kind,
            due_at: at("2026-11-21T10:00:00+08:00"),
            rule_id: rule(),
        },
    }
}

#[test]
fn a_stale_warning_is_refused_like_a_stale_expiry() {
    let (awaiting, _) = walk(ServiceType::ReturnRefund, &["open", "approve"]);
    assert_eq!(
        decide_on(&awaiting, warn(DeadlineKind::Review)),
        Err(Rejection::DeadlineNotRunning {
            kind: DeadlineKind::Review,
            state: State::AwaitingReturn
        })
    );
    let (pending, _) = walk(ServiceType::ReturnRefund, &["open"]);
    let events = decide_on(&pending, warn(DeadlineKind::Review)).unwrap();
    assert_eq!(names(&events), ["deadline_warned"]);
    let Event::DeadlineWarned { deadline } = &events[0] else {
        panic!()
    };
    assert_eq!(
        (deadline.kind, deadline.rule_id.as_str()),
        (DeadlineKind::Review, "test.rule")
    );
}

#[test]
fn a_warning_runs_where_its_expiry_would_and_changes_nothing() {
    let paths: [(ServiceType, &[&str]); 12] = [
        (ServiceType::ReturnRefund, &["open"]),
        (ServiceType::ReturnRefund, &["open", "ask_customer"]),
        (ServiceType::ReturnRefund, &["open", "approve"]),
        (
            ServiceType::ReturnRefund,
            &["open", "approve", "record_return_shipment"],
        ),
        (
            ServiceType::ReturnRefund,
            &["open", "approve", "confirm_receipt"],
        ),
        (
            ServiceType::RepairSendIn,
            &["open", "approve", "confirm_receipt"],
        ),
        (ServiceType::RepairOnsite, &["open", "approve"]),
        (ServiceType::ReturnRefund, &["open", "request_intervention"]),
        (ServiceType::ReturnRefund, &["open", "reject"]),
        (ServiceType::ReturnRefund, &["open", "withdraw"]),
        (
            ServiceType::ReturnRefund,
            &["open", "approve", "confirm_receipt", "dispose_refund"],
        ),
        (ServiceType::RefundOnly, &["open", "approve"]),
    ];
    for (service_type, path) in paths {
        let (ticket, _) = walk(service_type, path);
        let state = ticket.state().unwrap();
        for kind in DeadlineKind::ALL {
            let warned = decide_on(&ticket, warn(kind));
            let expired = decide_on(&ticket, expire(kind, None));
            assert_eq!(
                warned.as_ref().map(|e| names(e)).map_err(Rejection::code),
                expired
                    .as_ref()
                    .map(|_| vec!["deadline_warned"])
                    .map_err(Rejection::code),
                "{kind} in {state}"
            );
            assert_eq!(warned.is_ok(), kind.runs_in(state), "{kind} in {state}");
            if let Ok(events) = warned {
                assert_eq!(
                    events.iter().fold(ticket.clone(), evolve),
                    ticket,
                    "a {kind} warning changed a ticket in {state}"
                );
            }
        }
    }
}
