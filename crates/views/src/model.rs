//! The pure read model: one row per ticket folded from the log, the due-time order the
//! ticket list pages through, and the SLA figures of the dashboard.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::str::FromStr;

use aftersales_schema::EventEnvelope;
use aftersales_ticket::{
    evolve, AutoOutcome, DeadlineKind, Event, Platform, RuleId, RulePackId, ServiceType, State,
    Ticket, TicketId, Timestamp,
};
use aftersales_timers::{Calendar, RuleBook, Timers};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Position in the store's global log (the store's `Position`).
pub type Position = u64;

/// The handling-time bar POP shops must keep (RULES.md 5): 6 hours.
pub const HANDLING_BAR_SECS: i64 = 6 * 3600;

/// A running deadline as the dashboards see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDeadline {
    pub kind: DeadlineKind,
    pub due_at: Timestamp,
    pub rule: RuleId,
    /// Set when the numbers are a default borrowed from another platform's pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_from: Option<RulePackId>,
    /// What the platform decides by itself if it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_outcome: Option<AutoOutcome>,
}

/// One ticket as the list and the dashboard need it. Holds no personal data (no customer
/// id, no notes), so rows may be served to any read token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRow {
    pub id: TicketId,
    pub platform: Platform,
    pub service_type: ServiceType,
    pub state: State,
    /// When the customer submitted it.
    pub opened_at: Timestamp,
    /// Platform time of the last event folded in.
    pub updated_at: Timestamp,
    /// Events folded in (the stream version).
    pub version: u64,
    /// The rule pack its deadlines follow; `None`: the rule book has none for it.
    pub pack: Option<RulePackId>,
    /// Running deadlines, earliest first.
    pub open_deadlines: Vec<OpenDeadline>,
    /// Deadlines the merchant met (stopped by an event at or before the due time).
    pub met: u32,
    /// Kinds of the deadlines it missed (expired, or stopped only after the due time).
    pub breaches: Vec<DeadlineKind>,
    /// What the platform decided by itself, in order.
    pub auto_outcomes: Vec<AutoOutcome>,
    /// First review result (approve, reject, ask the customer, or a disposal without one).
    pub reviewed_at: Option<Timestamp>,
    /// When the merchant received the goods back.
    pub received_at: Option<Timestamp>,
    /// First disposal after receipt.
    pub disposed_at: Option<Timestamp>,
    /// Review time plus disposal time, in seconds, once the ticket is final (RULES.md 5);
    /// `None` while open, or for a ticket that ended without a review result.
    pub handling_secs: Option<i64>,
}

impl TicketRow {
    /// The earliest running deadline.
    pub fn next_due(&self) -> Option<&OpenDeadline> {
        self.open_deadlines.first()
    }
}

/// Where a ticket stands in the list order: by next due time, tickets with none last,
/// then by id. Also the list's paging cursor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Milliseconds since the epoch (UTC); `i64::MAX` for a ticket with nothing due.
    due_ms: i64,
    id: TicketId,
}

impl Cursor {
    fn of(row: &TicketRow) -> Cursor {
        Cursor {
            due_ms: row
                .next_due()
                .map_or(i64::MAX, |d| d.due_at.timestamp_millis()),
            id: row.id.clone(),
        }
    }
}

/// `<due ms>~<ticket id>`, or `none~<ticket id>`; `~` never occurs in a ticket id.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.due_ms == i64::MAX {
            write!(f, "none~{}", self.id)
        } else {
            write!(f, "{}~{}", self.due_ms, self.id)
        }
    }
}

impl FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Cursor, String> {
        let bad = || format!("cursor {s:?} is not one this API handed out");
        let (due, id) = s.split_once('~').ok_or_else(bad)?;
        let due_ms = match due {
            "none" => i64::MAX,
            ms => ms.parse::<i64>().map_err(|_| bad())?,
        };
        let id = TicketId::parse(id).map_err(|_| bad())?;
        Ok(Cursor { due_ms, id })
    }
}

/// The ticket list's filters and page.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub state: Option<State>,
    pub platform: Option<Platform>,
    /// Only tickets whose next deadline falls due at or before this instant.
    pub due_before: Option<DateTime<Utc>>,
    /// Page size (at least 1).
    pub limit: usize,
    /// Continue after this ticket (the previous page's `next`).
    pub after: Option<Cursor>,
}

/// One page of the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListPage {
    pub tickets: Vec<TicketRow>,
    /// The cursor of the next page; `None` on the last page.
    #[serde(serialize_with = "display_opt")]
    pub next: Option<Cursor>,
}

fn display_opt<S: serde::Serializer>(c: &Option<Cursor>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.collect_str(c),
        None => s.serialize_none(),
    }
}

/// The dashboard's filters: a platform, and tickets opened in `[from, to)`.
#[derive(Debug, Clone, Default)]
pub struct SlaQuery {
    pub platform: Option<Platform>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// After-sales handling time over the final tickets that had a review result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handling {
    pub tickets: u64,
    pub mean_hours: Option<f64>,
    /// Nearest-rank 90th percentile.
    pub p90_hours: Option<f64>,
    /// Share (0–100) of them handled within [`HANDLING_BAR_SECS`].
    pub within_6h_pct: Option<f64>,
}

/// The SLA dashboard over the tickets a [`SlaQuery`] selects, as of `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sla {
    pub now: DateTime<Utc>,
    pub tickets: u64,
    /// Every state, with 0 for the empty ones.
    pub by_state: BTreeMap<State, u64>,
    /// Running deadlines due in `(now, now + 1h]` and `(now, now + 24h]`.
    pub due_within_1h: u64,
    pub due_within_24h: u64,
    /// Running deadlines already past their due time (the scheduler fires them next).
    pub overdue: u64,
    pub breached: u64,
    pub breached_by_kind: BTreeMap<DeadlineKind, u64>,
    pub met: u64,
    /// `met / (met + breached)` in percent; `None` before any deadline ended.
    pub met_pct: Option<f64>,
    pub handling: Handling,
    pub auto_outcomes: BTreeMap<AutoOutcome, u64>,
}

/// What an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A deadline entered its warning window (`deadline_warned`).
    Warning,
    /// A deadline passed (`deadline_expired`).
    Expired,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Warning => "warning",
            AlertKind::Expired => "expired",
        }
    }
}

impl FromStr for AlertKind {
    type Err = String;
    fn from_str(s: &str) -> Result<AlertKind, String> {
        match s {
            "warning" => Ok(AlertKind::Warning),
            "expired" => Ok(AlertKind::Expired),
            _ => Err(format!("unknown alert kind {s:?} (warning or expired)")),
        }
    }
}

/// An alert for the people who must act: one per `deadline_warned` or `deadline_expired`
/// event, so it exists once however often it is published or folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The event's id: the alert's identity (its `Nats-Msg-Id` when published).
    pub id: Uuid,
    pub position: Position,
    pub kind: AlertKind,
    pub ticket: TicketId,
    /// The platform name, as in the ticket id (`jd:…`).
    pub platform: String,
    pub deadline: DeadlineKind,
    pub rule: RuleId,
    pub due_at: Timestamp,
    /// When it was raised (the event's platform time).
    pub at: Timestamp,
}

/// The alert an event stands for, if it is a warning or an expiry.
pub fn alert_of(position: Position, envelope: &EventEnvelope) -> Option<Alert> {
    let (kind, deadline) = match &envelope.event {
        Event::DeadlineWarned { deadline } => (AlertKind::Warning, deadline),
        Event::DeadlineExpired { deadline } => (AlertKind::Expired, deadline),
        _ => return None,
    };
    let id = &envelope.ticket_id;
    let platform = id.as_str().split_once(':').map_or(id.as_str(), |(p, _)| p);
    Some(Alert {
        id: envelope.event_id,
        position,
        kind,
        ticket: id.clone(),
        platform: platform.to_owned(),
        deadline: deadline.kind,
        rule: deadline.rule_id.clone(),
        due_at: deadline.due_at,
        at: envelope.occurred_at,
    })
}

/// How many of the newest alerts the model keeps (the log keeps them all).
pub const ALERTS_KEPT: usize = 10_000;

/// A ticket's running deadlines need its history, which the model does not hold (it was
/// loaded from a checkpoint): the caller reads the stream and calls [`Views::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsHistory {
    pub ticket: TicketId,
    /// Fold the stream's versions `1..=upto` (the ones before the event being applied).
    pub upto: u64,
}

/// The running side of an open ticket: its deadlines (under its pack) or, without a pack,
/// just the ticket.
#[derive(Debug)]
enum Live {
    Timed { pack: RulePackId, timers: Timers },
    Untimed(Ticket),
}

/// One platform's share of the dashboard, kept current by `Views::index`, so that the
/// dashboard without a time range sums a few platforms instead of scanning every row.
#[derive(Debug, Default)]
struct Totals {
    tickets: u64,
    by_state: BTreeMap<State, u64>,
    met: u64,
    breached_by_kind: BTreeMap<DeadlineKind, u64>,
    auto_outcomes: BTreeMap<AutoOutcome, u64>,
    /// Handling times in seconds → how many tickets took that long.
    handling: BTreeMap<i64, u64>,
    /// Running deadlines by due instant (ms since the epoch) → how many.
    due: BTreeMap<i64, u64>,
}

/// Counts one more (`sign` > 0) or one less of `key`, dropping a count that reaches zero so
/// the maps hold only what is there.
fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, sign: i64) {
    match map.entry(key) {
        Entry::Occupied(mut e) if sign < 0 => {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
        Entry::Occupied(mut e) => *e.get_mut() += 1,
        Entry::Vacant(e) if sign > 0 => {
            e.insert(1);
        }
        Entry::Vacant(_) => {}
    }
}

impl Totals {
    fn add(&mut self, row: &TicketRow, sign: i64) {
        let step = |n: u64, by: u64| {
            if sign > 0 {
                n + by
            } else {
                n.saturating_sub(by)
            }
        };
        self.tickets = step(self.tickets, 1);
        self.met = step(self.met, u64::from(row.met));
        bump(&mut self.by_state, row.state, sign);
        for kind in &row.breaches {
            bump(&mut self.breached_by_kind, *kind, sign);
        }
        for o in &row.auto_outcomes {
            bump(&mut self.auto_outcomes, *o, sign);
        }
        if let Some(secs) = row.handling_secs {
            bump(&mut self.handling, secs, sign);
        }
        for d in &row.open_deadlines {
            bump(&mut self.due, d.due_at.timestamp_millis(), sign);
        }
    }
}

/// The read model. Rows are kept for every ticket; the running state behind a row only
/// while the ticket is open (a final ticket never arms a deadline again).
#[derive(Debug)]
pub struct Views {
    book: RuleBook,
    calendar: Calendar,
    rows: HashMap<TicketId, TicketRow>,
    live: HashMap<TicketId, Live>,
    order: BTreeSet<Cursor>,
    /// Missed deadlines by platform and kind (for `/metrics`).
    breaches: BTreeMap<(String, DeadlineKind), u64>,
    open_deadlines: u64,
    /// The dashboard's figures per platform name.
    totals: HashMap<String, Totals>,
    /// The newest alerts, oldest first.
    alerts: VecDeque<Alert>,
    position: Position,
}

impl Views {
    /// An empty model (at position 0) over these rules.
    pub fn new(book: RuleBook, calendar: Calendar) -> Views {
        Views {
            book,
            calendar,
            rows: HashMap::new(),
            live: HashMap::new(),
            order: BTreeSet::new(),
            breaches: BTreeMap::new(),
            open_deadlines: 0,
            totals: HashMap::new(),
            alerts: VecDeque::new(),
            position: 0,
        }
    }

    /// A model holding `rows` as folded up to `position` (a checkpoint); running deadlines
    /// are restored per ticket on its next event ([`NeedsHistory`]).
    pub fn from_rows(
        book: RuleBook,
        calendar: Calendar,
        position: Position,
        rows: Vec<TicketRow>,
        alerts: Vec<Alert>,
    ) -> Views {
        let mut views = Views::new(book, calendar);
        views.position = position;
        views.alerts = alerts.into();
        for row in rows {
            views.index(&row, 1);
            views.rows.insert(row.id.clone(), row);
        }
        views
    }

    /// The last log position folded in.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Marks `position` as folded in without an event for the model (an unreadable
    /// record, logged by the caller).
    pub fn skip(&mut self, position: Position) {
        self.position = self.position.max(position);
    }

    pub fn ticket_count(&self) -> usize {
        self.rows.len()
    }

    pub fn row(&self, id: &TicketId) -> Option<&TicketRow> {
        self.rows.get(id)
    }

    /// Every row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &TicketRow> {
        self.rows.values()
    }

    /// Running deadlines over all tickets.
    pub fn open_deadline_count(&self) -> u64 {
        self.open_deadlines
    }

    /// Missed deadlines by platform name and kind.
    pub fn breaches(&self) -> &BTreeMap<(String, DeadlineKind), u64> {
        &self.breaches
    }

    /// Adds (`sign` 1) or removes (-1) a row's share of the indexes.
    fn index(&mut self, row: &TicketRow, sign: i64) {
        let cursor = Cursor::of(row);
        if sign > 0 {
            self.order.insert(cursor);
        } else {
            self.order.remove(&cursor);
        }
        let open = row.open_deadlines.len() as u64;
        self.open_deadlines = if sign > 0 {
            self.open_deadlines + open
        } else {
            self.open_deadlines - open
        };
        for kind in &row.breaches {
            let n = self
                .breaches
                .entry((row.platform.as_str().to_owned(), *kind))
                .or_default();
            *n = n.saturating_add_signed(sign);
        }
        match self.totals.get_mut(row.platform.as_str()) {
            Some(t) => t.add(row, sign),
            None => {
                let mut t = Totals::default();
                t.add(row, sign);
                self.totals.insert(row.platform.as_str().to_owned(), t);
            }
        }
    }

    fn pack_for(&self, recorded: Option<&RulePackId>, platform: &Platform) -> Option<RulePackId> {
        recorded
            .and_then(|id| self.book.pack(id))
            .or_else(|| self.book.pack_for(platform))
            .map(|p| p.id.clone())
    }

    /// Rebuilds a checkpointed ticket's running state from its events `1..=upto`.
    pub fn restore<'a>(
        &mut self,
        ticket: &TicketId,
        history: impl IntoIterator<Item = &'a EventEnvelope>,
    ) {
        let Some(row) = self.rows.get(ticket) else {
            return;
        };
        let live = match row.pack.as_ref().and_then(|id| self.book.pack(id)) {
            Some(pack) => Live::Timed {
                pack: pack.id.clone(),
                timers: Timers::fold(
                    pack,
                    &self.calendar,
                    history.into_iter().map(|e| (&e.event, e.occurred_at)),
                ),
            },
            None => Live::Untimed(Ticket::replay(history.into_iter().map(|e| &e.event))),
        };
        self.live.insert(ticket.clone(), live);
    }

    /// Folds in the event at `position`. Positions must come in log order; one at or
    /// below [`Views::position`] is ignored, so a redelivery after a checkpoint is safe.
    pub fn apply(
        &mut self,
        position: Position,
        envelope: &EventEnvelope,
    ) -> Result<(), NeedsHistory> {
        if position <= self.position {
            return Ok(());
        }
        if self.rows.contains_key(&envelope.ticket_id) {
            self.alert(position, envelope);
        }
        let id = &envelope.ticket_id;
        let at = envelope.occurred_at;
        let Some(row) = self.rows.get(id) else {
            if let Event::Opened(o) = &envelope.event {
                let pack = self.pack_for(o.rule_pack.as_ref(), &o.platform);
                let live = match &pack {
                    Some(pack) => Live::Timed {
                        pack: pack.clone(),
                        timers: Timers::new(),
                    },
                    None => Live::Untimed(Ticket::default()),
                };
                self.live.insert(id.clone(), live);
                let row = TicketRow {
                    id: id.clone(),
                    platform: o.platform.clone(),
                    service_type: o.service_type,
                    state: State::PendingReview,
                    opened_at: o.opened_at,
                    updated_at: at,
                    version: 0,
                    pack,
                    open_deadlines: Vec::new(),
                    met: 0,
                    breaches: Vec::new(),
                    auto_outcomes: Vec::new(),
                    reviewed_at: None,
                    received_at: None,
                    disposed_at: None,
                    handling_secs: None,
                };
                self.index(&row, 1);
                self.rows.insert(id.clone(), row);
                return self.apply_to_row(position, envelope);
            }
            // Not opened: the aggregate ignores it too.
            self.position = position;
            return Ok(());
        };
        if !self.live.contains_key(id) && !row.state.is_final() {
            return Err(NeedsHistory {
                ticket: id.clone(),
                upto: row.version,
            });
        }
        if !self.live.contains_key(id) {
            // Final: only annotations can follow, and they change no figure.
            let mut row = self.rows.remove(id).expect("looked up above");
            self.index(&row, -1);
            row.version += 1;
            row.updated_at = at;
            self.index(&row, 1);
            self.rows.insert(id.clone(), row);
            self.position = position;
            return Ok(());
        }
        self.apply_to_row(position, envelope)
    }

    /// Folds an event into a ticket that has a row and running state.
    fn apply_to_row(
        &mut self,
        position: Position,
        envelope: &EventEnvelope,
    ) -> Result<(), NeedsHistory> {
        let id = &envelope.ticket_id;
        let at = envelope.occurred_at;
        let event = &envelope.event;
        let mut row = self.rows.remove(id).expect("the caller checked the row");
        let mut live = self
            .live
            .remove(id)
            .expect("the caller checked the running state");

        let (ticket, armed): (&Ticket, Vec<OpenDeadline>) = match &mut live {
            Live::Timed { pack, timers } => {
                let pack = self
                    .book
                    .pack(pack)
                    .expect("a row's pack was taken from the book");
                timers.apply(pack, &self.calendar, event, at);
                let mut armed: Vec<OpenDeadline> = timers
                    .armed()
                    .map(|a| OpenDeadline {
                        kind: a.deadline.kind,
                        due_at: a.deadline.due_at,
                        rule: a.deadline.rule_id.clone(),
                        default_from: a.default_from.clone(),
                        auto_outcome: a.auto_outcome(),
                    })
                    .collect();
                armed.sort_by(|a, b| (a.due_at, &a.rule).cmp(&(b.due_at, &b.rule)));
                (timers.ticket(), armed)
            }
            Live::Untimed(t) => {
                *t = evolve(std::mem::take(t), event);
                (&*t, Vec::new())
            }
        };

        self.index(&row, -1);
        let before = std::mem::replace(&mut row.open_deadlines, armed);
        let armed = &row.open_deadlines;
        // Deadlines this event ended: breached if it is their own expiry or came late.
        for old in &before {
            let still = armed.iter().find(|a| a.rule == old.rule);
            if still.is_some() {
                continue; // running, or re-armed with a new due time: not ended
            }
            let expired = matches!(event, Event::DeadlineExpired { deadline } if deadline.rule_id == old.rule);
            if expired || at > old.due_at {
                row.breaches.push(old.kind);
            } else {
                row.met += 1;
            }
            // The expiry and the platform's decision are stored in one append or not at
            // all, so the expired rule's outcome is the one the platform applied.
            if let (true, Some(outcome)) = (expired, old.auto_outcome) {
                row.auto_outcomes.push(outcome);
            }
        }
        match event {
            Event::GoodsReceived if row.received_at.is_none() => row.received_at = Some(at),
            e if is_review_result(e) && row.reviewed_at.is_none() => row.reviewed_at = Some(at),
            _ => {}
        }
        if is_disposal(event) && row.received_at.is_some() && row.disposed_at.is_none() {
            row.disposed_at = Some(at);
        }
        if let Some(state) = ticket.state() {
            row.state = state;
        }
        if row.state.is_final() && row.handling_secs.is_none() {
            row.handling_secs = handling_secs(&row);
        }
        row.version += 1;
        row.updated_at = at;
        self.index(&row, 1);

        let done = row.state.is_final() && row.open_deadlines.is_empty();
        self.rows.insert(id.clone(), row);
        if !done {
            self.live.insert(id.clone(), live);
        }
        self.position = position;
        Ok(())
    }

    /// Keeps the alert an event stands for. Called once per position: `apply` returns early
    /// for positions already folded, and a `NeedsHistory` retry is for a ticket's running
    /// state, which alerts do not depend on (`restore` leaves them alone).
    fn alert(&mut self, position: Position, envelope: &EventEnvelope) {
        if self.alerts.back().is_some_and(|a| a.position >= position) {
            return;
        }
        if let Some(alert) = alert_of(position, envelope) {
            if self.alerts.len() == ALERTS_KEPT {
                self.alerts.pop_front();
            }
            self.alerts.push_back(alert);
        }
    }

    /// The newest alerts first, up to `limit`, of a platform and kind if given.
    pub fn alerts(
        &self,
        platform: Option<&str>,
        kind: Option<AlertKind>,
        limit: usize,
    ) -> Vec<Alert> {
        self.alerts
            .iter()
            .rev()
            .filter(|a| platform.is_none_or(|p| a.platform == p))
            .filter(|a| kind.is_none_or(|k| a.kind == k))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Every kept alert, oldest first (for the checkpoint).
    pub fn kept_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.iter()
    }

    /// A page of tickets in due order (see [`Cursor`]) matching the filters.
    pub fn list(&self, q: &ListQuery) -> ListPage {
        let limit = q.limit.max(1);
        let lower = q.after.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        let due_limit = q.due_before.map(|t| t.timestamp_millis());
        let mut tickets = Vec::with_capacity(limit.min(1024));
        let mut next = None;
        for key in self.order.range((lower, Bound::Unbounded)) {
            if due_limit.is_some_and(|d| key.due_ms > d) {
                break; // the rest fall due later (or never)
            }
            let row = &self.rows[&key.id];
            if q.state.is_some_and(|s| s != row.state)
                || q.platform.as_ref().is_some_and(|p| *p != row.platform)
            {
                continue;
            }
            if tickets.len() == limit {
                next = tickets.last().map(Cursor::of);
                break;
            }
            tickets.push(row.clone());
        }
        ListPage { tickets, next }
    }

    /// The SLA dashboard over the tickets `q` selects (by platform, and opened in
    /// `[from, to)`), as of `now`.
    pub fn sla(&self, q: &SlaQuery, now: DateTime<Utc>) -> Sla {
        let mut sla = Sla {
            now,
            tickets: 0,
            by_state: State::ALL.iter().map(|s| (*s, 0)).collect(),
            due_within_1h: 0,
            due_within_24h: 0,
            overdue: 0,
            breached: 0,
            breached_by_kind: BTreeMap::new(),
            met: 0,
            met_pct: None,
            handling: Handling {
                tickets: 0,
                mean_hours: None,
                p90_hours: None,
                within_6h_pct: None,
            },
            auto_outcomes: BTreeMap::new(),
        };
        let (hour, day) = (now + Duration::hours(1), now + Duration::hours(24));
        let mut handling: BTreeMap<i64, u64> = BTreeMap::new();
        if q.from.is_none() && q.to.is_none() {
            // No time range: the running totals answer without visiting a row.
            let (now_ms, hour_ms, day_ms) = (
                now.timestamp_millis(),
                hour.timestamp_millis(),
                day.timestamp_millis(),
            );
            let selected = self
                .totals
                .iter()
                .filter(|(p, _)| q.platform.as_ref().is_none_or(|q| q.as_str() == p.as_str()));
            for (_, t) in selected {
                sla.tickets += t.tickets;
                for (state, n) in &t.by_state {
                    *sla.by_state.entry(*state).or_default() += n;
                }
                sla.overdue += t.due.range(..=now_ms).map(|(_, n)| n).sum::<u64>();
                let ahead = (Bound::Excluded(now_ms), Bound::Included(hour_ms));
                sla.due_within_1h += t.due.range(ahead).map(|(_, n)| n).sum::<u64>();
                let ahead = (Bound::Excluded(now_ms), Bound::Included(day_ms));
                sla.due_within_24h += t.due.range(ahead).map(|(_, n)| n).sum::<u64>();
                sla.met += t.met;
                for (kind, n) in &t.breached_by_kind {
                    sla.breached += n;
                    *sla.breached_by_kind.entry(*kind).or_default() += n;
                }
                for (o, n) in &t.auto_outcomes {
                    *sla.auto_outcomes.entry(*o).or_default() += n;
                }
                for (secs, n) in &t.handling {
                    *handling.entry(*secs).or_default() += n;
                }
            }
            let ended = sla.met + sla.breached;
            sla.met_pct = (ended > 0).then(|| 100.0 * sla.met as f64 / ended as f64);
            sla.handling = handling_figures(&handling);
            return sla;
        }
        for row in self.rows.values() {
            let opened = row.opened_at.to_utc();
            if q.platform.as_ref().is_some_and(|p| *p != row.platform)
                || q.from.is_some_and(|f| opened < f)
                || q.to.is_some_and(|t| opened >= t)
            {
                continue;
            }
            sla.tickets += 1;
            *sla.by_state.entry(row.state).or_default() += 1;
            for d in &row.open_deadlines {
                let due = d.due_at.to_utc();
                if due <= now {
                    sla.overdue += 1;
                } else {
                    sla.due_within_1h += u64::from(due <= hour);
                    sla.due_within_24h += u64::from(due <= day);
                }
            }
            sla.met += u64::from(row.met);
            sla.breached += row.breaches.len() as u64;
            for kind in &row.breaches {
                *sla.breached_by_kind.entry(*kind).or_default() += 1;
            }
            for o in &row.auto_outcomes {
                *sla.auto_outcomes.entry(*o).or_default() += 1;
            }
            if let Some(secs) = row.handling_secs {
                *handling.entry(secs).or_default() += 1;
            }
        }
        let ended = sla.met + sla.breached;
        sla.met_pct = (ended > 0).then(|| 100.0 * sla.met as f64 / ended as f64);
        sla.handling = handling_figures(&handling);
        sla
    }

    /// A blake3 digest of every row in id order and the position: the same log always
    /// gives the same digest, however it was folded (at once, or resumed from a checkpoint).
    pub fn digest(&self) -> String {
        let mut ids: Vec<&TicketId> = self.rows.keys().collect();
        ids.sort();
        let mut h = blake3::Hasher::new();
        h.update(&self.position.to_be_bytes());
        for id in ids {
            h.update(&serde_json::to_vec(&self.rows[id]).expect("rows serialize"));
        }
        for alert in &self.alerts {
            h.update(alert.id.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// The end of the review: a review result, or a disposal made without one (a refund-only
/// request refunded at once). The platform's own approval counts: it ends the review too.
fn is_review_result(event: &Event) -> bool {
    matches!(
        event,
        Event::Approved { .. }
            | Event::Rejected { .. }
            | Event::CustomerAsked { .. }
            | Event::RefundedWithoutReturn { .. }
    ) || is_disposal(event)
}

/// A disposal result (RULES.md 3: refund, exchange, return as-is; and a finished repair).
fn is_disposal(event: &Event) -> bool {
    matches!(
        event,
        Event::Refunded { .. }
            | Event::RefundedWithoutReturn { .. }
            | Event::Exchanged { .. }
            | Event::ReturnedAsIs { .. }
            | Event::RepairCompleted { .. }
    )
}

/// Review time (submission → review result) plus disposal time (receipt → disposal).
fn handling_secs(row: &TicketRow) -> Option<i64> {
    let review = (row.reviewed_at? - row.opened_at).num_seconds().max(0);
    let disposal = match (row.received_at, row.disposed_at) {
        (Some(r), Some(d)) => (d - r).num_seconds().max(0),
        _ => 0,
    };
    Some(review + disposal)
}

/// The handling figures of a histogram of handling times (seconds → tickets).
fn handling_figures(secs: &BTreeMap<i64, u64>) -> Handling {
    let n: u64 = secs.values().sum();
    if n == 0 {
        return Handling {
            tickets: 0,
            mean_hours: None,
            p90_hours: None,
            within_6h_pct: None,
        };
    }
    let hours = |s: i64| s as f64 / 3600.0;
    // Whole seconds, so the sum is exact as an integer.
    let total: i128 = secs
        .iter()
        .map(|(s, c)| i128::from(*s) * i128::from(*c))
        .sum();
    let mean = total as f64 / n as f64 / 3600.0;
    // Nearest rank: the smallest value with at least 90% of the values at or below it.
    let rank = (n * 9).div_ceil(10).max(1);
    let mut seen = 0;
    let p90 = secs
        .iter()
        .find(|(_, c)| {
            seen += **c;
            seen >= rank
        })
        .map(|(s, _)| *s)
        .expect("the rank is within the count");
    let within: u64 = secs.range(..=HANDLING_BAR_SECS).map(|(_, c)| c).sum();
    Handling {
        tickets: n,
        mean_hours: Some(mean),
        p90_hours: Some(hours(p90)),
        within_6h_pct: Some(100.0 * within as f64 / n as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_order_by_due_then_id() {
        let a = Cursor {
            due_ms: 5,
            id: TicketId::parse("jd:9").unwrap(),
        };
        let none = Cursor {
            due_ms: i64::MAX,
            id: TicketId::parse("jd:1").unwrap(),
        };
        assert_eq!(a.to_string(), "5~jd:9");
        assert_eq!(none.to_string(), "none~jd:1");
        assert_eq!(a.to_string().parse::<Cursor>(), Ok(a.clone()));
        assert_eq!(none.to_string().parse::<Cursor>(), Ok(none.clone()));
        assert!(a < none);
        assert!("5".parse::<Cursor>().is_err());
        assert!("x~jd:1".parse::<Cursor>().is_err());
        assert!("5~bad id".parse::<Cursor>().is_err());
    }

    #[test]
    fn handling_figures_use_nearest_rank() {
        let hist = |secs: &[i64]| {
            let mut m = BTreeMap::new();
            for s in secs {
                *m.entry(*s).or_default() += 1;
            }
            m
        };
        let h = handling_figures(&hist(&(1..=10).map(|h| h * 3600).collect::<Vec<_>>()));
        assert_eq!(h.tickets, 10);
        assert_eq!(h.mean_hours, Some(5.5));
        assert_eq!(h.p90_hours, Some(9.0));
        assert_eq!(h.within_6h_pct, Some(60.0));
        assert_eq!(handling_figures(&hist(&[])).mean_hours, None);
        assert_eq!(handling_figures(&hist(&[7200])).p90_hours, Some(2.0));
        // Repeated values count once each: 9 of 10 at 1h, one at 5h.
        let h = handling_figures(&hist(&[
            3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 18000,
        ]));
        assert_eq!((h.p90_hours, h.mean_hours), (Some(1.0), Some(1.4)));
    }
}
