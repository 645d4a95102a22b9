//! The ticket as its events have made it, and `evolve`, the one way it changes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{
    CustomerId, Money, OrderId, OrderLineId, Platform, PlatformTicketId, Reason, ReturnMethod,
    RulePackId, ServiceType, Sku, TicketId, Timestamp,
};
use crate::event::{Event, ExchangeMethod};

/// Where a ticket stands in its lifecycle (RULES.md section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// 待审核.
    PendingReview,
    /// 待客户反馈.
    AwaitingCustomer,
    /// 审核通过, 待寄回 / 待取件.
    AwaitingReturn,
    /// 商家收货.
    Received,
    /// 维修中.
    InRepair,
    /// 申请介入 / 纠纷单.
    InDispute,
    /// 审核不通过 (the customer may resubmit or ask the platform to step in).
    Rejected,
    /// 退款 (final).
    Refunded,
    /// 换新 (final).
    Exchanged,
    /// 原返 (final).
    ReturnedAsIs,
    /// 客户放弃 / 用户取消 (final).
    ClosedByCustomer,
    /// 完成 / 暂完结 (final).
    Completed,
}

impl State {
    pub const ALL: [State; 12] = [
        State::PendingReview,
        State::AwaitingCustomer,
        State::AwaitingReturn,
        State::Received,
        State::InRepair,
        State::InDispute,
        State::Rejected,
        State::Refunded,
        State::Exchanged,
        State::ReturnedAsIs,
        State::ClosedByCustomer,
        State::Completed,
    ];

    /// A final state accepts nothing but audit annotations (invariant 8).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Refunded
                | State::Exchanged
                | State::ReturnedAsIs
                | State::ClosedByCustomer
                | State::Completed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::PendingReview => "pending_review",
            State::AwaitingCustomer => "awaiting_customer",
            State::AwaitingReturn => "awaiting_return",
            State::Received => "received",
            State::InRepair => "in_repair",
            State::InDispute => "in_dispute",
            State::Rejected => "rejected",
            State::Refunded => "refunded",
            State::Exchanged => "exchanged",
            State::ReturnedAsIs => "returned_as_is",
            State::ClosedByCustomer => "closed_by_customer",
            State::Completed => "completed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}"))
    }
}

/// How a ticket was settled, once it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Settlement {
    Refund {
        amount: Money,
        without_return: bool,
    },
    Exchange {
        method: ExchangeMethod,
        sku: Option<Sku>,
    },
    ReturnedAsIs,
    RepairDone,
    Withdrawn,
    Lapsed,
    DisputeClosed,
}

/// A ticket that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketData {
    pub id: TicketId,
    pub platform: Platform,
    pub platform_ticket_id: PlatformTicketId,
    pub order_id: OrderId,
    pub order_line_id: OrderLineId,
    pub sku: Option<Sku>,
    pub amount_paid: Money,
    pub refund_requested: Money,
    pub customer_id: Option<CustomerId>,
    pub service_type: ServiceType,
    pub reason: Reason,
    pub signed_for_at: Option<Timestamp>,
    pub opened_at: Timestamp,
    pub order_shipped: Option<bool>,
    pub rule_pack: Option<RulePackId>,
    pub state: State,
    /// Set on approval.
    pub return_method: Option<ReturnMethod>,
    /// The goods are on their way back (shipped or picked up).
    pub shipped_back: bool,
    /// The money returned so far; `Some` means the refund succeeded (invariant 4).
    pub refunded: Option<Money>,
    pub settlement: Option<Settlement>,
    /// How many deadlines expired on this ticket (breaches, for the dashboards).
    pub deadlines_expired: u32,
    pub annotations: u32,
}

/// A ticket: not yet opened, or open with its data. `Ticket::default()` is the start of the
/// fold: `events.iter().fold(Ticket::default(), evolve)` rebuilds any ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "ticket", rename_all = "snake_case")]
pub enum Ticket {
    #[default]
    Unopened,
    Open(Box<TicketData>),
}

impl Ticket {
    pub fn state(&self) -> Option<State> {
        match self {
            Ticket::Unopened => None,
            Ticket::Open(t) => Some(t.state),
        }
    }

    pub fn data(&self) -> Option<&TicketData> {
        match self {
            Ticket::Unopened => None,
            Ticket::Open(t) => Some(t),
        }
    }

    /// Rebuilds a ticket from its history.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Ticket {
        events.into_iter().fold(Ticket::default(), evolve)
    }
}

/// Applies one event. Total and trusting: events were decided already, so an event that
/// cannot apply (anything but `opened` on an unopened ticket) leaves the ticket unchanged
/// rather than failing a replay.
pub fn evolve(ticket: Ticket, event: &Event) -> Ticket {
    let mut t = match (ticket, event) {
        (Ticket::Unopened, Event::Opened(o)) => {
            return Ticket::Open(Box::new(TicketData {
                id: o.id.clone(),
                platform: o.platform.clone(),
                platform_ticket_id: o.platform_ticket_id.clone(),
                order_id: o.order_id.clone(),
                order_line_id: o.order_line_id.clone(),
                sku: o.sku.clone(),
                amount_paid: o.amount_paid,
                refund_requested: o.refund_requested,
                customer_id: o.customer_id.clone(),
                service_type: o.service_type,
                reason: o.reason,
                signed_for_at: o.signed_for_at,
                opened_at: o.opened_at,
                order_shipped: o.order_shipped,
                rule_pack: o.rule_pack.clone(),
                state: State::PendingReview,
                return_method: None,
                shipped_back: false,
                refunded: None,
                settlement: None,
                deadlines_expired: 0,
                annotations: 0,
            }))
        }
        (Ticket::Unopened, _) => return Ticket::Unopened,
        (Ticket::Open(t), _) => t,
    };
    match event {
        Event::Opened(_) => {}
        Event::Approved { return_method, .. } => {
            t.return_method = Some(*return_method);
            t.state = match t.service_type {
                // Onsite repair needs nothing shipped: approval starts the repair.
                ServiceType::RepairOnsite => State::InRepair,
                _ => State::AwaitingReturn,
            };
        }
        Event::Rejected { .. } => t.state = State::Rejected,
        Event::CustomerAsked { .. } => t.state = State::AwaitingCustomer,
        Event::CustomerResponded | Event::Resubmitted => t.state = State::PendingReview,
        Event::ReturnShipped { .. } => t.shipped_back = true,
        Event::GoodsReceived => {
            t.shipped_back = true;
            t.state = match t.service_type {
                ServiceType::RepairSendIn => State::InRepair,
                _ => State::Received,
            };
        }
        Event::Refunded { amount, .. } => {
            t.refunded = Some(*amount);
            t.settlement = Some(Settlement::Refund {
                amount: *amount,
                without_return: false,
            });
            t.state = State::Refunded;
        }
        Event::RefundedWithoutReturn { amount, .. } => {
            t.refunded = Some(*amount);
            t.settlement = Some(Settlement::Refund {
                amount: *amount,
                without_return: true,
            });
            // JD books refund-without-return as 暂完结 (RULES.md section 2).
            t.state = State::Completed;
        }
        Event::Exchanged {
            method,
            replacement_sku,
            ..
        } => {
            t.settlement = Some(Settlement::Exchange {
                method: *method,
                sku: replacement_sku.clone(),
            });
            t.state = State::Exchanged;
        }
        Event::ReturnedAsIs { .. } => {
            t.settlement = Some(Settlement::ReturnedAsIs);
            t.state = State::ReturnedAsIs;
        }
        Event::RepairCompleted { .. } => {
            t.settlement = Some(Settlement::RepairDone);
            t.state = State::Completed;
        }
        Event::Withdrawn { .. } => {
            t.settlement = Some(Settlement::Withdrawn);
            t.state = State::ClosedByCustomer;
        }
        Event::InterventionRequested { .. } => t.state = State::InDispute,
        Event::DisputeClosed => {
            t.settlement = Some(Settlement::DisputeClosed);
            t.state = State::Completed;
        }
        Event::DeadlineExpired { .. } => t.deadlines_expired += 1,
        // A warning is an alert, not a change: the ticket stays as it was.
        Event::DeadlineWarned { .. } => {}
        Event::Lapsed { .. } => {
            t.settlement = Some(Settlement::Lapsed);
            t.state = State::Completed;
        }
        Event::Annotated { .. } => t.annotations += 1,
    }
    Ticket::Open(t)
}
