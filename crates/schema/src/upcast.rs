//! Upcasters: how an event stored under an older `schema_version` is read as the current one.
//!
//! Field additions need no upcaster (protobuf reads old bytes with the new field absent, and
//! absence means "unknown" in the domain). An upcaster is for a change of *meaning*: the
//! same bytes must be read differently from some version on. Then:
//!
//! 1. bump [`CURRENT_SCHEMA_VERSION`](crate::CURRENT_SCHEMA_VERSION) (say to 2);
//! 2. keep the old field in the .proto (renamed `legacy_…`, never renumbered or reused) and
//!    add the field with the new meaning under a new number;
//! 3. add an [`Upcaster`] for each event type whose meaning changed, with `from_version: 1`,
//!    that moves the old form into the new one on the prost types;
//! 4. add a frozen fixture `tests/fixtures/v2/` and keep `v1/` passing.
//!
//! Upcasters run on the decoded prost form ([`crate::pb::EventEnvelope`]), one version
//! step at a time, before the conversion to domain types, so each is a small pure function
//! and a chain v1 → v2 → v3 composes by itself. Event types without an upcaster for a step
//! pass through it unchanged.

use crate::pb;
use crate::SchemaError;

/// One step of schema evolution for one event type: reads the prost form written under
/// `from_version` and returns the form of `from_version + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    /// The snake_case event type (the envelope's `event_type`) this step applies to.
    pub event_type: &'static str,
    /// The version it upgrades from; the result is read as `from_version + 1`.
    pub from_version: u32,
    /// The conversion. It must not touch `schema_version` (the runner sets it) and must
    /// return an error, never panic, on input it cannot convert.
    pub apply: fn(pb::EventEnvelope) -> Result<pb::EventEnvelope, SchemaError>,
}

/// The upcasters of this build. Empty: version 1 is the first schema, nothing to upgrade.
pub const UPCASTERS: &[Upcaster] = &[];

/// Brings a decoded envelope to [`CURRENT_SCHEMA_VERSION`](crate::CURRENT_SCHEMA_VERSION)
/// with [`UPCASTERS`].
pub fn upcast(envelope: pb::EventEnvelope) -> Result<pb::EventEnvelope, SchemaError> {
    upcast_with(envelope, crate::CURRENT_SCHEMA_VERSION, UPCASTERS)
}

/// Brings a decoded envelope to version `current` with the given upcasters, one version
/// step at a time, choosing each step's upcaster by (event type, version).
///
/// Errors: version 0 is [`SchemaError::MissingSchemaVersion`]; a version above `current`
/// is [`SchemaError::FromNewerWriter`]; an upcaster's own error is passed on.
pub fn upcast_with(
    mut envelope: pb::EventEnvelope,
    current: u32,
    upcasters: &[Upcaster],
) -> Result<pb::EventEnvelope, SchemaError> {
    if envelope.schema_version == 0 {
        return Err(SchemaError::MissingSchemaVersion);
    }
    if envelope.schema_version > current {
        return Err(SchemaError::FromNewerWriter {
            event_type: envelope.event_type,
            found: envelope.schema_version,
            known: current,
        });
    }
    while envelope.schema_version < current {
        let version = envelope.schema_version;
        if let Some(step) = upcasters
            .iter()
            .find(|u| u.from_version == version && u.event_type == envelope.event_type)
        {
            envelope = (step.apply)(envelope)?;
        }
        envelope.schema_version = version + 1;
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::event_envelope::Body;

    fn annotated(version: u32, note: &str) -> pb::EventEnvelope {
        pb::EventEnvelope {
            event_type: "annotated".into(),
            schema_version: version,
            body: Some(Body::Annotated(pb::Annotated {
                note: note.into(),
                by: pb::Actor::Merchant as i32,
            })),
            ..Default::default()
        }
    }

    fn note_of(e: &pb::EventEnvelope) -> &str {
        match &e.body {
            Some(Body::Annotated(a)) => &a.note,
            other => panic!("not an annotation: {other:?}"),
        }
    }

    // Pretend schema history: v1 → v2 prefixed notes, v2 → v3 upper-cased them.
    const PRETEND: &[Upcaster] = &[
        Upcaster {
            event_type: "annotated",
            from_version: 2,
            apply: |mut e| {
                if let Some(Body::Annotated(a)) = &mut e.body {
                    a.note = a.note.to_uppercase();
                }
                Ok(e)
            },
        },
        Upcaster {
            event_type: "annotated",
            from_version: 1,
            apply: |mut e| {
                if let Some(Body::Annotated(a)) = &mut e.body {
                    a.note = format!("v1: {}", a.note);
                }
                Ok(e)
            },
        },
        Upcaster {
            event_type: "lapsed",
            from_version: 1,
            apply: |_| Err(SchemaError::MissingField { field: "never" }),
        },
    ];

    #[test]
    fn steps_chain_in_version_order_whatever_the_table_order() {
        let up = upcast_with(annotated(1, "hello"), 3, PRETEND).unwrap();
        assert_eq!(up.schema_version, 3);
        assert_eq!(note_of(&up), "V1: HELLO");

        let up = upcast_with(annotated(2, "hello"), 3, PRETEND).unwrap();
        assert_eq!(note_of(&up), "HELLO");

        let up = upcast_with(annotated(3, "hello"), 3, PRETEND).unwrap();
        assert_eq!(note_of(&up), "hello");
    }

    #[test]
    fn other_event_types_pass_through_and_errors_propagate() {
        let mut e = annotated(1, "x");
        e.event_type = "rejected".into();
        assert_eq!(upcast_with(e, 3, PRETEND).unwrap().schema_version, 3);

        let mut e = annotated(1, "x");
        e.event_type = "lapsed".into();
        assert_eq!(
            upcast_with(e, 3, PRETEND),
            Err(SchemaError::MissingField { field: "never" })
        );
    }

    #[test]
    fn newer_and_unset_versions_are_refused() {
        assert_eq!(
            upcast_with(annotated(4, "x"), 3, PRETEND),
            Err(SchemaError::FromNewerWriter {
                event_type: "annotated".into(),
                found: 4,
                known: 3
            })
        );
        assert_eq!(
            upcast_with(annotated(0, "x"), 3, PRETEND),
            Err(SchemaError::MissingSchemaVersion)
        );
    }

    #[test]
    fn this_build_has_no_upcaster_at_or_above_its_version() {
        for u in UPCASTERS {
            assert!((1..crate::CURRENT_SCHEMA_VERSION).contains(&u.from_version));
            assert!(crate::EVENT_TYPES.contains(&u.event_type));
        }
    }
}
