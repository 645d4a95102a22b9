//! Pinduoduo (拼多多) refund push messages.
//!
//! Relied on (../shared/domain/PLATFORMS.md, from the platform's message docs):
//! - the push `{type, mallID, content}` with `content` JSON text; there is no message id, so
//!   the idempotency key is `<type>/<refund_id>/<modified>` (a status change is one message);
//! - content fields `refund_id`, `tid` (order sn, a string), `refund_fee` (fen), `modified`
//!   (Unix milliseconds), `after_sales_type` (2 仅退款, 3 退货退款, 4 换货, 5 缺货补寄);
//! - a Pinduoduo order sn is one line, so the order line is `tid`; the ticket id is
//!   `pdd:<refund_id>`.
//!
//! Types read (named like the TMC refund topics): `pdd_refund_RefundCreated`,
//! `pdd_refund_RefundAgreeAgreement`, `pdd_refund_RefundRefuseAgreement`,
//! `pdd_refund_RefundBuyerReturnGoods`, `pdd_refund_RefundClosed`, `pdd_refund_RefundSuccess`.

use aftersales_ticket::{Actor, Command, Money, Platform, ReturnMethod, ServiceType};
use serde::Deserialize;
use serde_json::Value;

use crate::flex;
use crate::{note, refund, ticket_id, IfRefused, Message, Opening, Unusable};

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Push {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, deserialize_with = "flex::opt_id")]
    #[allow(dead_code)] // parsed so a wrong type is refused; one mall per deployment
    mallID: Option<String>,
    content: Value,
}

#[derive(Deserialize)]
struct RefundContent {
    #[serde(deserialize_with = "flex::id")]
    refund_id: String,
    #[serde(deserialize_with = "flex::id")]
    tid: String,
    #[serde(default, deserialize_with = "flex::opt_int")]
    refund_fee: Option<u64>,
    #[serde(deserialize_with = "flex::int")]
    modified: u64,
    #[serde(default, deserialize_with = "flex::opt_int")]
    after_sales_type: Option<u64>,
}

pub(crate) fn translate(item: flex::Item<'_>) -> Result<Vec<Message>, Unusable> {
    let push: Push = flex::typed(item)?;
    let kind = push
        .kind
        .strip_prefix("pdd_refund_")
        .filter(|k| KNOWN.contains(k))
        .ok_or_else(|| Unusable::UnknownTopic {
            platform: Platform::Pdd,
            topic: push.kind.clone(),
        })?;
    let c: RefundContent = flex::embedded("content", push.content)?;
    let at = flex::unix_millis("modified", c.modified)?;
    let fee = || -> Result<Money, Unusable> {
        c.refund_fee
            .map(Money::from_cents)
            .ok_or_else(|| Unusable::Malformed {
                detail: "missing field `refund_fee`".into(),
            })
    };
    let mut ticket = ticket_id(&Platform::Pdd, &c.refund_id)?;
    let (actor, command, if_refused) = match kind {
        "RefundCreated" => {
            let code = c.after_sales_type.ok_or_else(|| Unusable::Malformed {
                detail: "missing field `after_sales_type`".into(),
            })?;
            let (id, open) = Opening {
                platform: Platform::Pdd,
                platform_ticket_id: &c.refund_id,
                order_id: &c.tid,
                order_line_id: &c.tid,
                sku: None,
                customer_id: None,
                requested: fee()?,
                service_type: service_type(code)?,
                order_shipped: None,
            }
            .command()?;
            ticket = id;
            (Actor::Customer, open, IfRefused::DeadLetter)
        }
        "RefundAgreeAgreement" => (
            Actor::Merchant,
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
            IfRefused::DeadLetter,
        ),
        "RefundRefuseAgreement" => (
            Actor::Merchant,
            Command::Reject {
                reason: Some(note(
                    "refused on Pinduoduo (pdd_refund_RefundRefuseAgreement)",
                )),
            },
            IfRefused::DeadLetter,
        ),
        "RefundBuyerReturnGoods" => (
            Actor::Customer,
            Command::RecordReturnShipment { waybill: None },
            IfRefused::DeadLetter,
        ),
        "RefundClosed" => (
            Actor::Platform,
            Command::Withdraw {
                confirmation: Some(note("closed on Pinduoduo (pdd_refund_RefundClosed)")),
            },
            IfRefused::Annotate(note("Pinduoduo reports the refund closed")),
        ),
        _ => {
            // RefundSuccess
            let amount = fee()?;
            let disposal = refund(amount, c.after_sales_type == Some(2));
            (
                Actor::Platform,
                Command::Dispose { disposal },
                IfRefused::Annotate(note("Pinduoduo reports the refund paid")),
            )
        }
    };
    Ok(vec![Message {
        ticket_id: ticket,
        key: format!("pdd/{}/{}/{}", push.kind, c.refund_id, c.modified),
        at,
        actor,
        command,
        topic: push.kind,
        if_refused,
    }])
}

const KNOWN: &[&str] = &[
    "RefundCreated",
    "RefundAgreeAgreement",
    "RefundRefuseAgreement",
    "RefundBuyerReturnGoods",
    "RefundClosed",
    "RefundSuccess",
];

fn service_type(code: u64) -> Result<ServiceType, Unusable> {
    match code {
        2 => Ok(ServiceType::RefundOnly),
        3 => Ok(ServiceType::ReturnRefund),
        4 | 5 => Ok(ServiceType::Exchange),
        other => Err(Unusable::UnknownCode {
            platform: Platform::Pdd,
            field: "after_sales_type",
            code: other.to_string(),
        }),
    }
}
