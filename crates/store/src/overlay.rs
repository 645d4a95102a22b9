//! Stream index chunks the writer has changed but not yet inserted into sled.
//!
//! Why: inserting each changed stream's chunk once per group commit cost one sled insert
//! (and its share of sled's leaf splits) per event. With 64 writers × 1 event, leaving
//! the chunks out altogether raised the store from 63–65 k to 71–84 k events/s
//! (BENCHMARKS.md, "The index behind the log"). The writer now puts a group's changed
//! chunks here, where reads find them at once, and inserts them into sled later, one
//! generation at a time: a stream appended to a hundred times within a generation costs
//! one insert instead of a hundred. A chunk begun in the group (a new ticket's) goes into
//! sled at once and leaves the fresh chunks again ([`Overlay::forget_fresh`]): it has
//! nothing to share an insert with, and inserting it a generation later, when its leaf
//! had left the CPU cache, cost the ingest about 1 µs per new ticket.
//!
//! The index marker (`M indexed`) names the last position whose entries are all in sled.
//! After a crash, open adds the others from the pages
//! ([`crate::flusher::reindex_committed_tail`]), as it always did for the group whose
//! chunks were being inserted when the process died.
//!
//! Invariant: every chunk is here or in sled, with the newest bytes here. The writer
//! removes a generation only after inserting all of it, and readers look here first,
//! then in sled; so a chunk moving from here to sled between the two looks is found
//! in sled.

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::keys;
use crate::types::StreamId;

/// One stream's chunks here: (chunk number, entries), ascending by number.
type Chunks = Vec<(u64, sled::IVec)>;

/// The writer's changed chunks, fresh and frozen (see the module doc).
#[derive(Default)]
pub(crate) struct Overlay {
    generations: RwLock<Generations>,
}

#[derive(Default)]
struct Generations {
    /// Changed since the last freeze.
    fresh: HashMap<StreamId, Chunks>,
    fresh_chunks: usize,
    /// Being inserted into sled by the writer; older than `fresh` for the same chunk.
    frozen: HashMap<StreamId, Chunks>,
}

impl Overlay {
    fn read(&self) -> RwLockReadGuard<'_, Generations> {
        // Maps changed by single inserts and swaps; a panic elsewhere cannot tear them.
        self.generations.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Generations> {
        self.generations.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Writer: the new bytes of changed chunks.
    pub fn put(&self, changed: impl IntoIterator<Item = (StreamId, u64, sled::IVec)>) {
        let mut g = self.write();
        for (stream, number, bytes) in changed {
            let chunks = g.fresh.entry(stream).or_default();
            let added = match chunks.binary_search_by_key(&number, |(n, _)| *n) {
                Ok(i) => {
                    chunks[i].1 = bytes;
                    false
                }
                Err(i) => {
                    chunks.insert(i, (number, bytes));
                    true
                }
            };
            g.fresh_chunks += usize::from(added);
        }
    }

    /// Writer: these chunks are in sled with these bytes; they leave the fresh chunks
    /// (unless they changed since).
    pub fn forget_fresh(&self, inserted: Vec<(StreamId, u64, sled::IVec)>) {
        if inserted.is_empty() {
            return;
        }
        let mut g = self.write();
        for (stream, number, bytes) in inserted {
            let Some(chunks) = g.fresh.get_mut(&stream) else {
                continue;
            };
            let Ok(i) = chunks.binary_search_by_key(&number, |(n, _)| *n) else {
                continue;
            };
            if chunks[i].1 != bytes {
                continue;
            }
            chunks.remove(i);
            if chunks.is_empty() {
                g.fresh.remove(&stream);
            }
            g.fresh_chunks -= 1;
        }
    }

    /// Chunks changed since the last freeze.
    pub fn fresh_chunks(&self) -> usize {
        self.read().fresh_chunks
    }

    /// Writer: makes the fresh chunks the frozen generation and returns them with their
    /// sled keys, to be inserted and then [`Overlay::release_frozen`]. Only with none
    /// frozen.
    pub fn freeze(&self) -> Vec<(Vec<u8>, sled::IVec)> {
        {
            let mut g = self.write();
            debug_assert!(g.frozen.is_empty(), "the last generation was not released");
            g.frozen = std::mem::take(&mut g.fresh);
            g.fresh_chunks = 0;
        }
        // Readers go on meanwhile: only the writer changes the maps.
        let g = self.read();
        g.frozen
            .iter()
            .flat_map(|(stream, chunks)| {
                chunks
                    .iter()
                    .map(move |(number, bytes)| (keys::chunk_key(stream, *number), bytes.clone()))
            })
            .collect()
    }

    /// Writer: the frozen generation is in sled.
    pub fn release_frozen(&self) {
        self.write().frozen.clear();
    }

    /// `stream`'s chunks here, newest bytes of each, ascending by number.
    pub fn stream(&self, stream: &StreamId) -> Chunks {
        let g = self.read();
        let (fresh, frozen) = (g.fresh.get(stream), g.frozen.get(stream));
        match (fresh, frozen) {
            (None, None) => Vec::new(),
            (Some(only), None) | (None, Some(only)) => only.clone(),
            (Some(fresh), Some(frozen)) => {
                let mut out: Chunks = frozen
                    .iter()
                    .filter(|(n, _)| fresh.binary_search_by_key(n, |(f, _)| *f).is_err())
                    .cloned()
                    .collect();
                out.extend(fresh.iter().cloned());
                out.sort_unstable_by_key(|(n, _)| *n);
                out
            }
        }
    }
}

/// Chunks from sled and from the overlay, one per number, the overlay's bytes winning:
/// both inputs ascending (or both descending, with `descending`).
pub(crate) fn merge(
    sled: impl Iterator<Item = Result<(u64, sled::IVec), crate::StoreError>>,
    overlay: Chunks,
    descending: bool,
) -> impl Iterator<Item = Result<(u64, sled::IVec), crate::StoreError>> {
    let mut sled = sled.peekable();
    let mut overlay = overlay.into_iter().peekable();
    let before = move |a: u64, b: u64| if descending { a > b } else { a < b };
    std::iter::from_fn(move || {
        let next_overlay = overlay.peek().map(|(n, _)| *n);
        match (sled.peek(), next_overlay) {
            (None, None) => None,
            (Some(Err(_)), _) => sled.next(),
            (Some(Ok(_)), None) => sled.next(),
            (None, Some(_)) => overlay.next().map(Ok),
            (Some(Ok((s, _))), Some(o)) => {
                let s = *s;
                if before(s, o) {
                    sled.next()
                } else {
                    if s == o {
                        sled.next(); // superseded by the overlay's newer bytes
                    }
                    overlay.next().map(Ok)
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> StreamId {
        StreamId::new(name).unwrap()
    }

    fn bytes(b: &[u8]) -> sled::IVec {
        sled::IVec::from(b)
    }

    #[test]
    fn fresh_bytes_win_over_frozen_and_freeze_moves_them() {
        let o = Overlay::default();
        o.put([(s("a"), 0, bytes(b"a0-old")), (s("a"), 1, bytes(b"a1"))]);
        o.put([(s("a"), 0, bytes(b"a0-new")), (s("b"), 0, bytes(b"b0"))]);
        assert_eq!(o.fresh_chunks(), 3, "a chunk put twice counts once");
        let mut frozen: Vec<Vec<u8>> = o.freeze().into_iter().map(|(key, _)| key).collect();
        frozen.sort();
        let mut expected = vec![
            keys::chunk_key(&s("a"), 0),
            keys::chunk_key(&s("a"), 1),
            keys::chunk_key(&s("b"), 0),
        ];
        expected.sort();
        assert_eq!(frozen, expected);
        assert_eq!(o.fresh_chunks(), 0);
        o.put([(s("a"), 1, bytes(b"a1-newer")), (s("a"), 2, bytes(b"a2"))]);
        let a = o.stream(&s("a"));
        let got: Vec<(u64, &[u8])> = a.iter().map(|(n, b)| (*n, b.as_ref())).collect();
        assert_eq!(
            got,
            vec![
                (0, b"a0-new".as_ref()),
                (1, b"a1-newer".as_ref()),
                (2, b"a2".as_ref())
            ]
        );
        o.release_frozen();
        assert_eq!(o.stream(&s("b")), Vec::new());
        assert_eq!(o.stream(&s("a")).len(), 2);
    }

    #[test]
    fn a_chunk_inserted_at_once_leaves_unless_it_changed_since() {
        let o = Overlay::default();
        o.put([(s("a"), 0, bytes(b"a0")), (s("b"), 0, bytes(b"b0"))]);
        o.put([(s("b"), 0, bytes(b"b0-newer"))]);
        o.forget_fresh(vec![
            (s("a"), 0, bytes(b"a0")),
            (s("b"), 0, bytes(b"b0")),
            (s("c"), 0, bytes(b"c0")),
        ]);
        assert_eq!(o.fresh_chunks(), 1);
        assert!(o.stream(&s("a")).is_empty());
        assert_eq!(o.stream(&s("b")), vec![(0, bytes(b"b0-newer"))]);
        let frozen = o.freeze();
        assert_eq!(
            frozen,
            vec![(keys::chunk_key(&s("b"), 0), bytes(b"b0-newer"))]
        );
    }

    #[test]
    fn merge_prefers_the_overlay_in_both_directions() {
        let sled_side = |v: Vec<u64>| {
            v.into_iter()
                .map(|n| Ok((n, bytes(format!("sled{n}").as_bytes()))))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let over = |v: Vec<u64>| {
            v.into_iter()
                .map(|n| (n, bytes(format!("over{n}").as_bytes())))
                .collect::<Chunks>()
        };
        let names = |it: Vec<Result<(u64, sled::IVec), crate::StoreError>>| {
            it.into_iter()
                .map(|r| String::from_utf8(r.unwrap().1.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let up: Vec<_> = merge(sled_side(vec![0, 1, 2]), over(vec![2, 3]), false).collect();
        assert_eq!(names(up), ["sled0", "sled1", "over2", "over3"]);
        let down: Vec<_> = merge(sled_side(vec![2, 1, 0]), over(vec![3, 2]), true).collect();
        assert_eq!(names(down), ["over3", "over2", "sled1", "sled0"]);
        let only_overlay: Vec<_> = merge(sled_side(vec![]), over(vec![0]), false).collect();
        assert_eq!(names(only_overlay), ["over0"]);
    }
}
