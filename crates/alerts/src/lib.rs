//! Alerts for the people who must act: every deadline warning (`deadline_warned`) and
//! expiry (`deadline_expired`) in the event log is published to NATS JetStream on
//! `aftersales.alerts.<platform>` (stream `AFTERSALES_ALERTS`, created if missing), in log
//! order, from a cursor kept in a file beside the store: a selection of the outbox
//! (`crates/outbox`).
//!
//! Once each: an alert's `Nats-Msg-Id` is its event's id, and the cursor moves only after
//! the broker acknowledged, so a crash between the ack and the cursor write republishes an
//! alert the broker drops as a duplicate (within the stream's duplicate window, 1 hour by
//! default). A store without a cursor file starts at its head: alerts are for what happens
//! from then on; the history stays in the log and in `GET /v1/alerts`.
//!
//! This crate must never publish anything that is not in the log, skip an alert, move the
//! cursor before the broker stored the alert, or publish notes or personal data (an alert
//! names the ticket, the platform, the deadline and its times only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aftersales_outbox::{Outbox, OutboxConfig, Outgoing, Select, Start};
use aftersales_schema::decode_stored;
use aftersales_store::{RecordedEvent, Store};
use aftersales_views::{alert_of, Alert};
use serde::{Deserialize, Serialize};

pub use aftersales_outbox::{
    read_cursor, write_cursor, OutboxError as AlertsError, OutboxStats as PublisherStats,
    Publishers,
};

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherConfig {
    /// The stream alerts are kept in (created if missing).
    pub stream: String,
    /// Subjects are `<subject_prefix>.<platform>`.
    pub subject_prefix: String,
    /// How long the broker drops a republished alert as a duplicate.
    pub duplicate_window_secs: u64,
    /// How often the log is looked at for new alerts.
    pub poll_millis: u64,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            stream: "AFTERSALES_ALERTS".into(),
            subject_prefix: "aftersales.alerts".into(),
            duplicate_window_secs: 3600,
            poll_millis: 200,
        }
    }
}

/// The alert as published: the alert and a one-line text for people.
#[derive(Debug, Serialize)]
struct Message<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    text: String,
}

/// The one-line text of an alert (no personal data: ids, kinds and times only).
pub fn text(alert: &Alert) -> String {
    match alert.kind {
        aftersales_views::AlertKind::Warning => format!(
            "{}: the {} deadline ({}) is due at {}",
            alert.ticket, alert.deadline, alert.rule, alert.due_at
        ),
        aftersales_views::AlertKind::Expired => format!(
            "{}: the {} deadline ({}) passed at {}",
            alert.ticket, alert.deadline, alert.rule, alert.due_at
        ),
    }
}

/// The cursor file of a store's alerts.
pub fn cursor_path(data: &Path) -> PathBuf {
    data.join("alerts.cursor")
}

/// The alerts' selection of the log: warnings and expiries.
struct Alerts;

impl Select for Alerts {
    fn select(&self, record: &RecordedEvent) -> Option<Outgoing> {
        // `verify` reports unreadable records; nothing readable means no alert.
        let envelope = decode_stored(&record.payload, record.recorded_at).ok()?;
        let alert = alert_of(record.position, &envelope)?;
        let body = serde_json::to_vec(&Message {
            text: text(&alert),
            alert: &alert,
        })
        .expect("alerts serialize");
        Some(Outgoing {
            subject: alert.platform.to_string(),
            msg_id: alert.id.to_string(),
            headers: vec![("Aftersales-Alert-Kind", alert.kind.as_str().to_owned())],
            body: body.into(),
            note: Some(format!(
                "alert published: {} {} {}",
                alert.ticket,
                alert.kind.as_str(),
                alert.deadline
            )),
        })
    }
}

/// Publishes the log's alerts; see the crate docs. A store without a cursor starts at
/// its head.
pub struct Publisher(Outbox<Alerts>);

impl Publisher {
    /// `publishers`: as for the events stream, one instance's or a cluster's.
    pub fn new(
        store: Arc<Store>,
        cursor: PathBuf,
        cfg: PublisherConfig,
        publishers: Publishers,
    ) -> Publisher {
        let cfg = OutboxConfig {
            stream: cfg.stream,
            subject_prefix: cfg.subject_prefix,
            duplicate_window_secs: cfg.duplicate_window_secs,
            poll_millis: cfg.poll_millis,
            start: Start::Head,
            publishers,
        };
        Publisher(Outbox::new(store, cursor, cfg, Alerts))
    }

    pub fn stats(&self) -> Arc<PublisherStats> {
        self.0.stats()
    }

    /// Runs until `stop` completes; broker failures are retried for ever.
    pub async fn run(
        self,
        client: async_nats::Client,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AlertsError> {
        self.0.run(client, stop).await
    }
}
