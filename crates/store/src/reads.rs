//! Reading the global log, streams, ids and as-of views.
//!
//! Every read is bounded by the durable head: an event becomes visible only once its
//! append has been acknowledged, so a reader never sees a fact that a crash could
//! still take back.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::keys;
use crate::record;
use crate::store::{Inner, Store};
use crate::types::{Position, RecordedEvent, StreamId, Version};

/// Decodes the value stored under `position`, checking it is the record it claims.
pub(crate) fn decode_at(position: Position, value: &[u8]) -> Result<RecordedEvent, StoreError> {
    let decoded = record::decode(value).map_err(|e| StoreError::CorruptRecord {
        position,
        reason: e.to_string(),
    })?;
    if decoded.event.position != position {
        return Err(StoreError::CorruptRecord {
            position,
            reason: format!("it says it is position {}", decoded.event.position),
        });
    }
    Ok(decoded.event)
}

/// Reads one record whether or not it is acknowledged yet (for the append path).
pub(crate) fn read_record_unbounded(
    inner: &Inner,
    position: Position,
) -> Result<Option<RecordedEvent>, StoreError> {
    let value = inner
        .db
        .get(keys::log_key(position))
        .map_err(StoreError::storage("read a record"))?;
    value.map(|v| decode_at(position, &v)).transpose()
}

/// Reads up to `limit` records with positions `from..=upto` (and ≤ the durable head).
pub(crate) fn read_range(
    inner: &Inner,
    from: Position,
    upto: Position,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let from = from.max(1);
    let upto = upto.min(inner.head());
    if from > upto || limit == 0 {
        return Ok(Vec::new());
    }
    let span = usize::try_from(upto - from + 1).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(limit.min(span).min(1024));
    let mut expected = from;
    for item in inner
        .db
        .range(keys::log_key(from)..=keys::log_key(upto))
        .take(limit)
    {
        let (key, value) = item.map_err(StoreError::storage("read the log"))?;
        let position = keys::parse_log_key(&key).unwrap_or(0);
        if position != expected {
            return Err(StoreError::CorruptRecord {
                position: expected,
                reason: "the record is missing from the log".to_string(),
            });
        }
        out.push(decode_at(position, &value)?);
        expected += 1;
    }
    if out.len() < limit.min(span) {
        return Err(StoreError::CorruptRecord {
            position: expected,
            reason: "the record is missing from the log".to_string(),
        });
    }
    Ok(out)
}

/// Reads the record an index entry points at and checks it matches the entry.
fn read_indexed(
    inner: &Inner,
    position: Position,
    stream: &StreamId,
    version: Version,
) -> Result<RecordedEvent, StoreError> {
    let event =
        read_record_unbounded(inner, position)?.ok_or_else(|| StoreError::CorruptIndex {
            reason: format!(
                "stream {stream} version {version} points at missing position {position}"
            ),
        })?;
    if event.stream != *stream || event.version != version {
        return Err(StoreError::CorruptIndex {
            reason: format!(
                "stream {stream} version {version} points at position {position}, which holds \
                 stream {} version {}",
                event.stream, event.version
            ),
        });
    }
    Ok(event)
}

fn parse_index_entry(key: &[u8], value: &[u8]) -> Result<(Version, Position), StoreError> {
    let version = keys::version_of_stream_key(key);
    let position = keys::parse_position_value(value);
    match (version, position) {
        (Some(v), Some(p)) => Ok((v, p)),
        _ => Err(StoreError::CorruptIndex {
            reason: "a stream index entry has the wrong length".to_string(),
        }),
    }
}

/// The last record with `recorded_at <= at`, by binary search over the log (valid because
/// `recorded_at` never decreases along it).
pub(crate) fn position_as_of(inner: &Inner, at: DateTime<Utc>) -> Result<Position, StoreError> {
    // Invariant: records at positions <= lo are at or before `at`; those > hi are after.
    let (mut lo, mut hi) = (0, inner.head());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let event =
            read_record_unbounded(inner, mid)?.ok_or_else(|| StoreError::CorruptRecord {
                position: mid,
                reason: "the record is missing from the log".to_string(),
            })?;
        if event.recorded_at <= at {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

impl Store {
    /// Up to `limit` events of the global log starting at position `from` (inclusive;
    /// 0 and 1 both mean "from the beginning").
    pub fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        read_range(&self.inner, from, Position::MAX, limit)
    }

    /// Iterates the global log from `from` (inclusive) to the head as it was when the
    /// iterator was created, reading pages of 256 events.
    pub fn iter_all(&self, from: Position) -> AllEvents<'_> {
        AllEvents {
            store: self,
            next: from.max(1),
            upto: self.inner.head(),
            page: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// Up to `limit` events of `stream` with version ≥ `from_version`, oldest first.
    pub fn read_stream(
        &self,
        stream: &StreamId,
        from_version: Version,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_upto(stream, from_version, limit, self.inner.head())
    }

    fn read_stream_upto(
        &self,
        stream: &StreamId,
        from_version: Version,
        limit: usize,
        upto: Position,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = &self.inner;
        let mut out = Vec::new();
        let range = keys::stream_key(stream, from_version)..=keys::stream_key(stream, Version::MAX);
        for item in inner.db.range(range) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(StoreError::storage("read the stream index"))?;
            let (version, position) = parse_index_entry(&key, &value)?;
            // Positions grow with versions, so the first unacknowledged entry ends the read.
            if position > upto {
                break;
            }
            out.push(read_indexed(inner, position, stream, version)?);
        }
        Ok(out)
    }

    /// Up to `limit` events of `stream` with version ≤ `from_version` (`None`: from the
    /// latest), newest first.
    pub fn read_stream_backward(
        &self,
        stream: &StreamId,
        from_version: Option<Version>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let inner = &self.inner;
        let head = inner.head();
        let from = from_version.unwrap_or(Version::MAX);
        let mut out = Vec::new();
        let range = keys::stream_key(stream, 0)..=keys::stream_key(stream, from);
        for item in inner.db.range(range).rev() {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(StoreError::storage("read the stream index"))?;
            let (version, position) = parse_index_entry(&key, &value)?;
            if position > head {
                continue;
            }
            out.push(read_indexed(inner, position, stream, version)?);
        }
        Ok(out)
    }

    /// The version of the stream's last acknowledged event (0: no events).
    pub fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let head = self.inner.head();
        for item in self.inner.db.scan_prefix(keys::stream_prefix(stream)).rev() {
            let (key, value) = item.map_err(StoreError::storage("read the stream index"))?;
            let (version, position) = parse_index_entry(&key, &value)?;
            if position <= head {
                return Ok(version);
            }
        }
        Ok(0)
    }

    /// The acknowledged event with this id, if any.
    pub fn get_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let inner = &self.inner;
        let Some(value) = inner
            .db
            .get(keys::id_key(&id))
            .map_err(StoreError::storage("read the id index"))?
        else {
            return Ok(None);
        };
        let position =
            keys::parse_position_value(&value).ok_or_else(|| StoreError::CorruptIndex {
                reason: format!("the id index entry of {id} has the wrong length"),
            })?;
        if position > inner.head() {
            return Ok(None);
        }
        let event =
            read_record_unbounded(inner, position)?.ok_or_else(|| StoreError::CorruptIndex {
                reason: format!("the id index points {id} at missing position {position}"),
            })?;
        if event.id != id {
            return Err(StoreError::CorruptIndex {
                reason: format!(
                    "the id index points {id} at position {position}, which holds {}",
                    event.id
                ),
            });
        }
        Ok(Some(event))
    }

    /// The highest position whose `recorded_at` is at or before `at` (0 if none): the
    /// head of the log as it stood at that instant.
    pub fn position_as_of(&self, at: DateTime<Utc>) -> Result<Position, StoreError> {
        position_as_of(&self.inner, at)
    }

    /// Up to `limit` events from position `from` that were recorded at or before `at`.
    pub fn read_all_until(
        &self,
        at: DateTime<Utc>,
        from: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let upto = position_as_of(&self.inner, at)?;
        read_range(&self.inner, from, upto, limit)
    }

    /// Up to `limit` events of `stream` (oldest first) that were recorded at or before
    /// `at`: the stream as it stood at that instant.
    pub fn read_stream_until(
        &self,
        stream: &StreamId,
        at: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let upto = position_as_of(&self.inner, at)?;
        self.read_stream_upto(stream, 1, limit, upto)
    }
}

/// Iterator over the global log; see [`Store::iter_all`].
pub struct AllEvents<'a> {
    store: &'a Store,
    next: Position,
    upto: Position,
    page: std::vec::IntoIter<RecordedEvent>,
    failed: bool,
}

impl Iterator for AllEvents<'_> {
    type Item = Result<RecordedEvent, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(event) = self.page.next() {
            return Some(Ok(event));
        }
        if self.failed || self.next > self.upto {
            return None;
        }
        match read_range(&self.store.inner, self.next, self.upto, 256) {
            Ok(page) => {
                self.next += page.len() as u64;
                self.page = page.into_iter();
                self.page.next().map(Ok)
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
