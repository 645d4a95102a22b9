//! A date past the calendar's years logs one warning per process, not one per call. This
//! file is its own test binary (its own process), so no other test has warned before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aftersales_timers::{due_at, Calendar, DueRule};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Counts warnings; everything else is ignored.
struct CountWarnings(Arc<AtomicUsize>);

impl Subscriber for CountWarnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn unknown_years_warn_once_per_process() {
    let count = Arc::new(AtomicUsize::new(0));
    let cal = Calendar::builtin();
    tracing::subscriber::with_default(CountWarnings(count.clone()), || {
        // Known years: no warning.
        for day in ["2026-10-01", "2024-02-04"] {
            cal.is_working_day(day.parse().unwrap());
        }
        assert_eq!(count.load(Ordering::SeqCst), 0);
        // Many dates in 2027 and 2030, through several calendars: one warning.
        let other = Calendar::weekends_only();
        for day in ["2027-01-01", "2027-10-01", "2030-05-01"] {
            cal.is_working_day(day.parse().unwrap());
            other.is_working_day(day.parse().unwrap());
        }
        let start = chrono::DateTime::parse_from_rfc3339("2027-10-01T10:00:00+08:00").unwrap();
        assert!(due_at(&DueRule::BusinessDays(5), start, &cal).is_some());
    });
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
