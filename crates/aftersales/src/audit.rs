//! Audit commands: `export` (the log as JSON lines), `replay` (every ticket and the read
//! models rebuilt from the log, with a digest that is the same on every rebuild) and `import` (webhook bodies
//! from a file through the same adapters as NATS).

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use aftersales_app::{read_record, Tickets};
use aftersales_clock::SystemClock;
use aftersales_ingest::Outcome;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::{evolve, Platform, Ticket, TicketId};
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::Views;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use crate::inspect::open_existing;
use crate::serve::views_checkpoint;
use crate::timers::rule_pack_chooser;

const PROGRESS_EVERY: u64 = 100_000;

fn instant(t: &str) -> Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(t)
        .with_context(|| format!("--as-of {t:?} is not an RFC 3339 instant"))?
        .with_timezone(&Utc))
}

/// Prints `{position, version, envelope}` per event, in log order.
pub fn export(data: &Path, as_of: Option<&str>, ticket: Option<&str>) -> Result<ExitCode> {
    let store = Arc::new(open_existing(data)?);
    let upto = match as_of {
        Some(t) => store.position_as_of(instant(t)?)?,
        None => store.head_position(),
    };
    let only = ticket.map(TicketId::parse).transpose()?;
    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    let mut written = 0u64;
    let records: Box<dyn Iterator<Item = _>> = match &only {
        Some(id) => {
            let tickets = Tickets::new(store.clone())?;
            let history = tickets.history(id)?;
            Box::new(
                history
                    .into_iter()
                    .filter(move |s| s.position <= upto)
                    .map(Ok),
            )
        }
        None => Box::new(
            store
                .iter_all(1)
                .take_while(move |r| r.as_ref().map_or(true, |r| r.position <= upto))
                .map(|r| Ok::<_, anyhow::Error>(read_record(r?)?)),
        ),
    };
    for stored in records {
        let s = stored?;
        let line = serde_json::json!({
            "position": s.position,
            "version": s.version,
            "envelope": s.envelope,
        });
        writeln!(out, "{line}")?;
        written += 1;
        if written.is_multiple_of(PROGRESS_EVERY) {
            eprintln!("… {written} events");
        }
    }
    out.flush()?;
    eprintln!("exported {written} events up to position {upto}");
    Ok(ExitCode::SUCCESS)
}

/// Rebuilds every ticket from the log and prints a digest of all of them.
pub fn replay(data: &Path) -> Result<ExitCode> {
    let store = open_existing(data)?;
    let started = Instant::now();
    let mut tickets: BTreeMap<TicketId, Ticket> = BTreeMap::new();
    let mut views = Views::new(RuleBook::builtin(), Calendar::builtin());
    let mut events = 0u64;
    for record in store.iter_all(1) {
        let record = record?;
        aftersales_views::apply_record(&mut views, &store, &record)?;
        let stored = read_record(record)?;
        let ticket = tickets
            .remove(&stored.envelope.ticket_id)
            .unwrap_or_default();
        tickets.insert(
            stored.envelope.ticket_id.clone(),
            evolve(ticket, &stored.envelope.event),
        );
        events += 1;
        if events.is_multiple_of(PROGRESS_EVERY) {
            eprintln!("… {events} events");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Tickets in id order, each as its JSON: the same log always gives the same bytes.
    let mut hasher = blake3::Hasher::new();
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, ticket) in &tickets {
        hasher.update(id.as_str().as_bytes());
        hasher.update(&serde_json::to_vec(ticket)?);
        *by_state
            .entry(ticket.state().map_or("unopened", |s| s.as_str()))
            .or_default() += 1;
    }
    println!(
        "replayed {events} events into {} tickets in {elapsed:.2} s ({:.0} events/s)",
        tickets.len(),
        events as f64 / elapsed.max(1e-9)
    );
    for (state, n) in by_state {
        println!("  {state:<20} {n}");
    }
    // The dashboards' rows too, so a change in how they are folded shows in the digest.
    hasher.update(views.digest().as_bytes());
    let checkpoint = views_checkpoint(data);
    aftersales_views::save(&views, &store, &checkpoint)
        .context("writing the rebuilt read models")?;
    println!(
        "read models rebuilt: {} tickets at position {} ({})",
        views.ticket_count(),
        views.position(),
        checkpoint.display()
    );
    println!("digest {}", hasher.finalize().to_hex());
    Ok(ExitCode::SUCCESS)
}

/// Feeds webhook bodies, one per line, through the platform's adapter. Lines not stored
/// are reported with their reason; importing the same file again stores nothing twice.
pub fn import(data: &Path, platform: &str, file: &str) -> Result<ExitCode> {
    let platform = Platform::from_str(platform)
        .with_context(|| format!("--platform {platform:?} is not a platform name"))?;
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {file}"))?,
        ))
    };
    let store = Store::open(data, StoreConfig::new(Arc::new(SystemClock)))
        .with_context(|| format!("opening the store in {}", data.display()))?;
    let tickets =
        Tickets::new(Arc::new(store))?.with_rule_packs(rule_pack_chooser(RuleBook::builtin()));
    let (mut stored, mut duplicates, mut refused) = (0u64, 0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let why = match aftersales_ingest::apply(&tickets, &platform, line.as_bytes()) {
            Outcome::Stored {
                applied,
                duplicates: d,
                ..
            } => {
                stored += applied as u64;
                duplicates += d as u64;
                continue;
            }
            Outcome::Unusable(u) => format!("{}: {u}", u.code()),
            Outcome::Refused {
                ticket, rejection, ..
            } => format!("refused_{}: ticket {ticket}: {rejection}", rejection.code()),
            Outcome::Failed(e) | Outcome::StoreDown(e) => {
                bail!("line {}: the store failed: {e}", n + 1)
            }
        };
        refused += 1;
        eprintln!("line {}: {why}", n + 1);
    }
    tickets.store().close()?;
    eprintln!(
        "imported: {stored} commands stored, {duplicates} already stored, {refused} lines not used"
    );
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
