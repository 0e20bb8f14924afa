//! A set of 64-bit keys that is read and written without locks, for the existence filter's
//! numbers added since its last build.
//!
//! Why no lock: a flood of random numbers asks the filter hundreds of thousands of times a second
//! from the public threads, and ingest adds the numbers of every acknowledged batch before it
//! answers. Behind one mutex, ingest waited for the lock against the flood (the depots' ack p99
//! went from ~20 ms to ~1 s with the shield on). Here a lookup is a few atomic loads and an insert
//! a compare-and-swap: nothing one side does can make the other wait.
//!
//! Open addressing with linear probing over a fixed power-of-two table, at most half full; a key
//! that finds no free slot within [`MAX_PROBES`] is refused (the caller then stops trusting the
//! filter until its next build). Memory is fixed at construction; pages the set never touched are
//! never made resident.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots an insert or a lookup looks at, at most.
pub const MAX_PROBES: usize = 64;

pub struct RecentSet {
    slots: Box<[AtomicU64]>,
    mask: usize,
    len: AtomicUsize,
}

/// Stands for key 0, since 0 marks an empty slot (that key then looks present too: a false
/// "maybe", which the filter allows; keys are hashes, so both are as rare as any collision).
const ZERO_KEY: u64 = 0x9E37_79B9_7F4A_7C15;

fn stored(key: u64) -> u64 {
    if key == 0 { ZERO_KEY } else { key }
}

/// The first slot of a key (its bits are already a hash; mixed again for keys that are not).
fn home(key: u64, mask: usize) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize & mask
}

impl RecentSet {
    /// A set for up to `capacity` keys.
    pub fn new(capacity: usize) -> RecentSet {
        let slots = (capacity.max(1) * 2).next_power_of_two();
        RecentSet {
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            mask: slots - 1,
            len: AtomicUsize::new(0),
        }
    }

    /// Adds a key; `false` when no slot was free within [`MAX_PROBES`].
    pub fn insert(&self, key: u64) -> bool {
        let key = stored(key);
        let start = home(key, self.mask);
        for i in 0..MAX_PROBES {
            let slot = &self.slots[(start + i) & self.mask];
            match slot.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.len.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(current) if current == key => return true,
                Err(_) => {}
            }
        }
        false
    }

    pub fn contains(&self, key: u64) -> bool {
        let key = stored(key);
        let start = home(key, self.mask);
        for i in 0..MAX_PROBES {
            match self.slots[(start + i) & self.mask].load(Ordering::Acquire) {
                0 => return false,
                k if k == key => return true,
                _ => {}
            }
        }
        false
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the set. Lookups racing with it may miss keys being cleared: the filter clears a
    /// set only once its keys are in a newer build.
    pub fn clear(&self) {
        if self.is_empty() {
            return;
        }
        for slot in self.slots.iter() {
            if slot.load(Ordering::Relaxed) != 0 {
                slot.store(0, Ordering::Release);
            }
        }
        self.len.store(0, Ordering::Relaxed);
    }

    /// Every key held (as stored: key 0 reads back as its stand-in, which stands for it on
    /// insert too), for a snapshot. A key inserted meanwhile may or may not be listed.
    pub fn keys(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&k| k != 0)
            .collect()
    }

    /// Bytes held (fixed).
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_found_and_others_are_not() {
        let set = RecentSet::new(1_000);
        for k in 0..1_000u64 {
            assert!(set.insert(k.wrapping_mul(0x1234_5678_9ABC_DEF1)));
        }
        assert_eq!(set.len(), 1_000);
        for k in 0..1_000u64 {
            assert!(set.contains(k.wrapping_mul(0x1234_5678_9ABC_DEF1)));
        }
        let false_hits = (1_000..101_000u64)
            .filter(|k| set.contains(k.wrapping_mul(0x1234_5678_9ABC_DEF1)))
            .count();
        assert_eq!(false_hits, 0);
        assert!(set.insert(7) && set.insert(7));
        assert_eq!(set.len(), 1_001, "a key already there is not counted again");
        set.clear();
        assert!(set.is_empty() && !set.contains(7));
    }

    #[test]
    fn a_full_set_refuses_instead_of_growing() {
        let set = RecentSet::new(8);
        let bytes = set.memory_bytes();
        let accepted = (0..1_000u64).filter(|&k| set.insert(k * 7919)).count();
        assert!(accepted <= 16, "{accepted}");
        assert_eq!(set.memory_bytes(), bytes);
    }

    #[test]
    fn concurrent_inserts_and_lookups_lose_nothing() {
        let set = std::sync::Arc::new(RecentSet::new(40_000));
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let set = set.clone();
                std::thread::spawn(move || {
                    for k in 0..10_000u64 {
                        assert!(set.insert(t * 1_000_000 + k));
                    }
                })
            })
            .collect();
        let reader = {
            let set = set.clone();
            std::thread::spawn(move || (0..100_000u64).filter(|k| set.contains(*k)).count())
        };
        for w in writers {
            w.join().unwrap();
        }
        let _ = reader.join().unwrap();
        for t in 0..4u64 {
            for k in 0..10_000u64 {
                assert!(set.contains(t * 1_000_000 + k));
            }
        }
        assert_eq!(set.len(), 40_000);
    }
}
