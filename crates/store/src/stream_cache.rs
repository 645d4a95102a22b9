//! What the writer thread knows of each stream it appends to: every index entry, in the
//! bytes the stream's chunks hold them in.
//!
//! The writer needs a stream's version, its open chunk (to put in the overlay after each
//! page) and whether an event id is already stored in it (idempotency). All three come
//! from the entries: the version is their number, the open chunk their tail, and an id
//! is found by a scan, or through a map once the stream is long. Until 2026-12-05 each
//! stream held a `HashMap` of its ids next to a copy of its open chunk: about 100 bytes
//! per id, so the cache (cleared whole when full) held 50,000 ids, and the store
//! benchmark's 6,400 streams outgrew it within a second and were reloaded from the index
//! again and again. Kept as entries, an id costs 24 bytes. A cache past its bound is cut
//! to half of it, the streams used since the last cut kept first ([`evict`]).

use std::collections::HashMap;

use uuid::Uuid;

use crate::keys::{self, CHUNK_ENTRIES, ENTRY_LEN};
use crate::types::{Position, StreamId, Version};

/// Streams longer than this keep a map of their ids; shorter ones are scanned (24 bytes
/// an entry: a few cache lines).
const SCAN_ENTRIES: usize = 64;

/// What a map keeps per id, roughly (key, value, control byte, load factor).
const MAP_BYTES_PER_ID: usize = 40;

/// What a cached stream costs beyond its entries and map, roughly: its name, the cache's
/// slot and the state's fields.
const STREAM_OVERHEAD: usize = 128;

/// One stream's entries; see the module doc.
pub(crate) struct StreamState {
    /// Every index entry, oldest first: the one of version v at (v - 1) × `ENTRY_LEN`,
    /// written but not yet durable ones included.
    entries: Vec<u8>,
    /// id → version, once the stream has more than `SCAN_ENTRIES` entries.
    ids: Option<HashMap<Uuid, Version>>,
    /// Listed in `Writer::dirty`: its open chunk changed since the last page was written.
    pub dirty: bool,
    /// Looked at since the last eviction (see [`evict`]).
    pub used: bool,
}

impl StreamState {
    /// A stream with these entries (as [`crate::reads::stream_index`] reads them).
    pub fn new(entries: Vec<u8>) -> Self {
        Self {
            entries,
            ids: None,
            dirty: false,
            used: true,
        }
    }

    /// The stream's latest version.
    pub fn version(&self) -> Version {
        (self.entries.len() / ENTRY_LEN) as Version
    }

    /// Where `id` is stored in the stream: version and position.
    pub fn find(&mut self, id: &Uuid) -> Option<(Version, Position)> {
        let count = self.entries.len() / ENTRY_LEN;
        if self.ids.is_none() && count > SCAN_ENTRIES {
            let ids = self
                .entries
                .chunks_exact(ENTRY_LEN)
                .zip(1..)
                .map(|(e, version)| (entry_id(e), version))
                .collect();
            self.ids = Some(ids);
        }
        let version = match &self.ids {
            Some(ids) => *ids.get(id)?,
            None => {
                let index = self
                    .entries
                    .chunks_exact(ENTRY_LEN)
                    .position(|e| &e[8..] == id.as_bytes())?;
                index as Version + 1
            }
        };
        Some((version, self.position(version)))
    }

    /// Adds the entry of the next version.
    pub fn push(&mut self, position: Position, id: &Uuid) {
        keys::push_entry(&mut self.entries, position, id);
        let version = self.version();
        if let Some(ids) = &mut self.ids {
            ids.insert(*id, version);
        }
    }

    /// The chunk holding the latest version, with its number; `None` when the stream is
    /// empty.
    pub fn last_chunk(&self) -> Option<(u64, &[u8])> {
        let version = self.version();
        if version == 0 {
            return None;
        }
        let number = keys::chunk_of(version).0;
        let start = (number * CHUNK_ENTRIES) as usize * ENTRY_LEN;
        Some((number, &self.entries[start..]))
    }

    /// Whether the chunk holding the latest version is full.
    pub fn last_chunk_full(&self) -> bool {
        let version = self.version();
        version > 0 && version.is_multiple_of(CHUNK_ENTRIES)
    }

    /// What it costs in memory, roughly (the writer bounds the cache's sum); a long
    /// stream's map counts from the start (it is made at the first lookup).
    pub fn bytes(&self, stream: &StreamId) -> usize {
        let count = self.entries.len() / ENTRY_LEN;
        let mapped = if count > SCAN_ENTRIES {
            count * MAP_BYTES_PER_ID
        } else {
            0
        };
        STREAM_OVERHEAD + stream.as_str().len() + self.entries.len() + mapped
    }

    fn position(&self, version: Version) -> Position {
        let start = (version as usize - 1) * ENTRY_LEN;
        let bytes: [u8; 8] = self.entries[start..start + 8]
            .try_into()
            .expect("an entry starts with 8 bytes of position");
        Position::from_be_bytes(bytes)
    }
}

/// Makes room in a cache that outgrew its bound, keeping at most `keep_bytes`: the streams
/// not used since the last eviction go, and then, past `keep_bytes`, whichever come last
/// in the map's order. Returns the bytes kept. Clearing it whole, as the writer did
/// before, loses every hot stream; and a working set bigger than the cache, appended to
/// in turn (the store benchmark's streams after a few seconds), was then reloaded whole at
/// every turn, where keeping a part keeps that part's hits. Keeps dirty streams whatever
/// their size (there are none between two groups, when the writer evicts).
pub(crate) fn evict(streams: &mut HashMap<StreamId, StreamState>, keep_bytes: usize) -> usize {
    let mut kept = 0;
    streams.retain(|stream, state| {
        let bytes = state.bytes(stream);
        let keep = state.dirty || (state.used && kept + bytes <= keep_bytes);
        state.used = false;
        if keep {
            kept += bytes;
        }
        keep
    });
    kept
}

fn entry_id(entry: &[u8]) -> Uuid {
    Uuid::from_bytes(
        entry[8..]
            .try_into()
            .expect("an entry ends with 16 bytes of id"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn ids_are_found_by_scan_then_by_map_as_the_stream_grows() {
        let mut state = StreamState::new(Vec::new());
        assert_eq!(state.version(), 0);
        assert_eq!(state.last_chunk(), None);
        assert_eq!(state.find(&id(1)), None);
        for v in 1..=200u64 {
            state.push(1000 + v, &id(v as u128));
            assert_eq!(state.version(), v);
            // Found right after its push, whether scanned or mapped.
            assert_eq!(
                state.find(&id(v as u128)),
                Some((v, 1000 + v)),
                "version {v}"
            );
            assert_eq!(state.find(&id(v as u128 + 1)), None);
        }
        assert!(state.ids.is_some(), "a long stream keeps a map");
        for v in 1..=200u64 {
            assert_eq!(state.find(&id(v as u128)), Some((v, 1000 + v)));
        }
    }

    #[test]
    fn eviction_drops_unused_streams_first_then_keeps_within_the_bound() {
        let stream = |n: usize| StreamId::new(format!("s-{n}")).unwrap();
        let with_entries = |count: u64| {
            let mut state = StreamState::new(Vec::new());
            for v in 1..=count {
                state.push(v, &id(v as u128));
            }
            state
        };
        let mut streams = HashMap::new();
        for n in 0..10 {
            streams.insert(stream(n), with_entries(10));
        }
        let one = streams[&stream(0)].bytes(&stream(0));
        // Everything loaded is used; evicting to four streams' worth keeps four.
        let kept = evict(&mut streams, 4 * one);
        assert_eq!((streams.len(), kept), (4, 4 * one));
        // Nothing was used since: all go but a dirty one.
        let survivor = streams.keys().next().unwrap().clone();
        streams.get_mut(&survivor).unwrap().dirty = true;
        assert_eq!(evict(&mut streams, 100 * one), one);
        assert_eq!(streams.keys().collect::<Vec<_>>(), vec![&survivor]);
        // Used again (the writer marks each stream it looks at): kept.
        let state = streams.get_mut(&survivor).unwrap();
        state.dirty = false;
        state.used = true;
        assert_eq!(evict(&mut streams, one), one);
        assert_eq!(evict(&mut streams, one), 0, "not used since");
    }

    #[test]
    fn the_last_chunk_is_the_tail_of_the_entries_and_full_every_32_versions() {
        let mut entries = Vec::new();
        for v in 1..=CHUNK_ENTRIES + 1 {
            keys::push_entry(&mut entries, v * 10, &id(v as u128));
        }
        let mut state = StreamState::new(entries.clone());
        assert!(!state.last_chunk_full());
        let (number, chunk) = state.last_chunk().unwrap();
        assert_eq!(number, 1);
        assert_eq!(chunk, &entries[CHUNK_ENTRIES as usize * ENTRY_LEN..]);
        assert_eq!(
            keys::chunk_entries(chunk).unwrap(),
            vec![((CHUNK_ENTRIES + 1) * 10, id(CHUNK_ENTRIES as u128 + 1))]
        );
        for v in CHUNK_ENTRIES + 2..=2 * CHUNK_ENTRIES {
            state.push(v * 10, &id(v as u128));
        }
        assert!(state.last_chunk_full());
        let (number, chunk) = state.last_chunk().unwrap();
        assert_eq!(number, 1);
        assert_eq!(chunk.len(), CHUNK_ENTRIES as usize * ENTRY_LEN);
        assert_eq!(state.find(&id(40)), Some((40, 400)));
    }
}
