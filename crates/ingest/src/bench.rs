//! The ingest benchmark: messages/s through adapters, decide and durable append, next to a
//! raw JetStream consume + ack loop over the same stream in the same run, and the
//! publish → durable-append latency under a steady live load; then a backlog of
//! follow-up messages on the tickets the first backlog opened, which take the path of an
//! existing ticket (its stream read or its folded state reused, an expected version).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_store::bench::cpu;
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
    /// Follow-up messages (the merchant agrees) on the first tickets of the backlog,
    /// published as a second backlog once the live phase is over.
    pub follow_ups: usize,
    /// The broker's process, when the benchmark started it: its CPU time is counted too.
    pub broker_pid: Option<u32>,
}

impl BenchConfig {
    pub fn full() -> Self {
        Self {
            messages: 50_000,
            live_messages: 20_000,
            live_load: 0.5,
            follow_ups: 20_000,
            broker_pid: None,
        }
    }
    pub fn quick() -> Self {
        Self {
            messages: 3_000,
            live_messages: 1_000,
            live_load: 0.5,
            follow_ups: 1_000,
            broker_pid: None,
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
    /// Bare sled's CPU time per record (all of its threads).
    pub sled_cpu_us: Option<f64>,
    /// CPU spent on the raw loop's and the ingest's backlog (None where /proc is missing).
    pub raw_cpu: Option<CpuUse>,
    pub ingest_cpu: Option<CpuUse>,
    /// Follow-ups ingested, their rate and CPU (the ingest restarted on the same store).
    pub follow_ups: usize,
    pub follow_up_per_s: f64,
    pub follow_up_cpu: Option<CpuUse>,
}

/// The CPU one phase took, per message: both phases run on the same cores, so a phase
/// that keeps them busy can only go faster by costing less per message.
#[derive(Debug, Clone)]
pub struct CpuUse {
    /// This process (the benchmark's client side: the raw loop, or the whole ingest).
    pub own_us: f64,
    /// The broker, when its process is known.
    pub broker_us: Option<f64>,
    /// Busy share of all the machine's CPUs over the phase (1.0: every core busy).
    pub machine_busy: f64,
    /// The machine's CPUs.
    pub cores: usize,
    /// Our part by kind of thread: (what, microseconds per message), largest first.
    pub threads: Vec<(&'static str, f64)>,
}

/// What a thread of the benchmark process does, by its name.
fn thread_kind(name: &str) -> &'static str {
    if name.starts_with("ingest-") {
        "workers (decide, encode)"
    } else if name.starts_with("tokio-rt") {
        "runtime (pull, translate, ack)"
    } else if name.starts_with("aftersales-stor") {
        "store writer + flusher"
    } else if name.starts_with("sled") {
        "sled's own threads"
    } else {
        "other"
    }
}

impl CpuUse {
    /// The highest rate these costs allow on this machine's cores.
    pub fn rate_limit(&self) -> f64 {
        let per_message = self.own_us + self.broker_us.unwrap_or(0.0);
        self.cores as f64 * 1e6 / per_message.max(f64::MIN_POSITIVE)
    }
}

/// CPU clock readings at one instant (see [`cpu`]).
#[derive(Debug, Clone)]
struct CpuClock {
    own_ticks: u64,
    /// Each live thread: id, name, CPU nanoseconds.
    threads: Vec<(u64, String, u64)>,
    broker_ticks: Option<u64>,
    busy_ticks: u64,
    all_ticks: u64,
}

impl CpuClock {
    fn read(broker_pid: Option<u32>) -> Option<Self> {
        let (busy_ticks, all_ticks) = cpu::machine_ticks()?;
        Some(Self {
            own_ticks: cpu::process_ticks("self")?,
            threads: cpu::thread_ns(),
            broker_ticks: broker_pid.and_then(|p| cpu::process_ticks(&p.to_string())),
            busy_ticks,
            all_ticks,
        })
    }

    /// What was spent from `self` to `now` on `messages` messages.
    fn since(&self, now: &Self, messages: usize) -> CpuUse {
        let us = |ticks: u64| ticks as f64 * cpu::TICK_US / messages.max(1) as f64;
        let broker_us = match (self.broker_ticks, now.broker_ticks) {
            (Some(a), Some(b)) => Some(us(b.saturating_sub(a))),
            _ => None,
        };
        // Threads started during the phase count from zero; those gone by its end are in
        // `other`: the difference to the process total.
        let ns_as_us_per_message = |ns: u64| ns as f64 / 1_000.0 / messages.max(1) as f64;
        let mut threads: Vec<(&'static str, f64)> = Vec::new();
        let mut counted = 0.0;
        for (tid, name, ns) in &now.threads {
            let before = self
                .threads
                .iter()
                .find(|(t, _, _)| t == tid)
                .map_or(0, |(_, _, b)| *b);
            let spent = ns_as_us_per_message(ns.saturating_sub(before));
            counted += spent;
            let kind = thread_kind(name);
            match threads.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, total)) => *total += spent,
                None => threads.push((kind, spent)),
            }
        }
        let own = now.own_ticks.saturating_sub(self.own_ticks);
        // The process total is in ticks (10 ms, over all threads): it can fall a little
        // short of the threads' sum.
        let rest = (us(own) - counted).max(0.0);
        match threads.iter_mut().find(|(k, _)| *k == "other") {
            Some((_, total)) => *total += rest,
            None => threads.push(("other", rest)),
        }
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        CpuUse {
            threads,
            own_us: us(own),
            broker_us,
            machine_busy: now.busy_ticks.saturating_sub(self.busy_ticks) as f64
                / now.all_ticks.saturating_sub(self.all_ticks).max(1) as f64,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl BenchReport {
    pub fn ratio(&self) -> f64 {
        self.ingest_per_s / self.raw_per_s
    }

    /// Follow-ups on existing tickets against the same raw consume + ack.
    pub fn follow_up_ratio(&self) -> f64 {
        self.follow_up_per_s / self.raw_per_s
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

/// The Taobao message of the merchant agreeing to the refund of ticket `n` (opened by
/// `sample(n)`): a command on an existing ticket, in the same envelope and of about the
/// same size.
pub fn follow_up(n: usize) -> Bytes {
    let content = serde_json::json!({
        "refund_id": 100_000_000 + n, "tid": 36_000 + n, "oid": 37_000 + n,
        "refund_fee": "59.90", "modified": "2026-11-20 11:00:00", "bill_type": "return_bill",
    });
    Bytes::from(
        serde_json::json!({
            "topic": "taobao_refund_RefundSellerAgreeAgreement",
            "id": 1_000_000_000 + n,
            "content": content.to_string(),
        })
        .to_string(),
    )
}

/// Publishes `message(n)` for every `n` of `range`, one every `gap` if given, and returns
/// once the broker confirmed them all. Confirmations are awaited 1,024 at a time: the
/// client allows 5,000 unconfirmed publishes, and holding more blocks `publish`.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    range: std::ops::Range<usize>,
    gap: Option<Duration>,
    message: fn(usize) -> Bytes,
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
            js.publish(subject.to_owned(), message(n))
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
    publish_all(&js, &subject, 0..bench.messages, None, sample).await?;
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
    let raw_clock = CpuClock::read(bench.broker_pid);
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
    let raw_cpu = cpu_since(raw_clock, bench, bench.messages);
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
    let ingest_clock = CpuClock::read(bench.broker_pid);
    let task = tokio::spawn(ingest.run(client.clone(), async {
        let _ = stop_rx.await;
    }));
    let total = bench.messages as u64;
    while stats.settled() < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ingest_per_s = bench.messages as f64 / started.elapsed().as_secs_f64();
    let ingest_cpu = cpu_since(ingest_clock, bench, bench.messages);
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
    publish_all(
        &js,
        &subject,
        first..first + bench.live_messages,
        Some(gap),
        sample,
    )
    .await?;
    let all = total + bench.live_messages as u64;
    while stats.settled() < all {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop_tx.send(());
    task.await.map_err(|e| IngestError::Nats(e.to_string()))??;
    let dead_lettered = stats.dead_lettered.load(Ordering::Relaxed);

    let follow_ups = bench.follow_ups.min(bench.messages);
    progress(&format!(
        "follow-ups: {follow_ups} merchant approvals of tickets opened above, as a backlog"
    ));
    publish_all(&js, &subject, 0..follow_ups, None, follow_up).await?;
    let before = tickets.store().head_position();
    let ingest = Ingest::new(cfg.clone(), tickets.clone(), Arc::new(SystemClock));
    let follow_stats = ingest.stats();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let follow_clock = CpuClock::read(bench.broker_pid);
    let task = tokio::spawn(ingest.run(client, async {
        let _ = stop_rx.await;
    }));
    while follow_stats.settled() < follow_ups as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let follow_up_per_s = follow_ups as f64 / started.elapsed().as_secs_f64();
    let follow_up_cpu = cpu_since(follow_clock, bench, follow_ups);
    let _ = stop_tx.send(());
    task.await.map_err(|e| IngestError::Nats(e.to_string()))??;
    let dead_lettered = dead_lettered + follow_stats.dead_lettered.load(Ordering::Relaxed);
    if dead_lettered > 0 {
        return Err(IngestError::Nats(format!(
            "{dead_lettered} benchmark messages were dead-lettered"
        )));
    }
    // Each approval is one event: a follow-up that did nothing would not count.
    let follow_up_events = tickets.store().head_position() - before;
    if follow_up_events != follow_ups as u64 {
        return Err(IngestError::Nats(format!(
            "{follow_ups} follow-ups stored {follow_up_events} events"
        )));
    }
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
    let bare = store_report.raw_for(store_case);
    let sled_per_s = bare.map_or(0.0, |r| r.events_per_sec);
    let sled_cpu_us = bare.and_then(|r| r.cpu_us_per_record);
    let mut lat = std::mem::take(&mut *stats.latencies_us.lock().expect("not poisoned"));
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0
        }
    };
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
        sled_cpu_us,
        raw_cpu,
        ingest_cpu,
        follow_ups,
        follow_up_per_s,
        follow_up_cpu,
    })
}

/// What a phase that began at `start` spent on its `messages` messages.
fn cpu_since(start: Option<CpuClock>, bench: &BenchConfig, messages: usize) -> Option<CpuUse> {
    let now = CpuClock::read(bench.broker_pid)?;
    Some(start?.since(&now, messages))
}
