//! The existence filter: "is this tracking number possibly known?" without touching storage.
//!
//! A binary fuse filter (xorf's `BinaryFuse8`: ~9 bits a key, ~0.4% false positives) is built
//! from every known number in the background, plus sets of numbers added since. While a rebuild
//! runs, numbers added go to `current`; the ones added before it started sit in `previous` until
//! the new filter (which contains them) replaces the old one. Until the first build is done, or
//! after the recent sets overflowed their bound, the filter answers `Maybe` for everything: it may
//! cost storage reads, it never hides a parcel.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use xorf::{BinaryFuse8, Filter};

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

/// A fixed (not per-process random) hash: filters built and queried anywhere agree.
fn key(number: &[u8]) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(number);
    h.finish()
}

#[derive(Default)]
struct Recent {
    previous: HashSet<u64>,
    current: HashSet<u64>,
}

pub struct ExistenceFilter {
    base: RwLock<Option<Arc<BinaryFuse8>>>,
    recent: Mutex<Recent>,
    max_recent: usize,
    overflowed: AtomicBool,
    numbers: AtomicUsize,
}

impl ExistenceFilter {
    pub fn new(max_recent: usize) -> ExistenceFilter {
        ExistenceFilter {
            base: RwLock::new(None),
            recent: Mutex::new(Recent::default()),
            max_recent,
            overflowed: AtomicBool::new(false),
            numbers: AtomicUsize::new(0),
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
        if base.contains(&k) {
            return Verdict::Maybe;
        }
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.current.contains(&k) || recent.previous.contains(&k) {
            Verdict::Maybe
        } else {
            Verdict::Absent
        }
    }

    /// Records numbers that now have events (after their append is durable).
    pub fn insert<'a>(&self, numbers: impl IntoIterator<Item = &'a [u8]>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        for n in numbers {
            recent.current.insert(key(n));
        }
        if recent.current.len() + recent.previous.len() > self.max_recent {
            self.overflowed.store(true, Ordering::Release);
            recent.current.clear();
            recent.previous.clear();
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

    /// Call when a rebuild starts reading storage.
    pub fn begin_rebuild(&self) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let current = std::mem::take(&mut recent.current);
        recent.previous.extend(current);
    }

    /// Installs a filter built from every number storage listed since `begin_rebuild`.
    pub fn finish_rebuild(&self, numbers: &[[u8; 13]]) -> Result<(), String> {
        let mut keys: Vec<u64> = numbers.iter().map(|n| key(n)).collect();
        keys.sort_unstable();
        keys.dedup();
        let filter = BinaryFuse8::try_from(&keys)
            .map_err(|e| format!("cannot build the existence filter: {e}"))?;
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(filter));
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.previous.clear();
        self.numbers.store(keys.len(), Ordering::Relaxed);
        self.overflowed.store(false, Ordering::Release);
        Ok(())
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
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.current.len() + recent.previous.len()
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

    #[test]
    fn overflowing_the_recent_bound_stops_refusals_until_rebuilt() {
        let f = ExistenceFilter::new(10);
        f.begin_rebuild();
        f.finish_rebuild(&[n(1)]).unwrap();
        let many: Vec<[u8; 13]> = (100..120).map(n).collect();
        f.insert(many.iter().map(|x| &x[..]));
        assert!(f.needs_rebuild());
        assert!(f.recent_len() <= 10, "memory stays bounded");
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
