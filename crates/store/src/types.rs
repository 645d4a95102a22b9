//! The vocabulary of the store: streams, versions, positions and events.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;

/// A place in the global log. The first event is at position 1; position 0 means
/// "before the first event" (an empty store has head position 0).
pub type Position = u64;

/// A place in one stream. The first event of a stream has version 1; version 0 means
/// "the stream has no events yet".
pub type Version = u64;

/// The longest stream id we accept, in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 200;
/// The longest event type we accept, in bytes.
pub const MAX_EVENT_TYPE_BYTES: usize = 200;
/// The largest payload we accept, in bytes. Larger values would become separate blob
/// files inside sled and slow every flush; events are facts, not attachments.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// The name of one stream (one ticket): non-empty, at most [`MAX_STREAM_ID_BYTES`] bytes.
/// Shared, not copied, when cloned: the writer keeps a stream's name in its cache, its
/// list of changed streams and the index overlay (copying it was 4 % of the samples of
/// one profile of the ingest).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Validates `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        if id.is_empty() {
            return Err(StoreError::InvalidStreamId {
                reason: "it is empty".to_string(),
            });
        }
        if id.len() > MAX_STREAM_ID_BYTES {
            return Err(StoreError::InvalidStreamId {
                reason: format!(
                    "it is {} bytes long and the limit is {MAX_STREAM_ID_BYTES}",
                    id.len()
                ),
            });
        }
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = StoreError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What the appender believes the stream's version is (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not have any events yet.
    NoStream,
    /// The stream's current version must be exactly this (its last event's version).
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream (version 0)"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// An event to append. The id makes appends idempotent: an id that is already stored is
/// never written twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Unique id chosen by the caller (a redelivery reuses it).
    pub id: Uuid,
    /// Non-empty name of the kind of fact, at most [`MAX_EVENT_TYPE_BYTES`] bytes.
    pub event_type: String,
    /// Opaque bytes; the store never looks inside.
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// Builds an event.
    pub fn new(id: Uuid, event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id,
            event_type: event_type.into(),
            payload: payload.into(),
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The id given at append.
    pub id: Uuid,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version in the stream (1-based, gapless per stream).
    pub version: Version,
    /// Its position in the global log (1-based, gapless).
    pub position: Position,
    /// Kind of fact.
    pub event_type: String,
    /// When the store accepted it; non-decreasing along the global log.
    pub recorded_at: DateTime<Utc>,
    /// Opaque bytes given at append.
    pub payload: Vec<u8>,
    /// Hash-chain link: blake3 of this record's canonical bytes, which include the
    /// previous record's hash.
    pub hash: [u8; 32],
}

/// One append of [`crate::Store::append_many`]: what [`crate::Store::append`] takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPosition {
    /// The event's id.
    pub id: Uuid,
    /// Its version in the stream.
    pub version: Version,
    /// Its position in the global log.
    pub position: Position,
}

/// The outcome of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// One entry per event given, in the same order.
    pub events: Vec<EventPosition>,
    /// The highest version among `events`: for a fresh append, the stream's version right
    /// after it.
    pub stream_version: Version,
    /// True when every id was already stored in this stream: nothing was written and
    /// `events` are the original positions (a redelivery).
    pub deduplicated: bool,
}

impl AppendResult {
    /// Position of the first event given.
    pub fn first_position(&self) -> Position {
        self.events.first().map_or(0, |e| e.position)
    }

    /// Position of the last event given.
    pub fn last_position(&self) -> Position {
        self.events.last().map_or(0, |e| e.position)
    }

    /// Highest position among the events (what must be durable before acknowledging).
    pub(crate) fn max_position(&self) -> Position {
        self.events.iter().map(|e| e.position).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_validated() {
        assert!(StreamId::new("").is_err());
        assert!(StreamId::new("x".repeat(201)).is_err());
        assert!(StreamId::new("x".repeat(200)).is_ok());
        assert_eq!(StreamId::new("ticket-1").unwrap().as_str(), "ticket-1");
    }

    #[test]
    fn expected_version_matching() {
        assert!(ExpectedVersion::Any.matches(7));
        assert!(ExpectedVersion::NoStream.matches(0));
        assert!(!ExpectedVersion::NoStream.matches(1));
        assert!(ExpectedVersion::Exact(3).matches(3));
        assert!(!ExpectedVersion::Exact(3).matches(4));
    }
}
