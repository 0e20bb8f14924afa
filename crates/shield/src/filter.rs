//! The existence filter: "is this tracking number possibly known?" without touching storage.
//!
//! A binary fuse filter (xorf's `BinaryFuse8`: ~9 bits a key, ~0.4% false positives) is built
//! from every known number in the background, plus two generations of numbers added since
//! (`recent.rs`: read and written without locks, so that a flood asking the filter never makes
//! ingest wait). While a rebuild runs, numbers added go to the current generation; the ones added
//! before it started stay in the previous one until the new filter (which contains them) replaces
//! the old one. Until the first build is done, or after the recent sets overflowed their bound,
//! the filter answers `Maybe` for everything: it may cost storage reads, it never hides a parcel.
//!
//! A filter saves itself as a snapshot ([`ExistenceFilter::snapshot`], format in `snapshot.rs`)
//! and a restarted node restores it ([`ExistenceFilter::restore`]) instead of waiting for a
//! rebuild; whether a snapshot still covers the store is the server's call. Building is split
//! in two ([`ExistenceFilter::build`], heavy and pure, then [`ExistenceFilter::install`]) so the
//! caller can build off its async threads.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use xorf::{BinaryFuse8, Filter};

use crate::recent::RecentSet;
use crate::snapshot::{self, SnapshotError, SnapshotMeta};

/// Numbers remembered since the last rebuild, at most; past it, the filter stops refusing until
/// the next rebuild (which the server starts early).
pub const DEFAULT_MAX_RECENT: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Certainly unknown: answer 404 without storage.
    Absent,
    /// Possibly known (or the filter cannot tell yet): ask storage.
    Maybe,
}

/// A filter built from a listing, not yet in place (see [`ExistenceFilter::build`]).
pub struct Built {
    base: BinaryFuse8,
    numbers: usize,
}

/// A fixed (not per-process random) hash: filters built and queried anywhere agree.
fn key(number: &[u8]) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(number);
    h.finish()
}

pub struct ExistenceFilter {
    base: RwLock<Option<Arc<BinaryFuse8>>>,
    /// Two generations of numbers added since a build; `current` says which takes inserts.
    recent: [RecentSet; 2],
    current: AtomicUsize,
    max_recent: usize,
    overflowed: AtomicBool,
    numbers: AtomicUsize,
    /// Rebuilds never overlap (the one that began is the one that finishes).
    rebuilding: std::sync::Mutex<()>,
}

impl ExistenceFilter {
    pub fn new(max_recent: usize) -> ExistenceFilter {
        ExistenceFilter {
            base: RwLock::new(None),
            recent: [RecentSet::new(max_recent), RecentSet::new(max_recent)],
            current: AtomicUsize::new(0),
            max_recent,
            overflowed: AtomicBool::new(false),
            numbers: AtomicUsize::new(0),
            rebuilding: std::sync::Mutex::new(()),
        }
    }

    pub fn check(&self, number: &[u8]) -> Verdict {
        if self.overflowed.load(Ordering::Acquire) {
            return Verdict::Maybe;
        }
        let k = key(number);
        let base = self.base.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(base) = base else {
            return Verdict::Maybe;
        };
        if base.contains(&k) || self.recent[0].contains(k) || self.recent[1].contains(k) {
            Verdict::Maybe
        } else {
            Verdict::Absent
        }
    }

    /// Records numbers that now have events (after their append is durable). A rebuild that
    /// begins meanwhile may switch generations: a number is then added to the new one too, so
    /// the previous one can be cleared once the rebuild (whose listing started after the switch)
    /// is in place.
    pub fn insert<'a>(&self, numbers: impl IntoIterator<Item = &'a [u8]>) {
        for n in numbers {
            let k = key(n);
            let generation = self.current.load(Ordering::Acquire);
            let mut kept = self.recent[generation].insert(k);
            let now = self.current.load(Ordering::Acquire);
            if now != generation {
                kept &= self.recent[now].insert(k);
            }
            if !kept {
                self.overflowed.store(true, Ordering::Release);
            }
        }
        if self.recent_len() > self.max_recent {
            self.overflowed.store(true, Ordering::Release);
        }
    }

    /// Forget what is known: answer `Maybe` until the next rebuild (e.g. a change feed that could
    /// not list every change).
    pub fn degrade(&self) {
        self.overflowed.store(true, Ordering::Release);
    }

    /// Whether a rebuild should start early.
    pub fn needs_rebuild(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }

    /// Call when a rebuild starts reading storage: numbers added from now on go to the other
    /// generation, which the last rebuild emptied. (A rebuild that began without finishing
    /// leaves both generations in use: the older numbers stay until a rebuild finishes.)
    pub fn begin_rebuild(&self) {
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.current.load(Ordering::Acquire);
        let other = 1 - generation;
        if self.recent[other].is_empty() {
            self.current.store(other, Ordering::Release);
        }
    }

    /// The filter's key of a number: a listing hashes each page as it comes (8 bytes a number
    /// held until the build, not 13).
    pub fn key_of(number: &[u8]) -> u64 {
        key(number)
    }

    /// Builds a filter from the keys ([`ExistenceFilter::key_of`]) of every number storage
    /// listed since `begin_rebuild`: sorting and peeling, about a second and ~25 bytes a number
    /// for 10 million, so callers on an async runtime run it on a blocking thread. Touches no
    /// filter state.
    pub fn build(mut keys: Vec<u64>) -> Result<Built, String> {
        keys.sort_unstable();
        keys.dedup();
        let base = BinaryFuse8::try_from(&keys)
            .map_err(|e| format!("cannot build the existence filter: {e}"))?;
        Ok(Built {
            base,
            numbers: keys.len(),
        })
    }

    /// Puts a build in place (cheap): the generation that took inserts before the rebuild
    /// began is in it and is cleared.
    pub fn install(&self, built: Built) {
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(built.base));
        let previous = 1 - self.current.load(Ordering::Acquire);
        self.recent[previous].clear();
        if self.overflowed.load(Ordering::Acquire) {
            // Numbers dropped on overflow may be missing from both generations and from a
            // listing that began before they were durable: start over from an empty state.
            self.recent[1 - previous].clear();
        }
        self.numbers.store(built.numbers, Ordering::Relaxed);
        self.overflowed.store(false, Ordering::Release);
    }

    /// [`ExistenceFilter::build`] then [`ExistenceFilter::install`], on the calling thread.
    pub fn finish_rebuild(&self, numbers: &[[u8; 13]]) -> Result<(), String> {
        self.install(Self::build(numbers.iter().map(|n| key(n)).collect())?);
        Ok(())
    }

    /// Whether a build (or a restored snapshot) is in place: until then every answer is `Maybe`.
    pub fn is_built(&self) -> bool {
        self.base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The snapshot bytes of the filter and every number added since its build. Refused when
    /// the filter is not exact: never built, or its recent sets overflowed (numbers were
    /// dropped). Numbers inserted while it runs may be missing: callers that need them all
    /// take it once inserts have stopped.
    pub fn snapshot(&self, meta: SnapshotMeta) -> Result<Vec<u8>, SnapshotError> {
        let base = self.base.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(base) = base else {
            return Err(SnapshotError::NotBuilt);
        };
        if self.overflowed.load(Ordering::Acquire) {
            return Err(SnapshotError::NotBuilt);
        }
        let mut recent = self.recent[0].keys();
        recent.extend(self.recent[1].keys());
        recent.sort_unstable();
        recent.dedup();
        let probe = snapshot::probe(key);
        Ok(snapshot::encode(meta, probe, self.len(), &base, &recent))
    }

    /// Replaces the filter's state by a snapshot's, once every check passed and `accept` agreed
    /// that the snapshot still covers the store (on any refusal the filter is left as it was).
    /// Returns what the snapshot says of itself.
    pub fn restore(
        &self,
        bytes: &[u8],
        accept: impl FnOnce(&SnapshotMeta) -> Result<(), String>,
    ) -> Result<SnapshotMeta, SnapshotError> {
        let decoded = snapshot::decode(bytes, snapshot::probe(key), self.max_recent)?;
        accept(&decoded.meta).map_err(SnapshotError::Stale)?;
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(decoded.base));
        self.recent[0].clear();
        self.recent[1].clear();
        let generation = self.current.load(Ordering::Acquire);
        let mut kept = true;
        for k in decoded.recent {
            kept &= self.recent[generation].insert(k);
        }
        self.numbers.store(decoded.numbers, Ordering::Relaxed);
        self.overflowed.store(!kept, Ordering::Release);
        Ok(decoded.meta)
    }

    /// Numbers in the last built filter.
    pub fn len(&self) -> usize {
        self.numbers.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Numbers held in the recent sets.
    pub fn recent_len(&self) -> usize {
        self.recent[0].len() + self.recent[1].len()
    }

    /// Bytes of the built filter (about 1.13 a number).
    pub fn base_memory_bytes(&self) -> usize {
        self.base
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |b| b.fingerprints.len())
    }

    /// Bytes of the recent sets (fixed at construction).
    pub fn recent_memory_bytes(&self) -> usize {
        self.recent[0].memory_bytes() + self.recent[1].memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u64) -> [u8; 13] {
        let mut out = *b"6A00000000000";
        out[2..].copy_from_slice(format!("{i:011}").as_bytes());
        out
    }

    #[test]
    fn says_maybe_until_built_then_refuses_unknown_numbers() {
        let f = ExistenceFilter::new(100);
        assert_eq!(
            f.check(&n(1)),
            Verdict::Maybe,
            "no filter yet: never hide a parcel"
        );
        f.begin_rebuild();
        let known: Vec<[u8; 13]> = (0..10_000).map(n).collect();
        f.finish_rebuild(&known).unwrap();
        assert!(
            known.iter().all(|k| f.check(k) == Verdict::Maybe),
            "no false negatives"
        );
        let refused = (1_000_000..1_100_000)
            .filter(|&i| f.check(&n(i)) == Verdict::Absent)
            .count();
        assert!(
            refused > 99_000,
            "false positives should be ~0.4%: {refused} of 100000 refused"
        );
    }

    #[test]
    fn numbers_added_during_and_after_a_rebuild_are_known() {
        let f = ExistenceFilter::new(100);
        f.begin_rebuild();
        f.finish_rebuild(&[n(1)]).unwrap();
        f.insert([&n(2)[..]]);
        assert_eq!(f.check(&n(2)), Verdict::Maybe);
        // A rebuild starts; its listing misses n(3), added meanwhile.
        f.begin_rebuild();
        f.insert([&n(3)[..]]);
        assert_eq!(f.check(&n(2)), Verdict::Maybe);
        f.finish_rebuild(&[n(1), n(2)]).unwrap();
        assert_eq!(f.check(&n(3)), Verdict::Maybe, "added during the rebuild");
        assert_eq!(f.check(&n(2)), Verdict::Maybe);
        assert_eq!(f.check(&n(4)), Verdict::Absent);
    }

    /// Lookups and inserts from many threads at once, a rebuild in the middle: every number
    /// inserted is a "maybe" from the moment its insert returned, and stays one. As in the node,
    /// a number is "durable" (listed by storage) before it is inserted.
    #[test]
    fn concurrent_lookups_inserts_and_a_rebuild_hide_nothing() {
        use std::sync::{Arc, Mutex};
        let f = Arc::new(ExistenceFilter::new(100_000));
        f.begin_rebuild();
        f.finish_rebuild(&[n(1)]).unwrap();
        let durable: Arc<Mutex<Vec<[u8; 13]>>> = Arc::default();
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let (f, durable) = (f.clone(), durable.clone());
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let number = n(10_000_000 * (t + 1) + i);
                        durable.lock().unwrap().push(number);
                        f.insert([&number[..]]);
                        assert_eq!(f.check(&number), Verdict::Maybe);
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // A rebuild: its listing starts after it began, so it holds everything durable before.
        f.begin_rebuild();
        let listing = durable.lock().unwrap().clone();
        let reader = {
            let f = f.clone();
            std::thread::spawn(move || {
                (0..50_000u64)
                    .filter(|i| f.check(&n(*i)) == Verdict::Maybe)
                    .count()
            })
        };
        f.finish_rebuild(&listing).unwrap();
        for w in writers {
            w.join().unwrap();
        }
        let _ = reader.join().unwrap();
        for t in 0..3u64 {
            for i in 0..5_000u64 {
                assert_eq!(f.check(&n(10_000_000 * (t + 1) + i)), Verdict::Maybe);
            }
        }
    }

    #[test]
    fn overflowing_the_recent_bound_stops_refusals_until_rebuilt() {
        let f = ExistenceFilter::new(10);
        f.begin_rebuild();
        f.finish_rebuild(&[n(1)]).unwrap();
        let bytes = f.recent_memory_bytes();
        let many: Vec<[u8; 13]> = (100..120).map(n).collect();
        f.insert(many.iter().map(|x| &x[..]));
        assert!(f.needs_rebuild());
        assert_eq!(f.recent_memory_bytes(), bytes, "memory stays bounded");
        assert_eq!(f.check(&n(5_000)), Verdict::Maybe);
        f.begin_rebuild();
        f.finish_rebuild(&many).unwrap();
        assert_eq!(f.check(&n(5_000)), Verdict::Absent);
        assert_eq!(f.check(&n(110)), Verdict::Maybe);
    }
}

#[cfg(test)]
mod small_sets {
    use super::*;

    #[test]
    fn every_size_has_no_false_negatives() {
        for size in 0..600u64 {
            let f = ExistenceFilter::new(10);
            let numbers: Vec<[u8; 13]> = (0..size)
                .map(|i| {
                    let mut out = *b"6D00000000000";
                    out[2..].copy_from_slice(format!("{:011}", 2_000_000 + i * 7).as_bytes());
                    out
                })
                .collect();
            f.begin_rebuild();
            if let Err(e) = f.finish_rebuild(&numbers) {
                panic!("size {size}: {e}");
            }
            for n in &numbers {
                assert_eq!(f.check(n), Verdict::Maybe, "size {size}: false negative");
            }
        }
    }
}
