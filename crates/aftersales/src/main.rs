//! `aftersales`: the binary that wires the crates together. Subcommands only parse their
//! arguments, open what they need and print; the rules live in the library crates.

mod demo;
mod inspect;
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
    /// Fire every deadline due up to an instant: each becomes one stored expiry (with the
    /// platform's automatic outcome, if its rule has one); a deadline already fired is not
    /// fired again.
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
    },
    /// Benchmarks that print each figure next to the raw limit measured in the same run.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        } => timers::advance(&data, &to, rules.as_deref(), calendar.as_deref()),
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
