//! The prefixes refused most recently (for the operations page): a Space-Saving top-k table of
//! fixed size. Updates are sampled: a refusal that finds the table busy is not counted, so this
//! can never slow the refusal path down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Prefixes tracked at most.
pub const CAPACITY: usize = 256;

#[derive(Default)]
pub struct RefusedPrefixes {
    counts: Mutex<HashMap<IpAddr, u64>>,
}

impl RefusedPrefixes {
    pub fn record(&self, prefix: IpAddr) {
        let Ok(mut counts) = self.counts.try_lock() else {
            return;
        };
        if let Some(n) = counts.get_mut(&prefix) {
            *n += 1;
            return;
        }
        if counts.len() < CAPACITY {
            counts.insert(prefix, 1);
            return;
        }
        // Space-Saving: the newcomer takes the smallest entry's place and count.
        if let Some((&victim, &min)) = counts.iter().min_by_key(|(_, n)| **n) {
            counts.remove(&victim);
            counts.insert(prefix, min + 1);
        }
    }

    /// The `k` most refused prefixes, most first.
    pub fn top(&self, k: usize) -> Vec<(IpAddr, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = counts.iter().map(|(p, n)| (*p, *n)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    /// Halves every count (called periodically, so the table shows recent refusals).
    pub fn decay(&self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.retain(|_, n| {
            *n /= 2;
            *n > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_prefixes_rise_to_the_top_in_bounded_memory() {
        let t = RefusedPrefixes::default();
        for i in 0..100_000u32 {
            t.record(IpAddr::V4((i << 8).into()));
            if i % 10 == 0 {
                t.record("127.66.0.0".parse().unwrap());
            }
        }
        assert!(t.counts.lock().unwrap().len() <= CAPACITY);
        assert_eq!(t.top(1)[0].0, "127.66.0.0".parse::<IpAddr>().unwrap());
        t.decay();
        assert!(t.top(1)[0].1 >= 5_000 / 2);
    }
}
