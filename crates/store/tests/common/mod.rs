//! Helpers shared by the integration tests: real sled in temporary directories.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use aftersales_store::{Clock, NewEvent, Store, StoreConfig, StreamId, SystemClock};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A fixed instant for clock-driven tests.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Opens a store without the extra fdatasync (tests only care about crash safety, which
/// sled's flush already gives).
pub fn open(dir: &Path) -> Store {
    open_with_clock(dir, Arc::new(SystemClock))
}

pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Store {
    Store::open(dir, StoreConfig::new(clock).with_fsync_after_flush(false)).unwrap()
}

/// A deterministic id per name.
pub fn id(name: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// An event whose id and payload derive from `name`.
pub fn ev(name: &str) -> NewEvent {
    NewEvent::new(id(name), "test.happened", name.as_bytes().to_vec())
}

pub fn sid(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}
