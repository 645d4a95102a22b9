//! JD (京东) after-sales service orders (售后服务单, ASC).
//!
//! JD's push topics for service orders are not public in what we found, so this adapter
//! reads one service-order status payload built from the ASC open-API fields
//! (../shared/domain/PLATFORMS.md), which a gateway publishes on each status change:
//!
//! ```json
//! {"serviceId": 1688000123456789, "orderId": 290000000001, "skuId": 100012345678,
//!  "customerExpect": 10, "serviceStatus": 10001, "applyRefundSum": 19900,
//!  "updateTime": "2026-11-20 10:00:00", "msgId": "optional"}
//! ```
//!
//! - `applyRefundSum` is in fen; ids may be numbers or strings; `updateTime` is
//!   `yyyy-MM-dd HH:mm:ss` China time or Unix milliseconds;
//! - the idempotency key is `msgId` when the gateway sends one, else
//!   `<serviceId>/<serviceStatus>/<updateTime>` (one status change is one message);
//! - the ticket id is `jd:<serviceId>`; the order line is `<orderId>-<skuId>` (a JD order
//!   line is one SKU of one order) and the SKU is `skuId`;
//! - `customerExpect`: 10 退货, 20 换货, 30 维修 (send-in), 70 上门维修, 80 补发商品,
//!   11 仅退款; other codes (large-appliance services) are refused as unknown.
//!
//! Status codes: 10000/10001/10013 待审核 (opens the ticket), 10002 待客户反馈, 10012
//! 客户已反馈, 10004 审核关闭, 10005 待收货 (approved), 10006/10007 待处理 (goods received),
//! 10010 完成 (the disposal the customer expected), 10011 取消; 10009 待用户确认, 10041
//! 提交退款申请, 11000/12000/13000/14000 (repair and payment steps) are kept as notes.

use aftersales_ticket::{Actor, Command, Disposal, Money, Platform, ReturnMethod, ServiceType};
use serde::Deserialize;
use serde_json::Value;

use crate::flex;
use crate::{note, ticket_id, IfRefused, Message, Opening, Unusable};

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct ServiceOrderStatus {
    #[serde(deserialize_with = "flex::id")]
    serviceId: String,
    #[serde(deserialize_with = "flex::id")]
    orderId: String,
    #[serde(default, deserialize_with = "flex::opt_id")]
    skuId: Option<String>,
    #[serde(deserialize_with = "flex::int")]
    customerExpect: u64,
    #[serde(deserialize_with = "flex::int")]
    serviceStatus: u64,
    #[serde(default, deserialize_with = "flex::opt_int")]
    applyRefundSum: Option<u64>,
    updateTime: Value,
    #[serde(default, deserialize_with = "flex::opt_id")]
    msgId: Option<String>,
}

pub(crate) fn translate(item: flex::Item<'_>) -> Result<Vec<Message>, Unusable> {
    let s: ServiceOrderStatus = flex::typed(item)?;
    let (at, time_text) = match &s.updateTime {
        Value::String(t) => (flex::china_time("updateTime", t)?, t.trim().to_owned()),
        Value::Number(n) => {
            let ms = n.as_u64().ok_or_else(|| Unusable::BadValue {
                field: "updateTime",
                detail: format!("{n} is not Unix milliseconds"),
            })?;
            (flex::unix_millis("updateTime", ms)?, ms.to_string())
        }
        _ => {
            return Err(Unusable::Malformed {
                detail: "`updateTime` must be a time text or Unix milliseconds".into(),
            })
        }
    };
    let (service_type, expected) = expectation(s.customerExpect)?;
    let amount = Money::from_cents(s.applyRefundSum.unwrap_or(0));
    let mut ticket = ticket_id(&Platform::Jd, &s.serviceId)?;
    let unknown = || Unusable::UnknownCode {
        platform: Platform::Jd,
        field: "serviceStatus",
        code: s.serviceStatus.to_string(),
    };
    let (actor, command, if_refused) = match s.serviceStatus {
        10000 | 10001 | 10013 => {
            let line = format!("{}-{}", s.orderId, s.skuId.as_deref().unwrap_or("0"));
            let (id, open) = Opening {
                platform: Platform::Jd,
                platform_ticket_id: &s.serviceId,
                order_id: &s.orderId,
                order_line_id: &line,
                sku: s.skuId.as_deref(),
                customer_id: None,
                requested: amount,
                service_type,
                order_shipped: None,
            }
            .command()?;
            ticket = id;
            // JD re-sends 待审核 when a service order is taken for review (领取).
            (
                Actor::Customer,
                open,
                IfRefused::Annotate(note("JD reports the service order waiting for review")),
            )
        }
        10002 => (
            Actor::Merchant,
            Command::AskCustomer { note: None },
            IfRefused::DeadLetter,
        ),
        10012 => (
            Actor::Customer,
            Command::CustomerResponded,
            IfRefused::DeadLetter,
        ),
        10004 => (
            Actor::Merchant,
            Command::Reject {
                reason: Some(note("审核关闭 on JD (serviceStatus 10004)")),
            },
            IfRefused::DeadLetter,
        ),
        10005 => (
            Actor::Merchant,
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
            IfRefused::DeadLetter,
        ),
        10006 | 10007 => (
            Actor::Merchant,
            Command::ConfirmReceipt,
            // 待处理领取 then 待处理: the second one confirms the first.
            IfRefused::Annotate(note("JD reports the goods waiting for processing")),
        ),
        10010 => (
            Actor::Merchant,
            Command::Dispose {
                disposal: disposal(expected, amount),
            },
            IfRefused::Annotate(note("JD reports the service order complete")),
        ),
        10011 => (
            Actor::Customer,
            Command::Withdraw {
                confirmation: Some(note("cancelled on JD (serviceStatus 10011)")),
            },
            IfRefused::Annotate(note("JD reports the service order cancelled")),
        ),
        10009 | 10041 | 11000 | 12000 | 13000 | 14000 => (
            Actor::Platform,
            Command::Annotate {
                note: note(format!("JD service order status {}", s.serviceStatus)),
            },
            IfRefused::DeadLetter,
        ),
        _ => return Err(unknown()),
    };
    let key = match &s.msgId {
        Some(id) => format!("jd/{id}"),
        None => format!("jd/{}/{}/{time_text}", s.serviceId, s.serviceStatus),
    };
    Ok(vec![Message {
        ticket_id: ticket,
        key,
        at,
        actor,
        command,
        topic: s.serviceStatus.to_string(),
        if_refused,
    }])
}

/// What the customer expects: the service type and the disposal that completes it.
#[derive(Clone, Copy)]
enum Expected {
    Refund,
    RefundOnly,
    Exchange,
    Repair,
    Reissue,
}

fn expectation(code: u64) -> Result<(ServiceType, Expected), Unusable> {
    Ok(match code {
        10 => (ServiceType::ReturnRefund, Expected::Refund),
        11 => (ServiceType::RefundOnly, Expected::RefundOnly),
        20 => (ServiceType::Exchange, Expected::Exchange),
        30 => (ServiceType::RepairSendIn, Expected::Repair),
        70 => (ServiceType::RepairOnsite, Expected::Repair),
        80 => (ServiceType::Exchange, Expected::Reissue),
        other => {
            return Err(Unusable::UnknownCode {
                platform: Platform::Jd,
                field: "customerExpect",
                code: other.to_string(),
            })
        }
    })
}

fn disposal(expected: Expected, amount: Money) -> Disposal {
    match expected {
        Expected::Refund => Disposal::Refund {
            amount,
            return_shipping: Money::ZERO,
            customer_consent: None,
        },
        Expected::RefundOnly => Disposal::RefundWithoutReturn {
            amount,
            customer_consent: None,
        },
        Expected::Exchange => Disposal::Exchange {
            replacement_sku: None,
            customer_consent: None,
        },
        Expected::Repair => Disposal::RepairDone {
            customer_consent: None,
        },
        Expected::Reissue => Disposal::ReissueWithoutReturn {
            customer_consent: None,
        },
    }
}
