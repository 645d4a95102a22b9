//! Rebuilding a partition's store from the events stream (docs/PARTITIONS.md, "Takeover").
//!
//! In a partitioned deployment every partition has a store of its own, and its records
//! reach `AFTERSALES_EVENTS` in log order on `<prefix>.*.<partition>`. The messages carry
//! every field of the record (headers) and its payload, so the store an instance takes
//! over is brought up to date by importing them ([`Store::import`]): same positions, same
//! timestamps, the same chain. A local store that holds a record the stream does not (the
//! unpublished tail of an earlier owner that lost the partition meanwhile) diverges, and
//! the caller starts from an empty store instead.

use std::sync::Arc;
use std::time::Duration;

use aftersales_partition::Partition;
use aftersales_store::{RecordedEvent, Store, StoreError, StreamId};
use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use crate::EventsConfig;

/// Records handed to one `import` call.
const IMPORT_BATCH: usize = 512;

/// Why a partition could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("reading {stream} from NATS failed: {reason}")]
    Nats { stream: String, reason: String },
    #[error(
        "message {sequence} of {stream} is not a committed event ({reason}); it was not imported"
    )]
    BadMessage {
        stream: String,
        sequence: u64,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// Messages of the partition read from the stream.
    pub read: u64,
    /// Records written to the store (the rest it held already).
    pub imported: u64,
    /// Position of the last record the stream holds for the partition (0 if none): what
    /// the partition's publisher may take as already published.
    pub published_head: u64,
}

/// Brings `store` up to date with what the events stream holds for `partition`.
/// `progress` is called after every imported batch with the messages read so far.
pub async fn rebuild(
    js: &jetstream::Context,
    cfg: &EventsConfig,
    partition: Partition,
    store: &Arc<Store>,
    mut progress: impl FnMut(u64),
) -> Result<Rebuilt, RebuildError> {
    let nats = |e: &dyn std::fmt::Display| RebuildError::Nats {
        stream: cfg.stream.clone(),
        reason: e.to_string(),
    };
    let mut done = Rebuilt {
        read: 0,
        imported: 0,
        published_head: 0,
    };
    let stream = match js.get_stream(&cfg.stream).await {
        Ok(stream) => stream,
        // No stream yet: nothing was ever published, so there is nothing to rebuild.
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(done)
        }
        Err(e) => return Err(nats(&e)),
    };
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: format!("{}.*.{}", cfg.subject_prefix, partition.0),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| nats(&e))?;
    let name = consumer.cached_info().name.clone();
    if consumer.cached_info().num_pending > 0 {
        let mut messages = consumer.messages().await.map_err(|e| nats(&e))?;
        // Records below the local head are not imported: the store's chain ties them to
        // the one at its head, whose hash `import` compares. A stream that ends below the
        // local head (this store's unpublished tail is longer than what another owner
        // published since) is compared at its last record instead: without it, a tail
        // the other owner replaced would be kept and published after the other's records.
        let local_head = store.head_position();
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        loop {
            let message = messages
                .next()
                .await
                .ok_or_else(|| nats(&"the consumer ended"))?
                .map_err(|e| nats(&e))?;
            let meta = message.info().map_err(|e| nats(&e))?;
            let (sequence, pending) = (meta.stream_sequence, meta.pending);
            let record = record_of(&message).map_err(|reason| RebuildError::BadMessage {
                stream: cfg.stream.clone(),
                sequence,
                reason,
            })?;
            done.read += 1;
            done.published_head = record.position;
            // The last one below the head is compared only: nothing is written for it.
            if record.position >= local_head || pending == 0 {
                batch.push(record);
            }
            if batch.len() >= IMPORT_BATCH || (pending == 0 && !batch.is_empty()) {
                done.imported += import(store, std::mem::take(&mut batch)).await?;
                progress(done.read);
            }
            if pending == 0 {
                break;
            }
        }
    }
    // The consumer would go away by itself after `inactive_threshold`; do not wait.
    let _ = stream.delete_consumer(&name).await;
    Ok(done)
}

async fn import(store: &Arc<Store>, batch: Vec<RecordedEvent>) -> Result<u64, StoreError> {
    let store = Arc::clone(store);
    let head = store.head_position();
    let last = batch.last().map_or(0, |r| r.position);
    tokio::task::spawn_blocking(move || store.import(batch))
        .await
        .map_err(|_| StoreError::Closed)??;
    Ok(last.saturating_sub(head))
}

/// The record a message of the events stream carries (see the crate docs for the headers).
pub fn record_of(message: &jetstream::Message) -> Result<RecordedEvent, String> {
    let headers = message.headers.as_ref().ok_or("it has no headers")?;
    record_from(headers, &message.payload)
}

/// The record a stored message of the events stream carries (a direct get by sequence).
pub fn record_from(
    headers: &async_nats::HeaderMap,
    payload: &[u8],
) -> Result<RecordedEvent, String> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.as_str())
            .ok_or_else(|| format!("the header {name} is missing"))
    };
    let number = |name: &str| {
        header(name)?
            .parse::<u64>()
            .map_err(|_| format!("the header {name} is not a number"))
    };
    let id = header("Nats-Msg-Id")?
        .parse()
        .map_err(|_| "the header Nats-Msg-Id is not an event id".to_string())?;
    let stream = StreamId::new(header("Aftersales-Ticket")?)
        .map_err(|e| format!("the header Aftersales-Ticket: {e}"))?;
    let recorded_at = DateTime::parse_from_rfc3339(header("Aftersales-Recorded-At")?)
        .map_err(|_| "the header Aftersales-Recorded-At is not RFC 3339".to_string())?
        .with_timezone(&Utc);
    let hash = parse_hash(header("Aftersales-Hash")?)
        .ok_or("the header Aftersales-Hash is not 64 hex digits")?;
    Ok(RecordedEvent {
        id,
        stream,
        version: number("Aftersales-Version")?,
        position: number("Aftersales-Position")?,
        event_type: header("Aftersales-Event")?.to_owned(),
        recorded_at,
        payload: payload.to_vec(),
        hash,
    })
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Follows the whole events stream (every partition) from stream sequence `from`, handing
/// `on_batch` the records in stream order, numbered by their stream sequence, until `stop`
/// completes. A broker restart or a lost consumer is retried from the next sequence
/// wanted, so nothing is skipped or handed twice. A message that is not a committed event
/// is logged and skipped. For the read models of a partitioned instance
/// (docs/PARTITIONS.md, "Reads").
pub async fn follow(
    js: &jetstream::Context,
    cfg: &EventsConfig,
    mut from: u64,
    mut on_batch: impl FnMut(Vec<(u64, RecordedEvent)>),
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let pause = Duration::from_millis(500);
    let mut failures = 0u32;
    loop {
        let opened = match follow_consumer(js, cfg, from).await {
            Ok(c) => c.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut messages = match opened {
            Ok(m) => m,
            Err(e) => {
                // No stream yet (nothing published so far) or no broker: look again, and
                // say so once it lasts (every 10 s).
                if failures % 20 == 19 {
                    tracing::warn!(stream = %cfg.stream, error = %e, "cannot follow the events stream yet; retrying");
                }
                failures += 1;
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        failures = 0;
        loop {
            let next = tokio::select! {
                _ = &mut stop => return,
                next = messages.next() => next,
            };
            let mut batch = Vec::new();
            let mut broken = false;
            let mut take = |m: jetstream::Message, batch: &mut Vec<(u64, RecordedEvent)>| {
                let Ok(info) = m.info() else { return };
                let sequence = info.stream_sequence;
                from = sequence + 1;
                match record_of(&m) {
                    Ok(record) => batch.push((sequence, record)),
                    Err(reason) => {
                        tracing::error!(stream = %cfg.stream, sequence, %reason, "not a committed event; skipped")
                    }
                }
            };
            match next {
                Some(Ok(m)) => take(m, &mut batch),
                _ => broken = true,
            }
            // Whatever else is ready goes in the same batch.
            while !broken && batch.len() < IMPORT_BATCH {
                match tokio::time::timeout(Duration::from_millis(1), messages.next()).await {
                    Ok(Some(Ok(m))) => take(m, &mut batch),
                    Ok(_) => broken = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                on_batch(batch);
            }
            if broken {
                // Missed heartbeats (a broker restart) or an ended pull: a new consumer
                // from the next sequence wanted.
                tracing::info!(stream = %cfg.stream, from, "following the events stream again");
                break;
            }
        }
    }
}

async fn follow_consumer(
    js: &jetstream::Context,
    cfg: &EventsConfig,
    from: u64,
) -> Result<consumer::PullConsumer, String> {
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .create_consumer(consumer::pull::Config {
            filter_subject: format!("{}.>", cfg.subject_prefix),
            deliver_policy: if from <= 1 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                }
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}
