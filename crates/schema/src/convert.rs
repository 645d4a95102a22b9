//! Conversions between the generated prost types ([`crate::pb`]) and the domain types of
//! `aftersales_ticket`.
//!
//! Domain → proto is total (every domain value has a stored form). Proto → domain checks
//! everything the domain checks, and reports each failure as a [`SchemaError`] naming the
//! field: stored bytes never make this code panic.

use aftersales_ticket::{
    Actor, CustomerId, Deadline, DeadlineKind, Event, ExchangeMethod, InvalidValue, Money, Note,
    Opened, OrderId, OrderLineId, Platform, PlatformTicketId, Reason, ReturnMethod, RuleId,
    RulePackId, ServiceType, Sku, TicketId, Timestamp, Waybill,
};
use chrono::{DateTime, FixedOffset, Utc};
use uuid::Uuid;

use crate::pb;
use crate::pb::event_envelope::Body;
use crate::{EventEnvelope, SchemaError, EVENT_TYPES};

// ---------------------------------------------------------------------------------------
// Domain → proto
// ---------------------------------------------------------------------------------------

/// The prost form of an envelope, exactly as given (including `recorded_at` when set).
pub(crate) fn envelope_to_pb(env: &EventEnvelope) -> pb::EventEnvelope {
    pb::EventEnvelope {
        event_id: env.event_id.as_bytes().to_vec(),
        ticket_id: env.ticket_id.as_str().to_owned(),
        event_type: env.event.name().to_owned(),
        schema_version: crate::CURRENT_SCHEMA_VERSION,
        occurred_at: Some(instant_to_pb(&env.occurred_at)),
        recorded_at: env.recorded_at.as_ref().map(utc_to_pb),
        source_message_id: env.source_message_id.clone(),
        causation_id: env.causation_id.map(|id| id.as_bytes().to_vec()),
        body: Some(body_to_pb(&env.event)),
    }
}

pub(crate) fn instant_to_pb(t: &Timestamp) -> pb::Instant {
    pb::Instant {
        unix_seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos(),
        offset_seconds: t.offset().local_minus_utc(),
    }
}

fn utc_to_pb(t: &DateTime<Utc>) -> pb::Instant {
    pb::Instant {
        unix_seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos(),
        offset_seconds: 0,
    }
}

fn note_to_pb(n: &Option<Note>) -> Option<String> {
    n.as_ref().map(|n| n.as_str().to_owned())
}

fn rule_to_pb(r: &Option<RuleId>) -> Option<String> {
    r.as_ref().map(|r| r.as_str().to_owned())
}

fn body_to_pb(event: &Event) -> Body {
    match event {
        Event::Opened(o) => Body::Opened(pb::Opened {
            id: o.id.as_str().to_owned(),
            platform: o.platform.as_str().to_owned(),
            platform_ticket_id: o.platform_ticket_id.as_str().to_owned(),
            order_id: o.order_id.as_str().to_owned(),
            order_line_id: o.order_line_id.as_str().to_owned(),
            sku: o
                .sku
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            amount_paid: o.amount_paid.cents(),
            refund_requested: o.refund_requested.cents(),
            customer_id: o
                .customer_id
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            service_type: service_type_to_pb(o.service_type) as i32,
            reason: reason_to_pb(o.reason) as i32,
            signed_for_at: o.signed_for_at.as_ref().map(instant_to_pb),
            opened_at: Some(instant_to_pb(&o.opened_at)),
            order_shipped: o.order_shipped,
            rule_pack: o.rule_pack.as_ref().map(|p| p.as_str().to_owned()),
        }),
        Event::Approved {
            return_method,
            by,
            rule_id,
        } => Body::Approved(pb::Approved {
            return_method: return_method_to_pb(*return_method) as i32,
            by: actor_to_pb(*by) as i32,
            rule_id: rule_to_pb(rule_id),
        }),
        Event::Rejected { reason } => Body::Rejected(pb::Rejected {
            reason: reason.as_str().to_owned(),
        }),
        Event::CustomerAsked { note } => Body::CustomerAsked(pb::CustomerAsked {
            note: note_to_pb(note),
        }),
        Event::CustomerResponded => Body::CustomerResponded(pb::CustomerResponded {}),
        Event::Resubmitted => Body::Resubmitted(pb::Resubmitted {}),
        Event::ReturnShipped { waybill } => Body::ReturnShipped(pb::ReturnShipped {
            waybill: waybill.as_ref().map(|w| w.as_str().to_owned()),
        }),
        Event::GoodsReceived => Body::GoodsReceived(pb::GoodsReceived {}),
        Event::Refunded {
            amount,
            return_shipping,
            deduction,
            customer_consent,
            by,
            rule_id,
        } => Body::Refunded(pb::Refunded {
            amount: amount.cents(),
            return_shipping: return_shipping.cents(),
            deduction: deduction.cents(),
            customer_consent: note_to_pb(customer_consent),
            by: actor_to_pb(*by) as i32,
            rule_id: rule_to_pb(rule_id),
        }),
        Event::RefundedWithoutReturn {
            amount,
            deduction,
            customer_consent,
            by,
            rule_id,
        } => Body::RefundedWithoutReturn(pb::RefundedWithoutReturn {
            amount: amount.cents(),
            deduction: deduction.cents(),
            customer_consent: note_to_pb(customer_consent),
            by: actor_to_pb(*by) as i32,
            rule_id: rule_to_pb(rule_id),
        }),
        Event::Exchanged {
            method,
            replacement_sku,
            customer_consent,
            by,
        } => Body::Exchanged(pb::Exchanged {
            method: exchange_method_to_pb(*method) as i32,
            replacement_sku: replacement_sku
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            customer_consent: note_to_pb(customer_consent),
            by: actor_to_pb(*by) as i32,
        }),
        Event::ReturnedAsIs { conversation, by } => Body::ReturnedAsIs(pb::ReturnedAsIs {
            conversation: conversation.as_str().to_owned(),
            by: actor_to_pb(*by) as i32,
        }),
        Event::RepairCompleted {
            customer_consent,
            by,
        } => Body::RepairCompleted(pb::RepairCompleted {
            customer_consent: note_to_pb(customer_consent),
            by: actor_to_pb(*by) as i32,
        }),
        Event::Withdrawn { confirmation } => Body::Withdrawn(pb::Withdrawn {
            confirmation: confirmation.as_str().to_owned(),
        }),
        Event::InterventionRequested { by } => {
            Body::InterventionRequested(pb::InterventionRequested {
                by: actor_to_pb(*by) as i32,
            })
        }
        Event::DisputeClosed => Body::DisputeClosed(pb::DisputeClosed {}),
        Event::DeadlineExpired { deadline } => Body::DeadlineExpired(pb::DeadlineExpired {
            deadline: Some(deadline_to_pb(deadline)),
        }),
        Event::DeadlineWarned { deadline } => Body::DeadlineWarned(pb::DeadlineWarned {
            deadline: Some(deadline_to_pb(deadline)),
        }),
        Event::Lapsed { rule_id } => Body::Lapsed(pb::Lapsed {
            rule_id: rule_id.as_str().to_owned(),
        }),
        Event::Annotated { note, by } => Body::Annotated(pb::Annotated {
            note: note.as_str().to_owned(),
            by: actor_to_pb(*by) as i32,
        }),
    }
}

fn deadline_to_pb(deadline: &Deadline) -> pb::Deadline {
    pb::Deadline {
        kind: deadline_kind_to_pb(deadline.kind) as i32,
        due_at: Some(instant_to_pb(&deadline.due_at)),
        rule_id: deadline.rule_id.as_str().to_owned(),
    }
}

fn service_type_to_pb(v: ServiceType) -> pb::ServiceType {
    match v {
        ServiceType::ReturnRefund => pb::ServiceType::ReturnRefund,
        ServiceType::Exchange => pb::ServiceType::Exchange,
        ServiceType::RepairOnsite => pb::ServiceType::RepairOnsite,
        ServiceType::RepairSendIn => pb::ServiceType::RepairSendIn,
        ServiceType::RefundOnly => pb::ServiceType::RefundOnly,
    }
}

fn reason_to_pb(v: Reason) -> pb::Reason {
    match v {
        Reason::SevenDayNoReason => pb::Reason::SevenDayNoReason,
        Reason::QualityProblem => pb::Reason::QualityProblem,
        Reason::NotAsDescribed => pb::Reason::NotAsDescribed,
        Reason::WrongOrMissingItem => pb::Reason::WrongOrMissingItem,
        Reason::DamagedInTransit => pb::Reason::DamagedInTransit,
        Reason::CancelBeforeShipment => pb::Reason::CancelBeforeShipment,
        Reason::Other => pb::Reason::Other,
    }
}

fn actor_to_pb(v: Actor) -> pb::Actor {
    match v {
        Actor::Merchant => pb::Actor::Merchant,
        Actor::Customer => pb::Actor::Customer,
        Actor::Platform => pb::Actor::Platform,
    }
}

fn return_method_to_pb(v: ReturnMethod) -> pb::ReturnMethod {
    match v {
        ReturnMethod::CustomerShips => pb::ReturnMethod::CustomerShips,
        ReturnMethod::MerchantPickup => pb::ReturnMethod::MerchantPickup,
    }
}

fn deadline_kind_to_pb(v: DeadlineKind) -> pb::DeadlineKind {
    match v {
        DeadlineKind::Review => pb::DeadlineKind::Review,
        DeadlineKind::DisposeAfterReceipt => pb::DeadlineKind::DisposeAfterReceipt,
        DeadlineKind::Pickup => pb::DeadlineKind::Pickup,
        DeadlineKind::RepairOnsite => pb::DeadlineKind::RepairOnsite,
        DeadlineKind::RepairSendIn => pb::DeadlineKind::RepairSendIn,
        DeadlineKind::CancelReviewBeforeShipment => pb::DeadlineKind::CancelReviewBeforeShipment,
        DeadlineKind::CancelReviewAfterShipment => pb::DeadlineKind::CancelReviewAfterShipment,
        DeadlineKind::RefundOnlyAutoApprove => pb::DeadlineKind::RefundOnlyAutoApprove,
        DeadlineKind::CustomerResubmit => pb::DeadlineKind::CustomerResubmit,
        DeadlineKind::CustomerShipBack => pb::DeadlineKind::CustomerShipBack,
        DeadlineKind::MerchantConfirmRefund => pb::DeadlineKind::MerchantConfirmRefund,
        DeadlineKind::CustomerConfirm => pb::DeadlineKind::CustomerConfirm,
        DeadlineKind::ViolationAppeal => pb::DeadlineKind::ViolationAppeal,
        DeadlineKind::ComplaintReply => pb::DeadlineKind::ComplaintReply,
    }
}

fn exchange_method_to_pb(v: ExchangeMethod) -> pb::ExchangeMethod {
    match v {
        ExchangeMethod::Replacement => pb::ExchangeMethod::Replacement,
        ExchangeMethod::Offline => pb::ExchangeMethod::Offline,
        ExchangeMethod::ReissueWithoutReturn => pb::ExchangeMethod::ReissueWithoutReturn,
    }
}

// ---------------------------------------------------------------------------------------
// Proto → domain
// ---------------------------------------------------------------------------------------

/// The snake_case event name of a body: the same string as `Event::name()` of the event
/// it decodes to.
pub(crate) fn body_name(body: &Body) -> &'static str {
    match body {
        Body::Opened(_) => "opened",
        Body::Approved(_) => "approved",
        Body::Rejected(_) => "rejected",
        Body::CustomerAsked(_) => "customer_asked",
        Body::CustomerResponded(_) => "customer_responded",
        Body::Resubmitted(_) => "resubmitted",
        Body::ReturnShipped(_) => "return_shipped",
        Body::GoodsReceived(_) => "goods_received",
        Body::Refunded(_) => "refunded",
        Body::RefundedWithoutReturn(_) => "refunded_without_return",
        Body::Exchanged(_) => "exchanged",
        Body::ReturnedAsIs(_) => "returned_as_is",
        Body::RepairCompleted(_) => "repair_completed",
        Body::Withdrawn(_) => "withdrawn",
        Body::InterventionRequested(_) => "intervention_requested",
        Body::DisputeClosed(_) => "dispute_closed",
        Body::DeadlineExpired(_) => "deadline_expired",
        Body::Lapsed(_) => "lapsed",
        Body::Annotated(_) => "annotated",
        Body::DeadlineWarned(_) => "deadline_warned",
    }
}

/// The domain envelope from an already upcast prost envelope (its `schema_version` is the
/// current one, or older with no meaning change left to apply).
pub(crate) fn envelope_from_pb(p: pb::EventEnvelope) -> Result<EventEnvelope, SchemaError> {
    let body = match p.body {
        Some(body) => body,
        // A type this build knows (or no type at all) without its body: the writer left it out.
        None if p.event_type.is_empty() || EVENT_TYPES.contains(&p.event_type.as_str()) => {
            return Err(SchemaError::MissingField { field: "body" })
        }
        // A body this build cannot see: prost skipped it as an unknown field.
        None => {
            return Err(SchemaError::UnknownEventType {
                event_type: p.event_type,
            })
        }
    };
    let name = body_name(&body);
    if p.event_type != name {
        return Err(SchemaError::EventTypeMismatch {
            declared: p.event_type,
            body: name,
        });
    }
    Ok(EventEnvelope {
        event_id: uuid_from_pb("event_id", &p.event_id)?,
        ticket_id: parse("ticket_id", &p.ticket_id, TicketId::parse)?,
        schema_version: p.schema_version,
        occurred_at: instant_from_pb("occurred_at", p.occurred_at)?,
        recorded_at: p
            .recorded_at
            .map(|i| instant_from_pb("recorded_at", Some(i)).map(|t| t.with_timezone(&Utc)))
            .transpose()?,
        source_message_id: p.source_message_id,
        causation_id: p
            .causation_id
            .map(|b| uuid_from_pb("causation_id", &b))
            .transpose()?,
        event: body_from_pb(body)?,
    })
}

fn uuid_from_pb(field: &'static str, bytes: &[u8]) -> Result<Uuid, SchemaError> {
    if bytes.is_empty() {
        return Err(SchemaError::MissingField { field });
    }
    Uuid::from_slice(bytes).map_err(|_| SchemaError::InvalidUuid {
        field,
        len: bytes.len(),
    })
}

pub(crate) fn instant_from_pb(
    field: &'static str,
    instant: Option<pb::Instant>,
) -> Result<Timestamp, SchemaError> {
    let i = instant.ok_or(SchemaError::MissingField { field })?;
    let invalid = || SchemaError::InvalidInstant {
        field,
        unix_seconds: i.unix_seconds,
        nanos: i.nanos,
        offset_seconds: i.offset_seconds,
    };
    let offset = FixedOffset::east_opt(i.offset_seconds).ok_or_else(invalid)?;
    let utc = DateTime::from_timestamp(i.unix_seconds, i.nanos).ok_or_else(invalid)?;
    Ok(utc.with_timezone(&offset))
}

fn optional_instant(
    field: &'static str,
    instant: Option<pb::Instant>,
) -> Result<Option<Timestamp>, SchemaError> {
    instant.map(|i| instant_from_pb(field, Some(i))).transpose()
}

/// A required text field: empty is "missing" (proto3 does not write empty strings), anything
/// else must pass the domain's check.
fn parse<T>(
    field: &'static str,
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
) -> Result<T, SchemaError> {
    if s.is_empty() {
        return Err(SchemaError::MissingField { field });
    }
    parse_present(field, s, parse)
}

/// A proto3 text field whose empty value means unknown (SCHEMA.md: sku, customer_id and
/// replacement_sku became optional after v1).
fn parse_unless_empty<T>(
    field: &'static str,
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
) -> Result<Option<T>, SchemaError> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_present(field, s, parse).map(Some)
}

/// A text field known to be present (a proto3 `optional` that is set): even empty text must
/// pass the domain's check.
fn parse_present<T>(
    field: &'static str,
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
) -> Result<T, SchemaError> {
    parse(s).map_err(|problem| SchemaError::InvalidValue { field, problem })
}

fn note(field: &'static str, s: &str) -> Result<Note, SchemaError> {
    parse(field, s, Note::parse)
}

fn optional_note(field: &'static str, s: Option<String>) -> Result<Option<Note>, SchemaError> {
    s.map(|s| parse_present(field, &s, Note::parse)).transpose()
}

fn optional_rule(field: &'static str, s: Option<String>) -> Result<Option<RuleId>, SchemaError> {
    s.map(|s| parse_present(field, &s, RuleId::parse))
        .transpose()
}

/// Maps a stored enum number to the domain, refusing 0 and numbers this build does not know.
fn enum_from_pb<P, D>(
    field: &'static str,
    enum_name: &'static str,
    value: i32,
    map: impl FnOnce(P) -> Option<D>,
) -> Result<D, SchemaError>
where
    P: TryFrom<i32>,
{
    let known = P::try_from(value).map_err(|_| SchemaError::UnknownEnumValue {
        field,
        enum_name,
        value,
    })?;
    map(known).ok_or(SchemaError::UnspecifiedEnum { field, enum_name })
}

fn actor(field: &'static str, value: i32) -> Result<Actor, SchemaError> {
    enum_from_pb(field, "ACTOR", value, |v| match v {
        pb::Actor::Unspecified => None,
        pb::Actor::Merchant => Some(Actor::Merchant),
        pb::Actor::Customer => Some(Actor::Customer),
        pb::Actor::Platform => Some(Actor::Platform),
    })
}

fn service_type(field: &'static str, value: i32) -> Result<ServiceType, SchemaError> {
    enum_from_pb(field, "SERVICE_TYPE", value, |v| match v {
        pb::ServiceType::Unspecified => None,
        pb::ServiceType::ReturnRefund => Some(ServiceType::ReturnRefund),
        pb::ServiceType::Exchange => Some(ServiceType::Exchange),
        pb::ServiceType::RepairOnsite => Some(ServiceType::RepairOnsite),
        pb::ServiceType::RepairSendIn => Some(ServiceType::RepairSendIn),
        pb::ServiceType::RefundOnly => Some(ServiceType::RefundOnly),
    })
}

fn reason(field: &'static str, value: i32) -> Result<Reason, SchemaError> {
    enum_from_pb(field, "REASON", value, |v| match v {
        pb::Reason::Unspecified => None,
        pb::Reason::SevenDayNoReason => Some(Reason::SevenDayNoReason),
        pb::Reason::QualityProblem => Some(Reason::QualityProblem),
        pb::Reason::NotAsDescribed => Some(Reason::NotAsDescribed),
        pb::Reason::WrongOrMissingItem => Some(Reason::WrongOrMissingItem),
        pb::Reason::DamagedInTransit => Some(Reason::DamagedInTransit),
        pb::Reason::CancelBeforeShipment => Some(Reason::CancelBeforeShipment),
        pb::Reason::Other => Some(Reason::Other),
    })
}

fn return_method(field: &'static str, value: i32) -> Result<ReturnMethod, SchemaError> {
    enum_from_pb(field, "RETURN_METHOD", value, |v| match v {
        pb::ReturnMethod::Unspecified => None,
        pb::ReturnMethod::CustomerShips => Some(ReturnMethod::CustomerShips),
        pb::ReturnMethod::MerchantPickup => Some(ReturnMethod::MerchantPickup),
    })
}

fn deadline_kind(field: &'static str, value: i32) -> Result<DeadlineKind, SchemaError> {
    enum_from_pb(field, "DEADLINE_KIND", value, |v| match v {
        pb::DeadlineKind::Unspecified => None,
        pb::DeadlineKind::Review => Some(DeadlineKind::Review),
        pb::DeadlineKind::DisposeAfterReceipt => Some(DeadlineKind::DisposeAfterReceipt),
        pb::DeadlineKind::Pickup => Some(DeadlineKind::Pickup),
        pb::DeadlineKind::RepairOnsite => Some(DeadlineKind::RepairOnsite),
        pb::DeadlineKind::RepairSendIn => Some(DeadlineKind::RepairSendIn),
        pb::DeadlineKind::CancelReviewBeforeShipment => {
            Some(DeadlineKind::CancelReviewBeforeShipment)
        }
        pb::DeadlineKind::CancelReviewAfterShipment => {
            Some(DeadlineKind::CancelReviewAfterShipment)
        }
        pb::DeadlineKind::RefundOnlyAutoApprove => Some(DeadlineKind::RefundOnlyAutoApprove),
        pb::DeadlineKind::CustomerResubmit => Some(DeadlineKind::CustomerResubmit),
        pb::DeadlineKind::CustomerShipBack => Some(DeadlineKind::CustomerShipBack),
        pb::DeadlineKind::MerchantConfirmRefund => Some(DeadlineKind::MerchantConfirmRefund),
        pb::DeadlineKind::CustomerConfirm => Some(DeadlineKind::CustomerConfirm),
        pb::DeadlineKind::ViolationAppeal => Some(DeadlineKind::ViolationAppeal),
        pb::DeadlineKind::ComplaintReply => Some(DeadlineKind::ComplaintReply),
    })
}

fn exchange_method(field: &'static str, value: i32) -> Result<ExchangeMethod, SchemaError> {
    enum_from_pb(field, "EXCHANGE_METHOD", value, |v| match v {
        pb::ExchangeMethod::Unspecified => None,
        pb::ExchangeMethod::Replacement => Some(ExchangeMethod::Replacement),
        pb::ExchangeMethod::Offline => Some(ExchangeMethod::Offline),
        pb::ExchangeMethod::ReissueWithoutReturn => Some(ExchangeMethod::ReissueWithoutReturn),
    })
}

fn body_from_pb(body: Body) -> Result<Event, SchemaError> {
    Ok(match body {
        Body::Opened(o) => Event::Opened(Box::new(Opened {
            id: parse("opened.id", &o.id, TicketId::parse)?,
            platform: parse("opened.platform", &o.platform, str::parse::<Platform>)?,
            platform_ticket_id: parse(
                "opened.platform_ticket_id",
                &o.platform_ticket_id,
                PlatformTicketId::parse,
            )?,
            order_id: parse("opened.order_id", &o.order_id, OrderId::parse)?,
            order_line_id: parse("opened.order_line_id", &o.order_line_id, OrderLineId::parse)?,
            sku: parse_unless_empty("opened.sku", &o.sku, Sku::parse)?,
            amount_paid: Money::from_cents(o.amount_paid),
            refund_requested: Money::from_cents(o.refund_requested),
            customer_id: parse_unless_empty(
                "opened.customer_id",
                &o.customer_id,
                CustomerId::parse,
            )?,
            service_type: service_type("opened.service_type", o.service_type)?,
            reason: reason("opened.reason", o.reason)?,
            signed_for_at: optional_instant("opened.signed_for_at", o.signed_for_at)?,
            opened_at: instant_from_pb("opened.opened_at", o.opened_at)?,
            order_shipped: o.order_shipped,
            rule_pack: o
                .rule_pack
                .map(|p| parse("opened.rule_pack", &p, RulePackId::parse))
                .transpose()?,
        })),
        Body::Approved(a) => Event::Approved {
            return_method: return_method("approved.return_method", a.return_method)?,
            by: actor("approved.by", a.by)?,
            rule_id: optional_rule("approved.rule_id", a.rule_id)?,
        },
        Body::Rejected(r) => Event::Rejected {
            reason: note("rejected.reason", &r.reason)?,
        },
        Body::CustomerAsked(c) => Event::CustomerAsked {
            note: optional_note("customer_asked.note", c.note)?,
        },
        Body::CustomerResponded(pb::CustomerResponded {}) => Event::CustomerResponded,
        Body::Resubmitted(pb::Resubmitted {}) => Event::Resubmitted,
        Body::ReturnShipped(r) => Event::ReturnShipped {
            waybill: r
                .waybill
                .map(|w| parse_present("return_shipped.waybill", &w, Waybill::parse))
                .transpose()?,
        },
        Body::GoodsReceived(pb::GoodsReceived {}) => Event::GoodsReceived,
        Body::Refunded(r) => Event::Refunded {
            amount: Money::from_cents(r.amount),
            return_shipping: Money::from_cents(r.return_shipping),
            deduction: Money::from_cents(r.deduction),
            customer_consent: optional_note("refunded.customer_consent", r.customer_consent)?,
            by: actor("refunded.by", r.by)?,
            rule_id: optional_rule("refunded.rule_id", r.rule_id)?,
        },
        Body::RefundedWithoutReturn(r) => Event::RefundedWithoutReturn {
            amount: Money::from_cents(r.amount),
            deduction: Money::from_cents(r.deduction),
            customer_consent: optional_note(
                "refunded_without_return.customer_consent",
                r.customer_consent,
            )?,
            by: actor("refunded_without_return.by", r.by)?,
            rule_id: optional_rule("refunded_without_return.rule_id", r.rule_id)?,
        },
        Body::Exchanged(e) => Event::Exchanged {
            method: exchange_method("exchanged.method", e.method)?,
            replacement_sku: parse_unless_empty(
                "exchanged.replacement_sku",
                &e.replacement_sku,
                Sku::parse,
            )?,
            customer_consent: optional_note("exchanged.customer_consent", e.customer_consent)?,
            by: actor("exchanged.by", e.by)?,
        },
        Body::ReturnedAsIs(r) => Event::ReturnedAsIs {
            conversation: note("returned_as_is.conversation", &r.conversation)?,
            by: actor("returned_as_is.by", r.by)?,
        },
        Body::RepairCompleted(r) => Event::RepairCompleted {
            customer_consent: optional_note(
                "repair_completed.customer_consent",
                r.customer_consent,
            )?,
            by: actor("repair_completed.by", r.by)?,
        },
        Body::Withdrawn(w) => Event::Withdrawn {
            confirmation: note("withdrawn.confirmation", &w.confirmation)?,
        },
        Body::InterventionRequested(i) => Event::InterventionRequested {
            by: actor("intervention_requested.by", i.by)?,
        },
        Body::DisputeClosed(pb::DisputeClosed {}) => Event::DisputeClosed,
        Body::DeadlineExpired(d) => Event::DeadlineExpired {
            deadline: deadline_from_pb(&EXPIRED_DEADLINE, d.deadline)?,
        },
        Body::DeadlineWarned(d) => Event::DeadlineWarned {
            deadline: deadline_from_pb(&WARNED_DEADLINE, d.deadline)?,
        },
        Body::Lapsed(l) => Event::Lapsed {
            rule_id: parse("lapsed.rule_id", &l.rule_id, RuleId::parse)?,
        },
        Body::Annotated(a) => Event::Annotated {
            note: note("annotated.note", &a.note)?,
            by: actor("annotated.by", a.by)?,
        },
    })
}

/// The field names a deadline's errors give, inside one event body (error fields are
/// `&'static str`, so each body spells its own).
struct DeadlineFields {
    deadline: &'static str,
    kind: &'static str,
    due_at: &'static str,
    rule_id: &'static str,
}

const EXPIRED_DEADLINE: DeadlineFields = DeadlineFields {
    deadline: "deadline_expired.deadline",
    kind: "deadline_expired.deadline.kind",
    due_at: "deadline_expired.deadline.due_at",
    rule_id: "deadline_expired.deadline.rule_id",
};

const WARNED_DEADLINE: DeadlineFields = DeadlineFields {
    deadline: "deadline_warned.deadline",
    kind: "deadline_warned.deadline.kind",
    due_at: "deadline_warned.deadline.due_at",
    rule_id: "deadline_warned.deadline.rule_id",
};

fn deadline_from_pb(
    fields: &DeadlineFields,
    d: Option<pb::Deadline>,
) -> Result<Deadline, SchemaError> {
    let d = d.ok_or(SchemaError::MissingField {
        field: fields.deadline,
    })?;
    Ok(Deadline {
        kind: deadline_kind(fields.kind, d.kind)?,
        due_at: instant_from_pb(fields.due_at, d.due_at)?,
        rule_id: parse(fields.rule_id, &d.rule_id, RuleId::parse)?,
    })
}
