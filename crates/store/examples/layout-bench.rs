//! Bare sled under the key layouts the store could use (BENCHMARKS.md, "Event store":
//! "Where the rest goes"). One thread plays the store's writer for groups of one-event
//! appends to distinct streams, then writes the commit marker, `flush()` and `fdatasync`
//! once per group, as the store does:
//!
//! - `records`: one insert per record and nothing else, the benchmark's raw limit;
//! - `v1`: the store's format 1, per event an id-index lookup and inserts of the record,
//!   the stream-index entry and the id-index entry;
//! - `pages`: one insert per group holding all its records, and per event one insert of its
//!   stream's index chunk (up to 32 entries of version, position and id, kept in memory
//!   while written), no global id index.
//!
//! Prints events/s, the ratio to `records` measured in the same run, and how much the
//! resident memory of each layout's process grew over the second half of its run (16 MiB
//! cache, full by then), per event written in that half.
//!
//! `cargo run --release -p aftersales-store --example layout-bench -- [seconds] [group] [streams]`

#[path = "support/rss.rs"]
mod rss;

use std::collections::HashMap;
use std::time::{Duration, Instant};

const CHUNK_ENTRIES: u64 = 32;

fn stream_name(n: u64) -> Vec<u8> {
    format!("tmall:refund-{n:08}").into_bytes()
}

fn chunk_key(stream: &[u8], chunk: u64) -> Vec<u8> {
    [b"T".as_slice(), stream, &chunk.to_be_bytes()].concat()
}

/// Runs one layout for `seconds`; returns (events, elapsed, RSS growth in KiB).
fn run(
    layout: &str,
    seconds: f64,
    group: u64,
    streams: u64,
) -> Result<(u64, Duration, i64, u64), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(16 << 20)
        .open()?;
    let data = std::fs::File::open(dir.path().join("db"))?;
    let record = vec![0x5au8; 340];
    let mut versions: HashMap<u64, u64> = HashMap::new();
    let mut chunks: HashMap<u64, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    let half = started + Duration::from_secs_f64(seconds / 2.0);
    let mut at_half: Option<(u64, i64)> = None;
    let until = started + Duration::from_secs_f64(seconds);
    let mut position = 0u64;
    let mut next_stream = 0u64;
    while Instant::now() < until {
        if at_half.is_none() && Instant::now() >= half {
            at_half = Some((position, rss::rss_kib() as i64));
        }
        let mut page = Vec::with_capacity(group as usize * (record.len() + 4));
        let first = position + 1;
        for _ in 0..group {
            position += 1;
            let s = next_stream % streams;
            next_stream += 1;
            let version = versions.entry(s).or_insert(0);
            *version += 1;
            let id = position.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
            let id = [id, id].concat();
            match layout {
                "records" => {
                    db.insert(
                        [b"L".as_slice(), &position.to_be_bytes()].concat(),
                        record.as_slice(),
                    )?;
                }
                "v1" => {
                    let id_key = [b"I".as_slice(), &id].concat();
                    let _ = db.get(&id_key)?;
                    db.insert(
                        [b"L".as_slice(), &position.to_be_bytes()].concat(),
                        record.as_slice(),
                    )?;
                    let stream_key =
                        [b"S".as_slice(), &stream_name(s), &version.to_be_bytes()].concat();
                    db.insert(stream_key, &position.to_be_bytes())?;
                    db.insert(id_key, &position.to_be_bytes())?;
                }
                "pages" => {
                    page.extend_from_slice(&(record.len() as u32).to_be_bytes());
                    page.extend_from_slice(&record);
                    let chunk = (*version - 1) / CHUNK_ENTRIES;
                    let entries = chunks.entry(s).or_default();
                    if (*version - 1).is_multiple_of(CHUNK_ENTRIES) {
                        entries.clear();
                    }
                    entries.extend_from_slice(&position.to_be_bytes());
                    entries.extend_from_slice(&id);
                    db.insert(chunk_key(&stream_name(s), chunk), entries.as_slice())?;
                }
                other => return Err(format!("unknown layout {other}").into()),
            }
        }
        if layout == "pages" {
            db.insert([b"L".as_slice(), &first.to_be_bytes()].concat(), page)?;
        }
        if layout != "records" {
            db.insert(b"Mhead", &position.to_be_bytes())?;
        }
        db.flush()?;
        data.sync_data()?;
    }
    let elapsed = started.elapsed();
    let (half_position, half_rss) = at_half.unwrap_or((0, 0));
    let growth = rss::rss_kib() as i64 - half_rss;
    Ok((position, elapsed, growth, position - half_position))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    // A child process runs one layout so that each RSS figure is its own.
    if first.as_deref() == Some("--child") {
        let layout = args.next().unwrap_or_default();
        let seconds: f64 = args.next().unwrap_or_default().parse()?;
        let group: u64 = args.next().unwrap_or_default().parse()?;
        let streams: u64 = args.next().unwrap_or_default().parse()?;
        let (events, elapsed, rss, late) = run(&layout, seconds, group, streams)?;
        println!("{events} {} {rss} {late}", elapsed.as_secs_f64());
        return Ok(());
    }
    let seconds: f64 = first.map_or(Ok(5.0), |a| a.parse())?;
    let group: u64 = args.next().map_or(Ok(64), |a| a.parse())?;
    let streams: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;
    println!(
        "bare sled, groups of {group} one-event appends over {streams} streams, {seconds} s per layout"
    );
    println!(
        "{:>8} {:>10} {:>12} {:>8} {:>14} {:>10}",
        "layout", "events", "events/s", "ratio", "RSS 2nd half", "B/event"
    );
    let mut base = None;
    for layout in ["records", "v1", "pages"] {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--child", layout])
            .arg(seconds.to_string())
            .arg(group.to_string())
            .arg(streams.to_string())
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        let text = String::from_utf8(out.stdout)?;
        let f: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [events, secs, rss, late] = f[..] else {
            return Err(format!("unexpected child output {text:?}").into());
        };
        let rate = events / secs;
        let base_rate = *base.get_or_insert(rate);
        println!(
            "{layout:>8} {events:>10.0} {rate:>12.0} {:>8.2} {:>10.1} MiB {:>10.1}",
            rate / base_rate,
            rss / 1024.0,
            rss * 1024.0 / late
        );
    }
    Ok(())
}
