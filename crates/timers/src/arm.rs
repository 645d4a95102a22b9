//! Arming: which deadlines an event starts and which it stops, from a pack and the ticket.

use aftersales_ticket::{evolve, AutoOutcome, Deadline, Event, RuleId, Ticket, Timestamp};
use serde::Serialize;

use crate::calendar::Calendar;
use crate::due::{due_at, DueRule};
use crate::pack::{Expiry, Rule, RulePack, RulePackId};
use crate::trigger::Trigger;

/// A running deadline with the rule facts the scheduler and the API need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArmedDeadline {
    /// Kind, due time and rule id: what `Command::ExpireDeadline` carries.
    pub deadline: Deadline,
    /// When it was armed (the arming event's time).
    pub armed_at: Timestamp,
    pub pack: RulePackId,
    pub expiry: Expiry,
    /// Set when the numbers are a default borrowed from another platform's pack.
    pub default_from: Option<RulePackId>,
}

impl ArmedDeadline {
    /// The platform's automatic outcome on expiry, if any (sent with the expiry, in
    /// `Command::ExpireDeadline`).
    pub fn auto_outcome(&self) -> Option<AutoOutcome> {
        self.expiry.auto_outcome()
    }

    /// Whether the due time is a default taken from another platform's numbers.
    pub fn is_default(&self) -> bool {
        self.default_from.is_some()
    }
}

/// What one event (or external trigger) does to a ticket's deadlines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Deadlines it starts; one with the id of a running deadline replaces it.
    pub armed: Vec<ArmedDeadline>,
    /// Rules whose deadline it stops, if one is running (the list does not know which are:
    /// [`Timers`](crate::Timers) does). Never lists a rule it also arms.
    pub disarmed: Vec<RuleId>,
    /// Rules it would arm whose due time the platform sends ([`DueRule::PlatformGiven`]):
    /// the caller records the platform's time next to ours.
    pub platform_given: Vec<RuleId>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty() && self.disarmed.is_empty() && self.platform_given.is_empty()
    }
}

/// What `event`, recorded at `at` on a ticket that was `before` it, arms and disarms.
///
/// Conditions are read on the ticket *after* the event (an approval sets the return
/// method). The start of every deadline is `at`, except for `opened`, whose start is the
/// ticket's `opened_at` (review clocks count from the customer's submission). A rule arms
/// only if its kind runs in the ticket's new state (`DeadlineKind::runs_in`), so nothing is
/// armed that the aggregate would refuse to expire.
///
/// A rule is disarmed when the event is in its `disarmed_by`, when the event is the
/// rule's own `deadline_expired`, or when its kind ran in the old state and does not run in
/// the new one (every final state, among others).
pub fn deadlines_after(
    pack: &RulePack,
    before: &Ticket,
    event: &Event,
    at: Timestamp,
    cal: &Calendar,
) -> Changes {
    // A second `opened` changes nothing in the aggregate, so it must not restart clocks.
    if matches!((before, event), (Ticket::Open(_), Event::Opened(_))) {
        return Changes::default();
    }
    let after = evolve(before.clone(), event);
    let Some(t) = after.data() else {
        return Changes::default();
    };
    let trigger = Trigger::of(event);
    let start = match event {
        Event::Opened(o) => o.opened_at,
        _ => at,
    };
    let expired = match event {
        Event::DeadlineExpired { deadline } => Some(&deadline.rule_id),
        _ => None,
    };
    let mut changes = Changes::default();
    for rule in &pack.rules {
        let listed = trigger.is_some_and(|tr| rule.disarmed_by.contains(&tr));
        let stopped =
            before.state().is_some_and(|s| rule.kind.runs_in(s)) && !rule.kind.runs_in(t.state);
        if listed || stopped || expired == Some(&rule.id) {
            changes.disarmed.push(rule.id.clone());
        }
    }
    if let Some(trigger) = trigger {
        arm(pack, &after, trigger, start, cal, &mut changes);
    }
    changes
}

/// What an external trigger (one the ticket log does not record, such as a JD violation
/// decision or complaint work order) arms on `ticket`, as it is now. It disarms nothing.
/// An event trigger arms nothing here: events go through [`deadlines_after`].
pub fn deadlines_on(
    pack: &RulePack,
    ticket: &Ticket,
    trigger: Trigger,
    at: Timestamp,
    cal: &Calendar,
) -> Changes {
    let mut changes = Changes::default();
    if trigger.is_external() {
        arm(pack, ticket, trigger, at, cal, &mut changes);
    }
    changes
}

fn arm(
    pack: &RulePack,
    ticket: &Ticket,
    trigger: Trigger,
    start: Timestamp,
    cal: &Calendar,
    changes: &mut Changes,
) {
    let Some(t) = ticket.data() else { return };
    let arming = pack
        .rules
        .iter()
        .filter(|r| r.on.contains(&trigger) && r.when.matches(t) && r.kind.runs_in(t.state));
    for rule in arming {
        match due_at(&rule.due, start, cal) {
            Some(due) => changes.armed.push(armed(pack, rule, start, due)),
            None if rule.due == DueRule::PlatformGiven => {
                changes.platform_given.push(rule.id.clone())
            }
            // Past chrono's last date: nothing sensible to arm.
            None => {}
        }
    }
    changes
        .disarmed
        .retain(|id| !changes.armed.iter().any(|a| &a.deadline.rule_id == id));
}

fn armed(pack: &RulePack, rule: &Rule, start: Timestamp, due_at: Timestamp) -> ArmedDeadline {
    ArmedDeadline {
        deadline: Deadline {
            kind: rule.kind,
            due_at,
            rule_id: rule.id.clone(),
        },
        armed_at: start,
        pack: pack.id.clone(),
        expiry: rule.expiry,
        default_from: rule.default_from.clone(),
    }
}
