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

/// The page holding `position`: its first position and bytes (`None` past the end).
pub(crate) fn page_at(
    db: &sled::Db,
    position: Position,
) -> Result<Option<(Position, sled::IVec)>, StoreError> {
    let found = db
        .range(keys::log_key(0)..=keys::log_key(position))
        .next_back()
        .transpose()
        .map_err(StoreError::storage("read a page"))?;
    Ok(found.and_then(|(key, page)| keys::parse_log_key(&key).map(|first| (first, page))))
}

/// The records' bytes of the page starting at `first`.
fn split_page(first: Position, page: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    record::page_records(page).map_err(page_error(first))
}

/// A page that does not split into records, reported at its first position.
fn page_error(first: Position) -> impl Fn(record::RecordError) -> StoreError {
    move |e| StoreError::CorruptRecord {
        position: first,
        reason: e.to_string(),
    }
}

/// The records of a page, decoded, checked to hold positions `first, first + 1, …`.
pub(crate) fn decode_page(first: Position, page: &[u8]) -> Result<Vec<RecordedEvent>, StoreError> {
    split_page(first, page)?
        .into_iter()
        .zip(first..)
        .map(|(bytes, position)| decode_at(position, bytes))
        .collect()
}

/// Reads one record of `db` whether or not it is acknowledged yet.
pub(crate) fn read_record_in(
    db: &sled::Db,
    position: Position,
) -> Result<Option<RecordedEvent>, StoreError> {
    let Some((first, page)) = page_at(db, position)? else {
        return Ok(None);
    };
    let index = usize::try_from(position - first).unwrap_or(usize::MAX);
    record::page_record(&page, index)
        .map_err(page_error(first))?
        .map(|bytes| decode_at(position, bytes))
        .transpose()
}

/// Reads one record whether or not it is acknowledged yet (for the append path).
pub(crate) fn read_record_unbounded(
    inner: &Inner,
    position: Position,
) -> Result<Option<RecordedEvent>, StoreError> {
    read_record_in(&inner.db, position)
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
    let wanted = limit.min(span);
    let mut out = Vec::with_capacity(wanted.min(1024));
    let missing = |position| StoreError::CorruptRecord {
        position,
        reason: "the record is missing from the log".to_string(),
    };
    let start = page_at(&inner.db, from)?.map_or(from, |(first, _)| first);
    let mut expected = start;
    for item in inner.db.range(keys::log_key(start)..=keys::log_key(upto)) {
        let (key, page) = item.map_err(StoreError::storage("read the log"))?;
        let first = keys::parse_log_key(&key).unwrap_or(0);
        if first != expected {
            return Err(missing(expected));
        }
        // Only the records asked for are decoded: a damaged neighbour in the same page
        // does not fail a read that does not include it.
        for (bytes, position) in split_page(first, &page)?.into_iter().zip(first..) {
            expected = position + 1;
            if position >= from && position <= upto {
                out.push(decode_at(position, bytes)?);
                if out.len() == wanted {
                    return Ok(out);
                }
            }
        }
    }
    Err(missing(expected.max(from)))
}

/// Reads the record a chunk entry points at and checks it matches the entry.
fn read_indexed(
    inner: &Inner,
    entry: &StreamEntry,
    stream: &StreamId,
) -> Result<RecordedEvent, StoreError> {
    let StreamEntry {
        version,
        position,
        id,
    } = *entry;
    let event =
        read_record_unbounded(inner, position)?.ok_or_else(|| StoreError::CorruptIndex {
            reason: format!(
                "stream {stream} version {version} points at missing position {position}"
            ),
        })?;
    if event.stream != *stream || event.version != version || event.id != id {
        return Err(StoreError::CorruptIndex {
            reason: format!(
                "stream {stream} version {version} (event {id}) points at position {position}, \
                 which holds stream {} version {} (event {})",
                event.stream, event.version, event.id
            ),
        });
    }
    Ok(event)
}

/// One entry of a stream's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamEntry {
    pub version: Version,
    pub position: Position,
    pub id: Uuid,
}

/// The entries of chunk `number` of `stream`, with their versions.
pub(crate) fn chunk_entries(
    stream: &StreamId,
    number: u64,
    value: &[u8],
) -> Result<Vec<StreamEntry>, StoreError> {
    let entries = keys::chunk_entries(value).ok_or_else(|| StoreError::CorruptIndex {
        reason: format!("a stream index chunk of {stream} has the wrong length"),
    })?;
    Ok(entries
        .into_iter()
        .zip(number * keys::CHUNK_ENTRIES + 1..)
        .map(|((position, id), version)| StreamEntry {
            version,
            position,
            id,
        })
        .collect())
}

/// A chunk: its number and its bytes.
type Chunk = (u64, sled::IVec);

/// `stream`'s chunks numbered `from..=to` in sled alone, each key checked to be the
/// stream's; ascending, or descending.
fn sled_chunks<'a>(
    db: &sled::Db,
    stream: &'a StreamId,
    from: u64,
    to: u64,
    descending: bool,
) -> impl Iterator<Item = Result<Chunk, StoreError>> + 'a {
    let range = db.range(keys::chunk_key(stream, from)..=keys::chunk_key(stream, to));
    let items: Box<dyn Iterator<Item = _>> = if descending {
        Box::new(range.rev())
    } else {
        Box::new(range)
    };
    items.map(move |item| {
        let (key, value) = item.map_err(StoreError::storage("read the stream index"))?;
        match keys::parse_chunk_key(&key) {
            Some((name, number)) if name == stream.as_str() => Ok((number, value)),
            _ => Err(StoreError::CorruptIndex {
                reason: format!("a stream index chunk of {stream} has a malformed key"),
            }),
        }
    })
}

/// `stream`'s chunks numbered `from..=to`, from the writer's overlay and sled (the
/// overlay first: see [`crate::overlay`]); ascending, or descending.
pub(crate) fn chunks<'a>(
    inner: &Inner,
    stream: &'a StreamId,
    from: u64,
    to: u64,
    descending: bool,
) -> impl Iterator<Item = Result<Chunk, StoreError>> + 'a {
    chunks_with(
        inner,
        stream,
        inner.overlay.stream(stream),
        from,
        to,
        descending,
    )
}

/// [`chunks`] with the stream's overlay chunks already taken.
fn chunks_with<'a>(
    inner: &Inner,
    stream: &'a StreamId,
    mut overlay: Vec<Chunk>,
    from: u64,
    to: u64,
    descending: bool,
) -> impl Iterator<Item = Result<Chunk, StoreError>> + 'a {
    overlay.retain(|(n, _)| (from..=to).contains(n));
    if descending {
        overlay.reverse();
    }
    let sled = sled_chunks(&inner.db, stream, from, to, descending);
    crate::overlay::merge(sled, overlay, descending)
}

/// Chunk `number` of `stream`, if there is one (overlay first, then sled).
pub(crate) fn chunk(
    inner: &Inner,
    stream: &StreamId,
    number: u64,
) -> Result<Option<sled::IVec>, StoreError> {
    if let Some((_, bytes)) = inner
        .overlay
        .stream(stream)
        .into_iter()
        .find(|(n, _)| *n == number)
    {
        return Ok(Some(bytes));
    }
    inner
        .db
        .get(keys::chunk_key(stream, number))
        .map_err(StoreError::storage("read the stream index"))
}

/// Calls `each` with `stream`'s chunks from number `first` on, ascending (the overlay's
/// newest bytes first, then sled). Most streams fit in one chunk and a new ticket's has
/// none: with nothing in the overlay, one point read answers unless the chunk is full,
/// and costs far less than a range scan (BENCHMARKS.md).
fn each_chunk(
    inner: &Inner,
    stream: &StreamId,
    first: u64,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut from = first;
    let overlay = inner.overlay.stream(stream);
    if overlay.is_empty() {
        let Some(value) = inner
            .db
            .get(keys::chunk_key(stream, first))
            .map_err(StoreError::storage("read the stream index"))?
        else {
            return Ok(());
        };
        each(first, &value)?;
        if value.len() < keys::CHUNK_ENTRIES as usize * keys::ENTRY_LEN {
            return Ok(());
        }
        from += 1;
    }
    for item in chunks_with(inner, stream, overlay, from, u64::MAX, false) {
        let (number, value) = item?;
        each(number, &value)?;
    }
    Ok(())
}

/// Every entry of `stream`'s index from the chunk holding `from_version` on, oldest first
/// (written but unacknowledged ones included).
pub(crate) fn stream_entries(
    inner: &Inner,
    stream: &StreamId,
    from_version: Version,
) -> Result<Vec<StreamEntry>, StoreError> {
    let mut out = Vec::new();
    each_chunk(
        inner,
        stream,
        keys::chunk_of(from_version.max(1)).0,
        |number, value| {
            let entries = chunk_entries(stream, number, value)?;
            out.extend(entries.into_iter().filter(|e| e.version >= from_version));
            Ok(())
        },
    )?;
    Ok(out)
}

/// Every entry of `stream`'s index as its chunks hold them (`keys::ENTRY_LEN` bytes each,
/// oldest first: the one of version v at (v - 1) × `ENTRY_LEN`), written but
/// unacknowledged ones included; for the writer's stream cache
/// ([`crate::stream_cache`]). A chunk out of turn, or one short of full before the last,
/// is a corrupt index.
pub(crate) fn stream_index(inner: &Inner, stream: &StreamId) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    each_chunk(inner, stream, 0, |number, value| {
        extend_index(&mut out, stream, number, value)
    })?;
    Ok(out)
}

/// Adds chunk `number` to the entries before it, checking that it comes next.
fn extend_index(
    out: &mut Vec<u8>,
    stream: &StreamId,
    number: u64,
    value: &[u8],
) -> Result<(), StoreError> {
    let full = keys::CHUNK_ENTRIES as usize * keys::ENTRY_LEN;
    let next = (out.len() / full) as u64;
    if !out.len().is_multiple_of(full)
        || number != next
        || value.is_empty()
        || value.len() > full
        || !value.len().is_multiple_of(keys::ENTRY_LEN)
    {
        return Err(StoreError::CorruptIndex {
            reason: format!(
                "the index of {stream} has a chunk {number} of {} bytes after {} entries",
                value.len(),
                out.len() / keys::ENTRY_LEN
            ),
        });
    }
    out.extend_from_slice(value);
    Ok(())
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
        for entry in stream_entries(inner, stream, from_version)? {
            // Positions grow with versions, so the first unacknowledged entry ends the read.
            if out.len() >= limit || entry.position > upto {
                break;
            }
            out.push(read_indexed(inner, &entry, stream)?);
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
        let last = keys::chunk_of(from.max(1)).0;
        'chunks: for item in chunks(inner, stream, 0, last, true) {
            let (number, value) = item?;
            for entry in chunk_entries(stream, number, &value)?.iter().rev() {
                if out.len() >= limit {
                    break 'chunks;
                }
                if entry.version > from || entry.position > head {
                    continue;
                }
                out.push(read_indexed(inner, entry, stream)?);
            }
        }
        Ok(out)
    }

    /// The version of the stream's last acknowledged event (0: no events).
    pub fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let head = self.inner.head();
        for item in chunks(&self.inner, stream, 0, u64::MAX, true) {
            let (number, value) = item?;
            if let Some(e) = chunk_entries(stream, number, &value)?
                .iter()
                .rev()
                .find(|e| e.position <= head)
            {
                return Ok(e.version);
            }
        }
        Ok(0)
    }

    /// The acknowledged event of `stream` with this id, if any. Ids are unique per
    /// stream: the same id in another stream is another event.
    pub fn get_in_stream(
        &self,
        stream: &StreamId,
        id: Uuid,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let inner = &self.inner;
        let head = inner.head();
        for entry in stream_entries(inner, stream, 1)? {
            if entry.position > head {
                break;
            }
            if entry.id == id {
                return read_indexed(inner, &entry, stream).map(Some);
            }
        }
        Ok(None)
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
