//! The PRC working-day calendar: statutory holidays and make-up working days, as data.
//!
//! "Business days" in the platform rules exclude weekends and statutory holidays and count
//! the official make-up working days (调休上班). The dates come from the State Council
//! General Office's yearly notice and live in `rules/calendar/cn.toml`, so an operator can
//! load a newer file with [`Calendar::load`] without a rebuild; [`Calendar::builtin`] is the
//! copy compiled in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Once;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

/// The calendar file compiled into the crate (the default).
pub const BUILTIN_CALENDAR: &str = include_str!("../../../rules/calendar/cn.toml");

/// Why a calendar file could not be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("cannot read the holiday calendar {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the holiday calendar {file} is not valid TOML for a calendar: {reason}")]
    Syntax { file: String, reason: String },
    #[error("the holiday calendar {file} is wrong: {reason}")]
    Invalid { file: String, reason: String },
}

/// Where one year's dates come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YearSource {
    /// The notice's title (and document number when known).
    pub source: String,
    /// When the notice was published.
    pub published: String,
    #[serde(default)]
    pub url: Option<String>,
}

/// Working days in China: Monday to Friday, less statutory holidays, plus make-up days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeMap<i32, YearSource>,
    off: BTreeSet<NaiveDate>,
    work: BTreeSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    year: Vec<YearFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    source: String,
    published: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    holiday: Vec<HolidayFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    name: String,
    from: NaiveDate,
    to: NaiveDate,
    #[serde(default)]
    work: Vec<NaiveDate>,
    #[serde(default)]
    #[allow(dead_code)] // kept in the file for the reader, not used by the code
    notice: Option<String>,
}

/// The longest holiday span a notice has ever given is 9 days (Spring Festival 2026);
/// anything much longer is a typo in the file.
const MAX_SPAN_DAYS: i64 = 14;

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

static UNKNOWN_YEAR_WARNING: Once = Once::new();

impl Calendar {
    /// The calendar compiled into the crate (`rules/calendar/cn.toml` at build time).
    pub fn builtin() -> Calendar {
        Calendar::from_toml_str(BUILTIN_CALENDAR, "built-in rules/calendar/cn.toml")
            .expect("the built-in calendar is checked by the crate's tests")
    }

    /// A calendar that knows no year: every date counts weekends only.
    pub fn weekends_only() -> Calendar {
        Calendar {
            years: BTreeMap::new(),
            off: BTreeSet::new(),
            work: BTreeSet::new(),
        }
    }

    /// Reads a calendar file (the format of `rules/calendar/cn.toml`).
    pub fn load(path: &Path) -> Result<Calendar, CalendarError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Io {
            file: file.clone(),
            source,
        })?;
        Calendar::from_toml_str(&text, &file)
    }

    /// Parses and checks a calendar; `origin` names the text in errors (a path, usually).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Calendar, CalendarError> {
        let parsed: File = toml::from_str(text).map_err(|e| CalendarError::Syntax {
            file: origin.to_owned(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| CalendarError::Invalid {
            file: origin.to_owned(),
            reason,
        };
        let mut cal = Calendar::weekends_only();
        for y in parsed.year {
            let source = YearSource {
                source: y.source,
                published: y.published,
                url: y.url,
            };
            if cal.years.insert(y.year, source).is_some() {
                return Err(invalid(format!("year {} is listed twice", y.year)));
            }
            for h in y.holiday {
                let span = (h.to - h.from).num_days();
                if !(0..MAX_SPAN_DAYS).contains(&span) {
                    return Err(invalid(format!(
                        "{} {}: `from` {} to `to` {} is not a span of 1 to {MAX_SPAN_DAYS} days",
                        y.year, h.name, h.from, h.to
                    )));
                }
                for day in h.from.iter_days().take(span as usize + 1) {
                    if !cal.off.insert(day) {
                        return Err(invalid(format!("{day} is a day off twice")));
                    }
                }
                for day in h.work {
                    if !is_weekend(day) {
                        return Err(invalid(format!(
                            "{} {}: make-up working day {day} is a {}, not a Saturday or Sunday",
                            y.year,
                            h.name,
                            day.weekday()
                        )));
                    }
                    if !cal.work.insert(day) {
                        return Err(invalid(format!("{day} is a make-up working day twice")));
                    }
                }
            }
        }
        if let Some(day) = cal.off.intersection(&cal.work).next() {
            return Err(invalid(format!(
                "{day} is both a day off and a make-up working day"
            )));
        }
        Ok(cal)
    }

    /// Whether the calendar has the official dates of `year`.
    pub fn knows_year(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    /// The years the calendar knows, with their sources, in order.
    pub fn years(&self) -> impl Iterator<Item = (i32, &YearSource)> {
        self.years.iter().map(|(y, s)| (*y, s))
    }

    /// Whether `date` (a China date) is a working day.
    ///
    /// A date in a year the calendar does not know counts weekends only; the first such
    /// date in the process logs a warning (once, not per call). Never panics.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        if !self.knows_year(date.year()) {
            self.warn_unknown_year(date.year());
            return !is_weekend(date);
        }
        if self.work.contains(&date) {
            return true;
        }
        !self.off.contains(&date) && !is_weekend(date)
    }

    /// The first working day strictly after `date`; `None` only past chrono's last date.
    pub fn next_working_day(&self, date: NaiveDate) -> Option<NaiveDate> {
        let mut day = date.succ_opt()?;
        while !self.is_working_day(day) {
            day = day.succ_opt()?;
        }
        Some(day)
    }

    fn warn_unknown_year(&self, year: i32) {
        UNKNOWN_YEAR_WARNING.call_once(|| {
            let known: Vec<i32> = self.years.keys().copied().collect();
            tracing::warn!(
                year,
                ?known,
                "the holiday calendar has no official dates for this year: counting weekends \
                 only (add the year to rules/calendar/cn.toml); this warning is logged once"
            );
        });
    }
}

impl Default for Calendar {
    /// The built-in calendar.
    fn default() -> Self {
        Calendar::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn weekends_only_knows_nothing() {
        let cal = Calendar::weekends_only();
        assert!(
            cal.is_working_day(d("2026-10-01")),
            "a Thursday, holiday unknown"
        );
        assert!(
            !cal.is_working_day(d("2026-10-10")),
            "a Saturday, make-up day unknown"
        );
    }

    #[test]
    fn next_working_day_skips_holidays() {
        let cal = Calendar::builtin();
        assert_eq!(cal.next_working_day(d("2026-09-30")), Some(d("2026-10-08")));
        assert_eq!(cal.next_working_day(d("2026-10-09")), Some(d("2026-10-10")));
        assert_eq!(cal.next_working_day(NaiveDate::MAX), None);
    }

    #[test]
    fn a_make_up_day_on_a_weekday_is_refused() {
        let text = r#"
            [[year]]
            year = 2026
            source = "test"
            published = "2025-11-04"
            [[year.holiday]]
            name = "x"
            from = "2026-10-01"
            to = "2026-10-07"
            work = ["2026-10-09"]
        "#;
        let err = Calendar::from_toml_str(text, "t.toml").unwrap_err();
        assert!(
            matches!(&err, CalendarError::Invalid { file, reason }
                if file == "t.toml" && reason.contains("2026-10-09 is a Fri")),
            "{err}"
        );
    }

    #[test]
    fn overlapping_days_and_repeated_years_are_refused() {
        let both = r#"
            [[year]]
            year = 2026
            source = "test"
            published = "x"
            [[year.holiday]]
            name = "a"
            from = "2026-10-10"
            to = "2026-10-10"
            [[year.holiday]]
            name = "b"
            from = "2026-10-01"
            to = "2026-10-01"
            work = ["2026-10-10"]
        "#;
        let err = Calendar::from_toml_str(both, "t.toml").unwrap_err();
        assert!(err.to_string().contains("2026-10-10 is both"), "{err}");

        let twice = "[[year]]\nyear = 2026\nsource = \"a\"\npublished = \"b\"\n\
                     [[year]]\nyear = 2026\nsource = \"a\"\npublished = \"b\"\n";
        let err = Calendar::from_toml_str(twice, "t.toml").unwrap_err();
        assert!(
            err.to_string().contains("year 2026 is listed twice"),
            "{err}"
        );
    }

    #[test]
    fn a_reversed_or_long_span_is_refused() {
        let text = r#"
            [[year]]
            year = 2026
            source = "test"
            published = "x"
            [[year.holiday]]
            name = "x"
            from = "2026-10-07"
            to = "2026-10-01"
        "#;
        let err = Calendar::from_toml_str(text, "t.toml").unwrap_err();
        assert!(err.to_string().contains("is not a span"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = Calendar::from_toml_str("[[year]]\nyear = \"x\"", "bad.toml").unwrap_err();
        assert!(matches!(&err, CalendarError::Syntax { file, .. } if file == "bad.toml"));
        let err = Calendar::load(Path::new("/nonexistent/cn.toml")).unwrap_err();
        assert!(matches!(err, CalendarError::Io { .. }));
    }
}
