//! Throughput benchmark of durable appends, compared with bare sled.
//!
//! Called by `aftersales bench store [--quick]` and by the `store-bench` example. Each
//! case runs for a fixed time in a fresh directory:
//!
//! - store: W writer threads (1, 8, 64) each appending E events (1, 10) per call to its
//!   own streams with `ExpectedVersion::Exact`, every call waiting for durability;
//! - raw: one thread inserting batches of W×E records of the same size into bare sled
//!   (same cache size), one `flush()` per batch (plus the same sync to disk if the store
//!   runs with `fsync_after_flush`, `crate::disk_sync`). This is the limit group commit
//!   can approach.

use std::fmt;
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

/// CPU time from /proc (Linux; `None` elsewhere), for benchmarks that show whether a
/// figure is bound by the machine's cores.
pub mod cpu {
    /// Microseconds per tick: the kernel counts in USER_HZ, 100 on every Linux we build for.
    pub const TICK_US: f64 = 10_000.0;

    /// User + system ticks of a process (`"self"` or a pid): fields 14 and 15 of
    /// /proc/<pid>/stat.
    pub fn process_ticks(pid: &str) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces; the fields after it are plain.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(utime + stime)
    }

    /// CPU time of each live thread of this process in nanoseconds, by thread id, with the
    /// thread's name (the kernel keeps 15 bytes of it). From the scheduler's own count
    /// (/proc/<tid>/schedstat): per-thread ticks are rounded down to 10 ms each, which in
    /// a phase of a few seconds hid whole threads' work.
    pub fn thread_ns() -> Vec<(u64, String, u64)> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .filter_map(|t| {
                let tid = t.ok()?.file_name().to_str()?.to_owned();
                let ns = thread_cpu_ns(&format!("self/task/{tid}"))?;
                let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
                Some((tid.parse().ok()?, name.trim_end().to_owned(), ns))
            })
            .collect()
    }

    /// Nanoseconds a thread (`"thread-self"` or `"self/task/<tid>"`) has run: the first
    /// field of its schedstat, or its ticks where the kernel keeps no schedstat.
    pub fn thread_cpu_ns(task: &str) -> Option<u64> {
        match std::fs::read_to_string(format!("/proc/{task}/schedstat")) {
            Ok(stat) => stat.split_whitespace().next()?.parse().ok(),
            Err(_) => process_ticks(task).map(|t| t * (TICK_US as u64) * 1_000),
        }
    }

    /// Busy and total ticks of all the machine's CPUs (first line of /proc/stat:
    /// `cpu user nice system idle iowait irq softirq steal …`).
    pub fn machine_ticks() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let all: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
        Some((all - idle, all))
    }

    #[cfg(all(test, target_os = "linux"))]
    mod tests {
        use super::*;

        #[test]
        fn a_busy_thread_shows_in_the_process_and_machine_ticks() {
            let (busy0, all0) = machine_ticks().expect("/proc/stat");
            let own0 = process_ticks("self").expect("/proc/self/stat");
            let mine0 = process_ticks("thread-self").expect("/proc/thread-self/stat");
            // Spin until this thread has used 5 ticks (50 ms) of CPU; a shared machine
            // may take longer to give them. (Other tests share the process.)
            let started = std::time::Instant::now();
            let mut x = 0u64;
            let mine = loop {
                for _ in 0..100_000 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                let mine = process_ticks("thread-self").unwrap();
                if mine - mine0 >= 5 {
                    break mine;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(30),
                    "30 s of spinning counted {} ticks",
                    mine - mine0
                );
            };
            let own = process_ticks("self").unwrap() - own0;
            let (busy1, all1) = machine_ticks().unwrap();
            // The process's and the threads' counts are scaled apart: allow a tick.
            assert!(
                own + 1 >= mine - mine0,
                "process {own}, thread {}",
                mine - mine0
            );
            assert!(busy1 - busy0 >= 3, "the machine's busy ticks did not move");
            assert!(busy1 - busy0 <= all1 - all0);
            assert!(process_ticks("999999999").is_none(), "no such process");
            // The scheduler's count of this thread is at least what its ticks say.
            let ns = thread_cpu_ns("thread-self").unwrap();
            assert!(
                ns >= (mine - mine0) * (TICK_US as u64) * 1_000,
                "{ns} ns against {} ticks",
                mine - mine0
            );
            let threads = thread_ns();
            assert!(
                threads.iter().any(|(_, _, t)| *t >= ns),
                "this thread is missing: {threads:?}"
            );
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Directory under which temporary stores are created (default: the OS temp dir).
    pub dir: Option<PathBuf>,
    /// How long each case runs, over all its rounds.
    pub per_case: Duration,
    /// Each case runs in this many rounds, each round the store and then bare sled for
    /// `per_case / rounds`, so that the machine's drift hits both alike; ratios are the
    /// median of the rounds' ratios.
    pub rounds: usize,
    /// Writer thread counts to try.
    pub writers: Vec<usize>,
    /// Events per append to try.
    pub events_per_append: Vec<usize>,
    /// How the writers wait for their appends (each kind runs every case).
    pub writer_kinds: Vec<WriterKind>,
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
            rounds: 4,
            writers: vec![1, 8, 64],
            events_per_append: vec![1, 10],
            writer_kinds: vec![WriterKind::Threads, WriterKind::Tasks],
            payload_bytes: 200,
            fsync_after_flush: true,
        }
    }

    /// The quick run: 0.7 s per case, about ten seconds.
    pub fn quick() -> Self {
        Self {
            per_case: Duration::from_millis(700),
            rounds: 1,
            ..Self::full()
        }
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self::full()
    }
}

/// How the benchmark's concurrent writers wait for their appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterKind {
    /// One OS thread per writer, blocking in [`Store::append`]: what a caller with a
    /// thread per request gets.
    Threads,
    /// One task per writer on a tokio runtime with a thread per CPU, awaiting
    /// [`Store::append_async`]: what async callers get.
    Tasks,
}

impl fmt::Display for WriterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriterKind::Threads => "threads",
            WriterKind::Tasks => "tasks",
        })
    }
}

/// Result of one store case.
#[derive(Debug, Clone)]
pub struct StoreCase {
    /// Threads or tasks.
    pub kind: WriterKind,
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
    /// Store / bare sled records only ([`RawWrites::Records`]), over the rounds.
    pub ratio: Spread,
    /// Store / bare sled making the store's writes ([`RawWrites::StoreWrites`]).
    pub ratio_same: Spread,
}

/// Median, lowest and highest of the rounds' ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Spread {
            median,
            min: values[0],
            max: values[n - 1],
        }
    }
}

/// What a bare-sled case writes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawWrites {
    /// One insert of the record: the limit group commit is measured against.
    Records,
    /// What the store's format writes (per batch its records in pages of up to 6 KiB and
    /// the markers; each changed stream index chunk once per generation of the writer's
    /// overlay, see `crate::overlay`): the gap between
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
    /// CPU time of the whole process (sled's threads included) per record.
    pub cpu_us_per_record: Option<f64>,
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
            "event store benchmark: {:.1} s per case in {} round(s), payload {} B (record {} B), \
             fsync_after_flush={}, {} CPUs",
            self.config.per_case.as_secs_f64(),
            self.config.rounds.max(1),
            self.config.payload_bytes,
            self.record_bytes,
            self.config.fsync_after_flush,
            self.cpus
        )?;
        writeln!(
            f,
            "{:>7} {:>7} {:>9} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} | {:>9} {:>10} {:>6} {:>11} | {:>10} {:>6}",
            "as",
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
            "rounds",
            "same ev/s",
            "ratio"
        )?;
        for c in &self.store {
            let raw = self.raw_for(c);
            let same = self.raw_of(c, RawWrites::StoreWrites);
            writeln!(
                f,
                "{:>7} {:>7} {:>9} {:>10.0} {:>10.0} {:>8.1} {:>9.2} {:>9.2} {:>9.0} | {:>9} {:>10.0} {:>6.2} {:>11} | {:>10.0} {:>6.2}",
                c.kind,
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
                c.ratio.median,
                format!("{:.2}-{:.2}", c.ratio.min, c.ratio.max),
                same.map_or(0.0, |r| r.events_per_sec),
                c.ratio_same.median,
            )?;
        }
        writeln!(
            f,
            "bare sled (1 thread, N records then one flush; ratio = store / raw, the median of \
             the rounds' (range: rounds); same = the store's own writes per record, so store / same is group commit alone):"
        )?;
        for r in &self.raw {
            let what = match r.writes {
                RawWrites::Records => "records only",
                RawWrites::StoreWrites => "store's writes",
            };
            let cpu = r
                .cpu_us_per_record
                .map_or_else(String::new, |us| format!(", {us:>5.1} us CPU/record"));
            writeln!(
                f,
                "  batch {:>4}, {what:<14}: {:>10.0} records/s, {:>6.0} B/record on disk{cpu}",
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
    let rounds = config.rounds.max(1);
    let slice = config.per_case / rounds as u32;
    for &events in &config.events_per_append {
        for &writers in &config.writers {
            let batch = writers * events;
            let mut store_rounds: Vec<Vec<StoreRound>> =
                vec![Vec::new(); config.writer_kinds.len()];
            let mut raw_rounds: [Vec<RawRound>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..rounds {
                for (k, &kind) in config.writer_kinds.iter().enumerate() {
                    let dir = scratch_dir(&parent, &format!("store-{kind}-{writers}x{events}"))?;
                    let round = run_store_case(config, &dir, writers, events, kind, slice);
                    remove_dir(&dir);
                    store_rounds[k].push(round?);
                }
                for (w, writes) in [RawWrites::Records, RawWrites::StoreWrites]
                    .into_iter()
                    .enumerate()
                {
                    let dir = scratch_dir(&parent, &format!("raw-{batch}-{writes:?}"))?;
                    let round = run_raw_case(config, &dir, batch, record_bytes, writes, slice);
                    remove_dir(&dir);
                    raw_rounds[w].push(round?);
                }
            }
            for (k, &kind) in config.writer_kinds.iter().enumerate() {
                report.store.push(store_case(
                    kind,
                    writers,
                    events,
                    &store_rounds[k],
                    &raw_rounds,
                ));
            }
            for (w, writes) in [RawWrites::Records, RawWrites::StoreWrites]
                .into_iter()
                .enumerate()
            {
                let (records, secs, bytes) = raw_rounds[w].iter().fold((0, 0.0, 0), |t, r| {
                    (t.0 + r.records, t.1 + r.seconds, t.2 + r.bytes)
                });
                let ticks: Option<u64> = raw_rounds[w].iter().map(|r| r.cpu_ticks).sum();
                report.raw.push(RawCase {
                    writes,
                    batch,
                    events_per_sec: records as f64 / secs.max(f64::EPSILON),
                    bytes_per_event: bytes as f64 / records.max(1) as f64,
                    cpu_us_per_record: ticks
                        .map(|t| t as f64 * cpu::TICK_US / records.max(1) as f64),
                });
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

/// One benchmark writer: its 100 streams (tickets) and their versions, and the latency
/// of each append it made.
struct BenchWriter {
    streams: Vec<StreamId>,
    versions: Vec<u64>,
    events: usize,
    payload: Vec<u8>,
    latencies: Vec<Duration>,
    next: usize,
}

impl BenchWriter {
    fn new(w: usize, events: usize, payload: Vec<u8>) -> Result<Self, StoreError> {
        let streams: Vec<StreamId> = (0..100)
            .map(|s| StreamId::new(format!("bench-{w:02}-{s:03}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            versions: vec![0; streams.len()],
            streams,
            events,
            payload,
            latencies: Vec::new(),
            next: 0,
        })
    }

    /// The next append: its stream, expected version and events.
    fn next_append(&self) -> (&StreamId, ExpectedVersion, Vec<NewEvent>) {
        let s = self.next % self.streams.len();
        let batch = (0..self.events)
            .map(|_| NewEvent::new(Uuid::new_v4(), "bench.event", self.payload.clone()))
            .collect();
        (
            &self.streams[s],
            ExpectedVersion::Exact(self.versions[s]),
            batch,
        )
    }

    fn done(&mut self, version: u64, started: Instant) {
        self.latencies.push(started.elapsed());
        let s = self.next % self.streams.len();
        self.versions[s] = version;
        self.next += 1;
    }
}

/// What one round of a store case measured.
#[derive(Debug, Clone)]
struct StoreRound {
    latencies: Vec<Duration>,
    events: u64,
    seconds: f64,
    flushes: u64,
    bytes: u64,
}

/// What one round of a bare-sled case measured.
#[derive(Debug, Clone)]
struct RawRound {
    records: u64,
    seconds: f64,
    bytes: u64,
    cpu_ticks: Option<u64>,
}

impl StoreRound {
    fn per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::EPSILON)
    }
}

impl RawRound {
    fn per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// A store case from its rounds, with each round's ratio to the raw rounds next to it.
fn store_case(
    kind: WriterKind,
    writers: usize,
    events: usize,
    rounds: &[StoreRound],
    raw: &[Vec<RawRound>; 2],
) -> StoreCase {
    let ratios = |raw: &[RawRound]| {
        Spread::of(
            rounds
                .iter()
                .zip(raw)
                .map(|(s, r)| s.per_sec() / r.per_sec().max(f64::EPSILON))
                .collect(),
        )
    };
    let mut latencies: Vec<Duration> = rounds.iter().flat_map(|r| r.latencies.clone()).collect();
    latencies.sort_unstable();
    let total_events: u64 = rounds.iter().map(|r| r.events).sum();
    let seconds: f64 = rounds
        .iter()
        .map(|r| r.seconds)
        .sum::<f64>()
        .max(f64::EPSILON);
    let flushes: u64 = rounds.iter().map(|r| r.flushes).sum();
    let bytes: u64 = rounds.iter().map(|r| r.bytes).sum();
    StoreCase {
        kind,
        writers,
        events_per_append: events,
        appends_per_sec: latencies.len() as f64 / seconds,
        events_per_sec: total_events as f64 / seconds,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        bytes_per_event: bytes as f64 / total_events.max(1) as f64,
        events_per_flush: total_events as f64 / flushes.max(1) as f64,
        ratio: ratios(&raw[0]),
        ratio_same: ratios(&raw[1]),
    }
}

fn run_store_case(
    config: &BenchConfig,
    dir: &Path,
    writers: usize,
    events: usize,
    kind: WriterKind,
    length: Duration,
) -> Result<StoreRound, StoreError> {
    let store_config =
        StoreConfig::new(Arc::new(SystemClock)).with_fsync_after_flush(config.fsync_after_flush);
    let store = Arc::new(Store::open(dir, store_config)?);
    let payload = vec![0x5a; config.payload_bytes];
    let bench_writers = (0..writers)
        .map(|w| BenchWriter::new(w, events, payload.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let deadline = start + length;
    let finished = match kind {
        WriterKind::Threads => run_threads(&store, bench_writers, deadline),
        WriterKind::Tasks => run_tasks(&store, bench_writers, deadline),
    };
    let mut latencies = Vec::new();
    for w in finished? {
        latencies.extend(w.latencies);
    }
    let seconds = start.elapsed().as_secs_f64();
    let flushes = store.flushes();
    store.close()?;
    drop(store);
    Ok(StoreRound {
        events: (latencies.len() * events) as u64,
        latencies,
        seconds,
        flushes,
        bytes: dir_size(dir),
    })
}

/// Each writer on a thread of its own, blocking in [`Store::append`].
fn run_threads(
    store: &Arc<Store>,
    writers: Vec<BenchWriter>,
    deadline: Instant,
) -> Result<Vec<BenchWriter>, StoreError> {
    let threads: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            let store = Arc::clone(store);
            std::thread::spawn(move || -> Result<BenchWriter, StoreError> {
                while Instant::now() < deadline {
                    let (stream, expected, batch) = w.next_append();
                    let t = Instant::now();
                    let result = store.append(stream, expected, batch)?;
                    w.done(result.stream_version, t);
                }
                Ok(w)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or_else(|_| {
                Err(StoreError::Poisoned {
                    reason: "a benchmark writer thread panicked".to_string(),
                })
            })
        })
        .collect()
}

/// Each writer a task on a multi-threaded runtime with one thread per CPU, awaiting
/// [`Store::append_async`].
fn run_tasks(
    store: &Arc<Store>,
    writers: Vec<BenchWriter>,
    deadline: Instant,
) -> Result<Vec<BenchWriter>, StoreError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
        .thread_name("store-bench-task")
        .build()
        .map_err(StoreError::Thread)?;
    runtime.block_on(async {
        let tasks: Vec<_> = writers
            .into_iter()
            .map(|mut w| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let (stream, expected, batch) = w.next_append();
                        let t = Instant::now();
                        let result = store.append_async(stream, expected, batch).await?;
                        w.done(result.stream_version, t);
                    }
                    Ok::<_, StoreError>(w)
                })
            })
            .collect();
        let mut done = Vec::with_capacity(tasks.len());
        for t in tasks {
            done.push(t.await.unwrap_or_else(|_| {
                Err(StoreError::Poisoned {
                    reason: "a benchmark writer task panicked".to_string(),
                })
            })?);
        }
        Ok(done)
    })
}

fn run_raw_case(
    config: &BenchConfig,
    dir: &Path,
    batch: usize,
    record_bytes: usize,
    writes: RawWrites,
    length: Duration,
) -> Result<RawRound, StoreError> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(DEFAULT_CACHE_CAPACITY)
        .open()
        .map_err(StoreError::storage("open bare sled"))?;
    let disk = if config.fsync_after_flush {
        Some(
            crate::disk_sync::DiskSync::open(dir).map_err(|source| StoreError::Io {
                action: "open sled's data file",
                path: dir.join("db"),
                source,
            })?,
        )
    } else {
        None
    };
    let value = vec![0x5a; record_bytes];
    let ticks_before = cpu::process_ticks("self");
    // The store's chunks as its writer holds them, and what changed since they were last
    // inserted (the overlay's fresh generation).
    let mut chunks = StoreChunks::default();
    let start = Instant::now();
    let deadline = start + length;
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
                    chunks.add(position)?;
                }
            }
        }
        if writes == RawWrites::StoreWrites {
            // Cut as the writer cuts its groups: pages of whole records up to
            // `PIECE_BYTES`.
            let per_page = (crate::writer::PIECE_BYTES / record_bytes.max(1)).max(1);
            for (i, records) in page.chunks(per_page * record_bytes).enumerate() {
                db.insert(keys::log_key(first + (i * per_page) as u64), records)
                    .map_err(StoreError::storage("insert into bare sled"))?;
            }
            db.insert(keys::INDEXED_KEY, &keys::position_value(chunks.indexed))
                .map_err(StoreError::storage("insert into bare sled"))?;
            db.insert(keys::HEAD_KEY, &keys::position_value(position))
                .map_err(StoreError::storage("insert into bare sled"))?;
            chunks.maybe_insert(&db, position)?;
        }
        db.flush().map_err(StoreError::storage("flush bare sled"))?;
        if let Some(disk) = &disk {
            disk.sync().map_err(|source| StoreError::Io {
                action: "sync sled's files",
                path: dir.join("db"),
                source,
            })?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_ticks = ticks_before
        .zip(cpu::process_ticks("self"))
        .map(|(a, b)| b.saturating_sub(a));
    drop(disk);
    drop(db);
    Ok(RawRound {
        records: position,
        seconds,
        bytes: dir_size(dir),
        cpu_ticks,
    })
}

/// The stream index as the store's writer keeps it, for streams shaped like the store
/// case's (100 per writer, one event per append): each record's entry goes into its
/// stream's current chunk in memory, and the changed chunks are inserted once the
/// writer would freeze its overlay (every `FREEZE_POSITIONS` positions or
/// `FREEZE_CHUNKS` changed chunks).
#[derive(Default)]
struct StoreChunks {
    /// (version, current chunk) per stream.
    streams: std::collections::HashMap<u64, (u64, Vec<u8>)>,
    /// Changed since the last insert: key to bytes.
    changed: std::collections::HashMap<Vec<u8>, Vec<u8>>,
    /// Last position whose entries are inserted.
    indexed: u64,
}

impl StoreChunks {
    fn add(&mut self, position: u64) -> Result<(), StoreError> {
        let n = position % 6400;
        let stream = StreamId::new(format!("bench-{:02}-{:03}", n % 64, n / 64))?;
        let (version, chunk) = self.streams.entry(n).or_default();
        *version += 1;
        if keys::chunk_of(*version).1 == 0 {
            chunk.clear();
        }
        keys::push_entry(chunk, position, &Uuid::new_v4());
        self.changed.insert(
            keys::chunk_key(&stream, keys::chunk_of(*version).0),
            chunk.clone(),
        );
        Ok(())
    }

    fn maybe_insert(&mut self, db: &sled::Db, position: u64) -> Result<(), StoreError> {
        if position - self.indexed < crate::writer::FREEZE_POSITIONS
            && self.changed.len() < crate::writer::FREEZE_CHUNKS
        {
            return Ok(());
        }
        for (key, bytes) in self.changed.drain() {
            db.insert(key, bytes)
                .map_err(StoreError::storage("insert into bare sled"))?;
        }
        self.indexed = position;
        Ok(())
    }
}
