//! Deadlines as data: the PRC working-day calendar, due-time arithmetic, each platform's
//! deadline rules (rule packs), and which deadlines a ticket event arms or disarms.
//!
//! Platforms decide against a merchant who misses a deadline (JD approves an untouched
//! refund-only request, Pinduoduo refunds, a customer's request lapses). This crate says
//! *which* deadlines run on a ticket and *when* they fall due; the scheduler
//! (`crates/scheduler`) fires them by sending the aggregate one `expire_deadline` command
//! that carries the rule's automatic outcome, so both are stored together or not at all.
//!
//! ```
//! use aftersales_timers::{due_at, Calendar, DueRule};
//! let cal = Calendar::builtin();
//! let opened = chrono::DateTime::parse_from_rfc3339("2026-09-30T15:00:00+08:00").unwrap();
//! // "untouched for more than 1 business day": National Day 2026 is 10-01..07.
//! let due = due_at(&DueRule::BusinessDays(1), opened, &cal).unwrap();
//! assert_eq!(due.to_rfc3339(), "2026-10-08T15:00:00+08:00");
//! ```
//!
//! The pieces: [`Calendar`] (`rules/calendar/cn.toml`), [`DueRule`] and [`due_at`],
//! [`RulePack`]s in a [`RuleBook`] (`rules/packs/*.toml`), [`deadlines_after`] (what an
//! event arms and disarms) and [`Timers`] (a ticket's running deadlines as a fold over its
//! events). The definitions and every rule with its source are in `docs/DEADLINES.md`.
//!
//! This crate must never read a clock (the time is always an argument) and never do I/O
//! except in the explicit loaders that take a path ([`Calendar::load`], [`RulePack::load`],
//! [`RuleBook::load_dir`]). Its one side effect is a single `tracing` warning per process
//! when a date falls in a year the calendar does not know.

mod arm;
mod book;
mod calendar;
mod due;
mod pack;
mod timers;
mod trigger;

pub use arm::{deadlines_after, deadlines_on, ArmedDeadline, Changes};
pub use book::{RuleBook, BUILTIN_PACKS};
pub use calendar::{Calendar, CalendarError, YearSource, BUILTIN_CALENDAR};
pub use due::{due_at, ClockTime, DueRule};
pub use pack::{Expiry, Rule, RuleError, RulePack, RulePackId};
pub use timers::Timers;
pub use trigger::{order_shipped, Condition, Trigger};
