//! Firing: each due deadline becomes one `expire_deadline` command through the command
//! handler, under an idempotency key derived from the deadline; each deadline entering its
//! warning window becomes one `warn_deadline` command, under its own key.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aftersales_app::{HandleError, Handled, Submission, Tickets};
use aftersales_clock::Clock;
use aftersales_store::{Position, StoreError};
use aftersales_ticket::{
    Actor, AutoOutcome, Command, Deadline, RuleId, State, TicketId, Timestamp,
};
use aftersales_timers::{ArmedDeadline, Calendar, RuleBook};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::SchedulerError;
use crate::index::{DeadlineIndex, DueKey};
use crate::warnings::{WarningKey, WarningWindows};

/// How many log records the run loop folds in per wake-up before it looks at the clock.
const FOLLOW_BATCH: usize = 1024;

/// The idempotency key of a deadline's expiry: `deadline/<kind>/<rule id>/<due, UTC RFC 3339>`.
///
/// The handler derives the event ids from the ticket and this key, so the expiry of one
/// deadline has the same ids whoever fires it and however often: a second attempt is
/// answered `Duplicate` and stores nothing. A deadline re-armed with another due time is a
/// new deadline with a new key.
pub fn deadline_key(deadline: &Deadline) -> String {
    key("deadline", deadline)
}

/// The idempotency key of a deadline's warning: `warning/<kind>/<rule id>/<due, UTC RFC
/// 3339>`, built like [`deadline_key`], so a deadline warns once whoever sends the warning
/// and however often.
pub fn warning_key(deadline: &Deadline) -> String {
    key("warning", deadline)
}

fn key(what: &str, deadline: &Deadline) -> String {
    format!(
        "{what}/{}/{}/{}",
        deadline.kind,
        deadline.rule_id,
        deadline
            .due_at
            .to_utc()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// What the scheduler stored for a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Firing {
    /// The deadline passed: `deadline_expired`, with the rule's automatic outcome if any.
    Expired,
    /// The deadline entered its warning window: `deadline_warned`.
    Warned,
}

/// A deadline this scheduler stored the expiry or the warning of.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// An expiry or a warning.
    pub what: Firing,
    pub ticket: TicketId,
    pub deadline: Deadline,
    /// When it happened on the platform (the events' `occurred_at`): the due time of an
    /// expiry; the instant a warning was sent, in the deadline's offset.
    pub at: Timestamp,
    /// The platform's automatic outcome stored with the expiry, if the rule has one
    /// (always `None` for a warning).
    pub outcome: Option<AutoOutcome>,
    /// The ticket's state after the expiry (and outcome); a warning changes nothing.
    pub state: Option<State>,
    /// The store position of the `deadline_expired` (or `deadline_warned`) event; an
    /// outcome's events follow it.
    pub position: Position,
    /// The names of the events stored, in order.
    pub events: Vec<&'static str>,
}

impl Fired {
    /// Whether this is a warning (else an expiry).
    pub fn is_warning(&self) -> bool {
        self.what == Firing::Warned
    }
}

impl fmt::Display for Fired {
    /// An expiry: `<due>  <ticket>  <kind>  <rule>  outcome=…  state=…  position=…`; a
    /// warning: `<sent at>  <ticket>  <kind>  <rule>  due=<due>  state=…  position=…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.what, self.outcome) {
            (Firing::Warned, _) => format!("due={}", self.deadline.due_at.to_rfc3339()),
            (Firing::Expired, Some(outcome)) => format!("outcome={}", outcome.as_str()),
            (Firing::Expired, None) => "outcome=none".to_owned(),
        };
        write!(
            f,
            "{}  {}  {}  {}  {}  state={}  position={}",
            self.at.to_rfc3339(),
            self.ticket,
            self.deadline.kind,
            self.deadline.rule_id,
            what,
            self.state.map_or("-", State::as_str),
            self.position,
        )
    }
}

/// The next thing a round sends: a due deadline's expiry or a pending warning.
enum Pending {
    Expiry(DueKey),
    Warning(WarningKey),
}

impl Pending {
    fn ticket(&self) -> &TicketId {
        match self {
            Pending::Expiry(k) => &k.ticket,
            Pending::Warning(k) => &k.ticket,
        }
    }

    fn rule(&self) -> &RuleId {
        match self {
            Pending::Expiry(k) => &k.rule,
            Pending::Warning(k) => &k.rule,
        }
    }

    fn what(&self) -> Firing {
        match self {
            Pending::Expiry(_) => Firing::Expired,
            Pending::Warning(_) => Firing::Warned,
        }
    }

    /// Takes it out of the index for good (the deadline itself stays armed).
    fn drop_from(&self, index: &mut DeadlineIndex) {
        match self {
            Pending::Expiry(k) => index.drop_key(k),
            Pending::Warning(k) => index.drop_warning(k),
        };
    }
}

impl fmt::Display for Firing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Firing::Expired => "expiry",
            Firing::Warned => "warning",
        })
    }
}

/// What the scheduler did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FiringStats {
    /// Expiries this scheduler stored.
    pub fired: u64,
    /// Expiries found stored already (another instance, or before a restart).
    pub already_fired: u64,
    /// Warnings this scheduler stored.
    pub warned: u64,
    /// Warnings found stored already (another instance, or before a restart).
    pub already_warned: u64,
    /// Expiries and warnings the aggregate refused (stale), dropped from the index.
    pub stale_dropped: u64,
    /// Attempts put off because the ticket kept changing; tried again next round.
    pub deferred: u64,
    /// Attempts that failed because the ticket's history cannot be read (logged as errors);
    /// tried again next round.
    pub failed: u64,
}

struct Shared {
    index: DeadlineIndex,
    stats: FiringStats,
}

/// Fires due deadlines through the command handler. Share it with `Arc`; calls are
/// serialized by an internal lock.
pub struct Scheduler {
    tickets: Arc<Tickets>,
    shared: Mutex<Shared>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.lock();
        f.debug_struct("Scheduler")
            .field("position", &shared.index.position())
            .field("armed", &shared.index.armed_count())
            .field("stats", &shared.stats)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Builds the index by folding the whole log of the handler's store, with the default
    /// warning windows ([`WarningWindows::default`]: two hours before every deadline).
    pub fn start(
        tickets: Arc<Tickets>,
        book: RuleBook,
        calendar: Calendar,
    ) -> Result<Scheduler, SchedulerError> {
        Scheduler::start_with(tickets, book, calendar, WarningWindows::default())
    }

    /// [`Scheduler::start`] with these warning windows ([`WarningWindows::none`]: no
    /// warnings).
    pub fn start_with(
        tickets: Arc<Tickets>,
        book: RuleBook,
        calendar: Calendar,
        windows: WarningWindows,
    ) -> Result<Scheduler, SchedulerError> {
        let mut index = DeadlineIndex::with_warnings(book, calendar, windows);
        index.catch_up(tickets.store())?;
        tracing::info!(
            position = index.position(),
            armed = index.armed_count(),
            warnings = index.pending_warnings(),
            tickets = index.tracked_tickets(),
            "deadline index built"
        );
        Ok(Scheduler {
            tickets,
            shared: Mutex::new(Shared {
                index,
                stats: FiringStats::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic mid-update can leave the due set missing a deadline or holding one that is
        // no longer armed; `DeadlineIndex::armed` re-checks every key before it fires.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The command handler the scheduler fires through.
    pub fn tickets(&self) -> &Arc<Tickets> {
        &self.tickets
    }

    /// Folds in the events appended since the last call; returns how many.
    pub fn catch_up(&self) -> Result<u64, SchedulerError> {
        self.lock().index.catch_up(self.tickets.store())
    }

    /// The last log position the index has folded in.
    pub fn position(&self) -> Position {
        self.lock().index.position()
    }

    /// When the next armed deadline falls due (as of the last catch-up).
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.lock().index.next_due().map(|k| k.due)
    }

    /// How many deadlines are armed (as of the last catch-up).
    pub fn armed_count(&self) -> usize {
        self.lock().index.armed_count()
    }

    /// When the next pending warning is due to be sent (as of the last catch-up).
    pub fn next_warning(&self) -> Option<DateTime<Utc>> {
        self.lock().index.next_warning().map(|k| k.warn_at)
    }

    /// How many warnings are pending (as of the last catch-up).
    pub fn pending_warnings(&self) -> usize {
        self.lock().index.pending_warnings()
    }

    /// The warning windows the scheduler was started with.
    pub fn warning_windows(&self) -> WarningWindows {
        self.lock().index.warning_windows().clone()
    }

    /// When the scheduler next has something to send: the earlier of the next due time and
    /// the next warning.
    fn next_wake(&self) -> Option<DateTime<Utc>> {
        let shared = self.lock();
        let due = shared.index.next_due().map(|k| k.due);
        let warning = shared.index.next_warning().map(|k| k.warn_at);
        due.into_iter().chain(warning).min()
    }

    /// How many tickets the index follows.
    pub fn tracked_tickets(&self) -> usize {
        self.lock().index.tracked_tickets()
    }

    /// A ticket's running deadlines, earliest first (as of the last catch-up).
    pub fn armed(&self, ticket: &TicketId) -> Vec<ArmedDeadline> {
        let shared = self.lock();
        let mut armed: Vec<ArmedDeadline> = shared
            .index
            .timers(ticket)
            .map(|t| t.armed().cloned().collect())
            .unwrap_or_default();
        armed.sort_by_key(|a| a.deadline.due_at);
        armed
    }

    /// What the scheduler did since it started.
    pub fn stats(&self) -> FiringStats {
        self.lock().stats
    }

    /// Catches up with the log, then fires every armed deadline due at or before `now`, in due
    /// order, catching up again after each so that what one expiry changed (a ticket made
    /// final, a clock stopped) is seen before the next. Returns the expiries it stored.
    ///
    /// In the same round and the same order of time, it sends every pending warning whose
    /// instant (due time minus its kind's window) is at or before `now`, for a deadline not
    /// yet due (`now < due`): a deadline already due gets only its expiry, and its warning
    /// is dropped. Expiries come in due order, warnings in warning order, and the two are
    /// merged by those instants (an expiry first on a tie).
    ///
    /// Per deadline: stored → [`Fired`]; stored already (another instance, a restart) →
    /// counted, not fired again; refused by the aggregate (stale) → a warning with the
    /// rejection code and the deadline leaves the index for good; the ticket kept changing →
    /// left armed for the next round; its history cannot be read → an error is logged and
    /// the other deadlines go on. A store failure stops the round with an error; what fired
    /// before it stays fired. Warnings are handled the same way.
    pub fn fire_due(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, SchedulerError> {
        let mut fired = Vec::new();
        self.fire_due_with(now, &mut |f| fired.push(f))?;
        Ok(fired)
    }

    /// [`Scheduler::fire_due`], handing each expiry and warning to `on_fired` as soon as it
    /// is stored. `on_fired` runs under the scheduler's lock: it must not call the scheduler.
    pub fn fire_due_with(
        &self,
        now: DateTime<Utc>,
        on_fired: &mut dyn FnMut(Fired),
    ) -> Result<(), SchedulerError> {
        self.fire_due_until(now, on_fired, &AtomicBool::new(false))
    }

    /// [`Scheduler::fire_due_with`] that gives up between two firings once `stop` is set:
    /// a burst of overdue deadlines must not hold up a stop (what is left fires next time).
    fn fire_due_until(
        &self,
        now: DateTime<Utc>,
        on_fired: &mut dyn FnMut(Fired),
        stop: &AtomicBool,
    ) -> Result<(), SchedulerError> {
        let mut shared = self.lock();
        let store = Arc::clone(self.tickets.store());
        let mut due_cursor: Option<DueKey> = None;
        let mut warning_cursor: Option<WarningKey> = None;
        while !stop.load(Ordering::Acquire) {
            shared.index.catch_up(&store)?;
            let due = shared.index.first_due_after(due_cursor.as_ref(), now);
            let warning = shared
                .index
                .first_warning_after(warning_cursor.as_ref(), now);
            let pending = match (due, warning) {
                (None, None) => break,
                (Some(d), Some(w)) if w.warn_at < d.due => Pending::Warning(w.clone()),
                (Some(d), _) => Pending::Expiry(d.clone()),
                (None, Some(w)) => Pending::Warning(w.clone()),
            };
            let armed = match &pending {
                Pending::Expiry(key) => {
                    due_cursor = Some(key.clone());
                    shared.index.armed(key).cloned()
                }
                Pending::Warning(key) => {
                    warning_cursor = Some(key.clone());
                    shared.index.warning(key).cloned()
                }
            };
            let Some(armed) = armed else {
                continue;
            };
            let what = pending.what();
            let (ticket_id, rule) = (pending.ticket(), pending.rule());
            if what == Firing::Warned && armed.deadline.due_at.to_utc() <= now {
                // Due already: the expiry is what the staff hear of; a warning now is late.
                pending.drop_from(&mut shared.index);
                continue;
            }
            let at = match what {
                // The platform decides at the due time: that is when the expiry happened.
                Firing::Expired => armed.deadline.due_at,
                Firing::Warned => now.with_timezone(armed.deadline.due_at.offset()),
            };
            match self.fire(what, &armed, ticket_id, at) {
                Ok(Handled::Applied { ticket, events }) => {
                    match what {
                        Firing::Expired => shared.stats.fired += 1,
                        Firing::Warned => shared.stats.warned += 1,
                    }
                    on_fired(Fired {
                        what,
                        ticket: ticket_id.clone(),
                        at,
                        outcome: match what {
                            Firing::Expired => armed.auto_outcome(),
                            Firing::Warned => None,
                        },
                        deadline: armed.deadline,
                        state: ticket.state(),
                        position: events.first().map_or(0, |e| e.position),
                        events: events.iter().map(|e| e.envelope.event.name()).collect(),
                    });
                }
                Ok(Handled::Duplicate { .. }) => {
                    match what {
                        Firing::Expired => shared.stats.already_fired += 1,
                        Firing::Warned => shared.stats.already_warned += 1,
                    }
                    tracing::debug!(ticket = %ticket_id, rule = %rule, "deadline {what} stored already");
                    // Its events are in the log: the catch-up disarms the deadline (or clears
                    // the warning). Should it somehow still be pending afterwards, never offer
                    // it again.
                    shared.index.catch_up(&store)?;
                    pending.drop_from(&mut shared.index);
                }
                Err(HandleError::Rejected { rejection, .. }) => {
                    shared.stats.stale_dropped += 1;
                    tracing::warn!(
                        ticket = %ticket_id,
                        rule = %rule,
                        kind = %armed.deadline.kind,
                        code = rejection.code(),
                        "the ticket refused a deadline's {what}; the deadline is stale and its {what} is dropped"
                    );
                    pending.drop_from(&mut shared.index);
                }
                Err(HandleError::Contention(_)) => {
                    shared.stats.deferred += 1;
                    tracing::warn!(
                        ticket = %ticket_id,
                        rule = %rule,
                        "the ticket kept changing while its deadline's {what} was sent; trying again next round"
                    );
                }
                Err(
                    e @ (HandleError::Unreadable { .. }
                    | HandleError::Misfiled { .. }
                    | HandleError::TicketIdMismatch { .. }),
                ) => {
                    // One damaged ticket must not hold up every other ticket's deadlines.
                    shared.stats.failed += 1;
                    tracing::error!(
                        ticket = %ticket_id,
                        rule = %rule,
                        error = %e,
                        "a deadline's {what} cannot be sent because its ticket's history cannot \
                         be read; run `aftersales verify`"
                    );
                }
                Err(source) => {
                    return Err(SchedulerError::Fire {
                        ticket: ticket_id.clone(),
                        rule: rule.clone(),
                        error: Box::new(source),
                    })
                }
            }
        }
        Ok(())
    }

    /// Sends a deadline's expiry (with the rule's automatic outcome) or its warning, as the
    /// platform, at `at`, under the deadline's key.
    fn fire(
        &self,
        what: Firing,
        armed: &ArmedDeadline,
        ticket: &TicketId,
        at: Timestamp,
    ) -> Result<Handled, HandleError> {
        let deadline = armed.deadline.clone();
        let (command, key) = match what {
            Firing::Expired => (
                Command::ExpireDeadline {
                    deadline,
                    outcome: armed.auto_outcome(),
                },
                deadline_key(&armed.deadline),
            ),
            Firing::Warned => (
                Command::WarnDeadline { deadline },
                warning_key(&armed.deadline),
            ),
        };
        self.tickets.handle(Submission {
            ticket_id: ticket.clone(),
            command,
            at,
            actor: Actor::Platform,
            idempotency_key: Some(key),
            causation_id: None,
        })
    }

    /// The service loop: fires what is due by `clock` (expiries and warnings), then waits
    /// until the next due time or warning, a new event in the log (which may arm a deadline
    /// that is due already), or `poll`, whichever comes first. Returns the stats once `stop` is set (seen within `poll`) or
    /// the store is closed. Errors are logged and the round is tried again after `poll`.
    pub fn run(&self, clock: &dyn Clock, stop: &AtomicBool, poll: Duration) -> FiringStats {
        self.run_with(clock, stop, poll, |_| {})
    }

    /// [`Scheduler::run`], calling `on_fired` with each expiry and warning once it is stored
    /// (for metrics, or to notify the merchant's staff). `on_fired` runs under the scheduler's
    /// lock: it must not call the scheduler.
    pub fn run_with(
        &self,
        clock: &dyn Clock,
        stop: &AtomicBool,
        poll: Duration,
        mut on_fired: impl FnMut(&Fired),
    ) -> FiringStats {
        // A zero poll would spin.
        let poll = poll.max(Duration::from_millis(1));
        let store = Arc::clone(self.tickets.store());
        let mut follow = store.subscribe(self.position() + 1);
        let mut stuck: Option<DateTime<Utc>> = None;
        while !stop.load(Ordering::Acquire) {
            let now = clock.now();
            let wait = match self.fire_due_until(now, &mut |f| on_fired(&f), stop) {
                Ok(()) => {
                    match self.next_wake() {
                        Some(due) if due > now => {
                            (due - now).to_std().map_or(poll, |d| d.min(poll))
                        }
                        // Armed by the last catch-up, or put off: one more round at once, then
                        // wait a poll so a deadline that keeps failing does not spin.
                        Some(due) if stuck != Some(due) => {
                            stuck = Some(due);
                            Duration::ZERO
                        }
                        _ => poll,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "firing deadlines failed; trying again");
                    poll
                }
            };
            let position = self.position();
            if follow.next_position() <= position {
                follow = store.subscribe(position + 1);
            }
            match follow.next_timeout(wait) {
                Ok(Some(record)) => {
                    let mut shared = self.lock();
                    let mut next = Some(record);
                    let mut n = 0;
                    while let Some(record) = next {
                        if let Err(e) = shared.index.follow(&store, &record) {
                            tracing::error!(error = %e, "following the log failed");
                            break;
                        }
                        n += 1;
                        if n >= FOLLOW_BATCH {
                            break;
                        }
                        next = follow.next_timeout(Duration::ZERO).ok().flatten();
                    }
                }
                Ok(None) => {}
                Err(StoreError::Closed) => break,
                Err(e) => {
                    tracing::error!(error = %e, "waiting for new events failed");
                    std::thread::sleep(poll);
                }
            }
        }
        self.stats()
    }
}
