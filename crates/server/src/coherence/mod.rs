//! Cache coherence in one place: what a node does once a parcel's events changed, whether the
//! change came through its own ingest listener or, on a shared database, through another node.
//!
//! The rule (`parcels_changed`): once the change is durable, the response cache forgets the
//! parcel (bumping its stripe's epoch first, `cache.rs`) and the existence filter learns the
//! number. When too much changed elsewhere to name every parcel, everything is forgotten and
//! the filter answers "maybe" until its next rebuild (`everything_changed`). Other nodes' changes
//! arrive through the change-feed poller (`feed.rs`), whose health decides whether cached
//! answers are marked stale and whether the filter's "absent" can be trusted ([`FeedHealth`]).

pub mod cache;
pub mod feed;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use rempart_domain::TrackingNumber;
use rempart_store::ChangeCursor;

use crate::guard::Guard;
use cache::ParcelCache;

/// The response cache and what keeps it true.
pub struct Coherence {
    pub cache: ParcelCache,
    pub feed: FeedHealth,
}

impl Coherence {
    pub fn new(cache_entries: usize, cache_bytes: u64, shared_store: bool) -> Coherence {
        Coherence {
            cache: ParcelCache::new(cache_entries, cache_bytes),
            feed: FeedHealth::new(shared_store),
        }
    }

    /// Events of these parcels are durable now. `stored`: whether anything new was stored
    /// (duplicates change nothing, so an all-duplicate resend keeps the cache); the filter
    /// learns the numbers either way (learning a known number again is harmless).
    pub fn parcels_changed<'a, I>(&self, guard: &Guard, numbers: I, stored: bool)
    where
        I: IntoIterator<Item = &'a TrackingNumber> + Clone,
    {
        if stored {
            for tn in numbers.clone() {
                self.cache.invalidate(tn);
            }
        }
        guard.learn_numbers(numbers.into_iter().map(|tn| &tn.as_bytes()[..]));
    }

    /// Too many parcels changed elsewhere to name them.
    pub fn everything_changed(&self, guard: &Guard) {
        self.cache.invalidate_all();
        guard.forget_numbers();
    }
}

/// [`FeedHealth`]'s position before the feed's first read.
const NO_POSITION: i64 = i64::MIN;
/// [`FeedHealth`]'s position once the feed gave changes up.
const POSITION_LOST: i64 = i64::MIN + 1;

/// For a shared store: whether the last change-feed poll succeeded, and since when cached
/// answers may be stale. A store only this node writes to is always current.
pub struct FeedHealth {
    shared: bool,
    ok: AtomicBool,
    /// Seconds after `started` of the last successful poll.
    ok_at: AtomicU64,
    started: Instant,
    errors: AtomicU64,
    /// Whether the feed has read every change made before it started (its first read to the
    /// end). Until then the filter's "absent" is not trusted and the public `/readyz` says not
    /// ready: a node restored from a snapshot learns there what other nodes stored meanwhile.
    caught_up: AtomicBool,
    /// The feed's position once its changes are applied (`ChangeCursor::position`), for the
    /// filter's snapshot; [`NO_POSITION`] or [`POSITION_LOST`] for none.
    position: AtomicI64,
    /// Runs of skipped change numbers the feed is still looking for (`ChangeCursor::pending`).
    pending_runs: AtomicU64,
    /// Reads that could not name every change (the cache cleared each time).
    given_up: AtomicU64,
}

impl FeedHealth {
    fn new(shared: bool) -> FeedHealth {
        FeedHealth {
            shared,
            ok: AtomicBool::new(true),
            ok_at: AtomicU64::new(0),
            started: Instant::now(),
            errors: AtomicU64::new(0),
            caught_up: AtomicBool::new(!shared),
            position: AtomicI64::new(NO_POSITION),
            pending_runs: AtomicU64::new(0),
            given_up: AtomicU64::new(0),
        }
    }

    /// Whether this node knows of every change (always, unless a shared store's feed fails or
    /// has not caught up since start).
    pub fn is_current(&self) -> bool {
        !self.shared || (self.ok.load(Relaxed) && self.caught_up())
    }

    /// Whether the feed has read to its end once since start (always for a store of one node).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Relaxed)
    }

    /// The position every change up to which is applied; `None` before the first read, and
    /// after a read that gave changes up.
    pub fn position(&self) -> Option<i64> {
        Some(self.position.load(Relaxed)).filter(|&p| p != NO_POSITION && p != POSITION_LOST)
    }

    /// Records a read whose changes are applied, with the cursor it left: its position, its
    /// pending runs, and whether it reached the end of the feed. After a read that could not
    /// name every change (`complete` false), no position is kept for the rest of the run:
    /// changes given up below it may never reach the filter, so a snapshot must not claim it
    /// (the next start rebuilds the filter).
    fn applied(&self, cursor: &ChangeCursor, complete: bool, at_end: bool) {
        self.pending_runs
            .store(cursor.pending.len() as u64, Relaxed);
        if !complete {
            self.given_up.fetch_add(1, Relaxed);
            self.position.store(POSITION_LOST, Relaxed);
        } else if let Some(position) = cursor.position()
            && self.position.load(Relaxed) != POSITION_LOST
        {
            self.position.store(position, Relaxed);
        }
        if at_end && !self.caught_up.swap(true, Relaxed) {
            tracing::info!("change feed caught up");
        }
    }

    /// Runs of skipped change numbers the feed still looks for.
    pub fn pending_runs(&self) -> u64 {
        self.pending_runs.load(Relaxed)
    }

    /// Reads that could not name every change since start.
    pub fn given_up(&self) -> u64 {
        self.given_up.load(Relaxed)
    }

    /// Seconds since cached answers could last be confirmed fresh, while they may be stale.
    pub fn stale_for(&self) -> Option<u64> {
        (!self.is_current()).then(|| {
            self.started
                .elapsed()
                .as_secs()
                .saturating_sub(self.ok_at.load(Relaxed))
        })
    }

    /// Records a successful poll; true when the feed was failing until now.
    fn succeeded(&self) -> bool {
        self.ok_at.store(self.started.elapsed().as_secs(), Relaxed);
        !self.ok.swap(true, Relaxed)
    }

    /// Records a failed poll; true when the feed was healthy until now.
    fn failed(&self) -> bool {
        self.errors.fetch_add(1, Relaxed);
        self.ok.swap(false, Relaxed)
    }

    /// Failed polls so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_that_gave_changes_up_keeps_no_position_for_a_snapshot() {
        let at = ChangeCursor::resume;
        let feed = FeedHealth::new(true);
        assert_eq!(feed.position(), None);
        assert!(!feed.caught_up() && !feed.is_current());
        feed.applied(&at(10), true, false);
        assert_eq!(feed.position(), Some(10));
        assert!(!feed.caught_up());
        let mut pending = at(20);
        pending.pending.push(rempart_store::PendingChanges {
            first: 15,
            last: 16,
            until: std::time::Instant::now(),
        });
        feed.applied(&pending, true, true);
        assert_eq!(feed.position(), Some(14), "below the numbers still pending");
        assert_eq!(feed.pending_runs(), 1);
        assert!(feed.caught_up() && feed.is_current());
        // Changes given up below the position may never reach the filter.
        feed.applied(&at(30), false, true);
        assert_eq!(feed.position(), None);
        assert_eq!((feed.given_up(), feed.pending_runs()), (1, 0));
        feed.applied(&at(40), true, true);
        assert_eq!(feed.position(), None, "lost for the rest of the run");
    }

    #[test]
    fn a_store_of_one_node_is_always_current() {
        let feed = FeedHealth::new(false);
        assert!(feed.caught_up() && feed.is_current());
    }
}
