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

/// Key of a stream's index chunk (`T`, length, name, chunk number).
fn chunk_key(stream: &str, chunk: u64) -> Vec<u8> {
    let mut k = vec![b'T'];
    k.extend_from_slice(&(stream.len() as u16).to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Rewrites the chunk `key` with `edit` applied to its (position, id) entries.
fn edit_chunk(db: &sled::Db, key: &[u8], edit: impl FnOnce(&mut Vec<(u64, [u8; 16])>)) {
    let value = db.get(key).unwrap().unwrap();
    let mut entries: Vec<(u64, [u8; 16])> = value
        .chunks_exact(24)
        .map(|e| {
            (
                u64::from_be_bytes(e[..8].try_into().unwrap()),
                e[8..].try_into().unwrap(),
            )
        })
        .collect();
    edit(&mut entries);
    if entries.is_empty() {
        db.remove(key).unwrap();
        return;
    }
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|(p, id)| p.to_be_bytes().into_iter().chain(id.iter().copied()))
        .collect();
    db.insert(key, bytes).unwrap();
}

#[test]
fn verify_detects_damaged_indexes_and_missing_records() {
    // A stream index entry naming another event (e4 is ticket-1 version 2, position 5).
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        edit_chunk(db, &chunk_key("ticket-1", 0), |entries| {
            entries[1].1 = *id("someone else").as_bytes();
        });
    });
    let problem = open(dir.path()).verify().unwrap().problem.unwrap();
    assert_eq!(
        (problem.position, problem.kind),
        (5, ProblemKind::IdIndexMismatch)
    );

    // A stream index entry pointing at another position.
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        edit_chunk(db, &chunk_key("ticket-1", 0), |entries| entries[1].0 = 6);
    });
    let problem = open(dir.path()).verify().unwrap().problem.unwrap();
    assert_eq!(
        (problem.position, problem.kind),
        (5, ProblemKind::StreamIndexMismatch)
    );

    // An orphan stream index entry: a version the log does not have.
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    with_raw_sled(dir.path(), |db| {
        edit_chunk(db, &chunk_key("ticket-0", 0), |entries| {
            entries.push((3, *id("orphan").as_bytes()));
        });
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
fn an_append_to_a_stream_whose_index_skips_a_chunk_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for i in 1..=70u64 {
            store
                .append(
                    &sid("long"),
                    ExpectedVersion::Exact(i - 1),
                    vec![ev(&format!("long-{i}"))],
                )
                .unwrap();
        }
    }
    with_raw_sled(dir.path(), |db| {
        db.remove(chunk_key("long", 1)).unwrap();
    });
    let store = open(dir.path());
    // The writer reads the index afresh: chunk 2 after chunk 0 is not a stream it can
    // number or check ids in.
    let err = store
        .append(&sid("long"), ExpectedVersion::Any, vec![ev("next")])
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptIndex { reason } if reason.contains("long")),
        "{err:?}"
    );
    // Other streams are not affected.
    store
        .append(
            &sid("other"),
            ExpectedVersion::NoStream,
            vec![ev("other-1")],
        )
        .unwrap();
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
        marker.extend_from_slice(&4u32.to_be_bytes());
        db.insert(b"Mformat", marker).unwrap();
    });
    match Store::open(dir.path(), StoreConfig::default()) {
        Err(
            e @ StoreError::NewerFormat {
                found: 4,
                supported: 3,
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
                    || (k[0] == b'T'
                        && v.chunks_exact(24)
                            .any(|e| u64::from_be_bytes(e[..8].try_into().unwrap()) >= 21))
            })
            .collect()
    };
    assert_eq!(
        donor_entries.len(),
        4,
        "two records and the two chunks their streams' entries went into"
    );
    with_raw_sled(dir.path(), |db| {
        for (k, v) in &donor_entries {
            db.insert(k, v.clone()).unwrap();
        }
    });

    let store = open(dir.path());
    assert_eq!(store.head_position(), 20);
    assert!(store
        .get_in_stream(&sid("ticket-2"), id("e20"))
        .unwrap()
        .is_none());
    assert_eq!(store.stream_version(&sid("ticket-0")).unwrap(), 7);
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
                Some(b'T') => {
                    edit_chunk(db, &key, |entries| entries.retain(|(p, _)| *p <= 15));
                    false
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
                // sled kept the whole log: then verify must find the damaged record,
                // unless the flipped copy was one sled no longer needed (a torn last
                // message it drops on recovery, holding a page it also has from before
                // and index entries open re-adds): then every event reads back intact.
                assert_eq!(store.head_position(), 20, "event {victim}: opened short");
                let report = store.verify().unwrap();
                if report.problem.is_none() {
                    let payloads: Vec<Vec<u8>> = store
                        .read_stream(&sid("ticket-1"), 1, 100)
                        .unwrap()
                        .into_iter()
                        .map(|e| e.payload)
                        .collect();
                    let written: Vec<Vec<u8>> = (1..=20).map(|i| payload(i).into_bytes()).collect();
                    assert_eq!(payloads, written, "event {victim}: the damage went unseen");
                }
            }
        }
    }
}

/// Opens a `filled` store that must come back with all 20 events and verify.
fn opened_whole(dir: &Path) -> Store {
    let store = open(dir);
    assert_eq!(store.head_position(), 20);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    store
}

/// Checks that the stream index of a `filled` store serves idempotency and the version
/// check: the event `again.1` of stream `again.0` appended again answers with its
/// original position `again.2`; a new event on stream `next.0` at version `next.1` gets
/// position 21.
fn assert_index_serves(store: &Store, again: (&str, &str, u64), next: (&str, u64)) {
    let redelivered = store
        .append(&sid(again.0), ExpectedVersion::Any, vec![ev(again.1)])
        .unwrap();
    assert!(redelivered.deduplicated);
    assert_eq!(redelivered.events[0].position, again.2);
    let appended = store
        .append(
            &sid(next.0),
            ExpectedVersion::Exact(next.1),
            vec![ev("e20")],
        )
        .unwrap();
    assert_eq!(appended.first_position(), 21);
}

/// Rewrites a closed format-2 store of single-record pages into format 1: an `S` entry
/// (length, name, version → position) and an `I` entry (id → position) per event instead
/// of the chunks, and the format marker saying 1.
fn downgrade_to_format_1(db: &sled::Db) {
    let chunks: Vec<(sled::IVec, sled::IVec)> =
        db.scan_prefix([b'T']).map(|kv| kv.unwrap()).collect();
    for (key, value) in chunks {
        let len = usize::from(u16::from_be_bytes([key[1], key[2]]));
        let name = &key[3..3 + len];
        let chunk = u64::from_be_bytes(key[3 + len..].try_into().unwrap());
        for (i, entry) in value.chunks_exact(24).enumerate() {
            let version = chunk * 32 + i as u64 + 1;
            let mut s = vec![b'S'];
            s.extend_from_slice(&(len as u16).to_be_bytes());
            s.extend_from_slice(name);
            s.extend_from_slice(&version.to_be_bytes());
            db.insert(s, &entry[..8]).unwrap();
            let mut i_key = vec![b'I'];
            i_key.extend_from_slice(&entry[8..]);
            db.insert(i_key, &entry[..8]).unwrap();
        }
        db.remove(key).unwrap();
    }
    let mut marker = b"aftersales-store".to_vec();
    marker.extend_from_slice(&1u32.to_be_bytes());
    db.insert(b"Mformat", marker).unwrap();
}

#[test]
fn a_format_1_store_is_upgraded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let before = {
        let store = open(dir.path());
        (store.read_all(1, 100).unwrap(), store.head_hash())
    };
    with_raw_sled(dir.path(), |db| {
        downgrade_to_format_1(db);
        // A chunk left by an upgrade that was cut short: rebuilt from scratch.
        db.insert(chunk_key("ticket-1", 0), vec![9u8; 24]).unwrap();
    });
    {
        let store = open(dir.path());
        assert_eq!(store.head_position(), 20);
        assert_eq!(store.head_hash(), before.1);
        assert_eq!(store.read_all(1, 100).unwrap(), before.0);
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{report}");
        let ticket_1: Vec<_> = before
            .0
            .iter()
            .filter(|e| e.stream.as_str() == "ticket-1")
            .cloned()
            .collect();
        assert_eq!(
            store.read_stream(&sid("ticket-1"), 1, 100).unwrap(),
            ticket_1
        );
        // Idempotency survives the upgrade; numbering goes on.
        assert_index_serves(&store, ("ticket-1", "e4", 5), ("ticket-1", 7));
    }
    with_raw_sled(dir.path(), |db| {
        let marker = db.get(b"Mformat").unwrap().unwrap();
        assert_eq!(&marker[16..], 3u32.to_be_bytes().as_slice());
        assert_eq!(db.scan_prefix([b'S']).count(), 0);
        assert_eq!(db.scan_prefix([b'I']).count(), 0);
        // A crash after the marker but before the old entries were all removed.
        db.insert(b"Sleftover", b"x".to_vec()).unwrap();
        db.insert(b"Ileftover", b"y".to_vec()).unwrap();
    });
    let store = open(dir.path());
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.records_checked, 21);
}

/// Appends from many threads share pages; a page's records read, verify and are found
/// damaged one by one.
#[test]
fn records_sharing_a_page_are_read_and_checked_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = std::sync::Arc::new(open(dir.path()));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..20 {
                        store
                            .append(
                                &sid(&format!("t{t}")),
                                ExpectedVersion::Exact(i),
                                vec![ev(&format!("t{t}-{i}"))],
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(store.verify().unwrap().is_ok());
        assert_eq!(store.read_all(1, 1000).unwrap().len(), 320);
        assert_eq!(store.read_all(150, 3).unwrap()[0].position, 150);
        for t in 0..16 {
            let events = store.read_stream(&sid(&format!("t{t}")), 1, 100).unwrap();
            assert_eq!(events.len(), 20);
            assert_eq!(
                store
                    .read_stream_backward(&sid(&format!("t{t}")), Some(20), 1)
                    .unwrap()[0]
                    .id,
                id(&format!("t{t}-19"))
            );
        }
    }
    // Find a page with more than one record and damage its second record.
    let victim = {
        let mut found = None;
        with_raw_sled(dir.path(), |db| {
            for kv in db.scan_prefix([b'L']) {
                let (key, page) = kv.unwrap();
                let first = u64::from_be_bytes(key[1..9].try_into().unwrap());
                // The first record's length: fixed part + stream, type and payload lengths.
                let s = usize::from(u16::from_be_bytes([page[77], page[78]]));
                let t_at = 79 + s;
                let t = usize::from(u16::from_be_bytes([page[t_at], page[t_at + 1]]));
                let p_at = t_at + 2 + t;
                let p = u32::from_be_bytes(page[p_at..p_at + 4].try_into().unwrap()) as usize;
                let first_len = p_at + 4 + p + 32;
                if page.len() > first_len {
                    let mut bytes = page.to_vec();
                    bytes[first_len + 60] ^= 0x01; // inside the second record's id
                    db.insert(key, bytes).unwrap();
                    found = Some(first + 1);
                    break;
                }
            }
        });
        found.expect("16 concurrent appenders share at least one page")
    };
    let store = open(dir.path());
    let problem = store.verify().unwrap().problem.unwrap();
    assert_eq!(
        (problem.position, problem.kind),
        (victim, ProblemKind::HashMismatch)
    );
    match store.read_all(victim - 1, 2) {
        Err(StoreError::CorruptRecord { position, .. }) => assert_eq!(position, victim),
        other => panic!("expected CorruptRecord at {victim}, got {other:?}"),
    }
    assert_eq!(
        store.read_all(victim - 1, 1).unwrap()[0].position,
        victim - 1
    );
}

/// What a kill during the last flushes can leave: the pages and the commit marker durable,
/// the index entries of the last positions not (the writer indexes a group while its flush
/// runs), and the index marker saying where indexing had got to.
fn drop_index_entries_after(db: &sled::Db, indexed: u64) {
    for stream in ["ticket-0", "ticket-1", "ticket-2"] {
        edit_chunk(db, &chunk_key(stream, 0), |entries| {
            entries.retain(|(position, _)| *position <= indexed)
        });
    }
}

#[test]
fn index_entries_a_crash_left_out_are_added_from_the_pages_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let streams = ["ticket-0", "ticket-1", "ticket-2"];
    let before: Vec<_> = {
        let store = open(dir.path());
        streams
            .iter()
            .map(|s| store.read_stream(&sid(s), 1, 100).unwrap())
            .collect()
    };
    with_raw_sled(dir.path(), |db| {
        drop_index_entries_after(db, 14);
        db.insert(b"Mindexed", 14u64.to_be_bytes().to_vec())
            .unwrap();
    });
    {
        let store = opened_whole(dir.path());
        for (s, events) in streams.iter().zip(&before) {
            assert_eq!(&store.read_stream(&sid(s), 1, 100).unwrap(), events);
        }
        // The re-added entries serve idempotency and the version check.
        assert_index_serves(&store, ("ticket-1", "e19", 20), ("ticket-2", 6));
    }
    with_raw_sled(dir.path(), |db| {
        let marker = db.get(b"Mindexed").unwrap().unwrap();
        assert!(u64::from_be_bytes(marker.as_ref().try_into().unwrap()) >= 20);
    });
}

#[test]
fn index_entries_missing_below_the_index_marker_are_reported_not_invented() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    // The same loss, but the marker says they were indexed: that is damage, not a crash
    // the format allows, and verify must name it.
    with_raw_sled(dir.path(), |db| {
        drop_index_entries_after(db, 14);
        db.insert(b"Mindexed", 20u64.to_be_bytes().to_vec())
            .unwrap();
    });
    let store = open(dir.path());
    let report = store.verify().unwrap();
    assert!(
        report.problem.is_some(),
        "the lost index entries went unseen"
    );
}

#[test]
fn a_format_2_store_opens_as_fully_indexed_and_is_marked_3() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let before = open(dir.path()).read_all(1, 100).unwrap();
    // Format 2 wrote no index marker: it indexed every group before its commit marker.
    with_raw_sled(dir.path(), |db| {
        db.remove(b"Mindexed").unwrap();
        let mut marker = b"aftersales-store".to_vec();
        marker.extend_from_slice(&2u32.to_be_bytes());
        db.insert(b"Mformat", marker).unwrap();
    });
    {
        let store = open(dir.path());
        assert_eq!(store.read_all(1, 100).unwrap(), before);
        assert_eq!(
            store.read_stream(&sid("ticket-2"), 1, 100).unwrap().len(),
            6
        );
        let report = store.verify().unwrap();
        assert!(report.is_ok(), "{report}");
    }
    with_raw_sled(dir.path(), |db| {
        let marker = db.get(b"Mformat").unwrap().unwrap();
        assert_eq!(&marker[16..], 3u32.to_be_bytes().as_slice());
    });
}

#[test]
fn an_index_marker_beyond_the_commit_marker_is_brought_back_to_it_on_open() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    // A kill (or a full disk) between the index marker and the commit marker of a flush:
    // the index marker names positions whose records were never committed.
    with_raw_sled(dir.path(), |db| {
        db.insert(b"Mindexed", 23u64.to_be_bytes().to_vec())
            .unwrap();
    });
    {
        let store = opened_whole(dir.path());
        assert_index_serves(&store, ("ticket-1", "e19", 20), ("ticket-2", 6));
    }
    with_raw_sled(dir.path(), |db| {
        let marker = db.get(b"Mindexed").unwrap().unwrap();
        let indexed = u64::from_be_bytes(marker.as_ref().try_into().unwrap());
        let head = db.get(b"Mhead").unwrap().unwrap();
        assert!(indexed <= u64::from_be_bytes(head.as_ref().try_into().unwrap()));
    });
}
