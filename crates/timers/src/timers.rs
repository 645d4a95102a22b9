//! `Timers`: the running deadlines of one ticket, as a fold over its events.

use std::collections::BTreeMap;

use aftersales_ticket::{evolve, Event, RuleId, Ticket, Timestamp};

use crate::arm::{deadlines_after, deadlines_on, ArmedDeadline, Changes};
use crate::calendar::Calendar;
use crate::pack::RulePack;
use crate::trigger::Trigger;

/// One ticket's running deadlines and the ticket they were computed on.
///
/// `Timers::fold(pack, cal, events)` rebuilds them from the ticket's history; a deadline
/// that expired is gone once its own `deadline_expired` event is folded in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    ticket: Ticket,
    armed: BTreeMap<RuleId, ArmedDeadline>,
}

impl Timers {
    pub fn new() -> Timers {
        Timers::default()
    }

    /// Rebuilds the running deadlines from a ticket's events, each with the time it was
    /// recorded at.
    pub fn fold<'a>(
        pack: &RulePack,
        cal: &Calendar,
        events: impl IntoIterator<Item = (&'a Event, Timestamp)>,
    ) -> Timers {
        let mut timers = Timers::new();
        for (event, at) in events {
            timers.apply(pack, cal, event, at);
        }
        timers
    }

    /// Folds in one event; returns what it changed (see [`deadlines_after`]).
    pub fn apply(
        &mut self,
        pack: &RulePack,
        cal: &Calendar,
        event: &Event,
        at: Timestamp,
    ) -> Changes {
        let changes = deadlines_after(pack, &self.ticket, event, at, cal);
        self.ticket = evolve(std::mem::take(&mut self.ticket), event);
        self.record(&changes);
        changes
    }

    /// Applies an external trigger (see [`deadlines_on`]); the ticket is unchanged.
    pub fn apply_external(
        &mut self,
        pack: &RulePack,
        cal: &Calendar,
        trigger: Trigger,
        at: Timestamp,
    ) -> Changes {
        let changes = deadlines_on(pack, &self.ticket, trigger, at, cal);
        self.record(&changes);
        changes
    }

    fn record(&mut self, changes: &Changes) {
        for id in &changes.disarmed {
            self.armed.remove(id);
        }
        for a in &changes.armed {
            self.armed.insert(a.deadline.rule_id.clone(), a.clone());
        }
    }

    /// The ticket as the folded events made it.
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// The running deadlines, in rule id order.
    pub fn armed(&self) -> impl Iterator<Item = &ArmedDeadline> {
        self.armed.values()
    }

    /// The running deadline of a rule.
    pub fn get(&self, rule: &RuleId) -> Option<&ArmedDeadline> {
        self.armed.get(rule)
    }

    /// The running deadline that falls due first (ties: rule id order).
    pub fn next_due(&self) -> Option<&ArmedDeadline> {
        self.armed.values().min_by_key(|a| a.deadline.due_at)
    }

    /// The running deadlines due at or before `now`, earliest first. `now` is passed in:
    /// this crate never reads a clock.
    pub fn due_by(&self, now: Timestamp) -> Vec<&ArmedDeadline> {
        let mut due: Vec<_> = self
            .armed
            .values()
            .filter(|a| a.deadline.due_at <= now)
            .collect();
        due.sort_by_key(|a| a.deadline.due_at);
        due
    }
}
