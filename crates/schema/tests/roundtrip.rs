//! encode → decode is the identity, for every variant and for arbitrary values, offsets
//! included (compared through JSON, because chrono's `PartialEq` ignores offsets).

mod common;

use aftersales_schema::{
    decode, decode_delimited, encode, encode_delimited, EventEnvelope, CURRENT_SCHEMA_VERSION,
    EVENT_TYPES,
};
use aftersales_ticket::{
    Actor, CustomerId, Deadline, DeadlineKind, Event, ExchangeMethod, Money, Note, Opened, OrderId,
    OrderLineId, Platform, PlatformTicketId, Reason, ReturnMethod, RuleId, RulePackId, ServiceType,
    Sku, TicketId, Timestamp, Waybill,
};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use proptest::prelude::*;
use uuid::Uuid;

fn assert_round_trip(envelope: &EventEnvelope) {
    let decoded = decode(&encode(envelope))
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", envelope.event_type()));
    assert_eq!(&decoded, envelope);
    assert_eq!(common::json(&decoded), common::json(envelope));
}

#[test]
fn every_fixture_envelope_round_trips() {
    let envelopes = common::fixture_envelopes();
    for envelope in &envelopes {
        assert_round_trip(envelope);
    }
    let names: Vec<_> = envelopes.iter().map(EventEnvelope::event_type).collect();
    for name in EVENT_TYPES {
        assert!(names.contains(&name), "no {name} envelope");
    }
    let decoded = decode_delimited(&encode_delimited(&envelopes)).unwrap();
    assert_eq!(common::json(&decoded), common::json(&envelopes));
}

#[test]
fn event_type_names_match_the_domain() {
    for envelope in common::fixture_envelopes() {
        assert!(EVENT_TYPES.contains(&envelope.event.name()));
        assert_eq!(envelope.to_pb().event_type, envelope.event.name());
        assert_eq!(common::json(&envelope.event)["type"], envelope.event.name());
    }
}

#[test]
fn a_leap_second_round_trips() {
    let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
        .unwrap()
        .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
        .unwrap()
        .and_utc()
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap());
    let mut envelope = common::fixture_envelopes().remove(0);
    envelope.occurred_at = leap;
    let decoded = decode(&encode(&envelope)).unwrap();
    assert_eq!(decoded.occurred_at.timestamp_subsec_nanos(), 1_500_000_000);
    assert_eq!(decoded.occurred_at.to_rfc3339(), leap.to_rfc3339());
}

#[test]
fn encode_always_writes_the_current_schema_version() {
    let mut envelope = common::fixture_envelopes().remove(3);
    envelope.schema_version = 0;
    assert_eq!(envelope.to_pb().schema_version, CURRENT_SCHEMA_VERSION);
    assert_eq!(
        decode(&encode(&envelope)).unwrap().schema_version,
        CURRENT_SCHEMA_VERSION
    );
}

// --- strategies for arbitrary domain values ---

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // Years 1 to 9999, any nanosecond, any offset chrono accepts.
    (
        -62_135_596_800i64..253_402_300_800,
        0u32..1_000_000_000,
        -86_399i32..=86_399,
    )
        .prop_map(|(secs, nanos, offset)| {
            DateTime::from_timestamp(secs, nanos)
                .unwrap()
                .with_timezone(&FixedOffset::east_opt(offset).unwrap())
        })
}

fn china_timestamp() -> impl Strategy<Value = Timestamp> {
    (1_500_000_000i64..2_000_000_000).prop_map(|secs| {
        DateTime::from_timestamp(secs, 0)
            .unwrap()
            .with_timezone(&aftersales_ticket::china_offset())
    })
}

fn utc_time() -> impl Strategy<Value = DateTime<Utc>> {
    timestamp().prop_map(|t| t.with_timezone(&Utc))
}

fn ident<T: std::fmt::Debug>(
    parse: fn(&str) -> Result<T, aftersales_ticket::InvalidValue>,
) -> impl Strategy<Value = T> {
    "[^\\p{Cc}]{1,40}".prop_filter_map("valid identifier", move |s| parse(&s).ok())
}

fn note() -> impl Strategy<Value = Note> {
    "\\PC{1,60}".prop_filter_map("a note with text", |s| Note::parse(&s).ok())
}

fn ticket_id() -> impl Strategy<Value = TicketId> {
    "[A-Za-z0-9._:-]{1,64}".prop_map(|s| TicketId::parse(&s).unwrap())
}

fn platform() -> impl Strategy<Value = Platform> {
    prop_oneof![
        Just(Platform::Jd),
        Just(Platform::Tmall),
        Just(Platform::Pdd),
        Just(Platform::Kuaishou),
        Just(Platform::Douyin),
        "[a-z0-9_]{1,32}".prop_map(|s| s.parse::<Platform>().unwrap()),
    ]
}

fn money() -> impl Strategy<Value = Money> {
    prop_oneof![Just(Money::ZERO), any::<u64>().prop_map(Money::from_cents)]
}

fn actor() -> impl Strategy<Value = Actor> {
    prop::sample::select(vec![Actor::Merchant, Actor::Customer, Actor::Platform])
}

fn opened() -> impl Strategy<Value = Opened> {
    (
        (
            ticket_id(),
            platform(),
            ident(PlatformTicketId::parse),
            ident(OrderId::parse),
            ident(OrderLineId::parse),
        ),
        (
            prop::option::of(ident(Sku::parse)),
            money(),
            money(),
            prop::option::of(ident(CustomerId::parse)),
        ),
        (
            prop::sample::select(ServiceType::ALL.to_vec()),
            prop::sample::select(vec![
                Reason::SevenDayNoReason,
                Reason::QualityProblem,
                Reason::NotAsDescribed,
                Reason::WrongOrMissingItem,
                Reason::DamagedInTransit,
                Reason::CancelBeforeShipment,
                Reason::Other,
            ]),
            prop::option::of(china_timestamp()),
            timestamp(),
        ),
        (
            prop::option::of(any::<bool>()),
            prop::option::of("[a-z_]{1,8}@20[0-9]{2}".prop_map(|s| RulePackId::parse(&s).unwrap())),
        ),
    )
        .prop_map(
            |(
                (id, platform, platform_ticket_id, order_id, order_line_id),
                (sku, amount_paid, refund_requested, customer_id),
                (service_type, reason, signed_for_at, opened_at),
                (order_shipped, rule_pack),
            )| Opened {
                id,
                platform,
                platform_ticket_id,
                order_id,
                order_line_id,
                sku,
                amount_paid,
                refund_requested,
                customer_id,
                service_type,
                reason,
                signed_for_at,
                opened_at,
                order_shipped,
                rule_pack,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    let rule = || prop::option::of(ident(RuleId::parse));
    prop_oneof![
        opened().prop_map(|o| Event::Opened(Box::new(o))),
        (
            prop::sample::select(vec![
                ReturnMethod::CustomerShips,
                ReturnMethod::MerchantPickup
            ]),
            actor(),
            rule()
        )
            .prop_map(|(return_method, by, rule_id)| Event::Approved {
                return_method,
                by,
                rule_id
            }),
        note().prop_map(|reason| Event::Rejected { reason }),
        prop::option::of(note()).prop_map(|note| Event::CustomerAsked { note }),
        Just(Event::CustomerResponded),
        Just(Event::Resubmitted),
        prop::option::of(ident(Waybill::parse))
            .prop_map(|waybill| Event::ReturnShipped { waybill }),
        Just(Event::GoodsReceived),
        (
            money(),
            money(),
            money(),
            prop::option::of(note()),
            actor(),
            rule()
        )
            .prop_map(
                |(amount, return_shipping, deduction, customer_consent, by, rule_id)| {
                    Event::Refunded {
                        amount,
                        return_shipping,
                        deduction,
                        customer_consent,
                        by,
                        rule_id,
                    }
                }
            ),
        (money(), money(), prop::option::of(note()), actor(), rule()).prop_map(
            |(amount, deduction, customer_consent, by, rule_id)| Event::RefundedWithoutReturn {
                amount,
                deduction,
                customer_consent,
                by,
                rule_id,
            }
        ),
        (
            prop::sample::select(vec![
                ExchangeMethod::Replacement,
                ExchangeMethod::Offline,
                ExchangeMethod::ReissueWithoutReturn
            ]),
            prop::option::of(ident(Sku::parse)),
            prop::option::of(note()),
            actor()
        )
            .prop_map(
                |(method, replacement_sku, customer_consent, by)| Event::Exchanged {
                    method,
                    replacement_sku,
                    customer_consent,
                    by
                }
            ),
        (note(), actor()).prop_map(|(conversation, by)| Event::ReturnedAsIs { conversation, by }),
        (prop::option::of(note()), actor()).prop_map(|(customer_consent, by)| {
            Event::RepairCompleted {
                customer_consent,
                by,
            }
        }),
        note().prop_map(|confirmation| Event::Withdrawn { confirmation }),
        actor().prop_map(|by| Event::InterventionRequested { by }),
        Just(Event::DisputeClosed),
        deadline().prop_map(|deadline| Event::DeadlineExpired { deadline }),
        ident(RuleId::parse).prop_map(|rule_id| Event::Lapsed { rule_id }),
        (note(), actor()).prop_map(|(note, by)| Event::Annotated { note, by }),
        deadline().prop_map(|deadline| Event::DeadlineWarned { deadline }),
    ]
}

fn deadline() -> impl Strategy<Value = Deadline> {
    (
        prop::sample::select(DeadlineKind::ALL.to_vec()),
        timestamp(),
        ident(RuleId::parse),
    )
        .prop_map(|(kind, due_at, rule_id)| Deadline {
            kind,
            due_at,
            rule_id,
        })
}

fn envelope() -> impl Strategy<Value = EventEnvelope> {
    (
        any::<u128>(),
        ticket_id(),
        timestamp(),
        prop::option::of(utc_time()),
        prop::option::of("\\PC{0,40}"),
        prop::option::of(any::<u128>()),
        event(),
    )
        .prop_map(
            |(id, ticket_id, occurred_at, recorded_at, source_message_id, causation, event)| {
                EventEnvelope {
                    event_id: Uuid::from_u128(id),
                    ticket_id,
                    schema_version: CURRENT_SCHEMA_VERSION,
                    occurred_at,
                    recorded_at,
                    source_message_id,
                    causation_id: causation.map(Uuid::from_u128),
                    event,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_envelopes_round_trip(envelope in envelope()) {
        let decoded = decode(&encode(&envelope)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(common::json(&decoded), common::json(&envelope));
        prop_assert_eq!(decoded, envelope);
    }
}
