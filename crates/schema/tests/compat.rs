//! Reading bytes this build did not write itself: from newer writers (unknown fields, unknown
//! bodies, newer schema versions, unknown enum values) and from broken ones (missing or
//! invalid fields, garbage). Every case is a typed error or a clean decode, never a panic.

mod common;

use aftersales_schema::pb::{self, event_envelope::Body};
use aftersales_schema::{
    decode, decode_delimited, decode_stored, encode, encode_delimited, from_pb, EventEnvelope,
    SchemaError, CURRENT_SCHEMA_VERSION,
};
use aftersales_ticket::{Actor, Event, InvalidValue, Money};
use proptest::prelude::*;
use prost::Message;

// --- raw protobuf writing, by hand, as a newer writer would produce it ---

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u64, wire_type: u64, out: &mut Vec<u8>) {
    varint((field << 3) | wire_type, out);
}

fn len_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    key(field, LEN, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn refunded() -> EventEnvelope {
    common::fixture_envelopes()
        .into_iter()
        .find(|e| {
            matches!(
                &e.event,
                Event::Refunded {
                    customer_consent: Some(_),
                    ..
                }
            )
        })
        .unwrap()
}

fn refunded_pb() -> pb::EventEnvelope {
    refunded().to_pb()
}

fn with_body(body: Body) -> pb::EventEnvelope {
    pb::EventEnvelope {
        body: Some(body),
        ..refunded_pb()
    }
}

fn refunded_body(edit: impl FnOnce(&mut pb::Refunded)) -> pb::EventEnvelope {
    let mut env = refunded_pb();
    match &mut env.body {
        Some(Body::Refunded(r)) => edit(r),
        _ => unreachable!(),
    }
    env
}

// --- forward compatibility ---

#[test]
fn unknown_envelope_fields_are_skipped() {
    let original = refunded();
    let mut bytes = encode(&original);
    key(99, VARINT, &mut bytes);
    varint(42, &mut bytes);
    len_field(1000, b"a header a newer writer added", &mut bytes);
    key(17, FIXED64, &mut bytes);
    bytes.extend_from_slice(&7u64.to_le_bytes());
    // A nested message in an unknown field, too.
    len_field(
        18,
        &pb::Instant {
            unix_seconds: 1,
            nanos: 2,
            offset_seconds: 3,
        }
        .encode_to_vec(),
        &mut bytes,
    );

    let decoded = decode(&bytes).expect("unknown fields must not stop a reader");
    assert_eq!(decoded, original);
    assert_eq!(common::json(&decoded), common::json(&original));
}

#[test]
fn unknown_fields_inside_a_body_are_skipped() {
    let original = refunded();
    let mut env = original.to_pb();
    let Some(Body::Refunded(body)) = env.body.take() else {
        unreachable!()
    };
    let mut body_bytes = body.encode_to_vec();
    len_field(
        7,
        "a field added to refunded later".as_bytes(),
        &mut body_bytes,
    );
    key(8, VARINT, &mut body_bytes);
    varint(3, &mut body_bytes);

    let mut bytes = env.encode_to_vec();
    len_field(28, &body_bytes, &mut bytes); // 28 = EventEnvelope.refunded

    let decoded = decode(&bytes).expect("unknown body fields must not stop a reader");
    assert_eq!(common::json(&decoded), common::json(&original));
}

#[test]
fn an_unknown_body_is_a_typed_error_naming_the_event_type() {
    let mut env = refunded_pb();
    env.body = None;
    env.event_type = "gift_card_issued".into();
    let mut bytes = env.encode_to_vec();
    let future_body = pb::Annotated {
        note: "whatever it holds".into(),
        by: 1,
    }
    .encode_to_vec();
    len_field(60, &future_body, &mut bytes);

    let err = decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        SchemaError::UnknownEventType {
            event_type: "gift_card_issued".into()
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("gift_card_issued") && message.contains("upgrade"),
        "{message}"
    );
}

#[test]
fn a_newer_schema_version_is_refused_with_a_clear_error() {
    let mut env = refunded_pb();
    env.schema_version = CURRENT_SCHEMA_VERSION + 1;
    let err = decode(&env.encode_to_vec()).unwrap_err();
    assert_eq!(
        err,
        SchemaError::FromNewerWriter {
            event_type: "refunded".into(),
            found: CURRENT_SCHEMA_VERSION + 1,
            known: CURRENT_SCHEMA_VERSION,
        }
    );
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn an_unknown_enum_value_is_an_error_not_a_default() {
    let env = refunded_body(|r| r.by = 99);
    assert_eq!(
        decode(&env.encode_to_vec()),
        Err(SchemaError::UnknownEnumValue {
            field: "refunded.by",
            enum_name: "ACTOR",
            value: 99
        })
    );
    let env = refunded_body(|r| r.by = -1);
    assert!(matches!(
        decode(&env.encode_to_vec()),
        Err(SchemaError::UnknownEnumValue { value: -1, .. })
    ));
}

#[test]
fn an_unspecified_enum_is_an_error_not_a_default() {
    let env = refunded_body(|r| r.by = 0);
    assert_eq!(
        decode(&env.encode_to_vec()),
        Err(SchemaError::UnspecifiedEnum {
            field: "refunded.by",
            enum_name: "ACTOR"
        })
    );
    let mut env = with_body(Body::Approved(pb::Approved {
        return_method: 0,
        by: pb::Actor::Merchant as i32,
        rule_id: None,
    }));
    env.event_type = "approved".into();
    assert_eq!(
        decode(&env.encode_to_vec()),
        Err(SchemaError::UnspecifiedEnum {
            field: "approved.return_method",
            enum_name: "RETURN_METHOD"
        })
    );
}

// --- broken writers ---

fn err_of(env: pb::EventEnvelope) -> SchemaError {
    // Both entry points agree: the bytes and the prost form.
    let from_bytes = decode(&env.encode_to_vec()).unwrap_err();
    assert_eq!(from_pb(env).unwrap_err(), from_bytes);
    from_bytes
}

#[test]
fn header_defects_are_typed_errors() {
    let mut env = refunded_pb();
    env.schema_version = 0;
    assert_eq!(err_of(env), SchemaError::MissingSchemaVersion);

    let mut env = refunded_pb();
    env.event_id.clear();
    assert_eq!(err_of(env), SchemaError::MissingField { field: "event_id" });

    let mut env = refunded_pb();
    env.event_id.truncate(15);
    assert_eq!(
        err_of(env),
        SchemaError::InvalidUuid {
            field: "event_id",
            len: 15
        }
    );

    let mut env = refunded_pb();
    env.causation_id = Some(vec![1; 17]);
    assert_eq!(
        err_of(env),
        SchemaError::InvalidUuid {
            field: "causation_id",
            len: 17
        }
    );

    let mut env = refunded_pb();
    env.ticket_id.clear();
    assert_eq!(
        err_of(env),
        SchemaError::MissingField { field: "ticket_id" }
    );

    let mut env = refunded_pb();
    env.ticket_id = "jd 1001".into();
    assert_eq!(
        err_of(env),
        SchemaError::InvalidValue {
            field: "ticket_id",
            problem: InvalidValue::TicketId("jd 1001".into())
        }
    );

    let mut env = refunded_pb();
    env.occurred_at = None;
    assert_eq!(
        err_of(env),
        SchemaError::MissingField {
            field: "occurred_at"
        }
    );

    let mut env = refunded_pb();
    env.body = None;
    assert_eq!(err_of(env), SchemaError::MissingField { field: "body" });

    let mut env = refunded_pb();
    env.body = None;
    env.event_type.clear();
    assert_eq!(err_of(env), SchemaError::MissingField { field: "body" });

    let mut env = refunded_pb();
    env.event_type = "approved".into();
    assert_eq!(
        err_of(env),
        SchemaError::EventTypeMismatch {
            declared: "approved".into(),
            body: "refunded"
        }
    );
}

#[test]
fn invalid_instants_are_typed_errors() {
    for (unix_seconds, nanos, offset_seconds) in [
        (0, 0, 86_400),
        (0, 0, -86_400),
        (0, 0, i32::MIN),
        (0, 2_000_000_000, 0),
        (1, 1_500_000_000, 0), // a leap second is only possible at :59
        (i64::MAX, 0, 0),
        (i64::MIN, 0, 0),
    ] {
        let mut env = refunded_pb();
        env.occurred_at = Some(pb::Instant {
            unix_seconds,
            nanos,
            offset_seconds,
        });
        assert_eq!(
            err_of(env),
            SchemaError::InvalidInstant {
                field: "occurred_at",
                unix_seconds,
                nanos,
                offset_seconds
            }
        );
    }
    let mut env = refunded_pb();
    env.recorded_at = Some(pb::Instant {
        unix_seconds: 0,
        nanos: 0,
        offset_seconds: 90_000,
    });
    assert!(matches!(
        err_of(env),
        SchemaError::InvalidInstant {
            field: "recorded_at",
            ..
        }
    ));
}

#[test]
fn body_defects_are_typed_errors() {
    assert_eq!(
        err_of(refunded_body(|r| r.customer_consent = Some(String::new()))),
        SchemaError::InvalidValue {
            field: "refunded.customer_consent",
            problem: InvalidValue::Note
        }
    );
    assert_eq!(
        err_of(refunded_body(|r| r.rule_id = Some("bad\nrule".into()))),
        SchemaError::InvalidValue {
            field: "refunded.rule_id",
            problem: InvalidValue::Identifier { what: "rule id" }
        }
    );

    let mut env = with_body(Body::Rejected(pb::Rejected {
        reason: String::new(),
    }));
    env.event_type = "rejected".into();
    assert_eq!(
        err_of(env),
        SchemaError::MissingField {
            field: "rejected.reason"
        }
    );

    let mut env = with_body(Body::Rejected(pb::Rejected {
        reason: " \n\t ".into(),
    }));
    env.event_type = "rejected".into();
    assert_eq!(
        err_of(env),
        SchemaError::InvalidValue {
            field: "rejected.reason",
            problem: InvalidValue::Note
        }
    );

    let mut env = with_body(Body::DeadlineExpired(pb::DeadlineExpired {
        deadline: None,
    }));
    env.event_type = "deadline_expired".into();
    assert_eq!(
        err_of(env),
        SchemaError::MissingField {
            field: "deadline_expired.deadline"
        }
    );

    let mut env = with_body(Body::DeadlineExpired(pb::DeadlineExpired {
        deadline: Some(pb::Deadline {
            kind: 15,
            due_at: None,
            rule_id: "r".into(),
        }),
    }));
    env.event_type = "deadline_expired".into();
    assert!(matches!(
        err_of(env),
        SchemaError::UnknownEnumValue {
            field: "deadline_expired.deadline.kind",
            value: 15,
            ..
        }
    ));

    // A warning's deadline is checked the same way, under its own field names.
    let warned = |deadline: Option<pb::Deadline>| {
        let mut env = with_body(Body::DeadlineWarned(pb::DeadlineWarned { deadline }));
        env.event_type = "deadline_warned".into();
        err_of(env)
    };
    let valid = || pb::Deadline {
        kind: pb::DeadlineKind::Review as i32,
        due_at: Some(pb::Instant {
            unix_seconds: 1_795_000_000,
            nanos: 0,
            offset_seconds: 8 * 3600,
        }),
        rule_id: "jd.review".into(),
    };
    assert_eq!(
        warned(None),
        SchemaError::MissingField {
            field: "deadline_warned.deadline"
        }
    );
    assert!(matches!(
        warned(Some(pb::Deadline {
            kind: 15,
            ..valid()
        })),
        SchemaError::UnknownEnumValue {
            field: "deadline_warned.deadline.kind",
            value: 15,
            ..
        }
    ));
    assert!(matches!(
        warned(Some(pb::Deadline { kind: 0, ..valid() })),
        SchemaError::UnspecifiedEnum {
            field: "deadline_warned.deadline.kind",
            ..
        }
    ));
    assert_eq!(
        warned(Some(pb::Deadline {
            due_at: None,
            ..valid()
        })),
        SchemaError::MissingField {
            field: "deadline_warned.deadline.due_at"
        }
    );
    assert!(matches!(
        warned(Some(pb::Deadline {
            rule_id: String::new(),
            ..valid()
        })),
        SchemaError::MissingField {
            field: "deadline_warned.deadline.rule_id"
        }
    ));
    // The same deadline as a warning and as an expiry: only the body differs.
    let mut env = with_body(Body::DeadlineWarned(pb::DeadlineWarned {
        deadline: Some(valid()),
    }));
    env.event_type = "deadline_warned".into();
    assert!(matches!(
        from_pb(env).map(|e| e.event),
        Ok(Event::DeadlineWarned { deadline }) if deadline.rule_id.as_str() == "jd.review"
    ));
    // A body that disagrees with its type is refused.
    let mut env = with_body(Body::DeadlineWarned(pb::DeadlineWarned {
        deadline: Some(valid()),
    }));
    env.event_type = "deadline_expired".into();
    assert!(matches!(err_of(env), SchemaError::EventTypeMismatch { .. }));

    let opened = common::fixture_envelopes().remove(0).to_pb();
    let edit = |f: fn(&mut pb::Opened)| {
        let mut env = opened.clone();
        let Some(Body::Opened(o)) = &mut env.body else {
            unreachable!()
        };
        f(o);
        err_of(env)
    };
    assert_eq!(
        edit(|o| o.opened_at = None),
        SchemaError::MissingField {
            field: "opened.opened_at"
        }
    );
    assert_eq!(
        edit(|o| o.order_id.clear()),
        SchemaError::MissingField {
            field: "opened.order_id"
        }
    );
    assert!(matches!(
        edit(|o| o.sku = "bad\nsku".into()),
        SchemaError::InvalidValue {
            field: "opened.sku",
            ..
        }
    ));
    assert_eq!(
        edit(|o| o.platform = "Big Shop".into()),
        SchemaError::InvalidValue {
            field: "opened.platform",
            problem: InvalidValue::Platform("Big Shop".into())
        }
    );
    assert!(matches!(
        edit(|o| o.service_type = 6),
        SchemaError::UnknownEnumValue {
            field: "opened.service_type",
            value: 6,
            ..
        }
    ));
    assert!(matches!(
        edit(|o| o.reason = 0),
        SchemaError::UnspecifiedEnum {
            field: "opened.reason",
            ..
        }
    ));
}

#[test]
fn garbage_is_a_malformed_error() {
    for bytes in [&[0xff_u8; 12][..], &[0x0a, 0x10, 1, 2], &[0x08], &[0x07]] {
        assert!(
            matches!(decode(bytes), Err(SchemaError::Malformed(_))),
            "{bytes:?}: {:?}",
            decode(bytes)
        );
    }
    // Empty bytes are a valid (empty) message, missing everything.
    assert_eq!(decode(&[]), Err(SchemaError::MissingSchemaVersion));
}

#[test]
fn every_truncation_of_every_fixture_envelope_fails_cleanly() {
    for envelope in common::fixture_envelopes() {
        let bytes = encode(&envelope);
        for cut in 0..bytes.len() {
            // prost writes fields in number order, so the body comes last: a cut either
            // drops it (missing body) or splits a field (malformed). Never a panic.
            assert!(
                decode(&bytes[..cut]).is_err(),
                "cut at {cut} of {}",
                envelope.event_type()
            );
        }
        assert_eq!(decode(&bytes).unwrap(), envelope);
    }
}

#[test]
fn a_stream_error_names_the_envelope() {
    let envelopes = common::fixture_envelopes();
    let mut bytes = encode_delimited(&envelopes[..2]);
    let mut bad = envelopes[2].to_pb();
    bad.schema_version = 0;
    bad.encode_length_delimited(&mut bytes).unwrap();
    assert_eq!(
        decode_delimited(&bytes),
        Err(SchemaError::InStream {
            index: 2,
            error: Box::new(SchemaError::MissingSchemaVersion)
        })
    );
    // A truncated stream.
    let bytes = encode_delimited(&envelopes[..3]);
    assert!(matches!(
        decode_delimited(&bytes[..bytes.len() - 1]),
        Err(SchemaError::InStream { index: 2, .. })
    ));
}

// --- the store's recorded_at ---

#[test]
fn the_store_payload_has_no_recorded_at_and_the_reader_fills_it() {
    let mut envelope = refunded();
    envelope.recorded_at = None;
    let payload = encode(&envelope);
    assert_eq!(
        pb::EventEnvelope::decode(&payload[..]).unwrap().recorded_at,
        None
    );
    assert_eq!(decode(&payload).unwrap().recorded_at, None);

    let committed = common::utc("2026-11-20T12:00:05.25Z");
    let read = decode_stored(&payload, committed).unwrap();
    assert_eq!(read.recorded_at, Some(committed));

    // The store's record wins over a value a payload happens to carry.
    envelope.recorded_at = Some(common::utc("2000-01-01T00:00:00Z"));
    let read = decode_stored(&encode(&envelope), committed).unwrap();
    assert_eq!(read.recorded_at, Some(committed));
}

#[test]
fn amounts_keep_every_fen() {
    let env = refunded_body(|r| r.amount = u64::MAX);
    let Event::Refunded { amount, by, .. } = decode(&env.encode_to_vec()).unwrap().event else {
        unreachable!()
    };
    assert_eq!(amount, Money::from_cents(u64::MAX));
    assert_eq!(by, Actor::Platform);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_delimited(&bytes);
    }

    #[test]
    fn corrupted_envelopes_never_panic(
        which in 0usize..48,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let envelopes = common::fixture_envelopes();
        let mut bytes = encode(&envelopes[which % envelopes.len()]);
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = decode(&bytes);
    }
}

#[test]
fn an_empty_sku_or_customer_id_reads_as_unknown() {
    // Optional since platform refund messages carry neither (SCHEMA.md, history).
    let mut env = common::fixture_envelopes().remove(0).to_pb();
    let Some(Body::Opened(o)) = &mut env.body else {
        unreachable!()
    };
    o.sku.clear();
    o.customer_id.clear();
    let back = from_pb(env.clone()).unwrap();
    let Event::Opened(opened) = &back.event else {
        unreachable!()
    };
    assert_eq!(
        (opened.sku.clone(), opened.customer_id.clone()),
        (None, None)
    );
    // And an unknown value is written back as the empty string, not as some placeholder.
    assert_eq!(back.to_pb(), env);
}
