//! The dead-letter stream: every message the service could not use, with why, never lost.
//! A dead letter keeps the original body and subject, so `replay` can feed it again after a
//! fix (event ids derive from the platform message id: a replay never stores twice).

use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use crate::config::IngestConfig;
use crate::IngestError;

pub const REASON_CODE: &str = "Aftersales-Reason-Code";
pub const REASON: &str = "Aftersales-Reason";
pub const ORIGINAL_SUBJECT: &str = "Aftersales-Original-Subject";
pub const ORIGINAL_SEQUENCE: &str = "Aftersales-Original-Sequence";
pub const DELIVERY_COUNT: &str = "Aftersales-Delivery-Count";

/// Creates the webhook and dead-letter streams if missing and returns them.
pub async fn ensure_streams(
    js: &jetstream::Context,
    cfg: &IngestConfig,
) -> Result<(stream::Stream, stream::Stream), IngestError> {
    let make = |name: &str, prefix: &str| stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
        num_replicas: cfg.replicas.max(1),
        ..Default::default()
    };
    let webhooks = js
        .get_or_create_stream(make(&cfg.stream, &cfg.subject_prefix))
        .await
        .map_err(|e| IngestError::Nats(format!("stream {}: {e}", cfg.stream)))?;
    let dead = js
        .get_or_create_stream(make(&cfg.deadletter_stream, &cfg.deadletter_prefix))
        .await
        .map_err(|e| IngestError::Nats(format!("stream {}: {e}", cfg.deadletter_stream)))?;
    Ok((webhooks, dead))
}

/// What is known of the message being dead-lettered.
pub struct Original<'a> {
    pub subject: &'a str,
    /// Its sequence in the webhook stream (0 when it did not come from the stream).
    pub sequence: u64,
    pub delivered: u64,
    pub payload: Bytes,
}

/// Publishes a dead letter and waits until the broker stored it. Publishing the same
/// original twice (a crash between this and the ack) is deduplicated by the broker.
pub async fn publish(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    original: Original<'_>,
    reason_code: &str,
    reason: &str,
) -> Result<(), IngestError> {
    let platform = original
        .subject
        .strip_prefix(&format!("{}.", cfg.subject_prefix))
        .filter(|p| !p.is_empty() && !p.contains(['*', '>']))
        .unwrap_or("unknown");
    let mut headers = HeaderMap::new();
    headers.insert(REASON_CODE, header_text(reason_code));
    headers.insert(REASON, header_text(reason));
    headers.insert(ORIGINAL_SUBJECT, header_text(original.subject));
    headers.insert(ORIGINAL_SEQUENCE, original.sequence.to_string().as_str());
    headers.insert(DELIVERY_COUNT, original.delivered.to_string().as_str());
    if original.sequence > 0 {
        let id = format!("deadletter-{}-{}", cfg.stream, original.sequence);
        headers.insert("Nats-Msg-Id", id.as_str());
    }
    let subject = format!("{}.{platform}", cfg.deadletter_prefix);
    js.publish_with_headers(subject, headers, original.payload)
        .await
        .map_err(|e| IngestError::Nats(format!("dead letter: {e}")))?
        .await
        .map_err(|e| IngestError::Nats(format!("dead letter not stored: {e}")))?;
    Ok(())
}

/// Header values are one line of text.
fn header_text(s: &str) -> String {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    line
}

/// One stored dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub sequence: u64,
    pub original_subject: String,
    pub reason_code: String,
    pub reason: String,
    pub delivered: u64,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub at: String,
    #[serde(skip)]
    pub payload: Bytes,
}

/// Reads the dead letters in order (at most `limit`, from sequence `from`).
pub async fn list(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    from: u64,
    limit: usize,
) -> Result<Vec<DeadLetter>, IngestError> {
    let (_, mut dead) = ensure_streams(js, cfg).await?;
    let state = dead
        .info()
        .await
        .map_err(|e| IngestError::Nats(format!("stream {}: {e}", cfg.deadletter_stream)))?
        .state
        .clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    let mut seq = from.max(state.first_sequence);
    while seq <= state.last_sequence && out.len() < limit {
        match dead.get_raw_message(seq).await {
            Ok(m) => {
                let h = |k: &str| {
                    m.headers
                        .get(k)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                out.push(DeadLetter {
                    sequence: m.sequence,
                    original_subject: h(ORIGINAL_SUBJECT),
                    reason_code: h(REASON_CODE),
                    reason: h(REASON),
                    delivered: h(DELIVERY_COUNT).parse().unwrap_or(0),
                    at: m.time.to_rfc3339(),
                    payload: m.payload,
                });
            }
            // A replayed (deleted) dead letter leaves a hole in the sequence.
            Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(IngestError::Nats(format!("dead letter {seq}: {e}"))),
        }
        seq += 1;
    }
    Ok(out)
}

/// Feeds dead letters back to their original subjects (all, or the given sequences), then
/// removes them from the dead-letter stream. Returns how many were replayed.
pub async fn replay(
    js: &jetstream::Context,
    cfg: &IngestConfig,
    only: &[u64],
) -> Result<usize, IngestError> {
    let (_, dead) = ensure_streams(js, cfg).await?;
    let letters = list(js, cfg, 0, usize::MAX).await?;
    let mut replayed = 0;
    for letter in letters {
        if !only.is_empty() && !only.contains(&letter.sequence) {
            continue;
        }
        if !letter
            .original_subject
            .starts_with(&format!("{}.", cfg.subject_prefix))
        {
            return Err(IngestError::Config(format!(
                "dead letter {} came from `{}`, not from {}.*; not replayed",
                letter.sequence, letter.original_subject, cfg.subject_prefix
            )));
        }
        // Stored again first, removed second: a crash in between replays it twice,
        // which the event ids make harmless.
        js.publish(letter.original_subject.clone(), letter.payload.clone())
            .await
            .map_err(|e| IngestError::Nats(format!("replay {}: {e}", letter.sequence)))?
            .await
            .map_err(|e| {
                IngestError::Nats(format!("replay {} not stored: {e}", letter.sequence))
            })?;
        dead.delete_message(letter.sequence).await.map_err(|e| {
            IngestError::Nats(format!("remove dead letter {}: {e}", letter.sequence))
        })?;
        replayed += 1;
    }
    Ok(replayed)
}
