//! Subscriptions: follow the global log from a position, catching up from disk and then
//! waiting for new acknowledged events.
//!
//! A subscription is only a cursor. It always reads the log from sled, in pages, up to
//! the durable head; when it reaches the head it waits on the condition variable the
//! flusher notifies after every flush. Catch-up and live mode are therefore the same
//! code path, so there is no switch-over where an event could be skipped or repeated,
//! and appenders never wait for (or buffer for) a subscriber: a subscriber that stops
//! reading just falls behind.
//!
//! Only acknowledged events are delivered: the durable head moves after the flush, so a
//! subscriber never sees an event that a crash could take back.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::reads::read_range;
use crate::store::{Inner, Store};
use crate::types::{Position, RecordedEvent};

/// How many events a subscription reads from disk at a time.
const PAGE: usize = 512;

/// A cursor on the global log; see the module docs.
///
/// It holds only a weak reference to the store: dropping the [`Store`] ends it (after
/// the events already read) rather than keeping the database open.
pub struct Subscription {
    inner: Weak<Inner>,
    next: Position,
    buffer: VecDeque<RecordedEvent>,
    ended: bool,
}

impl Store {
    /// Follows the global log starting at position `from` (inclusive; 0 and 1 both mean
    /// "from the beginning"). To resume after processing position `p`, pass `p + 1`.
    pub fn subscribe(&self, from: Position) -> Subscription {
        Subscription {
            inner: Arc::downgrade(&self.inner),
            next: from.max(1),
            buffer: VecDeque::new(),
            ended: false,
        }
    }
}

impl Subscription {
    /// Position of the next event this subscription will deliver.
    pub fn next_position(&self) -> Position {
        self.buffer.front().map_or(self.next, |e| e.position)
    }

    /// The next event, waiting at most `timeout` for one to be acknowledged.
    /// `Ok(None)` means the timeout passed; [`StoreError::Closed`] means the store was
    /// closed and everything on disk has been delivered.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>, StoreError> {
        if let Some(event) = self.buffer.pop_front() {
            return Ok(Some(event));
        }
        let deadline = Instant::now() + timeout;
        let inner = self.inner.upgrade().ok_or(StoreError::Closed)?;
        loop {
            let head = inner.head();
            if head >= self.next {
                let page = read_range(&inner, self.next, head, PAGE)?;
                self.next += page.len() as u64;
                self.buffer.extend(page);
                return Ok(self.buffer.pop_front());
            }
            let mut d = inner.lock_durable();
            // Re-check under the lock: the flusher updates the head while holding it, so
            // a notification cannot slip in between this check and the wait.
            while d.head < self.next {
                if let Some(reason) = &d.failure {
                    return Err(StoreError::Poisoned {
                        reason: reason.clone(),
                    });
                }
                if d.stopped {
                    return Err(StoreError::Closed);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(None);
                }
                d = inner
                    .durable_cv
                    .wait_timeout(d, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

/// Blocks for each next event; ends when the store is closed (after delivering what is
/// on disk) or after yielding an error.
impl Iterator for Subscription {
    type Item = Result<RecordedEvent, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(StoreError::Closed) => {
                    self.ended = true;
                    return None;
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
