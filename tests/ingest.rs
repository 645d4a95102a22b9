//! The `aftersales ingest` process killed with SIGKILL mid-batch and started again: every
//! published message is stored exactly once, positions are gapless and the chain verifies.
//! Needs `nats-server` (CI installs it).

#[path = "../crates/ingest/tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_ingest::bench::sample;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::TicketId;
use async_nats::jetstream::{self, consumer};
use support::{wait_until, NatsServer};

const MESSAGES: usize = 3_000;

fn spawn_ingest(data: &std::path::Path, config: &std::path::Path, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_aftersales"))
        .args(["ingest", "--nats", url, "--data"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Messages the ingest consumer has been handed, and those still not acknowledged.
fn progress(rt: &tokio::runtime::Runtime, js: &jetstream::Context) -> (u64, u64) {
    rt.block_on(async {
        let stream = js.get_stream("AFTERSALES_WEBHOOKS").await.unwrap();
        match stream
            .get_consumer::<consumer::pull::Config>("aftersales-ingest")
            .await
        {
            Ok(mut c) => {
                let info = c.info().await.unwrap();
                (
                    info.delivered.stream_sequence,
                    info.num_pending + info.num_ack_pending as u64,
                )
            }
            Err(_) => (0, MESSAGES as u64),
        }
    })
}

#[test]
fn ingest_killed_mid_batch_stores_every_message_exactly_once() {
    let server = NatsServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let js = rt.block_on(async {
        let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let cfg = aftersales_ingest::IngestConfig::default();
        aftersales_ingest::deadletter::ensure_streams(&js, &cfg)
            .await
            .unwrap();
        let mut acks = Vec::new();
        for n in 0..MESSAGES {
            acks.push(
                js.publish("aftersales.webhooks.tmall", sample(n))
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
        js
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    // A short ack wait, so messages held by the killed process come back quickly.
    let config = dir.path().join("aftersales.toml");
    std::fs::write(&config, "[nats]\nack_wait_secs = 2\nworkers = 8\n").unwrap();

    for (round, kill_after) in [(1, 600u64), (2, 1_800)] {
        let mut child = spawn_ingest(&data, &config, &server.url());
        wait_until(60, "the ingest to get going", || {
            progress(&rt, &js).0 >= kill_after
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (_, left) = progress(&rt, &js);
        assert!(left > 0, "round {round}: killed after everything was done");
    }
    let mut child = spawn_ingest(&data, &config, &server.url());
    wait_until(90, "every message to be acknowledged", || {
        progress(&rt, &js).1 == 0
    });
    // SIGTERM: a graceful stop closes the store.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let store = Store::open(&data, StoreConfig::new(Arc::new(SystemClock))).unwrap();
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.head_position(), MESSAGES as u64);
    let tickets = Tickets::new(Arc::new(store)).unwrap();
    for n in 0..MESSAGES {
        let id = TicketId::parse(&format!("tmall:{}", 100_000_000 + n)).unwrap();
        assert_eq!(tickets.history(&id).unwrap().len(), 1, "message {n}");
    }
}
