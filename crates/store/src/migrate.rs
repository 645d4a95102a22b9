//! Opening a store of an older format. Format 2 differs from 3 only in that its index
//! never trails its pages, so its upgrade is the marker alone. A format-1 store: its
//! stream index (`S` stream version → position) and id index (`I` id → position) become
//! format 2's chunks. Its records stay as they are: a
//! format-1 `L` key holds one record, which is a page of one.
//!
//! Crash safety: the chunks are rebuilt from scratch (any left by an interrupted attempt
//! are removed first) and the format marker says 2 only after they are flushed; the
//! format-1 keys are removed after that, and again by any later open that finds some.

use crate::error::StoreError;
use crate::keys;
use crate::types::{Position, StreamId};

/// How often the rebuild logs its progress, in entries.
const PROGRESS_EVERY: u64 = 100_000;

/// Brings a store of format `found` to the current format.
pub(crate) fn upgrade(db: &sled::Db, found: u32) -> Result<(), StoreError> {
    if found < 2 {
        let entries = rebuild_chunks(db)?;
        db.insert(keys::FORMAT_KEY, keys::format_value())
            .map_err(StoreError::storage("write the format marker"))?;
        db.flush()
            .map_err(StoreError::storage("flush the rebuilt stream index"))?;
        tracing::info!(entries, "format-1 store upgraded");
    } else if found < keys::FORMAT_VERSION {
        // Format 2 indexed every group before its commit marker, so there is nothing to
        // add; the marker says 3 only so that an older build refuses the store.
        db.insert(keys::FORMAT_KEY, keys::format_value())
            .map_err(StoreError::storage("write the format marker"))?;
        db.flush()
            .map_err(StoreError::storage("flush the format marker"))?;
        tracing::info!(found, "store upgraded to format {}", keys::FORMAT_VERSION);
    }
    let removed = remove_prefix(db, keys::STREAM_V1)? + remove_prefix(db, keys::ID_V1)?;
    if removed > 0 {
        db.flush().map_err(StoreError::storage(
            "flush the removal of format-1 index entries",
        ))?;
        tracing::info!(removed, "removed the format-1 index entries");
    }
    Ok(())
}

/// Writes the chunks of every stream from the format-1 stream index; returns the number
/// of entries. Entries beyond the commit marker are left out: their records were never
/// acknowledged and the tail repair removes them next.
fn rebuild_chunks(db: &sled::Db) -> Result<u64, StoreError> {
    remove_prefix(db, keys::CHUNK)?;
    let committed = db
        .get(keys::HEAD_KEY)
        .map_err(StoreError::storage("read the commit marker"))?
        .and_then(|v| keys::parse_position_value(&v))
        .unwrap_or(0);
    let corrupt = |reason: String| StoreError::CorruptIndex { reason };
    // The chunk being filled: its key and entries.
    let mut open: Option<(StreamId, u64, Vec<u8>)> = None;
    let mut entries = 0u64;
    for item in db.scan_prefix([keys::STREAM_V1]) {
        let (key, value) = item.map_err(StoreError::storage("read the format-1 stream index"))?;
        let (name, version) = keys::parse_chunk_key(&key)
            .filter(|(_, v)| *v > 0)
            .ok_or_else(|| corrupt("a format-1 stream index key is malformed".into()))?;
        let position: Position = keys::parse_position_value(&value)
            .ok_or_else(|| corrupt(format!("the format-1 index entry of {name} is malformed")))?;
        if position > committed {
            continue;
        }
        let stream = StreamId::new(name)
            .map_err(|e| corrupt(format!("the format-1 index names stream {name:?}: {e}")))?;
        let record = crate::reads::read_record_in(db, position)?.ok_or_else(|| {
            corrupt(format!(
                "{stream} version {version} points at missing position {position}"
            ))
        })?;
        if record.stream != stream || record.version != version {
            return Err(corrupt(format!(
                "{stream} version {version} points at position {position}, which holds {} \
                 version {}",
                record.stream, record.version
            )));
        }
        let (chunk, index) = keys::chunk_of(version);
        let same = matches!(&open, Some((s, c, _)) if *s == stream && *c == chunk);
        if !same {
            if let Some((s, c, bytes)) = open.take() {
                write_chunk(db, &s, c, bytes)?;
            }
            open = Some((stream.clone(), chunk, Vec::new()));
        }
        let (_, _, bytes) = open.as_mut().expect("set above");
        if bytes.len() / keys::ENTRY_LEN != index {
            return Err(corrupt(format!(
                "the format-1 index of {stream} has a gap before version {version}"
            )));
        }
        keys::push_entry(bytes, position, &record.id);
        entries += 1;
        if entries.is_multiple_of(PROGRESS_EVERY) {
            tracing::info!(entries, "rebuilding the stream index of a format-1 store");
        }
    }
    if let Some((s, c, bytes)) = open {
        write_chunk(db, &s, c, bytes)?;
    }
    Ok(entries)
}

fn write_chunk(
    db: &sled::Db,
    stream: &StreamId,
    chunk: u64,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    db.insert(keys::chunk_key(stream, chunk), bytes)
        .map(|_| ())
        .map_err(StoreError::storage("write a stream index chunk"))
}

fn remove_prefix(db: &sled::Db, prefix: u8) -> Result<u64, StoreError> {
    let mut removed = 0;
    for key in db.scan_prefix([prefix]).keys() {
        let key = key.map_err(StoreError::storage("read the index"))?;
        db.remove(key)
            .map_err(StoreError::storage("remove an index entry"))?;
        removed += 1;
    }
    Ok(removed)
}
