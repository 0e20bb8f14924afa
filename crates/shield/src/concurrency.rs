//! Bounded, latency-adaptive concurrency toward storage, with priorities.
//!
//! At most `limit` storage reads run at once. The limit adapts (AIMD): a read slower than the
//! latency target lowers it by a tenth, a fast one raises it by 1/limit, between a floor and a
//! ceiling. Anonymous lookups may use only the part of the limit not reserved for priority
//! clients (API keys, challenge passes, sources the shield knows), and none at all while a
//! priority read waits: a freed slot goes to a waiting priority read first. (Under a flood the
//! anonymous reads run on the open runtime, which the kernel schedules last, so they hold their
//! slots long; without that rule a customer's read waited behind them and was shed.) A lookup
//! that cannot start within its queue deadline is refused at once (503): shedding early beats
//! queueing until the client times out. Ingest never goes through here: it has its own runtime
//! and the store's group commit.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Proven clients: an API key, a valid challenge pass, or a source the shield knows.
    High,
    /// Everyone else.
    Anonymous,
}

/// Fewest slots kept for priority reads whatever the percentage (when the limit allows). Under
/// a flood the limit sinks toward its floor, where a percentage leaves one slot: priority reads
/// then queue one behind the other, and on a node throttled to a quarter of a core (2.5 ms of CPU
/// every 10 ms) a handful of them in the same period outwait the queue deadline.
pub const MIN_RESERVED: usize = 4;

pub struct ConcurrencyLimiter {
    floor: usize,
    ceiling: usize,
    /// Share of the limit only high-priority reads may use, in percent.
    reserved_percent: usize,
    target: Duration,
    limit: Mutex<f64>,
    in_flight: AtomicUsize,
    /// Priority reads waiting for a slot.
    high_waiting: AtomicUsize,
    /// Wakes anonymous waiters, and priority ones ([`Self::freed_high`]) first.
    freed: Notify,
    freed_high: Notify,
}

/// A running storage read; report its latency with `done`, or drop it.
pub struct Permit<'a> {
    limiter: &'a ConcurrencyLimiter,
    started: Instant,
}

impl Permit<'_> {
    /// Releases the slot and feeds the read's latency to the limit.
    pub fn done(self) {
        let took = self.started.elapsed();
        let mut limit = self.limiter.limit.lock().unwrap_or_else(|p| p.into_inner());
        *limit = if took > self.limiter.target {
            (*limit * 0.9).max(self.limiter.floor as f64)
        } else {
            (*limit + 1.0 / *limit).min(self.limiter.ceiling as f64)
        };
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Relaxed);
        self.limiter.wake_one();
    }
}

/// Counts a priority read among the waiting ones while it lives.
struct Waiting<'a>(&'a ConcurrencyLimiter);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.high_waiting.fetch_sub(1, Relaxed);
        // Whatever slot it was woken for and did not take goes to the others.
        self.0.wake_one();
    }
}

impl ConcurrencyLimiter {
    pub fn new(
        floor: usize,
        ceiling: usize,
        reserved_percent: usize,
        target: Duration,
    ) -> ConcurrencyLimiter {
        assert!(floor >= 1 && floor <= ceiling && reserved_percent < 100);
        ConcurrencyLimiter {
            floor,
            ceiling,
            reserved_percent,
            target,
            limit: Mutex::new(ceiling as f64),
            in_flight: AtomicUsize::new(0),
            high_waiting: AtomicUsize::new(0),
            freed: Notify::new(),
            freed_high: Notify::new(),
        }
    }

    pub fn limit(&self) -> usize {
        *self.limit.lock().unwrap_or_else(|p| p.into_inner()) as usize
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    fn permit(&self) -> Permit<'_> {
        Permit {
            limiter: self,
            started: Instant::now(),
        }
    }

    fn wake_one(&self) {
        match self.high_waiting.load(Relaxed) {
            0 => self.freed.notify_one(),
            _ => self.freed_high.notify_one(),
        }
    }

    fn try_take(&self, priority: Priority) -> bool {
        let limit = self.limit();
        let cap = match priority {
            Priority::High => limit,
            Priority::Anonymous if self.high_waiting.load(Relaxed) > 0 => return false,
            Priority::Anonymous => {
                let reserved = (limit * self.reserved_percent / 100).max(MIN_RESERVED);
                limit.saturating_sub(reserved).max(1)
            }
        };
        self.in_flight
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1))
            .is_ok()
    }

    /// A slot, waiting at most `deadline`; `None` means: refuse now (503).
    pub async fn acquire(&self, priority: Priority, deadline: Duration) -> Option<Permit<'_>> {
        if self.try_take(priority) {
            return Some(self.permit());
        }
        let give_up = tokio::time::Instant::now() + deadline;
        let (freed, _waiting) = match priority {
            Priority::High => {
                self.high_waiting.fetch_add(1, Relaxed);
                (&self.freed_high, Some(Waiting(self)))
            }
            Priority::Anonymous => (&self.freed, None),
        };
        loop {
            let notified = freed.notified();
            if self.try_take(priority) {
                return Some(self.permit());
            }
            if tokio::time::timeout_at(give_up, notified).await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn anonymous_reads_leave_room_for_priority_ones_and_are_shed_on_time() {
        let l = ConcurrencyLimiter::new(1, 20, 20, Duration::from_secs(1));
        let mut held = Vec::new();
        for _ in 0..16 {
            held.push(
                l.acquire(Priority::Anonymous, Duration::ZERO)
                    .await
                    .unwrap(),
            );
        }
        assert!(
            l.acquire(Priority::Anonymous, Duration::from_millis(20))
                .await
                .is_none(),
            "anonymous cap is 80%"
        );
        let high = l.acquire(Priority::High, Duration::ZERO).await;
        assert!(high.is_some(), "priority clients use the reserve");
        drop(held.pop());
        drop(high);
        assert!(
            l.acquire(Priority::Anonymous, Duration::from_millis(20))
                .await
                .is_some(),
            "a freed slot is reused"
        );
        // At a small limit, the reserve is MIN_RESERVED slots, not 20% of it.
        let small = ConcurrencyLimiter::new(8, 8, 20, Duration::from_secs(1));
        let mut anonymous = Vec::new();
        while let Some(p) = small.acquire(Priority::Anonymous, Duration::ZERO).await {
            anonymous.push(p);
        }
        assert_eq!(anonymous.len(), 8 - MIN_RESERVED);
        for _ in 0..MIN_RESERVED {
            assert!(
                small
                    .acquire(Priority::High, Duration::ZERO)
                    .await
                    .is_some()
            );
        }
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiting_priority_read_before_earlier_anonymous_ones() {
        // No reserve: the freed slot is one an anonymous read may take.
        let l = std::sync::Arc::new(ConcurrencyLimiter::new(2, 2, 0, Duration::from_secs(1)));
        let anonymous = l.acquire(Priority::Anonymous, Duration::ZERO).await;
        let high = l.acquire(Priority::High, Duration::ZERO).await;
        assert!(anonymous.is_some() && high.is_some());
        let wait = |priority| {
            let l = l.clone();
            tokio::spawn(async move {
                l.acquire(priority, Duration::from_millis(300))
                    .await
                    .map(drop)
                    .is_some()
            })
        };
        // Anonymous readers queue first, then a priority one.
        let early: Vec<_> = (0..3).map(|_| wait(Priority::Anonymous)).collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let l2 = l.clone();
        let priority = tokio::spawn(async move {
            let p = l2.acquire(Priority::High, Duration::from_millis(300)).await;
            // Holds it until the anonymous waiters gave up.
            tokio::time::sleep(Duration::from_millis(400)).await;
            p.is_some()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(anonymous);
        assert!(
            priority.await.unwrap(),
            "the priority read got the freed slot"
        );
        for e in early {
            assert!(!e.await.unwrap(), "no anonymous read took it");
        }
        drop(high);
    }

    #[tokio::test]
    async fn a_waiting_read_gets_a_slot_freed_before_its_deadline() {
        let l = std::sync::Arc::new(ConcurrencyLimiter::new(1, 1, 0, Duration::from_secs(1)));
        let first = l
            .acquire(Priority::Anonymous, Duration::ZERO)
            .await
            .unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                l.acquire(Priority::Anonymous, Duration::from_secs(5))
                    .await
                    .is_some()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn slow_reads_lower_the_limit_and_fast_ones_raise_it() {
        let l = ConcurrencyLimiter::new(2, 100, 0, Duration::from_millis(1));
        for _ in 0..30 {
            let p = l.acquire(Priority::High, Duration::ZERO).await.unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
            p.done();
        }
        let lowered = l.limit();
        assert!(lowered < 10, "{lowered}");
        let fast = ConcurrencyLimiter::new(2, 100, 0, Duration::from_secs(10));
        *fast.limit.lock().unwrap() = 2.0;
        for _ in 0..100 {
            fast.acquire(Priority::High, Duration::ZERO)
                .await
                .unwrap()
                .done();
        }
        assert!(fast.limit() > 5, "{}", fast.limit());
        assert!(lowered >= 2, "never below the floor");
    }
}
