//! What can stop the scheduler, phrased so an operator knows what to do next.
//!
//! Each message includes the underlying error's text, so a log line or a CLI error is
//! complete on its own; the underlying error is therefore not also chained as a `source`
//! (it would be printed twice).

use aftersales_app::HandleError;
use aftersales_schema::SchemaError;
use aftersales_store::StoreError;
use aftersales_ticket::{RuleId, TicketId};

/// An error from building the deadline index or firing deadlines.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The event store failed while the log was read.
    #[error("reading the event log for the deadline index failed: {0}")]
    Store(StoreError),

    /// A stored event cannot be decoded (the benchmark's decoding scan).
    #[error(
        "the event at position {position} cannot be read ({error}): run `aftersales verify`, \
         and upgrade the program if a newer version wrote it"
    )]
    Unreadable { position: u64, error: SchemaError },

    /// The event store failed while a deadline fired. The deadline stays armed.
    #[error(
        "firing deadline {rule} of ticket {ticket} failed: {error}; it stays armed and is \
         tried again on the next round"
    )]
    Fire {
        ticket: TicketId,
        rule: RuleId,
        error: Box<HandleError>,
    },

    /// The benchmark could not set up or run one of its cases.
    #[error("the benchmark could not {action}: {reason}")]
    Bench {
        action: &'static str,
        reason: String,
    },
}

impl From<StoreError> for SchedulerError {
    fn from(e: StoreError) -> Self {
        SchedulerError::Store(e)
    }
}
