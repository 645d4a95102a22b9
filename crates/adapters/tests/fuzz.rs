//! Hostile bodies never panic an adapter: for every platform, `translate` on arbitrary
//! bytes and on mutated sample payloads (tests/payloads/) gives messages or an `Unusable`
//! with one of the stable codes and a reason in words. Deeply nested JSON, outside and
//! inside double-encoded `content`/`data` strings, is refused by serde_json's recursion
//! limit instead of overflowing the stack.
//!
//! Cases per property: 2,000 by default; `PROPTEST_CASES=1000000 cargo test --release -p
//! aftersales-adapters --test fuzz` for the long form (RELIABILITY.md).

use std::str::FromStr;

use aftersales_adapters::{translate, Unusable};
use aftersales_ticket::Platform;
use proptest::prelude::*;
use serde_json::{Map, Value};

const PLATFORMS: [&str; 6] = ["tmall", "jd", "pdd", "kuaishou", "douyin", "myshop"];

/// (platform, sample) in the platform's documented format.
const SAMPLES: [(&str, &[u8]); 6] = [
    ("tmall", include_bytes!("payloads/tmall_created.json")),
    ("jd", include_bytes!("payloads/jd_status.json")),
    ("pdd", include_bytes!("payloads/pdd_created.json")),
    ("kuaishou", include_bytes!("payloads/kuaishou_add.json")),
    ("douyin", include_bytes!("payloads/douyin_push.json")),
    ("myshop", include_bytes!("payloads/generic_open.json")),
];

fn platform(name: &str) -> Platform {
    Platform::from_str(name).unwrap()
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A new variant must be given a stable code here and in the docs first.
#[allow(dead_code)]
fn exhaustive(u: &Unusable) {
    match u {
        Unusable::NotJson { .. }
        | Unusable::UnknownTopic { .. }
        | Unusable::UnknownCode { .. }
        | Unusable::Malformed { .. }
        | Unusable::BadValue { .. } => {}
    }
}

/// The property: messages, or a documented code with a reason.
fn check(platform: &Platform, body: &[u8]) -> Result<(), TestCaseError> {
    let result = translate(platform, body);
    if std::env::var_os("FUZZ_STATS").is_some() {
        // One line per case, to count outcomes: `FUZZ_STATS=1 … -- --nocapture | sort | uniq -c`.
        let outcome = result.as_ref().map_or_else(|u| u.code(), |_| "messages");
        eprintln!("outcome {platform} {outcome}");
    }
    // A body of one object is parsed straight into the platform's types, a batch's elements
    // through a `Value`: the same object alone and as a batch of one must mean the same.
    let unmarked = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let batch = [b"[".as_slice(), unmarked, b"]"].concat();
    // (Not at the nesting limit: the batch's brackets would pass it.)
    if matches!(serde_json::from_slice(unmarked), Ok(Value::Object(_)))
        && serde_json::from_slice::<Value>(&batch).is_ok()
    {
        match (&result, translate(platform, &batch)) {
            (Ok(alone), Ok(batched)) => prop_assert_eq!(alone, &batched),
            (Err(alone), Err(batched)) => prop_assert_eq!(alone.code(), batched.code()),
            (alone, batched) => prop_assert!(false, "alone {alone:?}, as a batch {batched:?}"),
        }
    }
    match result {
        Ok(_) => Ok(()),
        Err(u) => {
            prop_assert!(
                Unusable::CODES.contains(&u.code()),
                "undocumented code {}",
                u.code()
            );
            let reason = u.to_string();
            prop_assert!(!reason.trim().is_empty(), "{u:?} has no reason");
            Ok(())
        }
    }
}

#[test]
fn the_codes_are_the_documented_ones() {
    let docs = [
        include_str!("../../../docs/INGEST.md"),
        include_str!("../../../docs/HTTP.md"),
    ];
    for code in Unusable::CODES {
        for doc in docs {
            assert!(
                doc.contains(&format!("`{code}`")),
                "{code} is not documented"
            );
        }
    }
    let all = [
        Unusable::NotJson { detail: "x".into() },
        Unusable::UnknownTopic {
            platform: platform("jd"),
            topic: "x".into(),
        },
        Unusable::UnknownCode {
            platform: platform("jd"),
            field: "f",
            code: "1".into(),
        },
        Unusable::Malformed { detail: "x".into() },
        Unusable::BadValue {
            field: "f",
            detail: "x".into(),
        },
    ];
    let codes: Vec<_> = all.iter().map(Unusable::code).collect();
    assert_eq!(codes, Unusable::CODES);
}

#[test]
fn the_samples_translate() {
    for (name, body) in SAMPLES {
        assert!(translate(&platform(name), body).is_ok(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------
// Deep nesting.

fn nested_arrays(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn code(platform: &Platform, body: &[u8]) -> &'static str {
    match translate(platform, body) {
        Ok(ms) => panic!("{platform}: expected a refusal, got {ms:?}"),
        Err(u) => u.code(),
    }
}

#[test]
fn deep_bodies_are_refused_not_overflowed() {
    for name in PLATFORMS {
        let p = platform(name);
        for body in [
            nested_arrays(100_000, "1"),
            nested_objects(100_000, "1"),
            "[".repeat(100_000),
            "{\"a\":".repeat(100_000),
            nested_arrays(129, ""),
        ] {
            assert_eq!(code(&p, body.as_bytes()), "not_json", "{name}");
        }
        // Within the limit: parsed, then refused as the wrong shape, not as JSON.
        let shallow = nested_arrays(100, "1");
        assert_ne!(code(&p, shallow.as_bytes()), "not_json", "{name}");
    }
}

#[test]
fn deep_double_encoded_payloads_are_refused_not_overflowed() {
    let deep = [
        nested_arrays(100_000, "1"),
        nested_objects(100_000, "1"),
        "[".repeat(100_000),
    ];
    for inner in &deep {
        let inner = Value::String(inner.clone());
        let bodies = [
            (
                "tmall",
                serde_json::json!({"topic": "taobao_refund_RefundCreated", "id": 1, "content": inner}),
            ),
            (
                "pdd",
                serde_json::json!({"type": "pdd_refund_RefundCreated", "content": inner}),
            ),
            (
                "kuaishou",
                serde_json::json!({"msgId": "m", "event": "kwaishop_aftersales_addRefund", "info": inner}),
            ),
            (
                "douyin",
                serde_json::json!({"tag": "200", "msg_id": "m", "data": inner}),
            ),
        ];
        for (name, body) in bodies {
            let body = body.to_string();
            assert_eq!(
                code(&platform(name), body.as_bytes()),
                "malformed",
                "{name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// (a) Arbitrary bytes.

/// Bytes: random, JSON-ish tokens, or a sample with bytes flipped, cut or inserted.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        "\\u",
        "d800",
        "0",
        "-",
        "1e999",
        "null",
        "true",
        ".",
        " ",
        "\u{feff}",
        "\u{7f}",
        "é",
        "\"a\"",
        "\"tag\"",
        "\"content\"",
        "\"200\"",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(token, 0..64).prop_map(|ts| ts.concat().into_bytes()),
        (
            0..SAMPLES.len(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8)
        )
            .prop_map(|(s, edits)| {
                let mut b = SAMPLES[s].1.to_vec();
                for (at, byte, how) in edits {
                    if b.is_empty() {
                        b.push(byte);
                        continue;
                    }
                    let i = at.index(b.len());
                    match how {
                        0 => b[i] = byte,
                        1 => b.insert(i, byte),
                        _ => b.truncate(i),
                    }
                }
                b
            }),
    ]
}

// ---------------------------------------------------------------------------------------
// (b) Structure-aware: mutated samples.

/// A string value emitted as raw bytes in place of a JSON value (numbers beyond 2^64,
/// invalid UTF-8 inside a string, duplicate keys' neighbours…).
const RAW: &str = "\u{1}raw:";
/// An object `{ENC: v}` is emitted as a string holding v's JSON text (double encoding).
const ENC: &str = "\u{1}enc";

const RAWS: [&[u8]; 16] = [
    b"18446744073709551616",
    b"18446744073709551615",
    b"9007199254740993",
    b"-9223372036854775809",
    b"-1",
    b"-0",
    b"1e400",
    b"1.5",
    b"123456789012345678901234567890123456789",
    b"\"\xff\xfe\"",
    b"\"\xc3\x28\"",
    b"\"\\ud800\"",
    b"\"\xed\xa0\x80\"",
    b"\"\\u0000\"",
    b"\"\xef\xbb\xbf{}\"",
    b"NaN",
];

#[derive(Debug, Clone)]
enum Op {
    /// Removes a child of the node (a field or an element).
    Drop(prop::sample::Index),
    /// Replaces the node.
    Replace(Value),
    /// Wraps the node in `depth` arrays or objects.
    Nest(usize, bool),
    /// Replaces the node by its JSON text, as a string (once more encoded).
    Encode,
    /// Replaces the node by an array of copies of it.
    Repeat(usize),
    /// Adds a field (or an element) to the node.
    Add(String, Value),
}

fn nasty() -> impl Strategy<Value = Value> {
    let raw = (0..RAWS.len()).prop_map(|i| Value::String(format!("{RAW}{i}")));
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(1u64 << 53)),
        Just(Value::String(String::new())),
        Just(Value::String(" ".into())),
        (0usize..20_000).prop_map(|n| Value::String("9".repeat(n))),
        (0usize..20_000).prop_map(|n| Value::String("京".repeat(n))),
        ".{0,24}".prop_map(Value::String),
        "[0-9]{0,30}".prop_map(Value::String),
        Just(Value::String("2026-11-20 10:00:00".into())),
        Just(Value::String("2026-02-30 25:61:61".into())),
        Just(Value::Array(vec![])),
        Just(Value::Object(Map::new())),
        raw,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<prop::sample::Index>().prop_map(Op::Drop),
        5 => nasty().prop_map(Op::Replace),
        1 => (1usize..200, any::<bool>()).prop_map(|(d, o)| Op::Nest(d, o)),
        1 => Just(Op::Encode),
        1 => (0usize..4).prop_map(Op::Repeat),
        1 => ("[a-zA-Z_]{1,12}", nasty()).prop_map(|(k, v)| Op::Add(k, v)),
    ]
}

#[derive(Debug, Clone)]
enum Frame {
    Plain,
    Bom,
    /// Several copies of the message in one array (a batch).
    Batch(usize),
    /// Cut after this share of the bytes.
    Truncate(prop::sample::Index),
    Trailing(Vec<u8>),
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        6 => Just(Frame::Plain),
        1 => Just(Frame::Bom),
        1 => (0usize..5).prop_map(Frame::Batch),
        1 => any::<prop::sample::Index>().prop_map(Frame::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Frame::Trailing),
    ]
}

/// A sample as a tree: inner JSON strings become `{ENC: inner}` so that mutations reach
/// inside them, and are encoded again on output.
fn tree(v: Value) -> Value {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => {
                let mut m = Map::new();
                m.insert(ENC.into(), tree(inner));
                Value::Object(m)
            }
            _ => Value::String(s),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(tree).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, tree(v))).collect()),
        other => other,
    }
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

/// Applies `f` to the `target`th node in pre-order.
fn visit(v: &mut Value, target: usize, seen: &mut usize, f: &mut dyn FnMut(&mut Value)) -> bool {
    if *seen == target {
        f(v);
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| visit(x, target, seen, f)),
        Value::Object(m) => m.values_mut().any(|x| visit(x, target, seen, f)),
        _ => false,
    }
}

fn apply(v: &mut Value, op: &Op) {
    match op {
        Op::Drop(i) => match v {
            Value::Array(a) if !a.is_empty() => {
                a.remove(i.index(a.len()));
            }
            Value::Object(m) if !m.is_empty() => {
                let k = m.keys().nth(i.index(m.len())).unwrap().clone();
                m.remove(&k);
            }
            _ => *v = Value::Null,
        },
        Op::Replace(x) => *v = x.clone(),
        Op::Nest(depth, objects) => {
            for _ in 0..*depth {
                let inner = v.take();
                *v = if *objects {
                    let mut m = Map::new();
                    m.insert("a".into(), inner);
                    Value::Object(m)
                } else {
                    Value::Array(vec![inner])
                };
            }
        }
        Op::Encode => {
            let mut m = Map::new();
            m.insert(ENC.into(), v.take());
            *v = Value::Object(m);
        }
        Op::Repeat(n) => *v = Value::Array(vec![v.clone(); *n]),
        Op::Add(k, x) => match v {
            Value::Object(m) => {
                m.insert(k.clone(), x.clone());
            }
            Value::Array(a) => a.push(x.clone()),
            _ => {}
        },
    }
}

/// JSON text of a tree, with RAW strings as their bytes and ENC objects as strings.
fn emit(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::String(s) if s.starts_with(RAW) => {
            let i: usize = s[RAW.len()..].parse().unwrap();
            out.extend_from_slice(RAWS[i]);
        }
        Value::Object(m) if m.len() == 1 && m.contains_key(ENC) => {
            let mut inner = Vec::new();
            emit(&m[ENC], &mut inner);
            out.push(b'"');
            for b in inner {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b if b < 0x20 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                    b => out.push(b),
                }
            }
            out.push(b'"');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                emit(x, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                emit(x, out);
            }
            out.push(b'}');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn mutated(sample: &[u8], ops: &[(prop::sample::Index, Op)], frame: &Frame) -> Vec<u8> {
    let sample = sample.strip_prefix(b"\xef\xbb\xbf").unwrap_or(sample);
    let mut v = tree(serde_json::from_slice(sample).unwrap());
    for (at, op) in ops {
        let target = at.index(count(&v));
        visit(&mut v, target, &mut 0, &mut |node| apply(node, op));
    }
    let mut out = Vec::new();
    if let Frame::Batch(n) = frame {
        v = Value::Array(vec![v; *n]);
    }
    emit(&v, &mut out);
    match frame {
        Frame::Bom => out.splice(0..0, *b"\xef\xbb\xbf").for_each(drop),
        Frame::Truncate(at) => out.truncate(at.index(out.len().max(1))),
        Frame::Trailing(tail) => out.extend_from_slice(tail),
        Frame::Plain | Frame::Batch(_) => {}
    }
    out
}

/// Mostly the platform's own sample (so mutations reach its deeper code), sometimes another's.
fn sample_for(name: &'static str) -> impl Strategy<Value = &'static [u8]> {
    let own = SAMPLES.iter().find(|(n, _)| *n == name).unwrap().1;
    prop_oneof![
        3 => Just(own),
        1 => prop::sample::select(SAMPLES.iter().map(|(_, b)| *b).collect::<Vec<_>>()),
    ]
}

fn ops() -> impl Strategy<Value = Vec<(prop::sample::Index, Op)>> {
    prop::collection::vec((any::<prop::sample::Index>(), op()), 0..6)
}

macro_rules! fuzz {
    ($($platform:ident),*) => {
        mod arbitrary_bytes {
            use super::*;
            proptest! {
                #![proptest_config(config())]
                $(
                    #[test]
                    fn $platform(body in bytes()) {
                        check(&platform(stringify!($platform)), &body)?;
                    }
                )*
            }
        }
        mod mutated_samples {
            use super::*;
            proptest! {
                #![proptest_config(config())]
                $(
                    #[test]
                    fn $platform(
                        sample in sample_for(stringify!($platform)),
                        ops in ops(),
                        frame in frame(),
                    ) {
                        let body = mutated(sample, &ops, &frame);
                        check(&platform(stringify!($platform)), &body)?;
                    }
                )*
            }
        }
    };
}

fuzz!(tmall, jd, pdd, kuaishou, douyin, myshop);

#[test]
fn unmutated_trees_emit_the_samples_meaning() {
    for (name, body) in SAMPLES {
        let again = mutated(body, &[], &Frame::Plain);
        assert_eq!(
            translate(&platform(name), &again).unwrap(),
            translate(&platform(name), body).unwrap(),
            "{name}"
        );
    }
}
