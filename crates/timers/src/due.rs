//! Due-time arithmetic: when a deadline armed at a given instant falls due.
//!
//! Every rule counts in China Standard Time (+08:00, [`china_offset`]) whatever offset the
//! start was given in, and every due time is returned in +08:00. docs/DEADLINES.md has the
//! definitions with worked examples.

use std::fmt;
use std::str::FromStr;

use aftersales_ticket::{china_offset, Timestamp};
use chrono::{DateTime, Days, Duration, NaiveDate, NaiveTime, TimeZone, Timelike};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;

/// A time of day, written `HH:MM` in rule packs (China time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockTime(NaiveTime);

impl ClockTime {
    pub fn new(hour: u32, minute: u32) -> Option<ClockTime> {
        NaiveTime::from_hms_opt(hour, minute, 0).map(ClockTime)
    }

    pub fn time(self) -> NaiveTime {
        self.0
    }
}

impl FromStr for ClockTime {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NaiveTime::parse_from_str(s, "%H:%M")
            .map(ClockTime)
            .map_err(|_| format!("a time of day must be HH:MM, like 16:00 (got {s:?})"))
    }
}

impl TryFrom<String> for ClockTime {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ClockTime> for String {
    fn from(t: ClockTime) -> Self {
        t.to_string()
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

/// How a rule turns the instant it is armed into a due time. In a rule pack it is written
/// `due = { hours = 48 }`, `due = { business_days = 1 }`,
/// `due = { clock_cutoff = { cutoff = "16:00", due = "18:00" } }`, `due = "platform_given"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DueRule {
    /// `n` hours after the start ("within 48h").
    Hours(u32),
    /// `n` × 24 hours after the start ("within 7 days"); no calendar involved.
    CalendarDays(u32),
    /// The same clock time on the `n`-th working day after the start date, counted from the
    /// start date whatever it is (a start on a Saturday counts Monday as the first).
    BusinessDays(u32),
    /// `n` days from 00:00 of the day after the start (the seven-day no-reason window:
    /// "自物流显示签收商品的次日零时开始起算").
    DaysFromNextMidnight(u32),
    /// Started before `cutoff` → due the same day at `due`; at or after `cutoff` → due the
    /// next *calendar* day (次日) at `due`, weekend or holiday alike.
    ClockCutoff { cutoff: ClockTime, due: ClockTime },
    /// The platform sends the due time itself (Douyin `status_deadline`, Taobao's refund
    /// `timeout`); nothing to compute.
    PlatformGiven,
}

impl DueRule {
    /// Why the rule cannot be used, if it cannot (a zero count, a cutoff after its due time).
    pub fn check(&self) -> Result<(), String> {
        match *self {
            DueRule::Hours(0)
            | DueRule::CalendarDays(0)
            | DueRule::BusinessDays(0)
            | DueRule::DaysFromNextMidnight(0) => {
                Err("a due rule needs a count of at least 1".to_owned())
            }
            DueRule::ClockCutoff { cutoff, due } if due <= cutoff => Err(format!(
                "clock_cutoff: `due` ({due}) must be later in the day than `cutoff` ({cutoff})"
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for DueRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DueRule::Hours(n) => write!(f, "{n}h"),
            DueRule::CalendarDays(n) => write!(f, "{n} days"),
            DueRule::BusinessDays(n) => write!(f, "{n} business days"),
            DueRule::DaysFromNextMidnight(n) => write!(f, "{n} days from the next midnight"),
            DueRule::ClockCutoff { cutoff, due } => {
                write!(
                    f,
                    "before {cutoff} → {due} the same day, else {due} the next day"
                )
            }
            DueRule::PlatformGiven => f.write_str("the time the platform gives"),
        }
    }
}

fn at_china(date: NaiveDate, time: NaiveTime) -> Option<Timestamp> {
    china_offset()
        .from_local_datetime(&date.and_time(time))
        .single()
}

/// When a deadline armed at `start` under `rule` falls due, in +08:00.
///
/// `None` when the rule has nothing to compute ([`DueRule::PlatformGiven`]: the platform's
/// time is the due time) or the result would fall outside chrono's range. Pure: the
/// calendar is the only input besides the arguments (see [`Calendar::is_working_day`] for
/// years it does not know).
pub fn due_at(rule: &DueRule, start: Timestamp, cal: &Calendar) -> Option<Timestamp> {
    let start: DateTime<_> = start.with_timezone(&china_offset());
    let date = start.date_naive();
    let time = start.time();
    match *rule {
        DueRule::Hours(n) => start.checked_add_signed(Duration::hours(i64::from(n))),
        DueRule::CalendarDays(n) => start.checked_add_signed(Duration::days(i64::from(n))),
        DueRule::BusinessDays(n) => {
            let mut day = date;
            for _ in 0..n {
                day = cal.next_working_day(day)?;
            }
            at_china(day, time)
        }
        DueRule::DaysFromNextMidnight(n) => {
            let day = date.checked_add_days(Days::new(u64::from(n) + 1))?;
            at_china(day, NaiveTime::MIN)
        }
        DueRule::ClockCutoff { cutoff, due } => {
            let day = if time < cutoff.time() {
                date
            } else {
                date.succ_opt()?
            };
            at_china(day, due.time())
        }
        DueRule::PlatformGiven => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn due(rule: DueRule, start: &str) -> Option<String> {
        due_at(&rule, t(start), &Calendar::builtin()).map(|d| d.to_rfc3339())
    }

    const CUTOFF: DueRule = DueRule::ClockCutoff {
        cutoff: ClockTime(NaiveTime::from_hms_opt(16, 0, 0).unwrap()),
        due: ClockTime(NaiveTime::from_hms_opt(18, 0, 0).unwrap()),
    };

    #[test]
    fn hours_and_calendar_days_ignore_the_calendar() {
        // Across National Day 2026: plain elapsed time.
        assert_eq!(
            due(DueRule::Hours(48), "2026-09-30T15:00:00+08:00").unwrap(),
            "2026-10-02T15:00:00+08:00"
        );
        assert_eq!(
            due(DueRule::CalendarDays(7), "2026-09-30T15:00:00+08:00").unwrap(),
            "2026-10-07T15:00:00+08:00"
        );
    }

    #[test]
    fn business_days_keep_the_clock_time_on_the_nth_working_day() {
        // Wednesday before National Day → Thursday after it.
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-09-30T15:00:00+08:00").unwrap(),
            "2026-10-08T15:00:00+08:00"
        );
        // Friday → the make-up Saturday.
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-10-09T10:00:00+08:00").unwrap(),
            "2026-10-10T10:00:00+08:00"
        );
        // Two business days from Friday 2026-10-09: Sat 10 (make-up), Mon 12.
        assert_eq!(
            due(DueRule::BusinessDays(2), "2026-10-09T10:00:00+08:00").unwrap(),
            "2026-10-12T10:00:00+08:00"
        );
    }

    #[test]
    fn business_days_from_a_day_off_count_from_that_date() {
        // Saturday 2026-03-07: the first working day after it is Monday the 9th.
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-03-07T09:30:00+08:00").unwrap(),
            "2026-03-09T09:30:00+08:00"
        );
        // Sunday 2026-03-08: also Monday the 9th (the N-th working day after the start date).
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-03-08T23:00:00+08:00").unwrap(),
            "2026-03-09T23:00:00+08:00"
        );
        // Inside National Day (Saturday 2026-10-03): Thursday the 8th.
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-10-03T12:00:00+08:00").unwrap(),
            "2026-10-08T12:00:00+08:00"
        );
    }

    #[test]
    fn business_days_past_the_known_years_count_weekends_only() {
        // 2027 is not in the calendar: Friday 2027-10-01 → Monday 2027-10-04, no panic.
        assert_eq!(
            due(DueRule::BusinessDays(1), "2027-10-01T10:00:00+08:00").unwrap(),
            "2027-10-04T10:00:00+08:00"
        );
        // Thursday 2026-12-31 → Friday 2027-01-01 (2027's New Year's Day is unknown yet).
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-12-31T10:00:00+08:00").unwrap(),
            "2027-01-01T10:00:00+08:00"
        );
    }

    #[test]
    fn other_offsets_are_read_as_china_time() {
        // 2026-09-30T07:00Z is 15:00 in China.
        assert_eq!(
            due(DueRule::BusinessDays(1), "2026-09-30T07:00:00Z").unwrap(),
            "2026-10-08T15:00:00+08:00"
        );
        // 2026-11-20T23:30Z is already Saturday 07:30 in China: next midnight is the 22nd.
        assert_eq!(
            due(DueRule::DaysFromNextMidnight(7), "2026-11-20T23:30:00Z").unwrap(),
            "2026-11-29T00:00:00+08:00"
        );
    }

    #[test]
    fn days_from_next_midnight_match_the_seven_day_window() {
        let signed = "2026-11-10T21:15:00+08:00";
        assert_eq!(
            due(DueRule::DaysFromNextMidnight(7), signed).unwrap(),
            "2026-11-18T00:00:00+08:00"
        );
        let aggregate = aftersales_ticket::seven_day_window_closes_at(t(signed));
        assert_eq!(
            due_at(
                &DueRule::DaysFromNextMidnight(7),
                t(signed),
                &Calendar::builtin()
            ),
            Some(aggregate)
        );
    }

    #[test]
    fn clock_cutoff_is_same_day_before_and_next_calendar_day_from_the_cutoff() {
        assert_eq!(
            due(CUTOFF, "2026-11-20T15:59:00+08:00").unwrap(),
            "2026-11-20T18:00:00+08:00"
        );
        // Exactly 16:00 is not "before 16:00".
        assert_eq!(
            due(CUTOFF, "2026-11-20T16:00:00+08:00").unwrap(),
            "2026-11-21T18:00:00+08:00"
        );
        // Friday evening → Saturday 18:00: 次日 is the next calendar day.
        assert_eq!(
            due(CUTOFF, "2026-11-20T20:00:00+08:00").unwrap(),
            "2026-11-21T18:00:00+08:00"
        );
        // Early morning: the same day.
        assert_eq!(
            due(CUTOFF, "2026-11-21T00:10:00+08:00").unwrap(),
            "2026-11-21T18:00:00+08:00"
        );
    }

    #[test]
    fn platform_given_has_nothing_to_compute() {
        assert_eq!(
            due(DueRule::PlatformGiven, "2026-11-20T20:00:00+08:00"),
            None
        );
    }

    #[test]
    fn overflow_is_none_not_a_panic() {
        let cal = Calendar::weekends_only();
        let end = china_offset()
            .from_local_datetime(&NaiveDate::MAX.and_hms_opt(17, 0, 0).unwrap())
            .single();
        if let Some(end) = end {
            assert_eq!(due_at(&DueRule::Hours(48), end, &cal), None);
            assert_eq!(due_at(&DueRule::BusinessDays(1), end, &cal), None);
            assert_eq!(due_at(&CUTOFF, end, &cal), None);
        }
    }

    #[test]
    fn rules_are_read_from_toml() {
        #[derive(Deserialize)]
        struct W {
            due: DueRule,
        }
        let read = |s: &str| toml::from_str::<W>(s).map(|w| w.due);
        assert_eq!(read("due = { hours = 48 }").unwrap(), DueRule::Hours(48));
        assert_eq!(
            read("due = { business_days = 1 }").unwrap(),
            DueRule::BusinessDays(1)
        );
        assert_eq!(
            read(r#"due = { clock_cutoff = { cutoff = "16:00", due = "18:00" } }"#).unwrap(),
            CUTOFF
        );
        assert_eq!(
            read(r#"due = "platform_given""#).unwrap(),
            DueRule::PlatformGiven
        );
        assert!(read(r#"due = { clock_cutoff = { cutoff = "4pm", due = "18:00" } }"#).is_err());
        assert!(read("due = { weeks = 1 }").is_err());
    }

    #[test]
    fn check_refuses_zero_counts_and_backwards_cutoffs() {
        assert!(DueRule::Hours(0).check().is_err());
        assert!(DueRule::Hours(1).check().is_ok());
        let backwards = DueRule::ClockCutoff {
            cutoff: ClockTime::new(18, 0).unwrap(),
            due: ClockTime::new(16, 0).unwrap(),
        };
        assert!(backwards.check().is_err());
        assert!(CUTOFF.check().is_ok());
    }
}
