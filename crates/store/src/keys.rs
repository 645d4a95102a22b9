//! Key layout (format 2): everything lives in sled's default tree, told apart by a one-byte
//! prefix. One tree means one ordered log inside sled, so the commit marker (`M head`)
//! written after a group's pages and chunks also orders after all of them on recovery
//! (see `crate::flusher`).
//!
//! | key                                                   | value                          |
//! |-------------------------------------------------------|--------------------------------|
//! | `M` `format`                                          | `aftersales-store` + u32 BE    |
//! | `M` `head`                                            | commit marker: position (u64 BE) |
//! | `M` `indexed`                                         | index marker: position (u64 BE) |
//! | `L` first position (u64 BE)                           | page: records of consecutive positions ([`crate::record`]) |
//! | `T` len (u16 BE) stream-id bytes chunk (u64 BE)       | up to 32 entries: position (u64 BE) + event id (16 bytes) |
//!
//! Why pages and chunks: sled 0.34 costs about the same per operation whatever the value's
//! size, and format 1's four operations per event (id lookup, record, stream entry, id
//! entry) capped the store at 0.4 of bare sled writing one key per record; its per-key
//! bookkeeping also grew memory by about 90 bytes per event (BENCHMARKS.md, RELIABILITY.md).
//! The writer puts the records of one group commit under `L` keys of up to 6 KiB each (a
//! bigger record alone; see `crate::writer`, `PIECE_BYTES`) and each changed stream's
//! current chunk through its overlay (`crate::overlay`). Entry `i` of chunk `c` is version `32c + i + 1`.
//! There is no global id index: idempotency is per stream (an id is looked up among its
//! stream's entries), as in EventStoreDB.
//!
//! Big-endian integers make sled's byte order equal numeric order, so a range scan over
//! `L` walks the global log and one over a stream's `T` prefix walks its versions. The
//! length prefix keeps stream `a` from being a key-prefix of stream `ab`.
//!
//! There is no recorded-at index: `recorded_at` is non-decreasing along the log, so an
//! as-of query binary-searches the log instead.
//!
//! Format 1 wrote one record per `L` key (a page of one, still read as such) and indexed
//! with `S` len stream version → position and `I` id → position. Opening a format-1 store
//! rebuilds its chunks from those and removes them ([`crate::migrate`]).

use uuid::Uuid;

use crate::types::{Position, StreamId, Version};

/// Prefix of the global log.
pub(crate) const LOG: u8 = b'L';
/// Prefix of the stream index chunks.
pub(crate) const CHUNK: u8 = b'T';
/// Prefix of format 1's stream index.
pub(crate) const STREAM_V1: u8 = b'S';
/// Prefix of format 1's id index.
pub(crate) const ID_V1: u8 = b'I';
/// Entries per stream index chunk.
pub(crate) const CHUNK_ENTRIES: u64 = 32;
/// Bytes per chunk entry: position and event id.
pub(crate) const ENTRY_LEN: usize = 24;
/// Prefix of metadata.
pub(crate) const META: u8 = b'M';

/// Key of the format marker.
pub(crate) const FORMAT_KEY: &[u8] = b"Mformat";
/// Magic text at the start of the format marker.
pub(crate) const FORMAT_MAGIC: &[u8] = b"aftersales-store";
/// The on-disk format this build writes and the newest it can read. 3: the stream
/// index of the last groups may trail their pages after a crash (`INDEXED_KEY`).
pub const FORMAT_VERSION: u32 = 3;

/// Key of the commit marker: the last position whose flush was started. Everything
/// beyond it after a crash was never acknowledged and is removed on open.
pub(crate) const HEAD_KEY: &[u8] = b"Mhead";

/// Key of the index marker, inserted just before each commit marker: the last position
/// whose stream index entries were all in sled when that flush started. The writer keeps
/// newer chunks in memory ([`crate::overlay`]), so after a crash the committed pages
/// beyond this position may lack their index entries; open adds them from the pages.
pub(crate) const INDEXED_KEY: &[u8] = b"Mindexed";

/// The format marker value for [`FORMAT_VERSION`].
pub(crate) fn format_value() -> Vec<u8> {
    let mut v = FORMAT_MAGIC.to_vec();
    v.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    v
}

/// Reads a format marker: `Ok(version)` or `Err(reason)` if it is not ours.
pub(crate) fn parse_format_value(value: &[u8]) -> Result<u32, String> {
    let Some(rest) = value.strip_prefix(FORMAT_MAGIC) else {
        return Err("its format marker does not name aftersales-store".to_string());
    };
    let bytes: [u8; 4] = rest
        .try_into()
        .map_err(|_| format!("its format marker has {} trailing bytes, not 4", rest.len()))?;
    Ok(u32::from_be_bytes(bytes))
}

/// Key of the record at `position`.
pub(crate) fn log_key(position: Position) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG;
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

/// Position named by a log key, if it is one.
pub(crate) fn parse_log_key(key: &[u8]) -> Option<Position> {
    match key {
        [LOG, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Common prefix of all chunk keys of `stream`.
pub(crate) fn chunk_prefix(stream: &StreamId) -> Vec<u8> {
    prefixed(CHUNK, stream)
}

fn prefixed(prefix: u8, stream: &StreamId) -> Vec<u8> {
    let bytes = stream.as_str().as_bytes();
    let mut k = Vec::with_capacity(3 + bytes.len() + 8);
    k.push(prefix);
    // StreamId guarantees at most 200 bytes, so the length fits in u16.
    k.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    k.extend_from_slice(bytes);
    k
}

/// The chunk holding `version` (≥ 1) and the entry's index in it.
pub(crate) fn chunk_of(version: Version) -> (u64, usize) {
    let v = version - 1;
    (v / CHUNK_ENTRIES, (v % CHUNK_ENTRIES) as usize)
}

/// Key of `stream`'s chunk number `chunk`.
pub(crate) fn chunk_key(stream: &StreamId, chunk: u64) -> Vec<u8> {
    let mut k = chunk_prefix(stream);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Splits a chunk key (or a format-1 stream key) into stream id text and its trailing
/// number (chunk, or version for format 1).
pub(crate) fn parse_chunk_key(key: &[u8]) -> Option<(&str, u64)> {
    let [CHUNK | STREAM_V1, l0, l1, rest @ ..] = key else {
        return None;
    };
    let len = usize::from(u16::from_be_bytes([*l0, *l1]));
    if rest.len() != len + 8 {
        return None;
    }
    let (name, number) = rest.split_at(len);
    let name = std::str::from_utf8(name).ok()?;
    Some((name, u64::from_be_bytes(number.try_into().ok()?)))
}

/// The entries of a chunk value: (position, id), or `None` if its length is wrong.
pub(crate) fn chunk_entries(value: &[u8]) -> Option<Vec<(Position, Uuid)>> {
    if value.is_empty()
        || !value.len().is_multiple_of(ENTRY_LEN)
        || value.len() / ENTRY_LEN > CHUNK_ENTRIES as usize
    {
        return None;
    }
    value
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let position = u64::from_be_bytes(e[..8].try_into().ok()?);
            Some((position, Uuid::from_bytes(e[8..].try_into().ok()?)))
        })
        .collect()
}

/// The position of a chunk's first entry (`None` for an empty or malformed chunk).
pub(crate) fn first_position(chunk: &[u8]) -> Option<Position> {
    Some(u64::from_be_bytes(chunk.get(..8)?.try_into().ok()?))
}

/// Appends one entry to a chunk value.
pub(crate) fn push_entry(chunk: &mut Vec<u8>, position: Position, id: &Uuid) {
    chunk.extend_from_slice(&position.to_be_bytes());
    chunk.extend_from_slice(id.as_bytes());
}

/// Index values are a bare position.
pub(crate) fn position_value(position: Position) -> [u8; 8] {
    position.to_be_bytes()
}

/// Reads an index value.
pub(crate) fn parse_position_value(value: &[u8]) -> Option<Position> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_numerically() {
        assert_eq!(parse_log_key(&log_key(42)), Some(42));
        assert!(log_key(255) < log_key(256));
        let s = StreamId::new("ticket-7").unwrap();
        assert_eq!(parse_chunk_key(&chunk_key(&s, 9)), Some(("ticket-7", 9)));
        assert!(chunk_key(&s, 255) < chunk_key(&s, 256));
        let other = StreamId::new("ticket-77").unwrap();
        assert!(!chunk_key(&other, 1).starts_with(&chunk_prefix(&s)));
        assert_eq!(chunk_of(1), (0, 0));
        assert_eq!(chunk_of(32), (0, 31));
        assert_eq!(chunk_of(33), (1, 0));
        let mut chunk = Vec::new();
        push_entry(&mut chunk, 5, &Uuid::from_u128(5));
        push_entry(&mut chunk, 9, &Uuid::from_u128(6));
        assert_eq!(
            chunk_entries(&chunk),
            Some(vec![(5, Uuid::from_u128(5)), (9, Uuid::from_u128(6))])
        );
        assert_eq!(chunk_entries(&chunk[..30]), None);
        assert_eq!(chunk_entries(&[]), None);
        assert_eq!(parse_format_value(&format_value()), Ok(FORMAT_VERSION));
        assert!(parse_format_value(b"something else").is_err());
    }
}
