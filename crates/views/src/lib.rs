//! The read models dashboards query: one row per ticket (state, running deadlines,
//! deadlines met and missed, the platform's automatic outcomes, handling time), the ticket
//! list in due-time order with cursor paging, and the SLA dashboard's figures.
//!
//! ```text
//! store subscription ──► follow::apply_record ──► Views::apply (pure fold) ──► list / sla
//!                                     └── checkpoint file (rows + position + hash link)
//! ```
//!
//! [`Views`] is a pure fold of event envelopes (deadlines through the same rule packs and
//! [`aftersales_timers::Timers`] as the scheduler, at platform time); [`SharedViews`] is the
//! shell: it loads the checkpoint, catches up, follows the log and checkpoints now and then,
//! so a restart resumes where it stopped and `replay` rebuilds the same rows (same
//! [`Views::digest`]). The choices (which time the dashboard's range selects, what counts
//! as met, handling time) are in `docs/HTTP.md`.
//!
//! This crate must never write to the event store, decide anything, read the wall clock
//! (`now` is an argument of every query), or keep personal data in a row (no customer id,
//! no notes: rows are served to every read token).

mod error;
mod follow;
mod model;

pub use error::ViewsError;
pub use follow::{apply_record, catch_up, load, save, Loaded, SharedViews};
pub use model::{
    alert_of, Alert, AlertKind, Cursor, Handling, ListPage, ListQuery, NeedsHistory, OpenDeadline,
    Position, Sla, SlaQuery, TicketRow, Views, ALERTS_KEPT, HANDLING_BAR_SECS,
};
