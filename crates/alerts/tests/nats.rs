//! The alert publisher against a real `nats-server -js`: every warning and expiry in the log
//! reaches the alerts stream once, in log order, across restarts and a rewound cursor.

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aftersales_alerts::{
    cursor_path, read_cursor, write_cursor, Publisher, PublisherConfig, PublisherStats, Publishers,
};
use aftersales_app::{Submission, Tickets};
use aftersales_clock::SystemClock;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::*;
use async_nats::jetstream;
use chrono::DateTime;
use support::NatsServer;

fn at(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn submit(tickets: &Tickets, ticket: &str, command: Command, when: &str, key: &str) {
    tickets
        .handle(Submission {
            ticket_id: TicketId::parse(ticket).unwrap(),
            command,
            at: at(when),
            actor: Actor::Platform,
            idempotency_key: Some(key.to_owned()),
            causation_id: None,
        })
        .unwrap();
}

fn open(tickets: &Tickets, ticket: &str) {
    let (platform, number) = ticket.split_once(':').unwrap();
    let new = NewTicket {
        id: TicketId::parse(ticket).unwrap(),
        platform: platform.parse().unwrap(),
        platform_ticket_id: PlatformTicketId::parse(number).unwrap(),
        order_id: OrderId::parse(&format!("O-{number}")).unwrap(),
        order_line_id: OrderLineId::parse(&format!("O-{number}-1")).unwrap(),
        sku: None,
        amount_paid: Money::from_cents(10_000),
        refund_requested: None,
        customer_id: None,
        service_type: ServiceType::ReturnRefund,
        reason: Reason::QualityProblem,
        signed_for_at: None,
        order_shipped: Some(true),
    };
    let command = Command::Open {
        ticket: Box::new(new),
    };
    submit(
        tickets,
        ticket,
        command,
        "2026-11-20T10:00:00+08:00",
        &format!("open/{ticket}"),
    );
}

/// The platform lets `ticket`'s review (`rule`) expire at its due time.
fn expire(tickets: &Tickets, ticket: &str, rule: &str) {
    let command = Command::ExpireDeadline {
        deadline: review(rule),
        outcome: None,
    };
    let key = format!("deadline/{ticket}");
    submit(tickets, ticket, command, "2026-11-22T10:00:00+08:00", &key);
}

fn review(rule: &str) -> Deadline {
    Deadline {
        kind: DeadlineKind::Review,
        due_at: at("2026-11-22T10:00:00+08:00"),
        rule_id: RuleId::parse(rule).unwrap(),
    }
}

/// A publisher running on `client` (polling every 20 ms) until `stop` is sent.
struct Running {
    stats: Arc<PublisherStats>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), aftersales_alerts::AlertsError>>,
}

fn start(store: &Arc<Store>, client: async_nats::Client) -> Running {
    let publisher = Publisher::new(
        store.clone(),
        cursor_path(store.path()),
        PublisherConfig {
            poll_millis: 20,
            ..PublisherConfig::default()
        },
        Publishers::One,
    );
    let stats = publisher.stats();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(publisher.run(client, async {
        let _ = stop_rx.await;
    }));
    Running { stats, stop, task }
}

impl Running {
    /// Stops it; how many alerts it published (the broker's duplicates included).
    async fn stop(self) -> u64 {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
        self.stats.published.load(Ordering::Relaxed)
    }
}

/// Runs a publisher until the stream holds `want` messages and it has looked at the whole
/// log, then stops it; returns how many alerts it published.
async fn publish_until(store: &Arc<Store>, server: &NatsServer, want: u64) -> u64 {
    let client = async_nats::connect(server.url()).await.unwrap();
    let running = start(store, client.clone());
    let stats = running.stats.clone();
    let js = jetstream::new(client);
    let head = store.head_position();
    for _ in 0..500 {
        let stored = match js.get_stream("AFTERSALES_ALERTS").await {
            Ok(mut s) => s.info().await.unwrap().state.messages,
            Err(_) => 0,
        };
        if stored >= want && stats.cursor.load(Ordering::Relaxed) == head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_in_the_log_is_published_once_in_order() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap());
    let tickets = Tickets::new(store.clone()).unwrap();
    open(&tickets, "jd:1");
    open(&tickets, "pdd:2");
    let warn = Command::WarnDeadline {
        deadline: review("jd.review"),
    };
    submit(
        &tickets,
        "jd:1",
        warn,
        "2026-11-22T08:00:00+08:00",
        "warning/jd:1",
    );
    expire(&tickets, "pdd:2", "pdd.review");
    // The history counts from position 0 here; a store without a cursor starts at its head.
    write_cursor(&cursor_path(store.path()), 0).unwrap();

    assert_eq!(publish_until(&store, &server, 2).await, 2);
    assert_eq!(
        read_cursor(&cursor_path(store.path())).unwrap(),
        Some(store.head_position())
    );
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream("AFTERSALES_ALERTS").await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    let second = stream.get_raw_message(2).await.unwrap();
    assert_eq!(first.subject.as_str(), "aftersales.alerts.jd");
    assert_eq!(second.subject.as_str(), "aftersales.alerts.pdd");
    let alert: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(alert["kind"], "warning");
    assert_eq!(alert["ticket"], "jd:1");
    assert_eq!(alert["deadline"], "review");
    assert_eq!(alert["rule"], "jd.review");
    assert!(
        alert["text"].as_str().unwrap().contains("is due at"),
        "{alert}"
    );
    let expired: serde_json::Value = serde_json::from_slice(&second.payload).unwrap();
    assert_eq!(expired["kind"], "expired");
    assert_eq!(
        first.headers.get("Nats-Msg-Id").unwrap().as_str(),
        alert["id"].as_str().unwrap(),
        "the alert's identity is its event id"
    );

    // A crash before the cursor was written: everything again, and the broker keeps one each.
    write_cursor(&cursor_path(store.path()), 0).unwrap();
    assert_eq!(publish_until(&store, &server, 2).await, 2);
    let mut stream = js.get_stream("AFTERSALES_ALERTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);

    // Restarted with its cursor: only what is new.
    expire(&tickets, "jd:1", "jd.review");
    assert_eq!(publish_until(&store, &server, 3).await, 1);
    let third = stream.get_raw_message(3).await.unwrap();
    let alert: serde_json::Value = serde_json::from_slice(&third.payload).unwrap();
    assert_eq!(
        (alert["kind"].as_str(), alert["ticket"].as_str()),
        (Some("expired"), Some("jd:1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_cursor_starts_at_its_head_and_alerts_survive_a_broker_restart() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap());
    let tickets = Tickets::new(store.clone()).unwrap();
    open(&tickets, "jd:1");
    let old = Command::WarnDeadline {
        deadline: review("jd.review"),
    };
    submit(
        &tickets,
        "jd:1",
        old,
        "2026-11-22T08:00:00+08:00",
        "warning/jd:1",
    );
    // Nothing from before the first start is published.
    assert_eq!(publish_until(&store, &server, 0).await, 0);
    assert_eq!(read_cursor(&cursor_path(store.path())).unwrap(), Some(2));

    // The broker goes down before the expiry is stored: the publisher retries until it is
    // back, and the alert is not lost.
    let client = async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .connect(server.url())
        .await
        .unwrap();
    let running = start(&store, client);
    let stats = running.stats.clone();
    server.kill();
    expire(&tickets, "jd:1", "jd.review");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stats.cursor.load(Ordering::Relaxed),
        2,
        "not past an alert the broker did not store"
    );
    server.restart();
    for _ in 0..1000 {
        if stats.cursor.load(Ordering::Relaxed) == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(running.stop().await, 1);
    // Whether the client held the publication through the outage or the broker refused it
    // and the publisher tried again, it is there once.
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut stream = js.get_stream("AFTERSALES_ALERTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
    assert_eq!(read_cursor(&cursor_path(store.path())).unwrap(), Some(3));
}

/// Stopped in the middle of a page of alerts: it returns cleanly, with its cursor no
/// further than what the broker took (the stop future is not polled again once it
/// completed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_stopped_mid_page_returns_cleanly_with_its_cursor_saved() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap());
    let tickets = Tickets::new(store.clone()).unwrap();
    for n in 0..400 {
        let ticket = format!("pdd:{n}");
        open(&tickets, &ticket);
        expire(&tickets, &ticket, "pdd.review");
    }
    write_cursor(&cursor_path(store.path()), 0).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let running = start(&store, client);
    let stats = running.stats.clone();
    while stats.published.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let published = tokio::time::timeout(Duration::from_secs(10), running.stop())
        .await
        .expect("the publisher stops");
    assert!(published < 400, "stopped after everything: {published}");
    let cursor = read_cursor(&cursor_path(store.path())).unwrap().unwrap();
    // Each ticket is two records (opened, expired): every alert up to the cursor is stored
    // by the broker (the cursor never runs ahead of the acks); pipelined publishes whose
    // acks were not awaited may be stored too, and are dropped as duplicates next time.
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let mut stream = js.get_stream("AFTERSALES_ALERTS").await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    assert!(
        cursor / 2 <= stored && published <= stored && stored < 400,
        "cursor {cursor}, {stored} stored, {published} published"
    );
}
