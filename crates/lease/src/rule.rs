//! The lease rule, pure: what an instance does next about one partition, from what it has
//! seen of the partition's key and the lease it holds, at a monotonic instant.
//!
//! Why two owners never overlap: the holder counts its lease from the moment it *sent* the
//! write that made or renewed it and gives it up at `sent + ttl − margin`; anyone else
//! counts from the moment it first *saw* that write's revision, which is later, and takes
//! over only at `seen + ttl`, by a compare-and-set on that revision (so a renewal in
//! between wins). Only the rates of the two monotonic clocks matter, not their offsets;
//! `margin` covers their drift and the time a consumer needs to stop.

use std::time::{Duration, Instant};

/// Lease timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl: Duration,
    pub margin: Duration,
}

impl Timing {
    /// How often a holder renews, and how often the loop looks.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}

/// The last revision of a key this instance saw, since when, and who it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub revision: u64,
    /// `None`: released (or never held).
    pub holder: Option<String>,
    pub since: Instant,
}

/// A lease this instance holds: the revision it wrote and when it sent that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub revision: u64,
    pub sent: Instant,
}

impl Held {
    /// Until when this instance may act as the owner.
    pub fn until(&self, t: &Timing) -> Instant {
        self.sent + t.ttl.saturating_sub(t.margin)
    }
}

/// What to do next about one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The key does not exist: create it naming us.
    Create,
    /// Take a released or expired lease: compare-and-set on `revision`.
    TakeOver {
        revision: u64,
    },
    /// Renew ours: compare-and-set on our revision.
    Renew {
        revision: u64,
    },
    /// Stop owning, then mark the key released (compare-and-set on our revision).
    Release {
        revision: u64,
    },
    /// Our lease ran out before a renewal got through: stop owning at once.
    Lost,
    Nothing,
}

/// What this instance should do about a partition. `seen`: the key as last read (`None`:
/// absent); `held`: our lease; `want`: whether we want one more partition (`Some(true)`),
/// one fewer (`Some(false)`), or neither.
pub fn step(
    seen: Option<&Seen>,
    held: Option<&Held>,
    want: Option<bool>,
    now: Instant,
    t: &Timing,
) -> Step {
    if let Some(h) = held {
        if now >= h.until(t) {
            return Step::Lost;
        }
        if want == Some(false) {
            return Step::Release {
                revision: h.revision,
            };
        }
        if now >= h.sent + t.renew_every() {
            return Step::Renew {
                revision: h.revision,
            };
        }
        return Step::Nothing;
    }
    if want != Some(true) {
        return Step::Nothing;
    }
    match seen {
        None => Step::Create,
        Some(s) if s.holder.is_none() => Step::TakeOver {
            revision: s.revision,
        },
        // Held by someone (us too, by an earlier process with our name: it may still run):
        // only once that revision has stood for a whole ttl.
        Some(s) if now.duration_since(s.since) >= t.ttl => Step::TakeOver {
            revision: s.revision,
        },
        Some(_) => Step::Nothing,
    }
}

/// How many partitions each of `live` instances should own.
pub fn share(partitions: u16, live: usize) -> usize {
    (partitions as usize).div_ceil(live.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        ttl: Duration::from_secs(6),
        margin: Duration::from_secs(1),
    };

    fn seen(holder: Option<&str>, since: Instant) -> Seen {
        Seen {
            revision: 7,
            holder: holder.map(str::to_owned),
            since,
        }
    }

    #[test]
    fn a_free_or_released_partition_is_taken_only_when_wanted() {
        let now = Instant::now();
        assert_eq!(step(None, None, Some(true), now, &T), Step::Create);
        assert_eq!(step(None, None, None, now, &T), Step::Nothing);
        let released = seen(None, now);
        assert_eq!(
            step(Some(&released), None, Some(true), now, &T),
            Step::TakeOver { revision: 7 }
        );
        assert_eq!(
            step(Some(&released), None, Some(false), now, &T),
            Step::Nothing
        );
    }

    #[test]
    fn anothers_lease_is_taken_only_after_it_stood_a_whole_ttl() {
        let t0 = Instant::now();
        let other = seen(Some("b"), t0);
        let just_before = t0 + T.ttl - Duration::from_millis(1);
        assert_eq!(
            step(Some(&other), None, Some(true), just_before, &T),
            Step::Nothing
        );
        assert_eq!(
            step(Some(&other), None, Some(true), t0 + T.ttl, &T),
            Step::TakeOver { revision: 7 }
        );
        // Our own name from an earlier process is no exception.
        let mine = seen(Some("a"), t0);
        assert_eq!(
            step(Some(&mine), None, Some(true), just_before, &T),
            Step::Nothing
        );
    }

    #[test]
    fn a_holder_renews_after_a_third_and_stops_before_anyone_may_take_over() {
        let sent = Instant::now();
        let held = Held { revision: 9, sent };
        assert_eq!(step(None, Some(&held), None, sent, &T), Step::Nothing);
        assert_eq!(
            step(None, Some(&held), None, sent + T.ttl / 3, &T),
            Step::Renew { revision: 9 }
        );
        assert_eq!(
            step(None, Some(&held), Some(false), sent, &T),
            Step::Release { revision: 9 }
        );
        let until = held.until(&T);
        assert_eq!(step(None, Some(&held), None, until, &T), Step::Lost);
        // The other side saw the write no earlier than it was sent: it may take over only
        // at sent + ttl, after the holder stopped at sent + ttl - margin.
        let other_view = seen(Some("a"), sent);
        for at in [until, sent + T.ttl - Duration::from_nanos(1)] {
            assert_eq!(
                step(Some(&other_view), None, Some(true), at, &T),
                Step::Nothing
            );
        }
        assert!(until < sent + T.ttl);
    }

    #[test]
    fn the_share_rounds_up() {
        assert_eq!(share(12, 3), 4);
        assert_eq!(share(64, 3), 22);
        assert_eq!(share(64, 0), 64);
        assert_eq!(share(1, 5), 1);
    }
}
