//! Property tests: random command sequences against the decider.

mod support;

use aftersales_ticket::*;
use proptest::prelude::*;
use support::*;

/// A command with its variations: present or missing consent and notes, any amount, any
/// deadline kind, any service type and reason at opening.
fn command() -> impl Strategy<Value = Command> {
    let name = prop::sample::select(COMMANDS.to_vec());
    let service = prop::sample::select(ServiceType::ALL.to_vec());
    let kind = prop::sample::select(DeadlineKind::ALL.to_vec());
    (
        name,
        service,
        kind,
        any::<bool>(),
        0u64..=PAID.cents() + 500,
        any::<bool>(),
    )
        .prop_map(|(name, service_type, kind, with_note, amount, seven_day)| {
            let consent = with_note.then(|| note("consent noted"));
            match canonical(name, service_type) {
                Command::Open { mut ticket } => {
                    if seven_day {
                        ticket.reason = Reason::SevenDayNoReason;
                        ticket.signed_for_at = Some(at("2026-11-12T09:00:00+08:00"));
                    }
                    Command::Open { ticket }
                }
                Command::Reject { .. } => Command::Reject { reason: consent },
                Command::Withdraw { .. } => Command::Withdraw {
                    confirmation: consent,
                },
                Command::ExpireDeadline { mut deadline, .. } => {
                    deadline.kind = kind;
                    // Sometimes with an automatic outcome, so it is held to the same rules.
                    let outcome = with_note.then_some(AutoOutcome::Lapse);
                    Command::ExpireDeadline { deadline, outcome }
                }
                Command::WarnDeadline { mut deadline } => {
                    deadline.kind = kind;
                    Command::WarnDeadline { deadline }
                }
                Command::Dispose { disposal } => Command::Dispose {
                    disposal: match disposal {
                        Disposal::Refund {
                            return_shipping, ..
                        } => Disposal::Refund {
                            amount: Money::from_cents(amount),
                            return_shipping,
                            customer_consent: consent,
                        },
                        Disposal::RefundWithoutReturn { .. } => Disposal::RefundWithoutReturn {
                            amount: Money::from_cents(amount),
                            customer_consent: consent,
                        },
                        Disposal::Exchange { .. } => Disposal::Exchange {
                            replacement_sku: None,
                            customer_consent: consent,
                        },
                        Disposal::OfflineExchange { .. } => Disposal::OfflineExchange {
                            customer_consent: consent,
                        },
                        Disposal::ReissueWithoutReturn { .. } => Disposal::ReissueWithoutReturn {
                            customer_consent: consent,
                        },
                        Disposal::ReturnAsIs { .. } => Disposal::ReturnAsIs {
                            conversation: consent,
                        },
                        Disposal::RepairDone { .. } => Disposal::RepairDone {
                            customer_consent: consent,
                        },
                    },
                },
                other => other,
            }
        })
}

fn actor() -> impl Strategy<Value = Actor> {
    prop::sample::select(vec![Actor::Merchant, Actor::Customer, Actor::Platform])
}

/// What must hold of every ticket, whatever happened to it.
fn well_formed(t: &TicketData) -> Result<(), String> {
    use State::*;
    let settled = t.settlement.as_ref();
    let ok = match (t.state, settled) {
        (s, None) if !s.is_final() => true,
        (
            Refunded,
            Some(Settlement::Refund {
                without_return: false,
                ..
            }),
        ) => true,
        (Exchanged, Some(Settlement::Exchange { .. })) => true,
        (ReturnedAsIs, Some(Settlement::ReturnedAsIs)) => true,
        (ClosedByCustomer, Some(Settlement::Withdrawn)) => true,
        (
            Completed,
            Some(
                Settlement::Refund {
                    without_return: true,
                    ..
                }
                | Settlement::RepairDone
                | Settlement::Lapsed
                | Settlement::DisputeClosed,
            ),
        ) => true,
        _ => false,
    };
    if !ok {
        return Err(format!("state {} with settlement {settled:?}", t.state));
    }
    let refund_settled = matches!(settled, Some(Settlement::Refund { .. }));
    if t.refunded.is_some() != refund_settled {
        return Err(format!(
            "refunded {:?} but settlement {settled:?}",
            t.refunded
        ));
    }
    if t.refunded.is_some_and(|r| r > t.amount_paid) {
        return Err("refunded more than paid".into());
    }
    let repair = matches!(
        t.service_type,
        ServiceType::RepairOnsite | ServiceType::RepairSendIn
    );
    if t.state == InRepair && !repair {
        return Err(format!("a {} ticket in repair", t.service_type));
    }
    if t.state == AwaitingReturn && t.return_method.is_none() {
        return Err("awaiting return without approval".into());
    }
    if matches!(t.state, Received | AwaitingReturn) && t.service_type == ServiceType::RefundOnly {
        return Err("a refund-only ticket waits for goods".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_tickets_well_formed_final_and_replayable(
        start in prop::sample::select(ServiceType::ALL.to_vec()),
        steps in prop::collection::vec((command(), actor()), 1..40),
    ) {
        let mut ticket = Ticket::default();
        let mut history: Vec<Event> = Vec::new();
        // Every sequence starts with a valid opening, so the rest exercises an open ticket.
        let opening = std::iter::once((canonical("open", start), Actor::Customer));
        for (command, actor) in opening.chain(steps) {
            let ctx = Context::new(ctx().at, actor);
            let before = ticket.clone();
            let decided = decide(&ticket, command.clone(), &ctx);
            // Pure: the same question gets the same answer.
            prop_assert_eq!(&decided, &decide(&ticket, command.clone(), &ctx));
            let Ok(events) = decided else { continue };
            prop_assert!(!events.is_empty(), "an accepted command yields events");
            for e in &events {
                ticket = evolve(ticket, e);
            }
            history.extend(events);

            if let Some(state) = before.state().filter(|s| s.is_final()) {
                prop_assert_eq!(ticket.state(), Some(state), "a final state changed on {}", command.name());
                prop_assert!(matches!(command, Command::Annotate { .. }), "a final ticket accepted {}", command.name());
            }
            if let Some(data) = ticket.data() {
                if let Err(why) = well_formed(data) {
                    prop_assert!(false, "after {}: {}", command.name(), why);
                }
            }
            // A warning is an alert only: the ticket is exactly as it was.
            if matches!(command, Command::WarnDeadline { .. }) {
                prop_assert_eq!(&ticket, &before, "a warning changed the ticket");
            }
            // Replay gives the same ticket as the state decide saw next.
            prop_assert_eq!(&Ticket::replay(&history), &ticket);
        }
    }
}
