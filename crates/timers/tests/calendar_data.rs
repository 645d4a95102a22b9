//! The holiday data in rules/calendar/cn.toml against the State Council notices.

use std::path::Path;

use aftersales_timers::Calendar;
use chrono::{Datelike, NaiveDate, Weekday};

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn cal() -> Calendar {
    Calendar::builtin()
}

fn days(from: &str, to: &str) -> Vec<NaiveDate> {
    d(from).iter_days().take_while(|x| *x <= d(to)).collect()
}

fn assert_off(cal: &Calendar, from: &str, to: &str) {
    for day in days(from, to) {
        assert!(!cal.is_working_day(day), "{day} should be a day off");
    }
}

fn assert_working(cal: &Calendar, dates: &[&str]) {
    for s in dates {
        assert!(cal.is_working_day(d(s)), "{s} should be a working day");
    }
}

#[test]
fn the_file_on_disk_is_the_built_in_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/calendar/cn.toml");
    assert_eq!(Calendar::load(&path).unwrap(), cal());
}

#[test]
fn knows_2024_to_2026_with_their_notices() {
    let cal = cal();
    let years: Vec<i32> = cal.years().map(|(y, _)| y).collect();
    assert_eq!(years, [2024, 2025, 2026]);
    for (year, src) in cal.years() {
        assert!(
            src.source
                .starts_with(&format!("国务院办公厅关于{year}年部分节假日安排的通知")),
            "{year}: {}",
            src.source
        );
    }
    assert!(!cal.knows_year(2027));
}

#[test]
fn national_day_2025_with_mid_autumn() {
    let cal = cal();
    assert_off(&cal, "2025-10-01", "2025-10-08");
    // Sunday 09-28 and Saturday 10-11 are make-up working days.
    assert_working(
        &cal,
        &["2025-09-28", "2025-10-11", "2025-09-30", "2025-10-09"],
    );
}

#[test]
fn national_day_2026() {
    let cal = cal();
    assert_off(&cal, "2026-10-01", "2026-10-07");
    assert_eq!(d("2026-09-20").weekday(), Weekday::Sun);
    assert_eq!(d("2026-10-10").weekday(), Weekday::Sat);
    assert_working(
        &cal,
        &["2026-09-20", "2026-10-10", "2026-10-08", "2026-10-09"],
    );
    assert!(!cal.is_working_day(d("2026-10-11")), "an ordinary Sunday");
    // Mid-Autumn 2026 is its own holiday, 09-25..27, without make-up days.
    assert_off(&cal, "2026-09-25", "2026-09-27");
    assert!(!cal.is_working_day(d("2026-09-19")), "an ordinary Saturday");
}

#[test]
fn spring_festival_2026() {
    let cal = cal();
    assert_off(&cal, "2026-02-15", "2026-02-23");
    assert_working(
        &cal,
        &["2026-02-14", "2026-02-28", "2026-02-13", "2026-02-24"],
    );
}

#[test]
fn spring_festival_2024_make_up_sundays() {
    let cal = cal();
    assert_off(&cal, "2024-02-10", "2024-02-17");
    assert_working(&cal, &["2024-02-04", "2024-02-18"]);
    // New Year's Eve 2024-02-09 was only "encouraged" as a rest day: a working day.
    assert_working(&cal, &["2024-02-09"]);
}

#[test]
fn new_year_2026_and_2025() {
    let cal = cal();
    assert_off(&cal, "2026-01-01", "2026-01-03");
    assert_working(&cal, &["2026-01-04"]);
    assert!(!cal.is_working_day(d("2025-01-01")));
    assert_working(&cal, &["2025-01-02"]);
}

/// Every day off that is a weekday and every make-up day, year by year, as the notices
/// give them: a second transcription to catch a typo in the file.
#[test]
fn every_special_day_of_the_known_years() {
    let cal = cal();
    let off_weekdays = |year: i32| -> Vec<NaiveDate> {
        days(&format!("{year}-01-01"), &format!("{year}-12-31"))
            .into_iter()
            .filter(|x| !matches!(x.weekday(), Weekday::Sat | Weekday::Sun))
            .filter(|x| !cal.is_working_day(*x))
            .collect()
    };
    let weekend_work = |year: i32| -> Vec<NaiveDate> {
        days(&format!("{year}-01-01"), &format!("{year}-12-31"))
            .into_iter()
            .filter(|x| matches!(x.weekday(), Weekday::Sat | Weekday::Sun))
            .filter(|x| cal.is_working_day(*x))
            .collect()
    };
    let list = |s: &[&str]| s.iter().map(|x| d(x)).collect::<Vec<_>>();
    assert_eq!(
        off_weekdays(2024),
        list(&[
            "2024-01-01",
            "2024-02-12",
            "2024-02-13",
            "2024-02-14",
            "2024-02-15",
            "2024-02-16",
            "2024-04-04",
            "2024-04-05",
            "2024-05-01",
            "2024-05-02",
            "2024-05-03",
            "2024-06-10",
            "2024-09-16",
            "2024-09-17",
            "2024-10-01",
            "2024-10-02",
            "2024-10-03",
            "2024-10-04",
            "2024-10-07",
        ])
    );
    assert_eq!(
        weekend_work(2024),
        list(&[
            "2024-02-04",
            "2024-02-18",
            "2024-04-07",
            "2024-04-28",
            "2024-05-11",
            "2024-09-14",
            "2024-09-29",
            "2024-10-12",
        ])
    );
    assert_eq!(
        off_weekdays(2025),
        list(&[
            "2025-01-01",
            "2025-01-28",
            "2025-01-29",
            "2025-01-30",
            "2025-01-31",
            "2025-02-03",
            "2025-02-04",
            "2025-04-04",
            "2025-05-01",
            "2025-05-02",
            "2025-05-05",
            "2025-06-02",
            "2025-10-01",
            "2025-10-02",
            "2025-10-03",
            "2025-10-06",
            "2025-10-07",
            "2025-10-08",
        ])
    );
    assert_eq!(
        weekend_work(2025),
        list(&[
            "2025-01-26",
            "2025-02-08",
            "2025-04-27",
            "2025-09-28",
            "2025-10-11"
        ])
    );
    assert_eq!(
        off_weekdays(2026),
        list(&[
            "2026-01-01",
            "2026-01-02",
            "2026-02-16",
            "2026-02-17",
            "2026-02-18",
            "2026-02-19",
            "2026-02-20",
            "2026-02-23",
            "2026-04-06",
            "2026-05-01",
            "2026-05-04",
            "2026-05-05",
            "2026-06-19",
            "2026-09-25",
            "2026-10-01",
            "2026-10-02",
            "2026-10-05",
            "2026-10-06",
            "2026-10-07",
        ])
    );
    assert_eq!(
        weekend_work(2026),
        list(&[
            "2026-01-04",
            "2026-02-14",
            "2026-02-28",
            "2026-05-09",
            "2026-09-20",
            "2026-10-10"
        ])
    );
}

#[test]
fn a_year_past_the_data_counts_weekends_only() {
    let cal = cal();
    // 2027-10-01 is a Friday: probably a holiday, but no notice is published yet.
    assert!(cal.is_working_day(d("2027-10-01")));
    assert!(!cal.is_working_day(d("2027-10-02")));
    assert_eq!(cal.next_working_day(d("2027-10-01")), Some(d("2027-10-04")));
    // A far year, and an early one, do not panic either.
    assert!(cal.is_working_day(d("2199-03-04")), "a Monday");
    assert!(!cal.is_working_day(d("1999-10-02")));
}

#[test]
fn an_operator_file_replaces_the_data() {
    let text = r#"
        [[year]]
        year = 2027
        source = "国务院办公厅关于2027年部分节假日安排的通知 (test data)"
        published = "2026-11"
        [[year.holiday]]
        name = "国庆节"
        from = "2027-10-01"
        to = "2027-10-07"
        work = ["2027-09-26", "2027-10-09"]
    "#;
    let cal = Calendar::from_toml_str(text, "operator.toml").unwrap();
    assert!(cal.knows_year(2027));
    assert!(!cal.is_working_day(d("2027-10-01")));
    assert!(cal.is_working_day(d("2027-10-09")));
}
