//! Field readers for what platforms actually send: ids and codes as numbers or strings,
//! ids beyond 2^53 (never through f64), payloads as JSON or as JSON inside a string,
//! times in each platform's own form.

use aftersales_ticket::{china_offset, Timestamp};
use chrono::{FixedOffset, NaiveDateTime, TimeZone};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::Unusable;

fn china() -> FixedOffset {
    china_offset()
}

/// An id sent as a JSON number or a string, kept as its decimal text.
pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        // serde_json keeps integers up to u64 exactly; only a fraction or exponent is refused.
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        other => Err(D::Error::custom(format!(
            "expected an id, got {}",
            kind(&other)
        ))),
    }
}

pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => id(v).map(Some).map_err(D::Error::custom),
    }
}

/// A non-negative integer (a code, fen, a Unix time) sent as a number or a numeric string.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    as_u64(&v).ok_or_else(|| D::Error::custom(format!("expected a whole number, got {}", kind(&v))))
}

pub fn opt_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => as_u64(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a whole number, got {}", kind(&v)))),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A business payload that arrives as an object or as JSON text inside a string
/// (Taobao TMC `content`, Pinduoduo `content`, some Douyin `data`).
pub fn embedded<T: DeserializeOwned>(field: &'static str, v: Value) -> Result<T, Unusable> {
    let v = match v {
        Value::String(text) => {
            // Straight into `T` when it fits; otherwise through a `Value`, which says why.
            if let Ok(t) = serde_json::from_str(strip_bom(&text)) {
                return Ok(t);
            }
            serde_json::from_str::<Value>(strip_bom(&text)).map_err(|e| Unusable::Malformed {
                detail: format!("`{field}` is a string but not JSON: {e}"),
            })?
        }
        other => other,
    };
    serde_json::from_value(v).map_err(|e| Unusable::Malformed {
        detail: format!("in `{field}`: {e}"),
    })
}

pub fn strip_bom(s: &str) -> &str {
    s.strip_prefix('\u{feff}').unwrap_or(s)
}

/// A body without its UTF-8 byte-order mark, if it had one.
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

/// Parses a body: UTF-8 (a byte-order mark is skipped) holding JSON.
pub fn body(bytes: &[u8]) -> Result<Value, Unusable> {
    let bytes = without_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Unusable::NotJson {
            detail: "the body is empty".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| Unusable::NotJson {
        detail: e.to_string(),
    })
}

/// One message to translate: an element of a batch, already parsed, or a whole body.
pub enum Item<'a> {
    Value(Value),
    /// A body holding one object (no byte-order mark).
    Bytes(&'a [u8]),
}

/// Reads a message into a platform's parsing type, naming the message in errors. A body
/// is parsed straight into the type, without building a `Value` first (the JSON parsing
/// was a tenth of the ingest's CPU); one that does not fit goes the way a batch element
/// does, so a bad message is answered in the same words either way.
pub fn typed<T: DeserializeOwned>(item: Item<'_>) -> Result<T, Unusable> {
    let v = match item {
        Item::Value(v) => v,
        Item::Bytes(bytes) => match serde_json::from_slice(bytes) {
            Ok(t) => return Ok(t),
            Err(_) => body(bytes)?,
        },
    };
    serde_json::from_value(v).map_err(|e| Unusable::Malformed {
        detail: e.to_string(),
    })
}

/// `yyyy-MM-dd HH:mm:ss` in China time (Taobao, JD).
pub fn china_time(field: &'static str, s: &str) -> Result<Timestamp, Unusable> {
    let naive = NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S").map_err(|_| {
        Unusable::BadValue {
            field,
            detail: format!("`{s}` is not yyyy-MM-dd HH:mm:ss"),
        }
    })?;
    china()
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(|| Unusable::BadValue {
            field,
            detail: format!("`{s}` is not a time"),
        })
}

/// Unix seconds (Douyin), shown in China time.
pub fn unix_seconds(field: &'static str, secs: u64) -> Result<Timestamp, Unusable> {
    i64::try_from(secs)
        .ok()
        .and_then(|s| china().timestamp_opt(s, 0).single())
        .ok_or_else(|| Unusable::BadValue {
            field,
            detail: format!("{secs} is not a Unix time in seconds"),
        })
}

/// Unix milliseconds (Pinduoduo, Kuaishou), shown in China time.
pub fn unix_millis(field: &'static str, ms: u64) -> Result<Timestamp, Unusable> {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| china().timestamp_millis_opt(ms).single())
        .ok_or_else(|| Unusable::BadValue {
            field,
            detail: format!("{ms} is not a Unix time in milliseconds"),
        })
}
