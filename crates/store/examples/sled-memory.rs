//! Bare sled's resident memory as keys are written (RELIABILITY.md, "Memory"): per event
//! a 300-byte record under a sequential key, then (with 2 or 3 keys per event) a
//! stream-index entry over 10,000 streams and an id-index entry under a random key, with a
//! `flush()` every 64 events, as the store writes them.
//!
//! `cargo run --release -p aftersales-store --example sled-memory -- [keys 1-3] [cache MiB] [events]`

#[path = "support/rss.rs"]
mod rss;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(Ok(3), |a| a.parse())?;
    let cache_mib: u64 = args.next().map_or(Ok(16), |a| a.parse())?;
    let events: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_mib << 20)
        .flush_every_ms(None)
        .open()?;
    let record = vec![7u8; 300];
    let started = std::time::Instant::now();
    println!("{keys} keys per event, cache {cache_mib} MiB, {events} events");
    for i in 1..=events {
        db.insert(
            [b"L".as_slice(), &i.to_be_bytes()].concat(),
            record.as_slice(),
        )?;
        if keys >= 2 {
            let stream = format!("tmall:{}", i % 10_000);
            let key = [b"S".as_slice(), stream.as_bytes(), &i.to_be_bytes()].concat();
            db.insert(key, &i.to_be_bytes())?;
        }
        if keys >= 3 {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let key = [b"I".as_slice(), &h.to_be_bytes(), &h.to_le_bytes()].concat();
            db.insert(key, &i.to_be_bytes())?;
        }
        if i % 64 == 0 {
            db.flush()?;
        }
        if i % 250_000 == 0 || i == events {
            println!(
                "{i:>9} events  {:>6.1} s  RSS {:>5} MiB",
                started.elapsed().as_secs_f64(),
                rss::rss_kib() / 1024
            );
        }
    }
    Ok(())
}
