//! Runs the event store benchmark: `cargo run --release -p aftersales-store --example
//! store-bench -- [--quick] [--no-fsync] [--dir DIR]`.

use aftersales_store::bench::{self, BenchConfig};

// The service's allocator (`aftersales bench store` runs with it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut config = BenchConfig::full();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => {
                config = BenchConfig {
                    dir: config.dir,
                    fsync_after_flush: config.fsync_after_flush,
                    ..BenchConfig::quick()
                }
            }
            "--no-fsync" => config.fsync_after_flush = false,
            "--dir" => config.dir = args.next().map(Into::into),
            // Narrow the run, e.g. for profiling one case.
            "--writers" => config.writers = parse_list(args.next()),
            "--events" => config.events_per_append = parse_list(args.next()),
            "--threads-only" => config.writer_kinds = vec![bench::WriterKind::Threads],
            "--tasks-only" => config.writer_kinds = vec![bench::WriterKind::Tasks],
            "--rounds" => config.rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            "--seconds" => {
                let secs = args
                    .next()
                    .and_then(|s| s.parse::<f64>().ok())
                    .unwrap_or(1.0);
                config.per_case = std::time::Duration::from_secs_f64(secs);
            }
            other => {
                eprintln!("unknown argument {other}; use --quick, --no-fsync, --dir DIR, --writers 1,8, --events 1,10, --threads-only, --tasks-only, --rounds N, --seconds S");
                std::process::exit(2);
            }
        }
    }
    match bench::run(&config) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

fn parse_list(arg: Option<String>) -> Vec<usize> {
    let list: Vec<usize> = arg
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if list.is_empty() {
        eprintln!("expected a comma-separated list of numbers");
        std::process::exit(2);
    }
    list
}
