//! `Store::import`: a store rebuilt record by record from another store's log has the same
//! log, the same chain and the same indexes; anything that does not continue the log is
//! refused.

mod common;

use aftersales_store::{ExpectedVersion, RecordedEvent, Store, StoreError};
use common::{ev, open, sid};

/// A source store with three streams interleaved over 30 events.
fn source(dir: &std::path::Path) -> (Store, Vec<RecordedEvent>) {
    let store = open(dir);
    for i in 0..10 {
        for s in ["a", "b", "c"] {
            store
                .append(&sid(s), ExpectedVersion::Any, vec![ev(&format!("{s}-{i}"))])
                .unwrap();
        }
    }
    let all = store.read_all(1, 1000).unwrap();
    assert_eq!(all.len(), 30);
    (store, all)
}

#[test]
fn an_imported_copy_has_the_same_log_chain_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = source(&dir.path().join("src"));
    let copy = open(&dir.path().join("copy"));

    let first = copy.import(all[..12].to_vec()).unwrap();
    assert!(!first.deduplicated);
    assert_eq!(copy.head_position(), 12);
    // Overlapping the part already held is a no-op for that part.
    let rest = copy.import(all[5..].to_vec()).unwrap();
    assert!(!rest.deduplicated);
    assert_eq!(rest.events.len(), 25);
    assert!(copy.import(all[20..25].to_vec()).unwrap().deduplicated);

    assert_eq!(copy.read_all(1, 1000).unwrap(), all);
    assert_eq!(copy.head_hash(), src.head_hash());
    assert_eq!(
        copy.read_stream(&sid("b"), 1, 100).unwrap(),
        src.read_stream(&sid("b"), 1, 100).unwrap()
    );
    assert_eq!(
        copy.get_in_stream(&all[7].stream, all[7].id)
            .unwrap()
            .unwrap(),
        all[7]
    );
    assert!(copy.verify().unwrap().is_ok());

    // The copy goes on as a store of its own, and stays idempotent for imported ids.
    let again = copy
        .append(&sid("a"), ExpectedVersion::Any, vec![ev("a-3")])
        .unwrap();
    assert!(again.deduplicated);
    let next = copy
        .append(&sid("a"), ExpectedVersion::Exact(10), vec![ev("a-new")])
        .unwrap();
    assert_eq!(next.first_position(), 31);
    assert!(copy.verify().unwrap().is_ok());

    // Reopened, it still holds all of it.
    drop(copy);
    let copy = open(&dir.path().join("copy"));
    assert_eq!(copy.head_position(), 31);
    assert_eq!(copy.read_all(1, 30).unwrap(), all);
}

fn diverges_at(err: StoreError) -> u64 {
    match err {
        StoreError::ImportDiverges { position, .. } => position,
        other => panic!("expected ImportDiverges, got {other:?}"),
    }
}

#[test]
fn records_that_do_not_continue_the_log_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, all) = source(&dir.path().join("src"));
    let copy = open(&dir.path().join("copy"));

    // A gap: position 3 before 1 and 2.
    assert_eq!(diverges_at(copy.import(all[2..4].to_vec()).unwrap_err()), 3);
    assert_eq!(copy.head_position(), 0);

    // A changed payload: the hash no longer follows. The records before it stay.
    let mut tampered = all[..6].to_vec();
    tampered[4].payload.push(b'!');
    assert_eq!(diverges_at(copy.import(tampered).unwrap_err()), 5);
    assert_eq!(copy.head_position(), 4);

    // A record that claims another version in its stream.
    let mut wrong_version = all[4].clone();
    wrong_version.version += 1;
    assert_eq!(
        diverges_at(copy.import(vec![wrong_version]).unwrap_err()),
        5
    );

    // A different record where this store already holds one.
    let mut other = all[1].clone();
    other.hash[0] ^= 1;
    assert_eq!(diverges_at(copy.import(vec![other]).unwrap_err()), 2);

    // The honest rest still goes in, and the copy verifies.
    copy.import(all[4..].to_vec()).unwrap();
    assert_eq!(copy.read_all(1, 1000).unwrap(), all);
    assert!(copy.verify().unwrap().is_ok());
}

#[test]
fn an_import_into_a_store_with_its_own_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_src, all) = source(&dir.path().join("src"));
    let own = open(&dir.path().join("own"));
    own.append(&sid("z"), ExpectedVersion::NoStream, vec![ev("z-0")])
        .unwrap();
    assert_eq!(diverges_at(own.import(all[..3].to_vec()).unwrap_err()), 1);
    assert_eq!(own.head_position(), 1);
}
