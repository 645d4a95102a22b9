//! Leases against a real `nats-server -js`: three instances share twelve partitions, each
//! owning its share; one that crashes loses its partitions to the others within the lease
//! time; one that stops cleanly hands over at once; and no partition ever has two owners
//! at the same moment. Needs `nats-server` (CI installs it).

#[path = "../../ingest/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aftersales_lease::{Change, LeaseConfig, Leases, Timing};
use aftersales_partition::{Partition, PartitionCount};
use async_nats::jetstream;
use support::NatsServer;

const TIMING: Timing = Timing {
    ttl: Duration::from_millis(1_500),
    margin: Duration::from_millis(300),
};

/// Every ownership change of every instance, as it was reported, on one clock.
#[derive(Default)]
struct Journal {
    events: Mutex<Vec<(Instant, String, Change)>>,
}

impl Journal {
    fn owned(&self) -> BTreeMap<String, BTreeSet<Partition>> {
        let mut now = BTreeMap::new();
        for (_, who, change) in self.events.lock().unwrap().iter() {
            now.insert(who.clone(), change.owned.clone());
        }
        now
    }

    /// Ownership intervals per partition: (owner, from, to); `to` None while it lasts.
    fn intervals(
        &self,
        crashed: &BTreeMap<String, Instant>,
    ) -> Vec<(Partition, String, Instant, Option<Instant>)> {
        let mut open: BTreeMap<(Partition, String), Instant> = BTreeMap::new();
        let mut out = Vec::new();
        for (at, who, change) in self.events.lock().unwrap().iter() {
            for p in &change.gained {
                open.insert((*p, who.clone()), *at);
            }
            for p in &change.lost {
                let from = open.remove(&(*p, who.clone())).expect("lost what it had");
                out.push((*p, who.clone(), from, Some(*at)));
            }
        }
        for ((p, who), from) in open {
            // A crashed instance owned nothing after its crash.
            out.push((p, who.clone(), from, crashed.get(&who).copied()));
        }
        out
    }
}

struct Instance {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(js: &jetstream::Context, name: &str, journal: &Arc<Journal>) -> Instance {
    let cfg = LeaseConfig {
        bucket: "AFTERSALES_LEASES".into(),
        instance: name.into(),
        partitions: PartitionCount::new(12).unwrap(),
        timing: TIMING,
    };
    let (journal, who) = (journal.clone(), name.to_owned());
    let leases = Leases::new(
        cfg,
        Arc::new(move |c: &Change| {
            journal
                .events
                .lock()
                .unwrap()
                .push((Instant::now(), who.clone(), c.clone()))
        }),
    )
    .unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let js = js.clone();
    let task = tokio::spawn(async move {
        leases
            .run(js, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Instance {
        stop: Some(stop),
        task,
    }
}

/// Waits until the instances own `want` partitions each and every partition is owned;
/// instances named in neither `want` nor `crashed` must own nothing.
async fn settle(
    journal: &Journal,
    want: &[(&str, usize)],
    crashed: &[&str],
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let owned = journal.owned();
        let all: BTreeSet<Partition> = owned
            .iter()
            .filter(|(who, _)| !crashed.contains(&who.as_str()))
            .flat_map(|(_, set)| set.iter().copied())
            .collect();
        let counts_ok = want
            .iter()
            .all(|(who, n)| owned.get(*who).map_or(0, BTreeSet::len) == *n);
        let others_empty = owned
            .iter()
            .filter(|(who, _)| !want.iter().any(|(w, _)| w == *who))
            .filter(|(who, _)| !crashed.contains(&who.as_str()))
            .all(|(_, set)| set.is_empty());
        if counts_ok && others_empty && all.len() == 12 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not settled to {want:?} within {within:?}: {owned:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_partitions_and_take_over_from_a_crashed_one() {
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let journal = Arc::new(Journal::default());
    let a = start(&js, "a", &journal);
    let b = start(&js, "b", &journal);
    let mut c = start(&js, "c", &journal);
    settle(
        &journal,
        &[("a", 4), ("b", 4), ("c", 4)],
        &[],
        Duration::from_secs(20),
    )
    .await;

    // b crashes: its task is gone without a word; a and c take its four within the lease
    // time (plus a round or two).
    b.task.abort();
    let crashed_at = Instant::now();
    let took = settle(
        &journal,
        &[("a", 6), ("c", 6)],
        &["b"],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        took >= TIMING.ttl - TIMING.margin,
        "taken over after {took:?}, before the crashed one's lease could have run out"
    );
    assert!(took < TIMING.ttl * 3, "taken over only after {took:?}");

    // c stops cleanly: it releases at once, and a takes everything well before a ttl.
    c.stop.take().unwrap().send(()).unwrap();
    let handed = settle(&journal, &[("a", 12)], &["b"], Duration::from_secs(20)).await;
    assert!(handed < TIMING.ttl, "a clean handover took {handed:?}");
    eprintln!(
        "takeover after a crash {took:?}, clean handover {handed:?} (ttl {:?})",
        TIMING.ttl
    );
    c.task.await.unwrap();

    // Never two owners of one partition at the same moment.
    let crashed = BTreeMap::from([("b".to_owned(), crashed_at)]);
    let intervals = journal.intervals(&crashed);
    for (i, (p, who, from, to)) in intervals.iter().enumerate() {
        for (q, other, from2, to2) in &intervals[i + 1..] {
            if p != q || who == other {
                continue;
            }
            let overlap =
                from < &to2.unwrap_or(Instant::now()) && from2 < &to.unwrap_or(Instant::now());
            assert!(
                !overlap,
                "partition {p}: {who} and {other} owned it at once"
            );
        }
    }
    assert!(
        intervals.len() >= 16,
        "the partitions moved: {}",
        intervals.len()
    );
    drop(a);
}
