//! `aftersales demo`: a first look at what the service does, on the embedded store.
//!
//! Tickets of five platforms and every service type go through their lifecycle as the
//! platforms would report them, in time order; the store's clock follows the simulated
//! platform time, so the as-of view at the end is meaningful. Refused commands and a redelivered message are part
//! of the script: they show the rules at work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aftersales_app::{HandleError, Handled, Submission, Tickets};
use aftersales_scheduler::Scheduler;
use aftersales_timers::{Calendar, RuleBook};
use aftersales_views::{Sla, SlaQuery, Views};

use crate::timers::rule_pack_chooser;
use aftersales_clock::ManualClock;
use aftersales_store::{Store, StoreConfig};
use aftersales_ticket::*;
use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};

fn at(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).expect("demo times are RFC 3339")
}

fn note(s: &str) -> Option<Note> {
    Some(Note::parse(s).expect("demo notes are not empty"))
}

fn open(
    platform: Platform,
    ticket: &str,
    line: &str,
    service_type: ServiceType,
    reason: Reason,
    cents: u64,
    signed_for_at: Option<&str>,
) -> Command {
    let id = TicketId::for_platform(&platform, ticket).expect("demo ids are valid");
    Command::Open {
        ticket: Box::new(NewTicket {
            id,
            platform,
            platform_ticket_id: PlatformTicketId::parse(ticket).expect("valid"),
            order_id: OrderId::parse(&format!("ord-{line}")).expect("valid"),
            order_line_id: OrderLineId::parse(line).expect("valid"),
            sku: Some(Sku::parse(&format!("sku-{line}")).expect("valid")),
            amount_paid: Money::from_cents(cents),
            refund_requested: None,
            customer_id: Some(CustomerId::parse(&format!("cust-{ticket}")).expect("valid")),
            service_type,
            reason,
            signed_for_at: signed_for_at.map(at),
            order_shipped: None,
        }),
    }
}

fn dispose(disposal: Disposal) -> Command {
    Command::Dispose { disposal }
}

/// One platform message, as the demo feeds it.
struct Step {
    at: &'static str,
    ticket: &'static str,
    actor: Actor,
    message_id: &'static str,
    command: Command,
}

fn script() -> Vec<Step> {
    let step = |at, ticket, actor, message_id, command| Step {
        at,
        ticket,
        actor,
        message_id,
        command,
    };
    vec![
        // JD, seven-day no-reason return, merchant picks the goods up.
        step(
            "2026-11-20T20:00:00+08:00",
            "jd:7001",
            Actor::Customer,
            "jd-m1",
            open(
                Platform::Jd,
                "7001",
                "L-7001",
                ServiceType::ReturnRefund,
                Reason::SevenDayNoReason,
                19_900,
                Some("2026-11-15T12:00:00+08:00"),
            ),
        ),
        step(
            "2026-11-21T09:30:00+08:00",
            "jd:7001",
            Actor::Merchant,
            "jd-m2",
            Command::Approve {
                return_method: ReturnMethod::MerchantPickup,
            },
        ),
        // The platform delivers the approval again: stored once.
        step(
            "2026-11-21T09:30:00+08:00",
            "jd:7001",
            Actor::Merchant,
            "jd-m2",
            Command::Approve {
                return_method: ReturnMethod::MerchantPickup,
            },
        ),
        step(
            "2026-11-21T15:00:00+08:00",
            "jd:7001",
            Actor::Merchant,
            "jd-m3",
            Command::RecordReturnShipment {
                waybill: Some(Waybill::parse("JDV0042").expect("valid")),
            },
        ),
        step(
            "2026-11-22T10:00:00+08:00",
            "jd:7001",
            Actor::Merchant,
            "jd-m4",
            Command::ConfirmReceipt,
        ),
        step(
            "2026-11-22T11:00:00+08:00",
            "jd:7001",
            Actor::Merchant,
            "jd-m5",
            dispose(Disposal::Refund {
                amount: Money::from_cents(19_900),
                return_shipping: Money::from_cents(1_200),
                customer_consent: None,
            }),
        ),
        // A second ticket on the refunded order line.
        step(
            "2026-11-23T09:00:00+08:00",
            "jd:7002",
            Actor::Customer,
            "jd-m6",
            open(
                Platform::Jd,
                "7002",
                "L-7001",
                ServiceType::Exchange,
                Reason::QualityProblem,
                19_900,
                None,
            ),
        ),
        // JD seven-day return asked for too late: signed 10 Nov, window closed 18 Nov 00:00.
        step(
            "2026-11-18T00:00:00+08:00",
            "jd:7003",
            Actor::Customer,
            "jd-m7",
            open(
                Platform::Jd,
                "7003",
                "L-7003",
                ServiceType::ReturnRefund,
                Reason::SevenDayNoReason,
                5_900,
                Some("2026-11-10T18:20:00+08:00"),
            ),
        ),
        // Pinduoduo refund-only: a partial refund needs the customer's consent.
        step(
            "2026-11-20T21:00:00+08:00",
            "pdd:8001",
            Actor::Customer,
            "pdd-m1",
            open(
                Platform::Pdd,
                "8001",
                "L-8001",
                ServiceType::RefundOnly,
                Reason::NotAsDescribed,
                8_800,
                None,
            ),
        ),
        step(
            "2026-11-21T10:00:00+08:00",
            "pdd:8001",
            Actor::Merchant,
            "pdd-m2",
            dispose(Disposal::RefundWithoutReturn {
                amount: Money::from_cents(5_000),
                customer_consent: None,
            }),
        ),
        step(
            "2026-11-21T10:20:00+08:00",
            "pdd:8001",
            Actor::Merchant,
            "pdd-m3",
            dispose(Disposal::RefundWithoutReturn {
                amount: Money::from_cents(5_000),
                customer_consent: note("customer accepted ¥50 in chat, keeps the item"),
            }),
        ),
        // Tmall exchange: a refund instead of the exchange needs consent; a size change does not.
        step(
            "2026-11-19T14:00:00+08:00",
            "tmall:9001",
            Actor::Customer,
            "tb-m1",
            open(
                Platform::Tmall,
                "9001",
                "L-9001",
                ServiceType::Exchange,
                Reason::WrongOrMissingItem,
                25_900,
                None,
            ),
        ),
        step(
            "2026-11-19T18:00:00+08:00",
            "tmall:9001",
            Actor::Merchant,
            "tb-m2",
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
        ),
        step(
            "2026-11-20T09:00:00+08:00",
            "tmall:9001",
            Actor::Customer,
            "tb-m3",
            Command::RecordReturnShipment {
                waybill: Some(Waybill::parse("SF1234").expect("valid")),
            },
        ),
        step(
            "2026-11-21T16:00:00+08:00",
            "tmall:9001",
            Actor::Merchant,
            "tb-m4",
            Command::ConfirmReceipt,
        ),
        step(
            "2026-11-21T16:30:00+08:00",
            "tmall:9001",
            Actor::Merchant,
            "tb-m5",
            dispose(Disposal::Refund {
                amount: Money::from_cents(25_900),
                return_shipping: Money::ZERO,
                customer_consent: None,
            }),
        ),
        step(
            "2026-11-21T17:00:00+08:00",
            "tmall:9001",
            Actor::Merchant,
            "tb-m6",
            dispose(Disposal::Exchange {
                replacement_sku: Some(Sku::parse("sku-L-9001-size-L").expect("valid")),
                customer_consent: None,
            }),
        ),
        // Kuaishou send-in repair.
        step(
            "2026-11-18T11:00:00+08:00",
            "kuaishou:6001",
            Actor::Customer,
            "ks-m1",
            open(
                Platform::Kuaishou,
                "6001",
                "L-6001",
                ServiceType::RepairSendIn,
                Reason::QualityProblem,
                129_900,
                None,
            ),
        ),
        step(
            "2026-11-18T15:00:00+08:00",
            "kuaishou:6001",
            Actor::Merchant,
            "ks-m2",
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
        ),
        step(
            "2026-11-20T10:00:00+08:00",
            "kuaishou:6001",
            Actor::Merchant,
            "ks-m3",
            Command::ConfirmReceipt,
        ),
        step(
            "2026-11-23T10:00:00+08:00",
            "kuaishou:6001",
            Actor::Merchant,
            "ks-m4",
            dispose(Disposal::RepairDone {
                customer_consent: None,
            }),
        ),
        // Douyin: a rejection needs a reason; the customer asks the platform to step in.
        step(
            "2026-11-21T08:00:00+08:00",
            "douyin:5001",
            Actor::Customer,
            "dy-m1",
            open(
                Platform::Douyin,
                "5001",
                "L-5001",
                ServiceType::ReturnRefund,
                Reason::QualityProblem,
                3_990,
                None,
            ),
        ),
        step(
            "2026-11-21T12:00:00+08:00",
            "douyin:5001",
            Actor::Merchant,
            "dy-m2",
            Command::Reject { reason: None },
        ),
        step(
            "2026-11-21T12:05:00+08:00",
            "douyin:5001",
            Actor::Merchant,
            "dy-m3",
            Command::Reject {
                reason: note("the photos show a different model"),
            },
        ),
        step(
            "2026-11-22T09:00:00+08:00",
            "douyin:5001",
            Actor::Customer,
            "dy-m4",
            Command::RequestIntervention,
        ),
        step(
            "2026-11-23T15:00:00+08:00",
            "douyin:5001",
            Actor::Platform,
            "dy-m5",
            dispose(Disposal::RefundWithoutReturn {
                amount: Money::from_cents(3_990),
                customer_consent: None,
            }),
        ),
        // Deadlines: JD approves an untouched refund-only request after 1 business day
        // (Friday 15:00 → Monday 15:00); a JD review passes unanswered; Pinduoduo refunds
        // a return request the merchant left for 48h.
        step(
            "2026-11-20T15:00:00+08:00",
            "jd:7020",
            Actor::Customer,
            "jd-m20",
            open(
                Platform::Jd,
                "7020",
                "L-7020",
                ServiceType::RefundOnly,
                Reason::CancelBeforeShipment,
                6_900,
                None,
            ),
        ),
        step(
            "2026-11-21T10:00:00+08:00",
            "jd:7030",
            Actor::Customer,
            "jd-m30",
            open(
                Platform::Jd,
                "7030",
                "L-7030",
                ServiceType::ReturnRefund,
                Reason::DamagedInTransit,
                15_900,
                None,
            ),
        ),
        step(
            "2026-11-23T16:00:00+08:00",
            "jd:7030",
            Actor::Merchant,
            "jd-m31",
            Command::Approve {
                return_method: ReturnMethod::CustomerShips,
            },
        ),
        step(
            "2026-11-22T09:00:00+08:00",
            "pdd:8002",
            Actor::Customer,
            "pdd-m10",
            open(
                Platform::Pdd,
                "8002",
                "L-8002",
                ServiceType::ReturnRefund,
                Reason::QualityProblem,
                12_800,
                None,
            ),
        ),
        // JD onsite repair the customer withdraws.
        step(
            "2026-11-22T10:00:00+08:00",
            "jd:7010",
            Actor::Customer,
            "jd-m10",
            open(
                Platform::Jd,
                "7010",
                "L-7010",
                ServiceType::RepairOnsite,
                Reason::QualityProblem,
                259_900,
                None,
            ),
        ),
        step(
            "2026-11-22T11:00:00+08:00",
            "jd:7010",
            Actor::Customer,
            "jd-m11",
            Command::Withdraw { confirmation: None },
        ),
        step(
            "2026-11-22T11:30:00+08:00",
            "jd:7010",
            Actor::Customer,
            "jd-m12",
            Command::Withdraw {
                confirmation: note("called the customer: fixed by a reset"),
            },
        ),
    ]
}

fn describe(command: &Command) -> String {
    match command {
        Command::Open { ticket } => format!(
            "open {} ({}) {}",
            ticket.service_type, ticket.reason, ticket.amount_paid
        ),
        Command::Dispose {
            disposal: Disposal::Refund { amount, .. } | Disposal::RefundWithoutReturn { amount, .. },
        } => {
            format!("{} {amount}", command.name())
        }
        other => other.name().to_owned(),
    }
}

pub fn run(data: Option<PathBuf>) -> Result<ExitCode> {
    let temp;
    let dir = match data {
        Some(dir) => dir,
        None => {
            temp =
                tempfile::tempdir().context("creating a temporary directory for the demo store")?;
            temp.path().join("store")
        }
    };
    let clock = ManualClock::new(Utc::now());
    let store = Store::open(&dir, StoreConfig::new(Arc::new(clock.clone())))
        .with_context(|| format!("opening the event store at {}", dir.display()))?;
    let tickets =
        Tickets::new(Arc::new(store))?.with_rule_packs(rule_pack_chooser(RuleBook::builtin()));
    let scheduler = Scheduler::start(Arc::new(tickets), RuleBook::builtin(), Calendar::builtin())?;
    let tickets = Arc::clone(scheduler.tickets());
    println!(
        "aftersales demo: sample tickets of five platforms on the embedded store ({})",
        dir.display()
    );
    println!(
        "platform messages in time order; ⏰ marks a deadline the simulated clock passed, \
         ⚠ one about to fall due\n"
    );

    let (mut applied, mut refused, mut duplicates) = (0, 0, 0);
    let (mut expired, mut automatic, mut warned) = (0, 0, 0);
    let mut fire_at = |until: DateTime<Utc>| -> Result<()> {
        // The store's clock follows the simulated time, so records carry when they happened.
        clock.set(until);
        scheduler.fire_due_with(until, &mut |fired| {
            if fired.is_warning() {
                warned += 1;
                println!(
                    "{}  {:<14} ⚠ {} due in {} ({}) stored #{}",
                    fired.at.format("%m-%d %H:%M"),
                    fired.ticket,
                    fired.deadline.kind,
                    due_in(fired.deadline.due_at - fired.at),
                    fired.deadline.rule_id,
                    fired.position,
                );
                return;
            }
            expired += 1;
            let outcome = match fired.outcome {
                Some(_) => {
                    automatic += 1;
                    format!("platform decides: {}", fired.events[1..].join(", "))
                }
                None => "no automatic outcome".to_owned(),
            };
            println!(
                "{}  {:<14} ⏰ {:<40} {outcome} → {} stored #{}",
                fired.deadline.due_at.format("%m-%d %H:%M"),
                fired.ticket,
                format!(
                    "{} expired ({})",
                    fired.deadline.kind, fired.deadline.rule_id
                ),
                fired.state.map_or("?", State::as_str),
                fired.position,
            );
        })?;
        Ok(())
    };
    // Like the service's loop: each warning at its own instant, then what is due by `until`.
    let mut fire_until = |until: Timestamp| -> Result<()> {
        let until = until.with_timezone(&Utc);
        scheduler.catch_up()?;
        let mut last = None;
        while let Some(w) = scheduler.next_warning().filter(|w| *w <= until) {
            if last == Some(w) {
                break; // it could not be sent (logged); the next round tries again
            }
            fire_at(w)?;
            last = Some(w);
        }
        fire_at(until)
    };
    let mut steps = script();
    // Platforms report in time order across tickets; the store's clock follows it.
    steps.sort_by_key(|s| at(s.at));
    for step in steps {
        let when = at(step.at);
        fire_until(when)?;
        let label = describe(&step.command);
        let submission = Submission {
            ticket_id: TicketId::parse(step.ticket)?,
            command: step.command,
            at: when,
            actor: step.actor,
            idempotency_key: Some(step.message_id.to_owned()),
            causation_id: None,
        };
        let outcome = match tickets.handle(submission) {
            Ok(Handled::Applied { ticket, events }) => {
                applied += 1;
                let positions: Vec<String> =
                    events.iter().map(|e| format!("#{}", e.position)).collect();
                format!(
                    "→ {:<18} stored {}",
                    ticket.state().map_or("?", State::as_str),
                    positions.join(" ")
                )
            }
            Ok(Handled::Duplicate { events }) => {
                duplicates += 1;
                format!(
                    "= redelivered message: already stored as #{}, nothing written",
                    events[0].position
                )
            }
            Err(HandleError::Rejected { rejection, .. }) => {
                refused += 1;
                format!("✗ {rejection}")
            }
            Err(e) => return Err(e.into()),
        };
        println!(
            "{}  {:<14} {:<42} {outcome}",
            when.format("%m-%d %H:%M"),
            step.ticket,
            label
        );
    }

    let end = at("2026-11-30T00:00:00+08:00");
    fire_until(end)?;

    let store = tickets.store();
    let mut by_state: BTreeMap<&str, u32> = BTreeMap::new();
    let mut ids: Vec<TicketId> = Vec::new();
    for record in store.iter_all(1) {
        let record = record?;
        let id = TicketId::parse(record.stream.as_str())?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in &ids {
        let state = tickets.load(id)?.state().map_or("?", State::as_str);
        *by_state.entry(state).or_default() += 1;
    }
    println!("\n{applied} commands applied, {refused} refused by the rules, {duplicates} redelivery ignored");
    println!("{} events in {} tickets:", store.head_position(), ids.len());
    for (state, n) in &by_state {
        println!("  {state:<20} {n}");
    }
    println!(
        "{expired} deadlines passed by {end}, {automatic} of them decided by the platform; {} still running",
        scheduler.armed_count()
    );
    println!(
        "{warned} warnings sent to the merchant's staff before a deadline fell due (⚠, {} ahead)",
        due_in(chrono::Duration::hours(
            aftersales_scheduler::WarningWindows::DEFAULT_HOURS
        ))
    );
    // The same figures the dashboard serves (GET /v1/dashboard/sla), as of the end.
    let mut views = Views::new(RuleBook::builtin(), Calendar::builtin());
    aftersales_views::catch_up(&mut views, store)?;
    print_sla(&views.sla(&SlaQuery::default(), end.to_utc()));

    let as_of = at("2026-11-21T12:00:00+08:00");
    let (then, history) =
        tickets.load_as_of(&TicketId::parse("jd:7001")?, as_of.with_timezone(&Utc))?;
    println!(
        "\naudit: jd:7001 as of {as_of} was {} after {} events (now {})",
        then.state().map_or("unopened", State::as_str),
        history.len(),
        tickets
            .load(&TicketId::parse("jd:7001")?)?
            .state()
            .map_or("?", State::as_str)
    );
    let report = store.verify()?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `2h`, `1h30m`, `45m`: how long until a deadline falls due.
fn due_in(left: chrono::Duration) -> String {
    let minutes = left.num_minutes().max(0);
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// The dashboard's SLA figures in a few lines.
fn print_sla(sla: &Sla) {
    let pct = |p: Option<f64>| p.map_or("-".to_string(), |p| format!("{p:.0}%"));
    let hours = |h: Option<f64>| h.map_or("-".to_string(), |h| format!("{h:.1}h"));
    println!(
        "deadlines met {}, missed {} ({} met); missed by kind: {}",
        sla.met,
        sla.breached,
        pct(sla.met_pct),
        sla.breached_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "platform's automatic outcomes: {}",
        sla.auto_outcomes
            .iter()
            .map(|(o, n)| format!("{} {n}", o.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let h = &sla.handling;
    println!(
        "handling time (review + disposal) of {} closed tickets: mean {}, p90 {}, {} within 6h",
        h.tickets,
        hours(h.mean_hours),
        hours(h.p90_hours),
        pct(h.within_6h_pct)
    );
}
