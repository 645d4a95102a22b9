//! Crash test: child processes open tickets and fire their deadlines while this test kills
//! them with SIGKILL at random moments. Afterwards every deadline that should have fired has
//! exactly one `deadline_expired` event (with at most one automatic outcome, stored in the
//! same append), no disarmed deadline fired, every acknowledged opening and firing is in the
//! store, and the store verifies.
//!
//! Set `CRASH_SEED` to replay a run and `CRASH_ROUNDS` for more firing rounds.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aftersales_schema::{decode_stored, EventEnvelope};
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::{Actor, Event};

/// Far after every due time (the tickets open in November 2026).
const NOW: &str = "2027-06-01T00:00:00+08:00";

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

/// Runs the child; kills it after `kill_after` if given. Returns its complete stdout lines
/// and whether it exited by itself with success.
fn run_child(args: &[&str], kill_after: Option<Duration>) -> (Vec<String>, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scheduler-crash-child"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the crash child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let (mut lines, mut line) = (Vec::new(), Vec::new());
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            // A line cut by the kill was never fully reported: skip it.
            if line.last() == Some(&b'\n') {
                lines.push(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            line.clear();
        }
        lines
    });
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        // SIGKILL on Unix: no destructor, no flush.
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(
        !stderr.contains("scheduler-crash-child:"),
        "the child failed on its own: {stderr}"
    );
    (reader.join().unwrap(), status.success())
}

fn number(ticket: &str) -> usize {
    ticket.split_once(":c").unwrap().1.parse().unwrap()
}

/// Every ticket's events, read from the log.
fn log(store: &Store) -> BTreeMap<String, Vec<(u64, EventEnvelope)>> {
    let mut tickets: BTreeMap<String, Vec<(u64, EventEnvelope)>> = BTreeMap::new();
    for record in store.iter_all(1) {
        let record = record.unwrap();
        let envelope = decode_stored(&record.payload, record.recorded_at).unwrap();
        tickets
            .entry(envelope.ticket_id.to_string())
            .or_default()
            .push((record.position, envelope));
    }
    tickets
}

fn is_deadline_key(e: &EventEnvelope) -> bool {
    e.source_message_id
        .as_deref()
        .is_some_and(|k| k.starts_with("deadline/"))
}

/// Checks the store; `finished`: every deadline should have fired by now.
fn check(dir: &Path, what: &str, acked: &[String], fired: &HashMap<String, u64>, finished: bool) {
    let store = Store::open(dir, StoreConfig::default())
        .unwrap_or_else(|e| panic!("{what}: the store does not reopen: {e}"));
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{what}: {report}");
    let tickets = log(&store);
    for ticket in acked {
        assert!(
            tickets.contains_key(ticket),
            "{what}: acknowledged {ticket} lost"
        );
    }
    for (ticket, events) in &tickets {
        let n = number(ticket);
        let expiries: Vec<u64> = events
            .iter()
            .filter(|(_, e)| matches!(e.event, Event::DeadlineExpired { .. }))
            .map(|(p, _)| *p)
            .collect();
        let reviewed = events.iter().position(|(_, e)| {
            matches!(
                e.event,
                Event::Approved {
                    by: Actor::Merchant,
                    ..
                }
            )
        });
        let fired_group: Vec<(u64, &EventEnvelope)> = events
            .iter()
            .filter(|(_, e)| is_deadline_key(e))
            .map(|(p, e)| (*p, e))
            .collect();
        assert!(
            expiries.len() <= 1,
            "{what}: {ticket} expired twice: {expiries:?}"
        );
        if let Some(at) = reviewed {
            let expired_first = events[..at]
                .iter()
                .any(|(_, e)| matches!(e.event, Event::DeadlineExpired { .. }));
            assert!(
                expiries.is_empty() || expired_first,
                "{what}: {ticket} fired a disarmed deadline"
            );
        }
        // One firing: one key, consecutive positions, starting with the expiry.
        if let Some((first, e)) = fired_group.first() {
            assert!(
                matches!(e.event, Event::DeadlineExpired { .. }),
                "{what}: {ticket}"
            );
            for (i, (p, f)) in fired_group.iter().enumerate() {
                assert_eq!(*p, first + i as u64, "{what}: {ticket}: firing split");
                assert_eq!(f.source_message_id, e.source_message_id, "{what}: {ticket}");
            }
        }
        if let Some(position) = fired.get(ticket) {
            assert_eq!(
                expiries.first(),
                Some(position),
                "{what}: a reported firing of {ticket} is not in the store"
            );
        }
        if finished {
            let expected: &[&str] = match (reviewed, n % 4) {
                (Some(_), _) => &[],
                (None, 0) => &["deadline_expired", "approved", "refunded_without_return"],
                (None, 2) => &["deadline_expired", "refunded_without_return"],
                (None, _) => &["deadline_expired"],
            };
            let names: Vec<&str> = fired_group.iter().map(|(_, e)| e.event.name()).collect();
            assert_eq!(names, expected, "{what}: {ticket}");
        }
    }
}

#[test]
fn every_due_deadline_fires_exactly_once_across_sigkills() {
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("scheduler crash test seed {seed} (CRASH_SEED={seed} to replay)");
    let mut rng = XorShift(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();

    // Open tickets until a good number are stored, killing the opener mid-way each time.
    let mut acked = Vec::new();
    for attempt in 0..8 {
        let (lines, _) = run_child(&["open", path, "20000"], Some(rng.millis(800, 1500)));
        let opened = lines.iter().filter(|l| l.starts_with("OPENED ")).count();
        let disarmed = lines.iter().filter(|l| l.starts_with("DISARMED ")).count();
        acked.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("OPENED ").map(str::to_owned)),
        );
        eprintln!("open attempt {attempt}: {opened} opened, {disarmed} disarmed");
        if acked.len() >= 600 {
            break;
        }
    }
    assert!(acked.len() >= 100, "the opener rarely got going");
    check(dir.path(), "after opening", &acked, &HashMap::new(), false);

    // Fire, killing the child at random moments, until a few runs were killed mid-firing.
    let mut fired: HashMap<String, u64> = HashMap::new();
    let mut killed_mid_firing = 0;
    for round in 0..rounds * 4 {
        let kill_after = rng.millis(50, 600);
        let (lines, finished) = run_child(&["fire", path, NOW], Some(kill_after));
        let mut n = 0;
        for line in &lines {
            if let ["FIRED", ticket, _rule, position] = line.split(' ').collect::<Vec<_>>()[..] {
                let previous = fired.insert(ticket.to_owned(), position.parse().unwrap());
                assert!(previous.is_none(), "round {round}: {ticket} fired twice");
                n += 1;
            }
        }
        if n > 0 && !finished {
            killed_mid_firing += 1;
        }
        eprintln!(
            "fire round {round}: killed after {kill_after:?}, {n} fired, finished: {finished}"
        );
        check(
            dir.path(),
            &format!("fire round {round}"),
            &acked,
            &fired,
            false,
        );
        if killed_mid_firing >= rounds || (finished && n == 0) {
            break;
        }
    }
    assert!(
        killed_mid_firing >= 3,
        "only {killed_mid_firing} runs were killed while firing"
    );
    let (lines, finished) = run_child(&["fire", path, NOW], None);
    assert!(finished, "the last run did not finish: {lines:?}");
    for line in &lines {
        if let ["FIRED", ticket, _rule, position] = line.split(' ').collect::<Vec<_>>()[..] {
            assert!(
                fired
                    .insert(ticket.to_owned(), position.parse().unwrap())
                    .is_none(),
                "last run: {ticket} fired twice"
            );
        }
    }
    eprintln!("last run: {}", lines.last().map_or("", String::as_str));
    check(dir.path(), "at the end", &acked, &fired, true);
    // Nothing is left: one more run fires nothing.
    let (lines, finished) = run_child(&["fire", path, NOW], None);
    assert!(finished);
    assert!(!lines.iter().any(|l| l.starts_with("FIRED")), "{lines:?}");
    eprintln!("crash test took {:?}", started.elapsed());
}
