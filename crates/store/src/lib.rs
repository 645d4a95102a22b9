//! The aftersales event store: every fact about a ticket is an event appended to that
//! ticket's stream and to one global log, kept in sled.
//!
//! The store is domain-agnostic: it keeps opaque payload bytes with an id, a type, a
//! stream version, a global position, a `recorded_at` instant from an injected clock and
//! a hash chain. It offers optimistic concurrency, idempotent appends, stream/global/
//! as-of reads, subscriptions and verification.
//!
//! What it must never do:
//! - acknowledge an append before it is on disk (`append` returns after the group flush);
//! - keep part of an append: an append beyond the commit marker after a crash was never
//!   acknowledged and is removed whole on the next open;
//! - store an event id twice in one stream, or rewrite or delete an acknowledged record;
//! - hand out an event a crash could take back (reads stop at the durable head);
//! - panic on bad data read from disk (it is a typed [`StoreError`]).
//!
//! Numbering: global positions start at 1 and are gapless; stream versions start at 1
//! and are gapless per stream; 0 means "nothing yet" for both. `recorded_at` is
//! `max(clock.now(), previous recorded_at)`, so it never decreases along the log even if
//! the clock jumps back; as-of queries rely on that.
//!
//! Idempotency is per stream: an id is looked up among its own stream's ids (the same id
//! in another stream is another event), which lets the format keep no global id index.
//!
//! Module map: [`types`] (vocabulary), [`error`], `keys` (key layout: pages of records,
//! stream index chunks), `record` (binary encoding), `migrate` (format 1 → 2 on open),
//! `writer` (append path), `overlay` (index chunks not yet in sled), `flusher` (group
//! commit, crash repair), `ack` (waking appenders), `reads`, [`subscription`], [`verify`], `watermark` (the last
//! acknowledged position, kept outside sled: a log that lost records refuses to open),
//! `disk_sync` (what makes sled's files durable), [`bench`](mod@bench).

mod ack;
pub mod bench;
mod disk_sync;
pub mod error;
mod flusher;
mod keys;
mod migrate;
mod overlay;
mod reads;
mod record;
mod store;
mod stream_cache;
pub mod subscription;
pub mod types;
pub mod verify;
mod watermark;
mod writer;

pub use ack::AppendFuture;
pub use error::StoreError;
pub use keys::FORMAT_VERSION;
pub use reads::AllEvents;
pub use store::{Store, StoreConfig, DEFAULT_CACHE_CAPACITY};
pub use subscription::Subscription;
pub use types::{
    Append, AppendResult, EventPosition, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StreamId, Version, MAX_EVENT_TYPE_BYTES, MAX_PAYLOAD_BYTES, MAX_STREAM_ID_BYTES,
};
pub use verify::{ProblemKind, VerifyProblem, VerifyReport};

/// Re-exported so callers can build a [`StoreConfig`] without another dependency line.
pub use aftersales_clock::{Clock, ManualClock, SystemClock};
