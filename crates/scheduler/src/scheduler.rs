//! Firing: each due deadline becomes one `expire_deadline` command through the command
//! handler, under an idempotency key derived from the deadline.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aftersales_app::{HandleError, Handled, Submission, Tickets};
use aftersales_clock::Clock;
use aftersales_store::{Position, StoreError};
use aftersales_ticket::{Actor, AutoOutcome, Command, Deadline, State, TicketId};
use aftersales_timers::{ArmedDeadline, Calendar, RuleBook};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::SchedulerError;
use crate::index::{DeadlineIndex, DueKey};

/// How many log records the run loop folds in per wake-up before it looks at the clock.
const FOLLOW_BATCH: usize = 1024;

/// The idempotency key of a deadline's expiry: `deadline/<kind>/<rule id>/<due, UTC RFC 3339>`.
///
/// The handler derives the event ids from the ticket and this key, so the expiry of one
/// deadline has the same ids whoever fires it and however often: a second attempt is
/// answered `Duplicate` and stores nothing. A deadline re-armed with another due time is a
/// new deadline with a new key.
pub fn deadline_key(deadline: &Deadline) -> String {
    format!(
        "deadline/{}/{}/{}",
        deadline.kind,
        deadline.rule_id,
        deadline
            .due_at
            .to_utc()
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// A deadline this scheduler stored the expiry of.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub ticket: TicketId,
    pub deadline: Deadline,
    /// The platform's automatic outcome stored with the expiry, if the rule has one.
    pub outcome: Option<AutoOutcome>,
    /// The ticket's state after the expiry (and outcome).
    pub state: Option<State>,
    /// The store position of the `deadline_expired` event; the outcome's events follow it.
    pub position: Position,
    /// The names of the events stored, in order.
    pub events: Vec<&'static str>,
}

impl fmt::Display for Fired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Some(AutoOutcome::Approve) => "approve",
            Some(AutoOutcome::Refund) => "refund",
            Some(AutoOutcome::RefundWithoutReturn) => "refund_without_return",
            Some(AutoOutcome::Lapse) => "lapse",
            None => "none",
        };
        write!(
            f,
            "{}  {}  {}  {}  outcome={}  state={}  position={}",
            self.deadline.due_at.to_rfc3339(),
            self.ticket,
            self.deadline.kind,
            self.deadline.rule_id,
            outcome,
            self.state.map_or("-", State::as_str),
            self.position,
        )
    }
}

/// What the scheduler did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FiringStats {
    /// Expiries this scheduler stored.
    pub fired: u64,
    /// Expiries found stored already (another instance, or before a restart).
    pub already_fired: u64,
    /// Deadlines the aggregate refused to expire (stale), dropped from the index.
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
    /// Builds the index by folding the whole log of the handler's store.
    pub fn start(
        tickets: Arc<Tickets>,
        book: RuleBook,
        calendar: Calendar,
    ) -> Result<Scheduler, SchedulerError> {
        let mut index = DeadlineIndex::new(book, calendar);
        index.catch_up(tickets.store())?;
        tracing::info!(
            position = index.position(),
            armed = index.armed_count(),
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
    /// Per deadline: stored → [`Fired`]; stored already (another instance, a restart) →
    /// counted, not fired again; refused by the aggregate (stale) → a warning with the
    /// rejection code and the deadline leaves the index for good; the ticket kept changing →
    /// left armed for the next round; its history cannot be read → an error is logged and
    /// the other deadlines go on. A store failure stops the round with an error; what fired
    /// before it stays fired.
    pub fn fire_due(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, SchedulerError> {
        let mut fired = Vec::new();
        self.fire_due_with(now, &mut |f| fired.push(f))?;
        Ok(fired)
    }

    /// [`Scheduler::fire_due`], handing each expiry to `on_fired` as soon as it is stored.
    /// `on_fired` runs under the scheduler's lock: it must not call the scheduler.
    pub fn fire_due_with(
        &self,
        now: DateTime<Utc>,
        on_fired: &mut dyn FnMut(Fired),
    ) -> Result<(), SchedulerError> {
        let mut shared = self.lock();
        let store = Arc::clone(self.tickets.store());
        let mut cursor: Option<DueKey> = None;
        loop {
            shared.index.catch_up(&store)?;
            let Some(key) = shared.index.first_due_after(cursor.as_ref(), now).cloned() else {
                break;
            };
            cursor = Some(key.clone());
            let Some(armed) = shared.index.armed(&key).cloned() else {
                continue;
            };
            match self.fire(&armed, &key.ticket) {
                Ok(Handled::Applied { ticket, events }) => {
                    shared.stats.fired += 1;
                    on_fired(Fired {
                        ticket: key.ticket.clone(),
                        outcome: armed.auto_outcome(),
                        deadline: armed.deadline,
                        state: ticket.state(),
                        position: events.first().map_or(0, |e| e.position),
                        events: events.iter().map(|e| e.envelope.event.name()).collect(),
                    });
                }
                Ok(Handled::Duplicate { .. }) => {
                    shared.stats.already_fired += 1;
                    tracing::debug!(ticket = %key.ticket, rule = %key.rule, "deadline expiry stored already");
                    // Its events are in the log: the catch-up disarms it. Should it somehow
                    // still be armed afterwards, never offer it again.
                    shared.index.catch_up(&store)?;
                    shared.index.drop_key(&key);
                }
                Err(HandleError::Rejected { rejection, .. }) => {
                    shared.stats.stale_dropped += 1;
                    tracing::warn!(
                        ticket = %key.ticket,
                        rule = %key.rule,
                        kind = %armed.deadline.kind,
                        code = rejection.code(),
                        "the ticket refused a deadline's expiry; the deadline is stale and is dropped"
                    );
                    shared.index.drop_key(&key);
                }
                Err(HandleError::Contention(_)) => {
                    shared.stats.deferred += 1;
                    tracing::warn!(
                        ticket = %key.ticket,
                        rule = %key.rule,
                        "the ticket kept changing while its deadline fired; trying again next round"
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
                        ticket = %key.ticket,
                        rule = %key.rule,
                        error = %e,
                        "a deadline cannot fire because its ticket's history cannot be read; \
                         run `aftersales verify`"
                    );
                }
                Err(source) => {
                    return Err(SchedulerError::Fire {
                        ticket: key.ticket,
                        rule: key.rule,
                        error: Box::new(source),
                    })
                }
            }
        }
        Ok(())
    }

    fn fire(&self, armed: &ArmedDeadline, ticket: &TicketId) -> Result<Handled, HandleError> {
        self.tickets.handle(Submission {
            ticket_id: ticket.clone(),
            command: Command::ExpireDeadline {
                deadline: armed.deadline.clone(),
                outcome: armed.auto_outcome(),
            },
            // The platform decides at the due time: that is when the expiry happened.
            at: armed.deadline.due_at,
            actor: Actor::Platform,
            idempotency_key: Some(deadline_key(&armed.deadline)),
            causation_id: None,
        })
    }

    /// The service loop: fires what is due by `clock`, then waits until the next due time,
    /// a new event in the log (which may arm a deadline that is due already), or `poll`,
    /// whichever comes first. Returns the stats once `stop` is set (seen within `poll`) or
    /// the store is closed. Errors are logged and the round is tried again after `poll`.
    pub fn run(&self, clock: &dyn Clock, stop: &AtomicBool, poll: Duration) -> FiringStats {
        self.run_with(clock, stop, poll, |_| {})
    }

    /// [`Scheduler::run`], calling `on_fired` with each expiry once it is stored (for
    /// metrics, or to notify the merchant's staff). `on_fired` runs under the scheduler's
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
            let wait = match self.fire_due_with(now, &mut |f| on_fired(&f)) {
                Ok(()) => {
                    match self.next_due() {
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
