//! Platform adapters: one webhook body, in a platform's own format, becomes the ticket
//! commands it means (Taobao/Tmall TMC refund messages, JD service-order status messages,
//! Pinduoduo refund pushes, Kuaishou and Douyin after-sales messages, and our own generic
//! JSON for any other source). Each platform has its own module whose parsing types keep
//! the platform's field names; what each adapter relied on is written in its module doc.
//!
//! Every message gets an idempotency key from its platform and message id, so the shell
//! derives the same event ids for a redelivered or republished message.
//!
//! This crate must never do I/O or read the clock, and never carry personal data onward:
//! buyer nicks, names, phones and addresses are not even parsed (serde skips fields the
//! parsing types do not name), so they cannot reach an event or a log.

pub mod douyin;
mod flex;
pub mod generic;
pub mod jd;
pub mod kuaishou;
pub mod pdd;
pub mod tmall;

use aftersales_ticket::{
    Actor, Command, CustomerId, Disposal, InvalidValue, Money, NewTicket, Note, OrderId,
    OrderLineId, Platform, PlatformTicketId, Reason, ServiceType, Sku, TicketId, Timestamp,
};
use serde_json::Value;

/// One command a platform message asks for, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub ticket_id: TicketId,
    /// `<platform>/<message id>`: the same for every delivery of the same platform message.
    pub key: String,
    /// When it happened on the platform.
    pub at: Timestamp,
    pub actor: Actor,
    pub command: Command,
    /// The platform's name for what happened (topic, tag or status code), for logs and
    /// dead letters.
    pub topic: String,
    /// What to do when the ticket's state refuses the command (see [`IfRefused`]).
    pub if_refused: IfRefused,
}

/// What a state refusal means for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfRefused {
    /// The refusal is real news: park the message (platforms reorder), then dead-letter it.
    DeadLetter,
    /// The message only confirms what the ticket may already show (a refund-success push
    /// after the approval that was the refund, a close after a withdrawal): record it as
    /// this audit note instead of refusing it.
    Annotate(Note),
}

/// Why a body cannot be used. Each becomes a dead letter whose reason is this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("not JSON: {detail}")]
    NotJson { detail: String },
    #[error("{platform} message type `{topic}` is not one this service reads")]
    UnknownTopic { platform: Platform, topic: String },
    #[error("{platform} sent {field} = {code}, a code this service does not know")]
    UnknownCode {
        platform: Platform,
        field: &'static str,
        code: String,
    },
    #[error("malformed message: {detail}")]
    Malformed { detail: String },
    #[error("bad value in `{field}`: {detail}")]
    BadValue { field: &'static str, detail: String },
}

impl Unusable {
    /// Every code [`Unusable::code`] can answer: the stable reason codes of dead letters
    /// (docs/INGEST.md) and of the HTTP endpoint's 422 answers (docs/HTTP.md).
    pub const CODES: [&'static str; 5] = [
        "not_json",
        "unknown_topic",
        "unknown_code",
        "malformed",
        "bad_value",
    ];

    /// A stable name for the kind of problem (a dead letter's reason code).
    pub fn code(&self) -> &'static str {
        match self {
            Unusable::NotJson { .. } => "not_json",
            Unusable::UnknownTopic { .. } => "unknown_topic",
            Unusable::UnknownCode { .. } => "unknown_code",
            Unusable::Malformed { .. } => "malformed",
            Unusable::BadValue { .. } => "bad_value",
        }
    }
}

/// Translates one body from `platform`. A body holding an array is a batch: every element
/// must be usable, or the whole body is refused (it is dead-lettered whole and replayed
/// whole, so nothing of it is half-applied).
pub fn translate(platform: &Platform, body: &[u8]) -> Result<Vec<Message>, Unusable> {
    let body = flex::without_bom(body);
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        // One message, the usual case: parsed straight into the platform's types.
        return translate_one(platform, flex::Item::Bytes(body));
    }
    let value = flex::body(body)?;
    let items = match value {
        Value::Array(items) if items.is_empty() => {
            return Err(Unusable::Malformed {
                detail: "an empty array".into(),
            })
        }
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut out = Vec::new();
    for item in items {
        out.extend(translate_one(platform, flex::Item::Value(item))?);
    }
    Ok(out)
}

fn translate_one(platform: &Platform, item: flex::Item<'_>) -> Result<Vec<Message>, Unusable> {
    match platform {
        Platform::Tmall => tmall::translate(item),
        Platform::Jd => jd::translate(item),
        Platform::Pdd => pdd::translate(item),
        Platform::Kuaishou => kuaishou::translate(item),
        Platform::Douyin => douyin::translate(item),
        Platform::Other(_) => generic::translate(platform, item),
    }
}

/// Checks a platform value with a domain parser, naming the field when it fails.
fn ident<T>(
    field: &'static str,
    s: &str,
    parse: impl Fn(&str) -> Result<T, InvalidValue>,
) -> Result<T, Unusable> {
    parse(s).map_err(|e| Unusable::BadValue {
        field,
        detail: e.to_string(),
    })
}

/// A fixed note written by an adapter (always valid).
fn note(text: impl Into<String>) -> Note {
    Note::parse(&text.into()).expect("adapter notes are non-empty text")
}

/// The facts of a new ticket as platform messages give them; most carry no SKU, no
/// customer id and no amount paid.
struct Opening<'a> {
    platform: Platform,
    platform_ticket_id: &'a str,
    order_id: &'a str,
    order_line_id: &'a str,
    sku: Option<&'a str>,
    customer_id: Option<&'a str>,
    /// The refund asked for. Platform messages do not carry the amount paid; a platform
    /// never refunds more than was asked, so the request is recorded as the most the
    /// ticket can refund (docs/ADAPTERS.md, choice A2).
    requested: Money,
    service_type: ServiceType,
    order_shipped: Option<bool>,
}

impl Opening<'_> {
    fn command(self) -> Result<(TicketId, Command), Unusable> {
        let id = TicketId::for_platform(&self.platform, self.platform_ticket_id).map_err(|e| {
            Unusable::BadValue {
                field: "ticket id",
                detail: e.to_string(),
            }
        })?;
        let ticket = NewTicket {
            id: id.clone(),
            platform: self.platform,
            platform_ticket_id: ident(
                "platform ticket id",
                self.platform_ticket_id,
                PlatformTicketId::parse,
            )?,
            order_id: ident("order id", self.order_id, OrderId::parse)?,
            order_line_id: ident("order line id", self.order_line_id, OrderLineId::parse)?,
            sku: self.sku.map(|s| ident("sku", s, Sku::parse)).transpose()?,
            amount_paid: self.requested,
            refund_requested: None,
            customer_id: self
                .customer_id
                .map(|s| ident("customer id", s, CustomerId::parse))
                .transpose()?,
            service_type: self.service_type,
            // Reason codes differ per platform and per category; none maps safely onto
            // the seven-day rule, which the platform itself enforces on submission.
            reason: Reason::Other,
            signed_for_at: None,
            order_shipped: self.order_shipped,
        };
        Ok((
            id,
            Command::Open {
                ticket: Box::new(ticket),
            },
        ))
    }
}

/// The refund a platform reports as paid: with the goods kept by the customer (refund-only
/// requests) or after they came back.
fn refund(amount: Money, goods_stay: bool) -> Disposal {
    if goods_stay {
        Disposal::RefundWithoutReturn {
            amount,
            customer_consent: None,
        }
    } else {
        Disposal::Refund {
            amount,
            return_shipping: Money::ZERO,
            customer_consent: None,
        }
    }
}

/// The ticket id of an existing platform ticket.
fn ticket_id(platform: &Platform, platform_ticket_id: &str) -> Result<TicketId, Unusable> {
    TicketId::for_platform(platform, platform_ticket_id).map_err(|e| Unusable::BadValue {
        field: "ticket id",
        detail: e.to_string(),
    })
}
