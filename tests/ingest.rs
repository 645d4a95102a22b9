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
    let status = support::sigterm(&mut child);
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

#[test]
fn deadletter_list_shows_why_and_replay_feeds_it_back() {
    let server = NatsServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let js = rt.block_on(async {
        let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
        aftersales_ingest::deadletter::ensure_streams(&js, &Default::default())
            .await
            .unwrap();
        for (subject, body) in [
            (
                "aftersales.webhooks.douyin",
                &b"{\"tag\":\"999\",\"msg_id\":\"x\",\"data\":{}}"[..],
            ),
            ("aftersales.webhooks.tmall", &sample(1)[..]),
        ] {
            js.publish(subject, body.to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        js
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("aftersales.toml");
    std::fs::write(&config, "[nats]\nworkers = 2\n").unwrap();
    let mut child = spawn_ingest(&dir.path().join("store"), &config, &server.url());
    wait_until(60, "both messages to be settled", || {
        let (delivered, left) = progress(&rt, &js);
        delivered >= 2 && left == 0
    });
    assert!(support::sigterm(&mut child).success());

    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_aftersales"))
            .args(args)
            .args(["--nats", &server.url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (listed, _) = cli(&["deadletter", "list", "--json"]);
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1, "{listed}");
    assert_eq!(letters[0]["original_subject"], "aftersales.webhooks.douyin");
    assert_eq!(letters[0]["reason_code"], "unknown_topic");
    assert!(letters[0]["reason"].as_str().unwrap().contains("999"));
    let (_, said) = cli(&["deadletter", "replay"]);
    assert!(said.contains("replayed 1"), "{said}");
    let (listed, _) = cli(&["deadletter", "list", "--json"]);
    assert_eq!(listed, "", "a replayed dead letter is removed");
    // It is back on its original subject, waiting for the next ingest.
    let (_, left) = progress(&rt, &js);
    assert_eq!(left, 1);
}

/// `serve` with NATS: a webhook published to the broker becomes a ticket whose review is
/// due within the warning window, the scheduler warns of it at once, and the alert comes
/// out on `aftersales.alerts.<platform>` once; a restart sends nothing again.
#[test]
fn serve_with_nats_turns_a_webhook_into_a_ticket_and_its_warning_into_one_alert() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serve = || {
        Command::new(env!("CARGO_BIN_EXE_aftersales"))
            .args(["serve", "--nats", &server.url(), "--http"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = serve();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let js =
        rt.block_on(async { jetstream::new(async_nats::connect(server.url()).await.unwrap()) });
    // A Douyin refund opened 47h ago: its 48h review is due in an hour, inside the 2h window.
    let applied = chrono::Utc::now().timestamp() - 47 * 3600;
    let body = format!(
        r#"{{"tag":"200","msg_id":"warn-1","data":{{"aftersale_id":777,"aftersale_type":0,"apply_time":{applied},"p_id":1,"s_id":2,"refund_amount":9900}}}}"#
    );
    let alerts = |rt: &tokio::runtime::Runtime| -> u64 {
        rt.block_on(async {
            match js.get_stream("AFTERSALES_ALERTS").await {
                Ok(mut s) => s.info().await.unwrap().state.messages,
                Err(_) => 0,
            }
        })
    };
    // The stream exists once serve's ingest has started; publish until the broker takes it.
    wait_until(30, "the webhook stream", || {
        rt.block_on(async {
            match js
                .publish("aftersales.webhooks.douyin", body.clone().into())
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        })
    });
    wait_until(30, "the warning's alert", || alerts(&rt) == 1);
    let message = rt.block_on(async {
        let stream = js.get_stream("AFTERSALES_ALERTS").await.unwrap();
        stream.get_raw_message(1).await.unwrap()
    });
    assert_eq!(message.subject.as_str(), "aftersales.alerts.douyin");
    let alert: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(
        (alert["kind"].as_str(), alert["ticket"].as_str()),
        (Some("warning"), Some("douyin:777"))
    );
    assert_eq!(alert["deadline"], "review");
    let m = metrics(port).unwrap();
    assert!(m.contains("aftersales_ingest_stored_total 1\n"), "{m}");
    assert!(m.contains("aftersales_ingest_pending_messages 0\n"), "{m}");
    assert!(m.contains("aftersales_alerts_published_total 1\n"), "{m}");

    // SIGTERM and start again: the cursor holds, nothing is sent twice.
    assert!(support::sigterm(&mut child).success());
    let mut child = serve();
    // Once the restarted publisher has looked at the whole log, count again.
    wait_until(30, "the restarted publisher to catch up", || {
        metrics(port).is_some_and(|m| m.contains("aftersales_alerts_lag_events 0"))
    });
    assert_eq!(alerts(&rt), 1);
    let _ = child.kill();
    let _ = child.wait();
}

/// `GET /metrics` from a `serve` on loopback, if it answers.
fn metrics(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}
