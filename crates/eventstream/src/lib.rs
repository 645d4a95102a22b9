//! The committed events on NATS: every record of the event log is published once, in log
//! order, to the stream `AFTERSALES_EVENTS` on `aftersales.events.<platform>.<partition>`
//! (docs/PARTITIONS.md), so dashboards and other services read the log without touching
//! sled, and a partition's store can be rebuilt from it. A selection of the outbox
//! (`crates/outbox`): a store without a cursor starts at its first record.
//!
//! A message is the stored payload unchanged (the protobuf `EventEnvelope` of
//! `proto/aftersales/ticket/v1/events.proto`) with headers: `Nats-Msg-Id` (the event id),
//! `Aftersales-Position`, `Aftersales-Ticket`, `Aftersales-Version` (in the ticket's
//! stream), `Aftersales-Event` (its type), `Aftersales-Recorded-At` (RFC 3339) and
//! `Aftersales-Hash` (the record's hash-chain link, hex).
//!
//! This crate must never publish anything that is not in the log, change a payload, or
//! skip a record (one it cannot place goes to partition 0, it is not dropped).

mod rebuild;

pub use rebuild::{follow, rebuild, record_from, record_of, RebuildError, Rebuilt};

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use aftersales_outbox::Publishers;
use aftersales_outbox::{Outbox, OutboxConfig, OutboxError, OutboxStats, Outgoing, Select, Start};
use aftersales_partition::{partition_of, Partition, PartitionCount};
use aftersales_store::{RecordedEvent, Store};
use aftersales_ticket::TicketId;
use serde::Deserialize;

/// `[events]`: where committed events go (with NATS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Publish at all.
    pub publish: bool,
    pub stream: String,
    /// Subjects are `<subject_prefix>.<platform>.<partition>`.
    pub subject_prefix: String,
    /// The deployment's partition count (docs/PARTITIONS.md); fixed for its life.
    pub partitions: u64,
    pub duplicate_window_secs: u64,
    pub poll_millis: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            publish: true,
            stream: "AFTERSALES_EVENTS".into(),
            subject_prefix: "aftersales.events".into(),
            partitions: 64,
            duplicate_window_secs: 3600,
            poll_millis: 100,
        }
    }
}

/// The cursor file of a store's events stream.
pub fn cursor_path(data: &Path) -> PathBuf {
    data.join("events.cursor")
}

/// Where a record's event goes: `(<platform>.<partition>, partition)`.
pub fn subject_of(record: &RecordedEvent, count: PartitionCount) -> String {
    let stream = record.stream.as_str();
    match TicketId::parse(stream) {
        Ok(ticket) => {
            let platform = stream.split_once(':').map_or(stream, |(p, _)| p);
            format!("{platform}.{}", partition_of(&ticket, count))
        }
        // Not a ticket's stream (nothing writes one today): kept, on partition 0.
        Err(_) => format!("other.{}", Partition(0)),
    }
}

struct Events {
    partitions: PartitionCount,
}

impl Select for Events {
    fn select(&self, record: &RecordedEvent) -> Option<Outgoing> {
        let hash: String = record.hash.iter().map(|b| format!("{b:02x}")).collect();
        Some(Outgoing {
            subject: subject_of(record, self.partitions),
            msg_id: record.id.to_string(),
            headers: vec![
                ("Aftersales-Position", record.position.to_string()),
                ("Aftersales-Ticket", record.stream.as_str().to_owned()),
                ("Aftersales-Version", record.version.to_string()),
                ("Aftersales-Event", record.event_type.clone()),
                ("Aftersales-Recorded-At", record.recorded_at.to_rfc3339()),
                ("Aftersales-Hash", hash),
            ],
            body: record.payload.clone().into(),
            note: None,
        })
    }
}

/// Publishes every committed event; see the crate docs.
pub struct EventPublisher(Outbox<Events>);

impl EventPublisher {
    /// Fails if the config's partition count is out of range. `publishers`: whether
    /// this store's publisher is the stream's only one (one instance) or one of many (a
    /// cluster's partitions).
    pub fn new(
        store: Arc<Store>,
        cursor: PathBuf,
        cfg: &EventsConfig,
        publishers: Publishers,
    ) -> Result<EventPublisher, aftersales_partition::PartitionError> {
        let partitions = PartitionCount::new(cfg.partitions)?;
        let outbox = OutboxConfig {
            stream: cfg.stream.clone(),
            subject_prefix: cfg.subject_prefix.clone(),
            duplicate_window_secs: cfg.duplicate_window_secs,
            poll_millis: cfg.poll_millis,
            start: Start::Beginning,
            publishers,
        };
        Ok(EventPublisher(Outbox::new(
            store,
            cursor,
            outbox,
            Events { partitions },
        )))
    }

    pub fn stats(&self) -> Arc<OutboxStats> {
        self.0.stats()
    }

    /// Runs until `stop` completes; broker failures are retried for ever.
    pub async fn run(
        self,
        client: async_nats::Client,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), OutboxError> {
        self.0.run(client, stop).await
    }
}
