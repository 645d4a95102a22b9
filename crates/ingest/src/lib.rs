//! The front door: platform webhooks published to NATS JetStream become ticket commands,
//! exactly once over at-least-once delivery (event ids derive from the platform message
//! id), and a message that cannot be used goes to a dead-letter stream with its reason.
//!
//! A message is acknowledged only after its events are durably appended; it is parked
//! (negatively acknowledged with a delay) while its ticket does not accept it yet, and
//! dead-lettered once it never will. [`process::apply`] is the same path for the HTTP
//! webhook endpoint and `import`.
//!
//! This crate must never decide (rules live in `aftersales-ticket`), parse platform formats
//! (that is `aftersales-adapters`), drop a message without a dead letter, or log payloads
//! (they hold personal data).

pub mod bench;
pub mod config;
pub mod deadletter;
pub mod process;
mod subscriber;

pub use config::{Auth, IngestConfig, Tls};
pub use process::{apply, apply_messages, verdict, Limits, Outcome, Reason, Verdict};
pub use subscriber::{platform_of_subject, Ingest, PartitionDuty, Stats};

/// Why the ingest could not run.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("NATS: {0}")]
    Nats(String),
}
