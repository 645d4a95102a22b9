//! Reading: streams both ways, the global log, ids, as-of views, subscriptions.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use aftersales_store::{ExpectedVersion, ManualClock, StoreError};
use chrono::Duration as ChronoDuration;
use common::{ev, id, open, open_with_clock, sid, t0};

#[test]
fn streams_read_forward_and_backward_with_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let s = sid("ticket-1");
    for i in 1..=5 {
        store
            .append(
                &s,
                ExpectedVersion::Exact(i - 1),
                vec![ev(&format!("e{i}"))],
            )
            .unwrap();
        store
            .append(
                &sid("noise"),
                ExpectedVersion::Any,
                vec![ev(&format!("n{i}"))],
            )
            .unwrap();
    }
    let versions = |events: Vec<aftersales_store::RecordedEvent>| {
        events.into_iter().map(|e| e.version).collect::<Vec<_>>()
    };
    assert_eq!(
        versions(store.read_stream(&s, 1, 100).unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(versions(store.read_stream(&s, 3, 2).unwrap()), vec![3, 4]);
    assert_eq!(
        versions(store.read_stream(&s, 6, 10).unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(
        versions(store.read_stream_backward(&s, None, 3).unwrap()),
        vec![5, 4, 3]
    );
    assert_eq!(
        versions(store.read_stream_backward(&s, Some(2), 10).unwrap()),
        vec![2, 1]
    );
    let e3 = &store.read_stream(&s, 3, 1).unwrap()[0];
    assert_eq!(e3.id, id("e3"));
    assert_eq!(e3.position, 5);
    assert_eq!(e3.stream, s);
    assert_eq!(e3.event_type, "test.happened");
    assert_eq!(e3.payload, b"e3");
    // Streams whose names are prefixes of each other do not mix.
    store
        .append(&sid("ticket-10"), ExpectedVersion::Any, vec![ev("other")])
        .unwrap();
    assert_eq!(store.read_stream(&s, 1, 100).unwrap().len(), 5);
}

/// The index keeps 32 entries per chunk, and a read looks at the first chunk alone
/// unless it is full: streams ending on, just past and well past a chunk's end read back
/// whole, from any version, after a reopen (nothing cached), and append where they end.
#[test]
fn streams_across_index_chunk_boundaries_read_whole_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let lengths = [31u64, 32, 33, 64, 70];
    {
        let store = open(dir.path());
        for n in lengths {
            let s = sid(&format!("long-{n}"));
            for i in 1..=n {
                store
                    .append(
                        &s,
                        ExpectedVersion::Exact(i - 1),
                        vec![ev(&format!("{n}-{i}"))],
                    )
                    .unwrap();
            }
        }
        store.close().unwrap();
    }
    let store = open(dir.path());
    for n in lengths {
        let s = sid(&format!("long-{n}"));
        for from in [1, 31, 32, 33, 64, 65, n, n + 1] {
            let got: Vec<u64> = store
                .read_stream(&s, from, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.version)
                .collect();
            let want: Vec<u64> = (from.min(n + 1)..=n).collect();
            assert_eq!(got, want, "stream of {n} from {from}");
        }
        let last = store.read_stream(&s, n, 1).unwrap();
        assert_eq!(last[0].id, id(&format!("{n}-{n}")));
        // The writer, reading the index afresh, knows which ids the stream holds (scanned
        // in a short stream, mapped in a long one)...
        for v in [1, n / 2 + 1, n] {
            let again = store
                .append(&s, ExpectedVersion::Any, vec![ev(&format!("{n}-{v}"))])
                .unwrap();
            assert!(again.deduplicated, "stream of {n}, version {v}");
            let stored = &store.read_stream(&s, v, 1).unwrap()[0];
            assert_eq!(
                (again.events[0].version, again.events[0].position),
                (v, stored.position),
                "stream of {n}, version {v}"
            );
        }
        // ...and where it ends.
        match store.append(&s, ExpectedVersion::Exact(n - 1), vec![ev("late")]) {
            Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, n),
            other => panic!("stream of {n}: {other:?}"),
        }
        let next = store
            .append(
                &s,
                ExpectedVersion::Exact(n),
                vec![ev(&format!("{n}-next"))],
            )
            .unwrap();
        assert_eq!(next.stream_version, n + 1);
    }
    assert!(store.read_stream(&sid("never"), 1, 10).unwrap().is_empty());
}

#[test]
fn the_global_log_reads_in_pages_and_by_id_in_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..600 {
        store
            .append(
                &sid(&format!("s{}", i % 7)),
                ExpectedVersion::Any,
                vec![ev(&format!("e{i}"))],
            )
            .unwrap();
    }
    let page = store.read_all(590, 100).unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        (590..=600).collect::<Vec<_>>()
    );
    assert_eq!(store.read_all(0, 3).unwrap()[0].position, 1);
    assert!(store.read_all(601, 10).unwrap().is_empty());
    let all: Vec<_> = store.iter_all(250).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 351);
    assert_eq!(all.last().unwrap().hash, store.head_hash());

    let e = store.get_in_stream(&sid("s6"), id("e41")).unwrap().unwrap();
    assert_eq!(e.position, 42);
    assert!(store
        .get_in_stream(&sid("s5"), id("e41"))
        .unwrap()
        .is_none());
    assert!(store
        .get_in_stream(&sid("s6"), id("never"))
        .unwrap()
        .is_none());
}

#[test]
fn as_of_reads_follow_the_injected_clock_even_when_it_jumps_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open_with_clock(dir.path(), Arc::new(clock.clone()));
    let s = sid("ticket-1");
    store
        .append(&s, ExpectedVersion::Any, vec![ev("opened")])
        .unwrap();
    clock.advance(ChronoDuration::hours(1));
    store
        .append(&s, ExpectedVersion::Any, vec![ev("assigned")])
        .unwrap();
    store
        .append(&sid("other"), ExpectedVersion::Any, vec![ev("x")])
        .unwrap();
    // The clock jumps back: recorded_at must not.
    clock.set(t0() - ChronoDuration::minutes(30));
    store
        .append(&s, ExpectedVersion::Any, vec![ev("closed")])
        .unwrap();
    clock.set(t0() + ChronoDuration::hours(3));
    store
        .append(&s, ExpectedVersion::Any, vec![ev("reopened")])
        .unwrap();

    let all = store.read_all(1, 10).unwrap();
    let times: Vec<_> = all.iter().map(|e| e.recorded_at).collect();
    assert_eq!(times[0], t0());
    assert_eq!(times[1], t0() + ChronoDuration::hours(1));
    assert_eq!(times[3], t0() + ChronoDuration::hours(1), "max(now, last)");
    assert!(times.windows(2).all(|w| w[0] <= w[1]));

    assert_eq!(
        store
            .position_as_of(t0() - ChronoDuration::seconds(1))
            .unwrap(),
        0
    );
    assert_eq!(store.position_as_of(t0()).unwrap(), 1);
    assert_eq!(
        store
            .position_as_of(t0() + ChronoDuration::minutes(59))
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .position_as_of(t0() + ChronoDuration::hours(1))
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .position_as_of(t0() + ChronoDuration::days(1))
            .unwrap(),
        5
    );

    let until = store
        .read_all_until(t0() + ChronoDuration::minutes(30), 1, 100)
        .unwrap();
    assert_eq!(
        until.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id("opened")]
    );
    let stream_then = store
        .read_stream_until(&s, t0() + ChronoDuration::hours(2), 100)
        .unwrap();
    assert_eq!(
        stream_then.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![id("opened"), id("assigned"), id("closed")]
    );
}

#[test]
fn a_subscription_catches_up_then_goes_live_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    for i in 0..700 {
        store
            .append(
                &sid(&format!("pre{}", i % 5)),
                ExpectedVersion::Any,
                vec![ev(&format!("pre{i}"))],
            )
            .unwrap();
    }
    let mut sub = store.subscribe(1);
    // Read part of the backlog before the writers start, so the switch to live happens
    // while appends are running.
    let mut seen: Vec<u64> = (0..300)
        .map(|_| {
            sub.next_timeout(Duration::from_secs(5))
                .unwrap()
                .unwrap()
                .position
        })
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..150 {
                    let events = (0..1 + i % 2)
                        .map(|k| ev(&format!("live-{t}-{i}-{k}")))
                        .collect();
                    store
                        .append(&sid(&format!("live{t}")), ExpectedVersion::Any, events)
                        .unwrap();
                }
            })
        })
        .collect();
    let total = 700 + 4 * (75 + 150);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total && Instant::now() < deadline {
        if let Some(e) = sub.next_timeout(Duration::from_millis(200)).unwrap() {
            seen.push(e.position);
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(seen, (1..=total as u64).collect::<Vec<_>>());
    // Nothing more arrives.
    assert!(sub
        .next_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());

    // A subscription from the middle starts exactly there.
    let mut mid = store.subscribe(500);
    assert_eq!(
        mid.next_timeout(Duration::from_secs(1))
            .unwrap()
            .unwrap()
            .position,
        500
    );
}

#[test]
fn a_subscriber_that_never_reads_does_not_block_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let mut idle = store.subscribe(1);
    // Appenders never wait for subscribers, so 10k appends finish while this one sleeps;
    // if they did wait, this would hit the deadline instead.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for t in 0..16 {
        let store = Arc::clone(&store);
        let done_tx = done_tx.clone();
        thread::spawn(move || {
            for i in 0..625 {
                store
                    .append(
                        &sid(&format!("w{t}")),
                        ExpectedVersion::Any,
                        vec![ev(&format!("{t}-{i}"))],
                    )
                    .unwrap();
            }
            done_tx.send(()).unwrap();
        });
    }
    for _ in 0..16 {
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("appends were blocked");
    }
    assert_eq!(store.head_position(), 10_000);
    // The idle subscriber still has everything, from the start.
    let first: Vec<_> = (0..3)
        .map(|_| {
            idle.next_timeout(Duration::from_secs(1))
                .unwrap()
                .unwrap()
                .position
        })
        .collect();
    assert_eq!(first, vec![1, 2, 3]);
}

#[test]
fn closing_the_store_ends_subscriptions_after_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..3 {
        store
            .append(&sid("s"), ExpectedVersion::Any, vec![ev(&format!("e{i}"))])
            .unwrap();
    }
    let sub = store.subscribe(2);
    let reader = thread::spawn(move || sub.map(|e| e.unwrap().position).collect::<Vec<_>>());
    thread::sleep(Duration::from_millis(100));
    store
        .append(&sid("s"), ExpectedVersion::Any, vec![ev("late")])
        .unwrap();
    drop(store);
    assert_eq!(reader.join().unwrap(), vec![2, 3, 4]);
}

#[test]
fn next_timeout_times_out_and_reports_closed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut sub = store.subscribe(1);
    let start = Instant::now();
    assert!(sub
        .next_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
    assert!(start.elapsed() >= Duration::from_millis(50));
    store.close().unwrap();
    assert!(matches!(
        sub.next_timeout(Duration::from_secs(5)),
        Err(StoreError::Closed)
    ));
}
