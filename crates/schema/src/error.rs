//! Everything that can go wrong reading stored event bytes, as values: decoding never panics.

use aftersales_ticket::InvalidValue;

/// Why stored bytes could not become an [`EventEnvelope`](crate::EventEnvelope).
///
/// Each message says what is wrong and, where someone can act on it, what to do. Field
/// names are protobuf paths such as `refunded.customer_consent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The bytes are not a protobuf `EventEnvelope` at all.
    #[error(
        "the bytes are not a readable event envelope ({0}); the stored payload is damaged \
         or is not an aftersales ticket event"
    )]
    Malformed(#[from] prost::DecodeError),

    /// `schema_version` is 0 (unset).
    #[error(
        "the envelope has no schema_version; it was not written through aftersales-schema, \
         so it cannot be interpreted safely"
    )]
    MissingSchemaVersion,

    /// The event was written under a schema version this build does not know.
    #[error(
        "event {event_type:?} was written with schema version {found}, but this build only \
         knows versions up to {known}; upgrade this program before reading these events"
    )]
    FromNewerWriter {
        event_type: String,
        found: u32,
        known: u32,
    },

    /// The body is not one this build knows (or is absent): an event type from a newer writer.
    #[error(
        "event type {event_type:?} is not known to this build (the envelope carries no body \
         it can read); it was probably written by a newer version: upgrade this program \
         before reading these events"
    )]
    UnknownEventType { event_type: String },

    /// The envelope's `event_type` and its body disagree.
    #[error(
        "the envelope says its event type is {declared:?} but it carries a {body:?} body; \
         the writer is broken and this event needs a manual repair"
    )]
    EventTypeMismatch {
        declared: String,
        body: &'static str,
    },

    /// A field every writer must fill is absent.
    #[error("required field {field} is missing; the writer did not fill it")]
    MissingField { field: &'static str },

    /// A text field holds something the domain refuses (bad id, empty note, …).
    #[error("field {field} holds an invalid value: {problem}")]
    InvalidValue {
        field: &'static str,
        problem: InvalidValue,
    },

    /// A UUID field does not hold exactly 16 bytes.
    #[error("field {field} must hold a UUID as 16 bytes, but holds {len} bytes")]
    InvalidUuid { field: &'static str, len: usize },

    /// An `Instant` is out of range, has too many nanoseconds, or an impossible offset.
    #[error(
        "field {field} is not a valid instant (unix_seconds {unix_seconds}, nanos {nanos}, \
         offset_seconds {offset_seconds}); the seconds must be in chrono's range, the \
         nanoseconds below 10^9 (2·10^9 in a leap second) and the offset within ±86399 s"
    )]
    InvalidInstant {
        field: &'static str,
        unix_seconds: i64,
        nanos: u32,
        offset_seconds: i32,
    },

    /// An enum field holds 0 (`*_UNSPECIFIED`): the writer never set it.
    #[error("field {field} is {enum_name}_UNSPECIFIED (0); the writer did not set it")]
    UnspecifiedEnum {
        field: &'static str,
        enum_name: &'static str,
    },

    /// An enum field holds a value this build does not know.
    #[error(
        "field {field} holds {enum_name} value {value}, which this build does not know; it \
         was probably written by a newer version: upgrade this program before reading \
         these events"
    )]
    UnknownEnumValue {
        field: &'static str,
        enum_name: &'static str,
        value: i32,
    },

    /// One envelope of a length-delimited stream (an export, the fixture) failed.
    #[error("envelope number {index} (counting from 0) of the stream could not be read: {error}")]
    InStream {
        index: usize,
        error: Box<SchemaError>,
    },
}
