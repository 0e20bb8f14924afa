//! Per-source rate limits in memory that does not grow with the number of sources.
//!
//! Requests are counted per address and per prefix (/24 for IPv4, /48 for IPv6) in count-min
//! sketches (4 rows of 2^16 saturating u16 counters, conservative update) over fixed one-second
//! windows; the rate of a key is the current window's count plus the previous window's, weighted
//! by how much of it still overlaps the last second (a sliding-window estimate). Memory: four
//! sketches of 512 KiB, whatever the flood. A count-min sketch can only overestimate, so a
//! legitimate source can be limited by collisions only when the sketch is crowded: with 2^16
//! columns and conservative update, a flood of a million distinct sources a second adds about 15
//! to each estimate, far below the default limits.
//!
//! Why not `governor`: its keyed limiter keeps one state per key in a map that grows with the
//! number of distinct sources — exactly what a flood from millions of addresses exploits.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

const ROWS: usize = 4;
const COLUMNS: usize = 1 << 16;

/// The address a client really has: an IPv4 client of a `[::]` listener arrives as an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), and is an IPv4 client for every rule here.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The /24 (IPv4) or /48 (IPv6) network of an address, as an address.
pub fn prefix_of(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xFFFF_FF00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
    }
}

struct Sketch {
    counters: Vec<AtomicU16>,
}

impl Sketch {
    fn new() -> Sketch {
        Sketch {
            counters: (0..ROWS * COLUMNS).map(|_| AtomicU16::new(0)).collect(),
        }
    }

    /// The counter of each row for `key`: one 64-bit mix (splitmix64's finaliser), cut into
    /// four 16-bit column indices. One hash per key instead of one per row.
    fn cells(key: u64) -> [usize; ROWS] {
        let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        std::array::from_fn(|row| row * COLUMNS + ((z >> (16 * row)) as usize & (COLUMNS - 1)))
    }

    fn estimate(&self, cells: &[usize; ROWS]) -> u32 {
        cells
            .iter()
            .map(|&c| u32::from(self.counters[c].load(Relaxed)))
            .min()
            .unwrap_or(0)
    }

    /// Conservative update: raise only the counters at the current minimum.
    fn add(&self, cells: &[usize; ROWS]) -> u32 {
        let min = self.estimate(cells);
        for &c in cells {
            let _ = self.counters[c].fetch_update(Relaxed, Relaxed, |v| {
                (u32::from(v) <= min).then(|| v.saturating_add(1))
            });
        }
        min + 1
    }

    fn clear(&self) {
        for c in &self.counters {
            c.store(0, Relaxed);
        }
    }
}

/// Counts of one key space (addresses or prefixes) over the current and previous windows.
struct Windowed {
    sketches: [Sketch; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Over a limit; retry after this many seconds.
    Limit {
        retry_after: u32,
        by_prefix: bool,
    },
}

pub struct RateLimiter {
    per_source: u32,
    per_prefix: u32,
    sources: Windowed,
    prefixes: Windowed,
    started: Instant,
    /// Index of the current window (seconds since start).
    window: AtomicU64,
    rotate: Mutex<()>,
    /// The highest per-second rate of one address, and of one prefix, seen since
    /// [`RateLimiter::take_heaviest`] was last called.
    heaviest_source: AtomicU64,
    heaviest_prefix: AtomicU64,
}

fn ip_key(ip: IpAddr) -> u64 {
    match canonical(ip) {
        IpAddr::V4(v4) => u64::from(u32::from(v4)) | (4 << 56),
        IpAddr::V6(v6) => {
            let v = u128::from(v6);
            (v as u64) ^ ((v >> 64) as u64).rotate_left(17) ^ (6 << 56)
        }
    }
}

impl RateLimiter {
    /// Limits in requests per second, per address and per prefix.
    pub fn new(per_source: u32, per_prefix: u32) -> RateLimiter {
        RateLimiter {
            per_source: per_source.max(1),
            per_prefix: per_prefix.max(1),
            sources: Windowed {
                sketches: [Sketch::new(), Sketch::new()],
            },
            prefixes: Windowed {
                sketches: [Sketch::new(), Sketch::new()],
            },
            started: Instant::now(),
            window: AtomicU64::new(0),
            rotate: Mutex::new(()),
            heaviest_source: AtomicU64::new(0),
            heaviest_prefix: AtomicU64::new(0),
        }
    }

    /// The highest per-second request rate of one address and of one prefix since the last
    /// call (estimates: a count-min sketch can only overestimate). Attack mode reads it to tell
    /// a flood from many sources from one greedy client.
    pub fn take_heaviest(&self) -> (u64, u64) {
        (
            self.heaviest_source.swap(0, Relaxed),
            self.heaviest_prefix.swap(0, Relaxed),
        )
    }

    /// Bytes held, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        4 * ROWS * COLUMNS * std::mem::size_of::<AtomicU16>()
    }

    fn advance(&self, now: u64) {
        let current = self.window.load(Relaxed);
        if now <= current {
            return;
        }
        let Ok(_guard) = self.rotate.try_lock() else {
            return;
        };
        let current = self.window.load(Relaxed);
        if now <= current {
            return;
        }
        // The sketch of window w is sketches[w % 2]; the one for `now` must start empty, and if
        // more than one window passed, the previous one too.
        for space in [&self.sources, &self.prefixes] {
            space.sketches[(now % 2) as usize].clear();
            if now > current + 1 {
                space.sketches[((now + 1) % 2) as usize].clear();
            }
        }
        self.window.store(now, Relaxed);
    }

    /// Counts a request from `ip` and says whether it is within the limits.
    pub fn check(&self, ip: IpAddr) -> Decision {
        self.check_at(ip, self.started.elapsed().as_secs_f64())
    }

    /// `check` at `seconds` since the limiter started (tests drive time through this).
    pub fn check_at(&self, ip: IpAddr, seconds: f64) -> Decision {
        let now = seconds as u64;
        self.advance(now);
        let window = self.window.load(Relaxed);
        let overlap = 1.0 - seconds.fract();
        let cur = (window % 2) as usize;
        let prev = 1 - cur;
        let rate = |space: &Windowed, key: u64| -> f64 {
            let cells = Sketch::cells(key);
            let count = space.sketches[cur].add(&cells);
            let before = if window == 0 {
                0
            } else {
                space.sketches[prev].estimate(&cells)
            };
            f64::from(count) + f64::from(before) * overlap
        };
        let by_source = rate(&self.sources, ip_key(ip));
        let by_prefix = rate(&self.prefixes, ip_key(prefix_of(ip)));
        self.heaviest_source.fetch_max(by_source as u64, Relaxed);
        self.heaviest_prefix.fetch_max(by_prefix as u64, Relaxed);
        if by_source > f64::from(self.per_source) {
            Decision::Limit {
                retry_after: 1,
                by_prefix: false,
            }
        } else if by_prefix > f64::from(self.per_prefix) {
            Decision::Limit {
                retry_after: 1,
                by_prefix: true,
            }
        } else {
            Decision::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4_clients() {
        let mapped = ip("::ffff:127.1.2.3");
        assert_eq!(canonical(mapped), ip("127.1.2.3"));
        assert_eq!(prefix_of(mapped), ip("127.1.2.0"));
        assert_ne!(prefix_of(mapped), prefix_of(ip("::ffff:127.1.9.3")));
        // One limit for one client, whichever form its address takes.
        let limiter = RateLimiter::new(3, 1_000);
        for _ in 0..3 {
            assert_eq!(limiter.check_at(ip("127.1.2.3"), 0.5), Decision::Allow);
        }
        assert!(matches!(
            limiter.check_at(mapped, 0.5),
            Decision::Limit {
                by_prefix: false,
                ..
            }
        ));
        assert_eq!(
            limiter.check_at(ip("::ffff:127.1.9.3"), 0.5),
            Decision::Allow
        );
    }

    #[test]
    fn the_heaviest_source_and_prefix_are_reported_once() {
        let limiter = RateLimiter::new(1_000, 100_000);
        for i in 0..40u8 {
            limiter.check_at(ip(&format!("127.5.5.{i}")), 0.5);
        }
        for _ in 0..10 {
            limiter.check_at(ip("127.9.9.9"), 0.5);
        }
        assert_eq!(limiter.take_heaviest(), (10, 40));
        assert_eq!(limiter.take_heaviest(), (0, 0));
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of(ip("127.12.34.56")), ip("127.12.34.0"));
        assert_eq!(prefix_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1::"));
    }

    #[test]
    fn a_source_over_its_rate_is_limited_and_others_are_not() {
        let l = RateLimiter::new(10, 1_000);
        let mut limited = 0;
        for i in 0..30 {
            if l.check_at(ip("127.1.1.1"), 5.0 + i as f64 * 0.01) != Decision::Allow {
                limited += 1;
            }
        }
        assert_eq!(limited, 20);
        assert_eq!(l.check_at(ip("127.1.1.2"), 5.3), Decision::Allow);
        // The limit lifts once the windows have moved on.
        assert_eq!(l.check_at(ip("127.1.1.1"), 7.5), Decision::Allow);
    }

    #[test]
    fn a_prefix_over_its_rate_is_limited_even_from_many_addresses() {
        let l = RateLimiter::new(10, 100);
        let mut limited = 0;
        for i in 0..250u32 {
            let a = IpAddr::V4((0x7F0A_0B00 | i).into());
            if let Decision::Limit {
                by_prefix: true, ..
            } = l.check_at(a, 3.2)
            {
                limited += 1;
            }
        }
        assert_eq!(limited, 150);
        assert_eq!(
            l.check_at(ip("127.10.12.1"), 3.3),
            Decision::Allow,
            "another /24 is fine"
        );
    }

    #[test]
    fn memory_does_not_grow_with_a_million_sources_and_legit_users_pass() {
        let l = RateLimiter::new(50, 2_000);
        let before = l.memory_bytes();
        // A million distinct sources within one second, 16 per /24.
        for i in 0..1_000_000u32 {
            let a = IpAddr::V4((0x0A00_0000 | (i & 0x000F) | ((i >> 4) << 8)).into());
            let _ = l.check_at(a, 10.0 + f64::from(i) / 2_000_000.0);
        }
        assert_eq!(l.memory_bytes(), before);
        assert!(before <= 2 * 1024 * 1024, "{before} bytes");
        // A legitimate user sending 5 requests in that second is still allowed.
        for k in 0..5 {
            assert_eq!(
                l.check_at(ip("192.0.2.77"), 10.6 + f64::from(k) * 0.01),
                Decision::Allow
            );
        }
    }
}
