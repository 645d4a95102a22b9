//! The ingest against a real `nats-server -js`: platform payloads in, tickets out, each
//! message stored once however often it is delivered, unusable ones dead-lettered with
//! their reason, reordered ones parked until their ticket exists.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_ingest::{deadletter, Ingest, IngestConfig, Stats};
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::{State, TicketId};
use async_nats::jetstream;
use bytes::Bytes;
use support::{wait_until, NatsServer};
use tokio::sync::oneshot;

struct Running {
    tickets: Arc<Tickets>,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    fn state(&self, id: &str) -> Option<State> {
        self.tickets
            .load(&TicketId::parse(id).unwrap())
            .unwrap()
            .state()
    }

    fn events(&self, id: &str) -> usize {
        self.tickets
            .history(&TicketId::parse(id).unwrap())
            .unwrap()
            .len()
    }
}

fn config(server: &NatsServer) -> IngestConfig {
    IngestConfig {
        url: server.url(),
        workers: 4,
        ack_wait_secs: 5,
        ..IngestConfig::default()
    }
}

async fn start(cfg: IngestConfig) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap();
    let tickets = Arc::new(Tickets::new(Arc::new(store)).unwrap());
    let client = cfg.connect().await.unwrap();
    // The streams exist before the test publishes (the ingest would create them too).
    deadletter::ensure_streams(&jetstream::new(client.clone()), &cfg)
        .await
        .unwrap();
    let ingest = Ingest::new(cfg, tickets.clone(), Arc::new(SystemClock));
    let stats = ingest.stats();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        ingest
            .run(client, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        tickets,
        stats,
        stop: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

async fn publisher(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::new(client)
}

async fn publish(js: &jetstream::Context, platform: &str, body: impl Into<Vec<u8>>) {
    js.publish(
        format!("aftersales.webhooks.{platform}"),
        Bytes::from(body.into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

async fn settled(stats: &Arc<Stats>, n: u64) {
    let stats = stats.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(60, "messages to settle", || stats.settled() >= n)
    })
    .await
    .unwrap();
}

fn tmc(topic: &str, id: u64, refund_id: u64, bill_type: &str, modified: &str) -> String {
    let content = serde_json::json!({
        "refund_id": refund_id, "tid": 36, "oid": refund_id + 1, "refund_fee": "59.90",
        "modified": modified, "bill_type": bill_type, "buyer_nick": "张**",
    });
    serde_json::json!({"topic": format!("taobao_refund_{topic}"), "id": id, "content": content.to_string()})
        .to_string()
}

fn douyin(tag: &str, msg: &str, aftersale: u64, kind: u64, time_field: &str, t: u64) -> String {
    let mut data = serde_json::json!({
        "aftersale_id": aftersale, "aftersale_type": kind, "p_id": 49, "s_id": aftersale + 1,
        "refund_amount": 5900,
    });
    data[time_field] = t.into();
    serde_json::json!([{"tag": tag, "msg_id": msg, "data": data.to_string()}]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_platform_drives_its_tickets_through_nats() {
    let server = NatsServer::start();
    let run = start(config(&server)).await;
    let js = publisher(&server).await;
    // Taobao return-refund: created, agreed, goods sent back, refunded.
    for (i, topic) in [
        "RefundCreated",
        "RefundSellerAgreeAgreement",
        "RefundBuyerReturnGoods",
        "RefundSuccess",
    ]
    .iter()
    .enumerate()
    {
        let modified = format!("2026-11-20 1{i}:00:00");
        publish(
            &js,
            "tmall",
            tmc(topic, 100 + i as u64, 5000, "return_bill", &modified),
        )
        .await;
    }
    // Douyin refund-only before shipment: the agreement is the refund; the success push
    // that follows only confirms it and is kept as a note.
    publish(
        &js,
        "douyin",
        douyin("200", "d1", 7000, 2, "apply_time", 1_763_600_000),
    )
    .await;
    publish(
        &js,
        "douyin",
        douyin("201", "d2", 7000, 2, "agree_time", 1_763_603_600),
    )
    .await;
    publish(
        &js,
        "douyin",
        douyin("206", "d3", 7000, 2, "success_time", 1_763_607_200),
    )
    .await;
    // JD exchange: waiting for review, approved, goods waiting for processing, complete.
    for (i, status) in [10001, 10005, 10007, 10010].iter().enumerate() {
        let body = serde_json::json!({
            "serviceId": 8000, "orderId": 80, "skuId": 81, "customerExpect": 20,
            "serviceStatus": status, "updateTime": format!("2026-11-2{i} 09:00:00"),
        });
        publish(&js, "jd", body.to_string()).await;
    }
    // Pinduoduo return-refund closed by the buyer.
    for (i, kind) in ["RefundCreated", "RefundClosed"].iter().enumerate() {
        let content = serde_json::json!({
            "refund_id": 9000, "tid": "231120-1", "refund_fee": 2990,
            "modified": 1_763_604_000_000u64 + i as u64, "after_sales_type": 3,
        });
        let body = serde_json::json!({"type": format!("pdd_refund_{kind}"), "mallID": 1, "content": content.to_string()});
        publish(&js, "pdd", body.to_string()).await;
    }
    // Kuaishou refund-only, refunded.
    for (i, (event, status)) in [("addRefund", 10), ("updateRefund", 60)].iter().enumerate() {
        let info = serde_json::json!({
            "refundId": 6000, "orderId": 60, "handlingWay": 10, "status": status,
            "refundFee": 1500, "createTime": 1_763_604_000_000u64 + i as u64,
        });
        let body = serde_json::json!({"msgId": format!("k{i}"), "event": format!("kwaishop_aftersales_{event}"), "info": info});
        publish(&js, "kuaishou", body.to_string()).await;
    }
    settled(&run.stats, 15).await;
    assert_eq!(run.stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(run.state("tmall:5000"), Some(State::Refunded));
    assert_eq!(run.state("douyin:7000"), Some(State::Completed));
    assert_eq!(
        run.events("douyin:7000"),
        4,
        "opened, approved, refunded_without_return, annotated"
    );
    assert_eq!(run.state("jd:8000"), Some(State::Exchanged));
    assert_eq!(run.state("pdd:9000"), Some(State::ClosedByCustomer));
    assert_eq!(run.state("kuaishou:6000"), Some(State::Completed));
    run.stop().await;
}

/// A webhook on a partition subject (`aftersales.webhooks.<platform>.<partition>`) is
/// taken like one on the platform's subject; a subject with more tokens is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_partition_subjects_are_taken() {
    let server = NatsServer::start();
    let run = start(config(&server)).await;
    let js = publisher(&server).await;
    let created = tmc("RefundCreated", 1, 77, "refund_bill", "2026-11-20 10:00:00");
    let agreed = tmc(
        "RefundSellerAgreeAgreement",
        2,
        77,
        "refund_bill",
        "2026-11-20 11:00:00",
    );
    publish(&js, "tmall.5", created).await;
    publish(&js, "tmall.5", agreed).await;
    publish(
        &js,
        "tmall.5.extra",
        tmc("RefundCreated", 3, 78, "refund_bill", "2026-11-20 10:00:00"),
    )
    .await;
    settled(&run.stats, 3).await;
    // Opened, then approved and refunded at once (a refund with the goods staying).
    assert_eq!(run.state("tmall:77"), Some(State::Completed));
    assert_eq!(run.events("tmall:78"), 0);
    assert_eq!(run.stats.dead_lettered.load(Ordering::Relaxed), 1);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_three_times_is_stored_once() {
    let server = NatsServer::start();
    let run = start(config(&server)).await;
    let js = publisher(&server).await;
    let body = tmc("RefundCreated", 1, 42, "refund_bill", "2026-11-20 10:00:00");
    for _ in 0..3 {
        publish(&js, "taobao", body.clone()).await;
    }
    settled(&run.stats, 3).await;
    assert_eq!(run.events("tmall:42"), 1);
    assert_eq!(run.stats.duplicates.load(Ordering::Relaxed), 2);
    // A publisher's Nats-Msg-Id lets the broker drop the repeat before it is delivered.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "tmall-2");
    let body2 = tmc(
        "RefundSellerAgreeAgreement",
        2,
        42,
        "refund_bill",
        "2026-11-20 11:00:00",
    );
    let mut dup = Vec::new();
    for _ in 0..2 {
        let ack = js
            .publish_with_headers(
                "aftersales.webhooks.tmall",
                headers.clone(),
                body2.clone().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        dup.push(ack.duplicate);
    }
    assert_eq!(dup, vec![false, true]);
    settled(&run.stats, 4).await;
    assert_eq!(run.state("tmall:42"), Some(State::Completed));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_messages_land_in_the_dead_letter_stream_with_their_reason() {
    let server = NatsServer::start();
    let cfg = IngestConfig {
        park_window_secs: 1,
        ..config(&server)
    };
    let run = start(cfg.clone()).await;
    let js = publisher(&server).await;
    publish(&js, "tmall", "this is not json").await;
    publish(
        &js,
        "tmall",
        r#"{"topic":"taobao_trade_TradeCreate","id":1,"content":"{}"}"#,
    )
    .await;
    publish(&js, "jd", r#"{"serviceId":1,"customerExpect":10,"serviceStatus":10001,"updateTime":"2026-11-20 10:00:00"}"#).await;
    publish(&js, "NotAPlatform!", "{}").await;
    // Refused for good: a rejection needs a reason (invariant 3).
    let open = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../adapters/tests/payloads/generic_open.json"
    ))
    .unwrap();
    publish(&js, "myshop", open).await;
    publish(&js, "myshop", r#"{"message_id":"r1","ticket_id":"myshop:42","at":"2026-11-20T11:00:00+08:00","actor":"merchant","command":{"type":"reject"}}"#).await;
    // Parked, then dead-lettered when its ticket never appears within the window.
    publish(&js, "myshop", r#"{"message_id":"a1","ticket_id":"myshop:404","at":"2026-11-20T11:00:00+08:00","actor":"merchant","command":{"type":"approve"}}"#).await;
    settled(&run.stats, 7).await;
    assert!(
        run.stats.retried.load(Ordering::Relaxed) >= 1,
        "the orphan was parked first"
    );
    let letters = deadletter::list(&js, &cfg, 0, 100).await.unwrap();
    let mut codes: Vec<(String, String)> = letters
        .iter()
        .map(|l| (l.original_subject.clone(), l.reason_code.clone()))
        .collect();
    codes.sort();
    let expect = |s: &str, c: &str| (format!("aftersales.webhooks.{s}"), c.to_owned());
    let mut expected = vec![
        expect("NotAPlatform!", "malformed"),
        expect("jd", "malformed"),
        expect("myshop", "refused_not_opened"),
        expect("myshop", "refused_rejection_without_reason"),
        expect("tmall", "not_json"),
        expect("tmall", "unknown_topic"),
    ];
    expected.sort();
    assert_eq!(codes, expected);
    let jd = letters
        .iter()
        .find(|l| l.original_subject.ends_with(".jd"))
        .unwrap();
    assert!(jd.reason.contains("orderId"), "{}", jd.reason);
    assert_eq!(jd.delivered, 1);
    let orphan = letters
        .iter()
        .find(|l| l.reason_code == "refused_not_opened")
        .unwrap();
    assert!(
        orphan.delivered > 1 && orphan.reason.contains("park window"),
        "{orphan:?}"
    );
    assert_eq!(run.state("myshop:42"), Some(State::PendingReview));

    // After the fix (the ticket now exists), replay feeds the orphan again and it applies.
    publish(&js, "myshop", r#"{"message_id":"o404","ticket_id":"myshop:404","at":"2026-11-20T10:00:00+08:00","actor":"customer","command":{"type":"open","ticket":{"id":"myshop:404","platform":"myshop","platform_ticket_id":"404","order_id":"o","order_line_id":"o-1","amount_paid":100,"service_type":"exchange","reason":"other"}}}"#).await;
    settled(&run.stats, 8).await;
    let replayed = deadletter::replay(&js, &cfg, &[orphan.sequence])
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    settled(&run.stats, 9).await;
    assert_eq!(run.state("myshop:404"), Some(State::AwaitingReturn));
    let left = deadletter::list(&js, &cfg, 0, 100).await.unwrap();
    assert_eq!(left.len(), 5);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_arrives_before_its_ticket_is_parked_and_applied_when_it_appears() {
    let server = NatsServer::start();
    let run = start(config(&server)).await;
    let js = publisher(&server).await;
    publish(
        &js,
        "tmall",
        tmc(
            "RefundSellerAgreeAgreement",
            2,
            77,
            "return_bill",
            "2026-11-20 11:00:00",
        ),
    )
    .await;
    let stats = run.stats.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(20, "the early message to be parked", || {
            stats.retried.load(Ordering::Relaxed) >= 1
        })
    })
    .await
    .unwrap();
    publish(
        &js,
        "tmall",
        tmc("RefundCreated", 1, 77, "return_bill", "2026-11-20 10:00:00"),
    )
    .await;
    settled(&run.stats, 2).await;
    assert_eq!(run.state("tmall:77"), Some(State::AwaitingReturn));
    assert_eq!(run.stats.dead_lettered.load(Ordering::Relaxed), 0);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut server = NatsServer::start();
    let run = start(config(&server)).await;
    let total = 400u64;
    let created = |n: u64| {
        tmc(
            "RefundCreated",
            n,
            10_000 + n,
            "refund_bill",
            "2026-11-20 10:00:00",
        )
    };
    for (half, restart_after) in [(0..total / 2, true), (total / 2..total, false)] {
        let js = publisher(&server).await;
        for n in half {
            publish(&js, "tmall", created(n)).await;
        }
        if restart_after {
            server.restart();
        }
    }
    // Not `settled`: around the restart an acknowledged message may be delivered again
    // (its ack was lost) and count twice; the log says what is stored.
    let tickets = run.tickets.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(60, "every message to be stored", || {
            tickets.store().head_position() >= total
        })
    })
    .await
    .unwrap();
    for n in 0..total {
        assert_eq!(
            run.events(&format!("tmall:{}", 10_000 + n)),
            1,
            "ticket {n}"
        );
    }
    assert_eq!(run.tickets.store().head_position(), total);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_config_are_used_and_a_wrong_login_is_a_clear_error() {
    use aftersales_ingest::Auth;
    let server = NatsServer::start_with(&["--user", "ingest", "--pass", "s3cret"]);
    let without = IngestConfig {
        url: server.url(),
        ..IngestConfig::default()
    };
    let err = without.connect().await.unwrap_err().to_string();
    assert!(
        err.contains("cannot connect to") && err.contains(&server.url()),
        "{err}"
    );
    let wrong = IngestConfig {
        auth: Auth::UserPassword {
            user: "ingest".into(),
            password: "nope".into(),
        },
        ..without.clone()
    };
    assert!(wrong.connect().await.is_err());

    let cfg = IngestConfig {
        auth: Auth::UserPassword {
            user: "ingest".into(),
            password: "s3cret".into(),
        },
        workers: 2,
        ..without
    };
    let run = start(cfg.clone()).await;
    let js = jetstream::new(cfg.connect().await.unwrap());
    publish(
        &js,
        "tmall",
        tmc("RefundCreated", 1, 5, "return_bill", "2026-11-20 10:00:00"),
    )
    .await;
    settled(&run.stats, 1).await;
    assert_eq!(run.state("tmall:5"), Some(State::PendingReview));
    run.stop().await;

    // A token server, and the config file form of the same settings.
    let server = NatsServer::start_with(&["--auth", "t0ken"]);
    let text = format!(
        "url = \"{}\"\nauth = {{ kind = \"token\", token = \"t0ken\" }}\nworkers = 1\n",
        server.url()
    );
    let cfg: IngestConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg.workers, 1);
    assert_eq!(
        cfg.stream, "AFTERSALES_WEBHOOKS",
        "unset keys keep their defaults"
    );
    cfg.connect().await.unwrap();
    assert!(
        toml::from_str::<IngestConfig>("urll = \"x\"").is_err(),
        "typos are refused"
    );
}
