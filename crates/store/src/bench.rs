//! Throughput benchmark of durable appends, compared with bare sled.
//!
//! Called by `aftersales bench store [--quick]` and by the `store-bench` example. Each
//! case runs for a fixed time in a fresh directory:
//!
//! - store: W writer threads (1, 8, 64) each appending E events (1, 10) per call to its
//!   own streams with `ExpectedVersion::Exact`, every call waiting for durability;
//! - raw: one thread inserting batches of W×E records of the same size into bare sled
//!   (same cache size), one `flush()` per batch (plus the same `fdatasync` if the store
//!   runs with `fsync_after_flush`). This is the limit group commit can approach.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::error::StoreError;
use crate::keys;
use crate::record;
use crate::store::{Store, StoreConfig, DEFAULT_CACHE_CAPACITY};
use crate::types::{ExpectedVersion, NewEvent, StreamId};
use aftersales_clock::SystemClock;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Directory under which temporary stores are created (default: the OS temp dir).
    pub dir: Option<PathBuf>,
    /// How long each case runs.
    pub per_case: Duration,
    /// Writer thread counts to try.
    pub writers: Vec<usize>,
    /// Events per append to try.
    pub events_per_append: Vec<usize>,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Passed to [`StoreConfig::fsync_after_flush`] and mirrored in the raw runs.
    pub fsync_after_flush: bool,
}

impl BenchConfig {
    /// The full run: 4 s per case, about a minute.
    pub fn full() -> Self {
        Self {
            dir: None,
            per_case: Duration::from_secs(4),
            writers: vec![1, 8, 64],
            events_per_append: vec![1, 10],
            payload_bytes: 200,
            fsync_after_flush: true,
        }
    }

    /// The quick run: 0.7 s per case, about ten seconds.
    pub fn quick() -> Self {
        Self {
            per_case: Duration::from_millis(700),
            ..Self::full()
        }
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self::full()
    }
}

/// Result of one store case.
#[derive(Debug, Clone)]
pub struct StoreCase {
    /// Concurrent writer threads.
    pub writers: usize,
    /// Events per append call.
    pub events_per_append: usize,
    /// Acknowledged appends per second.
    pub appends_per_sec: f64,
    /// Acknowledged events per second.
    pub events_per_sec: f64,
    /// Median append latency.
    pub p50: Duration,
    /// 99th percentile append latency.
    pub p99: Duration,
    /// Size of the store directory after close, divided by events.
    pub bytes_per_event: f64,
    /// Events per group commit (one flush each).
    pub events_per_flush: f64,
}

/// What a bare-sled case writes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawWrites {
    /// One insert of the record: the limit group commit is measured against.
    Records,
    /// What the store's format writes (per batch one page holding its records and the
    /// commit marker, per record an insert of its stream's index chunk): the gap between
    /// this and the store is the cost of group commit itself, the gap between this and
    /// [`RawWrites::Records`] the cost of the format.
    StoreWrites,
}

/// Result of one bare-sled case.
#[derive(Debug, Clone)]
pub struct RawCase {
    /// What it writes per record.
    pub writes: RawWrites,
    /// Records per flush.
    pub batch: usize,
    /// Records per second.
    pub events_per_sec: f64,
    /// Size of the directory after close, divided by records.
    pub bytes_per_event: f64,
}

/// Everything measured in one run; `Display` prints the tables.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The configuration used.
    pub config: BenchConfig,
    /// Encoded size of one log record in bytes.
    pub record_bytes: usize,
    /// CPUs available to this process.
    pub cpus: usize,
    /// Store cases.
    pub store: Vec<StoreCase>,
    /// Bare sled cases.
    pub raw: Vec<RawCase>,
}

impl BenchReport {
    /// The raw figure a store case is compared with (batch = writers × events).
    pub fn raw_for(&self, case: &StoreCase) -> Option<&RawCase> {
        self.raw_of(case, RawWrites::Records)
    }

    /// The bare-sled figure of `writes` at a store case's batch size.
    pub fn raw_of(&self, case: &StoreCase, writes: RawWrites) -> Option<&RawCase> {
        let batch = case.writers * case.events_per_append;
        self.raw
            .iter()
            .find(|r| r.batch == batch && r.writes == writes)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "event store benchmark: {:.1} s per case, payload {} B (record {} B), \
             fsync_after_flush={}, {} CPUs",
            self.config.per_case.as_secs_f64(),
            self.config.payload_bytes,
            self.record_bytes,
            self.config.fsync_after_flush,
            self.cpus
        )?;
        writeln!(
            f,
            "{:>7} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} | {:>9} {:>10} {:>6} | {:>10} {:>6}",
            "writers",
            "ev/append",
            "appends/s",
            "events/s",
            "ev/flush",
            "p50 ms",
            "p99 ms",
            "B/event",
            "raw batch",
            "raw ev/s",
            "ratio",
            "same ev/s",
            "ratio"
        )?;
        for c in &self.store {
            let raw = self.raw_for(c);
            let same = self.raw_of(c, RawWrites::StoreWrites);
            writeln!(
                f,
                "{:>7} {:>9} {:>10.0} {:>10.0} {:>8.1} {:>9.2} {:>9.2} {:>9.0} | {:>9} {:>10.0} {:>6.2} | {:>10.0} {:>6.2}",
                c.writers,
                c.events_per_append,
                c.appends_per_sec,
                c.events_per_sec,
                c.events_per_flush,
                c.p50.as_secs_f64() * 1e3,
                c.p99.as_secs_f64() * 1e3,
                c.bytes_per_event,
                raw.map_or(0, |r| r.batch),
                raw.map_or(0.0, |r| r.events_per_sec),
                raw.map_or(0.0, |r| c.events_per_sec / r.events_per_sec),
                same.map_or(0.0, |r| r.events_per_sec),
                same.map_or(0.0, |r| c.events_per_sec / r.events_per_sec),
            )?;
        }
        writeln!(
            f,
            "bare sled (1 thread, N records then one flush; ratio = store / raw; \
             same = the store's own writes per record, so store / same is group commit alone):"
        )?;
        for r in &self.raw {
            let what = match r.writes {
                RawWrites::Records => "records only",
                RawWrites::StoreWrites => "store's writes",
            };
            writeln!(
                f,
                "  batch {:>4}, {what:<14}: {:>10.0} records/s, {:>6.0} B/record on disk",
                r.batch, r.events_per_sec, r.bytes_per_event
            )?;
        }
        Ok(())
    }
}

/// Runs every case of `config` and returns the figures.
pub fn run(config: &BenchConfig) -> Result<BenchReport, StoreError> {
    let parent = config.dir.clone().unwrap_or_else(std::env::temp_dir);
    let record_bytes = record::encoded_len(
        "bench-00-000".len(),
        "bench.event".len(),
        config.payload_bytes,
    );
    let mut report = BenchReport {
        config: config.clone(),
        record_bytes,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        store: Vec::new(),
        raw: Vec::new(),
    };
    for &events in &config.events_per_append {
        for &writers in &config.writers {
            let dir = scratch_dir(&parent, &format!("store-{writers}x{events}"))?;
            let case = run_store_case(config, &dir, writers, events);
            remove_dir(&dir);
            report.store.push(case?);
            let batch = writers * events;
            for writes in [RawWrites::Records, RawWrites::StoreWrites] {
                if report
                    .raw
                    .iter()
                    .all(|r| r.batch != batch || r.writes != writes)
                {
                    let dir = scratch_dir(&parent, &format!("raw-{batch}-{writes:?}"))?;
                    let case = run_raw_case(config, &dir, batch, record_bytes, writes);
                    remove_dir(&dir);
                    report.raw.push(case?);
                }
            }
        }
    }
    report
        .raw
        .sort_by_key(|r| (r.batch, r.writes == RawWrites::StoreWrites));
    Ok(report)
}

fn scratch_dir(parent: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = parent.join(format!(
        "aftersales-store-bench-{}-{nanos}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
        action: "create benchmark directory",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove benchmark directory");
    }
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run_store_case(
    config: &BenchConfig,
    dir: &Path,
    writers: usize,
    events: usize,
) -> Result<StoreCase, StoreError> {
    let store_config =
        StoreConfig::new(Arc::new(SystemClock)).with_fsync_after_flush(config.fsync_after_flush);
    let store = Arc::new(Store::open(dir, store_config)?);
    let payload = vec![0x5a; config.payload_bytes];
    let start = Instant::now();
    let deadline = start + config.per_case;
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            let payload = payload.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, StoreError> {
                // Each writer owns 100 streams (tickets) and tracks their versions.
                let streams: Vec<StreamId> = (0..100)
                    .map(|s| StreamId::new(format!("bench-{w:02}-{s:03}")))
                    .collect::<Result<_, _>>()?;
                let mut versions = vec![0u64; streams.len()];
                let mut latencies = Vec::new();
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let s = i % streams.len();
                    let batch = (0..events)
                        .map(|_| NewEvent::new(Uuid::new_v4(), "bench.event", payload.clone()))
                        .collect();
                    let t = Instant::now();
                    let result =
                        store.append(&streams[s], ExpectedVersion::Exact(versions[s]), batch)?;
                    latencies.push(t.elapsed());
                    versions[s] = result.stream_version;
                    i += 1;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in threads {
        match t.join() {
            Ok(l) => latencies.extend(l?),
            Err(_) => {
                return Err(StoreError::Poisoned {
                    reason: "a benchmark writer thread panicked".to_string(),
                })
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let flushes = store.flushes();
    store.close()?;
    drop(store);
    latencies.sort_unstable();
    let appends = latencies.len() as f64;
    let total_events = appends * events as f64;
    Ok(StoreCase {
        writers,
        events_per_append: events,
        appends_per_sec: appends / elapsed,
        events_per_sec: total_events / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        bytes_per_event: dir_size(dir) as f64 / total_events.max(1.0),
        events_per_flush: total_events / flushes.max(1) as f64,
    })
}

fn run_raw_case(
    config: &BenchConfig,
    dir: &Path,
    batch: usize,
    record_bytes: usize,
    writes: RawWrites,
) -> Result<RawCase, StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(DEFAULT_CACHE_CAPACITY)
        .open()
        .map_err(StoreError::storage("open bare sled"))?;
    let data_file = if config.fsync_after_flush {
        let path = dir.join("db");
        Some(File::open(&path).map_err(|source| StoreError::Io {
            action: "open sled's data file",
            path,
            source,
        })?)
    } else {
        None
    };
    let value = vec![0x5a; record_bytes];
    // The store's chunks as its writer holds them: (version, current chunk) per stream.
    let mut chunks: std::collections::HashMap<u64, (u64, Vec<u8>)> = Default::default();
    let start = Instant::now();
    let deadline = start + config.per_case;
    let mut position = 0u64;
    while Instant::now() < deadline {
        let first = position + 1;
        let mut page = Vec::new();
        for _ in 0..batch {
            position += 1;
            match writes {
                RawWrites::Records => {
                    db.insert(keys::log_key(position), value.clone())
                        .map_err(StoreError::storage("insert into bare sled"))?;
                }
                RawWrites::StoreWrites => {
                    page.extend_from_slice(&value);
                    store_chunk_write(&db, &mut chunks, position)?;
                }
            }
        }
        if writes == RawWrites::StoreWrites {
            db.insert(keys::log_key(first), page)
                .map_err(StoreError::storage("insert into bare sled"))?;
            db.insert(keys::HEAD_KEY, &keys::position_value(position))
                .map_err(StoreError::storage("insert into bare sled"))?;
        }
        db.flush().map_err(StoreError::storage("flush bare sled"))?;
        if let Some(f) = &data_file {
            f.sync_data().map_err(|source| StoreError::Io {
                action: "fdatasync",
                path: dir.join("db"),
                source,
            })?;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(data_file);
    drop(db);
    Ok(RawCase {
        writes,
        batch,
        events_per_sec: position as f64 / elapsed,
        bytes_per_event: dir_size(dir) as f64 / (position.max(1)) as f64,
    })
}

/// The stream index write the store makes for the record at `position`: its stream's
/// current chunk, with streams shaped like the store case's (100 per writer, one event
/// per append, so one chunk insert per record).
fn store_chunk_write(
    db: &sled::Db,
    chunks: &mut std::collections::HashMap<u64, (u64, Vec<u8>)>,
    position: u64,
) -> Result<(), StoreError> {
    let n = position % 6400;
    let stream = StreamId::new(format!("bench-{:02}-{:03}", n % 64, n / 64))?;
    let (version, chunk) = chunks.entry(n).or_default();
    *version += 1;
    if keys::chunk_of(*version).1 == 0 {
        chunk.clear();
    }
    keys::push_entry(chunk, position, &Uuid::new_v4());
    db.insert(
        keys::chunk_key(&stream, keys::chunk_of(*version).0),
        chunk.as_slice(),
    )
    .map_err(StoreError::storage("insert into bare sled"))?;
    Ok(())
}
