//! The append path: one writer thread owns all writes.
//!
//! `append` validates its input, queues a request and blocks. The writer thread takes all
//! queued requests and handles them one by one: idempotency check (among the stream's own
//! ids), expected-version check, gapless positions, hash chain; the records go into the
//! page being built and the entries into their streams' chunks, both in memory. It leaves
//! each outcome for its appender ([`crate::ack`]). Once the requests in hand are done it
//! writes the page (one sled insert), puts the changed chunks in the overlay
//! ([`crate::overlay`]), where reads find them, and publishes the new written head for the
//! flusher ([`crate::flusher`]), which can start flushing at once. While that flush runs
//! it inserts the chunks begun in this page (a new ticket's: nothing to share an insert
//! with) and a slice of the overlay's frozen generation into sled, then takes the next
//! requests. An appender is woken once the flush covering its last position is done.
//!
//! History of the index writes: format 2 inserted a group's chunks before its flush;
//! format 3 inserted them while the flush ran (64 async appenders of one event went from
//! 0.56–0.70 of bare sled to 0.71–0.93); the overlay then made one insert serve every
//! append a stream gets within a generation (BENCHMARKS.md, "The index behind the log").
//! A crash can leave committed pages whose chunk entries never reached sled: open adds
//! them from the pages (the index marker in [`crate::keys`]).
//!
//! `append_async` queues the same request with a waiter that wakes a task instead of a
//! thread ([`crate::ack::AppendFuture`]).
//!
//! Why one thread instead of appenders writing under a mutex: with many appender threads
//! on few cores, the mutex holder was regularly preempted in the middle of its sled calls
//! and everyone queued behind it (measured: 1.5 ms average lock wait with 64 writers on
//! 2 cores). A dedicated thread keeps the serial part short and hot in cache, and the
//! appenders only sleep. Being the only writer also lets it cache each stream's version,
//! ids and last chunk.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ack::{AppendFuture, Waiter};
use crate::error::StoreError;
use crate::flusher::poison;
use crate::keys;
use crate::record::{self, RecordFields};
use crate::store::Inner;
use crate::stream_cache::StreamState;
use crate::types::{
    Append, AppendResult, EventPosition, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StreamId, Version, MAX_EVENT_TYPE_BYTES, MAX_PAYLOAD_BYTES,
};

/// The writer's stream cache ([`crate::stream_cache`]) is cut to half this many bytes
/// between two groups when it grows past it, the streams used since the last cut kept
/// first (a miss costs one read of the stream's chunks). It was 50,000 ids of about 100
/// bytes each, cleared whole; bounded at 250,000 ids it was still filling minutes into
/// the load test, about 24 MB of the heap's growth after warm-up (RELIABILITY.md,
/// "Memory"). An entry is now 24 bytes, so the same memory holds about four times the ids.
const STREAM_CACHE_BYTES: usize = 5 << 20;

/// How long the writer looks for new requests before it sleeps.
const WRITER_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// A group is written once its records reach this size, even with requests still in hand.
const PAGE_BYTES: usize = 512 * 1024;

/// A group's records are cut into pages (sled values) of at most this size; a record
/// bigger than this gets a page of its own. sled's leaves hold up to 16 values, and it
/// writes any node over about 128 KB to a blob file of its own, which the next flush must
/// then sync with the whole filesystem (`crate::disk_sync`). With one page per group a
/// full `bench ingest` left 68 blob files, and syncing them cost it 15–20 % of its
/// messages/s; cut, it leaves none.
pub(crate) const PIECE_BYTES: usize = 6 * 1024;

/// The overlay's fresh chunks are frozen and inserted into sled once this many positions
/// were written since the last freeze, or once this many chunks changed (whichever comes
/// first), or once the writer has been idle for `QUIET_BEFORE_INDEXING`. The longer a generation, the more appends to
/// one stream share an insert (the store benchmark's 6,400 streams get about ten each);
/// but a crash makes the next open add up to about this many entries back from the
/// pages (`flusher::reindex_committed_tail`; 43,636 entries took under 0.11 s, open and
/// a full verify included), and the overlay holds up to twice
/// `FREEZE_CHUNKS` chunks (about 200 bytes each).
pub(crate) const FREEZE_POSITIONS: u64 = 65_536;
pub(crate) const FREEZE_CHUNKS: usize = 16_384;

/// How long the writer must have had nothing to do before it freezes the overlay's fresh
/// chunks on its own.
const QUIET_BEFORE_INDEXING: std::time::Duration = std::time::Duration::from_millis(5);

/// Frozen chunks inserted after each page at the least (more if the page changed more,
/// so the overlay cannot outgrow two generations), and per step while idle.
const DRAIN_STEP: usize = 32;

/// One queued append or import.
pub(crate) struct Request {
    work: Work,
    waiter: Arc<Waiter>,
}

impl Drop for Request {
    /// A request dropped by a panicking writer (the one it was handling, and the rest of
    /// its batch) fails its appender, who would otherwise wait for ever: the writer's
    /// `StopOnExit` only reaches the requests still queued and the flusher only those
    /// already answered. One the flusher has already acknowledged keeps its outcome.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.waiter.fail_unless_finished(StoreError::Poisoned {
                reason: "the writer thread panicked".to_string(),
            });
        }
    }
}

enum Work {
    Append {
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    },
    /// Records copied from another store's log (see [`crate::Store::import`]).
    Import(Vec<RecordedEvent>),
    /// Appends to several streams in one request (see [`crate::Store::append_many`]):
    /// each is checked and written on its own, their outcomes left in `outcomes`.
    Many {
        appends: Vec<Append>,
        outcomes: Arc<Mutex<Vec<Result<AppendResult, StoreError>>>>,
    },
}

/// Appends waiting for the writer thread; guarded by `Inner::queue`.
#[derive(Default)]
pub(crate) struct Queue {
    requests: VecDeque<Request>,
    /// No new requests are accepted.
    closing: bool,
    /// The writer waits on `Inner::queue_cv`: only then does an appender notify it.
    writer_asleep: bool,
}

/// See [`crate::Store::append`].
pub(crate) fn append(
    inner: &Inner,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult, StoreError> {
    validate(&events)?;
    submit(
        inner,
        Work::Append {
            stream: stream.clone(),
            expected,
            events,
        },
    )
}

/// See [`crate::Store::append_async`].
pub(crate) fn append_async(
    inner: &Inner,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendFuture {
    if let Err(e) = validate(&events) {
        return AppendFuture::refused(e);
    }
    let waiter = Waiter::for_task();
    let work = Work::Append {
        stream: stream.clone(),
        expected,
        events,
    };
    match enqueue(inner, work, &waiter) {
        Ok(()) => AppendFuture::queued(waiter),
        Err(e) => AppendFuture::refused(e),
    }
}

/// See [`crate::Store::append_many`].
pub(crate) fn append_many(
    inner: &Inner,
    appends: Vec<Append>,
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    // An append that fails validation is answered here; the others go to the writer.
    let mut answers = Vec::with_capacity(appends.len());
    let mut valid = Vec::with_capacity(appends.len());
    for a in appends {
        match validate(&a.events) {
            Ok(()) => {
                answers.push(None);
                valid.push(a);
            }
            Err(e) => answers.push(Some(Err(e))),
        }
    }
    let outcomes = Arc::new(Mutex::new(Vec::with_capacity(valid.len())));
    if !valid.is_empty() {
        submit(
            inner,
            Work::Many {
                appends: valid,
                outcomes: Arc::clone(&outcomes),
            },
        )?;
    }
    let mut written =
        std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner())).into_iter();
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| written.next().unwrap_or(Err(StoreError::Closed))))
        .collect())
}

/// See [`crate::Store::import`].
pub(crate) fn import(
    inner: &Inner,
    records: Vec<RecordedEvent>,
) -> Result<AppendResult, StoreError> {
    let as_new: Vec<NewEvent> = records
        .iter()
        .map(|r| NewEvent::new(r.id, r.event_type.clone(), Vec::new()))
        .collect();
    validate(&as_new)?;
    if let Some(r) = records.iter().find(|r| r.payload.len() > MAX_PAYLOAD_BYTES) {
        return Err(StoreError::InvalidEvent {
            id: r.id,
            reason: format!("its payload is over the limit of {MAX_PAYLOAD_BYTES} bytes"),
        });
    }
    submit(inner, Work::Import(records))
}

/// Queues work for the writer thread and sleeps until it is answered.
fn submit(inner: &Inner, work: Work) -> Result<AppendResult, StoreError> {
    let waiter = Waiter::for_current_thread();
    enqueue(inner, work, &waiter)?;
    waiter.wait()
}

/// Queues work for the writer thread, to be answered through `waiter`.
fn enqueue(inner: &Inner, work: Work, waiter: &Arc<Waiter>) -> Result<(), StoreError> {
    let asleep = {
        let mut q = inner.lock_queue();
        if q.closing {
            return Err(stopped_error(inner));
        }
        q.requests.push_back(Request {
            work,
            waiter: Arc::clone(waiter),
        });
        q.writer_asleep
    };
    if asleep {
        inner.queue_cv.notify_one();
    }
    Ok(())
}

/// Hands an outcome to its appender: at once, or after the flush that covers
/// `position` (for a failed import, what it wrote before the failure).
fn answer(
    inner: &Inner,
    waiter: &Arc<Waiter>,
    outcome: Result<AppendResult, StoreError>,
    position: Position,
) {
    if position == 0 {
        return waiter.finish(Some(outcome));
    }
    let mut d = inner.lock_durable();
    if let Some(reason) = &d.failure {
        let reason = reason.clone();
        drop(d);
        return waiter.finish(Some(Err(StoreError::Poisoned { reason })));
    }
    if d.head >= position {
        drop(d);
        return waiter.finish(Some(outcome));
    }
    if d.stopped {
        // Defensive: the flusher is gone, so nobody would ever wake this appender.
        drop(d);
        return waiter.finish(Some(Err(StoreError::Closed)));
    }
    // Registered before the written head is published, so the flush covering it cannot
    // be missed.
    waiter.set(outcome);
    d.acks.push(position, Arc::clone(waiter));
}

/// The error for an append that can no longer be served.
fn stopped_error(inner: &Inner) -> StoreError {
    match &inner.lock_durable().failure {
        Some(reason) => StoreError::Poisoned {
            reason: reason.clone(),
        },
        None => StoreError::Closed,
    }
}

/// Checks everything that does not depend on stored state.
fn validate(events: &[NewEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    let mut seen = HashSet::with_capacity(events.len());
    for e in events {
        if !seen.insert(e.id) {
            return Err(StoreError::DuplicateIdInAppend { id: e.id });
        }
        let reason = if e.event_type.is_empty() {
            Some("its event type is empty".to_string())
        } else if e.event_type.len() > MAX_EVENT_TYPE_BYTES {
            Some(format!(
                "its event type is {} bytes long and the limit is {MAX_EVENT_TYPE_BYTES}",
                e.event_type.len()
            ))
        } else if e.payload.len() > MAX_PAYLOAD_BYTES {
            Some(format!(
                "its payload is {} bytes and the limit is {MAX_PAYLOAD_BYTES}",
                e.payload.len()
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(StoreError::InvalidEvent { id: e.id, reason });
        }
    }
    Ok(())
}

/// Refuses new appends; the writer thread finishes the queued ones and exits.
pub(crate) fn request_close(inner: &Inner) {
    inner.lock_queue().closing = true;
    inner.queue_cv.notify_all();
}

/// The writer thread's own state: the tip of the log and chain.
struct Writer<'a> {
    inner: &'a Inner,
    /// Position the next event gets.
    next_position: Position,
    /// Hash of the record at `next_position - 1`.
    last_hash: [u8; 32],
    /// `recorded_at` of that record: the floor for the next one.
    last_recorded_at: DateTime<Utc>,
    streams: HashMap<StreamId, StreamState>,
    /// What `streams` holds, in bytes (roughly; see `StreamState::bytes`).
    cached_bytes: usize,
    /// The group being built: records from `page_first` to `next_position - 1`, as the
    /// finished pages in `pieces` (first position, records) and the page being filled,
    /// from `piece_first`; `group_bytes` in all.
    page: Vec<u8>,
    page_first: Position,
    pieces: Vec<(Position, Vec<u8>)>,
    piece_first: Position,
    group_bytes: usize,
    /// Chunks for the overlay after the page: full ones as they fill, and the streams
    /// whose current chunk changed.
    full_chunks: Vec<(StreamId, u64, sled::IVec)>,
    dirty: Vec<StreamId>,
    /// The overlay's frozen generation while it is being inserted into sled.
    drain: Option<Drain>,
    /// The last position written when the overlay was last frozen.
    frozen_at: Position,
    /// Look for new requests a while before sleeping (see `run`).
    spin: bool,
    /// Set when an insert failed: half an append may be in sled (beyond the commit
    /// marker, so the next open removes it) and nothing may be written after it.
    failed: Option<String>,
}

/// A frozen generation of the overlay on its way into sled.
struct Drain {
    /// Chunks still to insert (key, bytes), popped from the end. Not sorted: sorting
    /// them by key made no difference to the ingest (two pairs of 200,000 openings).
    todo: Vec<(Vec<u8>, sled::IVec)>,
    /// Every entry up to this position is in sled once `todo` is done.
    upto: Position,
}

/// Starts the writer thread at the tip loaded on open.
pub(crate) fn spawn(
    inner: Arc<Inner>,
    head: Position,
    head_hash: [u8; 32],
    last_recorded_at: DateTime<Utc>,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("aftersales-store-writer".to_string())
        .spawn(move || {
            let _stop = StopOnExit(&inner);
            let mut writer = Writer {
                inner: &inner,
                next_position: head + 1,
                last_hash: head_hash,
                last_recorded_at,
                streams: HashMap::new(),
                cached_bytes: 0,
                page: Vec::new(),
                page_first: head + 1,
                pieces: Vec::new(),
                piece_first: head + 1,
                group_bytes: 0,
                full_chunks: Vec::new(),
                dirty: Vec::new(),
                drain: None,
                frozen_at: head,
                spin: true,
                failed: None,
            };
            writer.run();
        })
        .map_err(StoreError::Thread)
}

/// However the writer exits (even by panic): refuse and fail what is queued, and tell the
/// flusher to flush what is written and stop.
struct StopOnExit<'a>(&'a Inner);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let inner = self.0;
        if std::thread::panicking() {
            poison(inner, "the writer thread panicked".to_string());
        }
        let orphans: Vec<Request> = {
            let mut q = inner.lock_queue();
            q.closing = true;
            q.requests.drain(..).collect()
        };
        for r in orphans {
            r.waiter.finish(Some(Err(stopped_error(inner))));
        }
        inner.lock_pending().closing = true;
        inner.pending_cv.notify_all();
    }
}

impl Writer<'_> {
    fn run(&mut self) {
        loop {
            let batch: Vec<Request> = loop {
                let mut q = self.inner.lock_queue();
                if q.requests.is_empty() && !q.closing && self.spin {
                    // With many appenders, the ones the last flush acknowledged are
                    // about to come back: waiting a little without sleeping spares the
                    // wake-up of this thread (on a VM an idle CPU halts, and waking it
                    // takes longer than the wait) and lets appenders skip the notify.
                    // A lone appender is not back before its flush, so a wait that
                    // found nothing is not repeated until a batch holds two requests.
                    drop(q);
                    let spinning = std::time::Instant::now();
                    q = loop {
                        std::thread::yield_now();
                        let q = self.inner.lock_queue();
                        if !q.requests.is_empty() || q.closing || spinning.elapsed() > WRITER_SPIN {
                            break q;
                        }
                    };
                    self.spin = !q.requests.is_empty();
                }
                if q.requests.is_empty()
                    && !q.closing
                    && self.inner.index_when_idle
                    && self.index_behind()
                {
                    // Idle: move the overlay into sled a step at a time, looking for
                    // requests between steps. A new generation only after a quiet
                    // while: between two group commits of a busy store the writer is
                    // often idle for a moment, and freezing then would make generations
                    // too short to share inserts.
                    let quiet = if self.drain.is_some() {
                        true
                    } else {
                        q.writer_asleep = true;
                        let (guard, waited) = self
                            .inner
                            .queue_cv
                            .wait_timeout(q, QUIET_BEFORE_INDEXING)
                            .unwrap_or_else(|e| e.into_inner());
                        q = guard;
                        q.writer_asleep = false;
                        waited.timed_out() && q.requests.is_empty() && !q.closing
                    };
                    if quiet {
                        drop(q);
                        self.index_step(DRAIN_STEP, true);
                        if let Some(reason) = &self.failed {
                            poison(self.inner, reason.clone());
                            return;
                        }
                    }
                    continue;
                }
                while q.requests.is_empty() && !q.closing {
                    q.writer_asleep = true;
                    q = self
                        .inner
                        .queue_cv
                        .wait(q)
                        .unwrap_or_else(|e| e.into_inner());
                    q.writer_asleep = false;
                }
                if q.requests.is_empty() {
                    // Closing, and every queued append has been written: the index goes
                    // into sled whole, so the next open has nothing to add.
                    drop(q);
                    while self.index_behind() && self.failed.is_none() {
                        self.index_step(usize::MAX, true);
                    }
                    if let Some(reason) = &self.failed {
                        poison(self.inner, reason.clone());
                    }
                    return;
                }
                break q.requests.drain(..).collect();
            };
            self.spin |= batch.len() > 1;
            if self.cached_bytes > STREAM_CACHE_BYTES {
                self.cached_bytes =
                    crate::stream_cache::evict(&mut self.streams, STREAM_CACHE_BYTES / 2);
            }
            let count = batch.len();
            for (i, request) in batch.into_iter().enumerate() {
                // Also stop writing once the flusher has failed: nothing after its last
                // flush can be acknowledged any more.
                let failure = self
                    .failed
                    .clone()
                    .or_else(|| self.inner.lock_durable().failure.clone());
                let before = self.next_position;
                let result = match failure {
                    Some(reason) => Err(StoreError::Poisoned { reason }),
                    None => match &request.work {
                        Work::Append {
                            stream,
                            expected,
                            events,
                        } => self.write(stream, *expected, events),
                        Work::Import(records) => self.import(records),
                        Work::Many { appends, outcomes } => Ok(self.write_many(appends, outcomes)),
                    },
                };
                let wrote = self.next_position > before;
                let durable_at = match &result {
                    Ok(r) => r.max_position(),
                    Err(_) if wrote => self.next_position - 1,
                    Err(_) => 0,
                };
                answer(self.inner, &request.waiter, result, durable_at);
                let last = i + 1 == count;
                if (last || self.group_bytes >= PAGE_BYTES) && self.failed.is_none() {
                    self.write_page(!last);
                }
            }
            if let Some(reason) = &self.failed {
                poison(self.inner, reason.clone());
                return;
            }
        }
    }

    /// Writes each append of a [`Work::Many`] on its own (in memory, like `write`),
    /// leaving the outcomes in order. The request as a whole waits for the highest
    /// position among them, a redelivery's original included: it may be in this very
    /// page, not yet durable.
    fn write_many(
        &mut self,
        appends: &[Append],
        outcomes: &Mutex<Vec<Result<AppendResult, StoreError>>>,
    ) -> AppendResult {
        let mut out = outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let mut highest: Option<EventPosition> = None;
        for a in appends {
            let result = self.write(&a.stream, a.expected, &a.events);
            if let Ok(r) = &result {
                for e in &r.events {
                    if highest.as_ref().is_none_or(|h| e.position > h.position) {
                        highest = Some(*e);
                    }
                }
            }
            out.push(result);
        }
        AppendResult {
            events: highest.into_iter().collect(),
            stream_version: 0,
            deduplicated: false,
        }
    }

    /// Writes the page, puts the changed chunks in the overlay and tells the flusher;
    /// then inserts the chunks begun in this page into sled, and part of the overlay.
    fn write_page(&mut self, more_queued: bool) {
        if self.page.is_empty() {
            return;
        }
        let mut pages = std::mem::take(&mut self.pieces);
        pages.push((self.piece_first, std::mem::take(&mut self.page)));
        for (first, page) in pages {
            if let Err(source) = self.inner.db.insert(keys::log_key(first), page) {
                self.failed = Some(format!("writing events failed: {source}"));
                return;
            }
        }
        let page_first = std::mem::replace(&mut self.page_first, self.next_position);
        self.piece_first = self.next_position;
        self.group_bytes = 0;
        let mut changed = std::mem::take(&mut self.full_chunks);
        for stream in self.dirty.drain(..) {
            let Some(state) = self.streams.get_mut(&stream) else {
                continue;
            };
            state.dirty = false;
            if state.last_chunk_full() {
                continue; // it went with the full ones
            }
            if let Some((number, chunk)) = state.last_chunk() {
                changed.push((stream, number, sled::IVec::from(chunk)));
            }
        }
        // Chunks begun in this page (a new ticket's, mostly) have nothing to share an
        // insert with yet: they go into sled at once, while the flush runs, where their
        // leaves are still in the cache from the writer's lookup of the stream.
        let begun: Vec<(StreamId, u64, sled::IVec)> = changed
            .iter()
            .filter(|(_, _, bytes)| keys::first_position(bytes) >= Some(page_first))
            .cloned()
            .collect();
        let count = changed.len() - begun.len();
        // Before the written head: the flusher acknowledges what it flushes, and reads
        // must then find it.
        self.inner.overlay.put(changed);
        {
            let mut p = self.inner.lock_pending();
            p.written = self.next_position - 1;
            p.written_hash = self.last_hash;
            p.more_queued = more_queued;
        }
        self.inner.pending_cv.notify_all();
        for (stream, number, bytes) in &begun {
            if let Err(source) = self
                .inner
                .db
                .insert(keys::chunk_key(stream, *number), bytes)
            {
                self.failed = Some(format!("indexing events failed: {source}"));
                return;
            }
        }
        self.inner.overlay.forget_fresh(begun);
        self.index_step(count.max(DRAIN_STEP), false);
    }

    /// Whether the overlay holds chunks that are not in sled yet.
    fn index_behind(&self) -> bool {
        self.drain.is_some() || self.inner.overlay.fresh_chunks() > 0
    }

    /// Inserts up to `budget` chunks of the frozen generation into sled, freezing the
    /// fresh chunks first if none are frozen and it is time (`idle`: any time).
    fn index_step(&mut self, budget: usize, idle: bool) {
        if self.drain.is_none() {
            let written = self.next_position - 1;
            let fresh = self.inner.overlay.fresh_chunks();
            let due =
                idle || written - self.frozen_at >= FREEZE_POSITIONS || fresh >= FREEZE_CHUNKS;
            if fresh == 0 || !due {
                return;
            }
            self.frozen_at = written;
            self.drain = Some(Drain {
                todo: self.inner.overlay.freeze(),
                upto: written,
            });
        }
        let Some(drain) = &mut self.drain else {
            return;
        };
        for _ in 0..budget {
            let Some((key, bytes)) = drain.todo.pop() else {
                break;
            };
            if let Err(source) = self.inner.db.insert(key, bytes) {
                // The pages are out: the next open adds their missing index entries
                // (or removes them if they were never committed).
                self.failed = Some(format!("indexing events failed: {source}"));
                return;
            }
        }
        if drain.todo.is_empty() {
            let upto = drain.upto;
            self.drain = None;
            self.inner.overlay.release_frozen();
            // The flusher writes it as the index marker with its next commit.
            self.inner.lock_pending().indexed = upto;
        }
    }

    /// What the writer knows of `stream`, loaded from its chunks on first use.
    fn stream(&mut self, stream: &StreamId) -> Result<&mut StreamState, StoreError> {
        if !self.streams.contains_key(stream) {
            let state = StreamState::new(crate::reads::stream_index(self.inner, stream)?);
            self.cached_bytes += state.bytes(stream);
            self.streams.insert(stream.clone(), state);
        }
        let state = self.streams.get_mut(stream).expect("inserted above");
        state.used = true;
        Ok(state)
    }

    /// Adds a record to the page and its entry to the stream's chunk.
    fn add(
        &mut self,
        stream: &StreamId,
        version: Version,
        position: Position,
        id: &Uuid,
        record: &[u8],
    ) -> Result<(), StoreError> {
        if !self.page.is_empty() && self.page.len() + record.len() > PIECE_BYTES {
            let page = std::mem::take(&mut self.page);
            self.pieces
                .push((std::mem::replace(&mut self.piece_first, position), page));
        }
        self.group_bytes += record.len();
        self.page.extend_from_slice(record);
        let state = self.stream(stream)?;
        debug_assert_eq!(version, state.version() + 1, "versions are checked before");
        let before = state.bytes(stream);
        state.push(position, id);
        let chunk = state
            .last_chunk_full()
            .then(|| state.last_chunk().map(|(_, c)| sled::IVec::from(c)))
            .flatten();
        // A flag, not a search of the list: a group can touch a thousand streams.
        let newly_dirty = !std::mem::replace(&mut state.dirty, true);
        self.cached_bytes += state.bytes(stream) - before;
        if let Some(chunk) = chunk {
            self.full_chunks
                .push((stream.clone(), keys::chunk_of(version).0, chunk));
        }
        if newly_dirty {
            self.dirty.push(stream.clone());
        }
        Ok(())
    }

    /// Where an id is stored in `stream`: version and position. Sees appends that are
    /// written but not yet durable, which is what idempotency needs.
    fn lookup_id(
        &mut self,
        stream: &StreamId,
        id: &Uuid,
    ) -> Result<Option<(Version, Position)>, StoreError> {
        Ok(self.stream(stream)?.find(id))
    }

    /// The stream's latest version, including appends not yet durable.
    fn current_version(&mut self, stream: &StreamId) -> Result<Version, StoreError> {
        Ok(self.stream(stream)?.version())
    }

    /// Checks and writes one append.
    fn write(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> Result<AppendResult, StoreError> {
        // Idempotency first: a redelivery must succeed whatever the stream's version is.
        let mut stored = Vec::with_capacity(events.len());
        for e in events {
            stored.push(self.lookup_id(stream, &e.id)?);
        }
        let stored_id = events.iter().zip(&stored).find(|(_, s)| s.is_some());
        let new_id = events.iter().zip(&stored).find(|(_, s)| s.is_none());
        match (stored_id, new_id) {
            (Some(_), None) => {
                let positions: Vec<EventPosition> = events
                    .iter()
                    .zip(stored)
                    .filter_map(|(e, s)| {
                        s.map(|(version, position)| EventPosition {
                            id: e.id,
                            version,
                            position,
                        })
                    })
                    .collect();
                let stream_version = positions.iter().map(|p| p.version).max().unwrap_or(0);
                return Ok(AppendResult {
                    events: positions,
                    stream_version,
                    deduplicated: true,
                });
            }
            (Some((stored_id, _)), Some((new_id, _))) => {
                return Err(StoreError::PartialDuplicate {
                    stream: stream.clone(),
                    stored_id: stored_id.id,
                    new_id: new_id.id,
                });
            }
            _ => {}
        }

        let actual = self.current_version(stream)?;
        if !expected.matches(actual) {
            return Err(StoreError::WrongExpectedVersion {
                stream: stream.clone(),
                expected,
                actual,
            });
        }

        // Never let recorded_at go backwards along the log, even if the clock does:
        // as-of queries binary-search on it.
        let recorded_at = self.inner.clock.now().max(self.last_recorded_at);
        let mut hash = self.last_hash;
        let mut positions = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let position = self.next_position + i as u64;
            let version = actual + 1 + i as u64;
            let (bytes, record_hash) = record::encode(&RecordFields {
                prev_hash: &hash,
                position,
                version,
                id: &e.id,
                recorded_at,
                stream,
                event_type: &e.event_type,
                payload: &e.payload,
            });
            hash = record_hash;
            self.add(stream, version, position, &e.id, &bytes)?;
            positions.push(EventPosition {
                id: e.id,
                version,
                position,
            });
        }
        let n = events.len() as u64;
        self.next_position += n;
        self.last_hash = hash;
        self.last_recorded_at = recorded_at;
        Ok(AppendResult {
            events: positions,
            stream_version: actual + n,
            deduplicated: false,
        })
    }

    /// Writes records that another store's log holds at the same positions, byte for
    /// byte: each must extend this log's chain (its hash is recomputed, not trusted) and
    /// its stream without a gap. A record this store already holds with the same hash is
    /// skipped, so an interrupted import can simply be run again.
    fn import(&mut self, records: &[RecordedEvent]) -> Result<AppendResult, StoreError> {
        // Records held already are compared with what sled holds, so the page in hand
        // goes first.
        self.write_page(true);
        if let Some(reason) = &self.failed {
            return Err(StoreError::Poisoned {
                reason: reason.clone(),
            });
        }
        let mut positions = Vec::with_capacity(records.len());
        let mut wrote = false;
        for r in records {
            if r.position < self.next_position {
                let held = crate::reads::read_record_unbounded(self.inner, r.position)?;
                if held.as_ref().map(|h| h.hash) != Some(r.hash) {
                    return Err(StoreError::ImportDiverges {
                        position: r.position,
                        reason: "this store holds another record there".into(),
                    });
                }
            } else {
                if r.position != self.next_position {
                    return Err(StoreError::ImportDiverges {
                        position: r.position,
                        reason: format!("the log's next position is {}", self.next_position),
                    });
                }
                if self.lookup_id(&r.stream, &r.id)?.is_some() {
                    return Err(StoreError::ImportDiverges {
                        position: r.position,
                        reason: format!("event {} is already stored in {}", r.id, r.stream),
                    });
                }
                let actual = self.current_version(&r.stream)?;
                if r.version != actual + 1 {
                    return Err(StoreError::ImportDiverges {
                        position: r.position,
                        reason: format!(
                            "it is version {} of {} and that stream is at {actual}",
                            r.version, r.stream
                        ),
                    });
                }
                if r.recorded_at < self.last_recorded_at {
                    return Err(StoreError::ImportDiverges {
                        position: r.position,
                        reason: "it was recorded before the record ahead of it".into(),
                    });
                }
                let (bytes, hash) = record::encode(&RecordFields {
                    prev_hash: &self.last_hash,
                    position: r.position,
                    version: r.version,
                    id: &r.id,
                    recorded_at: r.recorded_at,
                    stream: &r.stream,
                    event_type: &r.event_type,
                    payload: &r.payload,
                });
                if hash != r.hash {
                    return Err(StoreError::ImportDiverges {
                        position: r.position,
                        reason: "its hash does not follow from its bytes and the chain".into(),
                    });
                }
                self.add(&r.stream, r.version, r.position, &r.id, &bytes)?;
                self.next_position += 1;
                self.last_hash = hash;
                self.last_recorded_at = r.recorded_at;
                wrote = true;
            }
            positions.push(EventPosition {
                id: r.id,
                version: r.version,
                position: r.position,
            });
        }
        Ok(AppendResult {
            stream_version: positions.last().map_or(0, |p| p.version),
            events: positions,
            deduplicated: !wrote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// The outcome, if its appender would have it now.
    fn poll_once(waiter: Arc<Waiter>) -> Option<Result<AppendResult, StoreError>> {
        let mut future = AppendFuture::queued(waiter);
        match std::pin::Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(outcome) => Some(outcome),
            Poll::Pending => None,
        }
    }

    /// Drops a request for `waiter` while its thread panics, as an unwinding writer does.
    fn drop_in_a_panic(waiter: &Arc<Waiter>) {
        let request = Request {
            work: Work::Import(Vec::new()),
            waiter: Arc::clone(waiter),
        };
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = request;
            panic!("a bug in the writer");
        }));
        assert!(unwound.is_err());
    }

    #[test]
    fn a_request_dropped_by_a_panic_fails_its_appender() {
        let waiter = Waiter::for_task();
        drop_in_a_panic(&waiter);
        assert!(matches!(
            poll_once(waiter),
            Some(Err(StoreError::Poisoned { .. }))
        ));
    }

    #[test]
    fn a_request_acknowledged_before_the_panic_keeps_its_outcome() {
        let waiter = Waiter::for_task();
        let durable = AppendResult {
            events: Vec::new(),
            stream_version: 7,
            deduplicated: false,
        };
        waiter.finish(Some(Ok(durable)));
        drop_in_a_panic(&waiter);
        assert!(matches!(
            poll_once(waiter),
            Some(Ok(AppendResult {
                stream_version: 7,
                ..
            }))
        ));
    }

    #[test]
    fn a_request_dropped_normally_leaves_its_appender_waiting() {
        let waiter = Waiter::for_task();
        drop(Request {
            work: Work::Import(Vec::new()),
            waiter: Arc::clone(&waiter),
        });
        assert!(poll_once(waiter).is_none());
    }
}
