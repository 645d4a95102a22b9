//! Douyin (抖店) after-sales push messages.
//!
//! Relied on (抖店开放平台 message docs, as mirrored by public SDKs such as jinritemai-go;
//! ../shared/domain/PLATFORMS.md):
//! - a push body is one `{tag, msg_id, data}` or an array of them; `msgId` is accepted for
//!   `msg_id`; `data` is an object or JSON text; `msg_id` is the idempotency key;
//! - data fields `aftersale_id`, `p_id` (order), `s_id` (sub-order = order line),
//!   `aftersale_type` (0 return-refund, 1 refund-only after shipment, 2 refund-only before
//!   shipment, 3 exchange, 7 reship, 8 repair; 6 price protection is not a ticket we run),
//!   `refund_amount` (fen), and the tag's own time field in Unix seconds (`apply_time`,
//!   `agree_time`, `refuse_time`, `success_time`, `modify_time`, `close_time`, else
//!   `update_time`);
//! - the signature (`event-sign` header) is checked by the HTTP endpoint, not here.
//!
//! Tags read: 200 created, 201 agreed (for a return: the merchant confirmed receipt;
//! otherwise the refund was agreed), 202 return application agreed, 203 buyer returned
//! goods, 204 refund refused, 205 return application refused, 206 refund succeeded,
//! 207 closed, 208 buyer modified, 209 platform deadline changed (`status_deadline` is kept
//! as a note), 211 exchange confirmed, 212 arbitration applied, 216/217/218 arbitration
//! steps (notes). Any other tag is refused as unknown.

use aftersales_ticket::{Actor, Command, Disposal, Money, Platform, ReturnMethod, ServiceType};
use serde::Deserialize;
use serde_json::Value;

use crate::flex;
use crate::{note, refund, ticket_id, IfRefused, Message, Opening, Unusable};

#[derive(Deserialize)]
struct Push {
    #[serde(deserialize_with = "flex::id")]
    tag: String,
    #[serde(alias = "msgId", deserialize_with = "flex::id")]
    msg_id: String,
    data: Value,
}

#[derive(Deserialize)]
struct AftersaleData {
    #[serde(deserialize_with = "flex::id")]
    aftersale_id: String,
    #[serde(default, deserialize_with = "flex::opt_id")]
    p_id: Option<String>,
    #[serde(default, deserialize_with = "flex::opt_id")]
    s_id: Option<String>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    aftersale_type: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    refund_amount: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    apply_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    agree_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    refuse_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    success_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    modify_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    close_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    update_time: Option<u64>,
    #[serde(default, deserialize_with = "flex::opt_int")]
    status_deadline: Option<u64>,
}

pub(crate) fn translate(item: flex::Item<'_>) -> Result<Vec<Message>, Unusable> {
    let push: Push = flex::typed(item)?;
    if !KNOWN.contains(&push.tag.as_str()) {
        return Err(Unusable::UnknownTopic {
            platform: Platform::Douyin,
            topic: push.tag,
        });
    }
    let d: AftersaleData = flex::embedded("data", push.data)?;
    let secs = [
        d.apply_time,
        d.agree_time,
        d.refuse_time,
        d.success_time,
        d.modify_time,
        d.close_time,
        d.update_time,
    ]
    .into_iter()
    .flatten()
    .next()
    .ok_or_else(|| Unusable::Malformed {
        detail: "no time field (apply_time, agree_time, … update_time) in `data`".into(),
    })?;
    let at = flex::unix_seconds("data time", secs)?;
    let kind = || -> Result<u64, Unusable> {
        d.aftersale_type.ok_or_else(|| Unusable::Malformed {
            detail: "missing field `aftersale_type`".into(),
        })
    };
    let amount = || -> Result<Money, Unusable> {
        d.refund_amount
            .map(Money::from_cents)
            .ok_or_else(|| Unusable::Malformed {
                detail: "missing field `refund_amount`".into(),
            })
    };
    let is_return = d.aftersale_type == Some(0);
    let mut ticket = ticket_id(&Platform::Douyin, &d.aftersale_id)?;
    let (actor, command, if_refused) = match push.tag.as_str() {
        "200" => {
            let (service_type, shipped) = service_type(kind()?)?;
            let missing = |field: &str| Unusable::Malformed {
                detail: format!("missing field `{field}`"),
            };
            let (id, open) = Opening {
                platform: Platform::Douyin,
                platform_ticket_id: &d.aftersale_id,
                order_id: d.p_id.as_deref().ok_or_else(|| missing("p_id"))?,
                order_line_id: d.s_id.as_deref().ok_or_else(|| missing("s_id"))?,
                sku: None,
                customer_id: None,
                requested: amount()?,
                service_type,
                order_shipped: shipped,
            }
            .command()?;
            ticket = id;
            (Actor::Customer, open, IfRefused::DeadLetter)
        }
        "201" if is_return => (
            Actor::Merchant,
            Command::ConfirmReceipt,
            IfRefused::DeadLetter,
        ),
        "201" | "202" => (
            Actor::Merchant,
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
            IfRefused::DeadLetter,
        ),
        "203" => (
            Actor::Customer,
            Command::RecordReturnShipment { waybill: None },
            IfRefused::DeadLetter,
        ),
        "204" | "205" => (
            Actor::Merchant,
            Command::Reject {
                reason: Some(note(format!("refused on Douyin (tag {})", push.tag))),
            },
            IfRefused::DeadLetter,
        ),
        "206" => {
            let amount = amount()?;
            let disposal = refund(amount, !is_return);
            (
                Actor::Platform,
                Command::Dispose { disposal },
                IfRefused::Annotate(note("Douyin reports the refund paid")),
            )
        }
        "207" => (
            Actor::Platform,
            Command::Withdraw {
                confirmation: Some(note("closed on Douyin (tag 207)")),
            },
            IfRefused::Annotate(note("Douyin reports the after-sales request closed")),
        ),
        "208" => (
            Actor::Customer,
            Command::Resubmit,
            IfRefused::Annotate(note("the customer changed the request on Douyin")),
        ),
        "209" => {
            let text = match d.status_deadline {
                Some(s) => format!(
                    "Douyin set the current step's deadline to {}",
                    flex::unix_seconds("status_deadline", s)?.to_rfc3339()
                ),
                None => "Douyin changed the current step's deadline".to_owned(),
            };
            (
                Actor::Platform,
                Command::Annotate { note: note(text) },
                IfRefused::DeadLetter,
            )
        }
        "211" => (
            Actor::Customer,
            Command::Dispose {
                disposal: Disposal::Exchange {
                    replacement_sku: None,
                    customer_consent: None,
                },
            },
            IfRefused::Annotate(note("Douyin reports the exchange confirmed")),
        ),
        "212" => (
            Actor::Customer,
            Command::RequestIntervention,
            IfRefused::Annotate(note("Douyin reports an arbitration request")),
        ),
        tag => (
            Actor::Platform,
            Command::Annotate {
                note: note(format!("Douyin arbitration step (tag {tag})")),
            },
            IfRefused::DeadLetter,
        ),
    };
    Ok(vec![Message {
        ticket_id: ticket,
        key: format!("douyin/{}", push.msg_id),
        at,
        actor,
        command,
        topic: push.tag,
        if_refused,
    }])
}

const KNOWN: &[&str] = &[
    "200", "201", "202", "203", "204", "205", "206", "207", "208", "209", "211", "212", "216",
    "217", "218",
];

fn service_type(code: u64) -> Result<(ServiceType, Option<bool>), Unusable> {
    Ok(match code {
        0 => (ServiceType::ReturnRefund, Some(true)),
        1 => (ServiceType::RefundOnly, Some(true)),
        2 => (ServiceType::RefundOnly, Some(false)),
        3 | 7 => (ServiceType::Exchange, Some(true)),
        8 => (ServiceType::RepairSendIn, Some(true)),
        other => {
            return Err(Unusable::UnknownCode {
                platform: Platform::Douyin,
                field: "aftersale_type",
                code: other.to_string(),
            })
        }
    })
}
