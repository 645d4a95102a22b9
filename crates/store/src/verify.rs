//! Verification: walk the log and the indexes and report the first thing that is wrong.
//!
//! The log walk checks, page by page and per position from 1 to the durable head: the
//! record exists (no gap), decodes, its own hash matches its bytes, it links to the
//! previous record's hash, it names its own position, `recorded_at` did not go backwards,
//! its stream version is the next one of its stream, and its stream index entry holds its
//! position and id. Then the index walk looks for entries that point at nothing
//! (orphans), missing chunks and ids repeated in a stream, and a last pass looks for keys
//! this crate never writes.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::keys;
use crate::record::{self, RecordError, GENESIS_HASH};
use crate::store::Store;
use crate::types::Position;

/// What kind of damage verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A position between 1 and the head has no record.
    MissingRecord,
    /// The record's bytes do not follow the layout.
    UndecodableRecord,
    /// The record's stored hash does not match its bytes (it was modified).
    HashMismatch,
    /// The record's previous-hash field does not match the previous record's hash.
    BrokenChain,
    /// The record is stored under a position other than the one it names.
    WrongPosition,
    /// `recorded_at` is earlier than the previous record's.
    TimeWentBackwards,
    /// The record's stream version is not the next version of its stream.
    VersionGap,
    /// The stream index entry for the record is missing or points elsewhere.
    StreamIndexMismatch,
    /// The stream index entry for the record names another event id, or an id appears
    /// twice in one stream.
    IdIndexMismatch,
    /// An index entry points at no matching record.
    OrphanIndexEntry,
    /// A key this crate never writes.
    UnknownKey,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    /// Position of the record concerned (0 when the problem is not about one record).
    pub position: Position,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// Human-readable detail.
    pub detail: String,
}

impl fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.position > 0 {
            write!(f, "position {}: {}", self.position, self.detail)
        } else {
            f.write_str(&self.detail)
        }
    }
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The durable head when verification started; later appends are not checked.
    pub head_position: Position,
    /// Hash of the record at the head as recomputed by the walk (valid only if no problem).
    pub head_hash: [u8; 32],
    /// Records checked.
    pub records_checked: u64,
    /// Distinct streams seen.
    pub streams: u64,
    /// The first problem, or `None` if everything checked out.
    pub problem: Option<VerifyProblem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "ok: {} records in {} streams, head {} hash {}",
                self.records_checked,
                self.streams,
                self.head_position,
                hex(&self.head_hash)
            ),
            Some(p) => write!(f, "damaged: {p}"),
        }
    }
}

/// Lower-case hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How often the progress callback is called, in records.
const PROGRESS_EVERY: u64 = 4096;

fn problem(
    position: Position,
    kind: ProblemKind,
    detail: impl Into<String>,
) -> Option<VerifyProblem> {
    Some(VerifyProblem {
        position,
        kind,
        detail: detail.into(),
    })
}

impl Store {
    /// Walks the whole store; see the module docs. Errors are reserved for failures to
    /// read; damage is reported in the returned report.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.verify_with_progress(|_, _| {})
    }

    /// Like [`Store::verify`], calling `progress(records_checked, head)` every 4096
    /// records of the log walk and once at the end.
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<VerifyReport, StoreError> {
        let db = &self.inner.db;
        let head = self.inner.head();
        let mut report = VerifyReport {
            head_position: head,
            head_hash: GENESIS_HASH,
            records_checked: 0,
            streams: 0,
            problem: None,
        };
        // Last version seen per stream; also the bound for the orphan check.
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut prev_hash = GENESIS_HASH;
        let mut prev_time = DateTime::<Utc>::MIN_UTC;
        let mut expected: Position = 1;

        // Entries up to the index marker must be in sled itself: after a crash, open adds
        // back only those beyond it. (Read first: it only moves forward.)
        let in_sled = match db
            .get(keys::INDEXED_KEY)
            .map_err(StoreError::storage("read the index marker"))?
        {
            None => head,
            Some(v) => keys::parse_position_value(&v).unwrap_or(0),
        };
        let log = db.range(keys::log_key(1)..=keys::log_key(head.max(1)));
        for item in log {
            if head == 0 {
                break;
            }
            let (key, page) = item.map_err(StoreError::storage("read the log"))?;
            let first = keys::parse_log_key(&key).unwrap_or(0);
            if first != expected {
                report.problem = problem(
                    expected,
                    ProblemKind::MissingRecord,
                    "the record is missing",
                );
                return Ok(report);
            }
            let parts = match record::page_records(&page) {
                Ok(parts) => parts,
                Err(e) => {
                    report.problem = problem(first, ProblemKind::UndecodableRecord, e.to_string());
                    return Ok(report);
                }
            };
            for (bytes, position) in parts.into_iter().zip(first..) {
                if position > head {
                    break;
                }
                let decoded = match record::decode(bytes) {
                    Ok(d) => d,
                    Err(RecordError::HashMismatch) => {
                        report.problem = problem(
                        position,
                        ProblemKind::HashMismatch,
                        "the stored hash does not match the record bytes: the record was modified",
                    );
                        return Ok(report);
                    }
                    Err(e @ RecordError::Malformed(_)) => {
                        report.problem =
                            problem(position, ProblemKind::UndecodableRecord, e.to_string());
                        return Ok(report);
                    }
                };
                let event = &decoded.event;
                report.problem = if event.position != position {
                    problem(
                        position,
                        ProblemKind::WrongPosition,
                        format!("the record says it is position {}", event.position),
                    )
                } else if decoded.prev_hash != prev_hash {
                    problem(
                        position,
                        ProblemKind::BrokenChain,
                        "the record does not link to the previous record's hash",
                    )
                } else if event.recorded_at < prev_time {
                    problem(
                        position,
                        ProblemKind::TimeWentBackwards,
                        format!(
                            "recorded_at {} is before the previous record's {}",
                            event.recorded_at, prev_time
                        ),
                    )
                } else {
                    None
                };
                if report.problem.is_some() {
                    return Ok(report);
                }
                let last = versions
                    .entry(event.stream.as_str().to_string())
                    .or_insert(0);
                if event.version != *last + 1 {
                    report.problem = problem(
                        position,
                        ProblemKind::VersionGap,
                        format!(
                            "stream {} jumps from version {} to {}",
                            event.stream, last, event.version
                        ),
                    );
                    return Ok(report);
                }
                *last = event.version;

                let (chunk, index) = keys::chunk_of(event.version);
                let bytes = if position <= in_sled {
                    db.get(keys::chunk_key(&event.stream, chunk))
                        .map_err(StoreError::storage("read the stream index"))?
                } else {
                    crate::reads::chunk(&self.inner, &event.stream, chunk)?
                };
                let entry = bytes
                    .and_then(|v| keys::chunk_entries(&v))
                    .and_then(|entries| entries.get(index).copied());
                match entry {
                    Some((p, _)) if p != position => {
                        report.problem = problem(
                            position,
                            ProblemKind::StreamIndexMismatch,
                            format!(
                                "the stream index entry for {} version {} points at position {p}",
                                event.stream, event.version
                            ),
                        );
                        return Ok(report);
                    }
                    None => {
                        report.problem = problem(
                            position,
                            ProblemKind::StreamIndexMismatch,
                            format!(
                                "the stream index entry for {} version {} is missing",
                                event.stream, event.version
                            ),
                        );
                        return Ok(report);
                    }
                    Some((_, id)) if id != event.id => {
                        report.problem = problem(
                        position,
                        ProblemKind::IdIndexMismatch,
                        format!(
                            "the stream index entry for {} version {} names event {id}, the record {}",
                            event.stream, event.version, event.id
                        ),
                    );
                        return Ok(report);
                    }
                    Some(_) => {}
                }

                prev_hash = event.hash;
                prev_time = event.recorded_at;
                report.records_checked += 1;
                expected += 1;
                if report.records_checked.is_multiple_of(PROGRESS_EVERY) {
                    progress(report.records_checked, head);
                }
            }
        }
        if expected <= head {
            report.problem = problem(
                expected,
                ProblemKind::MissingRecord,
                "the record is missing",
            );
            return Ok(report);
        }
        report.head_hash = prev_hash;
        report.streams = versions.len() as u64;

        report.problem = check_stream_index(db, head, &versions)?;
        if report.problem.is_none() {
            report.problem = check_unknown_keys(db)?;
        }
        if report.problem.is_none() {
            report.problem = check_commit_marker(db, head, || self.inner.lock_pending().written)?;
        }
        progress(report.records_checked, head);
        Ok(report)
    }
}

/// Every stream index entry within the checked range was confirmed by the log walk, so
/// an entry is an orphan exactly when its version is beyond what the walk saw. The chunks
/// of one stream are adjacent keys, so its ids are checked for repeats one stream at a
/// time.
fn check_stream_index(
    db: &sled::Db,
    head: Position,
    versions: &HashMap<String, u64>,
) -> Result<Option<VerifyProblem>, StoreError> {
    let mut current = String::new();
    let mut next_chunk = 0u64;
    let mut ids = std::collections::HashSet::new();
    for item in db.scan_prefix([keys::CHUNK]) {
        let (key, value) = item.map_err(StoreError::storage("read the stream index"))?;
        let Some((stream, chunk)) = keys::parse_chunk_key(&key) else {
            return Ok(problem(
                0,
                ProblemKind::UnknownKey,
                "a stream index key is malformed",
            ));
        };
        let Some(entries) = keys::chunk_entries(&value) else {
            return Ok(problem(
                0,
                ProblemKind::OrphanIndexEntry,
                format!("the stream index chunk {chunk} of {stream} is malformed"),
            ));
        };
        if stream != current {
            current = stream.to_string();
            next_chunk = 0;
            ids.clear();
        }
        if chunk != next_chunk {
            return Ok(problem(
                0,
                ProblemKind::OrphanIndexEntry,
                format!(
                    "the stream index of {stream} has chunk {chunk} where {next_chunk} belongs"
                ),
            ));
        }
        next_chunk += 1;
        let known = versions.get(stream).copied().unwrap_or(0);
        for ((position, id), version) in entries.into_iter().zip(chunk * keys::CHUNK_ENTRIES + 1..)
        {
            if position > head {
                continue; // appended after verification started
            }
            if version > known {
                return Ok(problem(
                    position,
                    ProblemKind::OrphanIndexEntry,
                    format!(
                        "the stream index has {stream} version {version}, which is not in the log"
                    ),
                ));
            }
            if !ids.insert(id) {
                return Ok(problem(
                    position,
                    ProblemKind::IdIndexMismatch,
                    format!("event id {id} appears twice in stream {stream}"),
                ));
            }
        }
    }
    Ok(None)
}

/// The commit marker is written before each flush, so it is never behind the durable head.
/// `written` gives the writer's written head, read after the markers: on a live store a
/// commit may land between the two marker reads, and its index marker (inserted first,
/// never beyond what is written) may pass the commit marker read before it.
fn check_commit_marker(
    db: &sled::Db,
    head: Position,
    written: impl FnOnce() -> Position,
) -> Result<Option<VerifyProblem>, StoreError> {
    let marker = db
        .get(keys::HEAD_KEY)
        .map_err(StoreError::storage("read the commit marker"))?;
    let committed = match marker {
        None => 0,
        Some(v) => match keys::parse_position_value(&v) {
            Some(p) => p,
            None => {
                return Ok(problem(
                    0,
                    ProblemKind::UnknownKey,
                    "the commit marker is malformed",
                ));
            }
        },
    };
    if committed < head {
        return Ok(problem(
            head,
            ProblemKind::MissingRecord,
            format!("the commit marker says {committed} but {head} records were acknowledged"),
        ));
    }
    let indexed = db
        .get(keys::INDEXED_KEY)
        .map_err(StoreError::storage("read the index marker"))?;
    if let Some(v) = indexed {
        match keys::parse_position_value(&v) {
            Some(p) if p <= committed || p <= written() => {}
            Some(p) => {
                return Ok(problem(
                    p,
                    ProblemKind::UnknownKey,
                    format!("the index marker says {p}, beyond the commit marker {committed}"),
                ));
            }
            None => {
                return Ok(problem(
                    0,
                    ProblemKind::UnknownKey,
                    "the index marker is malformed",
                ));
            }
        }
    }
    Ok(None)
}

/// Looks for keys outside the three prefixes, or metadata other than the format, commit
/// and index markers.
fn check_unknown_keys(db: &sled::Db) -> Result<Option<VerifyProblem>, StoreError> {
    let known = [keys::LOG, keys::META, keys::CHUNK];
    // Between consecutive known prefixes (and before/after them) nothing may exist.
    let mut lower: Vec<u8> = Vec::new();
    for p in known.iter().copied().chain(std::iter::once(u8::MAX)) {
        let upper = vec![p];
        let first = db
            .range(lower.clone()..upper)
            .next()
            .transpose()
            .map_err(StoreError::storage("scan for unknown keys"))?;
        if let Some((key, _)) = first {
            return Ok(problem(
                0,
                ProblemKind::UnknownKey,
                format!("unknown key {}", String::from_utf8_lossy(&key)),
            ));
        }
        lower = vec![p.saturating_add(1)];
    }
    let last = db
        .range(vec![u8::MAX]..)
        .next()
        .transpose()
        .map_err(StoreError::storage("scan for unknown keys"))?;
    if let Some((key, _)) = last {
        return Ok(problem(
            0,
            ProblemKind::UnknownKey,
            format!("unknown key {:?}", key),
        ));
    }
    for item in db.scan_prefix([keys::META]) {
        let (key, _) = item.map_err(StoreError::storage("scan metadata"))?;
        if ![keys::FORMAT_KEY, keys::HEAD_KEY, keys::INDEXED_KEY].contains(&key.as_ref()) {
            return Ok(problem(
                0,
                ProblemKind::UnknownKey,
                format!("unknown metadata key {}", String::from_utf8_lossy(&key)),
            ));
        }
    }
    Ok(None)
}
