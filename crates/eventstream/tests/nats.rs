//! The events stream against a real `nats-server -js`: every record of the log reaches
//! `AFTERSALES_EVENTS` once, in log order, on its ticket's partition subject, with its
//! payload unchanged, across a rewound cursor and a broker restart in the middle.

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use aftersales_app::{Submission, Tickets};
use aftersales_clock::SystemClock;
use aftersales_eventstream::{cursor_path, EventPublisher, EventsConfig, Publishers};
use aftersales_outbox::{read_cursor, write_cursor};
use aftersales_partition::{partition_of, PartitionCount};
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::*;
use async_nats::jetstream;
use support::NatsServer;

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
    submit(
        tickets,
        ticket,
        Command::Open {
            ticket: Box::new(new),
        },
        "open",
    );
}

fn submit(tickets: &Tickets, ticket: &str, command: Command, key: &str) {
    tickets
        .handle(Submission {
            ticket_id: TicketId::parse(ticket).unwrap(),
            command,
            at: chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00+08:00").unwrap(),
            actor: Actor::Merchant,
            idempotency_key: Some(format!("{key}/{ticket}")),
            causation_id: None,
        })
        .unwrap();
}

/// Opens `n` tickets from `from` across three platforms, approving every other one.
fn add_tickets(tickets: &Tickets, from: usize, n: usize) {
    for i in from..from + n {
        let ticket = format!("{}:{}", ["jd", "pdd", "tmall"][i % 3], 5_000 + i);
        open(tickets, &ticket);
        if i % 2 == 0 {
            let approve = Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            };
            submit(tickets, &ticket, approve, "approve");
        }
    }
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), aftersales_outbox::OutboxError>>,
}

fn start(store: &Arc<Store>, client: async_nats::Client, cfg: &EventsConfig) -> Running {
    let publisher = EventPublisher::new(
        store.clone(),
        cursor_path(store.path()),
        cfg,
        Publishers::One,
    )
    .unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(publisher.run(client, async {
        let _ = rx.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

async fn messages(js: &jetstream::Context) -> u64 {
    match js.get_stream("AFTERSALES_EVENTS").await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

async fn wait_for(js: &jetstream::Context, want: u64) {
    for _ in 0..1_000 {
        if messages(js).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stream holds {} of {want} events", messages(js).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_is_published_once_in_order_on_its_partition() {
    let mut server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap());
    let tickets = Tickets::new(store.clone()).unwrap();
    add_tickets(&tickets, 0, 60);
    let cfg = EventsConfig {
        partitions: 8,
        poll_millis: 10,
        ..EventsConfig::default()
    };
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .unwrap();
    let js = jetstream::new(client.clone());

    // No cursor: from the first record.
    let running = start(&store, client.clone(), &cfg);
    wait_for(&js, store.head_position()).await;
    running.stop().await;
    assert_eq!(
        read_cursor(&cursor_path(store.path())).unwrap(),
        Some(store.head_position())
    );

    // A crash before the cursor was written: everything again; the broker keeps one each.
    write_cursor(&cursor_path(store.path()), 0).unwrap();
    let running = start(&store, client.clone(), &cfg);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // More events while the broker goes away and comes back.
    add_tickets(&tickets, 60, 150);
    server.kill();
    add_tickets(&tickets, 210, 30);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    wait_for(&js, store.head_position()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    let head = store.head_position();
    assert_eq!(messages(&js).await, head, "an event is missing or twice");

    // Message n of the stream is record n of the log, on its partition, unchanged.
    let stream = js.get_stream("AFTERSALES_EVENTS").await.unwrap();
    let count = PartitionCount::new(8).unwrap();
    let records = store.read_all(1, head as usize).unwrap();
    for record in &records {
        let message = stream.get_raw_message(record.position).await.unwrap();
        let ticket = TicketId::parse(record.stream.as_str()).unwrap();
        let platform = ticket.as_str().split_once(':').unwrap().0;
        assert_eq!(
            message.subject.as_str(),
            format!(
                "aftersales.events.{platform}.{}",
                partition_of(&ticket, count)
            )
        );
        assert_eq!(message.payload.as_ref(), record.payload.as_slice());
        let header = |name: &str| message.headers.get(name).unwrap().as_str().to_owned();
        assert_eq!(header("Nats-Msg-Id"), record.id.to_string());
        assert_eq!(header("Aftersales-Position"), record.position.to_string());
        assert_eq!(header("Aftersales-Version"), record.version.to_string());
        assert_eq!(header("Aftersales-Event"), record.event_type);
        let envelope = aftersales_schema::decode(&message.payload).unwrap();
        assert_eq!(envelope.ticket_id, ticket, "a consumer decodes the payload");
    }
}

/// Tickets `from..from + n` of the ones that fall on `partition` of 8.
fn tickets_on(partition: u16, from: usize, n: usize) -> Vec<String> {
    let count = PartitionCount::new(8).unwrap();
    (0..)
        .map(|i| format!("{}:{}", ["jd", "pdd", "tmall"][i % 3], 7_000 + i))
        .filter(|t| partition_of(&TicketId::parse(t).unwrap(), count).0 == partition)
        .skip(from)
        .take(n)
        .collect()
}

/// A broker, a temp dir for stores and an 8-partition events config: what the rebuild
/// tests share.
struct Rig {
    _server: NatsServer,
    dir: tempfile::TempDir,
    cfg: EventsConfig,
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Rig {
    async fn start() -> Rig {
        let server = NatsServer::start();
        let client = async_nats::ConnectOptions::new()
            .connect(server.url())
            .await
            .unwrap();
        Rig {
            _server: server,
            dir: tempfile::tempdir().unwrap(),
            cfg: EventsConfig {
                partitions: 8,
                poll_millis: 10,
                ..EventsConfig::default()
            },
            js: jetstream::new(client.clone()),
            client,
        }
    }

    fn store(&self, name: &str) -> Arc<Store> {
        Arc::new(
            Store::open(
                self.dir.path().join(name),
                StoreConfig::new(Arc::new(SystemClock)),
            )
            .unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_store_is_rebuilt_from_the_stream_with_the_same_chain() {
    let rig = Rig::start().await;
    let (cfg, client, js) = (rig.cfg.clone(), rig.client.clone(), rig.js.clone());
    let open_store = |name: &str| rig.store(name);
    let partition = aftersales_partition::Partition(3);

    // Before anything was published there is no stream and nothing to rebuild.
    let empty = open_store("empty");
    let none = aftersales_eventstream::rebuild(&js, &cfg, partition, &empty, |_| {})
        .await
        .unwrap();
    assert_eq!((none.read, none.imported, none.published_head), (0, 0, 0));

    // The owner of partitions 3 and 5 (a store each) publishes everything.
    let owner3 = open_store("owner3");
    let owner5 = open_store("owner5");
    for (store, p) in [(&owner3, 3), (&owner5, 5)] {
        let tickets = Tickets::new(store.clone()).unwrap();
        for (i, t) in tickets_on(p, 0, 700).iter().enumerate() {
            open(&tickets, t);
            if i % 2 == 0 {
                let approve = Command::Approve {
                    return_method: ReturnMethod::CustomerShips,
                };
                submit(&tickets, t, approve, "approve");
            }
        }
    }
    let mut published = 0;
    for store in [&owner3, &owner5] {
        let running = start(store, client.clone(), &cfg);
        published += store.head_position();
        wait_for(&js, published).await;
        running.stop().await;
    }
    let head = owner3.head_position();
    assert!(head >= 1050, "700 openings and 350 approvals: {head}");

    // A newcomer takes partition 3 over: an empty store becomes the owner's, byte for byte.
    let taker = open_store("taker");
    let mut reports = Vec::new();
    let done = aftersales_eventstream::rebuild(&js, &cfg, partition, &taker, |n| reports.push(n))
        .await
        .unwrap();
    assert_eq!(
        (done.read, done.imported, done.published_head),
        (head, head, head)
    );
    assert_eq!(reports.last(), Some(&head), "progress is reported");
    assert!(reports.len() >= 3, "in batches: {reports:?}");
    assert_eq!(
        taker.read_all(1, 5000).unwrap(),
        owner3.read_all(1, 5000).unwrap()
    );
    assert_eq!(taker.head_hash(), owner3.head_hash());
    assert!(taker.verify().unwrap().is_ok());
    let t = TicketId::parse(&tickets_on(3, 0, 1)[0]).unwrap();
    let history = Tickets::new(taker.clone()).unwrap().history(&t).unwrap();
    assert_eq!(history.len(), 2, "opened and approved");
    assert_eq!(
        history,
        Tickets::new(owner3.clone()).unwrap().history(&t).unwrap(),
        "the rebuilt store decides from the same history"
    );

    // The former owner comes back with a store that holds part of it: only the rest is
    // read into it.
    let partial = open_store("partial");
    partial.import(owner3.read_all(1, 400).unwrap()).unwrap();
    let done = aftersales_eventstream::rebuild(&js, &cfg, partition, &partial, |_| {})
        .await
        .unwrap();
    assert_eq!((done.read, done.imported), (head, head - 400));
    assert_eq!(partial.head_hash(), owner3.head_hash());

    // A store that wrote a record the stream does not hold (an owner's unpublished tail,
    // replaced meanwhile by another owner's) is refused at that position.
    let diverged = open_store("diverged");
    diverged.import(owner3.read_all(1, 10).unwrap()).unwrap();
    let own = Tickets::new(diverged.clone()).unwrap();
    open(&own, &tickets_on(3, 900, 1)[0]);
    let refused = aftersales_eventstream::rebuild(&js, &cfg, partition, &diverged, |_| {}).await;
    assert_diverges_at(refused, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_longer_than_the_stream_is_compared_at_the_streams_last_record() {
    let rig = Rig::start().await;
    let (cfg, client, js) = (rig.cfg.clone(), rig.client.clone(), rig.js.clone());
    let open_store = |name: &str| rig.store(name);
    let partition = aftersales_partition::Partition(6);

    // The first owner published two records; it went on to write ten more and died
    // before publishing them.
    let first = open_store("first");
    let tickets = Tickets::new(first.clone()).unwrap();
    for t in tickets_on(6, 0, 2) {
        open(&tickets, &t);
    }
    let running = start(&first, client.clone(), &cfg);
    wait_for(&js, 2).await;
    running.stop().await;
    for t in tickets_on(6, 2, 10) {
        open(&tickets, &t);
    }
    drop(tickets);
    assert_eq!(first.head_position(), 12);

    // Its unpublished tail is still its own while nobody published after it: kept,
    // compared at the stream's last record, and published from position 3.
    let kept = aftersales_eventstream::rebuild(&js, &cfg, partition, &first, |_| {})
        .await
        .unwrap();
    assert_eq!((kept.read, kept.imported, kept.published_head), (2, 0, 2));

    // Another owner took over from the stream and published three records of its own.
    let second = open_store("second");
    aftersales_eventstream::rebuild(&js, &cfg, partition, &second, |_| {})
        .await
        .unwrap();
    let tickets = Tickets::new(second.clone()).unwrap();
    for t in tickets_on(6, 20, 3) {
        open(&tickets, &t);
    }
    let running = start(&second, client.clone(), &cfg);
    wait_for(&js, 5).await;
    running.stop().await;

    // The first owner's tail (12 records) is longer than the stream (5), and the stream's
    // record 5 is not its record 5: refused there, so the caller moves the store aside
    // instead of publishing its 6..12 after the other owner's 3..5.
    let refused = aftersales_eventstream::rebuild(&js, &cfg, partition, &first, |_| {}).await;
    assert_diverges_at(refused, 5);
}

/// The rebuild was refused because the store holds another record at `position`.
fn assert_diverges_at(
    result: Result<aftersales_eventstream::Rebuilt, aftersales_eventstream::RebuildError>,
    position: u64,
) {
    match result {
        Err(aftersales_eventstream::RebuildError::Store(
            aftersales_store::StoreError::ImportDiverges { position: p, .. },
        )) if p == position => {}
        other => panic!("expected the import to diverge at {position}, got {other:?}"),
    }
}
