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
    // A visitor, not a `Value` first: ids are in every message, and the detour allocated
    // and copied each of them once more.
    d.deserialize_any(IdVisitor { optional: false })?
        .ok_or_else(|| D::Error::custom("expected an id, got an empty string"))
}

pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(IdVisitor { optional: true })
}

/// An id as a number (serde_json keeps integers up to u64 exactly; only a fraction or an
/// exponent is refused) or as a string (trimmed; empty is `None`). `null` is `None` when
/// `optional`.
struct IdVisitor {
    optional: bool,
}

impl<'de> serde::de::Visitor<'de> for IdVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an id (a whole number or a string)")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        Ok((!v.is_empty()).then(|| v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        if v.trim().len() == v.len() {
            Ok((!v.is_empty()).then_some(v))
        } else {
            self.visit_str(&v)
        }
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        if self.optional {
            Ok(None)
        } else {
            Err(E::invalid_type(serde::de::Unexpected::Unit, &self))
        }
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
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
    let trimmed = s.trim();
    let naive = match fixed_china_time(trimmed) {
        Some(t) => Ok(t),
        // chrono's parser decides everything else (and refuses it the same way); it
        // reads its format string again on every call, a tenth of the adapter's time.
        None => NaiveDateTime::parse_from_str(trimmed, "%Y-%m-%d %H:%M:%S"),
    }
    .map_err(|_| Unusable::BadValue {
        field,
        detail: format!("`{s}` is not yyyy-MM-dd HH:mm:ss"),
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
/// `yyyy-MM-dd HH:mm:ss` with every digit in place, the form platforms send; `None` for
/// anything else, which goes to chrono.
fn fixed_china_time(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if b.len() != 19 || separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(i32::try_from(num(0, 4)?).ok()?, num(5, 7)?, num(8, 10)?)?;
    date.and_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_parse(s: &str) -> Option<NaiveDateTime> {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()
    }

    #[test]
    fn the_fixed_form_reads_what_chrono_reads() {
        for s in [
            "2026-12-05 17:30:09",
            "2024-02-29 00:00:00",
            "2025-12-31 23:59:59",
        ] {
            assert_eq!(fixed_china_time(s), chrono_parse(s), "{s}");
            assert!(fixed_china_time(s).is_some(), "{s}");
        }
        // Not the fixed form, or not a time: left to chrono, which refuses these too.
        for s in [
            "2025-02-29 00:00:00",
            "2026-13-01 00:00:00",
            "2026-12-05 24:00:00",
            "2026-12-05T17:30:09",
            "2026-12-5 17:30:09",
            "２026-12-05 17:30:09",
        ] {
            assert_eq!(fixed_china_time(s), None, "{s}");
        }
        assert!(china_time("modified", " 2026-12-05 17:30:09 ").is_ok());
        assert!(china_time("modified", "2026-12-05 17:30").is_err());
    }

    proptest! {
        /// Whatever it accepts, chrono reads the same way.
        #[test]
        fn the_fixed_form_never_disagrees_with_chrono(
            (y, mo, d) in (0u32..10_000, 0u32..14, 0u32..33),
            (h, mi, se) in (0u32..25, 0u32..61, 0u32..62),
        ) {
            let s = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{se:02}");
            if let Some(t) = fixed_china_time(&s) {
                prop_assert_eq!(Some(t), chrono_parse(&s));
            } else {
                // Refused by the fixed form: chrono, which then decides, refuses it too,
                // or reads a leap second (`:60`), which the fixed form leaves to it.
                let chrono = chrono_parse(&s);
                prop_assert!(chrono.is_none() || s.ends_with(":60"), "{}: {:?}", s, chrono);
            }
        }
    }

    #[derive(Debug, Deserialize)]
    struct Ids {
        #[serde(deserialize_with = "id")]
        id: String,
        #[serde(default, deserialize_with = "opt_id")]
        opt: Option<String>,
    }

    #[test]
    fn ids_come_as_numbers_or_trimmed_strings() {
        let read = |json: &str| serde_json::from_str::<Ids>(json);
        let ids = read(r#"{"id": 18446744073709551615, "opt": " 7 "}"#).unwrap();
        assert_eq!(ids.id, "18446744073709551615");
        assert_eq!(ids.opt.as_deref(), Some("7"));
        assert_eq!(read(r#"{"id": -3}"#).unwrap().id, "-3");
        assert_eq!(read(r#"{"id": " ab "}"#).unwrap().id, "ab");
        for empty in [
            r#"{"id": 1, "opt": null}"#,
            r#"{"id": 1, "opt": "  "}"#,
            r#"{"id": 1}"#,
        ] {
            assert_eq!(read(empty).unwrap().opt, None, "{empty}");
        }
        for bad in [
            r#"{"id": 1.5}"#,
            r#"{"id": "  "}"#,
            r#"{"id": null}"#,
            r#"{"id": true}"#,
            r#"{"id": [1]}"#,
            r#"{"id": 1, "opt": 2.5}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
