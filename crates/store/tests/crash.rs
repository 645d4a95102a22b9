//! Crash test: a child process appends from several threads and prints every
//! acknowledged event; we SIGKILL it at random moments, reopen the same directory and
//! check that every acknowledged event is there exactly once, positions and stream
//! versions are gapless, every stored append is complete, and the chain verifies.
//!
//! Set `CRASH_SEED` to replay a run, `CRASH_ROUNDS` to run more rounds, and
//! `CREATE_ATTEMPTS` for more kills during a store's first open.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aftersales_store::{Store, StoreConfig};
use uuid::Uuid;

/// One acknowledged event as printed by the child.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    position: u64,
    version: u64,
    stream: String,
}

/// Small deterministic generator so a failing run can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs the writer for `run_for`, kills it, and returns the complete ACK lines.
fn run_writer_and_kill(dir: &Path, round: usize, run_for: Duration) -> Vec<(Uuid, Ack)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(dir)
        .arg(round.to_string())
        .arg("4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the crash writer");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut acks = Vec::new();
        let mut line = Vec::new();
        // A line cut by the kill has no newline: it was never fully reported, skip it.
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if line.last() == Some(&b'\n') {
                let text = String::from_utf8_lossy(&line);
                let parts: Vec<&str> = text.split_whitespace().collect();
                if let ["ACK", position, version, stream, id] = parts[..] {
                    acks.push((
                        Uuid::parse_str(id).unwrap(),
                        Ack {
                            position: position.parse().unwrap(),
                            version: version.parse().unwrap(),
                            stream: stream.to_string(),
                        },
                    ));
                }
            }
            line.clear();
        }
        acks
    });
    std::thread::sleep(run_for);
    // `Child::kill` sends SIGKILL on Unix: no destructor, no final flush.
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(
        stderr.trim().is_empty() || status.code().is_none(),
        "round {round}: writer failed on its own: {stderr}"
    );
    assert!(
        !stderr.contains("store-crash-writer:"),
        "round {round}: {stderr}"
    );
    reader.join().unwrap()
}

/// Copies a store that failed to reopen somewhere it survives the test, for diagnosis.
fn keep_for_inspection(dir: &Path, round: usize) -> String {
    let target = std::env::temp_dir().join(format!(
        "aftersales-store-crash-failure-{}-round{round}",
        std::process::id()
    ));
    let copied = Command::new("cp").arg("-r").arg(dir).arg(&target).status();
    match copied {
        Ok(s) if s.success() => target.display().to_string(),
        _ => "nowhere (copy failed)".to_string(),
    }
}

/// Reopens the store and checks everything; returns the head.
fn check(dir: &Path, round: usize, acked: &HashMap<Uuid, Ack>) -> u64 {
    let store = Store::open(dir, StoreConfig::default()).unwrap_or_else(|e| {
        let kept = keep_for_inspection(dir, round);
        panic!("round {round}: the store does not reopen: {e:?} (copy kept in {kept})")
    });
    let head = store.head_position();
    let mut ids = HashSet::new();
    // Where each event is, from the log walk; the acknowledged ones are looked up in it
    // and then read back through their stream's index.
    let mut stored_at: HashMap<Uuid, (u64, u64, String)> = HashMap::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut appends: HashMap<String, (usize, usize)> = HashMap::new();
    let mut expected_position = 1;
    for event in store.iter_all(1) {
        let event = event.unwrap_or_else(|e| panic!("round {round}: read failed: {e}"));
        assert_eq!(
            event.position, expected_position,
            "round {round}: gap in the log"
        );
        expected_position += 1;
        assert!(
            ids.insert(event.id),
            "round {round}: id {} stored twice",
            event.id
        );
        stored_at.insert(
            event.id,
            (event.position, event.version, event.stream.to_string()),
        );
        let v = versions.entry(event.stream.to_string()).or_default();
        assert_eq!(
            event.version,
            *v + 1,
            "round {round}: gap in stream {}",
            event.stream
        );
        *v = event.version;
        // payload: "<append key>|<index>|<count>"
        let payload = String::from_utf8(event.payload).unwrap();
        let mut parts = payload.split('|');
        let key = parts.next().unwrap().to_string();
        let count: usize = parts.nth(1).unwrap().parse().unwrap();
        let entry = appends.entry(key).or_insert((0, count));
        entry.0 += 1;
    }
    assert_eq!(
        expected_position - 1,
        head,
        "round {round}: head does not match the log"
    );
    for (key, (seen, count)) in &appends {
        assert_eq!(
            seen, count,
            "round {round}: append {key} is stored partially"
        );
    }
    for (id, ack) in acked {
        let (position, version, stream) = stored_at
            .get(id)
            .unwrap_or_else(|| panic!("round {round}: acknowledged event {id} ({ack:?}) is lost"));
        assert_eq!(
            (*position, *version, stream.as_str()),
            (ack.position, ack.version, ack.stream.as_str()),
            "round {round}: acknowledged event {id} moved"
        );
    }
    // The stream index finds them too: every stream's entries, read once.
    let mut streams: Vec<&String> = versions.keys().collect();
    streams.sort();
    for stream in streams {
        let sid = aftersales_store::StreamId::new(stream.as_str()).unwrap();
        let events = store.read_stream(&sid, 1, usize::MAX).unwrap();
        assert_eq!(
            events.len() as u64,
            versions[stream],
            "round {round}: {stream}"
        );
        for e in events {
            assert_eq!(
                stored_at.get(&e.id).map(|s| s.0),
                Some(e.position),
                "round {round}: the index of {stream} is off"
            );
        }
    }
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "round {round}: {report}");
    head
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(24);
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
    eprintln!("crash test seed {seed} (CRASH_SEED={seed} to replay)");
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<Uuid, Ack> = HashMap::new();
    let started = Instant::now();
    let mut rounds_with_acks = 0;
    for round in 0..rounds {
        // Mostly kill mid-append; sometimes during start-up and recovery.
        let run_for = Duration::from_millis(if round % 6 == 5 {
            rng.next() % 40
        } else {
            60 + rng.next() % 400
        });
        let acks = run_writer_and_kill(dir.path(), round, run_for);
        if !acks.is_empty() {
            rounds_with_acks += 1;
        }
        for (id, ack) in acks {
            assert!(
                acked.insert(id, ack).is_none(),
                "round {round}: id {id} acknowledged twice"
            );
        }
        let head = check(dir.path(), round, &acked);
        eprintln!(
            "round {round}: ran {run_for:?}, head {head}, {} acknowledged so far",
            acked.len()
        );
    }
    assert!(
        rounds_with_acks >= rounds / 2,
        "the writer rarely got going"
    );
    eprintln!("crash test took {:?}", started.elapsed());
}

/// A kill while sled creates its files (the first open of a directory) must not leave a
/// directory that can never be opened again.
#[test]
fn a_store_killed_while_being_created_still_opens() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let attempts: usize = std::env::var("CREATE_ATTEMPTS")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(12);
    for attempt in 0..attempts {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("store");
        let run_for = Duration::from_millis(rng.next() % 30);
        let acks = run_writer_and_kill(&dir, attempt, run_for);
        let acked: HashMap<Uuid, Ack> = acks.into_iter().collect();
        check(&dir, attempt, &acked);
    }
}
