//! The stored form of ticket events: `aftersales_ticket::Event`s wrapped in an
//! [`EventEnvelope`] and encoded as protobuf (`proto/aftersales/ticket/v1/events.proto`), the
//! bytes the event store keeps for ever.
//!
//! This crate must never change the meaning of a stored field (a change of meaning is a new
//! field plus a `schema_version` bump and an upcaster, see `docs/SCHEMA.md` and [`upcast`]),
//! never renumber or reuse a protobuf field, and never panic on stored bytes: every defect is
//! a [`SchemaError`]. It does no I/O and reads no clock.
//!
//! ```
//! use aftersales_schema::{decode_stored, encode, EventEnvelope};
//! use aftersales_ticket::{Actor, Event, Note, TicketId};
//!
//! let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T20:00:00+08:00").unwrap();
//! let event = Event::Annotated { note: Note::parse("called the customer").unwrap(), by: Actor::Merchant };
//! let envelope = EventEnvelope::new(uuid::Uuid::nil(), TicketId::parse("jd:1001").unwrap(), at, event);
//!
//! let payload = encode(&envelope); // what the store keeps (recorded_at is None)
//! let recorded_at = chrono::DateTime::parse_from_rfc3339("2026-11-20T12:00:01Z").unwrap().to_utc();
//! let read = decode_stored(&payload, recorded_at).unwrap();
//! assert_eq!(read.event, envelope.event);
//! assert_eq!(read.occurred_at.offset().local_minus_utc(), 8 * 3600);
//! assert_eq!(read.recorded_at, Some(recorded_at));
//! ```

mod convert;
mod error;
pub mod upcast;

/// The prost types generated from `proto/aftersales/ticket/v1/events.proto` at build time.
///
/// Public for tools and upcasters that work on the raw stored form; everything else should
/// use [`EventEnvelope`].
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/aftersales.ticket.v1.rs"));
}

use aftersales_ticket::{Event, TicketId, Timestamp};
use chrono::{DateTime, Utc};
use prost::Message;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use error::SchemaError;

/// The schema version this build writes and the newest it can read. Version 1 is the
/// first; see `docs/SCHEMA.md` for when it changes.
pub const CURRENT_SCHEMA_VERSION: u32 = 1;

/// Every event type (`Event::name()`) this build can read, in the order of the `body` oneof.
pub const EVENT_TYPES: [&str; 20] = [
    "opened",
    "approved",
    "rejected",
    "customer_asked",
    "customer_responded",
    "resubmitted",
    "return_shipped",
    "goods_received",
    "refunded",
    "refunded_without_return",
    "exchanged",
    "returned_as_is",
    "repair_completed",
    "withdrawn",
    "intervention_requested",
    "dispute_closed",
    "deadline_expired",
    "lapsed",
    "annotated",
    "deadline_warned",
];

/// A ticket event with the facts about it that are not part of the event itself.
///
/// Serializes to JSON for exports (the event under `event`, tagged by `type` as the
/// ticket crate serializes it). Note that `PartialEq` on the timestamps compares instants
/// only, not offsets (chrono's rule); compare the JSON when offsets matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// The event's id, also the store's event id.
    pub event_id: Uuid,
    /// The ticket (the store's stream) the event belongs to.
    pub ticket_id: TicketId,
    /// After [`decode`]: the schema version the event was *written* with (older events have
    /// been upcast, so `event` is always in the current form). [`encode`] ignores it and
    /// always writes [`CURRENT_SCHEMA_VERSION`], because `event` can only be in the current
    /// form. [`EventEnvelope::new`] sets it to the current version.
    pub schema_version: u32,
    /// When it happened on the platform, with the platform's offset (+08:00 usually).
    pub occurred_at: Timestamp,
    /// When the store committed the event. `None` when writing (the store stamps its own
    /// record) and after [`decode`] of a store payload; [`decode_stored`] fills it from the
    /// store's record.
    #[serde(default)]
    pub recorded_at: Option<DateTime<Utc>>,
    /// The platform's message id the event came from, if any.
    #[serde(default)]
    pub source_message_id: Option<String>,
    /// The id of the event or command that caused this one, if any.
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    /// The event itself.
    pub event: Event,
}

impl EventEnvelope {
    /// An envelope for a new event at the current schema version, with no recorded time,
    /// source message or cause.
    pub fn new(event_id: Uuid, ticket_id: TicketId, occurred_at: Timestamp, event: Event) -> Self {
        Self {
            event_id,
            ticket_id,
            schema_version: CURRENT_SCHEMA_VERSION,
            occurred_at,
            recorded_at: None,
            source_message_id: None,
            causation_id: None,
            event,
        }
    }

    /// The event's snake_case type name, as stored (`Event::name()`).
    pub fn event_type(&self) -> &'static str {
        self.event.name()
    }

    /// The prost form of this envelope, as [`encode`] writes it.
    pub fn to_pb(&self) -> pb::EventEnvelope {
        convert::envelope_to_pb(self)
    }
}

/// Encodes an envelope as protobuf bytes, at [`CURRENT_SCHEMA_VERSION`].
///
/// `recorded_at` is written when it is `Some`; writers to the store leave it `None`, so the
/// store's payload does not carry it (the store's own record has the commit time).
pub fn encode(envelope: &EventEnvelope) -> Vec<u8> {
    envelope.to_pb().encode_to_vec()
}

/// Decodes protobuf bytes into an envelope: parses, upcasts an older `schema_version` to the
/// current one ([`upcast`]), and checks every field against the domain's rules.
///
/// Unknown fields (added by a newer writer) are skipped. Never panics: anything unreadable
/// is a [`SchemaError`].
pub fn decode(bytes: &[u8]) -> Result<EventEnvelope, SchemaError> {
    from_pb(pb::EventEnvelope::decode(bytes)?)
}

/// Decodes a payload read from the event store and sets `recorded_at` from the store's
/// record (the store's value wins over any in the payload).
pub fn decode_stored(
    bytes: &[u8],
    recorded_at: DateTime<Utc>,
) -> Result<EventEnvelope, SchemaError> {
    let mut envelope = decode(bytes)?;
    envelope.recorded_at = Some(recorded_at);
    Ok(envelope)
}

/// Converts a prost envelope (e.g. one a tool decoded itself) into the domain envelope, with
/// the same upcasting and checks as [`decode`].
pub fn from_pb(envelope: pb::EventEnvelope) -> Result<EventEnvelope, SchemaError> {
    let written_with = envelope.schema_version;
    let mut envelope = convert::envelope_from_pb(upcast::upcast(envelope)?)?;
    envelope.schema_version = written_with;
    Ok(envelope)
}

/// Encodes envelopes one after another, each preceded by its length as a varint (protobuf's
/// length-delimited stream, as in exports and the test fixtures).
pub fn encode_delimited<'a>(envelopes: impl IntoIterator<Item = &'a EventEnvelope>) -> Vec<u8> {
    let mut out = Vec::new();
    for envelope in envelopes {
        envelope
            .to_pb()
            .encode_length_delimited(&mut out)
            .expect("a Vec<u8> grows as needed");
    }
    out
}

/// Decodes a length-delimited stream written by [`encode_delimited`]. The error names the
/// position of the first envelope that failed.
pub fn decode_delimited(mut bytes: &[u8]) -> Result<Vec<EventEnvelope>, SchemaError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let at = |error: SchemaError| SchemaError::InStream {
            index: out.len(),
            error: Box::new(error),
        };
        let envelope =
            pb::EventEnvelope::decode_length_delimited(&mut bytes).map_err(|e| at(e.into()))?;
        out.push(from_pb(envelope).map_err(at)?);
    }
    Ok(out)
}
