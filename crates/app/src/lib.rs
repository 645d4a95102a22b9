//! The command side of the service, the imperative shell around the ticket aggregate:
//! load a ticket's events from the store, ask `decide`, append what it decided with the
//! version it saw, retry on a concurrent change.
//!
//! Exactly once on top of at-least-once delivery: a command that carries an idempotency
//! key (the platform and its message id, or a deadline's identity) gets event ids derived
//! from that key (uuid v5), and a key already stored is answered with the stored events
//! *before* deciding again, so a redelivered message is a no-op and never a rejection.
//!
//! This crate must never hold rules (they live in `aftersales-ticket`), read the wall clock
//! (the store stamps records with its injected clock; platform time comes with the command),
//! or log notes, names, phone numbers or addresses.

mod handler;
mod order_lines;

pub use handler::{
    event_id, read as read_record, HandleError, Handled, RulePackChooser, Stored, Submission,
    Tickets,
};
pub use order_lines::{OrderLineIndex, OrderLineRebuild};
