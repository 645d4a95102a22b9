//! Deadline subcommands: `advance` (fire what is due up to an instant, and send the warnings
//! due by then) and `bench timers`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use aftersales_app::{RulePackChooser, Tickets};
use aftersales_clock::SystemClock;
use aftersales_scheduler::{bench, Firing, Scheduler};
use aftersales_store::{Store, StoreConfig};
use aftersales_timers::{Calendar, RuleBook};
use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};

/// The rule packs and holiday calendar: an operator's files, or the built-in copies.
fn rules(rules: Option<&Path>, calendar: Option<&Path>) -> Result<(RuleBook, Calendar)> {
    let book = match rules {
        Some(dir) => {
            let book = RuleBook::load_dir(dir)
                .with_context(|| format!("loading the rule packs in {}", dir.display()))?;
            if book.packs().next().is_none() {
                bail!(
                    "{} holds no rule packs (*.toml files); no deadline could fire",
                    dir.display()
                );
            }
            book
        }
        None => RuleBook::builtin(),
    };
    let calendar = match calendar {
        Some(file) => Calendar::load(file)
            .with_context(|| format!("loading the holiday calendar {}", file.display()))?,
        None => Calendar::builtin(),
    };
    Ok((book, calendar))
}

/// Records on each new ticket the pack `book` holds for its platform (kept for life).
pub fn rule_pack_chooser(book: RuleBook) -> RulePackChooser {
    Arc::new(move |platform| book.pack_for(platform).map(|pack| pack.id.clone()))
}

/// Fires every deadline due at or before `to`, and sends every warning due by then for a
/// deadline not yet due (windows from the config file's `[alerts]`, else the default),
/// printing each as it is stored.
pub fn advance(
    data: &Path,
    to: &str,
    rules_dir: Option<&Path>,
    calendar: Option<&Path>,
    config: Option<&Path>,
) -> Result<ExitCode> {
    let to = DateTime::parse_from_rfc3339(to).with_context(|| {
        format!("--to {to:?} is not an RFC 3339 instant (like 2026-10-08T15:00:00+08:00)")
    })?;
    let windows = crate::serve::load(config)?.alerts.windows()?;
    let (book, calendar) = rules(rules_dir, calendar)?;
    if !data.exists() {
        bail!(
            "no store at {} (give --data the directory a store was written to)",
            data.display()
        );
    }
    // Records are stamped with the time they are recorded; `--to` only decides what is due.
    let store = Store::open(data, StoreConfig::new(Arc::new(SystemClock)))
        .with_context(|| format!("opening the event store at {}", data.display()))?;
    let tickets = Tickets::new(Arc::new(store)).context("reading the event log")?;
    let scheduler = Scheduler::start_with(Arc::new(tickets), book, calendar, windows)
        .context("building the deadline index")?;
    println!(
        "{} armed deadline(s) on {} ticket(s) at log position {}; firing what is due by {}",
        scheduler.armed_count(),
        scheduler.tracked_tickets(),
        scheduler.position(),
        to.to_rfc3339()
    );
    let result = scheduler.fire_due_with(to.to_utc(), &mut |fired| match fired.what {
        Firing::Expired => println!("fired  {fired}"),
        Firing::Warned => println!("warned {fired}"),
    });
    let stats = scheduler.stats();
    let local = |t: Option<DateTime<Utc>>| {
        t.map_or("none".to_owned(), |t| {
            t.with_timezone(to.offset()).to_rfc3339()
        })
    };
    let next = local(scheduler.next_due());
    let next_warning = local(scheduler.next_warning());
    println!(
        "fired {} deadline(s); {} already stored, {} refused as stale (dropped), {} put off, \
         {} failed; warned of {} ({} already stored); next due: {next}; next warning: \
         {next_warning}; store head {}",
        stats.fired,
        stats.already_fired,
        stats.stale_dropped,
        stats.deferred,
        stats.failed,
        stats.warned,
        stats.already_warned,
        scheduler.tickets().store().head_position()
    );
    result.context("firing deadlines")?;
    Ok(ExitCode::SUCCESS)
}

pub fn bench_timers(
    quick: bool,
    deadlines: Option<usize>,
    dir: Option<PathBuf>,
) -> Result<ExitCode> {
    let mut config = if quick {
        bench::BenchConfig::quick()
    } else {
        bench::BenchConfig::full()
    };
    if let Some(n) = deadlines {
        config.deadlines = n;
    }
    config.dir = dir;
    eprintln!(
        "benchmarking the deadline scheduler ({} armed deadlines)…",
        config.deadlines
    );
    let report = bench::run(&config)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
