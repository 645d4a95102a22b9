//! The JetStream subscriber: a durable pull consumer, messages applied by a pool of worker
//! threads (one ticket always on the same worker, so its messages keep their order), each
//! message acknowledged only after its events are on disk.

use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aftersales_adapters::{translate, Message, Unusable};
use aftersales_app::Tickets;
use aftersales_clock::Clock;
use aftersales_partition::{partition_of, Partition, PartitionCount};
use aftersales_ticket::Platform;
use async_nats::jetstream::{self, consumer, AckKind};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::IngestConfig;
use crate::deadletter::{self, Original};
use crate::process::{apply_batch, verdict, Limits, Outcome, Verdict};
use crate::IngestError;

/// Counters of what the ingest did since it started.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    /// Messages whose events were stored (or found stored: redeliveries).
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    /// Negative acknowledgements: parked or retried.
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// The ingest's lag, as of the last message settled: messages the broker still holds
    /// for the consumer, and how long that message had waited since it was published.
    pub pending: AtomicU64,
    pub last_age_ms: AtomicU64,
    /// Publish → durable append, in microseconds, when [`Ingest::record_latency`] is on.
    pub latencies_us: Mutex<Vec<u64>>,
}

impl Stats {
    /// Messages settled for good (stored or dead-lettered).
    pub fn settled(&self) -> u64 {
        self.stored.load(Ordering::Relaxed) + self.dead_lettered.load(Ordering::Relaxed)
    }
}

/// The NATS ingest over one ticket handler.
pub struct Ingest {
    cfg: IngestConfig,
    tickets: Arc<Tickets>,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
    record_latency: bool,
    duty: Option<PartitionDuty>,
}

/// One partition of a partitioned deployment (docs/PARTITIONS.md): the ingest consumes
/// only `<prefix>.*.<partition>`, with a consumer of its own (`<consumer>-p<partition>`),
/// dead-letters a ticket of another partition, and acknowledges a message only once the
/// events stream holds its events.
#[derive(Clone)]
pub struct PartitionDuty {
    pub partition: Partition,
    pub count: PartitionCount,
    /// The last log position the events stream has acknowledged.
    pub published: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Set when the partition's lease is lost: from then on no message is applied or
    /// acknowledged; those in hand are given back (nak) for the next owner.
    pub fenced: Arc<AtomicBool>,
}

/// Jobs a worker takes at once: one store request for a run of them.
const BATCH: usize = 64;

struct Job {
    msg: jetstream::Message,
    translated: Result<Vec<Message>, Unusable>,
}

impl Ingest {
    pub fn new(cfg: IngestConfig, tickets: Arc<Tickets>, clock: Arc<dyn Clock>) -> Self {
        Self {
            cfg,
            tickets,
            clock,
            stats: Arc::default(),
            record_latency: false,
            duty: None,
        }
    }

    /// Consumes one partition only (see [`PartitionDuty`]).
    pub fn for_partition(mut self, duty: PartitionDuty) -> Self {
        self.cfg.consumer = format!("{}-p{}", self.cfg.consumer, duty.partition);
        self.duty = Some(duty);
        self
    }

    /// Keeps the publish → durable-append latency of every message (for the benchmark).
    pub fn record_latency(mut self) -> Self {
        self.record_latency = true;
        self
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Consumes until `shutdown` completes, then stops taking messages, lets the workers
    /// finish (and acknowledge) the ones they hold, and returns.
    pub async fn run(
        self,
        client: async_nats::Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), IngestError> {
        let js = jetstream::new(client);
        let (webhooks, _) = deadletter::ensure_streams(&js, &self.cfg).await?;
        let consumer: consumer::PullConsumer = webhooks
            .get_or_create_consumer(
                &self.cfg.consumer,
                consumer::pull::Config {
                    durable_name: Some(self.cfg.consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(self.cfg.ack_wait_secs),
                    // Unlimited on the server: a message the server gives up on would vanish
                    // from our view; the workers dead-letter it themselves (`max_deliver`).
                    max_deliver: -1,
                    max_ack_pending: self.cfg.max_in_flight as i64,
                    filter_subject: match &self.duty {
                        Some(d) => format!("{}.*.{}", self.cfg.subject_prefix, d.partition),
                        None => format!("{}.>", self.cfg.subject_prefix),
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| IngestError::Nats(format!("consumer {}: {e}", self.cfg.consumer)))?;
        info!(
            stream = %self.cfg.stream,
            consumer = %self.cfg.consumer,
            workers = self.cfg.workers,
            max_in_flight = self.cfg.max_in_flight,
            "ingest consuming"
        );
        // Publish before ack: one task acks what the events stream has taken, so a worker
        // never waits for the publisher.
        let (acks_tx, acker) = match &self.duty {
            Some(duty) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(acker(duty.clone(), rx, self.stats.clone()));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            js: js.clone(),
            cfg: self.cfg.clone(),
            tickets: self.tickets.clone(),
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            record_latency: self.record_latency,
            runtime: tokio::runtime::Handle::current(),
            duty: self.duty.clone(),
            acks: acks_tx,
        });
        let workers = self.cfg.workers.max(1);
        let per_worker = (self.cfg.max_in_flight / workers).max(4);
        let mut senders = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers {
            let (tx, rx) = mpsc::channel::<Job>(per_worker);
            senders.push(tx);
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ingest-{n}"))
                    .spawn(move || shared.work(rx))
                    .map_err(|e| IngestError::Nats(format!("cannot start a worker: {e}")))?,
            );
        }
        let batch = self.cfg.max_in_flight.clamp(1, 256);
        let mut messages = pull(&consumer, batch).await?;
        tokio::pin!(shutdown);
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => break,
                next = messages.next() => next,
            };
            let msg = match next {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    // Missed heartbeats during a broker restart land here; the client
                    // reconnects and the same pull stream goes on.
                    warn!(error = %e, "pulling from NATS failed; retrying");
                    continue;
                }
                None => {
                    warn!("the pull stream ended; opening it again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    messages = pull(&consumer, batch).await?;
                    continue;
                }
            };
            self.stats.received.fetch_add(1, Ordering::Relaxed);
            let translated = self.translate(&msg);
            let mut hasher = DefaultHasher::new();
            match &translated {
                Ok(ms) if !ms.is_empty() => ms[0].ticket_id.hash(&mut hasher),
                _ => msg.subject.as_str().hash(&mut hasher),
            }
            let worker = (hasher.finish() % workers as u64) as usize;
            if senders[worker].send(Job { msg, translated }).await.is_err() {
                return Err(IngestError::Nats("an ingest worker stopped".into()));
            }
        }
        info!("ingest stopping: finishing the messages in hand");
        drop(senders);
        tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await
        .map_err(|e| IngestError::Nats(format!("joining the workers: {e}")))?;
        drop(shared);
        if let Some(task) = acker {
            // Returns once every stored message is acked, or given back once fenced.
            let _ = task.await;
        }
        info!(
            stored = self.stats.stored.load(Ordering::Relaxed),
            dead_lettered = self.stats.dead_lettered.load(Ordering::Relaxed),
            "ingest stopped"
        );
        Ok(())
    }

    fn translate(&self, msg: &jetstream::Message) -> Result<Vec<Message>, Unusable> {
        let platform = platform_of_subject(&self.cfg.subject_prefix, msg.subject.as_str())?;
        translate(&platform, &msg.payload)
    }
}

/// The platform a webhook subject names: `<prefix>.<platform>`, or
/// `<prefix>.<platform>.<partition>` (docs/PARTITIONS.md).
pub fn platform_of_subject(prefix: &str, subject: &str) -> Result<Platform, Unusable> {
    let mut tokens = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or("")
        .split('.');
    let platform = tokens.next().and_then(|t| Platform::from_str(t).ok());
    let partition_ok = match (tokens.next(), tokens.next()) {
        (None, _) => true,
        (Some(p), None) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
        (Some(_), Some(_)) => false,
    };
    match platform {
        Some(platform) if partition_ok => Ok(platform),
        _ => Err(Unusable::Malformed {
            detail: format!(
                "subject `{subject}` names no platform (expected {prefix}.<platform> or \
                 {prefix}.<platform>.<partition>)"
            ),
        }),
    }
}

async fn pull(
    consumer: &consumer::PullConsumer,
    batch: usize,
) -> Result<consumer::pull::Stream, IngestError> {
    consumer
        .stream()
        .max_messages_per_batch(batch)
        .messages()
        .await
        .map_err(|e| IngestError::Nats(format!("pull: {e}")))
}

struct Shared {
    js: jetstream::Context,
    cfg: IngestConfig,
    tickets: Arc<Tickets>,
    clock: Arc<dyn Clock>,
    stats: Arc<Stats>,
    record_latency: bool,
    runtime: tokio::runtime::Handle,
    duty: Option<PartitionDuty>,
    /// Stored messages waiting for the events stream (with a `PartitionDuty`).
    acks: Option<mpsc::UnboundedSender<Stored>>,
}

/// A stored message to ack once the events stream holds `last`.
struct Stored {
    last: u64,
    duplicate: bool,
    msg: jetstream::Message,
}

/// Acks each stored message once the partition's events publisher has passed its last
/// position; gives them all back (nak) once the partition is fenced. Runs until the
/// workers are gone and nothing waits.
async fn acker(duty: PartitionDuty, mut rx: mpsc::UnboundedReceiver<Stored>, stats: Arc<Stats>) {
    let mut waiting: std::collections::BTreeMap<(u64, u64), Stored> = Default::default();
    let mut n = 0u64;
    let mut open = true;
    loop {
        if waiting.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(s) => {
                    waiting.insert((s.last, n), s);
                    n += 1;
                }
                None => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(s) => {
                    waiting.insert((s.last, n), s);
                    n += 1;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if duty.fenced.load(Ordering::Acquire) {
            for (_, s) in std::mem::take(&mut waiting) {
                let _ = s.msg.ack_with(AckKind::Nak(None)).await;
            }
            continue;
        }
        let published = (duty.published)();
        let later = waiting.split_off(&(published + 1, 0));
        for (_, s) in std::mem::replace(&mut waiting, later) {
            stats.stored.fetch_add(1, Ordering::Relaxed);
            if s.duplicate {
                stats.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            if let Err(e) = s.msg.ack().await {
                warn!(subject = s.msg.subject.as_str(), error = %e, "acknowledgement not sent");
            }
        }
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Shared {
    /// Takes the jobs waiting for this worker (up to [`BATCH`]), applies them together
    /// (one store request for a run of distinct tickets), then settles each in order.
    fn work(&self, mut rx: mpsc::Receiver<Job>) {
        let limits = self.cfg.limits();
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if self.fenced() {
                for job in &jobs {
                    self.give_back(&job.msg);
                }
                continue;
            }
            let mut msgs = Vec::with_capacity(jobs.len());
            let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(jobs.len());
            let mut bodies = Vec::with_capacity(jobs.len());
            for job in jobs {
                match job.translated.and_then(|ms| self.on_partition(ms)) {
                    Ok(messages) => {
                        bodies.push(messages);
                        outcomes.push(None);
                    }
                    Err(unusable) => outcomes.push(Some(Outcome::Unusable(unusable))),
                }
                msgs.push(job.msg);
            }
            let mut applied = apply_batch(&self.tickets, bodies).into_iter();
            for (msg, outcome) in msgs.into_iter().zip(outcomes) {
                let outcome = match outcome {
                    Some(unusable) => unusable,
                    None => applied
                        .next()
                        .expect("apply_batch answers every body it is given"),
                };
                self.after(msg, outcome, &limits);
            }
        }
    }

    /// Settles one applied message: acked (in a partitioned deployment once its events
    /// are published), retried later, or dead-lettered.
    fn after(&self, msg: jetstream::Message, outcome: Outcome, limits: &Limits) {
        let (delivered, sequence, age) = match msg.info() {
            Ok(info) => {
                // Server time against ours: the same host or NTP-synchronised ones.
                let age = (self.clock.now() - info.published)
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                self.stats.pending.store(info.pending, Ordering::Relaxed);
                let ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                self.stats.last_age_ms.store(ms, Ordering::Relaxed);
                (info.delivered.max(1) as u64, info.stream_sequence, age)
            }
            Err(_) => (1, 0, Duration::ZERO),
        };
        let v = verdict(&outcome, delivered, age, limits);
        if let (
            Some(acks),
            Outcome::Stored {
                applied,
                duplicates,
                last,
            },
        ) = (&self.acks, &outcome)
        {
            // Publish before ack, without holding the worker for the events publisher's
            // round trip: the next message is decided meanwhile.
            let stored = Stored {
                last: *last,
                duplicate: *applied == 0 && *duplicates > 0,
                msg,
            };
            if let Err(mpsc::error::SendError(s)) = acks.send(stored) {
                self.give_back(&s.msg);
            }
            return;
        }
        self.runtime
            .block_on(self.settle(&msg, &outcome, v, delivered, sequence, age));
    }

    fn fenced(&self) -> bool {
        self.duty
            .as_ref()
            .is_some_and(|d| d.fenced.load(Ordering::Acquire))
    }

    /// A message this instance may no longer settle goes back to the broker at once.
    fn give_back(&self, msg: &jetstream::Message) {
        let _ = self
            .runtime
            .block_on(msg.ack_with(AckKind::Nak(Some(Duration::from_millis(100)))));
    }

    /// In a partitioned deployment, a ticket of another partition is not stored here.
    fn on_partition(&self, messages: Vec<Message>) -> Result<Vec<Message>, Unusable> {
        let Some(d) = &self.duty else {
            return Ok(messages);
        };
        match messages
            .iter()
            .map(|m| (m, partition_of(&m.ticket_id, d.count)))
            .find(|(_, p)| *p != d.partition)
        {
            Some((m, p)) => Err(Unusable::Malformed {
                detail: format!(
                    "ticket {} is on partition {p} of {}, not on {} (the subject's): the \
                     gateway computed the partition wrongly (docs/PARTITIONS.md)",
                    m.ticket_id,
                    d.count.get(),
                    d.partition
                ),
            }),
            None => Ok(messages),
        }
    }

    async fn settle(
        &self,
        msg: &jetstream::Message,
        outcome: &Outcome,
        v: Verdict,
        delivered: u64,
        sequence: u64,
        age: Duration,
    ) {
        let subject = msg.subject.as_str();
        let acked = match v {
            Verdict::Ack => {
                if let Outcome::Stored {
                    applied,
                    duplicates,
                    ..
                } = outcome
                {
                    self.stats.stored.fetch_add(1, Ordering::Relaxed);
                    if *applied == 0 && *duplicates > 0 {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    debug!(subject, sequence, applied, duplicates, "stored");
                }
                if self.record_latency {
                    if let Ok(mut l) = self.stats.latencies_us.lock() {
                        l.push(age.as_micros() as u64);
                    }
                }
                msg.ack().await
            }
            Verdict::Retry(delay) => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Outcome::Refused {
                        ticket, rejection, ..
                    } => {
                        debug!(subject, sequence, %ticket, code = rejection.code(), ?delay, "parked")
                    }
                    Outcome::Failed(error) | Outcome::StoreDown(error) => {
                        warn!(subject, sequence, delivered, %error, ?delay, "will retry")
                    }
                    _ => {}
                }
                msg.ack_with(AckKind::Nak(Some(delay))).await
            }
            Verdict::DeadLetter(reason) => {
                let original = Original {
                    subject,
                    sequence,
                    delivered,
                    payload: msg.payload.clone(),
                };
                match deadletter::publish(&self.js, &self.cfg, original, &reason.code, &reason.text)
                    .await
                {
                    Ok(()) => {
                        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        warn!(subject, sequence, code = %reason.code, reason = %reason.text, "dead-lettered");
                        msg.ack().await
                    }
                    Err(e) => {
                        // Not stored as a dead letter: it must come back, not vanish.
                        warn!(subject, sequence, error = %e, "dead letter failed; will retry");
                        msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                            .await
                    }
                }
            }
        };
        if let Err(e) = acked {
            // The message comes back after ack_wait; its events are stored, so the
            // redelivery is a no-op.
            warn!(subject, sequence, error = %e, "acknowledgement not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_subject_names_its_platform_with_or_without_a_partition() {
        let p = "aftersales.webhooks";
        for (subject, platform) in [
            ("aftersales.webhooks.jd", "jd"),
            ("aftersales.webhooks.tmall.0", "tmall"),
            ("aftersales.webhooks.myshop.1023", "myshop"),
        ] {
            assert_eq!(
                platform_of_subject(p, subject).unwrap().to_string(),
                platform
            );
        }
        for bad in [
            "aftersales.webhooks",
            "aftersales.webhooks.",
            "aftersales.webhooks.JD",
            "aftersales.webhooks.jd.",
            "aftersales.webhooks.jd.x",
            "aftersales.webhooks.jd.1.2",
            "aftersales.webhooksjd",
            "other.jd",
        ] {
            assert!(
                matches!(platform_of_subject(p, bad), Err(Unusable::Malformed { .. })),
                "{bad}"
            );
        }
    }
}
