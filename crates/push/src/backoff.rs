//! When to try a failed delivery again, and when to give up.
//!
//! Exponential backoff with full jitter: after the n-th failed attempt the next one waits a
//! random time, uniform between a quarter of `base` and `min(cap, base × 2ⁿ)`, so that many
//! deliveries failing together (an endpoint's outage) come back spread out instead of in waves.
//! The quarter-base floor keeps a failing endpoint from being hit in a tight loop. A delivery is
//! retried for [`Backoff::retry_for`] (24 hours by default) from the start of its retry window,
//! then parked in the dead letters at its next failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rempart_domain::Timestamp;

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// How long a delivery keeps being retried before it is parked.
    pub retry_for: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
            retry_for: Duration::from_secs(24 * 3600),
        }
    }
}

impl Backoff {
    /// The longest wait after `attempts` failures (before jitter).
    #[must_use]
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before the next attempt, after `attempts` failures; `random` is any 64-bit
    /// random number.
    #[must_use]
    pub fn delay(&self, attempts: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(attempts);
        let floor = (self.base / 4).min(ceiling);
        let span = ceiling.saturating_sub(floor).as_micros() as u64;
        let jitter = if span == 0 { 0 } else { random % (span + 1) };
        floor + Duration::from_micros(jitter)
    }

    /// Whether a delivery whose retry window started at `retry_since` should be parked now
    /// instead of retried.
    #[must_use]
    pub fn gives_up(&self, retry_since: Timestamp, now: Timestamp) -> bool {
        let elapsed = now.micros().saturating_sub(retry_since.micros());
        elapsed >= self.retry_for.as_micros() as i64
    }
}

/// A small lock-free random source for jitter (splitmix64 over an atomic counter): not for
/// secrets.
#[derive(Debug)]
pub struct Jitter(AtomicU64);

impl Jitter {
    /// Seeded from the OS, or from the clock if that fails.
    #[must_use]
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            seed = nanos.to_le_bytes();
        }
        Jitter(AtomicU64::new(u64::from_le_bytes(seed)))
    }

    pub fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A duration uniform in `[0, max]`.
    pub fn up_to(&self, max: Duration) -> Duration {
        let micros = max.as_micros() as u64;
        Duration::from_micros(self.next() % (micros + 1))
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), Duration::from_secs(10));
        assert_eq!(b.ceiling(1), Duration::from_secs(20));
        assert_eq!(b.ceiling(8), Duration::from_secs(2560));
        assert_eq!(b.ceiling(9), Duration::from_secs(3600));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(3600));
    }

    /// Even if every jittered wait came out at its longest, a delivery failing forever is retried
    /// many times and parked only once 24 hours have passed; at its shortest, it is still not
    /// parked before 24 hours.
    #[test]
    fn a_failing_delivery_is_retried_for_at_least_a_day() {
        let b = Backoff::default();
        for random in [0, u64::MAX] {
            let start = Timestamp(0);
            let mut now = start;
            let mut attempts = 0;
            while !b.gives_up(start, now) {
                attempts += 1;
                now = Timestamp(now.micros() + b.delay(attempts, random).as_micros() as i64);
            }
            assert!(now.micros() >= 24 * 3600 * 1_000_000);
            assert!(attempts >= 24, "only {attempts} attempts");
        }
    }

    proptest! {
        #[test]
        fn delays_stay_within_floor_and_ceiling(attempts in 0u32..100, random in any::<u64>()) {
            let b = Backoff::default();
            let d = b.delay(attempts, random);
            prop_assert!(d >= b.base / 4);
            prop_assert!(d <= b.ceiling(attempts));
        }
    }

    #[test]
    fn jitter_spreads() {
        let j = Jitter::new();
        let values: std::collections::HashSet<u64> = (0..100).map(|_| j.next() % 1000).collect();
        assert!(values.len() > 50);
        assert!(j.up_to(Duration::from_millis(5)) <= Duration::from_millis(5));
    }
}
