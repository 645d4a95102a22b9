//! Reads while the stream index is still in the writer's memory (`index_when_idle` off,
//! so only a chunk's first bytes reach sled before a generation fills or the store
//! closes), and after a reopen with part of a stream's index in sled and the rest in
//! memory.

mod common;

use std::path::Path;

use aftersales_store::{ExpectedVersion, Store, StoreConfig, StoreError};
use common::{ev, id, sid};

fn open_lagging(dir: &Path) -> Store {
    let config = StoreConfig::default()
        .with_fsync_after_flush(false)
        .with_index_when_idle(false);
    Store::open(dir, config).unwrap()
}

fn append_to(store: &Store, stream: &str, versions: std::ops::RangeInclusive<u64>) {
    for v in versions {
        store
            .append(
                &sid(stream),
                ExpectedVersion::Exact(v - 1),
                vec![ev(&format!("{stream}-{v}"))],
            )
            .unwrap();
    }
}

fn versions(events: Vec<aftersales_store::RecordedEvent>) -> Vec<u64> {
    events.into_iter().map(|e| e.version).collect()
}

/// Every way of reading `a` agrees with it holding versions 1..=n.
fn check_stream(store: &Store, n: u64) {
    let a = sid("a");
    assert_eq!(
        versions(store.read_stream(&a, 1, usize::MAX).unwrap()),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(
        versions(store.read_stream(&a, 30, 4).unwrap()),
        vec![30, 31, 32, 33]
    );
    assert_eq!(
        versions(store.read_stream_backward(&a, None, 3).unwrap()),
        vec![n, n - 1, n - 2]
    );
    assert_eq!(
        versions(store.read_stream_backward(&a, Some(33), 3).unwrap()),
        vec![33, 32, 31]
    );
    assert_eq!(store.stream_version(&a).unwrap(), n);
    let last = store.get_in_stream(&a, id(&format!("a-{n}"))).unwrap();
    assert_eq!(last.map(|e| e.version), Some(n));
    assert_eq!(store.get_in_stream(&a, id("b-1")).unwrap(), None);
    // The writer checks versions and ids against the same index.
    let stale = store.append(&a, ExpectedVersion::Exact(n - 1), vec![ev("stale")]);
    assert!(
        matches!(stale, Err(StoreError::WrongExpectedVersion { actual, .. }) if actual == n),
        "{stale:?}"
    );
    let again = store
        .append(&a, ExpectedVersion::Any, vec![ev(&format!("a-{n}"))])
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.events[0].version, n);
    let report = store.verify().unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
}

#[test]
fn streams_read_the_same_with_their_index_in_memory_in_sled_or_split() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Two chunks of `a` (32 entries each) only in memory.
        let store = open_lagging(dir.path());
        append_to(&store, "a", 1..=40);
        append_to(&store, "b", 1..=2);
        check_stream(&store, 40);
        store.close().unwrap();
    }
    {
        // Closed cleanly: everything was moved into sled.
        let store = open_lagging(dir.path());
        check_stream(&store, 40);
        // Chunk 1 now has 8 entries in sled and 13 in memory.
        append_to(&store, "a", 41..=45);
        check_stream(&store, 45);
        assert_eq!(
            versions(store.read_stream(&sid("b"), 1, 10).unwrap()),
            vec![1, 2]
        );
    }
    // Dropped without `close`: the drop closes it the same way.
    let store = common::open(dir.path());
    check_stream(&store, 45);
}
