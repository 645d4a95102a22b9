//! Crash-test helper: appends forever from several threads and prints every acknowledged
//! event, so a test can kill it with SIGKILL and check that nothing acknowledged was lost.
//!
//! Usage: `store-crash-writer <dir> <round> [threads]`
//!
//! Each line on stdout is `ACK <position> <version> <stream> <id>`, written only after
//! `append` returned. Event ids are deterministic (`round/thread/append/event`) and each
//! payload is `<append key>|<index>|<count>`, so the test can also check that every
//! stored append is complete, acknowledged or not. Odd rounds never index when idle
//! (`StoreConfig::index_when_idle`).

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use aftersales_store::{ExpectedVersion, NewEvent, Store, StoreConfig, StreamId};
use uuid::Uuid;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(round)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: store-crash-writer <dir> <round> [threads]");
        return ExitCode::from(2);
    };
    let threads: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(4);
    // Odd rounds keep the stream index in memory until a generation fills, so the kill
    // leaves it far behind the log and the reopen must add it back from the pages.
    let lagging = round.parse::<u64>().is_ok_and(|r| r % 2 == 1);
    let config = StoreConfig::default().with_index_when_idle(!lagging);
    let store = match Store::open(dir, config) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            eprintln!("store-crash-writer: {e}");
            return ExitCode::from(1);
        }
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(&store);
            let out = Arc::clone(&out);
            let round = round.clone();
            std::thread::spawn(move || write_forever(&store, &out, &round, t))
        })
        .collect();
    for w in workers {
        if let Ok(Err(e)) = w.join() {
            eprintln!("store-crash-writer: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn write_forever(
    store: &Store,
    out: &Mutex<std::io::Stdout>,
    round: &str,
    thread: usize,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Three streams owned by this thread (checked with Exact) and one shared by all (Any).
    let own: Vec<StreamId> = (0..3)
        .map(|k| StreamId::new(format!("t{thread}-s{k}")))
        .collect::<Result<_, _>>()?;
    let shared = StreamId::new("shared")?;
    let mut previous: Option<(StreamId, Vec<NewEvent>)> = None;
    for i in 0u64.. {
        let key = format!("r{round}-t{thread}-a{i}");
        let count = 1 + (i % 3) as usize;
        let events: Vec<NewEvent> = (0..count)
            .map(|k| {
                let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{key}-e{k}").as_bytes());
                NewEvent::new(id, "crash.test", format!("{key}|{k}|{count}").into_bytes())
            })
            .collect();
        let (stream, expected) = if i % 5 == 4 {
            (shared.clone(), ExpectedVersion::Any)
        } else {
            let s = own[(i % 3) as usize].clone();
            let v = store.stream_version(&s)?;
            (s, ExpectedVersion::Exact(v))
        };
        let result = store.append(&stream, expected, events.clone())?;
        let mut lines = String::new();
        for p in &result.events {
            lines.push_str(&format!(
                "ACK {} {} {} {}\n",
                p.position, p.version, stream, p.id
            ));
        }
        {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            out.write_all(lines.as_bytes())?;
            out.flush()?;
        }
        // Every tenth append, redeliver the previous one: it must come back unchanged.
        if i % 10 == 9 {
            if let Some((s, evs)) = previous.take() {
                let again = store.append(&s, ExpectedVersion::Exact(u64::MAX), evs)?;
                if !again.deduplicated {
                    return Err("a redelivery was written again".into());
                }
            }
        }
        previous = Some((stream, events));
    }
    Ok(())
}
