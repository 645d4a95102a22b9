//! The facts a ticket's life is made of. Events are stored for ever: fields are only ever
//! added (see `docs/SCHEMA.md` for how the stored form evolves).

use serde::{Deserialize, Serialize};

use crate::domain::{
    Actor, CustomerId, Deadline, Money, Note, OrderId, OrderLineId, Platform, PlatformTicketId,
    Reason, ReturnMethod, RuleId, RulePackId, ServiceType, Sku, TicketId, Timestamp, Waybill,
};

/// The ticket as the customer opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    pub id: TicketId,
    pub platform: Platform,
    pub platform_ticket_id: PlatformTicketId,
    pub order_id: OrderId,
    pub order_line_id: OrderLineId,
    #[serde(default)]
    pub sku: Option<Sku>,
    pub amount_paid: Money,
    /// Resolved at opening: the amount asked back (the amount paid when the platform sent none).
    pub refund_requested: Money,
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
    pub service_type: ServiceType,
    pub reason: Reason,
    pub signed_for_at: Option<Timestamp>,
    /// When the customer submitted the ticket: review deadlines count from here.
    pub opened_at: Timestamp,
    /// Whether the order had shipped at opening; `None`: the platform did not say (and
    /// events written before the field existed).
    #[serde(default)]
    pub order_shipped: Option<bool>,
    /// The rule pack the ticket's deadlines follow for life; `None`: not recorded (events
    /// written before the field existed), so the platform's current pack applies.
    #[serde(default)]
    pub rule_pack: Option<RulePackId>,
}

/// How an exchange was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeMethod {
    /// A replacement sent through the platform, after the goods came back.
    Replacement,
    /// 线下换新.
    Offline,
    /// 不退货补发商品.
    ReissueWithoutReturn,
}

/// Something that happened to a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Opened(Box<Opened>),
    Approved {
        return_method: ReturnMethod,
        by: Actor,
        /// The platform rule that approved it automatically, if any.
        rule_id: Option<RuleId>,
    },
    Rejected {
        reason: Note,
    },
    CustomerAsked {
        note: Option<Note>,
    },
    CustomerResponded,
    Resubmitted,
    ReturnShipped {
        waybill: Option<Waybill>,
    },
    GoodsReceived,
    Refunded {
        amount: Money,
        return_shipping: Money,
        /// Requested minus refunded goods amount; non-zero only with consent (invariant 2).
        deduction: Money,
        customer_consent: Option<Note>,
        by: Actor,
        rule_id: Option<RuleId>,
    },
    RefundedWithoutReturn {
        amount: Money,
        deduction: Money,
        customer_consent: Option<Note>,
        by: Actor,
        rule_id: Option<RuleId>,
    },
    Exchanged {
        method: ExchangeMethod,
        /// The SKU sent; differs from the ticket's SKU for a colour or size change; unknown
        /// when neither the disposal nor the opening named one.
        #[serde(default)]
        replacement_sku: Option<Sku>,
        customer_consent: Option<Note>,
        by: Actor,
    },
    ReturnedAsIs {
        conversation: Note,
        by: Actor,
    },
    RepairCompleted {
        customer_consent: Option<Note>,
        by: Actor,
    },
    Withdrawn {
        confirmation: Note,
    },
    InterventionRequested {
        by: Actor,
    },
    DisputeClosed,
    DeadlineExpired {
        deadline: Deadline,
    },
    /// A running deadline entered its warning window: an alert for the merchant's staff.
    /// A fact for the audit trail only; it changes nothing on the ticket.
    DeadlineWarned {
        deadline: Deadline,
    },
    Lapsed {
        rule_id: RuleId,
    },
    Annotated {
        note: Note,
        by: Actor,
    },
}

impl Event {
    /// The stable snake_case name stored as the event type (the JSON `type` tag).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Opened(_) => "opened",
            Event::Approved { .. } => "approved",
            Event::Rejected { .. } => "rejected",
            Event::CustomerAsked { .. } => "customer_asked",
            Event::CustomerResponded => "customer_responded",
            Event::Resubmitted => "resubmitted",
            Event::ReturnShipped { .. } => "return_shipped",
            Event::GoodsReceived => "goods_received",
            Event::Refunded { .. } => "refunded",
            Event::RefundedWithoutReturn { .. } => "refunded_without_return",
            Event::Exchanged { .. } => "exchanged",
            Event::ReturnedAsIs { .. } => "returned_as_is",
            Event::RepairCompleted { .. } => "repair_completed",
            Event::Withdrawn { .. } => "withdrawn",
            Event::InterventionRequested { .. } => "intervention_requested",
            Event::DisputeClosed => "dispute_closed",
            Event::DeadlineExpired { .. } => "deadline_expired",
            Event::DeadlineWarned { .. } => "deadline_warned",
            Event::Lapsed { .. } => "lapsed",
            Event::Annotated { .. } => "annotated",
        }
    }
}
