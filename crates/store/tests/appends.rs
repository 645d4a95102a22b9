//! Appending: versions, conflicts, concurrency, idempotency, atomicity, lifecycle.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::thread;

use aftersales_store::{
    ExpectedVersion, NewEvent, Store, StoreConfig, StoreError, StreamId, SystemClock,
};
use common::{ev, id, open, sid};

#[test]
fn appends_get_gapless_positions_and_versions_starting_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.head_position(), 0);
    let a = sid("ticket-a");
    let b = sid("ticket-b");

    let r1 = store
        .append(&a, ExpectedVersion::NoStream, vec![ev("a1"), ev("a2")])
        .unwrap();
    assert_eq!(r1.first_position(), 1);
    assert_eq!(r1.last_position(), 2);
    assert_eq!(r1.stream_version, 2);
    assert!(!r1.deduplicated);
    let r2 = store
        .append(&b, ExpectedVersion::Any, vec![ev("b1")])
        .unwrap();
    assert_eq!((r2.first_position(), r2.stream_version), (3, 1));
    let r3 = store
        .append(&a, ExpectedVersion::Exact(2), vec![ev("a3")])
        .unwrap();
    assert_eq!((r3.first_position(), r3.events[0].version), (4, 3));

    assert_eq!(store.head_position(), 4);
    assert_eq!(store.stream_version(&a).unwrap(), 3);
    assert_eq!(store.stream_version(&b).unwrap(), 1);
    assert_eq!(store.stream_version(&sid("nobody")).unwrap(), 0);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn a_version_mismatch_names_both_versions_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = sid("ticket-1");
    store
        .append(&s, ExpectedVersion::NoStream, vec![ev("e1")])
        .unwrap();

    let err = store
        .append(&s, ExpectedVersion::NoStream, vec![ev("e2")])
        .unwrap_err();
    match &err {
        StoreError::WrongExpectedVersion {
            expected, actual, ..
        } => {
            assert_eq!(*expected, ExpectedVersion::NoStream);
            assert_eq!(*actual, 1);
        }
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let err = store
        .append(
            &s,
            ExpectedVersion::Exact(5),
            vec![ev("e2"), ev("e3"), ev("e4")],
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("version 1") && text.contains("version 5"),
        "{text}"
    );
    // Atomicity: none of the three events of the rejected batch exists.
    assert_eq!(store.head_position(), 1);
    for name in ["e2", "e3", "e4"] {
        assert!(store.get_in_stream(&s, id(name)).unwrap().is_none());
    }
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn invalid_appends_are_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = sid("ticket-1");
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![]),
        Err(StoreError::EmptyAppend)
    ));
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![ev("x"), ev("x")]),
        Err(StoreError::DuplicateIdInAppend { .. })
    ));
    let empty_type = NewEvent::new(id("bad"), "", b"{}".to_vec());
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![ev("ok"), empty_type]),
        Err(StoreError::InvalidEvent { .. })
    ));
    let huge = NewEvent::new(
        id("huge"),
        "t",
        vec![0; aftersales_store::MAX_PAYLOAD_BYTES + 1],
    );
    assert!(matches!(
        store.append(&s, ExpectedVersion::Any, vec![huge]),
        Err(StoreError::InvalidEvent { .. })
    ));
    assert_eq!(store.head_position(), 0);
    assert!(store.get_in_stream(&s, id("ok")).unwrap().is_none());
    assert!(StreamId::new("").is_err());
    assert!(StreamId::new("x".repeat(201)).is_err());
}

#[test]
fn concurrent_appenders_with_the_same_expected_version_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let threads = 6;
    let rounds = 25u64;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let s = sid("contended");
                let mut outcomes = Vec::new();
                for round in 0..rounds {
                    barrier.wait();
                    let e = ev(&format!("t{t}-r{round}"));
                    outcomes.push(store.append(&s, ExpectedVersion::Exact(round), vec![e]));
                    barrier.wait(); // the round is over for everyone before the next
                }
                outcomes
            })
        })
        .collect();
    let mut wins = vec![0; rounds as usize];
    for h in handles {
        for (round, outcome) in h.join().unwrap().into_iter().enumerate() {
            match outcome {
                Ok(r) => {
                    assert_eq!(r.stream_version, round as u64 + 1);
                    wins[round] += 1;
                }
                Err(StoreError::WrongExpectedVersion {
                    expected, actual, ..
                }) => {
                    assert_eq!(expected, ExpectedVersion::Exact(round as u64));
                    assert_eq!(actual, round as u64 + 1);
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }
    assert!(wins.iter().all(|&w| w == 1), "wins per round: {wins:?}");
    assert_eq!(store.stream_version(&sid("contended")).unwrap(), rounds);
    assert_eq!(store.head_position(), rounds);
}

#[test]
fn many_streams_appended_concurrently_stay_gapless() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..40 {
                    // Two streams per thread, plus one stream every thread shares.
                    let (stream, expected) = if i % 4 == 3 {
                        (sid("shared"), ExpectedVersion::Any)
                    } else {
                        let s = sid(&format!("s{t}-{}", i % 2));
                        let v = store.stream_version(&s).unwrap();
                        (s, ExpectedVersion::Exact(v))
                    };
                    let events = (0..1 + i % 3)
                        .map(|k| ev(&format!("t{t}-i{i}-k{k}")))
                        .collect();
                    store.append(&stream, expected, events).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let all: Vec<_> = store.iter_all(1).collect::<Result<_, _>>().unwrap();
    let expected_total: u64 = 8 * (0..40u64).map(|i| 1 + i % 3).sum::<u64>();
    assert_eq!(all.len() as u64, expected_total);
    let mut versions: HashMap<String, u64> = HashMap::new();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            e.position,
            i as u64 + 1,
            "global positions are gapless and ordered"
        );
        let v = versions.entry(e.stream.to_string()).or_default();
        assert_eq!(
            e.version,
            *v + 1,
            "stream {} versions are gapless",
            e.stream
        );
        *v = e.version;
    }
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.streams, 17);
}

#[test]
fn re_appending_stored_ids_returns_the_original_positions_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = sid("ticket-1");
    let first = store
        .append(&s, ExpectedVersion::NoStream, vec![ev("a"), ev("b")])
        .unwrap();
    store
        .append(&s, ExpectedVersion::Exact(2), vec![ev("c")])
        .unwrap();

    // A redelivery with a stale expected version still succeeds: it is not a new fact.
    let again = store
        .append(&s, ExpectedVersion::NoStream, vec![ev("a"), ev("b")])
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.events, first.events);
    assert_eq!(again.stream_version, 2);
    let subset = store
        .append(&s, ExpectedVersion::Any, vec![ev("b")])
        .unwrap();
    assert_eq!(subset.events, vec![first.events[1]]);
    assert_eq!(store.head_position(), 3);

    match store.append(&s, ExpectedVersion::Any, vec![ev("a"), ev("new")]) {
        Err(StoreError::PartialDuplicate {
            stored_id, new_id, ..
        }) => {
            assert_eq!(stored_id, id("a"));
            assert_eq!(new_id, id("new"));
        }
        other => panic!("expected PartialDuplicate, got {other:?}"),
    }
    assert_eq!(store.head_position(), 3);
    assert!(store.get_in_stream(&s, id("new")).unwrap().is_none());
    // Ids are unique per stream: the same id in another stream is another event.
    let other = store
        .append(&sid("ticket-2"), ExpectedVersion::Any, vec![ev("a")])
        .unwrap();
    assert!(!other.deduplicated);
    assert_eq!(other.events[0].position, 4);
    assert_eq!(
        store
            .get_in_stream(&sid("ticket-2"), id("a"))
            .unwrap()
            .unwrap()
            .position,
        4
    );
    assert_eq!(
        store.get_in_stream(&s, id("a")).unwrap().unwrap().position,
        first.events[0].position
    );
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn concurrent_redeliveries_write_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                (0..30)
                    .map(|i| {
                        barrier.wait();
                        let events = vec![ev(&format!("m{i}-1")), ev(&format!("m{i}-2"))];
                        store
                            .append(&sid("dup"), ExpectedVersion::Any, events)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<_>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for i in 0..30 {
        let fresh = results.iter().filter(|r| !r[i].deduplicated).count();
        assert_eq!(fresh, 1, "message {i} was written exactly once");
        assert!(results.iter().all(|r| r[i].events == results[0][i].events));
    }
    assert_eq!(store.head_position(), 60);
}

#[test]
fn reopening_continues_numbering_and_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let s = sid("ticket-1");
    let hash = {
        let store = open(dir.path());
        store
            .append(&s, ExpectedVersion::NoStream, vec![ev("a"), ev("b")])
            .unwrap();
        store.head_hash()
    };
    let store = open(dir.path());
    assert_eq!(store.head_position(), 2);
    assert_eq!(store.head_hash(), hash);
    let r = store
        .append(&s, ExpectedVersion::Exact(2), vec![ev("c")])
        .unwrap();
    assert_eq!((r.first_position(), r.stream_version), (3, 3));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.head_hash, store.head_hash());
    // A redelivery after a restart is still recognised.
    assert!(
        store
            .append(&s, ExpectedVersion::Any, vec![ev("a")])
            .unwrap()
            .deduplicated
    );
}

#[test]
fn close_refuses_new_appends_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(&sid("s"), ExpectedVersion::Any, vec![ev("a")])
        .unwrap();
    store.close().unwrap();
    store.close().unwrap();
    assert!(matches!(
        store.append(&sid("s"), ExpectedVersion::Any, vec![ev("b")]),
        Err(StoreError::Closed)
    ));
    // Reads keep working on a closed store.
    assert_eq!(store.read_all(1, 10).unwrap().len(), 1);
}

#[test]
fn the_default_config_fsyncs_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let r = store
        .append(&sid("s"), ExpectedVersion::NoStream, vec![ev("a")])
        .unwrap();
    assert_eq!(r.first_position(), 1);
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::new(Arc::new(SystemClock))).unwrap();
    assert_eq!(store.head_position(), 1);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    match Store::open(dir.path(), StoreConfig::default()) {
        Err(StoreError::AlreadyInUse { .. }) => {}
        other => panic!("expected AlreadyInUse, got {other:?}"),
    }
}

/// Group commit: a lone writer's appends take one flush each (the flusher's wait for
/// returning appenders must not hold it back), an idle store flushes nothing, and
/// concurrent appenders share flushes.
#[test]
fn flushes_are_one_per_lone_append_and_shared_by_concurrent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let lone = sid("lone");
    for i in 0..20 {
        store
            .append(&lone, ExpectedVersion::Any, vec![ev(&format!("l{i}"))])
            .unwrap();
    }
    assert_eq!(store.flushes(), 20);
    thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(store.flushes(), 20, "an idle store does not flush");

    let threads = 32;
    let rounds = 20;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let stream = sid(&format!("t{t}"));
                for r in 0..rounds {
                    store
                        .append(&stream, ExpectedVersion::Any, vec![ev(&format!("{t}-{r}"))])
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let shared = store.flushes() - 20;
    assert_eq!(store.head_position(), 20 + (threads * rounds) as u64);
    assert!(
        shared < (threads * rounds) as u64 / 2,
        "{} appends took {shared} flushes",
        threads * rounds
    );
}

#[test]
fn append_many_decides_each_append_on_its_own_and_shares_one_flush() {
    use aftersales_store::Append;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b, c) = (sid("ticket-a"), sid("ticket-b"), sid("ticket-c"));
    store
        .append(&b, ExpectedVersion::NoStream, vec![ev("b1")])
        .unwrap();
    let a1 = ev("a1");
    let flushes = store.flushes();
    let outcomes = store
        .append_many(vec![
            Append {
                stream: a.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![a1.clone(), ev("a2")],
            },
            // Stale: b is at 1.
            Append {
                stream: b.clone(),
                expected: ExpectedVersion::Exact(5),
                events: vec![ev("b2")],
            },
            Append {
                stream: c.clone(),
                expected: ExpectedVersion::Any,
                events: vec![],
            },
            // The same event again in the same request: a redelivery, not a second write.
            Append {
                stream: a.clone(),
                expected: ExpectedVersion::Any,
                events: vec![a1.clone()],
            },
            Append {
                stream: c.clone(),
                expected: ExpectedVersion::NoStream,
                events: vec![ev("c1")],
            },
        ])
        .unwrap();
    assert_eq!(outcomes.len(), 5);
    let first = outcomes[0].as_ref().unwrap();
    assert_eq!((first.first_position(), first.last_position()), (2, 3));
    assert!(matches!(
        outcomes[1],
        Err(StoreError::WrongExpectedVersion { .. })
    ));
    assert!(matches!(outcomes[2], Err(StoreError::EmptyAppend)));
    let again = outcomes[3].as_ref().unwrap();
    assert!(again.deduplicated);
    assert_eq!(again.first_position(), 2);
    assert_eq!(outcomes[4].as_ref().unwrap().first_position(), 4);
    assert_eq!(store.flushes() - flushes, 1, "one flush for the request");
    assert_eq!(store.head_position(), 4);
    assert_eq!(
        store.stream_version(&b).unwrap(),
        1,
        "the stale append wrote nothing"
    );
    let log = store.read_all(1, 10).unwrap();
    let streams: Vec<&str> = log.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(streams, ["ticket-b", "ticket-a", "ticket-a", "ticket-c"]);
    store.close().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.head_position(), 4, "durable once answered");
    assert!(store.verify().unwrap().is_ok());
}

/// A runtime like the service's on a small machine: two worker threads.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

#[test]
fn async_appends_from_many_tasks_are_durable_gapless_and_checked_like_blocking_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let rt = runtime();
    // 64 tasks, 20 appends each to a stream of their own, on 2 threads: they can only
    // all make progress if an append never blocks its runtime thread.
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let stream = sid(&format!("ticket-{t}"));
                    let mut positions = Vec::new();
                    for i in 0..20u64 {
                        let r = store
                            .append_async(
                                &stream,
                                ExpectedVersion::Exact(i),
                                vec![ev(&format!("t{t}-e{i}"))],
                            )
                            .await
                            .unwrap();
                        assert_eq!(r.stream_version, i + 1);
                        // Acknowledged means durable: the head covers it already.
                        assert!(store.head_position() >= r.first_position());
                        positions.push(r.first_position());
                    }
                    positions
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut positions = results;
    positions.sort_unstable();
    assert_eq!(positions, (1..=1280).collect::<Vec<u64>>());
    assert_eq!(store.head_position(), 1280);

    rt.block_on(async {
        let stream = sid("ticket-0");
        // A stale expected version is the same typed conflict as for `append`.
        match store
            .append_async(&stream, ExpectedVersion::Exact(3), vec![ev("late")])
            .await
        {
            Err(StoreError::WrongExpectedVersion {
                expected, actual, ..
            }) => {
                assert_eq!(expected, ExpectedVersion::Exact(3));
                assert_eq!(actual, 20);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // A redelivery answers with the original position.
        let again = store
            .append_async(&stream, ExpectedVersion::Any, vec![ev("t0-e4")])
            .await
            .unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.stream_version, 5);
        // Input refused before it reaches the writer.
        assert!(matches!(
            store
                .append_async(&stream, ExpectedVersion::Any, vec![])
                .await,
            Err(StoreError::EmptyAppend)
        ));
    });
    assert_eq!(store.head_position(), 1280);
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{report}");
}

#[test]
fn an_async_append_is_made_even_if_its_future_is_dropped_and_refused_once_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Queued when the call returns: dropping the future gives up the answer, not the
    // append (documented on `append_async`).
    drop(store.append_async(&sid("ticket-a"), ExpectedVersion::NoStream, vec![ev("a1")]));
    let next = store
        .append(&sid("ticket-a"), ExpectedVersion::Exact(1), vec![ev("a2")])
        .unwrap();
    assert_eq!(next.first_position(), 2);
    store.close().unwrap();
    let refused = runtime().block_on(store.append_async(
        &sid("ticket-a"),
        ExpectedVersion::Any,
        vec![ev("a3")],
    ));
    assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
}

/// sled writes any node over about 128 KB to a blob file that its own flush never syncs
/// (`disk_sync`); a big group is cut into small pages so that the store's writes make
/// none, and reads find every record across the cuts.
#[test]
fn a_big_group_leaves_no_blob_files_and_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 400 events of 1 KB in one append: one group of about 460 KB.
    let events: Vec<NewEvent> = (0..400)
        .map(|i| NewEvent::new(id(&format!("big-{i}")), "test.big", vec![i as u8; 1024]))
        .collect();
    store
        .append(&sid("big"), ExpectedVersion::NoStream, events)
        .unwrap();
    for round in 0..20 {
        store
            .append(
                &sid("small"),
                ExpectedVersion::Any,
                vec![ev(&format!("small-{round}"))],
            )
            .unwrap();
    }
    let read = store.read_stream(&sid("big"), 1, usize::MAX).unwrap();
    assert_eq!(read.len(), 400);
    assert!(read
        .iter()
        .enumerate()
        .all(|(i, e)| e.payload == vec![i as u8; 1024] && e.version == i as u64 + 1));
    assert_eq!(store.read_all(1, usize::MAX).unwrap().len(), 420);
    let report = store.verify().unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    store.close().unwrap();
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "sled wrote blob files: {blobs:?}");
}
