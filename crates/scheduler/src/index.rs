//! The index of armed deadlines: a fold of the global log into every open ticket's
//! [`Timers`], one ordered set of (due instant, ticket, rule) for "what is due next", and one
//! of (warning instant, ticket, rule) for "what warns next".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use aftersales_schema::{decode_stored, EventEnvelope};
use aftersales_store::{Position, RecordedEvent, Store};
use aftersales_ticket::{Deadline, Event, Opened, Platform, RuleId, State, TicketId};
use aftersales_timers::{ArmedDeadline, Calendar, RuleBook, RulePackId, Timers};
use chrono::{DateTime, Utc};

use crate::error::SchedulerError;
use crate::warnings::{WarningKey, WarningWindows};

/// How many log records a catch-up reads at a time.
const PAGE: usize = 1024;

/// One armed deadline's place in the due order: by due instant (UTC), then ticket, then rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DueKey {
    pub due: DateTime<Utc>,
    pub ticket: TicketId,
    pub rule: RuleId,
}

/// A ticket the index follows: its pack (an index into `DeadlineIndex::pack_ids`) and its
/// running deadlines with the ticket they were computed on.
#[derive(Debug)]
struct Tracked {
    pack: u16,
    timers: Timers,
}

/// Every open ticket's running deadlines, kept current by folding the global log in order.
///
/// A ticket follows the pack its `opened` event recorded (`Opened::rule_pack`) when the rule
/// book has it, else the platform's current pack ([`RuleBook::pack_for`]); a recorded pack
/// missing from the book is warned about once per pack. Events are applied at their platform
/// time (`occurred_at`), not the time the store recorded them. A ticket is forgotten once it
/// is final with nothing armed (a final ticket never arms again), so memory follows the open
/// tickets, not the whole log.
///
/// The due set holds only deadlines the index may still fire: a deadline the scheduler gave
/// up on ([`DeadlineIndex::drop_key`]) leaves the set but stays in its ticket's `Timers`, so
/// it is not offered again unless an event arms it anew.
///
/// The warning set mirrors the due set for every armed deadline whose kind warns
/// ([`WarningWindows`]): arming adds its warning, disarming or replacing the deadline removes
/// it, and so does the deadline's own `deadline_warned` event, so a warning stored before a
/// restart is not pending after it.
#[derive(Debug)]
pub struct DeadlineIndex {
    book: RuleBook,
    calendar: Calendar,
    windows: WarningWindows,
    pack_ids: Vec<RulePackId>,
    tickets: HashMap<TicketId, Tracked>,
    due: BTreeSet<DueKey>,
    warnings: BTreeSet<WarningKey>,
    position: Position,
    warned_packs: HashSet<RulePackId>,
    warned_platforms: HashSet<Platform>,
    /// Streams with an event the index cannot read: their deadlines are not followed.
    damaged: HashSet<String>,
}

impl DeadlineIndex {
    /// An empty index (at position 0) over these rules, with the default warning windows.
    pub fn new(book: RuleBook, calendar: Calendar) -> DeadlineIndex {
        DeadlineIndex::with_warnings(book, calendar, WarningWindows::default())
    }

    /// An empty index (at position 0) over these rules and warning windows.
    pub fn with_warnings(
        book: RuleBook,
        calendar: Calendar,
        windows: WarningWindows,
    ) -> DeadlineIndex {
        let pack_ids = book.packs().map(|p| p.id.clone()).collect();
        DeadlineIndex {
            book,
            calendar,
            windows,
            pack_ids,
            tickets: HashMap::new(),
            due: BTreeSet::new(),
            warnings: BTreeSet::new(),
            position: 0,
            warned_packs: HashSet::new(),
            warned_platforms: HashSet::new(),
            damaged: HashSet::new(),
        }
    }

    /// The last log position folded in (0: none).
    pub fn position(&self) -> Position {
        self.position
    }

    /// How many deadlines are armed and may still fire.
    pub fn armed_count(&self) -> usize {
        self.due.len()
    }

    /// How many warnings are pending (armed deadlines whose kind warns, not warned yet).
    pub fn pending_warnings(&self) -> usize {
        self.warnings.len()
    }

    /// The warning windows the index computes with.
    pub fn warning_windows(&self) -> &WarningWindows {
        &self.windows
    }

    /// How many tickets the index follows (open ones, and final ones with a deadline left).
    pub fn tracked_tickets(&self) -> usize {
        self.tickets.len()
    }

    /// The rules the index computes with.
    pub fn rule_book(&self) -> &RuleBook {
        &self.book
    }

    /// A ticket's running deadlines, if the index follows the ticket.
    pub fn timers(&self, ticket: &TicketId) -> Option<&Timers> {
        self.tickets.get(ticket).map(|t| &t.timers)
    }

    /// Folds in every acknowledged event after [`DeadlineIndex::position`], up to the store's
    /// head as it is when the call starts; returns how many were read.
    pub fn catch_up(&mut self, store: &Store) -> Result<u64, SchedulerError> {
        let head = store.head_position();
        let mut read = 0;
        while self.position < head {
            let page = store.read_all(self.position + 1, PAGE)?;
            if page.is_empty() {
                break;
            }
            for record in &page {
                self.apply_next(record)?;
                read += 1;
            }
        }
        Ok(read)
    }

    /// Folds in one record read from the log (for a subscriber): a record already folded is
    /// skipped, and a record past the next position first catches up to it from the store.
    pub fn follow(&mut self, store: &Store, record: &RecordedEvent) -> Result<(), SchedulerError> {
        if record.position <= self.position {
            return Ok(());
        }
        if record.position > self.position + 1 {
            return self.catch_up(store).map(drop);
        }
        self.apply_next(record)
    }

    /// The tickets whose streams hold an event the index could not read.
    pub fn damaged_tickets(&self) -> usize {
        self.damaged.len()
    }

    fn apply_next(&mut self, record: &RecordedEvent) -> Result<(), SchedulerError> {
        debug_assert_eq!(record.position, self.position + 1, "the log is gapless");
        let stream = record.stream.as_str();
        if !self.damaged.contains(stream) {
            match decode_stored(&record.payload, record.recorded_at) {
                Ok(envelope) if envelope.ticket_id.as_str() == stream => self.apply(&envelope),
                Ok(_) => self.isolate(record, "its payload names another ticket"),
                Err(e) => self.isolate(record, &e.to_string()),
            }
        }
        self.position = record.position;
        Ok(())
    }

    /// Stops following a stream with an event the index cannot read, instead of stopping
    /// every ticket's deadlines. Nothing wrong can fire on it meanwhile: the command handler
    /// refuses to decide on a stream it cannot read either.
    fn isolate(&mut self, record: &RecordedEvent, reason: &str) {
        tracing::error!(
            position = record.position,
            stream = %record.stream,
            reason,
            "an event in the log cannot be read; the deadlines of its ticket are no longer \
             followed: run `aftersales verify`, and upgrade the program if a newer version \
             wrote the event"
        );
        if let Some(tracked) = TicketId::parse(record.stream.as_str())
            .ok()
            .and_then(|id| self.tickets.remove(&id).map(|t| (id, t)))
        {
            let (ticket, tracked) = tracked;
            for armed in tracked.timers.armed() {
                unlist(
                    &mut self.due,
                    &mut self.warnings,
                    &self.windows,
                    &ticket,
                    &armed.deadline,
                );
            }
        }
        self.damaged.insert(record.stream.as_str().to_owned());
    }

    /// Folds one event into its ticket's deadlines (at the event's platform time) and mirrors
    /// what it armed and disarmed in the due set. Does not move [`DeadlineIndex::position`].
    fn apply(&mut self, envelope: &EventEnvelope) {
        let id = &envelope.ticket_id;
        if !self.tickets.contains_key(id) {
            // A ticket is followed from its opening; anything else is a ticket forgotten once
            // final (it can only be annotated) or one with no pack at all.
            let Event::Opened(opened) = &envelope.event else {
                return;
            };
            let Some(pack) = self.pack_of(opened) else {
                return;
            };
            let timers = Timers::new();
            self.tickets.insert(id.clone(), Tracked { pack, timers });
        }
        let Some(tracked) = self.tickets.get_mut(id) else {
            return;
        };
        let pack = self
            .book
            .pack(&self.pack_ids[usize::from(tracked.pack)])
            .expect("pack_ids lists the book's own packs");
        // A stored warning: no longer pending (it arms and disarms nothing).
        if let Event::DeadlineWarned { deadline } = &envelope.event {
            if let Some(key) = warning_key(&self.windows, id, deadline) {
                self.warnings.remove(&key);
            }
        }
        // Usually empty (no allocation); one or two entries otherwise.
        let before: Vec<Deadline> = tracked.timers.armed().map(|a| a.deadline.clone()).collect();
        let changes =
            tracked
                .timers
                .apply(pack, &self.calendar, &envelope.event, envelope.occurred_at);
        let replaced = changes.armed.iter().map(|a| &a.deadline.rule_id);
        for rule in changes.disarmed.iter().chain(replaced) {
            if let Some(deadline) = before.iter().find(|d| &d.rule_id == rule) {
                unlist(
                    &mut self.due,
                    &mut self.warnings,
                    &self.windows,
                    id,
                    deadline,
                );
            }
        }
        for armed in &changes.armed {
            self.due.insert(due_key(id, &armed.deadline));
            if let Some(key) = warning_key(&self.windows, id, &armed.deadline) {
                self.warnings.insert(key);
            }
        }
        let done = tracked.timers.armed().next().is_none()
            && tracked.timers.ticket().state().is_some_and(State::is_final);
        if done {
            self.tickets.remove(id);
        }
    }

    /// The index of the pack a newly opened ticket follows, warning once per missing pack.
    fn pack_of(&mut self, opened: &Opened) -> Option<u16> {
        let recorded = opened.rule_pack.as_ref().and_then(|id| {
            let found = self.book.pack(id);
            if found.is_none() && self.warned_packs.insert(id.clone()) {
                tracing::warn!(
                    pack = %id,
                    platform = %opened.platform,
                    "tickets were opened under a rule pack the rule book does not have; their \
                     deadlines follow the platform's current pack (load the old pack with \
                     --rules to keep them on it)"
                );
            }
            found
        });
        let pack = recorded.or_else(|| self.book.pack_for(&opened.platform));
        let Some(pack) = pack else {
            if self.warned_platforms.insert(opened.platform.clone()) {
                tracing::warn!(
                    platform = %opened.platform,
                    "the rule book has no pack for this platform and no generic pack; its \
                     tickets run no deadlines"
                );
            }
            return None;
        };
        let at = self.pack_ids.iter().position(|p| *p == pack.id)?;
        u16::try_from(at).ok()
    }

    /// The armed deadline a key stands for, if it is still armed with that due time.
    pub fn armed(&self, key: &DueKey) -> Option<&ArmedDeadline> {
        let armed = self.tickets.get(&key.ticket)?.timers.get(&key.rule)?;
        (armed.deadline.due_at == key.due && self.due.contains(key)).then_some(armed)
    }

    /// The deadline that falls due first.
    pub fn next_due(&self) -> Option<&DueKey> {
        self.due.first()
    }

    /// The first deadline in due order after `after` (from the start when `None`) that is due
    /// at or before `now`.
    pub fn first_due_after(&self, after: Option<&DueKey>, now: DateTime<Utc>) -> Option<&DueKey> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.due
            .range((lower, Bound::Unbounded))
            .next()
            .filter(|k| k.due <= now)
    }

    /// The deadlines due at or before `now`, in due order.
    pub fn due_by(&self, now: DateTime<Utc>) -> impl Iterator<Item = &DueKey> {
        self.due.iter().take_while(move |k| k.due <= now)
    }

    /// Takes a deadline out of the due set for good (it stays in its ticket's `Timers`):
    /// for a deadline the aggregate refused, which must not be tried again and again.
    pub fn drop_key(&mut self, key: &DueKey) -> bool {
        self.due.remove(key)
    }

    /// The armed deadline a warning stands for, if the deadline is still armed with that
    /// warning pending.
    pub fn warning(&self, key: &WarningKey) -> Option<&ArmedDeadline> {
        let armed = self.tickets.get(&key.ticket)?.timers.get(&key.rule)?;
        let pending = self.windows.warn_at(&armed.deadline) == Some(key.warn_at);
        (pending && self.warnings.contains(key)).then_some(armed)
    }

    /// The warning that is due to warn first.
    pub fn next_warning(&self) -> Option<&WarningKey> {
        self.warnings.first()
    }

    /// The first warning in warning order after `after` (from the start when `None`) whose
    /// instant is at or before `now`.
    pub fn first_warning_after(
        &self,
        after: Option<&WarningKey>,
        now: DateTime<Utc>,
    ) -> Option<&WarningKey> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.warnings
            .range((lower, Bound::Unbounded))
            .next()
            .filter(|k| k.warn_at <= now)
    }

    /// Takes a warning out of the warning set for good (the deadline stays armed): for a
    /// warning the aggregate refused, or one whose deadline fell due before it was sent.
    pub fn drop_warning(&mut self, key: &WarningKey) -> bool {
        self.warnings.remove(key)
    }
}

fn due_key(ticket: &TicketId, deadline: &Deadline) -> DueKey {
    DueKey {
        due: deadline.due_at.to_utc(),
        ticket: ticket.clone(),
        rule: deadline.rule_id.clone(),
    }
}

fn warning_key(
    windows: &WarningWindows,
    ticket: &TicketId,
    deadline: &Deadline,
) -> Option<WarningKey> {
    Some(WarningKey {
        warn_at: windows.warn_at(deadline)?,
        ticket: ticket.clone(),
        rule: deadline.rule_id.clone(),
    })
}

/// Takes a deadline that is no longer armed out of the due set and its warning out of the
/// warning set.
fn unlist(
    due: &mut BTreeSet<DueKey>,
    warnings: &mut BTreeSet<WarningKey>,
    windows: &WarningWindows,
    ticket: &TicketId,
    deadline: &Deadline,
) {
    due.remove(&due_key(ticket, deadline));
    if let Some(key) = warning_key(windows, ticket, deadline) {
        warnings.remove(&key);
    }
}
