//! What can be asked of a ticket. Platform messages, the merchant's staff, the deadline timer
//! and the platform's automatic rules all speak through these commands.

use serde::{Deserialize, Serialize};

use crate::domain::{
    Actor, CustomerId, Deadline, Money, Note, OrderId, OrderLineId, Platform, PlatformTicketId,
    Reason, ReturnMethod, RuleId, RulePackId, ServiceType, Sku, TicketId, Timestamp, Waybill,
};

/// The facts a ticket is opened with (售后服务单).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicket {
    pub id: TicketId,
    pub platform: Platform,
    pub platform_ticket_id: PlatformTicketId,
    pub order_id: OrderId,
    pub order_line_id: OrderLineId,
    /// Unknown when the platform's message does not carry it (most refund pushes).
    #[serde(default)]
    pub sku: Option<Sku>,
    pub amount_paid: Money,
    /// What the customer asks back; `None` means the amount paid.
    #[serde(default)]
    pub refund_requested: Option<Money>,
    /// The platform's opaque customer id, when its message carries one.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
    pub service_type: ServiceType,
    pub reason: Reason,
    /// When the carrier recorded the customer signing for the goods (物流签收时间), if known.
    #[serde(default)]
    pub signed_for_at: Option<Timestamp>,
    /// Whether the order had shipped when the ticket was opened, if the platform says
    /// (pre-shipment requests run other clocks).
    #[serde(default)]
    pub order_shipped: Option<bool>,
}

/// How the merchant (or the platform, in a dispute) settles a ticket.
///
/// Every consent field is the note of the customer's recorded consent; RULES.md section 4
/// says when one is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disposal {
    /// 退款 after the goods came back (or are on their way): goods amount plus return shipping.
    Refund {
        amount: Money,
        #[serde(default)]
        return_shipping: Money,
        #[serde(default)]
        customer_consent: Option<Note>,
    },
    /// 不退货仅退款: money back, the goods stay with the customer.
    RefundWithoutReturn {
        amount: Money,
        #[serde(default)]
        customer_consent: Option<Note>,
    },
    /// 换新: a replacement; `replacement_sku` other than the ticket's is a colour/size change.
    Exchange {
        #[serde(default)]
        replacement_sku: Option<Sku>,
        #[serde(default)]
        customer_consent: Option<Note>,
    },
    /// 线下换新 / 线下补发: exchanged outside the platform's flow.
    OfflineExchange {
        #[serde(default)]
        customer_consent: Option<Note>,
    },
    /// 不退货补发商品: the item is sent again, nothing comes back.
    ReissueWithoutReturn {
        #[serde(default)]
        customer_consent: Option<Note>,
    },
    /// 原返: the goods failed the return conditions and go back unchanged.
    ReturnAsIs {
        /// The note of the conversation with the customer (invariant 7).
        #[serde(default)]
        conversation: Option<Note>,
    },
    /// 维修完成.
    RepairDone {
        #[serde(default)]
        customer_consent: Option<Note>,
    },
}

/// What a platform decides by itself when a merchant lets a deadline pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoOutcome {
    /// The platform approves the request as if the merchant had.
    Approve,
    /// The platform refunds the requested amount (goods returned or on their way).
    Refund,
    /// The platform refunds the requested amount and the goods stay with the customer.
    RefundWithoutReturn,
    /// The request lapses (the customer did not act in time).
    Lapse,
}

impl AutoOutcome {
    /// The stable snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            AutoOutcome::Approve => "approve",
            AutoOutcome::Refund => "refund",
            AutoOutcome::RefundWithoutReturn => "refund_without_return",
            AutoOutcome::Lapse => "lapse",
        }
    }
}

/// A request to change a ticket. The ticket id is not repeated here: the shell routes a
/// command to its ticket's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// The customer submits a ticket.
    Open { ticket: Box<NewTicket> },
    /// 审核通过.
    Approve {
        #[serde(default)]
        return_method: ReturnMethod,
    },
    /// 审核不通过: must say why (invariant 3).
    Reject {
        #[serde(default)]
        reason: Option<Note>,
    },
    /// 待客户反馈: the merchant needs something from the customer first.
    AskCustomer {
        #[serde(default)]
        note: Option<Note>,
    },
    /// 客户已反馈.
    CustomerResponded,
    /// The customer changes a refused request and submits it again.
    Resubmit,
    /// The goods are on their way back (customer shipped, or the merchant picked them up).
    RecordReturnShipment {
        #[serde(default)]
        waybill: Option<Waybill>,
    },
    /// 商家收货.
    ConfirmReceipt,
    /// Settle the ticket.
    Dispose { disposal: Disposal },
    /// 客户放弃 / 用户取消: needs the note of the confirmation with the customer (invariant 4).
    Withdraw {
        #[serde(default)]
        confirmation: Option<Note>,
    },
    /// 申请介入: the customer or merchant asks the platform to step in.
    RequestIntervention,
    /// The platform closes the dispute in the merchant's favour.
    CloseDispute,
    /// The timer reports that a deadline passed, with the platform's automatic outcome if
    /// its rule has one: both are decided together, so they are stored together or not at all.
    ExpireDeadline {
        deadline: Deadline,
        #[serde(default)]
        outcome: Option<AutoOutcome>,
    },
    /// The timer reports that a running deadline entered its warning window (it is due
    /// soon): the merchant's staff are to be alerted. Changes nothing on the ticket.
    WarnDeadline { deadline: Deadline },
    /// The platform's automatic decision after a missed deadline.
    ApplyPlatformOutcome {
        outcome: AutoOutcome,
        rule_id: RuleId,
    },
    /// An audit note; the only command a closed ticket accepts.
    Annotate { note: Note },
}

impl Command {
    /// A stable snake_case name; dispositions and automatic outcomes are named by their kind
    /// (`dispose_refund`, `auto_lapse`), as in the transition table.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Open { .. } => "open",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::AskCustomer { .. } => "ask_customer",
            Command::CustomerResponded => "customer_responded",
            Command::Resubmit => "resubmit",
            Command::RecordReturnShipment { .. } => "record_return_shipment",
            Command::ConfirmReceipt => "confirm_receipt",
            Command::Dispose { disposal } => match disposal {
                Disposal::Refund { .. } => "dispose_refund",
                Disposal::RefundWithoutReturn { .. } => "dispose_refund_without_return",
                Disposal::Exchange { .. } => "dispose_exchange",
                Disposal::OfflineExchange { .. } => "dispose_offline_exchange",
                Disposal::ReissueWithoutReturn { .. } => "dispose_reissue_without_return",
                Disposal::ReturnAsIs { .. } => "dispose_return_as_is",
                Disposal::RepairDone { .. } => "dispose_repair_done",
            },
            Command::Withdraw { .. } => "withdraw",
            Command::RequestIntervention => "request_intervention",
            Command::CloseDispute => "close_dispute",
            Command::ExpireDeadline { .. } => "expire_deadline",
            Command::WarnDeadline { .. } => "warn_deadline",
            Command::ApplyPlatformOutcome { outcome, .. } => match outcome {
                AutoOutcome::Approve => "auto_approve",
                AutoOutcome::Refund => "auto_refund",
                AutoOutcome::RefundWithoutReturn => "auto_refund_without_return",
                AutoOutcome::Lapse => "auto_lapse",
            },
            Command::Annotate { .. } => "annotate",
        }
    }
}

/// What the shell knows about the world when it asks for a decision. Passing it in keeps
/// `decide` free of clocks and lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// When the command happened on the platform (platform time, +08:00).
    pub at: Timestamp,
    /// Who issued the command.
    pub actor: Actor,
    /// Another ticket that already refunded the same order line, from the shell's
    /// order-line index (invariant 5 spans tickets, so the aggregate cannot see it alone).
    pub order_line_refunded_by: Option<TicketId>,
    /// The rule pack a ticket opened now falls under (the shell picks it per platform).
    pub rule_pack: Option<RulePackId>,
}

impl Context {
    pub fn new(at: Timestamp, actor: Actor) -> Self {
        Self {
            at,
            actor,
            order_line_refunded_by: None,
            rule_pack: None,
        }
    }
}
