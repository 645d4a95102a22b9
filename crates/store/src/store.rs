//! Opening, closing and the shared state behind a [`Store`].

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::ack::{Acks, AppendFuture};
use crate::disk_sync::DiskSync;
use crate::error::StoreError;
use crate::flusher::{self, PendingState};
use crate::keys;
use crate::migrate;
use crate::overlay::Overlay;
use crate::record::GENESIS_HASH;
use crate::types::{
    Append, AppendResult, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamId,
};
use crate::watermark::{self, Watermark};
use crate::writer::{self, Queue};
use aftersales_clock::{Clock, SystemClock};
use chrono::{DateTime, Utc};

/// Default size of sled's page cache. sled's own default is 1 GiB, and its resident
/// memory grows well beyond the setting, so the store always sets it explicitly. 16 MiB:
/// with 64 the service's memory was still growing five minutes into the load test, with
/// 16 it was flat after two (RELIABILITY.md, "Memory").
pub const DEFAULT_CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

/// How to open a store.
#[derive(Clone)]
pub struct StoreConfig {
    /// sled page-cache size in bytes (default [`DEFAULT_CACHE_CAPACITY`]).
    pub cache_capacity: u64,
    /// Stamps `recorded_at` on every record.
    pub clock: Arc<dyn Clock>,
    /// After sled's `flush()`, also sync sled's files to the disk before acknowledging
    /// (default true): `fdatasync` of sled's data file, and of the blob files sled may
    /// have written since the last flush (`crate::disk_sync`; the first flush after open
    /// syncs the whole filesystem holding the store, `syncfs` on Linux). On Linux sled
    /// 0.34.7 flushes with `sync_file_range`, which survives a process crash but neither
    /// commits file-size metadata nor empties the drive's write cache, and it never syncs
    /// the blob files it writes for large nodes; so without this an acknowledged append
    /// can be lost on power loss. Turn it off only where that trade is acceptable (tests, benchmarks of
    /// sled).
    pub fsync_after_flush: bool,
    /// Whether the writer moves the stream index entries it holds in memory into sled
    /// whenever it has had nothing to do for a moment (default true). Off, they reach
    /// sled only once a generation is full (65,536 positions or 16,384 changed chunks)
    /// and on close: for tests of reads and of crash repair with the index far behind
    /// the log. Reads and acknowledgements do not depend on it.
    pub index_when_idle: bool,
}

impl StoreConfig {
    /// Defaults with the given clock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            clock,
            fsync_after_flush: true,
            index_when_idle: true,
        }
    }

    /// Sets the page-cache size in bytes.
    pub fn with_cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }

    /// Sets [`StoreConfig::fsync_after_flush`].
    pub fn with_fsync_after_flush(mut self, on: bool) -> Self {
        self.fsync_after_flush = on;
        self
    }

    /// Sets [`StoreConfig::index_when_idle`].
    pub fn with_index_when_idle(mut self, on: bool) -> Self {
        self.index_when_idle = on;
        self
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("cache_capacity", &self.cache_capacity)
            .field("fsync_after_flush", &self.fsync_after_flush)
            .field("index_when_idle", &self.index_when_idle)
            .finish_non_exhaustive()
    }
}

/// What is known to be on disk; guarded by `Inner::durable`.
pub(crate) struct DurableState {
    /// Highest acknowledged (flushed) position.
    pub head: Position,
    /// Hash of the record at `head`.
    pub head_hash: [u8; 32],
    /// Set when a write or flush failed; nothing after `head` will ever be acknowledged.
    pub failure: Option<String>,
    /// Set once the flusher thread has exited (after `close` or a failure).
    pub stopped: bool,
    /// Appenders waiting for the flush that covers their events.
    pub acks: Acks,
}

/// State shared by the store handle, the flusher thread and subscriptions.
pub(crate) struct Inner {
    pub db: sled::Db,
    pub path: PathBuf,
    pub clock: Arc<dyn Clock>,
    /// Syncs sled's files after each flush (see `fsync_after_flush`).
    pub disk: Option<DiskSync>,
    /// The acknowledged watermark, rewritten by the flusher (`crate::watermark`).
    pub watermark: File,
    /// Appends waiting for the writer thread.
    pub queue: Mutex<Queue>,
    /// Wakes the writer thread.
    pub queue_cv: Condvar,
    /// What is written and waiting for the flusher.
    pub pending: Mutex<PendingState>,
    /// Wakes the flusher when something was written or the store is closing.
    pub pending_cv: Condvar,
    pub durable: Mutex<DurableState>,
    /// Notified after every flush, failure or stop: subscribers wait here.
    pub durable_cv: Condvar,
    /// Mirror of `durable.head` so readers need no lock.
    pub durable_head: AtomicU64,
    /// Group commits (flushes) done since open.
    pub flushes: AtomicU64,
    /// Stream index chunks not yet in sled (`crate::overlay`).
    pub overlay: Overlay,
    /// See [`StoreConfig::index_when_idle`].
    pub index_when_idle: bool,
}

impl Inner {
    /// Highest acknowledged position; every read is bounded by it.
    pub fn head(&self) -> Position {
        self.durable_head.load(Ordering::Acquire)
    }

    pub fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Requests are pushed and drained whole; a panic elsewhere cannot tear the queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock_pending(&self) -> MutexGuard<'_, PendingState> {
        // Plain values updated in one step; a panic elsewhere cannot tear them.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock_durable(&self) -> MutexGuard<'_, DurableState> {
        // The guarded fields are plain values updated in one step, so a panic elsewhere
        // cannot leave them half-written; keep going.
        self.durable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An event store in one directory. Share it between threads with `Arc<Store>`; all
/// methods block (call them from `spawn_blocking` in async code).
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    /// Writer and flusher threads, joined by `close`.
    threads: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("head", &self.inner.head())
            .finish_non_exhaustive()
    }
}

/// The name sled gives the tree every database has.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

impl Store {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// Fails with a typed error, never a panic, if the directory holds a database that is
    /// not ours, one written by a newer format, or a corrupt head record. A directory
    /// locked by another opening is waited for up to 2 s, then refused with
    /// [`StoreError::AlreadyInUse`].
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        refuse_foreign_directory(&path)?;
        repair_interrupted_sled_conf(&path)?;
        let db = open_sled(&path, config.cache_capacity)?;
        let format = check_format(&db, &path)?;
        migrate::upgrade(&db, format)?;
        let (committed, discarded) = flusher::repair_uncommitted_tail(&db)?;
        if discarded > 0 {
            tracing::warn!(
                path = %path.display(),
                discarded,
                "removed events written but never acknowledged before a crash"
            );
        }
        let reindexed = flusher::reindex_committed_tail(&db, committed)?;
        if reindexed > 0 {
            tracing::warn!(
                path = %path.display(),
                reindexed,
                "added stream index entries of acknowledged events a crash left out"
            );
        }
        let (head, head_hash, last_recorded_at) = load_head(&db, committed)?;
        check_watermark(&db, &path, head)?;
        let watermark = watermark::open_for_writes(
            &path,
            &Watermark {
                position: head,
                hash: head_hash,
            },
        )?;
        let disk = if config.fsync_after_flush {
            Some(DiskSync::open(&path).map_err(|source| StoreError::Io {
                action: "open sled's data file",
                path: path.join("db"),
                source,
            })?)
        } else {
            None
        };
        let inner = Arc::new(Inner {
            db,
            path,
            clock: config.clock,
            disk,
            watermark,
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            pending: Mutex::new(PendingState {
                written: head,
                written_hash: head_hash,
                indexed: head,
                closing: false,
                more_queued: false,
            }),
            pending_cv: Condvar::new(),
            durable: Mutex::new(DurableState {
                head,
                head_hash,
                failure: None,
                stopped: false,
                acks: Acks::default(),
            }),
            durable_cv: Condvar::new(),
            durable_head: AtomicU64::new(head),
            flushes: AtomicU64::new(0),
            overlay: Overlay::default(),
            index_when_idle: config.index_when_idle,
        });
        let flusher = flusher::spawn(Arc::clone(&inner), head)?;
        let writer = match writer::spawn(Arc::clone(&inner), head, head_hash, last_recorded_at) {
            Ok(w) => w,
            Err(e) => {
                // Let the flusher exit so the database closes.
                inner.lock_pending().closing = true;
                inner.pending_cv.notify_all();
                let _ = flusher.join();
                return Err(e);
            }
        };
        tracing::debug!(path = %inner.path.display(), head, "event store opened");
        Ok(Store {
            inner,
            threads: Mutex::new(Some((writer, flusher))),
        })
    }

    /// Appends `events` to `stream` if its version matches `expected`, atomically (all
    /// or none), and returns once they are on disk.
    ///
    /// Idempotency, per stream: if every id is already stored in `stream`, nothing is
    /// written and the original positions come back with `deduplicated = true` (no
    /// version check: it is a redelivery). If only some ids are stored the append fails
    /// with [`StoreError::PartialDuplicate`]. Ids are not checked against other streams
    /// (the same id in two streams is two events): a redelivered platform message names
    /// the same ticket, so it comes back to the same stream (ARCHITECTURE.md, "Invariants").
    ///
    /// The calling thread sleeps with `std::thread::park` until its flush is done.
    pub fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        writer::append(&self.inner, stream, expected, events)
    }

    /// [`Store::append`] for async callers: the same checks and durability, but the
    /// caller's task is woken instead of its thread parked, so many concurrent appenders
    /// need no thread each. Never blocks: the append is queued before this returns, and
    /// the future is ready once it is durable (or refused). Many tasks on a few runtime
    /// threads share group commits without the kernel switching between them per append
    /// (BENCHMARKS.md, "Event store").
    pub fn append_async(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> AppendFuture {
        writer::append_async(&self.inner, stream, expected, events)
    }

    /// Several appends, to different streams or not, in one request: each is checked and
    /// made atomically on its own, exactly as [`Store::append`] would in this order (one
    /// failing leaves the others be), and all share one flush. Returns once every one
    /// that was written is on disk, with one outcome per append, in order; `Err` only
    /// when the store can write nothing (closed, or a write to disk failed).
    ///
    /// For a caller that has many appends in hand (the ingest's batches): one hand-off to
    /// the writer and one wake-up instead of one each.
    pub fn append_many(
        &self,
        appends: Vec<Append>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
        writer::append_many(&self.inner, appends)
    }

    /// Copies records from another store's log (a partition's store rebuilt from the
    /// events stream, docs/PARTITIONS.md), keeping their positions, versions, timestamps
    /// and hashes, so the copy's chain is the original's. Records must come in log order
    /// and start at or below this store's head + 1; those it already holds with the same
    /// hash are skipped. Returns once the written ones are durable, with
    /// `deduplicated = true` when there were none.
    ///
    /// The first record that would not continue this log (a gap, a different record
    /// already at its position, a stream version out of turn, a hash that does not follow
    /// from its bytes) fails the call with [`StoreError::ImportDiverges`]; the records
    /// before it stay written.
    pub fn import(&self, records: Vec<RecordedEvent>) -> Result<AppendResult, StoreError> {
        writer::import(&self.inner, records)
    }

    /// The directory of this store.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Highest acknowledged position (0 when empty).
    pub fn head_position(&self) -> Position {
        self.inner.head()
    }

    /// Hash of the record at [`Store::head_position`] (zeros when empty).
    pub fn head_hash(&self) -> [u8; 32] {
        self.inner.lock_durable().head_hash
    }

    /// Group commits (one flush each) since the store was opened: events acknowledged per
    /// flush is what group commit achieves.
    pub fn flushes(&self) -> u64 {
        self.inner.flushes.load(Ordering::Relaxed)
    }

    /// Why the store refuses appends, once a write to disk has failed (a full disk, an I/O
    /// error): it stays so until it is closed and opened again.
    pub fn failure(&self) -> Option<String> {
        self.inner.lock_durable().failure.clone()
    }

    /// Stops the flusher after a final flush. Appends already accepted are
    /// acknowledged; later ones fail with [`StoreError::Closed`]. Subscriptions deliver
    /// what is on disk and then end. Calling it twice is harmless.
    pub fn close(&self) -> Result<(), StoreError> {
        writer::request_close(&self.inner);
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((writer, flusher)) = threads {
            // The writer finishes the queued appends, then the flusher flushes them.
            let writer_ok = writer.join().is_ok();
            let flusher_ok = flusher.join().is_ok();
            if !(writer_ok && flusher_ok) {
                return Err(StoreError::Poisoned {
                    reason: "a background thread of the store panicked".to_string(),
                });
            }
        }
        // Every acknowledged append was flushed by the flusher; this flush covers sled's
        // own housekeeping writes.
        self.inner
            .db
            .flush()
            .map_err(StoreError::storage("flush on close"))?;
        match &self.inner.lock_durable().failure {
            Some(reason) => Err(StoreError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the event store failed");
        }
    }
}

/// A directory with files but without sled's `db` file is someone else's: sled would
/// happily create its files among them.
fn refuse_foreign_directory(path: &Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                action: "read directory",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut foreign = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "db" {
            return Ok(());
        }
        // sled creates `blobs/` and `conf` before `db`: a kill in between (seen in the
        // crash test) leaves only those, and that directory must still open.
        let sled_own =
            name == "conf" || name == "blobs" || name.to_string_lossy().starts_with("snap.");
        foreign |= !sled_own;
    }
    if foreign {
        return Err(StoreError::ForeignDatabase {
            path: path.to_path_buf(),
            reason: "the directory holds other files and no sled database".to_string(),
        });
    }
    Ok(())
}

/// What sled 0.34.7 writes to `conf` for the settings this crate always uses (default
/// segment size, no compression), before its CRC.
const SLED_CONF_BODY: &[u8] = b"segment_size: 524288\nuse_compression: false\nversion: 0.34\n";

/// sled writes `conf` only when it creates a database, in two writes: the settings, then
/// a CRC. If the process dies in between, sled reads the last four bytes of the settings
/// as the CRC and refuses to open the database ever again (`Corruption`), so a kill
/// during the very first open would brick the store (found by the crash test). A `conf`
/// that is an unfinished prefix of the settings is removed, and sled writes it again.
fn repair_interrupted_sled_conf(path: &Path) -> Result<(), StoreError> {
    let conf = path.join("conf");
    let bytes = match std::fs::read(&conf) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io {
                action: "read sled's conf file",
                path: conf,
                source,
            })
        }
    };
    // sled itself treats 8 bytes or fewer as "no conf".
    if bytes.len() > 8 && SLED_CONF_BODY.starts_with(&bytes) {
        tracing::warn!(path = %conf.display(), "removing sled conf file cut short by a crash");
        std::fs::remove_file(&conf).map_err(|source| StoreError::Io {
            action: "remove the incomplete conf file",
            path: conf,
            source,
        })?;
    }
    Ok(())
}

/// How long an open waits for the directory's lock. sled's background threads keep a
/// closed database's lock for up to 500 ms after the last handle is dropped, so a store
/// closed and reopened by one process (a test, a partition gained back) would otherwise be
/// refused; a store that another live process holds is still refused, only later.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn open_sled(path: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    let waited_since = std::time::Instant::now();
    loop {
        match open_sled_repairing(path, cache_capacity) {
            Err(StoreError::AlreadyInUse { .. }) if waited_since.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn open_sled_repairing(path: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    match open_sled_once(path, cache_capacity) {
        // sled lists every `snap.*` file as a snapshot candidate, including the
        // `snap.<lsn>.generating` file it writes before renaming it into place, and reads
        // the one with the highest name. A process killed while writing a snapshot (sled
        // writes one during recovery in every open) leaves a partial `.generating`
        // file that sorts last, and every later open fails with `Corruption` (found by
        // the crash test). The file is a half-written cache of the log, never the only
        // copy of anything: remove it and open again from the previous snapshot and the
        // log. Only done after sled refused to open, i.e. while nobody else has it open.
        Err(StoreError::Storage {
            source: sled::Error::Corruption { .. },
            ..
        }) if remove_interrupted_snapshots(path)? > 0 => open_sled_once(path, cache_capacity),
        other => other,
    }
}

/// Deletes `snap.*.generating` files; returns how many.
fn remove_interrupted_snapshots(path: &Path) -> Result<usize, StoreError> {
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(path).map_err(io_error("read directory", path))? {
        let entry = entry.map_err(io_error("read directory", path))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %entry.path().display(), "removing sled snapshot cut short by a crash");
            std::fs::remove_file(entry.path())
                .map_err(io_error("remove the incomplete snapshot", &entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn open_sled_once(path: &Path, cache_capacity: u64) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_capacity)
        // sled's background thread only writes buffers, cleans segments and fsyncs every
        // 500 ms; acknowledgement never relies on it (the flusher thread flushes).
        .flush_every_ms(Some(500));
    // sled 0.34 panics instead of erroring on some damaged files; a damaged store must
    // be a typed error for the caller, not a crashed service.
    let opened = catch_unwind(AssertUnwindSafe(|| config.open()));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
            Err(StoreError::AlreadyInUse {
                path: path.to_path_buf(),
            })
        }
        Ok(Err(source)) => Err(StoreError::Storage {
            action: "open the database",
            source,
        }),
        Err(panic) => Err(StoreError::StoragePanicked {
            action: "open the database",
            path: path.to_path_buf(),
            message: panic_message(&panic),
        }),
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Accepts our own formats (returning which), initialises an empty database, refuses
/// anything else.
fn check_format(db: &sled::Db, path: &Path) -> Result<u32, StoreError> {
    let foreign = |reason: String| StoreError::ForeignDatabase {
        path: path.to_path_buf(),
        reason,
    };
    let extra: Vec<String> = db
        .tree_names()
        .into_iter()
        .filter(|name| name.as_ref() != SLED_DEFAULT_TREE)
        .map(|name| String::from_utf8_lossy(&name).into_owned())
        .collect();
    if !extra.is_empty() {
        return Err(foreign(format!(
            "it has trees we never create: {}",
            extra.join(", ")
        )));
    }
    match db
        .get(keys::FORMAT_KEY)
        .map_err(StoreError::storage("read the format marker"))?
    {
        Some(value) => {
            let found = keys::parse_format_value(&value).map_err(foreign)?;
            if found > keys::FORMAT_VERSION {
                return Err(StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    found,
                    supported: keys::FORMAT_VERSION,
                });
            }
            if found == 0 {
                return Err(foreign("its format marker has version 0".to_string()));
            }
            Ok(found)
        }
        None => {
            if db
                .first()
                .map_err(StoreError::storage("read the first key"))?
                .is_some()
            {
                return Err(foreign(
                    "it holds data but no aftersales-store format marker".to_string(),
                ));
            }
            db.insert(keys::FORMAT_KEY, keys::format_value())
                .map_err(StoreError::storage("write the format marker"))?;
            db.flush()
                .map_err(StoreError::storage("flush the format marker"))?;
            Ok(keys::FORMAT_VERSION)
        }
    }
}

/// Reads the last record: head position, chain hash and the recorded-at floor. After the
/// repair it must be the record the commit marker names.
/// Refuses a log that ends before, or differs at, the last position acknowledged.
fn check_watermark(db: &sled::Db, path: &Path, head: Position) -> Result<(), StoreError> {
    let Some(w) = watermark::read(path)? else {
        return Ok(());
    };
    if w.position > head {
        return Err(StoreError::Truncated {
            acknowledged: w.position,
            head,
        });
    }
    if w.position == 0 {
        return Ok(());
    }
    let record = crate::reads::read_record_in(db, w.position)?.ok_or(StoreError::Truncated {
        acknowledged: w.position,
        head: w.position - 1,
    })?;
    if record.hash != w.hash {
        return Err(StoreError::CorruptRecord {
            position: w.position,
            reason: "its hash-chain link is not the one acknowledged at this position (see the \
                     `acknowledged` file): the log was changed or replaced"
                .to_string(),
        });
    }
    Ok(())
}

fn load_head(
    db: &sled::Db,
    committed: Position,
) -> Result<(Position, [u8; 32], DateTime<Utc>), StoreError> {
    let last = db
        .range(keys::log_key(0)..=keys::log_key(u64::MAX))
        .next_back()
        .transpose()
        .map_err(StoreError::storage("read the last record"))?;
    let Some((key, value)) = last else {
        if committed > 0 {
            return Err(StoreError::CorruptRecord {
                position: committed,
                reason: "the log is empty although this position was acknowledged".to_string(),
            });
        }
        return Ok((0, GENESIS_HASH, DateTime::<Utc>::MIN_UTC));
    };
    let first = keys::parse_log_key(&key).unwrap_or(0);
    let page = crate::reads::decode_page(first, &value)?;
    let last = page.last().expect("a decoded page holds a record");
    if last.position != committed {
        return Err(StoreError::CorruptRecord {
            position: committed,
            reason: format!(
                "the log ends at position {} although {committed} was acknowledged",
                last.position
            ),
        });
    }
    Ok((last.position, last.hash, last.recorded_at))
}
