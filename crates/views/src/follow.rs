//! The shell around the model: feeds it from the store (catch-up, then a subscription),
//! restores a checkpointed ticket's running state from its stream, and keeps the
//! checkpoint file.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use aftersales_schema::{decode_stored, EventEnvelope};
use aftersales_store::{RecordedEvent, Store, StoreError, StreamId};
use aftersales_timers::{Calendar, RuleBook};
use serde::{Deserialize, Serialize};

use crate::error::ViewsError;
use crate::model::{Alert, NeedsHistory, Position, TicketRow, Views};

/// The checkpoint format this build writes and reads.
const CHECKPOINT_FORMAT: u32 = 1;

/// How many log records one catch-up read takes.
const PAGE: usize = 1024;

/// How many events the follower folds per write lock, so readers are not held up long.
const BATCH: usize = 512;

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format: u32,
    /// The last position folded in.
    position: Position,
    /// Hex of the hash-chain link of the record at `position` (empty at 0): a checkpoint of
    /// another store, or of a log that was restored to an older backup, does not match.
    hash: String,
    rows: Vec<TicketRow>,
    #[serde(default)]
    alerts: Vec<Alert>,
}

/// How the model was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// From the checkpoint, at this position.
    Resumed(Position),
    /// Empty, to be rebuilt from the log; the reason is for the log.
    Fresh(String),
}

/// The hash of the record at `position`, hex (empty for 0).
fn hash_at(store: &Store, position: Position) -> Result<Option<String>, StoreError> {
    if position == 0 {
        return Ok(Some(String::new()));
    }
    let record = store.read_all(position, 1)?;
    Ok(record
        .first()
        .filter(|r| r.position == position)
        .map(|r| blake3::Hash::from(r.hash).to_hex().to_string()))
}

/// Loads the checkpoint at `path` if it belongs to this store's log, else an empty model.
/// A missing, unreadable or foreign checkpoint is never an error: the log is the truth
/// and the model is rebuilt from it.
pub fn load(
    store: &Store,
    path: &Path,
    book: RuleBook,
    calendar: Calendar,
) -> Result<(Views, Loaded), ViewsError> {
    let fresh = |book, calendar, why: String| Ok((Views::new(book, calendar), Loaded::Fresh(why)));
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fresh(book, calendar, "no checkpoint yet".into())
        }
        Err(e) => {
            return fresh(
                book,
                calendar,
                format!("the checkpoint cannot be opened: {e}"),
            )
        }
    };
    let checkpoint: Checkpoint = match serde_json::from_reader(BufReader::new(file)) {
        Ok(c) => c,
        Err(e) => return fresh(book, calendar, format!("the checkpoint is unreadable: {e}")),
    };
    if checkpoint.format != CHECKPOINT_FORMAT {
        return fresh(
            book,
            calendar,
            format!("the checkpoint has format {}", checkpoint.format),
        );
    }
    match hash_at(store, checkpoint.position)? {
        Some(h) if h == checkpoint.hash => {}
        Some(_) => {
            return fresh(
                book,
                calendar,
                "the checkpoint was made from another log".into(),
            )
        }
        None => {
            return fresh(
                book,
                calendar,
                format!(
                    "the checkpoint is at position {} but the log ends at {}",
                    checkpoint.position,
                    store.head_position()
                ),
            )
        }
    }
    let at = checkpoint.position;
    Ok((
        Views::from_rows(book, calendar, at, checkpoint.rows, checkpoint.alerts),
        Loaded::Resumed(at),
    ))
}

/// Writes the model's checkpoint atomically (a temporary file, fsync, rename).
pub fn save(views: &Views, store: &Store, path: &Path) -> Result<(), ViewsError> {
    let io = |source| ViewsError::Io {
        path: path.to_owned(),
        source,
    };
    let hash = hash_at(store, views.position())?.ok_or_else(|| ViewsError::Ahead {
        position: views.position(),
        head: store.head_position(),
    })?;
    let mut rows: Vec<&TicketRow> = views.rows().collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    #[derive(Serialize)]
    struct Out<'a> {
        format: u32,
        position: Position,
        hash: String,
        rows: Vec<&'a TicketRow>,
        alerts: Vec<&'a Alert>,
    }
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
    serde_json::to_writer(
        &mut w,
        &Out {
            format: CHECKPOINT_FORMAT,
            position: views.position(),
            hash,
            rows,
            alerts: views.kept_alerts().collect(),
        },
    )
    .map_err(|e| io(e.into()))?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Folds one record from the log into the model. A record that cannot be read is logged
/// and skipped: one damaged ticket must not stop every dashboard (`verify` names it).
pub fn apply_record(
    views: &mut Views,
    store: &Store,
    record: &RecordedEvent,
) -> Result<(), ViewsError> {
    let Some(envelope) = readable(record) else {
        views.skip(record.position);
        return Ok(());
    };
    match views.apply(record.position, &envelope) {
        Ok(()) => Ok(()),
        Err(NeedsHistory { ticket, upto }) => {
            let history = read_history(store, &record.stream, upto)?;
            views.restore(&ticket, &history);
            if views.apply(record.position, &envelope).is_err() {
                // Only if the stream changed under us, which an append-only log rules out.
                tracing::error!(position = record.position, ticket = %ticket, "the ticket's history could not be restored; event skipped");
                views.skip(record.position);
            }
            Ok(())
        }
    }
}

fn readable(record: &RecordedEvent) -> Option<EventEnvelope> {
    match decode_stored(&record.payload, record.recorded_at) {
        Ok(e) if e.ticket_id.as_str() == record.stream.as_str() => Some(e),
        Ok(_) => {
            tracing::error!(position = record.position, stream = %record.stream, "an event names another ticket than its stream; the read models skip it: run `aftersales verify`");
            None
        }
        Err(e) => {
            tracing::error!(position = record.position, stream = %record.stream, error = %e, "an event cannot be read; the read models skip it: run `aftersales verify`");
            None
        }
    }
}

/// The stream's readable events with versions `1..=upto`.
fn read_history(
    store: &Store,
    stream: &StreamId,
    upto: u64,
) -> Result<Vec<EventEnvelope>, ViewsError> {
    let limit = usize::try_from(upto).unwrap_or(usize::MAX);
    Ok(store
        .read_stream(stream, 1, limit)?
        .iter()
        .filter_map(readable)
        .collect())
}

/// Folds every acknowledged event after the model's position; returns how many.
pub fn catch_up(views: &mut Views, store: &Store) -> Result<u64, ViewsError> {
    let head = store.head_position();
    let mut read = 0;
    while views.position() < head {
        let page = store.read_all(views.position() + 1, PAGE)?;
        if page.is_empty() {
            break;
        }
        for record in &page {
            apply_record(views, store, record)?;
            read += 1;
        }
    }
    Ok(read)
}

/// The model shared by the follower (one writer) and the API (many readers).
#[derive(Clone)]
pub struct SharedViews {
    inner: Arc<RwLock<Views>>,
    /// `None`: fed from outside ([`SharedViews::detached`]).
    source: Option<(Arc<Store>, PathBuf)>,
}

impl SharedViews {
    /// Loads the checkpoint (or starts empty) and catches up with the log; says which.
    pub fn open(
        store: Arc<Store>,
        checkpoint: PathBuf,
        book: RuleBook,
        calendar: Calendar,
    ) -> Result<(SharedViews, Loaded), ViewsError> {
        let started = Instant::now();
        let (mut views, loaded) = load(&store, &checkpoint, book, calendar)?;
        let read = catch_up(&mut views, &store)?;
        match &loaded {
            Loaded::Resumed(at) => tracing::info!(
                checkpoint = *at,
                read,
                position = views.position(),
                tickets = views.ticket_count(),
                ms = started.elapsed().as_millis() as u64,
                "read models resumed from their checkpoint"
            ),
            Loaded::Fresh(why) => {
                tracing::info!(reason = %why, read, tickets = views.ticket_count(), ms = started.elapsed().as_millis() as u64, "read models rebuilt from the log")
            }
        }
        let shared = SharedViews {
            inner: Arc::new(RwLock::new(views)),
            source: Some((store, checkpoint)),
        };
        Ok((shared, loaded))
    }

    /// An empty model fed by the caller ([`SharedViews::apply`]) instead of a store: a
    /// partitioned instance folds the events stream of every partition into it. It has
    /// no checkpoint (it is rebuilt from the stream at each start).
    pub fn detached(book: RuleBook, calendar: Calendar) -> SharedViews {
        SharedViews {
            inner: Arc::new(RwLock::new(Views::new(book, calendar))),
            source: None,
        }
    }

    /// Folds events given in order, numbered by the caller (a stream sequence). Events
    /// at or below the model's position are ignored.
    pub fn apply(&self, events: &[(Position, EventEnvelope)]) {
        let mut views = self.write();
        for (position, envelope) in events {
            if views.apply(*position, envelope).is_err() {
                // Only a model restored from a checkpoint needs history, and this one
                // never is; kept as a skip so one ticket cannot stop the dashboards.
                tracing::error!(position, ticket = %envelope.ticket_id, "an event needs history the read models do not have; skipped");
                views.skip(*position);
            }
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Views> {
        // A panic mid-fold leaves at worst one ticket's row behind; reads stay useful.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Views> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds in what was appended since the last call (for callers without a follower).
    pub fn catch_up(&self) -> Result<u64, ViewsError> {
        match &self.source {
            Some((store, _)) => catch_up(&mut self.write(), store),
            None => Ok(0),
        }
    }

    /// Writes the checkpoint now.
    pub fn save(&self) -> Result<(), ViewsError> {
        match &self.source {
            Some((store, checkpoint)) => save(&self.read(), store, checkpoint),
            None => Ok(()),
        }
    }

    /// The follower loop: folds each new acknowledged event as it comes, checkpoints every
    /// `every` while there is news, and once more, caught up with the log, when `stop` is
    /// set (seen within `poll`) or the store closes. Stop the writers first.
    /// A detached model has nothing to follow: it returns at once.
    pub fn follow(&self, stop: &AtomicBool, poll: Duration, every: Duration) {
        let Some((store, _)) = &self.source else {
            return;
        };
        let mut sub = store.subscribe(self.read().position() + 1);
        let mut saved_at = self.read().position();
        let mut last_save = Instant::now();
        while !stop.load(Ordering::Acquire) {
            match sub.next_timeout(poll) {
                Ok(Some(first)) => {
                    let mut views = self.write();
                    let mut next = Some(first);
                    let mut n = 0;
                    let mut failed = false;
                    while let Some(record) = next.take() {
                        if let Err(e) = apply_record(&mut views, store, &record) {
                            tracing::error!(error = %e, "the read models could not fold an event; retrying");
                            failed = true;
                            break;
                        }
                        n += 1;
                        if n < BATCH {
                            next = sub.next_timeout(Duration::ZERO).ok().flatten();
                        }
                    }
                    if failed {
                        // Read again from where the model stands, after a pause.
                        sub = store.subscribe(views.position() + 1);
                        drop(views);
                        std::thread::sleep(poll);
                    }
                }
                Ok(None) => {}
                Err(StoreError::Closed) => break,
                Err(e) => {
                    tracing::error!(error = %e, "the read models' subscription failed; resubscribing");
                    std::thread::sleep(poll);
                    sub = store.subscribe(self.read().position() + 1);
                }
            }
            let position = self.read().position();
            if position != saved_at && last_save.elapsed() >= every {
                match self.save() {
                    Ok(()) => saved_at = position,
                    Err(e) => {
                        tracing::error!(error = %e, "the read models' checkpoint could not be written")
                    }
                }
                last_save = Instant::now();
            }
        }
        // What was appended since the last poll belongs in the last checkpoint.
        if let Err(e) = self.catch_up() {
            tracing::error!(error = %e, "the read models could not catch up at stop");
        }
        if self.read().position() != saved_at {
            if let Err(e) = self.save() {
                tracing::error!(error = %e, "the read models' checkpoint could not be written at stop");
            }
        }
    }
}
