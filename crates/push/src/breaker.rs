//! A circuit breaker per endpoint, so a dead endpoint costs one probe at a time, not a stream of
//! timeouts.
//!
//! Closed: deliveries go out; `failures_to_open` consecutive failures open it. Open: nothing goes
//! out until `open_for` has passed (doubling at each reopening, up to `open_for_max`); the
//! dispatcher gives the endpoint's deliveries back to the outbox, due when the breaker can probe.
//! Half-open: exactly one delivery goes out as a probe; success closes the breaker, failure
//! reopens it for longer. A success reported while open (a request that started before the
//! breaker opened) closes it too: the endpoint answers.

use std::time::{Duration, Instant};

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures_to_open: u32,
    pub open_for: Duration,
    pub open_for_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures_to_open: 5,
            open_for: Duration::from_secs(30),
            open_for_max: Duration::from_secs(600),
        }
    }
}

/// The state as reported in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What the breaker says about sending one more delivery now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send it.
    Go,
    /// Send it as the half-open probe (the only one in flight).
    Probe,
    /// Do not send before this instant.
    Wait(Instant),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Inner,
    /// Consecutive openings without a success between them (the doubling exponent).
    openings: u32,
}

impl Breaker {
    #[must_use]
    pub fn new(config: BreakerConfig) -> Self {
        assert!(config.failures_to_open > 0);
        Breaker {
            config,
            inner: Inner::Closed { failures: 0 },
            openings: 0,
        }
    }

    #[must_use]
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether the breaker holds no memory worth keeping (closed, no recent failure).
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.inner == Inner::Closed { failures: 0 }
    }

    /// Asks to send one delivery now.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.inner {
            Inner::Closed { .. } => Permit::Go,
            Inner::Open { until } if now < until => Permit::Wait(until),
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                self.inner = Inner::HalfOpen { probing: true };
                Permit::Probe
            }
            Inner::HalfOpen { probing: true } => Permit::Wait(now + self.config.open_for / 4),
        }
    }

    /// Reports an attempt's result.
    pub fn record(&mut self, success: bool, now: Instant) {
        if success {
            self.inner = Inner::Closed { failures: 0 };
            self.openings = 0;
            return;
        }
        match self.inner {
            Inner::Closed { failures } if failures + 1 < self.config.failures_to_open => {
                self.inner = Inner::Closed {
                    failures: failures + 1,
                };
            }
            Inner::Closed { .. } | Inner::HalfOpen { .. } => self.open(now),
            Inner::Open { .. } => {}
        }
    }

    /// A probe that was granted but not sent (nothing to learn from it).
    pub fn abandon_probe(&mut self) {
        if self.inner == (Inner::HalfOpen { probing: true }) {
            self.inner = Inner::HalfOpen { probing: false };
        }
    }

    fn open(&mut self, now: Instant) {
        let factor = 1u32.checked_shl(self.openings.min(16)).unwrap_or(u32::MAX);
        let open_for = self
            .config
            .open_for
            .saturating_mul(factor)
            .min(self.config.open_for_max);
        self.openings = self.openings.saturating_add(1);
        self.inner = Inner::Open {
            until: now + open_for,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures_to_open: 3,
            open_for: Duration::from_secs(10),
            open_for_max: Duration::from_secs(25),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = Breaker::new(config());
        b.record(false, t);
        b.record(false, t);
        b.record(true, t);
        b.record(false, t);
        b.record(false, t);
        assert_eq!(b.state(t), BreakerState::Closed);
        assert_eq!(b.permit(t), Permit::Go);
        b.record(false, t);
        assert_eq!(b.state(t), BreakerState::Open);
        assert_eq!(b.permit(t), Permit::Wait(t + Duration::from_secs(10)));
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let t = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.record(false, t);
        }
        let later = t + Duration::from_secs(11);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert_eq!(b.permit(later), Permit::Probe);
        assert!(matches!(b.permit(later), Permit::Wait(_)));
        b.record(true, later);
        assert_eq!(b.state(later), BreakerState::Closed);
        assert_eq!(b.permit(later), Permit::Go);
    }

    #[test]
    fn a_failed_probe_reopens_for_longer_up_to_the_max() {
        let t = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.record(false, t);
        }
        let t1 = t + Duration::from_secs(11);
        assert_eq!(b.permit(t1), Permit::Probe);
        b.record(false, t1);
        assert_eq!(b.permit(t1), Permit::Wait(t1 + Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(21);
        assert_eq!(b.permit(t2), Permit::Probe);
        b.record(false, t2);
        assert_eq!(b.permit(t2), Permit::Wait(t2 + Duration::from_secs(25)));
    }

    #[test]
    fn an_abandoned_probe_can_be_granted_again() {
        let t = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.record(false, t);
        }
        let later = t + Duration::from_secs(11);
        assert_eq!(b.permit(later), Permit::Probe);
        b.abandon_probe();
        assert_eq!(b.permit(later), Permit::Probe);
    }
}
