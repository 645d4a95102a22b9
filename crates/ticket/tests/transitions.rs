//! Reads the tables of docs/TRANSITIONS.md and checks every cell against `decide`.

mod support;

use std::collections::BTreeSet;

use aftersales_ticket::*;
use support::*;

fn service(s: &str) -> ServiceType {
    ServiceType::ALL
        .into_iter()
        .find(|t| t.as_str() == s)
        .unwrap_or_else(|| panic!("unknown service type {s:?} in the table"))
}

/// Checks one cell; returns a description of the mismatch, if any.
fn check(ticket: &Ticket, service_type: ServiceType, command: &str, cell: &str) -> Option<String> {
    let result = decide(ticket, canonical(command, service_type), &ctx());
    let state = ticket.state().map_or("unopened", State::as_str);
    match (cell.strip_prefix("✗ "), result) {
        (Some(code), Err(r)) if r.code() == code => None,
        (Some(code), Err(r)) => Some(format!(
            "{state} × {command}: table says ✗ {code}, decide refused with {} ({r})",
            r.code()
        )),
        (Some(code), Ok(ev)) => Some(format!(
            "{state} × {command}: table says ✗ {code}, decide accepted {:?}",
            names(&ev)
        )),
        (None, Err(r)) => Some(format!(
            "{state} × {command}: table says {cell}, decide refused: {r}"
        )),
        (None, Ok(events)) => {
            let (evs, next) = cell.split_once(" → ").expect("cell is `events → state`");
            let want: Vec<&str> = evs.split(", ").collect();
            let got_next = events.iter().fold(ticket.clone(), evolve);
            let got_state = got_next.state().map_or("unopened", State::as_str);
            (names(&events) != want || got_state != next).then(|| {
                format!(
                    "{state} × {command}: table says {cell}, decide gave {:?} → {got_state}",
                    names(&events)
                )
            })
        }
    }
}

fn table_rows(section: &str) -> impl Iterator<Item = Vec<&str>> {
    section
        .lines()
        .filter(|l| {
            l.starts_with("| ") && !l.starts_with("| command") && !l.starts_with("| service")
        })
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
}

#[test]
fn every_state_and_command_pair_matches_the_documented_table() {
    let doc = include_str!("../../../docs/TRANSITIONS.md");
    let (_, by_state) = doc
        .split_once("## By state")
        .expect("a `## By state` heading");
    let mut failures = Vec::new();
    let mut states_seen = BTreeSet::new();
    let mut cells = 0;
    for section in by_state.split("\n### ").skip(1) {
        let state_name = section.lines().next().unwrap().trim();
        let header = section
            .lines()
            .find(|l| l.starts_with("ticket: "))
            .expect("each state section names its ticket and path");
        let (svc, path) = header["ticket: ".len()..].split_once("; path: ").unwrap();
        let service_type = service(svc);
        let path: Vec<&str> = if path == "(none)" {
            vec![]
        } else {
            path.split(", ").collect()
        };
        let (ticket, _) = walk(service_type, &path);
        let reached = ticket.state().map_or("unopened", State::as_str);
        assert_eq!(
            reached, state_name,
            "the path of section {state_name} leads to {reached}"
        );
        states_seen.insert(state_name.to_owned());

        let mut commands_seen = BTreeSet::new();
        for row in table_rows(section) {
            let [command, cell] = row[..] else {
                panic!("bad row {row:?}")
            };
            assert!(
                commands_seen.insert(command),
                "{state_name}: {command} listed twice"
            );
            cells += 1;
            failures.extend(check(&ticket, service_type, command, cell));
        }
        let missing: Vec<_> = COMMANDS
            .iter()
            .filter(|c| !commands_seen.contains(*c))
            .collect();
        assert!(missing.is_empty(), "{state_name}: no row for {missing:?}");
    }
    let all: BTreeSet<String> = std::iter::once("unopened".to_owned())
        .chain(State::ALL.iter().map(|s| s.as_str().to_owned()))
        .collect();
    assert_eq!(states_seen, all, "every state has a section");
    assert_eq!(cells, all.len() * COMMANDS.len());
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn service_type_dependent_transitions_match_the_documented_table() {
    let doc = include_str!("../../../docs/TRANSITIONS.md");
    let section = doc
        .split("## What depends on the service type")
        .nth(1)
        .and_then(|s| s.split("## By state").next())
        .expect("the service-type section");
    let mut failures = Vec::new();
    let mut rows = 0;
    for row in table_rows(section) {
        let [svc, command, cell] = row[..] else {
            panic!("bad row {row:?}")
        };
        let service_type = service(svc);
        // Reach the state where the command is allowed: receipt needs an approved ticket.
        let path: &[&str] = match command {
            "confirm_receipt" => &["open", "approve"],
            _ => &["open"],
        };
        let (ticket, _) = walk(service_type, path);
        failures.extend(check(&ticket, service_type, command, cell));
        rows += 1;
    }
    assert_eq!(rows, 10);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deadline_kinds_run_only_in_the_states_their_clock_covers() {
    use DeadlineKind::*;
    use State::*;
    // Written out by hand from RULES.md section 3: which state each clock waits on.
    let expected: &[(DeadlineKind, &[State])] = &[
        (Review, &[PendingReview]),
        (CancelReviewBeforeShipment, &[PendingReview]),
        (CancelReviewAfterShipment, &[PendingReview]),
        (RefundOnlyAutoApprove, &[PendingReview]),
        (DisposeAfterReceipt, &[Received]),
        (Pickup, &[AwaitingReturn]),
        (CustomerShipBack, &[AwaitingReturn]),
        (RepairOnsite, &[PendingReview, AwaitingCustomer, InRepair]),
        (RepairSendIn, &[InRepair]),
        (CustomerResubmit, &[Rejected]),
        (MerchantConfirmRefund, &[AwaitingReturn, Received]),
        (CustomerConfirm, &[AwaitingCustomer]),
        (
            ViolationAppeal,
            &[
                PendingReview,
                AwaitingCustomer,
                AwaitingReturn,
                Received,
                InRepair,
                InDispute,
                Rejected,
            ],
        ),
        (
            ComplaintReply,
            &[
                PendingReview,
                AwaitingCustomer,
                AwaitingReturn,
                Received,
                InRepair,
                InDispute,
                Rejected,
            ],
        ),
    ];
    assert_eq!(expected.len(), DeadlineKind::ALL.len());
    for (kind, states) in expected {
        for state in State::ALL {
            assert_eq!(
                kind.runs_in(state),
                states.contains(&state),
                "{kind} in {state}"
            );
        }
    }
}
