//! Audit and measurement subcommands: `verify`, `ticket`, `bench store`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use aftersales_app::Tickets;
use aftersales_clock::SystemClock;
use aftersales_store::{bench, Store, StoreConfig, StoreError};
use aftersales_ticket::{State, TicketId};
use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};

/// Opens an existing store; a missing directory is an error, not a new empty store.
pub(crate) fn open_existing(data: &Path) -> Result<Store> {
    if !data.exists() {
        bail!(
            "no store at {} (give --data the directory a store was written to)",
            data.display()
        );
    }
    Store::open(data, StoreConfig::new(Arc::new(SystemClock)))
        .with_context(|| format!("opening the event store at {}", data.display()))
}

pub fn verify(data: &Path) -> Result<ExitCode> {
    // Damage found on open is damage: exit 2 with where it is, like a bad link.
    let store = match open_existing(data) {
        Ok(store) => store,
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(damage) if damage.is_damage() => {
                println!("damaged: {damage}");
                return Ok(ExitCode::from(2));
            }
            _ => return Err(e),
        },
    };
    let head = store.head_position();
    let report = store.verify_with_progress(|checked, _| {
        if head > 100_000 {
            eprint!("\rverified {checked}/{head} records");
        }
    })?;
    if head > 100_000 {
        eprintln!();
    }
    println!("{report}");
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

pub fn ticket(data: &Path, id: &str, as_of: Option<&str>) -> Result<ExitCode> {
    let id = TicketId::parse(id)?;
    let tickets = Tickets::new(Arc::new(open_existing(data)?))?;
    let (ticket, history) = match as_of {
        Some(t) => {
            let at = DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--as-of {t:?} is not an RFC 3339 instant"))?;
            tickets.load_as_of(&id, at.with_timezone(&Utc))?
        }
        None => {
            let history = tickets.history(&id)?;
            (tickets.load(&id)?, history)
        }
    };
    if history.is_empty() {
        bail!(
            "ticket {id} has no events{}",
            as_of.map(|t| format!(" as of {t}")).unwrap_or_default()
        );
    }
    let view = serde_json::json!({
        "ticket": ticket,
        "state": ticket.state().map(State::as_str),
        "history": history.iter().map(|s| serde_json::json!({
            "position": s.position,
            "version": s.version,
            "envelope": s.envelope,
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(ExitCode::SUCCESS)
}

pub fn bench_store(quick: bool, dir: Option<PathBuf>) -> Result<ExitCode> {
    let mut config = if quick {
        bench::BenchConfig::quick()
    } else {
        bench::BenchConfig::full()
    };
    config.dir = dir;
    eprintln!(
        "benchmarking the event store ({} s per case)…",
        config.per_case.as_secs_f32()
    );
    let report = bench::run(&config)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
