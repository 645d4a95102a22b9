//! The binary encoding of one stored event. The value under an `L` key is a page: one or
//! more records of consecutive positions, concatenated ([`page_records`] splits them by the
//! lengths each record carries). Format 1 wrote one record per key, which is a page of one.
//!
//! Layout of encoding version 1 (all integers big-endian):
//!
//! | offset | size | field                                              |
//! |--------|------|----------------------------------------------------|
//! | 0      | 1    | encoding version (1)                               |
//! | 1      | 32   | hash of the previous record (zeros at position 1)  |
//! | 33     | 8    | position (u64)                                     |
//! | 41     | 8    | stream version (u64)                               |
//! | 49     | 16   | event id                                           |
//! | 65     | 8    | recorded_at: seconds since the Unix epoch (i64)    |
//! | 73     | 4    | recorded_at: nanoseconds (u32)                     |
//! | 77     | 2    | stream id length S (u16)                           |
//! | 79     | S    | stream id (UTF-8)                                  |
//! |        | 2    | event type length T (u16)                          |
//! |        | T    | event type (UTF-8)                                 |
//! |        | 4    | payload length P (u32)                             |
//! |        | P    | payload                                            |
//! |        | 32   | hash = blake3(every byte above)                    |
//!
//! The bytes the hash covers are the record's canonical bytes; because they start with
//! the previous hash, the hashes form a chain over the global log and changing any
//! stored byte breaks it. Position and version are stored although the keys repeat them,
//! so a record copied to another key is detected. Decoding never panics: every length
//! is checked against the buffer.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::types::{Position, RecordedEvent, StreamId, Version};

/// The record encoding this build writes.
pub(crate) const RECORD_VERSION: u8 = 1;
/// Size of everything except the three variable-length fields.
const FIXED_LEN: usize = 1 + 32 + 8 + 8 + 16 + 8 + 4 + 2 + 2 + 4 + 32;
/// Hash that "precedes" the first record.
pub(crate) const GENESIS_HASH: [u8; 32] = [0; 32];

/// The fields of a record about to be written.
pub(crate) struct RecordFields<'a> {
    pub prev_hash: &'a [u8; 32],
    pub position: Position,
    pub version: Version,
    pub id: &'a Uuid,
    pub recorded_at: DateTime<Utc>,
    pub stream: &'a StreamId,
    pub event_type: &'a str,
    pub payload: &'a [u8],
}

/// Encoded size of a record with these variable parts.
pub(crate) fn encoded_len(stream_len: usize, type_len: usize, payload_len: usize) -> usize {
    FIXED_LEN + stream_len + type_len + payload_len
}

/// Encodes a record and returns its bytes and its hash. Lengths must already be
/// validated (stream ≤ 200 bytes, type ≤ 200 bytes, payload ≤ 1 MiB).
pub(crate) fn encode(f: &RecordFields<'_>) -> (Vec<u8>, [u8; 32]) {
    let stream = f.stream.as_str().as_bytes();
    let ty = f.event_type.as_bytes();
    let mut out = Vec::with_capacity(encoded_len(stream.len(), ty.len(), f.payload.len()));
    out.push(RECORD_VERSION);
    out.extend_from_slice(f.prev_hash);
    out.extend_from_slice(&f.position.to_be_bytes());
    out.extend_from_slice(&f.version.to_be_bytes());
    out.extend_from_slice(f.id.as_bytes());
    out.extend_from_slice(&f.recorded_at.timestamp().to_be_bytes());
    out.extend_from_slice(&f.recorded_at.timestamp_subsec_nanos().to_be_bytes());
    out.extend_from_slice(&(stream.len() as u16).to_be_bytes());
    out.extend_from_slice(stream);
    out.extend_from_slice(&(ty.len() as u16).to_be_bytes());
    out.extend_from_slice(ty);
    out.extend_from_slice(&(f.payload.len() as u32).to_be_bytes());
    out.extend_from_slice(f.payload);
    let hash = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&hash);
    (out, hash)
}

/// Why a stored record could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// The bytes do not follow the layout.
    Malformed(String),
    /// The layout is fine but the stored hash does not match the bytes.
    HashMismatch,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Malformed(why) => write!(f, "undecodable record: {why}"),
            RecordError::HashMismatch => {
                f.write_str("stored hash does not match the record bytes (modified record)")
            }
        }
    }
}

/// A decoded record: the event plus the chain link it was written with.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub event: RecordedEvent,
    pub prev_hash: [u8; 32],
}

/// A cursor that fails instead of panicking when the buffer is short.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(RecordError::Malformed(format!(
                "record ends before its {what} (needs {n} bytes at offset {}, has {})",
                self.at,
                self.buf.len()
            )));
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], RecordError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn text(&mut self, len: usize, what: &str) -> Result<&'a str, RecordError> {
        let s = self.take(len, what)?;
        std::str::from_utf8(s).map_err(|_| RecordError::Malformed(format!("{what} is not UTF-8")))
    }
}

/// Length of the record at the start of `buf`, from the lengths it carries.
fn record_len(buf: &[u8]) -> Result<usize, RecordError> {
    let mut r = Reader { buf, at: 77 };
    let stream_len = usize::from(u16::from_be_bytes(r.array("stream id length")?));
    r.take(stream_len, "stream id")?;
    let type_len = usize::from(u16::from_be_bytes(r.array("event type length")?));
    r.take(type_len, "event type")?;
    let payload_len = u32::from_be_bytes(r.array("payload length")?) as usize;
    r.take(payload_len, "payload")?;
    r.take(32, "hash")?;
    Ok(r.at)
}

/// Splits a page into its records' bytes (not decoded yet).
pub(crate) fn page_records(page: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    let mut out = Vec::new();
    let mut rest = page;
    while !rest.is_empty() {
        let len = record_len(rest)?;
        let (one, tail) = rest.split_at(len);
        out.push(one);
        rest = tail;
    }
    if out.is_empty() {
        return Err(RecordError::Malformed(
            "the page holds no record".to_string(),
        ));
    }
    Ok(out)
}

/// The bytes of the `index`-th record of a page (not decoded yet), or `None` when the page
/// ends before it. Only the records before it are walked, by their lengths: a read of one
/// event had split the whole page (an ingest group's page holds 100–200 records), 13 % of
/// the workers' time on messages for existing tickets.
pub(crate) fn page_record(page: &[u8], index: usize) -> Result<Option<&[u8]>, RecordError> {
    let mut rest = page;
    for _ in 0..index {
        if rest.is_empty() {
            return Ok(None);
        }
        rest = &rest[record_len(rest)?..];
    }
    if rest.is_empty() {
        return Ok(None);
    }
    Ok(Some(&rest[..record_len(rest)?]))
}

/// Decodes and hash-checks a record.
pub(crate) fn decode(buf: &[u8]) -> Result<Decoded, RecordError> {
    let mut r = Reader { buf, at: 0 };
    let [encoding] = r.array::<1>("encoding version")?;
    if encoding != RECORD_VERSION {
        return Err(RecordError::Malformed(format!(
            "unknown record encoding version {encoding}"
        )));
    }
    let prev_hash = r.array::<32>("previous hash")?;
    let position = u64::from_be_bytes(r.array("position")?);
    let version = u64::from_be_bytes(r.array("version")?);
    let id = Uuid::from_bytes(r.array("event id")?);
    let secs = i64::from_be_bytes(r.array("timestamp")?);
    let nanos = u32::from_be_bytes(r.array("timestamp")?);
    let recorded_at = DateTime::<Utc>::from_timestamp(secs, nanos).ok_or_else(|| {
        RecordError::Malformed(format!("timestamp {secs}s {nanos}ns is out of range"))
    })?;
    let stream_len = usize::from(u16::from_be_bytes(r.array("stream id length")?));
    let stream = r.text(stream_len, "stream id")?;
    let stream = StreamId::new(stream)
        .map_err(|e| RecordError::Malformed(format!("stored stream id is invalid: {e}")))?;
    let type_len = usize::from(u16::from_be_bytes(r.array("event type length")?));
    let event_type = r.text(type_len, "event type")?.to_string();
    let payload_len = u32::from_be_bytes(r.array("payload length")?) as usize;
    let payload = r.take(payload_len, "payload")?.to_vec();
    let hashed_len = r.at;
    let hash = r.array::<32>("hash")?;
    if r.at != buf.len() {
        return Err(RecordError::Malformed(format!(
            "{} unexpected bytes after the hash",
            buf.len() - r.at
        )));
    }
    if *blake3::hash(&buf[..hashed_len]).as_bytes() != hash {
        return Err(RecordError::HashMismatch);
    }
    Ok(Decoded {
        event: RecordedEvent {
            id,
            stream,
            version,
            position,
            event_type,
            recorded_at,
            payload,
            hash,
        },
        prev_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(payload: &[u8]) -> (Vec<u8>, [u8; 32]) {
        let stream = StreamId::new("ticket-1").unwrap();
        let id = Uuid::from_u128(77);
        encode(&RecordFields {
            prev_hash: &[9; 32],
            position: 12,
            version: 3,
            id: &id,
            recorded_at: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            stream: &stream,
            event_type: "ticket.opened",
            payload,
        })
    }

    #[test]
    fn round_trip() {
        let (bytes, hash) = sample(b"{\"a\":1}");
        assert_eq!(bytes.len(), encoded_len(8, 13, 7));
        let d = decode(&bytes).unwrap();
        assert_eq!(d.prev_hash, [9; 32]);
        assert_eq!(d.event.position, 12);
        assert_eq!(d.event.version, 3);
        assert_eq!(d.event.stream.as_str(), "ticket-1");
        assert_eq!(d.event.event_type, "ticket.opened");
        assert_eq!(d.event.payload, b"{\"a\":1}");
        assert_eq!(d.event.hash, hash);
        assert_eq!(
            d.event.recorded_at,
            DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap()
        );
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let (bytes, _) = sample(b"payload");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let (bytes, _) = sample(b"payload");
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err());
        }
    }

    #[test]
    fn a_page_splits_into_its_records() {
        let (a, _) = sample(b"first");
        let (b, _) = sample(b"the second, longer");
        let page = [a.clone(), b.clone()].concat();
        assert_eq!(
            page_records(&page).unwrap(),
            vec![a.as_slice(), b.as_slice()]
        );
        assert_eq!(page_records(&a).unwrap(), vec![a.as_slice()]);
        assert!(page_records(&[]).is_err());
        for len in 1..page.len() {
            if len != a.len() {
                assert!(page_records(&page[..len]).is_err(), "cut at {len}");
            }
        }
    }

    #[test]
    fn a_record_is_found_in_its_page_by_index() {
        let (a, _) = sample(b"first");
        let (b, _) = sample(b"the second, longer");
        let (c, _) = sample(b"third");
        let page = [a.clone(), b.clone(), c.clone()].concat();
        for (i, want) in [&a, &b, &c].into_iter().enumerate() {
            assert_eq!(page_record(&page, i).unwrap(), Some(want.as_slice()));
        }
        assert_eq!(page_record(&page, 3).unwrap(), None);
        assert_eq!(page_record(&[], 0).unwrap(), None);
        // A record cut short is an error, not a shorter record.
        let cut = &page[..a.len() + b.len() - 1];
        assert!(page_record(cut, 1).is_err());
        assert!(page_record(cut, 2).is_err());
        assert_eq!(page_record(cut, 0).unwrap(), Some(a.as_slice()));
    }

    proptest! {
        #[test]
        fn page_record_agrees_with_the_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            index in 0usize..10,
        ) {
            let records: Vec<Vec<u8>> = payloads.iter().map(|p| sample(p).0).collect();
            let page = records.concat();
            let split = page_records(&page).unwrap();
            prop_assert_eq!(page_record(&page, index).unwrap(), split.get(index).copied());
        }

        #[test]
        fn page_record_tiles_any_bytes_from_the_start(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 0..4),
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            last in 0usize..6,
        ) {
            // Records, then anything: each record found starts where the one before it
            // ended; the end of the bytes is `None`, and past a bad record all is an error.
            let mut bytes: Vec<u8> = payloads.iter().flat_map(|p| sample(p).0).collect();
            bytes.extend_from_slice(&junk);
            let mut at = 0;
            for index in 0..=last {
                match page_record(&bytes, index) {
                    Ok(Some(record)) => {
                        prop_assert_eq!(record, &bytes[at..at + record.len()]);
                        at += record.len();
                    }
                    Ok(None) => {
                        prop_assert_eq!(at, bytes.len());
                        prop_assert_eq!(page_record(&bytes, index + 1).ok(), Some(None));
                        break;
                    }
                    Err(_) => {
                        prop_assert!(page_record(&bytes, index + 1).is_err());
                        break;
                    }
                }
            }
        }

        #[test]
        fn page_split_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = page_records(&bytes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn encode_decode_round_trips(
            stream in "[a-z0-9-]{1,200}",
            ty in "[a-z.]{1,40}",
            payload in proptest::collection::vec(any::<u8>(), 0..512),
            position in 1u64..u64::MAX,
            version in 1u64..u64::MAX,
            secs in -10_000_000_000i64..10_000_000_000,
            nanos in 0u32..1_000_000_000,
        ) {
            let stream = StreamId::new(stream).unwrap();
            let id = Uuid::from_u128(u128::from(position));
            let at = DateTime::from_timestamp(secs, nanos).unwrap();
            let (bytes, hash) = encode(&RecordFields {
                prev_hash: &GENESIS_HASH, position, version, id: &id, recorded_at: at,
                stream: &stream, event_type: &ty, payload: &payload,
            });
            let d = decode(&bytes).unwrap();
            prop_assert_eq!(d.event.hash, hash);
            prop_assert_eq!(d.event.position, position);
            prop_assert_eq!(d.event.version, version);
            prop_assert_eq!(d.event.recorded_at, at);
            prop_assert_eq!(d.event.stream, stream);
            prop_assert_eq!(d.event.event_type, ty);
            prop_assert_eq!(d.event.payload, payload);
        }
    }
}
