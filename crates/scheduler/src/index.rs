//! The index of armed deadlines: a fold of the global log into every open ticket's
//! [`Timers`] and one ordered set of (due instant, ticket, rule) for "what is due next".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;

use aftersales_schema::{decode_stored, EventEnvelope};
use aftersales_store::{Position, RecordedEvent, Store};
use aftersales_ticket::{Event, Opened, Platform, RuleId, State, TicketId};
use aftersales_timers::{ArmedDeadline, Calendar, RuleBook, RulePackId, Timers};
use chrono::{DateTime, Utc};

use crate::error::SchedulerError;

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
#[derive(Debug)]
pub struct DeadlineIndex {
    book: RuleBook,
    calendar: Calendar,
    pack_ids: Vec<RulePackId>,
    tickets: HashMap<TicketId, Tracked>,
    due: BTreeSet<DueKey>,
    position: Position,
    warned_packs: HashSet<RulePackId>,
    warned_platforms: HashSet<Platform>,
    /// Streams with an event the index cannot read: their deadlines are not followed.
    damaged: HashSet<String>,
}

impl DeadlineIndex {
    /// An empty index (at position 0) over these rules.
    pub fn new(book: RuleBook, calendar: Calendar) -> DeadlineIndex {
        let pack_ids = book.packs().map(|p| p.id.clone()).collect();
        DeadlineIndex {
            book,
            calendar,
            pack_ids,
            tickets: HashMap::new(),
            due: BTreeSet::new(),
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
                self.due.remove(&DueKey {
                    due: armed.deadline.due_at.to_utc(),
                    ticket: ticket.clone(),
                    rule: armed.deadline.rule_id.clone(),
                });
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
        // Usually empty (no allocation); one or two entries otherwise.
        let before: Vec<(RuleId, DateTime<Utc>)> = tracked
            .timers
            .armed()
            .map(|a| (a.deadline.rule_id.clone(), a.deadline.due_at.to_utc()))
            .collect();
        let changes =
            tracked
                .timers
                .apply(pack, &self.calendar, &envelope.event, envelope.occurred_at);
        let replaced = changes.armed.iter().map(|a| &a.deadline.rule_id);
        for rule in changes.disarmed.iter().chain(replaced) {
            if let Some((_, due)) = before.iter().find(|(r, _)| r == rule) {
                self.due.remove(&DueKey {
                    due: *due,
                    ticket: id.clone(),
                    rule: rule.clone(),
                });
            }
        }
        for armed in &changes.armed {
            self.due.insert(DueKey {
                due: armed.deadline.due_at.to_utc(),
                ticket: id.clone(),
                rule: armed.deadline.rule_id.clone(),
            });
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
}
