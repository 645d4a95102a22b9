//! Order across a lost publish, against a real `nats-server -js`: a message the broker
//! never stored must not be overtaken by the ones the client sent after it (after a
//! broker restart the client sends what it still holds). The loss is made real by
//! publishing one record, once, to a subject the stream does not hold.

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aftersales_clock::SystemClock;
use aftersales_outbox::{Outbox, OutboxConfig, Outgoing, Publishers, Select, Start};
use aftersales_store::{ExpectedVersion, NewEvent, RecordedEvent, Store, StoreConfig, StreamId};
use async_nats::jetstream::{self, stream};
use support::NatsServer;

const LOST: u64 = 5;

/// Every record on `ok.<position>`, but record `LOST` the first time on `lost`, which the
/// stream does not take.
struct LoseOnce(AtomicBool);

impl Select for LoseOnce {
    fn select(&self, record: &RecordedEvent) -> Option<Outgoing> {
        let lose = record.position == LOST && !self.0.swap(true, Ordering::SeqCst);
        Some(Outgoing {
            subject: if lose {
                "lost".into()
            } else {
                format!("ok.{}", record.position)
            },
            msg_id: record.id.to_string(),
            headers: Vec::new(),
            body: record.payload.clone().into(),
            note: None,
        })
    }
}

async fn publish_with_one_lost(publishers: Publishers) {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            dir.path().join("store"),
            StoreConfig::new(Arc::new(SystemClock)),
        )
        .unwrap(),
    );
    let stream = StreamId::new("jd:1").unwrap();
    let events = (0..40)
        .map(|i| NewEvent::new(uuid::Uuid::new_v4(), "Noted", format!("{i}")))
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "ORDER".into(),
        subjects: vec!["t.ok.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let outbox = Outbox::new(
        store.clone(),
        dir.path().join("cursor"),
        OutboxConfig {
            stream: "ORDER".into(),
            subject_prefix: "t".into(),
            duplicate_window_secs: 60,
            poll_millis: 5,
            start: Start::Beginning,
            publishers,
        },
        LoseOnce(AtomicBool::new(false)),
    );
    let stats = outbox.stats();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(outbox.run(client, async {
        let _ = rx.await;
    }));
    let mut info = js.get_stream("ORDER").await.unwrap();
    for _ in 0..500 {
        if stats.cursor.load(Ordering::Acquire) == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(
        stats.failures.load(Ordering::Relaxed) >= 1,
        "record {LOST} was lost once"
    );
    assert_eq!(
        info.info().await.unwrap().state.messages,
        40,
        "a record is missing or twice"
    );
    for record in store.read_all(1, 40).unwrap() {
        let message = info.get_raw_message(record.position).await.unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!("t.ok.{}", record.position),
            "{publishers:?}: the stream's message {} is another record's",
            record.position
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_publisher_pipelines_but_nothing_overtakes_a_lost_message() {
    publish_with_one_lost(Publishers::One).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_many_publishers_keeps_order_one_message_at_a_time() {
    publish_with_one_lost(Publishers::Many).await;
}
