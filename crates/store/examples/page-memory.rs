//! Bare sled's resident memory under small groups, the load test's pattern (RELIABILITY.md,
//! "Memory"): groups of `group` 300-byte records, each group written as format 2 writes it
//! (a page, the touched stream chunks, the commit marker) and flushed. With `open` pages
//! (a page key rewritten with every group until it holds `page_kib`), the page costs one
//! new sled key per page instead of one per group.
//!
//! `cargo run --release -p aftersales-store --example page-memory -- [new|open] [group] [page KiB] [events] [cache MiB]`

#[path = "support/rss.rs"]
mod rss;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "new".into());
    let group: u64 = args.next().map_or(Ok(2), |a| a.parse())?;
    let page_kib: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let events: u64 = args.next().map_or(Ok(400_000), |a| a.parse())?;
    let cache_mib: u64 = args.next().map_or(Ok(64), |a| a.parse())?;
    let open = match mode.as_str() {
        "new" => false,
        "open" => true,
        other => return Err(format!("mode {other}: expected new or open").into()),
    };
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(cache_mib << 20)
        .flush_every_ms(None)
        .open()?;
    let record = vec![7u8; 300];
    let streams = 10_000u64;
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new(); streams as usize];
    let mut page: Vec<u8> = Vec::new();
    let mut page_first = 1u64;
    let started = std::time::Instant::now();
    println!("{mode} pages, groups of {group}, pages up to {page_kib} KiB, {events} events, cache {cache_mib} MiB");
    let mut i = 0u64;
    while i < events {
        if !open || page.len() >= page_kib << 10 {
            page.clear();
            page_first = i + 1;
        }
        let mut touched = Vec::new();
        for _ in 0..group {
            i += 1;
            page.extend_from_slice(&record);
            let s = (i * 7) % streams;
            let chunk = &mut chunks[s as usize];
            if chunk.len() >= 32 * 24 {
                chunk.clear();
            }
            chunk.extend_from_slice(&[0u8; 24]);
            touched.push(s);
        }
        db.insert(
            [b"L".as_slice(), &page_first.to_be_bytes()].concat(),
            page.as_slice(),
        )?;
        for s in touched {
            let n = i / streams / 32;
            let key = [
                b"T".as_slice(),
                format!("tmall:{s}").as_bytes(),
                &n.to_be_bytes(),
            ]
            .concat();
            db.insert(key, chunks[s as usize].as_slice())?;
        }
        db.insert(b"M".as_slice(), &i.to_be_bytes())?;
        db.flush()?;
        if i % 50_000 < group || i >= events {
            println!(
                "{i:>9} events  {:>6.1} s  RSS {:>5} MiB  disk {:>5} MiB",
                started.elapsed().as_secs_f64(),
                rss::rss_kib() / 1024,
                db.size_on_disk()? >> 20
            );
        }
    }
    Ok(())
}
