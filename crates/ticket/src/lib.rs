//! The ticket aggregate: the rules of an after-sales ticket (return, exchange, repair,
//! refund) as a pure decider.
//!
//! ```text
//! decide(&Ticket, Command, &Context) -> Result<Vec<Event>, Rejection>
//! evolve(Ticket, &Event) -> Ticket
//! ```
//!
//! ```
//! use aftersales_ticket::*;
//! let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T20:00:00+08:00").unwrap();
//! let ctx = Context::new(at, Actor::Customer);
//! let open = Command::Open { ticket: Box::new(NewTicket {
//!     id: TicketId::parse("jd:1001").unwrap(),
//!     platform: Platform::Jd,
//!     platform_ticket_id: PlatformTicketId::parse("1001").unwrap(),
//!     order_id: OrderId::parse("O-1").unwrap(),
//!     order_line_id: OrderLineId::parse("O-1-1").unwrap(),
//!     sku: Some(Sku::parse("SKU-RED-M").unwrap()),
//!     amount_paid: Money::from_cents(19_900),
//!     refund_requested: None,
//!     customer_id: Some(CustomerId::parse("c-42").unwrap()),
//!     service_type: ServiceType::ReturnRefund,
//!     reason: Reason::QualityProblem,
//!     signed_for_at: None,
//!     order_shipped: None,
//! })};
//! let events = decide(&Ticket::default(), open, &ctx).unwrap();
//! let ticket = Ticket::replay(&events);
//! assert_eq!(ticket.state(), Some(State::PendingReview));
//! ```
//!
//! The rules come from `shared/domain/RULES.md`; the transition table is
//! `docs/TRANSITIONS.md`, and a test reads that table and checks every cell against `decide`.
//!
//! This crate must never do I/O, read a clock, log, or hold anything but values: time and
//! facts about other tickets arrive in [`Context`], so every rule is testable as
//! given(events) / when(command) / then(events or rejection).

mod command;
mod decide;
mod domain;
mod event;
mod state;

pub use command::{AutoOutcome, Command, Context, Disposal, NewTicket};
pub use decide::{decide, seven_day_window_closes_at, Rejection};
pub use domain::{
    china_offset, Actor, CustomerId, Deadline, DeadlineKind, InvalidValue, Money, Note, OrderId,
    OrderLineId, Outcome, Platform, PlatformName, PlatformTicketId, Reason, ReturnMethod, RuleId,
    RulePackId, ServiceType, Sku, TicketId, Timestamp, Waybill,
};
pub use event::{Event, ExchangeMethod, Opened};
pub use state::{evolve, Settlement, State, Ticket, TicketData};
