//! The frozen v1 fixture: bytes written by the first version of the schema must decode, with
//! every later build, to the same envelopes.
//!
//! `tests/fixtures/v1/events.bin` holds length-delimited `EventEnvelope`s, `events.json` the
//! same envelopes as the domain's JSON. Both were written once with
//!
//! ```text
//! AFTERSALES_WRITE_FIXTURE=1 cargo test -p aftersales-schema --test fixture_v1
//! ```
//!
//! which refuses to overwrite existing files. Never regenerate them: a failure here means a
//! change broke the reading of stored events (see docs/SCHEMA.md).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use aftersales_schema::{decode_delimited, encode_delimited, EventEnvelope, EVENT_TYPES};
use aftersales_ticket::Event;
use serde_json::Value;

/// Whether everything `old` says is said the same way in `new`. Fields added to the schema
/// since the fixture was written are absent from `old` and may appear in `new`.
fn says_everything(new: &Value, old: &Value, path: &str) -> Result<(), String> {
    match (new, old) {
        (Value::Object(n), Value::Object(o)) => o.iter().try_for_each(|(k, v)| {
            let field = format!("{path}.{k}");
            let n = n.get(k).ok_or_else(|| format!("{field} is gone"))?;
            says_everything(n, v, &field)
        }),
        (Value::Array(n), Value::Array(o)) if n.len() == o.len() => n
            .iter()
            .zip(o)
            .enumerate()
            .try_for_each(|(i, (n, o))| says_everything(n, o, &format!("{path}[{i}]"))),
        _ if new == old => Ok(()),
        _ => Err(format!("{path} was {old}, now reads {new}")),
    }
}

/// Event types added after the v1 fixture was frozen (docs/SCHEMA.md, "History of additive
/// changes"): the fixture cannot hold them; the round-trip tests cover them.
const ADDED_SINCE_V1: [&str; 1] = ["deadline_warned"];

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn write_fixture(dir: &Path) {
    let bin = dir.join("events.bin");
    let json = dir.join("events.json");
    assert!(
        !bin.exists() && !json.exists(),
        "the v1 fixture exists and is frozen; delete {} and {} by hand only if you really \
         mean to replace what version 1 wrote",
        bin.display(),
        json.display()
    );
    let envelopes = common::fixture_envelopes();
    fs::create_dir_all(dir).unwrap();
    fs::write(&bin, encode_delimited(&envelopes)).unwrap();
    let mut text = serde_json::to_string_pretty(&envelopes).unwrap();
    text.push('\n');
    fs::write(&json, text).unwrap();
    eprintln!("wrote {} and {}", bin.display(), json.display());
}

#[test]
fn v1_fixture_decodes_to_its_json() {
    let dir = fixture_dir();
    if std::env::var("AFTERSALES_WRITE_FIXTURE").as_deref() == Ok("1") {
        write_fixture(&dir);
    }

    let bin = fs::read(dir.join("events.bin")).expect("tests/fixtures/v1/events.bin is missing");
    let json = fs::read_to_string(dir.join("events.json"))
        .expect("tests/fixtures/v1/events.json is missing");

    let decoded =
        decode_delimited(&bin).unwrap_or_else(|e| panic!("the v1 fixture no longer decodes: {e}"));
    let expected_json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let expected: Vec<EventEnvelope> = serde_json::from_value(expected_json.clone())
        .unwrap_or_else(|e| panic!("the v1 fixture's JSON no longer deserializes: {e}"));

    assert_eq!(decoded.len(), expected.len(), "number of envelopes");
    for (i, (got, want)) in decoded.iter().zip(&expected).enumerate() {
        // The JSON shows offsets and note texts; PartialEq checks the typed values.
        if let Err(why) = says_everything(&common::json(got), &expected_json[i], "") {
            panic!("envelope {i} ({}): {why}", want.event_type());
        }
        assert_eq!(got, want, "envelope {i}");
        // Fields added since v1 read as "not recorded", never as a guess.
        if let Event::Opened(o) = &got.event {
            assert_eq!(
                (o.order_shipped, &o.rule_pack),
                (None, &None),
                "envelope {i}"
            );
        }
    }

    // What the fixture must cover (checked here, in the same test, so that a writing run
    // does not race a reading one): every event type but those added since v1.
    for name in ADDED_SINCE_V1 {
        assert!(
            decoded.iter().all(|e| e.event_type() != name),
            "{name:?} was added after v1, yet the v1 fixture holds one"
        );
    }
    for name in EVENT_TYPES
        .into_iter()
        .filter(|n| !ADDED_SINCE_V1.contains(n))
    {
        assert!(
            decoded.iter().any(|e| e.event_type() == name),
            "the v1 fixture has no {name:?} event"
        );
    }
    assert!(decoded.iter().any(|e| e.recorded_at.is_some()));
    assert!(decoded.iter().any(|e| e.recorded_at.is_none()));
    assert!(decoded.iter().any(|e| e.source_message_id.is_some()));
    assert!(decoded.iter().any(|e| e.source_message_id.is_none()));
    assert!(decoded.iter().any(|e| e.causation_id.is_some()));
    assert!(decoded.iter().any(|e| e.causation_id.is_none()));
}
