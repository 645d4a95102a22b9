//! The deadline scheduler: fires the deadlines the platforms run against a merchant, on time
//! and exactly once.
//!
//! Platforms decide against a merchant who misses a deadline (JD approves an untouched
//! refund-only request, Pinduoduo refunds, a customer's request lapses), so a deadline that
//! fires late, early or twice puts a wrong fact in the log. This crate is the imperative shell
//! around the pure timer core (`aftersales-timers`):
//!
//! - [`DeadlineIndex`]: every ticket's running deadlines ([`aftersales_timers::Timers`]),
//!   one ordered set by (due instant in UTC, ticket, rule) for "what is due next" and one by
//!   (warning instant, ticket, rule) for "what warns next", built by folding the global log
//!   from position 1 and kept current from the log after that;
//! - [`Scheduler`]: [`Scheduler::fire_due`] sends each deadline due by `now` to the command
//!   handler as one `expire_deadline` command carrying the rule's automatic outcome (both are
//!   stored in one append or not at all) under an idempotency key derived from the deadline
//!   ([`deadline_key`]), and each deadline that entered its warning window
//!   ([`WarningWindows`], two hours by default) but is not due yet as one `warn_deadline`
//!   command under its own key ([`warning_key`]); [`Scheduler::run`] is the loop for a
//!   long-running service;
//! - [`bench`]: `aftersales bench timers`.
//!
//! What it must never do:
//! - fire a deadline (or warn of one) twice: the key makes the stored event ids
//!   deterministic, so a second instance, a restart or a crash mid-firing is answered
//!   `Duplicate` by the handler, and the expiry folded back from the log disarms the deadline
//!   (the warning folded back clears the pending warning);
//! - fire a deadline early: only deadlines with `due_at <= now` fire, and `now` is an
//!   argument (a clock that jumps back fires nothing);
//! - read the wall clock except through the injected [`aftersales_clock::Clock`];
//! - log notes or personal data: warnings name tickets, rules, kinds and rejection codes only.

pub mod bench;
mod error;
mod index;
mod scheduler;
mod warnings;

pub use error::SchedulerError;
pub use index::{DeadlineIndex, DueKey};
pub use scheduler::{deadline_key, warning_key, Fired, Firing, FiringStats, Scheduler};
pub use warnings::{WarningKey, WarningWindows};
