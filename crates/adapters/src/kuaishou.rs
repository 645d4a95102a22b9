//! Kuaishou (快手小店) after-sales messages `kwaishop_aftersales_addRefund` and
//! `kwaishop_aftersales_updateRefund`.
//!
//! Relied on (../shared/domain/PLATFORMS.md; the intermediate status codes could not be
//! confirmed against the platform's docs, so they are not guessed):
//! - the message `{msgId, event, info}` with `info` an object or JSON text; `msgId` is the
//!   idempotency key;
//! - info fields `refundId`, `orderId`, `handlingWay` (1 退货退款, 10 仅退款, 3 换货,
//!   4 补寄, 5 维修), `status`, `refundFee` (fen), `updateTime` else `createTime`
//!   (Unix milliseconds);
//! - the ticket id is `kuaishou:<refundId>`; the order line is `orderId` (one item per
//!   Kuaishou order).
//!
//! `addRefund` opens the ticket. `updateRefund` reads status 10/11 (the buyer applied
//! again: resubmitted), 60 (refund succeeded) and 70 (refund failed, kept as a note); any
//! other status is dead-lettered with its code, to be mapped and replayed once confirmed.

use aftersales_ticket::{Actor, Command, Money, Platform, ServiceType};
use serde::Deserialize;
use serde_json::Value;

use crate::flex;
use crate::{note, refund, ticket_id, IfRefused, Message, Opening, Unusable};

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Envelope {
    #[serde(deserialize_with = "flex::id")]
    msgId: String,
    event: String,
    info: Value,
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct RefundInfo {
    #[serde(deserialize_with = "flex::id")]
    refundId: String,
    #[serde(deserialize_with = "flex::id")]
    orderId: String,
    #[serde(deserialize_with = "flex::int")]
    handlingWay: u64,
    #[serde(default, deserialize_with = "flex::opt_int")]
    status: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    refundFee: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    createTime: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    updateTime: Option<u64>,
}

pub(crate) fn translate(item: flex::Item<'_>) -> Result<Vec<Message>, Unusable> {
    let env: Envelope = flex::typed(item)?;
    let add = match env.event.as_str() {
        "kwaishop_aftersales_addRefund" => true,
        "kwaishop_aftersales_updateRefund" => false,
        _ => {
            return Err(Unusable::UnknownTopic {
                platform: Platform::Kuaishou,
                topic: env.event,
            })
        }
    };
    let i: RefundInfo = flex::embedded("info", env.info)?;
    let ms = i
        .updateTime
        .or(i.createTime)
        .ok_or_else(|| Unusable::Malformed {
            detail: "missing field `createTime` (or `updateTime`)".into(),
        })?;
    let at = flex::unix_millis("createTime", ms)?;
    let service_type = service_type(i.handlingWay)?;
    let fee = || -> Result<Money, Unusable> {
        i.refundFee
            .map(Money::from_cents)
            .ok_or_else(|| Unusable::Malformed {
                detail: "missing field `refundFee`".into(),
            })
    };
    let mut ticket = ticket_id(&Platform::Kuaishou, &i.refundId)?;
    let (actor, command, if_refused) = if add {
        let (id, open) = Opening {
            platform: Platform::Kuaishou,
            platform_ticket_id: &i.refundId,
            order_id: &i.orderId,
            order_line_id: &i.orderId,
            sku: None,
            customer_id: None,
            requested: fee()?,
            service_type,
            order_shipped: None,
        }
        .command()?;
        ticket = id;
        (Actor::Customer, open, IfRefused::DeadLetter)
    } else {
        let status = i.status.ok_or_else(|| Unusable::Malformed {
            detail: "missing field `status`".into(),
        })?;
        match status {
            10 | 11 => (
                Actor::Customer,
                Command::Resubmit,
                IfRefused::Annotate(note("the customer changed the request on Kuaishou")),
            ),
            60 => {
                let amount = fee()?;
                let disposal = refund(amount, service_type == ServiceType::RefundOnly);
                (
                    Actor::Platform,
                    Command::Dispose { disposal },
                    IfRefused::Annotate(note("Kuaishou reports the refund paid")),
                )
            }
            70 => (
                Actor::Platform,
                Command::Annotate {
                    note: note("Kuaishou reports the refund failed (status 70)"),
                },
                IfRefused::DeadLetter,
            ),
            other => {
                return Err(Unusable::UnknownCode {
                    platform: Platform::Kuaishou,
                    field: "status",
                    code: other.to_string(),
                })
            }
        }
    };
    Ok(vec![Message {
        ticket_id: ticket,
        key: format!("kuaishou/{}", env.msgId),
        at,
        actor,
        command,
        topic: env.event,
        if_refused,
    }])
}

fn service_type(code: u64) -> Result<ServiceType, Unusable> {
    match code {
        1 => Ok(ServiceType::ReturnRefund),
        10 => Ok(ServiceType::RefundOnly),
        3 | 4 => Ok(ServiceType::Exchange),
        5 => Ok(ServiceType::RepairSendIn),
        other => Err(Unusable::UnknownCode {
            platform: Platform::Kuaishou,
            field: "handlingWay",
            code: other.to_string(),
        }),
    }
}
