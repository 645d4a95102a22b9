//! Group commit and crash repair.
//!
//! The writer thread inserts appends into sled (their index chunks into its overlay,
//! where reads find them) and publishes the *written* head, and the *indexed* head when
//! a generation of the overlay is in sled. One flusher thread loops: take the written
//! head, insert the index marker `M indexed = indexed head` (when it moved) and the
//! commit marker `M head = written head`, call `db.flush()` (then a sync to disk, see
//! `StoreConfig::fsync_after_flush`), and publish the *durable* head, which wakes the
//! appenders waiting for it. Appends written while a flush runs share the next one,
//! and the next flush waits (at most one flush time) for the appenders it just
//! acknowledged to come back, so that concurrent appenders keep one group instead of
//! splitting into two.
//! `flush_async` is never used (it can deadlock in 0.34.7) and no other thread calls
//! `flush()` while the store is open. sled's own background thread keeps running (every
//! 500 ms it writes its buffers, cleans segments and fsyncs), but acknowledgement never
//! relies on it.
//!
//! Atomicity comes from the commit marker, not from sled batches. sled recovers a prefix
//! of its log after a crash (a design goal that its own crash-recovery test checks, and
//! that this crate's crash test exercises: every stored append is whole after hundreds of
//! SIGKILLs). The marker is inserted after every record it covers, so whatever survives
//! beyond it belongs to appends that were never acknowledged, and
//! [`repair_uncommitted_tail`] removes it on open. Chunk entries of committed records
//! beyond the index marker may be missing (they were in the overlay):
//! [`reindex_committed_tail`] adds them from the pages. Why not `apply_batch` (measured
//! on sled 0.34.7): every call rolls sled's IO buffer (~200 µs), so one batch per append
//! was 6x slower than plain inserts, and it takes sled's global write lock, which waits
//! for a running `flush()`, so writes could never overlap with the flush. With plain
//! inserts they do.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::ack::Waiter;
use crate::error::StoreError;
use crate::keys;
use crate::store::Inner;
use crate::types::Position;
use crate::watermark::{self, Watermark};

/// What the flusher needs; guarded by `Inner::pending`.
pub(crate) struct PendingState {
    /// Last position whose append is completely inserted.
    pub written: Position,
    /// Hash of the record at `written`.
    pub written_hash: [u8; 32],
    /// Last position whose stream index entries are all in sled; those beyond it are in
    /// the writer's overlay (`crate::overlay`). Written as the index marker.
    pub indexed: Position,
    /// The writer thread has exited: flush what is written, then stop.
    pub closing: bool,
    /// The writer has more requests in hand that it is about to write.
    pub more_queued: bool,
}

/// How many unflushed events the flusher lets the writer add before it flushes anyway.
const GATHER_EVENTS: u64 = 32;

/// The longest the flusher waits for acknowledged appenders to come back (a slow disk's
/// flush must not turn into an equally long pause before every flush).
const MAX_GATHER_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// Records a failure for everyone waiting and for later appends.
pub(crate) fn poison(inner: &Inner, reason: String) {
    tracing::error!(%reason, "event store write failed; refusing further appends");
    let waiters = {
        let mut d = inner.lock_durable();
        if d.failure.is_none() {
            d.failure = Some(reason);
        }
        d.acks.take_all()
    };
    inner.durable_cv.notify_all();
    fail_all(inner, waiters);
    inner.lock_pending().closing = true;
    inner.pending_cv.notify_all();
}

/// Wakes waiters that will never be acknowledged.
fn fail_all(inner: &Inner, waiters: Vec<Arc<Waiter>>) {
    for w in waiters {
        let error = match &inner.lock_durable().failure {
            Some(reason) => StoreError::Poisoned {
                reason: reason.clone(),
            },
            None => StoreError::Closed,
        };
        w.finish(Some(Err(error)));
    }
}

/// Starts the flusher; `committed` is the durable head at open.
pub(crate) fn spawn(inner: Arc<Inner>, committed: Position) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("aftersales-store-flusher".to_string())
        .spawn(move || {
            let _stop = StopOnExit(&inner);
            run(&inner, committed);
        })
        .map_err(StoreError::Thread)
}

/// Marks the flusher as gone however it exits (even by panic), so nobody waits forever.
struct StopOnExit<'a>(&'a Inner);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let inner = self.0;
        let mut d = inner.lock_durable();
        if std::thread::panicking() && d.failure.is_none() {
            d.failure = Some("the flusher thread panicked".to_string());
        }
        d.stopped = true;
        let waiters = d.acks.take_all();
        drop(d);
        inner.durable_cv.notify_all();
        fail_all(inner, waiters);
    }
}

/// Flushes, and hands each flush's acknowledged appenders to a waker thread of its own.
/// With format 2 the writer is no longer the bottleneck and the flushes are: waking the
/// appenders one by one (a futex call each, about 7 µs) in the flusher delayed the next
/// flush by a quarter of a millisecond. With the waker the flusher goes straight on to
/// the next flush (64 writers × 1 event: 1,240 flushes/s instead of 650, +20% events/s).
fn run(inner: &Inner, committed: Position) {
    let (to_wake, woken) = std::sync::mpsc::channel::<Vec<Arc<Waiter>>>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for batch in woken {
                for w in batch {
                    w.finish(None);
                }
            }
        });
        flush_loop(inner, committed, to_wake);
    });
}

/// The flusher proper; returning drops `to_wake`, which ends the waker.
fn flush_loop(
    inner: &Inner,
    mut committed: Position,
    to_wake: std::sync::mpsc::Sender<Vec<Arc<Waiter>>>,
) {
    // The group the last flush acknowledged and how long that flush took.
    let mut last_group: u64 = 0;
    let mut last_flush = std::time::Duration::ZERO;
    let mut flushed_at = std::time::Instant::now();
    // The index marker the last commit wrote; none yet (a store opened without one reads
    // as fully indexed, so the first commit must write it).
    let mut marked = Position::MAX;
    loop {
        let (target, target_hash, indexed) = {
            let mut p = inner.lock_pending();
            // The appenders just acknowledged usually append again at once. Flushing
            // before they are back splits them into two groups that then alternate,
            // each paying a whole flush (64 writers x 1 event: ~27 events per flush).
            // So wait for as many events as the last flush acknowledged, beyond those
            // already written, until as long after that flush as it took: no append
            // waits more than one extra flush time, and an idle store not at all.
            let want = (p.written - committed).saturating_add(last_group);
            let until = flushed_at + last_flush.min(MAX_GATHER_WAIT);
            // Appends already queued behind the writer are microseconds away from being
            // written: flushing before them would cost them a whole extra flush. Wait
            // for the writer to finish its batch, up to a bound that keeps the flush
            // overlapping with writing.
            while !p.closing
                && (p.written == committed
                    || (p.more_queued && p.written - committed < GATHER_EVENTS))
            {
                p = inner.pending_cv.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            while !p.closing && p.written - committed < want {
                let now = std::time::Instant::now();
                if now >= until {
                    break;
                }
                p = inner
                    .pending_cv
                    .wait_timeout(p, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if p.written == committed {
                // Closing and nothing left to flush. The writer moved its overlay into
                // sled before it stopped: the index marker says so, and the next open has
                // nothing to add.
                if p.indexed > marked && inner.lock_durable().failure.is_none() {
                    if let Err(reason) = commit(inner, committed, Some(p.indexed)) {
                        tracing::warn!(%reason, "the final index marker could not be written");
                    }
                }
                // The watermark is made durable too.
                if let Err(e) = inner.watermark.sync_data() {
                    tracing::warn!(error = %e, "the acknowledged watermark could not be synced");
                }
                return;
            }
            (p.written, p.written_hash, p.indexed)
        };
        if inner.lock_durable().failure.is_some() {
            return;
        }
        let started = std::time::Instant::now();
        // The index marker moves once a generation of the overlay is in sled; between
        // two, the one in sled still holds.
        if let Err(reason) = commit(inner, target, (indexed != marked).then_some(indexed)) {
            poison(inner, reason);
            return;
        }
        marked = indexed;
        inner.flushes.fetch_add(1, Ordering::Relaxed);
        flushed_at = std::time::Instant::now();
        last_flush = flushed_at - started;
        last_group = target - committed;
        committed = target;
        let mut d = inner.lock_durable();
        d.head = target;
        d.head_hash = target_hash;
        inner.durable_head.store(target, Ordering::Release);
        let acknowledged = d.acks.take_covered(target);
        drop(d);
        // Subscribers wait on the condition variable; appenders are woken one by one, by
        // the waker (or here if it is gone).
        inner.durable_cv.notify_all();
        if let Err(unsent) = to_wake.send(acknowledged) {
            for w in unsent.0 {
                w.finish(None);
            }
        }
        // After the acks: it guards against a later loss of these records, it does not
        // make them durable (sled's flush did).
        let mark = Watermark {
            position: target,
            hash: target_hash,
        };
        if let Err(e) = watermark::write(&inner.watermark, &mark) {
            tracing::warn!(error = %e, "the acknowledged watermark could not be written");
        }
    }
}

/// Makes everything up to `target` durable: markers, flush, sync to disk. `indexed` (when
/// it moved) goes first: sled recovers a prefix of its log, so a commit marker that
/// survives a crash always comes with the index marker of its flush.
fn commit(inner: &Inner, target: Position, indexed: Option<Position>) -> Result<(), String> {
    if let Some(indexed) = indexed {
        inner
            .db
            .insert(keys::INDEXED_KEY, &keys::position_value(indexed))
            .map_err(|e| format!("writing the index marker failed: {e}"))?;
    }
    inner
        .db
        .insert(keys::HEAD_KEY, &keys::position_value(target))
        .map_err(|e| format!("writing the commit marker failed: {e}"))?;
    inner
        .db
        .flush()
        .map_err(|e| format!("flushing to disk failed: {e}"))?;
    if let Some(disk) = &inner.disk {
        disk.sync()
            .map_err(|e| format!("syncing sled's files failed: {e}"))?;
    }
    Ok(())
}

/// Removes what a crash left beyond the commit marker (groups that were never
/// acknowledged) and returns the committed head and the number of records removed. The
/// chunk entries go before the pages, so an interrupted repair finds them again from the
/// pages on the next open (the writer writes each page before its chunks for the same
/// reason).
pub(crate) fn repair_uncommitted_tail(db: &sled::Db) -> Result<(Position, u64), StoreError> {
    let committed = match db
        .get(keys::HEAD_KEY)
        .map_err(StoreError::storage("read the commit marker"))?
    {
        None => 0,
        Some(v) => keys::parse_position_value(&v).ok_or_else(|| StoreError::CorruptIndex {
            reason: format!("the commit marker is {} bytes, not 8", v.len()),
        })?,
    };
    let mut pages = Vec::new();
    let mut chunks = std::collections::BTreeSet::new();
    let mut removed = 0u64;
    let tail = db.range(keys::log_key(committed.saturating_add(1))..=keys::log_key(u64::MAX));
    for item in tail {
        let (key, page) = item.map_err(StoreError::storage("read the uncommitted tail"))?;
        let first = keys::parse_log_key(&key).unwrap_or(0);
        // sled writes each insert whole, so a surviving page is never torn.
        for event in crate::reads::decode_page(first, &page)? {
            chunks.insert(keys::chunk_key(
                &event.stream,
                keys::chunk_of(event.version).0,
            ));
            removed += 1;
        }
        pages.push(key);
    }
    // A group never straddles the marker: the flusher commits whole pages.
    if let Some((first, page)) = crate::reads::page_at(db, committed)? {
        let last = first + crate::reads::decode_page(first, &page)?.len() as u64 - 1;
        if last != committed {
            return Err(StoreError::CorruptRecord {
                position: committed,
                reason: format!(
                    "the commit marker names position {committed}, inside the page {first}..={last}"
                ),
            });
        }
    }
    for key in &chunks {
        let Some(value) = db
            .get(key)
            .map_err(StoreError::storage("read the stream index"))?
        else {
            continue;
        };
        let kept: Vec<u8> = keys::chunk_entries(&value)
            .ok_or_else(|| StoreError::CorruptIndex {
                reason: "a stream index chunk has the wrong length".to_string(),
            })?
            .into_iter()
            .filter(|(position, _)| *position <= committed)
            .fold(Vec::new(), |mut chunk, (position, id)| {
                keys::push_entry(&mut chunk, position, &id);
                chunk
            });
        let done = if kept.is_empty() {
            db.remove(key).map(|_| ())
        } else {
            db.insert(key.as_slice(), kept).map(|_| ())
        };
        done.map_err(StoreError::storage("remove uncommitted index entries"))?;
    }
    for key in pages {
        db.remove(key)
            .map_err(StoreError::storage("remove an uncommitted page"))?;
    }
    if removed > 0 {
        db.flush()
            .map_err(StoreError::storage("flush the repaired store"))?;
    }
    Ok((committed, removed))
}

/// Adds the stream index entries a crash left out: those of committed records beyond the
/// index marker (they were in the writer's overlay, `crate::overlay`). Runs after
/// [`repair_uncommitted_tail`]; returns the number of entries added. A store without an
/// index marker (format 2, or nothing committed yet) is fully indexed.
pub(crate) fn reindex_committed_tail(
    db: &sled::Db,
    committed: Position,
) -> Result<u64, StoreError> {
    let corrupt = |reason: String| StoreError::CorruptIndex { reason };
    let indexed = match db
        .get(keys::INDEXED_KEY)
        .map_err(StoreError::storage("read the index marker"))?
    {
        None => committed,
        Some(v) => keys::parse_position_value(&v)
            .ok_or_else(|| corrupt(format!("the index marker is {} bytes, not 8", v.len())))?,
    };
    if indexed > committed {
        // The index marker of a commit whose commit marker never landed (a crash or a
        // failed write between the two inserts): what it covers up to the commit marker
        // is indexed, and beyond it nothing is left.
        db.insert(keys::INDEXED_KEY, &keys::position_value(committed))
            .map_err(StoreError::storage("write the index marker"))?;
        return Ok(0);
    }
    if indexed == committed {
        return Ok(0);
    }
    let Some((first, _)) = crate::reads::page_at(db, indexed + 1)? else {
        return Err(corrupt(format!(
            "no page holds position {}, below the commit marker {committed}",
            indexed + 1
        )));
    };
    // Chunks are changed in memory and inserted once each: the tail can hold thousands
    // of events of a few streams (the writer's overlay, see `crate::overlay`). Each is
    // held with whether it gained entries: one that had them all is not written again.
    let mut chunks: std::collections::HashMap<Vec<u8>, (Vec<u8>, bool)> = Default::default();
    let mut added = 0u64;
    for item in db.range(keys::log_key(first)..=keys::log_key(committed)) {
        let (key, page) = item.map_err(StoreError::storage("read the committed tail"))?;
        let page_first = keys::parse_log_key(&key).unwrap_or(0);
        for event in crate::reads::decode_page(page_first, &page)? {
            if event.position <= indexed || event.position > committed {
                continue;
            }
            let (chunk, index) = keys::chunk_of(event.version);
            let key = keys::chunk_key(&event.stream, chunk);
            let (bytes, gained) = match chunks.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let stored = db
                        .get(e.key())
                        .map_err(StoreError::storage("read the stream index"))?
                        .map_or_else(Vec::new, |v| v.to_vec());
                    e.insert((stored, false))
                }
            };
            let entries = if bytes.is_empty() {
                Vec::new()
            } else {
                keys::chunk_entries(bytes).ok_or_else(|| {
                    corrupt("a stream index chunk has the wrong length".to_string())
                })?
            };
            match entries.get(index) {
                Some(&(position, id)) if position == event.position && id == event.id => {}
                Some(_) => {
                    return Err(corrupt(format!(
                        "the index of {} holds another event at version {}",
                        event.stream, event.version
                    )))
                }
                None if entries.len() == index => {
                    keys::push_entry(bytes, event.position, &event.id);
                    *gained = true;
                    added += 1;
                }
                None => {
                    return Err(corrupt(format!(
                        "the index of {} has a gap before version {}",
                        event.stream, event.version
                    )))
                }
            }
        }
    }
    for (key, (bytes, _)) in chunks.into_iter().filter(|(_, (_, gained))| *gained) {
        db.insert(key, bytes)
            .map_err(StoreError::storage("write a stream index chunk"))?;
    }
    db.insert(keys::INDEXED_KEY, &keys::position_value(committed))
        .map_err(StoreError::storage("write the index marker"))?;
    db.flush()
        .map_err(StoreError::storage("flush the added index entries"))?;
    Ok(added)
}
