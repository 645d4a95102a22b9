//! The ingest benchmark: messages/s through adapters, decide and durable append, next to a
//! raw JetStream consume + ack loop over the same stream in the same run, and the
//! publish → durable-append latency under a steady live load.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::{deadletter, Ingest, IngestConfig, IngestError};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Messages in the backlog both the raw loop and the ingest consume.
    pub messages: usize,
    /// Messages published at a steady rate while the ingest runs, for latency.
    pub live_messages: usize,
    /// The live publish rate as a share of the measured ingest rate.
    pub live_load: f64,
}

impl BenchConfig {
    pub fn full() -> Self {
        Self {
            messages: 50_000,
            live_messages: 20_000,
            live_load: 0.5,
        }
    }
    pub fn quick() -> Self {
        Self {
            messages: 3_000,
            live_messages: 1_000,
            live_load: 0.5,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub messages: usize,
    /// Asynchronous publishes confirmed by the broker (what a gateway sees).
    pub publish_per_s: f64,
    pub raw_per_s: f64,
    pub ingest_per_s: f64,
    pub live_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub events_stored: u64,
    /// Events per group commit over the backlog: how much each flush was shared.
    pub events_per_flush: f64,
    /// The same run's store figures for one-event appends by 64 writers, and bare sled
    /// inserting records of the same size in batches of 64 with one flush per batch: the
    /// ceiling of anything that stores each message durably on this disk.
    pub store_per_s: f64,
    pub sled_per_s: f64,
}

impl BenchReport {
    pub fn ratio(&self) -> f64 {
        self.ingest_per_s / self.raw_per_s
    }
}

/// A Taobao refund-created message for ticket `n`: the common first message of a ticket.
pub fn sample(n: usize) -> Bytes {
    let content = serde_json::json!({
        "refund_id": 100_000_000 + n, "tid": 36_000 + n, "oid": 37_000 + n,
        "refund_fee": "59.90", "modified": "2026-11-20 10:00:00", "bill_type": "return_bill",
    });
    Bytes::from(
        serde_json::json!({"topic": "taobao_refund_RefundCreated", "id": n, "content": content.to_string()})
            .to_string(),
    )
}

/// Publishes `sample(n)` for every `n` of `range`, one every `gap` if given, and returns
/// once the broker confirmed them all. Confirmations are awaited 1,024 at a time: the
/// client allows 5,000 unconfirmed publishes, and holding more blocks `publish`.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    range: std::ops::Range<usize>,
    gap: Option<Duration>,
) -> Result<(), IngestError> {
    let nats = |e: &dyn std::fmt::Display| IngestError::Nats(e.to_string());
    let started = Instant::now();
    let mut acks = Vec::with_capacity(1024);
    for (i, n) in range.enumerate() {
        if let Some(gap) = gap {
            let due = started + gap.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        acks.push(
            js.publish(subject.to_owned(), sample(n))
                .await
                .map_err(|e| nats(&e))?,
        );
        if acks.len() == 1024 {
            for a in acks.drain(..) {
                a.await.map_err(|e| nats(&e))?;
            }
        }
    }
    for a in acks {
        a.await.map_err(|e| nats(&e))?;
    }
    Ok(())
}

/// Runs the benchmark against the broker in `cfg` (use a server of its own: it creates the
/// streams and consumers it names) with a store in `data`.
pub async fn run(
    cfg: &IngestConfig,
    data: &std::path::Path,
    bench: &BenchConfig,
    progress: &dyn Fn(&str),
) -> Result<BenchReport, IngestError> {
    let client = cfg.connect().await?;
    let js = jetstream::new(client.clone());
    let (webhooks, _) = deadletter::ensure_streams(&js, cfg).await?;
    let subject = format!("{}.tmall", cfg.subject_prefix);
    progress(&format!("publishing {} messages", bench.messages));
    let started = Instant::now();
    publish_all(&js, &subject, 0..bench.messages, None).await?;
    let publish_per_s = bench.messages as f64 / started.elapsed().as_secs_f64();

    progress("raw JetStream consume + ack");
    let raw: consumer::PullConsumer = webhooks
        .get_or_create_consumer(
            "bench-raw",
            consumer::pull::Config {
                durable_name: Some("bench-raw".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: cfg.max_in_flight as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| IngestError::Nats(e.to_string()))?;
    let started = Instant::now();
    let mut stream = raw
        .stream()
        .max_messages_per_batch(cfg.max_in_flight.clamp(1, 256))
        .messages()
        .await
        .map_err(|e| IngestError::Nats(e.to_string()))?;
    let mut seen = 0;
    while seen < bench.messages {
        match stream.next().await {
            Some(Ok(m)) => {
                m.ack()
                    .await
                    .map_err(|e| IngestError::Nats(e.to_string()))?;
                seen += 1;
            }
            Some(Err(e)) => return Err(IngestError::Nats(e.to_string())),
            None => return Err(IngestError::Nats("raw stream ended".into())),
        }
    }
    let raw_per_s = bench.messages as f64 / started.elapsed().as_secs_f64();
    drop(stream);

    progress("ingest: adapters, decide, durable append, ack");
    let store = aftersales_store::Store::open(
        data,
        aftersales_store::StoreConfig::new(Arc::new(SystemClock)),
    )
    .map_err(|e| IngestError::Config(e.to_string()))?;
    let tickets =
        Arc::new(Tickets::new(Arc::new(store)).map_err(|e| IngestError::Config(e.to_string()))?);
    let ingest = Ingest::new(cfg.clone(), tickets.clone(), Arc::new(SystemClock)).record_latency();
    let stats = ingest.stats();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(ingest.run(client, async {
        let _ = stop_rx.await;
    }));
    let total = bench.messages as u64;
    while stats.settled() < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest_per_s = bench.messages as f64 / started.elapsed().as_secs_f64();
    let backlog_events = tickets.store().head_position();
    let events_per_flush = backlog_events as f64 / tickets.store().flushes().max(1) as f64;
    stats.latencies_us.lock().expect("not poisoned").clear();

    let live_per_s = (ingest_per_s * bench.live_load).max(1.0);
    progress(&format!(
        "live: {} messages at {live_per_s:.0}/s",
        bench.live_messages
    ));
    let gap = Duration::from_secs_f64(1.0 / live_per_s);
    let first = bench.messages;
    publish_all(&js, &subject, first..first + bench.live_messages, Some(gap)).await?;
    let all = total + bench.live_messages as u64;
    while stats.settled() < all {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_tx.send(());
    task.await.map_err(|e| IngestError::Nats(e.to_string()))??;
    progress("the store alone and bare sled, same record size");
    let record_bytes = tickets
        .store()
        .read_all(1, 1)
        .map_err(|e| IngestError::Config(e.to_string()))?
        .first()
        .map_or(300, |r| r.payload.len());
    let store_bench = aftersales_store::bench::BenchConfig {
        dir: data.parent().map(|p| p.to_path_buf()),
        per_case: Duration::from_millis(if bench.messages < 10_000 { 700 } else { 3_000 }),
        writers: vec![64],
        events_per_append: vec![1],
        payload_bytes: record_bytes,
        fsync_after_flush: true,
        rounds: 1,
        writer_kinds: vec![aftersales_store::bench::WriterKind::Threads],
    };
    let store_report =
        tokio::task::spawn_blocking(move || aftersales_store::bench::run(&store_bench))
            .await
            .map_err(|e| IngestError::Config(e.to_string()))?
            .map_err(|e| IngestError::Config(e.to_string()))?;
    let store_case = &store_report.store[0];
    let sled_per_s = store_report
        .raw_for(store_case)
        .map_or(0.0, |r| r.events_per_sec);
    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().expect("not poisoned"));
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
    if stats.dead_lettered.load(Ordering::Relaxed) > 0 {
        return Err(IngestError::Nats(format!(
            "{} benchmark messages were dead-lettered",
            stats.dead_lettered.load(Ordering::Relaxed)
        )));
    }
    Ok(BenchReport {
        messages: bench.messages,
        publish_per_s,
        raw_per_s,
        ingest_per_s,
        live_per_s,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        events_stored: tickets.store().head_position(),
        events_per_flush,
        store_per_s: store_case.events_per_sec,
        sled_per_s,
    })
}
