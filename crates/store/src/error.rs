//! Everything that can go wrong, phrased so the reader knows what to do next.

use std::path::PathBuf;

use uuid::Uuid;

use crate::types::{ExpectedVersion, Position, StreamId, Version};

/// An error from the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stream id failed validation.
    #[error("the stream id is not valid because {reason}; use 1 to 200 bytes of text")]
    InvalidStreamId {
        /// Why it was rejected.
        reason: String,
    },

    /// An event failed validation before anything was written.
    #[error("event {id} was rejected because {reason}; nothing was written")]
    InvalidEvent {
        /// The offending event.
        id: Uuid,
        /// Why it was rejected.
        reason: String,
    },

    /// `append` was called without events.
    #[error("an append needs at least one event; nothing was written")]
    EmptyAppend,

    /// Two events of one append share an id.
    #[error("event id {id} appears twice in the same append; give every event its own id")]
    DuplicateIdInAppend {
        /// The repeated id.
        id: Uuid,
    },

    /// Optimistic concurrency check failed.
    #[error(
        "stream {stream} is at version {actual} but the append expected {expected}; \
         nothing was written: reload the stream and decide again"
    )]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: Version,
    },

    /// Some ids of the append are already stored, others are new.
    #[error(
        "event {stored_id} of this append is already stored in stream {stream} but event \
         {new_id} is not; nothing was written: resend the original append unchanged, or use \
         fresh ids for new facts"
    )]
    PartialDuplicate {
        /// The stream appended to.
        stream: StreamId,
        /// An id that is already stored.
        stored_id: Uuid,
        /// An id that is not stored yet.
        new_id: Uuid,
    },

    /// The store has been closed.
    #[error("the event store is closed; open it again to continue")]
    Closed,

    /// A write or flush failed earlier; the in-memory state no longer matches the disk.
    #[error(
        "an earlier write to the event store failed ({reason}); appends that were not \
         acknowledged may be lost: close and reopen the store"
    )]
    Poisoned {
        /// The original failure.
        reason: String,
    },

    /// Another process (or another `Store` in this process) has the directory open.
    #[error(
        "the event store at {path} is already open elsewhere; stop the other process or \
         share one Store"
    )]
    AlreadyInUse {
        /// The store directory.
        path: PathBuf,
    },

    /// The directory holds a sled database that was not written by this crate.
    #[error(
        "the database at {path} was not created by aftersales-store ({reason}); point the \
         store at an empty or dedicated directory"
    )]
    ForeignDatabase {
        /// The store directory.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The store was written by a newer version of this crate.
    #[error(
        "the event store at {path} uses format version {found} but this program only \
         understands up to version {supported}; upgrade the program"
    )]
    NewerFormat {
        /// The store directory.
        path: PathBuf,
        /// Format version found on disk.
        found: u32,
        /// Highest format version this build understands.
        supported: u32,
    },

    /// A stored record could not be decoded or failed its hash check.
    #[error(
        "the stored record at position {position} is corrupt ({reason}); run verify and \
         restore the store from a backup"
    )]
    CorruptRecord {
        /// Where it is in the global log (0 if not known).
        position: Position,
        /// What is wrong with it.
        reason: String,
    },

    /// A record given to `import` does not continue this store's log.
    #[error(
        "the record at position {position} cannot be imported: {reason}; nothing from it on was written"
    )]
    ImportDiverges { position: Position, reason: String },

    /// An index entry could not be decoded.

    #[error("a stored index entry is corrupt ({reason}); run verify and restore the store from a backup")]
    CorruptIndex {
        /// What is wrong with it.
        reason: String,
    },

    /// The storage engine reported an error.
    #[error("the storage engine failed to {action}: {source}")]
    Storage {
        /// What the store was doing.
        action: &'static str,
        /// The engine's error.
        #[source]
        source: sled::Error,
    },

    /// The storage engine panicked (sled 0.34 panics on some malformed files).
    #[error(
        "the storage engine crashed while trying to {action} ({message}); the files at \
         {path} are probably damaged: restore them from a backup"
    )]
    StoragePanicked {
        /// What the store was doing.
        action: &'static str,
        /// The store directory.
        path: PathBuf,
        /// The panic message.
        message: String,
    },

    /// The log ends before the last position the store acknowledged (see the
    /// `acknowledged` file): records were lost after the store stopped.
    #[error(
        "the log ends at position {head}, but position {acknowledged} was acknowledged: the \
         records from {} on are missing (the storage engine drops everything after a damaged \
         record); restore the store from a backup",
        head + 1
    )]
    Truncated {
        /// The last position acknowledged.
        acknowledged: Position,
        /// Where the log ends now.
        head: Position,
    },

    /// A filesystem operation outside sled failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A background thread could not be started.
    #[error("could not start the event store's flusher thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl StoreError {
    /// Whether the error says the files are damaged (as opposed to a wrong call, a store in
    /// use, or an I/O failure): what `verify` reports as damage.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::CorruptRecord { .. }
                | StoreError::CorruptIndex { .. }
                | StoreError::Truncated { .. }
                | StoreError::StoragePanicked { .. }
                | StoreError::Storage {
                    source: sled::Error::Corruption { .. },
                    ..
                }
        )
    }

    /// The store as a whole refuses appends (a write to disk failed, or it is closed), so
    /// no append can succeed until it is reopened: the caller's input is not at fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Closed
                | StoreError::Poisoned { .. }
                | StoreError::Io { .. }
                | StoreError::Storage {
                    source: sled::Error::Io(_),
                    ..
                }
        )
    }

    pub(crate) fn storage(action: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Storage { action, source }
    }
}
