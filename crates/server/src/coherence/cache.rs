//! The response cache: parcel views keyed by tracking number only (a query string or any other
//! part of a request never reaches the key), so a popular parcel costs one storage read.
//!
//! Coherence with ingest: every key hashes to one of [`EPOCH_STRIPES`] counters. Ingest, after
//! its batch is durable, bumps the counter and *then* removes the key. A lookup that missed reads
//! the counter *before* reading storage, inserts what it read, then reads the counter again and
//! removes its own insert if the counter moved. Whatever the interleaving, a value read before a
//! commit cannot outlive that commit's invalidation.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Instant;

use bytes::Bytes;
use rempart_domain::{ParcelView, TrackingNumber};

/// Number of invalidation counters; a bump makes concurrent fills of ~1/EPOCH_STRIPES of all
/// keys skip caching once, which is harmless.
pub const EPOCH_STRIPES: usize = 4096;

/// What the cache holds for one parcel: its view, and the JSON body and its strong `ETag`,
/// both computed once per fill (a hot lookup clones two `Bytes`, allocating nothing).
#[derive(Debug)]
pub struct CachedParcel {
    pub view: ParcelView,
    pub json: Bytes,
    /// `"<hash of json>"`, quoted as it goes in the header.
    pub json_etag: Bytes,
    pub filled_at: Instant,
    /// Estimated bytes held, for the cache's byte bound: the struct, the JSON and its tag, and
    /// the view (about as large as its JSON), plus the key and the cache's slot.
    pub bytes: u64,
}

impl CachedParcel {
    pub fn new(view: ParcelView) -> Arc<Self> {
        let json = Bytes::from(view.to_json());
        let json_etag = crate::content::strong_etag(&json);
        let bytes =
            (std::mem::size_of::<CachedParcel>() + 2 * json.len() + json_etag.len() + 64) as u64;
        Arc::new(CachedParcel {
            view,
            json,
            json_etag,
            filled_at: Instant::now(),
            bytes,
        })
    }
}

/// A stamp taken before reading storage; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct FillStamp {
    stripe: usize,
    epoch: u64,
}

/// An entry weighs its bytes, and at least `floor` (the byte bound over the entry bound): the
/// cache then holds at most `cache_entries` entries and at most `cache_mb` of them.
#[derive(Clone)]
struct ByBytes {
    floor: u64,
}

impl quick_cache::Weighter<TrackingNumber, Arc<CachedParcel>> for ByBytes {
    fn weight(&self, _: &TrackingNumber, parcel: &Arc<CachedParcel>) -> u64 {
        parcel.bytes.max(self.floor)
    }
}

pub struct ParcelCache {
    entries: quick_cache::sync::Cache<TrackingNumber, Arc<CachedParcel>, ByBytes>,
    bound_bytes: u64,
    epochs: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl ParcelCache {
    /// A cache of at most `capacity` parcels and `bound_bytes` bytes (estimated).
    pub fn new(capacity: usize, bound_bytes: u64) -> Self {
        let capacity = capacity.max(1);
        let bound_bytes = bound_bytes.max(1);
        // One more than `capacity` in the divisor: an entry weighing the whole bound would not
        // fit at all (a cache of one entry would cache nothing).
        let floor = (bound_bytes / (capacity as u64 + 1)).max(1);
        ParcelCache {
            entries: quick_cache::sync::Cache::with_weighter(
                capacity,
                bound_bytes,
                ByBytes { floor },
            ),
            bound_bytes,
            epochs: (0..EPOCH_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn stripe(&self, tn: &TrackingNumber) -> usize {
        (self.hasher.hash_one(tn) as usize) % EPOCH_STRIPES
    }

    pub fn get(&self, tn: &TrackingNumber) -> Option<Arc<CachedParcel>> {
        self.entries.get(tn)
    }

    /// Call before reading storage for a miss.
    pub fn stamp(&self, tn: &TrackingNumber) -> FillStamp {
        let stripe = self.stripe(tn);
        FillStamp {
            stripe,
            epoch: self.epochs[stripe].load(SeqCst),
        }
    }

    /// Caches what storage returned, unless an invalidation of this key's stripe happened since
    /// `stamp` was taken.
    pub fn fill(&self, tn: TrackingNumber, value: Arc<CachedParcel>, stamp: FillStamp) {
        if self.epochs[stamp.stripe].load(SeqCst) != stamp.epoch {
            return;
        }
        self.entries.insert(tn, value);
        if self.epochs[stamp.stripe].load(SeqCst) != stamp.epoch {
            self.entries.remove(&tn);
        }
    }

    /// Forgets a parcel whose events changed (after they are durable).
    pub fn invalidate(&self, tn: &TrackingNumber) {
        let stripe = self.stripe(tn);
        self.epochs[stripe].fetch_add(1, SeqCst);
        self.entries.remove(tn);
    }

    /// Forgets every parcel (too many changed elsewhere to name them).
    pub fn invalidate_all(&self) {
        for epoch in self.epochs.iter() {
            epoch.fetch_add(1, SeqCst);
        }
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Estimated bytes held (each entry counted at least its share of the byte bound).
    pub fn memory_bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// The byte bound (`cache_mb`).
    pub fn bound_bytes(&self) -> u64 {
        self.bound_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rempart_domain::{Event, EventCode, EventId, StoredEvent, Timestamp};

    fn view(tn: TrackingNumber, code: EventCode) -> ParcelView {
        let event = Event {
            event_id: EventId::parse("e").unwrap(),
            tracking_number: tn,
            code,
            occurred_at: Timestamp::parse_rfc3339("2025-12-22T08:00:00Z").unwrap(),
            location: None,
            product: None,
        };
        ParcelView::build(tn, vec![StoredEvent { event, received: 1 }]).unwrap()
    }

    #[test]
    fn a_fill_racing_an_invalidation_is_not_kept() {
        let cache = ParcelCache::new(10, 1 << 20);
        let tn = TrackingNumber::parse("RR123456785FR").unwrap();
        let stamp = cache.stamp(&tn);
        // Ingest commits and invalidates while the lookup is reading storage.
        cache.invalidate(&tn);
        cache.fill(tn, CachedParcel::new(view(tn, EventCode::Pc1)), stamp);
        assert!(cache.get(&tn).is_none());
        // A fill stamped after the invalidation is kept.
        let stamp = cache.stamp(&tn);
        cache.fill(tn, CachedParcel::new(view(tn, EventCode::Di1)), stamp);
        assert!(cache.get(&tn).unwrap().view.is_final);
        cache.invalidate(&tn);
        assert!(cache.get(&tn).is_none());
    }

    #[test]
    fn a_cached_parcel_carries_the_tag_of_its_json() {
        let tn = TrackingNumber::parse("RR123456785FR").unwrap();
        let a = CachedParcel::new(view(tn, EventCode::Pc1));
        assert_eq!(a.json_etag, crate::content::strong_etag(&a.json));
        let b = CachedParcel::new(view(tn, EventCode::Di1));
        assert_ne!(a.json_etag, b.json_etag);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ParcelCache::new(100, 1 << 30);
        for serial in 0..10_000 {
            let tn = TrackingNumber::s10("RR", serial, "FR").unwrap();
            let stamp = cache.stamp(&tn);
            cache.fill(tn, CachedParcel::new(view(tn, EventCode::Pc1)), stamp);
        }
        assert!(cache.len() <= 200, "{}", cache.len());
    }

    #[test]
    fn a_small_cache_holds_its_entries() {
        for capacity in [1, 2, 10] {
            let cache = ParcelCache::new(capacity, 128 << 20);
            let tn = TrackingNumber::parse("RR123456785FR").unwrap();
            let stamp = cache.stamp(&tn);
            cache.fill(tn, CachedParcel::new(view(tn, EventCode::Pc1)), stamp);
            assert!(cache.get(&tn).is_some(), "capacity {capacity}");
        }
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_too() {
        let bound = 100_000;
        let cache = ParcelCache::new(1_000_000, bound);
        let tn = TrackingNumber::s10("RR", 0, "FR").unwrap();
        let one = CachedParcel::new(view(tn, EventCode::Pc1)).bytes;
        for serial in 0..10_000 {
            let tn = TrackingNumber::s10("RR", serial, "FR").unwrap();
            let stamp = cache.stamp(&tn);
            cache.fill(tn, CachedParcel::new(view(tn, EventCode::Pc1)), stamp);
        }
        assert!(cache.memory_bytes() <= bound, "{}", cache.memory_bytes());
        assert!(
            cache.len() as u64 <= bound / one,
            "{} entries of {one} bytes",
            cache.len()
        );
        assert!(cache.len() > 10, "the bound is used: {}", cache.len());
    }
}
