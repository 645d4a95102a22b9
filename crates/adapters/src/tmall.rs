//! Taobao / Tmall refund messages from TMC (淘宝消息服务), topics `taobao_refund_*`.
//!
//! Relied on (TMC message docs and public SDKs; ../shared/domain/PLATFORMS.md):
//! - the envelope `{topic, id, pub_time, pub_app_key, user_id, user_nick, content}`, where
//!   `id` is the TMC message id (the idempotency key) and `content` is JSON text;
//! - content fields `refund_id`, `tid` (order), `oid` (order line), `refund_fee` (yuan as a
//!   decimal string), `modified` (`yyyy-MM-dd HH:mm:ss`, China time), `bill_type`
//!   (`refund_bill` 退款单, `return_bill` 退货单, `replace_bill` 退换货单), `refund_phase`;
//!   `buyer_nick` / `seller_nick` are personal and deliberately not parsed; `buyer_open_uid`
//!   (opaque) becomes the customer id;
//! - the ticket id is `tmall:<refund_id>`; the event time is `modified`, else `pub_time`.
//!
//! Topics read: RefundCreated (open), RefundSellerAgreeAgreement (approve),
//! RefundSellerRefuseAgreement (reject), RefundBuyerModifyAgreement (resubmit),
//! RefundBuyerReturnGoods (return shipped), RefundClosed (withdrawn), RefundSuccess
//! (refunded), RefundCreateMessage (a note was left; its text is not read). Any other
//! topic is refused as unknown.

use aftersales_ticket::{Actor, Command, Money, Platform, ReturnMethod, ServiceType};
use serde::Deserialize;
use serde_json::Value;

use crate::flex;
use crate::{note, refund, ticket_id, IfRefused, Message, Opening, Unusable};

#[derive(Deserialize)]
struct Envelope {
    topic: String,
    #[serde(deserialize_with = "flex::id")]
    id: String,
    #[serde(default)]
    pub_time: Option<String>,
    content: Value,
}

#[derive(Deserialize)]
struct RefundContent {
    #[serde(deserialize_with = "flex::id")]
    refund_id: String,
    #[serde(deserialize_with = "flex::id")]
    tid: String,
    #[serde(default, deserialize_with = "flex::opt_id")]
    oid: Option<String>,
    #[serde(default)]
    refund_fee: Option<String>,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    bill_type: Option<String>,
    #[serde(default)]
    buyer_open_uid: Option<String>,
}

const PREFIX: &str = "taobao_refund_";

pub(crate) fn translate(item: flex::Item<'_>) -> Result<Vec<Message>, Unusable> {
    let env: Envelope = flex::typed(item)?;
    let unknown = || Unusable::UnknownTopic {
        platform: Platform::Tmall,
        topic: env.topic.clone(),
    };
    let kind = env.topic.strip_prefix(PREFIX).ok_or_else(unknown)?;
    if !KNOWN.contains(&kind) {
        return Err(unknown());
    }
    let c: RefundContent = flex::embedded("content", env.content)?;
    let at = match (&c.modified, &env.pub_time) {
        (Some(m), _) => flex::china_time("modified", m)?,
        (None, Some(p)) => flex::china_time("pub_time", p)?,
        (None, None) => {
            return Err(Unusable::Malformed {
                detail: "neither `modified` nor `pub_time` says when it happened".into(),
            })
        }
    };
    let fee = || -> Result<Money, Unusable> {
        let text = c.refund_fee.as_deref().ok_or_else(|| Unusable::Malformed {
            detail: "missing field `refund_fee`".into(),
        })?;
        Money::parse_yuan(text).map_err(|e| Unusable::BadValue {
            field: "refund_fee",
            detail: e.to_string(),
        })
    };
    let goods_stay = c.bill_type.as_deref() == Some("refund_bill");
    let mut ticket = ticket_id(&Platform::Tmall, &c.refund_id)?;
    let (actor, command, if_refused) = match kind {
        "RefundCreated" => {
            let (id, open) = Opening {
                platform: Platform::Tmall,
                platform_ticket_id: &c.refund_id,
                order_id: &c.tid,
                // A refund of a whole single-line order may omit `oid`: the order is the line.
                order_line_id: c.oid.as_deref().unwrap_or(&c.tid),
                sku: None,
                customer_id: c.buyer_open_uid.as_deref().filter(|s| !s.is_empty()),
                requested: fee()?,
                service_type: service_type(c.bill_type.as_deref())?,
                order_shipped: None,
            }
            .command()?;
            ticket = id;
            (Actor::Customer, open, IfRefused::DeadLetter)
        }
        "RefundSellerAgreeAgreement" => (
            Actor::Merchant,
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
            IfRefused::DeadLetter,
        ),
        "RefundSellerRefuseAgreement" => (
            Actor::Merchant,
            Command::Reject {
                reason: Some(note(
                    "refused on Taobao (taobao_refund_RefundSellerRefuseAgreement)",
                )),
            },
            IfRefused::DeadLetter,
        ),
        "RefundBuyerModifyAgreement" => (
            Actor::Customer,
            Command::Resubmit,
            // Modifying a request still under review changes nothing we track.
            IfRefused::Annotate(note("the customer changed the request on Taobao")),
        ),
        "RefundBuyerReturnGoods" => (
            Actor::Customer,
            Command::RecordReturnShipment { waybill: None },
            IfRefused::DeadLetter,
        ),
        "RefundClosed" => (
            Actor::Platform,
            Command::Withdraw {
                confirmation: Some(note("closed on Taobao (taobao_refund_RefundClosed)")),
            },
            IfRefused::Annotate(note("Taobao reports the refund closed")),
        ),
        "RefundSuccess" => {
            let amount = fee()?;
            let disposal = refund(amount, goods_stay);
            (
                Actor::Platform,
                Command::Dispose { disposal },
                // A refund-only approval already was the refund (docs/TRANSITIONS.md).
                IfRefused::Annotate(note("Taobao reports the refund paid")),
            )
        }
        _ => (
            // RefundCreateMessage: a message left on the ticket; its text may hold
            // personal data, so only the fact is kept.
            Actor::Customer,
            Command::Annotate {
                note: note("a message was left on the Taobao refund"),
            },
            IfRefused::DeadLetter,
        ),
    };
    Ok(vec![Message {
        ticket_id: ticket,
        key: format!("tmall/{}", env.id),
        at,
        actor,
        command,
        topic: env.topic,
        if_refused,
    }])
}

const KNOWN: &[&str] = &[
    "RefundCreated",
    "RefundSellerAgreeAgreement",
    "RefundSellerRefuseAgreement",
    "RefundBuyerModifyAgreement",
    "RefundBuyerReturnGoods",
    "RefundClosed",
    "RefundSuccess",
    "RefundCreateMessage",
];

fn service_type(bill_type: Option<&str>) -> Result<ServiceType, Unusable> {
    match bill_type {
        Some("refund_bill") => Ok(ServiceType::RefundOnly),
        Some("return_bill") => Ok(ServiceType::ReturnRefund),
        Some("replace_bill") => Ok(ServiceType::Exchange),
        Some(other) => Err(Unusable::UnknownCode {
            platform: Platform::Tmall,
            field: "bill_type",
            code: other.to_owned(),
        }),
        None => Err(Unusable::Malformed {
            detail: "missing field `bill_type` (refund_bill, return_bill or replace_bill)".into(),
        }),
    }
}
