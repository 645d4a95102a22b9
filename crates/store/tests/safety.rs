//! Format checks, damaged data, verification and crash repair. These tests edit the sled
//! files directly, so they know the key layout: `L` + position (u64 BE) holds a record,
//! `S`/`I` hold the stream and id indexes, `Mformat`/`Mhead` the markers.

mod common;

use std::path::Path;

use aftersales_store::{ExpectedVersion, ProblemKind, Store, StoreConfig, StoreError};
use common::{ev, id, open, sid};

fn log_key(position: u64) -> Vec<u8> {
    let mut k = vec![b'L'];
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// A store with 20 events over 3 streams, closed.
fn filled(dir: &Path) {
    let store = open(dir);
    for i in 0..20 {
        store
            .append(
                &sid(&format!("ticket-{}", i % 3)),
                ExpectedVersion::Any,
                vec![ev(&format!("e{i}"))],
            )
            .unwrap();
    }
}

/// Runs `f` on the raw sled database of a closed store.
fn with_raw_sled(dir: &Path, f: impl FnOnce(&sled::Db)) {
    // No background flusher: its thread would hold the directory's lock for up to 500 ms
    // after the drop, and the store opened next would find it in use.
    // The store closed just before may still hold the lock for a moment, for the same
    // reason.
    let open = || sled::Config::new().path(dir).flush_every_ms(None).open();
    let since = std::time::Instant::now();
    let db = loop {
        match open() {
            Err(_) if since.elapsed() < std::time::Duration::from_secs(2) => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => break other.unwrap(),
        }
    };
    f(&db);
    db.flush().unwrap();
}

#[test]
fn verify_passes_on_a_healthy_store_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let store = open(dir.path());
    let mut calls = Vec::new();
    let report = store
        .verify_with_progress(|done, total| calls.push((done, total)))
        .unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 20);
    assert_eq!(report.head_position, 20);
    assert_eq!(report.head_hash, store.head_hash());
    assert_eq!(calls.last(), Some(&(20, 20)));
    assert!(report
        .to_string()
        .starts_with("ok: 20 records in 3 streams"));
}

#[test]
fn verify_names_the_first_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        for position in [7, 12] {
            let mut bytes = db.get(log_key(position)).unwrap().unwrap().to_vec();
            let last_payload_byte = bytes.len() - 33;
            bytes[last_payload_byte] ^= 0x20;
            db.insert(log_key(position), bytes).unwrap();
        }
    });
    let store = open(dir.path());
    let report = store.verify().unwrap();
    let problem = report.problem.clone().expect("tampering must be found");
    assert_eq!(problem.position, 7);
    assert_eq!(problem.kind, ProblemKind::HashMismatch);
    assert!(report.to_string().contains("position 7"), "{report}");
    // Reads refuse the damaged record with a typed error instead of returning it.
    match store.read_all(5, 10) {
        Err(StoreError::CorruptRecord { position: 7, .. }) => {}
        other => panic!("expected CorruptRecord at 7, got {other:?}"),
    }
    assert!(store.read_all(1, 6).is_ok());
}

#[test]
fn verify_detects_a_rehashed_record_by_the_broken_chain() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        // A careful forger rewrites the payload and recomputes the record's own hash;
        // the next record still links to the original hash.
        let mut bytes = db.get(log_key(9)).unwrap().unwrap().to_vec();
        let hash_at = bytes.len() - 32;
        bytes[hash_at - 1] ^= 0x01;
        let hash = *blake3::hash(&bytes[..hash_at]).as_bytes();
        bytes[hash_at..].copy_from_slice(&hash);
        db.insert(log_key(9), bytes).unwrap();
    });
    let store = open(dir.path());
    let problem = store.verify().unwrap().problem.unwrap();
    assert_eq!(
        (problem.position, problem.kind),
        (10, ProblemKind::BrokenChain)
    );
}

#[test]
fn verify_detects_damaged_indexes_and_missing_records() {
    // A missing id index entry.
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        let mut key = vec![b'I'];
        key.extend_from_slice(id("e4").as_bytes());
        db.remove(key).unwrap();
    });
    let problem = open(dir.path()).verify().unwrap().problem.unwrap();
    assert_eq!(
        (problem.position, problem.kind),
        (5, ProblemKind::IdIndexMismatch)
    );

    // An orphan stream index entry.
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        let mut key = vec![b'S', 0, 8];
        key.extend_from_slice(b"ticket-0");
        key.extend_from_slice(&99u64.to_be_bytes());
        db.insert(key, &3u64.to_be_bytes()).unwrap();
    });
    let problem = open(dir.path()).verify().unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::OrphanIndexEntry);

    // A record removed from the middle of the log.
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        db.remove(log_key(11)).unwrap();
    });
    let problem = open(dir.path()).verify().unwrap().problem.unwrap();
    assert_eq!(
        (problem.position, problem.kind),
        (11, ProblemKind::MissingRecord)
    );

    // A key this crate never writes.
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        db.insert(b"Zebra", b"stripes".to_vec()).unwrap();
    });
    let problem = open(dir.path()).verify().unwrap().problem.unwrap();
    assert_eq!(problem.kind, ProblemKind::UnknownKey);
}

#[test]
fn a_corrupt_head_record_is_a_typed_error_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        db.insert(log_key(20), b"not a record".to_vec()).unwrap();
    });
    match Store::open(dir.path(), StoreConfig::default()) {
        Err(StoreError::CorruptRecord { position: 20, .. }) => {}
        other => panic!("expected CorruptRecord at 20, got {other:?}"),
    }
}

#[test]
fn foreign_databases_are_refused() {
    // Someone else's sled data in the default tree.
    let dir = tempfile::tempdir().unwrap();
    with_raw_sled(dir.path(), |db| {
        db.insert(b"user:1", b"alice".to_vec()).unwrap();
    });
    let err = Store::open(dir.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not created by aftersales-store"),
        "{err}"
    );

    // Someone else's sled trees.
    let dir = tempfile::tempdir().unwrap();
    with_raw_sled(dir.path(), |db| {
        db.open_tree("orders")
            .unwrap()
            .insert(b"1", b"x".to_vec())
            .unwrap();
    });
    let err = Store::open(dir.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{err:?}");

    // A directory of unrelated files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = Store::open(dir.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::ForeignDatabase { .. }), "{err:?}");
}

#[test]
fn a_store_from_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        let mut marker = b"aftersales-store".to_vec();
        marker.extend_from_slice(&2u32.to_be_bytes());
        db.insert(b"Mformat", marker).unwrap();
    });
    match Store::open(dir.path(), StoreConfig::default()) {
        Err(
            e @ StoreError::NewerFormat {
                found: 2,
                supported: 1,
                ..
            },
        ) => assert!(e.to_string().contains("upgrade"), "{e}"),
        other => panic!("expected NewerFormat, got {other:?}"),
    }
}

#[test]
fn garbage_files_give_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), vec![0xAB; 64]).unwrap();
    std::fs::write(dir.path().join("db"), vec![0xCD; 4096]).unwrap();
    let result = std::panic::catch_unwind(|| Store::open(dir.path(), StoreConfig::default()));
    let outcome = result.expect("open must not panic");
    assert!(outcome.is_err(), "garbage must not open as a store");
}

/// What a crash between writing an append and its flush leaves behind: records and index
/// entries beyond the commit marker. The next open removes them.
#[test]
fn an_uncommitted_tail_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    // Take a real committed record and replay its keys as a fake position 21..22 that the
    // commit marker does not cover.
    let donor_dir = tempfile::tempdir().unwrap();
    {
        let donor = open(donor_dir.path());
        for i in 0..22 {
            donor
                .append(
                    &sid(&format!("ticket-{}", i % 3)),
                    ExpectedVersion::Any,
                    vec![ev(&format!("e{i}"))],
                )
                .unwrap();
        }
    }
    let donor_entries: Vec<(sled::IVec, sled::IVec)> = {
        let db = sled::open(donor_dir.path()).unwrap();
        db.iter()
            .map(|kv| kv.unwrap())
            .filter(|(k, v)| {
                k.as_ref() == log_key(21).as_slice()
                    || k.as_ref() == log_key(22).as_slice()
                    || (k[0] != b'L'
                        && k[0] != b'M'
                        && v.as_ref() >= 21u64.to_be_bytes().as_slice())
            })
            .collect()
    };
    assert_eq!(
        donor_entries.len(),
        6,
        "two records with two index entries each"
    );
    with_raw_sled(dir.path(), |db| {
        for (k, v) in &donor_entries {
            db.insert(k, v.clone()).unwrap();
        }
    });

    let store = open(dir.path());
    assert_eq!(store.head_position(), 20);
    assert!(store.get_by_id(id("e20")).unwrap().is_none());
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    // The numbering continues where the acknowledged log ends.
    let r = store
        .append(&sid("ticket-2"), ExpectedVersion::Exact(6), vec![ev("e20")])
        .unwrap();
    assert_eq!(r.first_position(), 21);
    assert!(store.verify().unwrap().is_ok());
}

/// sled writes its `conf` file in two steps when it creates a database (settings, then a
/// CRC) and refuses to open a database whose `conf` has the settings but no CRC. A kill
/// between the two steps would leave a new store that never opens again; the store
/// repairs that case.
#[test]
fn a_conf_file_cut_by_a_kill_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let conf_path = dir.path().join("conf");
    let conf = std::fs::read(&conf_path).unwrap();
    for cut in [conf.len() - 4, conf.len() / 2, 9] {
        std::fs::write(&conf_path, &conf[..cut]).unwrap();
        let store = Store::open(dir.path(), StoreConfig::default())
            .unwrap_or_else(|e| panic!("conf cut at {cut} bytes: {e}"));
        assert_eq!(store.head_position(), 20);
        drop(store);
        assert_eq!(
            std::fs::read(&conf_path).unwrap(),
            conf,
            "sled rewrote its conf"
        );
    }
    // Anything else in `conf` is not ours to fix.
    std::fs::write(&conf_path, b"segment_size: 1024\nuse_compression: false\n").unwrap();
    assert!(Store::open(dir.path(), StoreConfig::default()).is_err());
}

/// sled writes a snapshot to `snap.<lsn>.generating` and renames it when done, but reads
/// `.generating` files as snapshots too. A kill during a snapshot write (seen in the
/// crash test) used to leave a store that never opened again; the store now discards the
/// half-written snapshot and recovers from the previous one and the log.
#[test]
fn a_snapshot_cut_by_a_kill_is_discarded() {
    for partial in [Vec::new(), vec![7u8; 5], vec![7u8; 100]] {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let cut = dir.path().join("snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&cut, &partial).unwrap();
        let store = Store::open(dir.path(), StoreConfig::default())
            .unwrap_or_else(|e| panic!("{} byte partial snapshot: {e}", partial.len()));
        assert_eq!(store.head_position(), 20);
        assert!(store.verify().unwrap().is_ok());
        assert!(!cut.exists());
    }
}

/// What sled does when a byte in the middle of its log is damaged: it recovers the prefix
/// before it and drops the rest, commit marker included. Here the tail is dropped by hand,
/// exactly so; the acknowledged watermark outside sled still says 20.
#[test]
fn a_log_that_lost_acknowledged_records_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        for item in db.iter() {
            let (key, _) = item.unwrap();
            let dropped = match key.first() {
                Some(b'L') => u64::from_be_bytes(key[1..9].try_into().unwrap()) > 15,
                Some(b'S') | Some(b'I') => {
                    let value = db.get(&key).unwrap().unwrap();
                    u64::from_be_bytes(value.as_ref().try_into().unwrap()) > 15
                }
                _ => false,
            };
            if dropped {
                db.remove(&key).unwrap();
            }
        }
        db.insert(b"Mhead", &15u64.to_be_bytes()).unwrap();
    });
    match Store::open(
        dir.path(),
        StoreConfig::new(std::sync::Arc::new(aftersales_store::SystemClock)),
    ) {
        Err(StoreError::Truncated {
            acknowledged: 20,
            head: 15,
        }) => {}
        Err(e) => panic!("expected Truncated {{ 20, 15 }}, got {e}"),
        Ok(s) => panic!(
            "a log missing 5 acknowledged records opened with head {}",
            s.head_position()
        ),
    }
}

/// A byte flipped in sled's data file, in the middle of the log: the store must not open
/// as a valid shorter log, whatever sled makes of the damage.
#[test]
fn a_flipped_byte_in_the_data_file_never_opens_as_a_shorter_valid_log() {
    for victim in [5u64, 12, 18] {
        let dir = tempfile::tempdir().unwrap();
        let payload = |i: u64| format!("the payload of event number {i:02} of twenty");
        {
            let store = open(dir.path());
            for i in 1..=20 {
                let event = aftersales_store::NewEvent::new(
                    id(&format!("p{i}")),
                    "test.happened",
                    payload(i).into_bytes(),
                );
                store
                    .append(&sid("ticket-1"), ExpectedVersion::Any, vec![event])
                    .unwrap();
            }
            store.close().unwrap();
        }
        let file = dir.path().join("db");
        let mut bytes = std::fs::read(&file).unwrap();
        let needle = payload(victim);
        let at = bytes
            .windows(needle.len())
            .rposition(|w| w == needle.as_bytes())
            .expect("the payload is in the data file");
        bytes[at] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        match Store::open(
            dir.path(),
            StoreConfig::new(std::sync::Arc::new(aftersales_store::SystemClock)),
        ) {
            Err(_) => {}
            Ok(store) => {
                // sled kept the whole log: then verify must find the damaged record.
                assert_eq!(store.head_position(), 20, "event {victim}: opened short");
                let report = store.verify().unwrap();
                assert!(
                    report.problem.is_some(),
                    "event {victim}: the damage went unseen"
                );
            }
        }
    }
}
