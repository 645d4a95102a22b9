//! `decide`: the rules. Given a ticket and a command, either the events that follow or the
//! reason the command is refused. Pure: no clock, no I/O; what it needs comes in `Context`.

use chrono::{Days, NaiveTime, TimeZone};
use serde::Serialize;

use crate::command::{AutoOutcome, Command, Context, Disposal, NewTicket};
use crate::domain::{
    china_offset, Actor, Deadline, DeadlineKind, Money, Note, OrderLineId, Outcome, Reason,
    ReturnMethod, RuleId, ServiceType, TicketId, Timestamp,
};
use crate::event::{Event, ExchangeMethod, Opened};
use crate::state::{State, Ticket, TicketData};

/// Why a command was refused. Each invariant of RULES.md section 4 has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    #[error("`{command}` refused: the ticket has not been opened")]
    NotOpened { command: &'static str },
    #[error("`open` refused: ticket {id} is already open")]
    AlreadyOpened { id: TicketId },
    #[error("`{command}` refused: not allowed while the ticket is {state}")]
    NotAllowedInState { command: &'static str, state: State },
    /// Invariant 8.
    #[error(
        "`{command}` refused: the ticket is {state}, a final state, which takes only annotations"
    )]
    TicketFinal { command: &'static str, state: State },
    /// Invariant 1.
    #[error("disposal refused: the customer asked for {requested} and the disposal gives {disposal}; that needs the customer's recorded consent")]
    DisposalDiffersWithoutConsent {
        requested: Outcome,
        disposal: Outcome,
    },
    /// Invariant 2.
    #[error("refund refused: {refund} is less than the {requested} asked for; a deduction needs the customer's recorded consent")]
    DeductionWithoutConsent { requested: Money, refund: Money },
    #[error("refund refused: {refund} is more than the {paid} paid")]
    RefundExceedsPaid { refund: Money, paid: Money },
    #[error("`open` refused: the refund asked for ({requested}) is more than the {paid} paid")]
    RefundRequestExceedsPaid { requested: Money, paid: Money },
    /// Invariant 3.
    #[error("rejection refused: a rejection must state its reason")]
    RejectionWithoutReason,
    /// Invariant 4, first half.
    #[error("withdrawal refused: closing a ticket for the customer needs a note of the confirmation with the customer")]
    WithdrawalWithoutConfirmation,
    /// Invariant 4, second half.
    #[error("withdrawal refused: the refund of {refunded} already succeeded")]
    WithdrawalAfterRefund { refunded: Money },
    /// Invariant 5.
    #[error("`open` refused: order line {order_line} was already refunded by ticket {by}")]
    OrderLineAlreadyRefunded {
        order_line: OrderLineId,
        by: TicketId,
    },
    /// Invariant 6.
    #[error("`open` refused: a seven-day no-reason return opened at {opened_at} is outside its window, which closed at {window_closed_at} (signed for at {signed_for_at})")]
    OutsideSevenDayWindow {
        signed_for_at: Timestamp,
        window_closed_at: Timestamp,
        opened_at: Timestamp,
    },
    /// Invariant 7.
    #[error("return as-is refused: it needs a note of the conversation with the customer")]
    ReturnAsIsWithoutConversation,
    /// A stale expiry or warning: the deadline's clock is not running in this state.
    #[error(
        "expiry or warning refused: a {kind} deadline does not run while the ticket is {state}"
    )]
    DeadlineNotRunning { kind: DeadlineKind, state: State },
    #[error("lapse refused: the customer already shipped the goods back")]
    LapseAfterShipment,
}

impl Rejection {
    /// A stable machine-readable code (the JSON `code` field).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotOpened { .. } => "not_opened",
            Rejection::AlreadyOpened { .. } => "already_opened",
            Rejection::NotAllowedInState { .. } => "not_allowed_in_state",
            Rejection::TicketFinal { .. } => "ticket_final",
            Rejection::DisposalDiffersWithoutConsent { .. } => "disposal_differs_without_consent",
            Rejection::DeductionWithoutConsent { .. } => "deduction_without_consent",
            Rejection::RefundExceedsPaid { .. } => "refund_exceeds_paid",
            Rejection::RefundRequestExceedsPaid { .. } => "refund_request_exceeds_paid",
            Rejection::RejectionWithoutReason => "rejection_without_reason",
            Rejection::WithdrawalWithoutConfirmation => "withdrawal_without_confirmation",
            Rejection::WithdrawalAfterRefund { .. } => "withdrawal_after_refund",
            Rejection::OrderLineAlreadyRefunded { .. } => "order_line_already_refunded",
            Rejection::OutsideSevenDayWindow { .. } => "outside_seven_day_window",
            Rejection::ReturnAsIsWithoutConversation => "return_as_is_without_conversation",
            Rejection::DeadlineNotRunning { .. } => "deadline_not_running",
            Rejection::LapseAfterShipment => "lapse_after_shipment",
        }
    }
}

/// When the seven-day no-reason window closes: 7 days counted from 00:00 (+08:00) of the
/// day after the sign-for (001: "自物流显示签收商品的次日零时开始起算"), so a ticket opened at
/// 23:59 on the 7th day after the sign-for day is in time and one at 00:00 the next is not.
pub fn seven_day_window_closes_at(signed_for_at: Timestamp) -> Timestamp {
    let cst = china_offset();
    let day = signed_for_at.with_timezone(&cst).date_naive();
    let closes = day
        .checked_add_days(Days::new(8))
        .unwrap_or(day)
        .and_time(NaiveTime::MIN);
    cst.from_local_datetime(&closes)
        .single()
        .expect("a fixed offset maps every local time to one instant")
}

impl DeadlineKind {
    /// Whether a deadline of this kind can be running while a ticket is in `state`. An expiry
    /// outside these states is stale (the clock was stopped) and is refused.
    pub fn runs_in(self, state: State) -> bool {
        use State::*;
        if state.is_final() {
            return false;
        }
        match self {
            DeadlineKind::Review
            | DeadlineKind::CancelReviewBeforeShipment
            | DeadlineKind::CancelReviewAfterShipment
            | DeadlineKind::RefundOnlyAutoApprove => state == PendingReview,
            DeadlineKind::DisposeAfterReceipt => state == Received,
            DeadlineKind::Pickup | DeadlineKind::CustomerShipBack => state == AwaitingReturn,
            // Onsite repair counts from submission to the finished repair.
            DeadlineKind::RepairOnsite => {
                matches!(state, PendingReview | AwaitingCustomer | InRepair)
            }
            DeadlineKind::RepairSendIn => state == InRepair,
            DeadlineKind::CustomerResubmit => state == Rejected,
            DeadlineKind::MerchantConfirmRefund => matches!(state, AwaitingReturn | Received),
            // Kuaishou: an agent pre-fills the ticket (recorded as opened + customer_asked),
            // the customer must confirm it; unconfirmed, it lapses, which only a ticket
            // waiting on its customer can.
            DeadlineKind::CustomerConfirm => state == AwaitingCustomer,
            // Violations and complaints run beside the ticket's own flow.
            DeadlineKind::ViolationAppeal | DeadlineKind::ComplaintReply => true,
        }
    }
}

/// Decides what a command does to a ticket.
pub fn decide(ticket: &Ticket, command: Command, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    let name = command.name();
    let (t, command) = match (ticket, command) {
        (Ticket::Unopened, Command::Open { ticket }) => return open(*ticket, ctx),
        (Ticket::Unopened, _) => return Err(Rejection::NotOpened { command: name }),
        (Ticket::Open(t), Command::Open { .. }) => {
            return Err(Rejection::AlreadyOpened { id: t.id.clone() })
        }
        // Audit annotations are the one thing every state, final or not, accepts.
        (Ticket::Open(_), Command::Annotate { note }) => {
            return Ok(vec![Event::Annotated {
                note,
                by: ctx.actor,
            }])
        }
        (Ticket::Open(t), command) => (t.as_ref(), command),
    };
    if t.state.is_final() {
        if let (Command::Withdraw { .. }, Some(refunded)) = (&command, t.refunded) {
            return Err(Rejection::WithdrawalAfterRefund { refunded });
        }
        return Err(Rejection::TicketFinal {
            command: name,
            state: t.state,
        });
    }
    use State::*;
    let allow = |states: &[State]| {
        if states.contains(&t.state) {
            Ok(())
        } else {
            Err(Rejection::NotAllowedInState {
                command: name,
                state: t.state,
            })
        }
    };
    match command {
        Command::Open { .. } | Command::Annotate { .. } => unreachable!("handled above"),
        Command::Approve { return_method } => {
            allow(&[PendingReview, AwaitingCustomer])?;
            Ok(approve(t, return_method, ctx.actor, None))
        }
        Command::Reject { reason } => {
            allow(&[PendingReview, AwaitingCustomer])?;
            let reason = reason.ok_or(Rejection::RejectionWithoutReason)?;
            Ok(vec![Event::Rejected { reason }])
        }
        Command::AskCustomer { note } => {
            allow(&[PendingReview])?;
            Ok(vec![Event::CustomerAsked { note }])
        }
        Command::CustomerResponded => {
            allow(&[AwaitingCustomer])?;
            Ok(vec![Event::CustomerResponded])
        }
        Command::Resubmit => {
            allow(&[Rejected])?;
            Ok(vec![Event::Resubmitted])
        }
        Command::RecordReturnShipment { waybill } => {
            allow(&[AwaitingReturn])?;
            Ok(vec![Event::ReturnShipped { waybill }])
        }
        Command::ConfirmReceipt => {
            allow(&[AwaitingReturn])?;
            Ok(vec![Event::GoodsReceived])
        }
        Command::Dispose { disposal } => dispose(t, disposal, ctx.actor, &allow),
        Command::Withdraw { confirmation } => {
            let confirmation = confirmation.ok_or(Rejection::WithdrawalWithoutConfirmation)?;
            Ok(vec![Event::Withdrawn { confirmation }])
        }
        Command::RequestIntervention => {
            allow(&[
                PendingReview,
                AwaitingCustomer,
                AwaitingReturn,
                Received,
                InRepair,
                Rejected,
            ])?;
            Ok(vec![Event::InterventionRequested { by: ctx.actor }])
        }
        Command::CloseDispute => {
            allow(&[InDispute])?;
            Ok(vec![Event::DisputeClosed])
        }
        Command::ExpireDeadline { deadline, outcome } => {
            check_running(&deadline, t.state)?;
            let rule_id = deadline.rule_id.clone();
            let mut events = vec![Event::DeadlineExpired { deadline }];
            if let Some(outcome) = outcome {
                events.extend(auto_outcome(t, outcome, rule_id, &allow)?);
            }
            Ok(events)
        }
        Command::WarnDeadline { deadline } => {
            // The same staleness check as an expiry: a clock that stopped warns nobody.
            check_running(&deadline, t.state)?;
            Ok(vec![Event::DeadlineWarned { deadline }])
        }
        Command::ApplyPlatformOutcome { outcome, rule_id } => {
            auto_outcome(t, outcome, rule_id, &allow)
        }
    }
}

/// An expiry or warning of a deadline whose kind does not run in `state` is stale.
fn check_running(deadline: &Deadline, state: State) -> Result<(), Rejection> {
    if deadline.kind.runs_in(state) {
        Ok(())
    } else {
        Err(Rejection::DeadlineNotRunning {
            kind: deadline.kind,
            state,
        })
    }
}

fn open(new: NewTicket, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    let requested = new.refund_requested.unwrap_or(new.amount_paid);
    if requested > new.amount_paid {
        return Err(Rejection::RefundRequestExceedsPaid {
            requested,
            paid: new.amount_paid,
        });
    }
    if let Some(by) = &ctx.order_line_refunded_by {
        return Err(Rejection::OrderLineAlreadyRefunded {
            order_line: new.order_line_id,
            by: by.clone(),
        });
    }
    // Without a sign-for time the window cannot be checked here; the platform checked it
    // when it accepted the request (docs/DOMAIN.md, "choices").
    if let (Reason::SevenDayNoReason, Some(signed_for_at)) = (new.reason, new.signed_for_at) {
        let window_closed_at = seven_day_window_closes_at(signed_for_at);
        if ctx.at >= window_closed_at {
            return Err(Rejection::OutsideSevenDayWindow {
                signed_for_at,
                window_closed_at,
                opened_at: ctx.at,
            });
        }
    }
    Ok(vec![Event::Opened(Box::new(Opened {
        id: new.id,
        platform: new.platform,
        platform_ticket_id: new.platform_ticket_id,
        order_id: new.order_id,
        order_line_id: new.order_line_id,
        sku: new.sku,
        amount_paid: new.amount_paid,
        refund_requested: requested,
        customer_id: new.customer_id,
        service_type: new.service_type,
        reason: new.reason,
        signed_for_at: new.signed_for_at,
        opened_at: ctx.at,
        order_shipped: new.order_shipped,
        rule_pack: ctx.rule_pack.clone(),
    }))])
}

fn approve(
    t: &TicketData,
    return_method: ReturnMethod,
    by: Actor,
    rule_id: Option<RuleId>,
) -> Vec<Event> {
    let mut events = vec![Event::Approved {
        return_method,
        by,
        rule_id: rule_id.clone(),
    }];
    // Approving a refund-only request is the refund: nothing is to be shipped back.
    if t.service_type == ServiceType::RefundOnly {
        events.push(Event::RefundedWithoutReturn {
            amount: t.refund_requested,
            deduction: Money::ZERO,
            customer_consent: None,
            by,
            rule_id,
        });
    }
    events
}

/// Invariant 1: the disposal gives what was asked for, or the customer agreed otherwise.
fn check_outcome(
    t: &TicketData,
    disposal: Outcome,
    consent: &Option<Note>,
) -> Result<(), Rejection> {
    let requested = t.service_type.requested_outcome();
    if disposal != requested && consent.is_none() {
        return Err(Rejection::DisposalDiffersWithoutConsent {
            requested,
            disposal,
        });
    }
    Ok(())
}

/// Invariant 2 and the upper bound: returns the deduction the refund makes.
fn check_refund(t: &TicketData, amount: Money, consent: &Option<Note>) -> Result<Money, Rejection> {
    if amount > t.amount_paid {
        return Err(Rejection::RefundExceedsPaid {
            refund: amount,
            paid: t.amount_paid,
        });
    }
    let deduction = t.refund_requested.saturating_sub(amount);
    if deduction > Money::ZERO && consent.is_none() {
        return Err(Rejection::DeductionWithoutConsent {
            requested: t.refund_requested,
            refund: amount,
        });
    }
    Ok(deduction)
}

fn dispose(
    t: &TicketData,
    disposal: Disposal,
    by: Actor,
    allow: &dyn Fn(&[State]) -> Result<(), Rejection>,
) -> Result<Vec<Event>, Rejection> {
    use State::*;
    let event = match disposal {
        Disposal::Refund {
            amount,
            return_shipping,
            customer_consent,
        } => {
            allow(&[AwaitingReturn, Received, InRepair, InDispute])?;
            check_outcome(t, Outcome::Refund, &customer_consent)?;
            let deduction = check_refund(t, amount, &customer_consent)?;
            Event::Refunded {
                amount,
                return_shipping,
                deduction,
                customer_consent,
                by,
                rule_id: None,
            }
        }
        Disposal::RefundWithoutReturn {
            amount,
            customer_consent,
        } => {
            allow(&[PendingReview, AwaitingCustomer, AwaitingReturn, InDispute])?;
            check_outcome(t, Outcome::Refund, &customer_consent)?;
            let deduction = check_refund(t, amount, &customer_consent)?;
            Event::RefundedWithoutReturn {
                amount,
                deduction,
                customer_consent,
                by,
                rule_id: None,
            }
        }
        Disposal::Exchange {
            replacement_sku,
            customer_consent,
        } => {
            allow(&[Received, InRepair, InDispute])?;
            check_outcome(t, Outcome::Exchange, &customer_consent)?;
            Event::Exchanged {
                method: ExchangeMethod::Replacement,
                replacement_sku: replacement_sku.or_else(|| t.sku.clone()),
                customer_consent,
                by,
            }
        }
        Disposal::OfflineExchange { customer_consent } => {
            allow(&[PendingReview, Received, InRepair, InDispute])?;
            check_outcome(t, Outcome::Exchange, &customer_consent)?;
            Event::Exchanged {
                method: ExchangeMethod::Offline,
                replacement_sku: t.sku.clone(),
                customer_consent,
                by,
            }
        }
        Disposal::ReissueWithoutReturn { customer_consent } => {
            allow(&[PendingReview, AwaitingCustomer, AwaitingReturn, InDispute])?;
            check_outcome(t, Outcome::Exchange, &customer_consent)?;
            Event::Exchanged {
                method: ExchangeMethod::ReissueWithoutReturn,
                replacement_sku: t.sku.clone(),
                customer_consent,
                by,
            }
        }
        Disposal::ReturnAsIs { conversation } => {
            allow(&[Received, InRepair])?;
            let conversation = conversation.ok_or(Rejection::ReturnAsIsWithoutConversation)?;
            Event::ReturnedAsIs { conversation, by }
        }
        Disposal::RepairDone { customer_consent } => {
            allow(&[InRepair])?;
            check_outcome(t, Outcome::Repair, &customer_consent)?;
            Event::RepairCompleted {
                customer_consent,
                by,
            }
        }
    };
    Ok(vec![event])
}

fn auto_outcome(
    t: &TicketData,
    outcome: AutoOutcome,
    rule_id: RuleId,
    allow: &dyn Fn(&[State]) -> Result<(), Rejection>,
) -> Result<Vec<Event>, Rejection> {
    use State::*;
    // The platform never records consent: an automatic outcome that would need it is refused.
    let events = match outcome {
        AutoOutcome::Approve => {
            allow(&[PendingReview, AwaitingCustomer])?;
            approve(t, ReturnMethod::default(), Actor::Platform, Some(rule_id))
        }
        AutoOutcome::Refund => {
            allow(&[AwaitingReturn, Received])?;
            check_outcome(t, Outcome::Refund, &None)?;
            vec![Event::Refunded {
                amount: t.refund_requested,
                return_shipping: Money::ZERO,
                deduction: Money::ZERO,
                customer_consent: None,
                by: Actor::Platform,
                rule_id: Some(rule_id),
            }]
        }
        AutoOutcome::RefundWithoutReturn => {
            allow(&[PendingReview, AwaitingCustomer, AwaitingReturn])?;
            check_outcome(t, Outcome::Refund, &None)?;
            vec![Event::RefundedWithoutReturn {
                amount: t.refund_requested,
                deduction: Money::ZERO,
                customer_consent: None,
                by: Actor::Platform,
                rule_id: Some(rule_id),
            }]
        }
        AutoOutcome::Lapse => {
            allow(&[Rejected, AwaitingReturn, AwaitingCustomer])?;
            if t.state == AwaitingReturn && t.shipped_back {
                return Err(Rejection::LapseAfterShipment);
            }
            vec![Event::Lapsed { rule_id }]
        }
    };
    Ok(events)
}
