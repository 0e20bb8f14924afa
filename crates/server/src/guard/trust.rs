//! What the node remembers of a source address, in fixed memory: *known* (it showed a valid
//! pass or API key, or browsed at a person's pace with nothing refused) or *bad* (its
//! connections kept earning refusals, or were cut for flooding), each for a while.
//!
//! The listener places a new connection by it: a known source's connection is served on the
//! priority runtime at once; a bad source's connection is closed unread while the node is
//! under pressure; anyone else starts on the open runtime (docs/shield.md, "Serving proven
//! clients first").
//!
//! The known IPv4 addresses are also kept in a short list, newest last ([`RECENT_KNOWN`] at most),
//! for the listener's gate, which lets their new connections in while it drops other sources'
//! (`listener/gate.rs`): the table below can be asked about one address, not listed.
//!
//! A direct-mapped table of [`SLOTS`] entries (two atomics each: the address's 64-bit hash and
//! its state with an expiry): a flood from millions of addresses overwrites entries, it never
//! grows the table. A collision can make the node forget a source (it is then treated as new)
//! or, with a probability of about 2^-64, take one source for another.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Entries in the table (a power of two).
pub const SLOTS: usize = 1 << 16;
/// Most known IPv4 addresses listed for the gate (the gate's program holds fewer; see
/// `listener/gate.rs`).
pub const RECENT_KNOWN: usize = 4096;
/// A source marked known again within this many seconds of its last listing is not listed
/// again (the list's lock is not taken on every lookup that shows a pass).
const RELIST_AFTER_S: u64 = 60;

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
    /// Known IPv4 addresses and when they stop being known (seconds).
    recent_v4: Mutex<HashMap<Ipv4Addr, u64>>,
}

impl Default for TrustTable {
    fn default() -> Self {
        TrustTable {
            tags: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            states: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            recent_v4: Mutex::new(HashMap::new()),
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

    /// `ip`'s tag and the slot it maps to.
    fn place(&self, ip: IpAddr) -> (u64, usize) {
        let tag = self.tag(ip);
        (tag, (tag as usize) & (SLOTS - 1))
    }

    /// What is remembered of `ip` at `now` (seconds).
    pub fn get(&self, ip: IpAddr, now: u64) -> Trust {
        let (tag, slot) = self.place(ip);
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
        let (tag, slot) = self.place(ip);
        self.tags[slot].store(tag, Relaxed);
        self.states[slot].store(until << 8 | state, Relaxed);
    }

    /// Remembers `ip` as known until `until` (seconds).
    pub fn mark_known(&self, ip: IpAddr, until: u64) {
        let (tag, slot) = self.place(ip);
        let before = self.states[slot].load(Relaxed);
        let listed = self.tags[slot].load(Relaxed) == tag
            && before & 0xff == KNOWN
            && (before >> 8) + RELIST_AFTER_S >= until;
        self.set(ip, KNOWN, until);
        if let (false, IpAddr::V4(v4)) = (listed, ip.to_canonical()) {
            self.list(v4, until);
        }
    }

    /// Lists a known IPv4 address; a full list first drops the expired, then the soonest to
    /// expire.
    fn list(&self, v4: Ipv4Addr, until: u64) {
        let mut recent = self.recent_v4.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_KNOWN && !recent.contains_key(&v4) {
            let now = crate::clock::unix_now();
            recent.retain(|_, expiry| *expiry > now);
            if recent.len() >= RECENT_KNOWN
                && let Some(soonest) = recent.iter().min_by_key(|(_, e)| **e).map(|(a, _)| *a)
            {
                recent.remove(&soonest);
            }
        }
        recent.insert(v4, until);
    }

    /// Up to `most` known IPv4 addresses at `now` (the latest to expire), sorted.
    pub fn known_v4(&self, now: u64, most: usize) -> Vec<u32> {
        let recent = self.recent_v4.lock().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<(u64, u32)> = recent
            .iter()
            .filter(|(ip, expiry)| {
                **expiry > now && self.get(IpAddr::V4(**ip), now) == Trust::Known
            })
            .map(|(ip, expiry)| (*expiry, u32::from(*ip)))
            .collect();
        drop(recent);
        if live.len() > most {
            live.select_nth_unstable_by(most, |a, b| b.cmp(a));
            live.truncate(most);
        }
        let mut addresses: Vec<u32> = live.into_iter().map(|(_, a)| a).collect();
        addresses.sort_unstable();
        addresses
    }

    /// Remembers `ip` as bad from `now` until `until` (seconds). A known source stays known: its
    /// pass outweighs a burst of refusals (the rate limiter still applies to it). Nor does a bad
    /// mark take the slot of *another* source known at `now`: a flood from as many addresses as
    /// the table has slots would otherwise overwrite most known customers (their new
    /// connections then start on the open runtime, and the gate drops their SYNs). Only a
    /// source that earned being known (a pass, a key, a person's pace) can take a known one's
    /// slot.
    pub fn mark_bad(&self, ip: IpAddr, now: u64, until: u64) {
        let (_, slot) = self.place(ip);
        let state = self.states[slot].load(Relaxed);
        let known_there = state & 0xff == KNOWN && state >> 8 > now;
        if !known_there {
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
        t.mark_bad(ip("127.9.9.9"), 10, 50);
        assert_eq!(t.get(ip("127.1.2.3"), 10), Trust::Known);
        assert_eq!(
            t.get(ip("::ffff:127.1.2.3"), 10),
            Trust::Known,
            "the same client"
        );
        assert_eq!(t.get(ip("127.9.9.9"), 10), Trust::Bad);
        assert_eq!(t.get(ip("127.9.9.9"), 50), Trust::Unknown, "expired");
        t.mark_bad(ip("127.1.2.3"), 10, 200);
        assert_eq!(t.get(ip("127.1.2.3"), 10), Trust::Known, "a pass outweighs");
        t.mark_bad(ip("127.1.2.3"), 100, 200);
        assert_eq!(
            t.get(ip("127.1.2.3"), 110),
            Trust::Bad,
            "once the pass expired"
        );
    }

    #[test]
    fn a_million_sources_do_not_grow_it() {
        let t = TrustTable::default();
        let bytes = t.memory_bytes();
        for i in 0..1_000_000u32 {
            t.mark_bad(IpAddr::V4((0x0A00_0000 | i).into()), 1, 100);
        }
        t.mark_known(ip("127.1.2.3"), 100);
        assert_eq!(t.get(ip("127.1.2.3"), 1), Trust::Known);
        assert_eq!(t.memory_bytes(), bytes);
    }

    #[test]
    fn a_flood_marked_bad_does_not_make_the_node_forget_its_customers() {
        let t = TrustTable::default();
        let customers: Vec<IpAddr> = (0..200u32)
            .map(|i| IpAddr::V4((0x7F10_0000 | i << 8 | 1).into()))
            .collect();
        for c in &customers {
            t.mark_known(*c, 1_000);
        }
        // Two customers hashing to one slot: the later one holds it (by design, and ~26% of
        // runs have such a pair among 200). The rule is about the flood: whoever is known
        // before it stays known after it.
        let known_before: Vec<IpAddr> = customers
            .iter()
            .copied()
            .filter(|c| t.get(*c, 10) == Trust::Known)
            .collect();
        assert!(known_before.len() >= customers.len() - 10);
        // As many flooding addresses as the table has slots, four times over: without the
        // rule, ~98% of the customers' slots would be taken.
        for i in 0..(4 * SLOTS as u32) {
            t.mark_bad(IpAddr::V4((0x0A00_0000 | i).into()), 10, 100);
        }
        for c in &known_before {
            assert_eq!(t.get(*c, 10), Trust::Known, "{c}");
        }
        assert_eq!(t.known_v4(10, RECENT_KNOWN).len(), known_before.len());
        // The flood's own marks hold where they found room (the last ones marked: earlier
        // ones were mostly overwritten by later ones).
        let last = 4 * SLOTS as u32;
        let bad = (last - 1_000..last)
            .filter(|i| t.get(IpAddr::V4((0x0A00_0000 | i).into()), 10) == Trust::Bad)
            .count();
        assert!(bad > 900, "{bad}");
    }

    #[test]
    fn known_ipv4_addresses_are_listed_for_the_gate_within_a_bound() {
        let t = TrustTable::default();
        let now = crate::clock::unix_now();
        t.mark_known(ip("127.0.0.9"), now + 100);
        t.mark_known(ip("::ffff:127.0.0.7"), now + 200);
        t.mark_known(ip("::1"), now + 100);
        t.mark_known(ip("127.0.0.8"), now + 1);
        t.mark_bad(ip("127.0.0.5"), now, now + 100);
        let listed = |most| -> Vec<Ipv4Addr> {
            t.known_v4(now, most)
                .into_iter()
                .map(Ipv4Addr::from)
                .collect()
        };
        assert_eq!(
            listed(10),
            ["127.0.0.7", "127.0.0.8", "127.0.0.9"].map(|s| s.parse::<Ipv4Addr>().unwrap()),
            "sorted, IPv4 only (mapped ones too), never a bad one"
        );
        assert_eq!(
            listed(2),
            ["127.0.0.7", "127.0.0.9"].map(|s| s.parse::<Ipv4Addr>().unwrap()),
            "the latest to expire"
        );
        assert!(t.known_v4(now + 150, 10) == vec![u32::from(Ipv4Addr::new(127, 0, 0, 7))]);
        for i in 0..(2 * RECENT_KNOWN as u32) {
            t.mark_known(
                IpAddr::V4((0x7F10_0000 | i).into()),
                now + 300 + u64::from(i),
            );
        }
        // Within the bound; a few lost to collisions in the direct-mapped table.
        let listed = t.known_v4(now, usize::MAX).len();
        assert!(
            listed <= RECENT_KNOWN && listed > RECENT_KNOWN * 9 / 10,
            "{listed}"
        );
        assert!(
            t.known_v4(now, usize::MAX)
                .contains(&(0x7F10_0000 | (2 * RECENT_KNOWN as u32 - 1))),
            "the newest stays"
        );
    }
}
