//! Each adapter on payloads in its platform's documented format (tests/payloads/), and
//! each kind of unusable body refused with a reason that names the problem.

use aftersales_adapters::{translate, IfRefused, Message, Unusable};
use aftersales_ticket::{
    Actor, Command, Disposal, Money, NewTicket, Platform, ReturnMethod, ServiceType,
};

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/payloads/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn one(platform: Platform, body: &[u8]) -> Message {
    let mut ms = translate(&platform, body).unwrap();
    assert_eq!(ms.len(), 1, "{ms:?}");
    ms.remove(0)
}

fn opened(m: &Message) -> &NewTicket {
    match &m.command {
        Command::Open { ticket } => ticket,
        other => panic!("expected open, got {other:?}"),
    }
}

#[test]
fn taobao_refund_created_opens_a_ticket_with_ids_beyond_2_pow_53_intact() {
    let m = one(Platform::Tmall, &payload("tmall_created.json"));
    assert_eq!(m.ticket_id.as_str(), "tmall:168001234567890123");
    assert_eq!(m.key, "tmall/7340012345678901234");
    assert_eq!(m.at.to_rfc3339(), "2026-11-20T10:00:00+08:00");
    assert_eq!(m.actor, Actor::Customer);
    let t = opened(&m);
    assert_eq!(t.order_id.as_str(), "3600012345678900000");
    assert_eq!(t.order_line_id.as_str(), "3600012345678901234");
    assert_eq!(t.amount_paid, Money::from_cents(19_900));
    assert_eq!(t.service_type, ServiceType::ReturnRefund);
    assert_eq!(t.customer_id.as_ref().unwrap().as_str(), "AAH3kq8xABCDEFG");
    // The buyer's nick is personal data and is not carried anywhere.
    assert!(!format!("{m:?}").contains("张"));
}

fn tmc(topic: &str, bill_type: &str) -> Vec<u8> {
    let content = serde_json::json!({
        "refund_id": 1680, "tid": 36, "oid": 37, "refund_fee": "59.9",
        "modified": "2026-11-21 08:00:00", "bill_type": bill_type,
    });
    serde_json::json!({"topic": topic, "id": 99, "content": content.to_string()})
        .to_string()
        .into_bytes()
}

#[test]
fn taobao_topics_map_to_the_commands_they_mean() {
    let cmd = |topic: &str, bill: &str| one(Platform::Tmall, &tmc(topic, bill));
    assert_eq!(
        cmd("taobao_refund_RefundSellerAgreeAgreement", "return_bill").command,
        Command::Approve {
            return_method: ReturnMethod::CustomerShips
        }
    );
    assert!(matches!(
        cmd("taobao_refund_RefundSellerRefuseAgreement", "return_bill").command,
        Command::Reject { reason: Some(_) }
    ));
    assert!(matches!(
        cmd("taobao_refund_RefundBuyerReturnGoods", "return_bill").command,
        Command::RecordReturnShipment { .. }
    ));
    let closed = cmd("taobao_refund_RefundClosed", "return_bill");
    assert!(matches!(
        closed.command,
        Command::Withdraw {
            confirmation: Some(_)
        }
    ));
    assert!(matches!(closed.if_refused, IfRefused::Annotate(_)));
    // Refund success: a return bill is a refund after return, a refund bill keeps the goods.
    assert_eq!(
        cmd("taobao_refund_RefundSuccess", "return_bill").command,
        Command::Dispose {
            disposal: Disposal::Refund {
                amount: Money::from_cents(5_990),
                return_shipping: Money::ZERO,
                customer_consent: None
            }
        }
    );
    assert_eq!(
        cmd("taobao_refund_RefundSuccess", "refund_bill").command,
        Command::Dispose {
            disposal: Disposal::RefundWithoutReturn {
                amount: Money::from_cents(5_990),
                customer_consent: None
            }
        }
    );
    let created = cmd("taobao_refund_RefundCreated", "replace_bill");
    assert_eq!(opened(&created).service_type, ServiceType::Exchange);
    assert_eq!(created.ticket_id.as_str(), "tmall:1680");
}

#[test]
fn douyin_batch_with_bom_string_and_object_data_and_both_id_spellings() {
    let ms = translate(&Platform::Douyin, &payload("douyin_push.json")).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].ticket_id.as_str(), "douyin:7102000000000000777");
    assert_eq!(ms[0].key, "douyin/7102000000000000001");
    let t = opened(&ms[0]);
    assert_eq!(t.service_type, ServiceType::RefundOnly);
    assert_eq!(t.order_shipped, Some(false));
    assert_eq!(t.amount_paid, Money::from_cents(5_900));
    assert_eq!(t.order_line_id.as_str(), "4900000000000000001");
    assert_eq!(ms[0].at.to_rfc3339(), "2025-11-20T10:00:00+08:00");
    // 201 on a refund-only request is the merchant agreeing.
    assert_eq!(ms[1].key, "douyin/7102000000000000002");
    assert_eq!(ms[1].ticket_id, ms[0].ticket_id);
    assert!(matches!(ms[1].command, Command::Approve { .. }));
}

#[test]
fn douyin_201_on_a_return_is_the_receipt_and_209_keeps_the_platform_deadline() {
    let push = |tag: &str, data: serde_json::Value| {
        serde_json::json!({"tag": tag, "msg_id": format!("m{tag}"), "data": data})
            .to_string()
            .into_bytes()
    };
    let m = one(
        Platform::Douyin,
        &push(
            "201",
            serde_json::json!({"aftersale_id": 5, "aftersale_type": 0, "agree_time": 1763607600}),
        ),
    );
    assert_eq!(m.command, Command::ConfirmReceipt);
    let m = one(
        Platform::Douyin,
        &push(
            "209",
            serde_json::json!({"aftersale_id": 5, "update_time": 1763607600, "status_deadline": 1763780400}),
        ),
    );
    match m.command {
        Command::Annotate { note } => {
            assert!(
                note.as_str().contains("2025-11-22T11:00:00+08:00"),
                "{}",
                note.as_str()
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn jd_service_order_opens_with_the_expected_service_and_completes_with_it() {
    let m = one(Platform::Jd, &payload("jd_status.json"));
    assert_eq!(m.ticket_id.as_str(), "jd:1688000123456789");
    assert_eq!(m.key, "jd/1688000123456789/10001/2026-11-20 09:30:00");
    let t = opened(&m);
    assert_eq!(t.service_type, ServiceType::Exchange);
    assert_eq!(t.sku.as_ref().unwrap().as_str(), "100012345678");
    assert_eq!(t.order_line_id.as_str(), "290000000001-100012345678");
    let done = serde_json::json!({
        "serviceId": "1688000123456789", "orderId": "290000000001", "skuId": "100012345678",
        "customerExpect": "20", "serviceStatus": "10010", "updateTime": 1763604000000u64,
        "msgId": "jd-m-2"
    });
    let m = one(Platform::Jd, done.to_string().as_bytes());
    assert_eq!(m.key, "jd/jd-m-2");
    assert_eq!(
        m.command,
        Command::Dispose {
            disposal: Disposal::Exchange {
                replacement_sku: None,
                customer_consent: None
            }
        }
    );
}

#[test]
fn pinduoduo_and_kuaishou_open_tickets_from_their_pushes() {
    let m = one(Platform::Pdd, &payload("pdd_created.json"));
    assert_eq!(m.ticket_id.as_str(), "pdd:9100000000001");
    assert_eq!(
        m.key,
        "pdd/pdd_refund_RefundCreated/9100000000001/1763604000000"
    );
    let t = opened(&m);
    assert_eq!(t.service_type, ServiceType::ReturnRefund);
    assert_eq!(t.order_id.as_str(), "231120-123456789012345");
    assert_eq!(t.amount_paid, Money::from_cents(2_990));

    let m = one(Platform::Kuaishou, &payload("kuaishou_add.json"));
    assert_eq!(m.ticket_id.as_str(), "kuaishou:2100000000001");
    assert_eq!(m.key, "kuaishou/ks-20261120-0001");
    assert_eq!(opened(&m).service_type, ServiceType::RefundOnly);
    assert_eq!(opened(&m).amount_paid, Money::from_cents(1_500));
}

#[test]
fn the_generic_format_carries_any_command_for_its_own_source_only() {
    let myshop: Platform = "myshop".parse().unwrap();
    let m = one(myshop.clone(), &payload("generic_open.json"));
    assert_eq!(m.key, "myshop/shop-42-1");
    assert_eq!(opened(&m).service_type, ServiceType::RepairSendIn);
    // The same body published as another source is refused: it names myshop's ticket.
    let other: Platform = "othershop".parse().unwrap();
    let err = translate(&other, &payload("generic_open.json")).unwrap_err();
    assert!(
        matches!(
            err,
            Unusable::BadValue {
                field: "ticket_id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn each_kind_of_unusable_body_is_refused_with_a_reason_naming_the_problem() {
    let cases: Vec<(Platform, &[u8], &str, &str)> = vec![
        (Platform::Tmall, b"<xml/>", "not_json", "not JSON"),
        (Platform::Tmall, b"", "not_json", "empty"),
        (
            Platform::Tmall,
            br#"{"topic":"taobao_trade_TradeCreate","id":1,"content":"{}"}"#,
            "unknown_topic",
            "taobao_trade_TradeCreate",
        ),
        (
            Platform::Tmall,
            br#"{"topic":"taobao_refund_RefundCreated","id":1,"content":"{\"tid\":1,\"modified\":\"2026-11-20 10:00:00\"}"}"#,
            "malformed",
            "refund_id",
        ),
        (
            Platform::Tmall,
            br#"{"topic":"taobao_refund_RefundCreated","id":1,"content":"{\"refund_id\":1,\"tid\":1,\"refund_fee\":\"9.999\",\"bill_type\":\"return_bill\",\"modified\":\"2026-11-20 10:00:00\"}"}"#,
            "bad_value",
            "refund_fee",
        ),
        (
            Platform::Douyin,
            br#"{"tag":"200","msg_id":"1","data":{"aftersale_id":1,"aftersale_type":6,"apply_time":1,"p_id":1,"s_id":1,"refund_amount":1}}"#,
            "unknown_code",
            "aftersale_type = 6",
        ),
        (Platform::Douyin, b"[]", "malformed", "empty array"),
        (
            Platform::Jd,
            br#"{"serviceId":1,"orderId":1,"customerExpect":10,"serviceStatus":19999,"updateTime":"2026-11-20 10:00:00"}"#,
            "unknown_code",
            "serviceStatus = 19999",
        ),
        (
            Platform::Jd,
            br#"{"serviceId":1,"orderId":1,"customerExpect":10,"serviceStatus":10001,"updateTime":"20/11/2026"}"#,
            "bad_value",
            "updateTime",
        ),
        (
            Platform::Pdd,
            br#"{"type":"pdd_refund_RefundCreated","content":"not json"}"#,
            "malformed",
            "`content` is a string but not JSON",
        ),
        (
            Platform::Kuaishou,
            br#"{"msgId":"1","event":"kwaishop_aftersales_updateRefund","info":{"refundId":1,"orderId":1,"handlingWay":1,"status":35,"createTime":1}}"#,
            "unknown_code",
            "status = 35",
        ),
    ];
    for (platform, body, code, needle) in cases {
        let err = translate(&platform, body).unwrap_err();
        assert_eq!(err.code(), code, "{platform}: {err}");
        assert!(err.to_string().contains(needle), "{platform}: {err}");
    }
}

#[test]
fn one_bad_element_refuses_the_whole_batch() {
    let body = br#"[{"tag":"203","msg_id":"a","data":{"aftersale_id":1,"update_time":1}},
                    {"tag":"999","msg_id":"b","data":{"aftersale_id":1,"update_time":1}}]"#;
    let err = translate(&Platform::Douyin, body).unwrap_err();
    assert_eq!(err.code(), "unknown_topic");
}
