//! Alerts for the people who must act: every deadline warning (`deadline_warned`) and
//! expiry (`deadline_expired`) in the event log is published to NATS JetStream on
//! `aftersales.alerts.<platform>` (stream `AFTERSALES_ALERTS`, created if missing), in log
//! order, from a cursor kept in a file beside the store: an outbox over the log.
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

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aftersales_schema::decode_stored;
use aftersales_store::{Position, RecordedEvent, Store};
use aftersales_views::{alert_of, Alert};
use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};

/// How many log records one read takes.
const PAGE: usize = 256;

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

#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("the alerts' cursor {}: {source}", path.display())]
    Cursor {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the alerts' cursor {} holds {text:?}, not a log position", path.display())]
    BadCursor { path: PathBuf, text: String },
    #[error("reading the log for alerts: {0}")]
    Store(#[from] aftersales_store::StoreError),
}

/// What the publisher did, for `/metrics`.
#[derive(Debug, Default)]
pub struct PublisherStats {
    pub published: AtomicU64,
    pub failures: AtomicU64,
    /// The last log position handled (published or not an alert).
    pub cursor: AtomicU64,
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

/// Reads the cursor; `None` if there is none yet.
pub fn read_cursor(path: &Path) -> Result<Option<Position>, AlertsError> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| AlertsError::BadCursor {
                path: path.to_owned(),
                text: text.chars().take(40).collect(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AlertsError::Cursor {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes the cursor atomically (temporary file, fsync, rename).
pub fn write_cursor(path: &Path, position: Position) -> Result<(), AlertsError> {
    let io = |source| AlertsError::Cursor {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, format!("{position}\n")).map_err(io)?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Publishes the log's alerts; see the crate docs.
pub struct Publisher {
    store: Arc<Store>,
    cursor: PathBuf,
    cfg: PublisherConfig,
    stats: Arc<PublisherStats>,
}

impl Publisher {
    pub fn new(store: Arc<Store>, cursor: PathBuf, cfg: PublisherConfig) -> Publisher {
        Publisher {
            store,
            cursor,
            cfg,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<PublisherStats> {
        self.stats.clone()
    }

    /// Runs until `stop` completes. Broker failures are retried (with a pause) for ever:
    /// an alert is never skipped; the cursor file failing to write stops the publisher.
    pub async fn run(
        self,
        client: async_nats::Client,
        stop: impl Future<Output = ()>,
    ) -> Result<(), AlertsError> {
        tokio::pin!(stop);
        let js = jetstream::new(client);
        let mut position = match read_cursor(&self.cursor)? {
            Some(p) => p,
            None => {
                let head = self.store.head_position();
                write_cursor(&self.cursor, head)?;
                tracing::info!(position = head, "alerts start at the log's head");
                head
            }
        };
        self.stats.cursor.store(position, Ordering::Relaxed);
        let poll = Duration::from_millis(self.cfg.poll_millis.max(1));
        let mut ready = false;
        loop {
            if !ready {
                ready = self.ensure_stream(&js).await;
            }
            let page = if ready {
                let store = self.store.clone();
                let from = position + 1;
                tokio::task::spawn_blocking(move || store.read_all(from, PAGE))
                    .await
                    .expect("reading the log does not panic")?
            } else {
                Vec::new()
            };
            if page.is_empty() {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(poll) => continue,
                }
            }
            let before = position;
            // `stop` is done once it has completed: polling it again would panic.
            let mut stopping = false;
            for record in &page {
                let published = tokio::select! {
                    _ = &mut stop => None,
                    ok = self.publish(&js, record) => Some(ok),
                };
                match published {
                    None => {
                        stopping = true;
                        break;
                    }
                    Some(false) => {
                        // Not stored by the broker: keep the cursor here and try again.
                        ready = false;
                        break;
                    }
                    Some(true) => position = record.position,
                }
            }
            if position != before {
                // A cursor left behind (a full disk) only re-sends alerts the broker drops
                // as duplicates: keep publishing and write it again next time.
                match write_cursor(&self.cursor, position) {
                    Ok(()) => self.stats.cursor.store(position, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "the alerts' cursor was not saved"),
                }
            }
            if stopping {
                return Ok(());
            }
            if !ready {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(poll * 5) => {}
                }
            }
        }
    }

    async fn ensure_stream(&self, js: &jetstream::Context) -> bool {
        let config = stream::Config {
            name: self.cfg.stream.clone(),
            subjects: vec![format!("{}.>", self.cfg.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(self.cfg.duplicate_window_secs),
            ..Default::default()
        };
        match js.get_or_create_stream(config).await {
            Ok(_) => true,
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stream = %self.cfg.stream, error = %e, "the alerts stream is not available yet");
                false
            }
        }
    }

    /// Publishes the record's alert, if it is one, and waits for the broker's ack.
    /// `true`: done with this record (published, or nothing to publish).
    async fn publish(&self, js: &jetstream::Context, record: &RecordedEvent) -> bool {
        let envelope = match decode_stored(&record.payload, record.recorded_at) {
            Ok(e) => e,
            // `verify` reports unreadable records; nothing readable means no alert.
            Err(_) => return true,
        };
        let Some(alert) = alert_of(record.position, &envelope) else {
            return true;
        };
        let body = serde_json::to_vec(&Message {
            text: text(&alert),
            alert: &alert,
        })
        .expect("alerts serialize");
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", alert.id.to_string().as_str());
        headers.insert("Aftersales-Alert-Kind", alert.kind.as_str());
        let subject = format!("{}.{}", self.cfg.subject_prefix, alert.platform);
        let result = async {
            js.publish_with_headers(subject, headers, bytes::Bytes::from(body))
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(_) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                tracing::info!(ticket = %alert.ticket, kind = alert.kind.as_str(), deadline = %alert.deadline, "alert published");
                true
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(ticket = %alert.ticket, error = %e, "an alert was not stored by the broker; retrying");
                false
            }
        }
    }
}
