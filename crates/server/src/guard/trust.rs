//! What the node remembers of a source address, in fixed memory: *known* (it showed a valid
//! pass or API key, or browsed at a person's pace with nothing refused) or *bad* (its
//! connections kept earning refusals, or were cut for flooding), each for a while.
//!
//! The listener places a new connection by it: a known source's connection is served on the
//! priority runtime at once; a bad source's connection is closed unread while the node is
//! under pressure; anyone else starts on the open runtime (docs/shield.md, "Serving proven
//! clients first").
//!
//! A direct-mapped table of [`SLOTS`] entries (two atomics each: the address's 64-bit hash and
//! its state with an expiry): a flood from millions of addresses overwrites entries, it never
//! grows the table. A collision can make the node forget a source (it is then treated as new)
//! or, with a probability of about 2^-64, take one source for another.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Entries in the table (a power of two).
pub const SLOTS: usize = 1 << 16;

/// What the node remembers of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    Unknown,
    Known,
    Bad,
}

const KNOWN: u64 = 1;
const BAD: u64 = 2;

pub struct TrustTable {
    tags: Box<[AtomicU64]>,
    /// `expiry_seconds << 8 | state`.
    states: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for TrustTable {
    fn default() -> Self {
        TrustTable {
            tags: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            states: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl TrustTable {
    fn tag(&self, ip: IpAddr) -> u64 {
        let mut h = self.hasher.build_hasher();
        match ip.to_canonical() {
            IpAddr::V4(v4) => h.write(&v4.octets()),
            IpAddr::V6(v6) => h.write(&v6.octets()),
        }
        // 0 marks an empty slot.
        h.finish().max(1)
    }

    /// What is remembered of `ip` at `now` (seconds).
    pub fn get(&self, ip: IpAddr, now: u64) -> Trust {
        let tag = self.tag(ip);
        let slot = (tag as usize) & (SLOTS - 1);
        if self.tags[slot].load(Relaxed) != tag {
            return Trust::Unknown;
        }
        let state = self.states[slot].load(Relaxed);
        if state >> 8 <= now {
            return Trust::Unknown;
        }
        match state & 0xff {
            KNOWN => Trust::Known,
            BAD => Trust::Bad,
            _ => Trust::Unknown,
        }
    }

    fn set(&self, ip: IpAddr, state: u64, until: u64) {
        let tag = self.tag(ip);
        let slot = (tag as usize) & (SLOTS - 1);
        self.tags[slot].store(tag, Relaxed);
        self.states[slot].store(until << 8 | state, Relaxed);
    }

    /// Remembers `ip` as known until `until` (seconds).
    pub fn mark_known(&self, ip: IpAddr, until: u64) {
        self.set(ip, KNOWN, until);
    }

    /// Remembers `ip` as bad until `until` (seconds). A known source stays known: its pass
    /// outweighs a burst of refusals (the rate limiter still applies to it).
    pub fn mark_bad(&self, ip: IpAddr, until: u64) {
        if self.get(ip, 0) != Trust::Known {
            self.set(ip, BAD, until);
        }
    }

    /// Bytes held, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        2 * SLOTS * std::mem::size_of::<AtomicU64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_remembered_until_their_expiry() {
        let t = TrustTable::default();
        assert_eq!(t.get(ip("127.1.2.3"), 10), Trust::Unknown);
        t.mark_known(ip("127.1.2.3"), 100);
        t.mark_bad(ip("127.9.9.9"), 50);
        assert_eq!(t.get(ip("127.1.2.3"), 10), Trust::Known);
        assert_eq!(
            t.get(ip("::ffff:127.1.2.3"), 10),
            Trust::Known,
            "the same client"
        );
        assert_eq!(t.get(ip("127.9.9.9"), 10), Trust::Bad);
        assert_eq!(t.get(ip("127.9.9.9"), 50), Trust::Unknown, "expired");
        t.mark_bad(ip("127.1.2.3"), 200);
        assert_eq!(t.get(ip("127.1.2.3"), 10), Trust::Known, "a pass outweighs");
    }

    #[test]
    fn a_million_sources_do_not_grow_it() {
        let t = TrustTable::default();
        let bytes = t.memory_bytes();
        for i in 0..1_000_000u32 {
            t.mark_bad(IpAddr::V4((0x0A00_0000 | i).into()), 100);
        }
        t.mark_known(ip("127.1.2.3"), 100);
        assert_eq!(t.get(ip("127.1.2.3"), 1), Trust::Known);
        assert_eq!(t.memory_bytes(), bytes);
    }
}
