//! An outbox over the event log: what a [`Select`] picks from each record is published to
//! a NATS JetStream stream (created if missing), in log order, from a cursor kept in a file
//! beside the store. The alerts (`AFTERSALES_ALERTS`) and the committed events
//! (`AFTERSALES_EVENTS`) are two selections of it.
//!
//! Once each: a message's `Nats-Msg-Id` is given by the selection (an event id), and the
//! cursor moves only past records whose messages the broker acknowledged, in order. A
//! crash between the ack and the cursor write, or a failure in the middle of a page,
//! republishes messages the broker drops as duplicates (within the stream's duplicate
//! window).
//!
//! In order, across broker restarts too: a publish lost in flight while the client still
//! holds the next ones must not be overtaken by them (the client sends what it holds once
//! it has reconnected). An outbox that is its stream's only publisher ([`Publishers::One`])
//! pipelines a page and has each message name the stream sequence it must follow
//! (`Nats-Expected-Last-Sequence`), so the broker refuses the ones behind a lost message;
//! after any failure it publishes one message at a time until one is stored anew. Where
//! several publish to one stream ([`Publishers::Many`], a cluster's partitions) no
//! sequence can be foretold, so one message is in flight at a time.
//!
//! This crate must never publish anything that is not in the log, skip a record, or move
//! the cursor past a message the broker has not stored.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aftersales_store::{Position, RecordedEvent, Store};
use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

/// How many log records one read takes, and so how many publishes are in flight at most.
const PAGE: usize = 256;
/// The cursor file is written at most this often (and at every stop): a cursor behind by
/// less only republishes messages the broker drops as duplicates, and an fsync per page
/// cost more than the publishing under load.
const CURSOR_EVERY: Duration = Duration::from_millis(200);

/// Where and how an outbox publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The stream (created if missing), and the subjects it holds (`<prefix>.>`).
    pub stream: String,
    pub subject_prefix: String,
    /// How long the broker drops a republished message as a duplicate.
    pub duplicate_window_secs: u64,
    /// How often the log is looked at when there is nothing new.
    pub poll_millis: u64,
    /// Where an outbox without a cursor file starts.
    pub start: Start,
    /// Who publishes to the stream, which decides how order is kept (crate docs).
    pub publishers: Publishers,
}

/// Who publishes to an outbox's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publishers {
    /// This outbox alone: pages are pipelined, each message naming the stream sequence
    /// it must follow.
    One,
    /// Several outboxes (a cluster's partitions): one message in flight at a time.
    Many,
}

/// Where an outbox without a cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the log's head: only what happens from now on (alerts).
    Head,
    /// At the first record: the whole log (the events stream).
    Beginning,
}

/// One message to publish for a record.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The subject's tail after the prefix, e.g. `jd` or `jd.7`.
    pub subject: String,
    /// The broker drops a second message with the same id.
    pub msg_id: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// Logged at info once the broker stored it (ids, kinds and times only: never
    /// personal data); `None` logs at debug.
    pub note: Option<String>,
}

/// Picks what a record publishes: nothing, or one message.
pub trait Select: Send + Sync + 'static {
    fn select(&self, record: &RecordedEvent) -> Option<Outgoing>;
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox cursor {}: {source}", path.display())]
    Cursor {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the outbox cursor {} holds {text:?}, not a log position", path.display())]
    BadCursor { path: PathBuf, text: String },
    #[error("reading the log for the outbox: {0}")]
    Store(#[from] aftersales_store::StoreError),
}

/// What an outbox did, for `/metrics`.
#[derive(Debug, Default)]
pub struct OutboxStats {
    pub published: AtomicU64,
    pub failures: AtomicU64,
    /// The last log position handled (published, or nothing to publish); the cursor file
    /// lags it by up to `CURSOR_EVERY`.
    pub cursor: AtomicU64,
}

/// Reads a cursor; `None` if there is none yet.
pub fn read_cursor(path: &Path) -> Result<Option<Position>, OutboxError> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| OutboxError::BadCursor {
                path: path.to_owned(),
                text: text.chars().take(40).collect(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(OutboxError::Cursor {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a cursor atomically (temporary file, fsync, rename).
pub fn write_cursor(path: &Path, position: Position) -> Result<(), OutboxError> {
    let io = |source| OutboxError::Cursor {
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

/// Publishes a selection of the log; see the crate docs.
pub struct Outbox<S> {
    store: Arc<Store>,
    cursor: PathBuf,
    cfg: OutboxConfig,
    select: S,
    stats: Arc<OutboxStats>,
}

impl<S: Select> Outbox<S> {
    pub fn new(store: Arc<Store>, cursor: PathBuf, cfg: OutboxConfig, select: S) -> Self {
        Outbox {
            store,
            cursor,
            cfg,
            select,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<OutboxStats> {
        self.stats.clone()
    }

    /// Runs until `stop` completes. Broker failures are retried (with a pause) for ever: a
    /// record is never skipped. A cursor that cannot be saved (a full disk) is logged and
    /// written again next time: it only means republishing what the broker drops.
    pub async fn run(
        self,
        client: async_nats::Client,
        stop: impl Future<Output = ()>,
    ) -> Result<(), OutboxError> {
        tokio::pin!(stop);
        let js = jetstream::new(client);
        let stream = self.cfg.stream.as_str();
        let mut position = match read_cursor(&self.cursor)? {
            Some(p) => p,
            None => {
                let start = match self.cfg.start {
                    Start::Head => self.store.head_position(),
                    Start::Beginning => 0,
                };
                write_cursor(&self.cursor, start)?;
                tracing::info!(stream, position = start, "outbox starts");
                start
            }
        };
        self.stats.cursor.store(position, Ordering::Release);
        let poll = Duration::from_millis(self.cfg.poll_millis.max(1));
        let mut ready = false;
        let mut order = Order::default();
        let mut saved = position;
        let mut saved_at = std::time::Instant::now();
        let save = |position: Position, saved: &mut Position| {
            if position == *saved {
                return;
            }
            match write_cursor(&self.cursor, position) {
                Ok(()) => *saved = position,
                Err(e) => tracing::warn!(stream, error = %e, "the outbox cursor was not saved"),
            }
        };
        loop {
            if !ready {
                // After a failure the stream's last sequence is read again: a message
                // whose ack was lost may have been stored.
                order = match self.ensure_stream(&js).await {
                    Some(last) => Order::from_broker(last),
                    None => order,
                };
                ready = order.known;
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
                save(position, &mut saved);
                saved_at = std::time::Instant::now();
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(poll) => continue,
                }
            }
            // `stop` is done once it has completed: it must not be polled again.
            let (done, stopping) = tokio::select! {
                _ = &mut stop => (None, true),
                done = self.publish_page(&js, &page, &mut order) => (Some(done), false),
            };
            if let Some((handled, complete)) = done {
                if handled > position {
                    position = handled;
                    // The broker has everything up to here: what waits for it may go on.
                    self.stats.cursor.store(position, Ordering::Release);
                    if saved_at.elapsed() >= CURSOR_EVERY {
                        save(position, &mut saved);
                        saved_at = std::time::Instant::now();
                    }
                }
                ready = complete;
                order.known &= complete;
            }
            if stopping {
                save(position, &mut saved);
                return Ok(());
            }
            if !ready {
                // The broker refused or is gone: pause before trying the same records again.
                tokio::select! {
                    _ = &mut stop => {
                        save(position, &mut saved);
                        return Ok(());
                    }
                    _ = tokio::time::sleep(poll * 5) => {}
                }
            }
        }
    }

    /// Creates the stream if missing; its last sequence, or `None` if it is not there.
    async fn ensure_stream(&self, js: &jetstream::Context) -> Option<u64> {
        let config = stream::Config {
            name: self.cfg.stream.clone(),
            subjects: vec![format!("{}.>", self.cfg.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(self.cfg.duplicate_window_secs),
            ..Default::default()
        };
        let failed = |e: &dyn std::fmt::Display| {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream = %self.cfg.stream, error = %e, "the outbox stream is not available yet");
            None
        };
        match js.get_or_create_stream(config).await {
            // `get_or_create` may answer from a create, with no fresh state: ask.
            Ok(stream) => match stream.get_info().await {
                Ok(info) => Some(info.state.last_sequence),
                Err(e) => failed(&e),
            },
            Err(e) => failed(&e),
        }
    }

    /// Publishes a page (pipelined where [`Order`] allows) and awaits the acks in order.
    /// Returns the last position handled in order and whether the whole page was.
    async fn publish_page(
        &self,
        js: &jetstream::Context,
        page: &[RecordedEvent],
        order: &mut Order,
    ) -> (Position, bool) {
        let stream = self.cfg.stream.as_str();
        let mut sent = Vec::with_capacity(page.len());
        let mut handled = page[0].position - 1;
        for record in page {
            let Some(out) = self.select.select(record) else {
                sent.push((record.position, None));
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", out.msg_id.as_str());
            for (name, value) in &out.headers {
                headers.insert(*name, value.as_str());
            }
            let one_at_a_time = self.cfg.publishers == Publishers::Many || order.careful;
            if self.cfg.publishers == Publishers::One {
                // The broker ignores 0, which is right: an empty stream has nothing to
                // be overtaken.
                headers.insert(
                    "Nats-Expected-Last-Sequence",
                    order.next_expected().to_string().as_str(),
                );
            }
            let subject = format!("{}.{}", self.cfg.subject_prefix, out.subject);
            match js.publish_with_headers(subject, headers, out.body).await {
                Ok(ack) => sent.push((record.position, Some((ack, out.note)))),
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(stream, position = record.position, error = %e, "publishing failed; retrying");
                    self.settle(&mut sent, &mut handled, order).await;
                    return (handled, false);
                }
            }
            if one_at_a_time && !self.settle(&mut sent, &mut handled, order).await {
                return (handled, false);
            }
        }
        let complete = self.settle(&mut sent, &mut handled, order).await;
        (handled, complete)
    }

    /// Awaits the acks sent so far, in order, moving `handled` past each record stored.
    /// False at the first that failed (the rest are left: they are published again).
    async fn settle(
        &self,
        sent: &mut Vec<Sent>,
        handled: &mut Position,
        order: &mut Order,
    ) -> bool {
        let stream = self.cfg.stream.as_str();
        for (position, ack) in sent.drain(..) {
            if let Some((ack, note)) = ack {
                match ack.await {
                    Ok(ack) => order.stored(ack.sequence, ack.duplicate),
                    Err(e) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence {
                            // Behind a message that was lost, or another publisher wrote
                            // to the stream: both are taken up again from the cursor.
                            tracing::warn!(stream, position, "the broker refused a message out of order; publishing again from the last one stored");
                        } else {
                            tracing::warn!(stream, position, error = %e, "the broker did not store a message; retrying");
                        }
                        order.known = false;
                        return false;
                    }
                }
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                match note {
                    Some(note) => tracing::info!(stream, position, "{note}"),
                    None => tracing::debug!(stream, position, "published"),
                }
            }
            *handled = position;
        }
        true
    }
}

/// A record handed to the broker: its position, and its ack to await unless its record
/// published nothing.
type Sent = (
    Position,
    Option<(jetstream::context::PublishAckFuture, Option<String>)>,
);

/// What an outbox knows of its stream's sequence ([`Publishers::One`]).
#[derive(Debug, Default, Clone, Copy)]
struct Order {
    /// The stream's last sequence as of the messages acked so far.
    last: u64,
    /// Messages published since `last` whose acks are not in yet.
    in_flight: u64,
    /// One at a time: after a failure and after a duplicate, whose ack does not move
    /// the stream, so the next sequence cannot be foretold.
    careful: bool,
    /// `last` was read from the broker and nothing failed since.
    known: bool,
}

impl Order {
    fn from_broker(last: u64) -> Order {
        Order {
            last,
            in_flight: 0,
            careful: true,
            known: true,
        }
    }

    /// The sequence the next message must follow, counting it as in flight.
    fn next_expected(&mut self) -> u64 {
        let expected = self.last + self.in_flight;
        self.in_flight += 1;
        expected
    }

    /// An ack in order: a message stored anew moves the stream on and ends the careful
    /// steps; a duplicate leaves the stream where it was.
    fn stored(&mut self, sequence: u64, duplicate: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if duplicate {
            self.careful = true;
        } else {
            self.last = sequence;
            self.careful = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Order;

    #[test]
    fn a_pipelined_page_foretells_one_sequence_each_and_a_duplicate_makes_it_careful() {
        let mut order = Order::from_broker(7);
        assert!(
            order.careful,
            "the first message after reading the stream goes alone"
        );
        assert_eq!(order.next_expected(), 7);
        order.stored(8, false);
        assert!(!order.careful);
        // Pipelined: each message follows the one before it.
        assert_eq!(
            [
                order.next_expected(),
                order.next_expected(),
                order.next_expected()
            ],
            [8, 9, 10]
        );
        order.stored(9, false);
        // A duplicate did not move the stream: what follows cannot be foretold.
        order.stored(5, true);
        assert!(order.careful);
        assert_eq!(order.last, 9);
        order.stored(10, false);
        assert_eq!(order.next_expected(), 10);
    }
}
