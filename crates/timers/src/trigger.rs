//! What arms or disarms a rule: a ticket event (by its stored snake_case name) or an outside
//! happening the ticket log does not record; and the condition on the ticket it must meet.

use std::fmt;

use aftersales_ticket::{Event, Reason, ReturnMethod, ServiceType, TicketData};
use serde::{Deserialize, Serialize};

/// A ticket event by its stored name (`Event::name`), or an external trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    Opened,
    Approved,
    Rejected,
    CustomerAsked,
    CustomerResponded,
    Resubmitted,
    ReturnShipped,
    GoodsReceived,
    Refunded,
    RefundedWithoutReturn,
    Exchanged,
    ReturnedAsIs,
    RepairCompleted,
    Withdrawn,
    InterventionRequested,
    DisputeClosed,
    DeadlineExpired,
    /// A deadline entered its warning window: an alert only, so no rule may arm or
    /// disarm on it (a pack naming it is refused).
    DeadlineWarned,
    Lapsed,
    Annotated,
    /// External: the platform decided a violation against the merchant (JD 违约单).
    ViolationDecided,
    /// External: the platform opened a complaint work order (JD 投诉工单).
    ComplaintReceived,
    /// External: the platform sent an after-sales mail (JD POP 售后邮件).
    MailReceived,
    /// External: a platform agent pre-filled a ticket for the customer (Kuaishou 代客发起售后).
    AgentPrefilled,
}

impl Trigger {
    pub const ALL: [Trigger; 24] = [
        Trigger::Opened,
        Trigger::Approved,
        Trigger::Rejected,
        Trigger::CustomerAsked,
        Trigger::CustomerResponded,
        Trigger::Resubmitted,
        Trigger::ReturnShipped,
        Trigger::GoodsReceived,
        Trigger::Refunded,
        Trigger::RefundedWithoutReturn,
        Trigger::Exchanged,
        Trigger::ReturnedAsIs,
        Trigger::RepairCompleted,
        Trigger::Withdrawn,
        Trigger::InterventionRequested,
        Trigger::DisputeClosed,
        Trigger::DeadlineExpired,
        Trigger::DeadlineWarned,
        Trigger::Lapsed,
        Trigger::Annotated,
        Trigger::ViolationDecided,
        Trigger::ComplaintReceived,
        Trigger::MailReceived,
        Trigger::AgentPrefilled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Opened => "opened",
            Trigger::Approved => "approved",
            Trigger::Rejected => "rejected",
            Trigger::CustomerAsked => "customer_asked",
            Trigger::CustomerResponded => "customer_responded",
            Trigger::Resubmitted => "resubmitted",
            Trigger::ReturnShipped => "return_shipped",
            Trigger::GoodsReceived => "goods_received",
            Trigger::Refunded => "refunded",
            Trigger::RefundedWithoutReturn => "refunded_without_return",
            Trigger::Exchanged => "exchanged",
            Trigger::ReturnedAsIs => "returned_as_is",
            Trigger::RepairCompleted => "repair_completed",
            Trigger::Withdrawn => "withdrawn",
            Trigger::InterventionRequested => "intervention_requested",
            Trigger::DisputeClosed => "dispute_closed",
            Trigger::DeadlineExpired => "deadline_expired",
            Trigger::DeadlineWarned => "deadline_warned",
            Trigger::Lapsed => "lapsed",
            Trigger::Annotated => "annotated",
            Trigger::ViolationDecided => "violation_decided",
            Trigger::ComplaintReceived => "complaint_received",
            Trigger::MailReceived => "mail_received",
            Trigger::AgentPrefilled => "agent_prefilled",
        }
    }

    /// The trigger named `name`, if any.
    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The trigger of a ticket event. `None` only for an event this crate does not know yet
    /// (one added to `aftersales_ticket` later): it arms nothing.
    pub fn of(event: &Event) -> Option<Trigger> {
        Trigger::parse(event.name()).filter(|t| !t.is_external())
    }

    /// Whether a rule may name the trigger in `on` or `disarmed_by`. A warning may not: it
    /// is the scheduler's own alert about a running deadline, and a deadline that a warning
    /// stopped or started would make the alert change what it warns about.
    pub fn can_arm_or_disarm(self) -> bool {
        self != Trigger::DeadlineWarned
    }

    /// Whether the trigger is something the ticket's event log does not record.
    pub fn is_external(self) -> bool {
        matches!(
            self,
            Trigger::ViolationDecided
                | Trigger::ComplaintReceived
                | Trigger::MailReceived
                | Trigger::AgentPrefilled
        )
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Trigger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Whether the order's goods had left the warehouse (出库) when the ticket was opened.
///
/// The platform's word when the ticket recorded it (`order_shipped`); otherwise derived
/// (docs/DEADLINES.md, choice C1): a recorded sign-for means shipped; otherwise the reason `cancel_before_shipment`
/// (未发货) means not shipped; any other reason means shipped, since a ticket is opened
/// after the goods arrived (RULES.md section 1).
pub fn order_shipped(t: &TicketData) -> bool {
    t.order_shipped
        .unwrap_or(t.signed_for_at.is_some() || t.reason != Reason::CancelBeforeShipment)
}

/// What the ticket must be like, after the event, for a rule to arm. Every field left out
/// matches anything; lists match any of their members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_types: Vec<ServiceType>,
    /// The reason is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// The reason is none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_reasons: Vec<Reason>,
    /// See [`order_shipped`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped: Option<bool>,
    /// How the goods come back (set by the approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_method: Option<ReturnMethod>,
}

impl Condition {
    pub fn matches(&self, t: &TicketData) -> bool {
        (self.service_types.is_empty() || self.service_types.contains(&t.service_type))
            && (self.reasons.is_empty() || self.reasons.contains(&t.reason))
            && !self.except_reasons.contains(&t.reason)
            && self.shipped.is_none_or(|s| s == order_shipped(t))
            && self
                .return_method
                .is_none_or(|m| t.return_method == Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
        }
        let mut names: Vec<_> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Trigger::ALL.len());
        assert_eq!(Trigger::parse("shipped_out"), None);
    }

    #[test]
    fn event_triggers_are_the_ticket_event_names() {
        let deadline = aftersales_ticket::Deadline {
            kind: aftersales_ticket::DeadlineKind::Review,
            due_at: chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00+08:00").unwrap(),
            rule_id: aftersales_ticket::RuleId::parse("jd.review").unwrap(),
        };
        let events = [
            Event::CustomerResponded,
            Event::Resubmitted,
            Event::GoodsReceived,
            Event::DisputeClosed,
            Event::DeadlineWarned { deadline },
        ];
        for e in &events {
            assert_eq!(Trigger::of(e).map(Trigger::as_str), Some(e.name()));
        }
    }
}
