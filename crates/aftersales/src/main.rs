//! `aftersales`: the binary that wires the crates together. Subcommands only parse their
//! arguments, open what they need and print; the rules live in the library crates.

/// sled copies a tree node on every insert, and glibc's malloc spent more time on those
/// copies than sled did (BENCHMARKS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit;
mod cluster;
mod cluster_bench;
mod demo;
mod ingest;
mod inspect;
mod load;
mod serve;
mod timers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aftersales",
    version,
    about = "After-sales tickets (returns, exchanges, repairs, refunds) as an append-only event log"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive sample tickets of several platforms through their lifecycle on the embedded
    /// store (sled; no NATS needed) and print each step.
    Demo {
        /// Keep the store in this directory (default: a temporary one, removed at exit).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Walk the hash chain and the indexes of a store; exits non-zero on damage.
    Verify {
        /// The store directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Show a ticket: state, facts and history, optionally as it stood at an instant.
    Ticket {
        /// The store directory.
        #[arg(long)]
        data: PathBuf,
        /// The ticket id, e.g. jd:7001.
        id: String,
        /// RFC 3339 instant, e.g. 2026-11-21T12:00:00+08:00 (by the time events were recorded).
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Print the log as JSON lines ({position, version, envelope}), all of it or one
    /// ticket's, optionally as recorded up to an instant.
    Export {
        /// The store directory.
        #[arg(long)]
        data: PathBuf,
        /// RFC 3339 instant: only events recorded up to it.
        #[arg(long)]
        as_of: Option<String>,
        /// Only this ticket's events.
        #[arg(long)]
        ticket: Option<String>,
    },
    /// Rebuild every ticket and the read models (written as `serve`'s checkpoint) from the
    /// log; prints the event count, the rate, tickets by state and a digest that is the
    /// same on every rebuild of the same log.
    Replay {
        /// The store directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Feed platform webhook bodies (one JSON body per line) through the same adapters as
    /// NATS; lines not used are reported with why (exit 1). Safe to repeat.
    Import {
        /// The store directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// The platform the bodies come from: jd, tmall, pdd, kuaishou, douyin, or a
        /// merchant-defined name for the generic format.
        #[arg(long)]
        platform: String,
        /// The file, or - for standard input.
        file: String,
    },
    /// Fire every deadline due up to an instant: each becomes one stored expiry (with the
    /// platform's automatic outcome, if its rule has one); a deadline already fired is not
    /// fired again. A deadline not yet due whose warning window has opened by then gets its
    /// warning (once).
    Advance {
        /// The store directory (it must exist).
        #[arg(long)]
        data: PathBuf,
        /// RFC 3339 instant, e.g. 2026-10-08T15:00:00+08:00: every deadline due at or before
        /// it fires. Records are still stamped with the system clock's time.
        #[arg(long)]
        to: String,
        /// A directory of rule packs (*.toml) to use instead of the built-in rules/packs.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// A holiday calendar file to use instead of the built-in rules/calendar/cn.toml.
        #[arg(long)]
        calendar: Option<PathBuf>,
        /// A TOML config file (the one `serve` reads): its [alerts] table sets the warning
        /// windows (default: 120 minutes before every deadline).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the service: the HTTP API (webhooks, tickets, health, metrics), the deadline
    /// scheduler and, with NATS configured, the ingest; SIGTERM or Ctrl-C stops it cleanly.
    Serve {
        /// The store directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// Consume webhooks from this NATS server too (or set a [nats] table in --config).
        #[arg(long)]
        nats: Option<String>,
        /// The HTTP address (default: the config file's, else 127.0.0.1:8080). Any address
        /// other than loopback needs tokens in the config file.
        #[arg(long)]
        http: Option<String>,
        /// A TOML config file with [nats], [http] and [alerts] tables.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Consume platform webhooks from NATS JetStream (`aftersales.webhooks.<platform>`) into
    /// the store until SIGTERM or Ctrl-C; unusable messages go to the dead-letter stream.
    Ingest {
        /// The store directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// The NATS server URL (default: the config file's, else nats://127.0.0.1:4222).
        #[arg(long)]
        nats: Option<String>,
        /// A TOML config file with a [nats] table (credentials, TLS, names, limits).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show or replay the messages the ingest could not use.
    Deadletter {
        #[command(subcommand)]
        what: Deadletter,
        /// The NATS server URL (default: the config file's, else nats://127.0.0.1:4222).
        #[arg(long, global = true)]
        nats: Option<String>,
        /// A TOML config file with a [nats] table.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Benchmarks that print each figure next to the raw limit measured in the same run.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Deadletter {
    /// List dead letters: sequence, time, original subject, reason code, deliveries, reason.
    List {
        /// Start at this dead-letter sequence.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Publish dead letters again to their original subjects (after a fix), then remove them.
    Replay {
        /// Only these sequences (default: all).
        #[arg(long = "seq")]
        seqs: Vec<u64>,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Ingest messages/s and publish-to-append latency next to a raw JetStream consume + ack.
    Ingest {
        /// A short run, as CI runs it.
        #[arg(long)]
        quick: bool,
        /// Use this NATS server (default: start a nats-server of its own on a free port).
        #[arg(long)]
        nats: Option<String>,
        /// Backlog messages (default: 50,000; 3,000 with --quick).
        #[arg(long)]
        messages: Option<usize>,
        /// Stream replicas (3 on a JetStream cluster: what broker-side durability costs).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Ingest worker threads (default: the `[ingest] workers` default).
        #[arg(long)]
        workers: Option<usize>,
        /// Where to put the benchmark's store (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Durable appends/s for 1, 8 and 64 writers against bare sled batch + flush.
    Store {
        /// A short run (seconds), as CI runs it.
        #[arg(long)]
        quick: bool,
        /// Where to put the benchmark's stores (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Deadline index memory and rebuild time (next to a raw log scan), firings/s (next to
    /// raw appends/s) and firing lag under concurrent appends.
    Timers {
        /// A short run (20,000 armed deadlines, seconds), as CI runs it.
        #[arg(long)]
        quick: bool,
        /// How many armed deadlines to index (default: 1,000,000; 20,000 with --quick).
        #[arg(long)]
        deadlines: Option<usize>,
        /// Where to put the benchmark's stores (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The dashboards' queries over HTTP (ticket, list, paged list, SLA dashboard): req/s,
    /// p50/p99 under concurrent clients next to GET /healthz; the read models' replay next to
    /// a raw log scan.
    Api {
        /// A short run (20,000 tickets, 50 clients, 2 s per query), as CI runs it.
        #[arg(long)]
        quick: bool,
        /// Tickets to load (default: 1,000,000; 20,000 with --quick).
        #[arg(long)]
        tickets: Option<usize>,
        /// Concurrent clients, one keep-alive connection each (default: 200; 50 with --quick).
        #[arg(long)]
        clients: Option<usize>,
        /// Seconds each query kind is driven (default: 10; 2 with --quick).
        #[arg(long)]
        seconds: Option<f64>,
        /// Where to put the benchmark's store (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The service (`serve`, a child process) fed from NATS at a fixed rate for a bounded
    /// time: publish -> ack p50/p99/max per interval, its RSS over time, next to a raw
    /// JetStream consume + ack; exits 1 if a message is left unacked or dead-lettered, the
    /// feed fell behind, or (full form) p99 >= 100 ms or memory grew.
    Load {
        /// About 30 s (25 s of feed, 5 s warm-up), as CI runs it.
        #[arg(long)]
        quick: bool,
        /// Seconds of feed (default: 780; 25 with --quick).
        #[arg(long)]
        seconds: Option<u64>,
        /// Messages per second (default: 1000).
        #[arg(long)]
        rate: Option<f64>,
        /// Tickets in the pool the feed cycles over (default: 10,000).
        #[arg(long)]
        tickets: Option<usize>,
        /// Seconds not counted in the latency and memory verdicts (default: 180; 5 with
        /// --quick).
        #[arg(long)]
        warmup: Option<u64>,
        /// Use this NATS server, with streams of its own (default: start a nats-server of its own).
        #[arg(long)]
        nats: Option<String>,
        /// Where to put the service's store, config and log (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The service's `[store] cache_mib` (default: 16).
        #[arg(long)]
        cache_mib: Option<u64>,
    },
    /// Webhooks/s stored by 1, 2, 3 partitioned instances (`serve` with `[cluster]`, child
    /// processes) on one nats-server of its own, next to a raw JetStream consume + ack.
    Cluster {
        /// 2,000 webhooks instead of 30,000, as CI runs it.
        #[arg(long)]
        quick: bool,
        /// Webhooks per instance count.
        #[arg(long)]
        messages: Option<usize>,
        /// Instance counts to measure, in order.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        instances: Vec<usize>,
        /// The deployment's partition count.
        #[arg(long, default_value_t = 12)]
        partitions: u64,
        /// `[cluster] workers_per_partition` of each instance.
        #[arg(long, default_value_t = 16)]
        workers_per_partition: usize,
    },
}

/// glibc gives threads that allocate their own heap arenas (up to 8 per core) and returns
/// memory to the system only from an arena's top: with 64 ingest workers, resident memory
/// kept growing under a steady load (RELIABILITY.md, "Load test"). Two arenas keep it
/// flat with no cost seen in the latencies. A `MALLOC_ARENA_MAX` in the environment wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: sets one allocator parameter, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// mimalloc asks the kernel for transparent huge pages on its arenas, and every first touch
/// of one then zeroes 2 MiB: a third of the ingest's CPU went to the kernel's
/// `clear_page_erms`, and ingest throughput rose by about 45 % without it (BENCHMARKS.md,
/// "Huge pages"). Off for the process unless `MIMALLOC_ALLOW_THP` says otherwise.
#[cfg(target_os = "linux")]
fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: sets a flag on this process's memory map; no memory is touched.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            tracing::debug!("transparent huge pages stay on: prctl refused");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn no_transparent_huge_pages() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, not in journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Demo { data } => demo::run(data),
        Cmd::Verify { data } => inspect::verify(&data),
        Cmd::Ticket { data, id, as_of } => inspect::ticket(&data, &id, as_of.as_deref()),
        Cmd::Advance {
            data,
            to,
            rules,
            calendar,
            config,
        } => timers::advance(
            &data,
            &to,
            rules.as_deref(),
            calendar.as_deref(),
            config.as_deref(),
        ),
        Cmd::Serve {
            data,
            nats,
            http,
            config,
        } => serve::run(&data, nats, http, config),
        Cmd::Export {
            data,
            as_of,
            ticket,
        } => audit::export(&data, as_of.as_deref(), ticket.as_deref()),
        Cmd::Replay { data } => audit::replay(&data),
        Cmd::Import {
            data,
            platform,
            file,
        } => audit::import(&data, &platform, &file),
        Cmd::Ingest { data, nats, config } => ingest::config(config.as_deref(), nats.as_deref())
            .and_then(|cfg| ingest::run(&data, cfg)),
        Cmd::Deadletter { what, nats, config } => {
            ingest::config(config.as_deref(), nats.as_deref()).and_then(|cfg| match what {
                Deadletter::List { from, limit, json } => ingest::list(cfg, from, limit, json),
                Deadletter::Replay { seqs } => ingest::replay(cfg, &seqs),
            })
        }
        Cmd::Bench {
            what:
                Bench::Ingest {
                    quick,
                    nats,
                    messages,
                    replicas,
                    workers,
                    dir,
                },
        } => ingest::bench_ingest(quick, nats, messages, replicas, workers, dir),
        Cmd::Bench {
            what: Bench::Store { quick, dir },
        } => inspect::bench_store(quick, dir),
        Cmd::Bench {
            what:
                Bench::Timers {
                    quick,
                    deadlines,
                    dir,
                },
        } => timers::bench_timers(quick, deadlines, dir),
        Cmd::Bench {
            what:
                Bench::Api {
                    quick,
                    tickets,
                    clients,
                    seconds,
                    dir,
                },
        } => serve::bench_api(quick, tickets, clients, seconds, dir),
        Cmd::Bench {
            what:
                Bench::Load {
                    quick,
                    seconds,
                    rate,
                    tickets,
                    warmup,
                    nats,
                    dir,
                    cache_mib,
                },
        } => load::run(load::LoadOptions {
            cache_mib,
            quick,
            seconds,
            rate,
            tickets,
            nats,
            dir,
            warmup,
        }),
        Cmd::Bench {
            what:
                Bench::Cluster {
                    quick,
                    messages,
                    instances,
                    partitions,
                    workers_per_partition,
                },
        } => cluster_bench::run(cluster_bench::ClusterBenchOptions {
            quick,
            messages,
            instances,
            partitions,
            workers_per_partition,
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
