//! Warning windows: how long before its due time a deadline warns the merchant's staff.

use std::fmt;

use aftersales_ticket::{Deadline, DeadlineKind, RuleId, TicketId};
use chrono::{DateTime, Duration, Utc};

/// One pending warning's place in the warning order: by the instant it is due to warn (UTC,
/// the deadline's due time minus its kind's window), then ticket, then rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WarningKey {
    pub warn_at: DateTime<Utc>,
    pub ticket: TicketId,
    pub rule: RuleId,
}

/// Per deadline kind, how long before the due time the scheduler records a
/// `deadline_warned` event. A zero window means no warning for that kind.
///
/// [`WarningWindows::default`] warns two hours ahead for every kind
/// ([`WarningWindows::DEFAULT_HOURS`]); [`WarningWindows::none`] never warns.
#[derive(Clone, PartialEq, Eq)]
pub struct WarningWindows {
    /// Indexed like `DeadlineKind::ALL`.
    windows: [Duration; DeadlineKind::ALL.len()],
}

impl WarningWindows {
    /// The default window of every kind, in hours.
    pub const DEFAULT_HOURS: i64 = 2;

    /// The same window for every kind (zero or negative: no warnings at all).
    pub fn uniform(window: Duration) -> WarningWindows {
        WarningWindows {
            windows: [window.max(Duration::zero()); DeadlineKind::ALL.len()],
        }
    }

    /// No warnings for any kind.
    pub fn none() -> WarningWindows {
        WarningWindows::uniform(Duration::zero())
    }

    /// These windows with `kind`'s window set to `window` (zero or negative: no warning
    /// for that kind).
    pub fn with(mut self, kind: DeadlineKind, window: Duration) -> WarningWindows {
        self.set(kind, window);
        self
    }

    /// Sets `kind`'s window (zero or negative: no warning for that kind).
    pub fn set(&mut self, kind: DeadlineKind, window: Duration) {
        self.windows[slot(kind)] = window.max(Duration::zero());
    }

    /// The window of `kind`; zero when the kind does not warn.
    pub fn window(&self, kind: DeadlineKind) -> Duration {
        self.windows[slot(kind)]
    }

    /// When a deadline is due to warn: its due time minus its kind's window; `None` when
    /// the kind does not warn (or the subtraction leaves chrono's range).
    pub fn warn_at(&self, deadline: &Deadline) -> Option<DateTime<Utc>> {
        let window = self.window(deadline.kind);
        if window.is_zero() {
            return None;
        }
        deadline.due_at.to_utc().checked_sub_signed(window)
    }
}

impl Default for WarningWindows {
    fn default() -> WarningWindows {
        WarningWindows::uniform(Duration::hours(WarningWindows::DEFAULT_HOURS))
    }
}

impl fmt::Debug for WarningWindows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for kind in DeadlineKind::ALL {
            map.entry(&kind.as_str(), &self.window(kind).num_minutes());
        }
        map.finish()
    }
}

fn slot(kind: DeadlineKind) -> usize {
    DeadlineKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("DeadlineKind::ALL lists every kind")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline(kind: DeadlineKind) -> Deadline {
        Deadline {
            kind,
            due_at: DateTime::parse_from_rfc3339("2026-11-22T10:00:00+08:00").unwrap(),
            rule_id: RuleId::parse("jd.review").unwrap(),
        }
    }

    #[test]
    fn the_default_warns_two_hours_ahead_for_every_kind() {
        let windows = WarningWindows::default();
        for kind in DeadlineKind::ALL {
            assert_eq!(windows.window(kind), Duration::hours(2), "{kind}");
            assert_eq!(
                windows.warn_at(&deadline(kind)),
                Some(
                    DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
                        .unwrap()
                        .to_utc()
                )
            );
        }
    }

    #[test]
    fn a_zero_or_negative_window_does_not_warn() {
        let windows = WarningWindows::default()
            .with(DeadlineKind::Review, Duration::zero())
            .with(DeadlineKind::Pickup, Duration::minutes(-5))
            .with(DeadlineKind::CustomerShipBack, Duration::minutes(30));
        assert_eq!(windows.warn_at(&deadline(DeadlineKind::Review)), None);
        assert_eq!(windows.warn_at(&deadline(DeadlineKind::Pickup)), None);
        assert_eq!(windows.window(DeadlineKind::Pickup), Duration::zero());
        assert_eq!(
            windows.warn_at(&deadline(DeadlineKind::CustomerShipBack)),
            Some(
                DateTime::parse_from_rfc3339("2026-11-22T01:30:00Z")
                    .unwrap()
                    .to_utc()
            )
        );
        assert_eq!(
            windows.window(DeadlineKind::ComplaintReply),
            Duration::hours(2)
        );
        for kind in DeadlineKind::ALL {
            assert_eq!(WarningWindows::none().warn_at(&deadline(kind)), None);
        }
    }
}
