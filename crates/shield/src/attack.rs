//! Attack mode: switches on by itself when the node is saturated or flooded with bogus requests
//! **by many sources**, and off after a calm period (hysteresis, so it does not flap). It can also
//! be forced on or off.
//!
//! Each window (typically one second) says how the node fared:
//! - *saturated*: the public runtime's scheduling lag, the requests' latency or the CPU used
//!   out of the node's allowance crossed a threshold — seen where it happens, not after a
//!   request head was parsed;
//! - *abusive*: at least `min_requests` requests, and a share of them refused or bogus (rate
//!   limited, unknown or invalid numbers, challenges not met) at or above `refused_ratio`;
//! - *broad*: no single address and no single prefix made half of the requests. One client,
//!   however greedy, is the rate limiter's business: it cannot switch attack mode on for
//!   everyone.
//!
//! Attack mode switches on after `on_windows` windows in a row with at least `min_requests`
//! requests that are broad and saturated or abusive; off after `calm_windows` in a row that are
//! quiet (fewer than half `min_requests`) or neither (below half of each threshold).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackMode {
    Auto,
    On,
    Off,
}

impl std::str::FromStr for AttackMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(AttackMode::Auto),
            "on" => Ok(AttackMode::On),
            "off" => Ok(AttackMode::Off),
            other => Err(format!("auto, on or off, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct AttackSettings {
    pub mode: AttackMode,
    /// Refused or bogus / all public requests over a window that counts as abusive.
    pub refused_ratio: f64,
    /// Fewest requests in a window for the ratio to count (a quiet node is never "under attack").
    pub min_requests: u64,
    /// Request latency p99 (from the request's first byte) that counts as saturated.
    pub p99: Duration,
    /// Scheduling lag of the public runtime that counts as saturated.
    pub lag: Duration,
    /// Share of the node's CPU allowance used that counts as saturated (0 disables).
    pub busy: f64,
    /// Hot windows in a row before attack mode switches on.
    pub on_windows: u32,
    /// Windows in a row below half the thresholds before attack mode switches off.
    pub calm_windows: u32,
}

/// What one window (typically one second) looked like.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub requests: u64,
    /// Requests refused to protect the node, or answered as bogus (unknown or invalid numbers).
    pub refused: u64,
    /// Request latency p99, from the request's first byte.
    pub p99: Duration,
    /// Largest scheduling lag of the public runtime.
    pub lag: Duration,
    /// CPU used over the window, as a share of the node's allowance (0 when unknown).
    pub busy: f64,
    /// Requests of the busiest address, and of the busiest prefix (estimates).
    pub heaviest_source: u64,
    pub heaviest_prefix: u64,
}

impl Window {
    /// No address and no prefix made half of the requests.
    pub fn is_broad(&self) -> bool {
        self.requests > 0
            && self.heaviest_source.saturating_mul(2) < self.requests
            && self.heaviest_prefix.saturating_mul(2) < self.requests
    }

    fn refused_share(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.refused as f64 / self.requests as f64
        }
    }
}

/// Why a window counted as hot (for the log line that announces attack mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Saturated,
    Abusive,
}

pub struct AttackDetector {
    settings: AttackSettings,
    on: AtomicBool,
    /// (hot windows in a row, calm windows in a row)
    streaks: Mutex<(u32, u32)>,
}

impl AttackDetector {
    pub fn new(settings: AttackSettings) -> AttackDetector {
        AttackDetector {
            on: AtomicBool::new(settings.mode == AttackMode::On),
            settings,
            streaks: Mutex::new((0, 0)),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Whether a window shows saturation at `scale` of the thresholds (1 to switch on, ½ to
    /// count as calm).
    fn saturated(&self, w: &Window, scale: f64) -> bool {
        let s = &self.settings;
        w.lag >= s.lag.mul_f64(scale)
            || (w.requests > 0 && w.p99 >= s.p99.mul_f64(scale))
            || (s.busy > 0.0 && w.busy >= s.busy * scale)
    }

    fn abusive(&self, w: &Window, scale: f64) -> bool {
        w.requests >= self.settings.min_requests
            && w.refused_share() >= self.settings.refused_ratio * scale
    }

    /// Why this window is hot, if it is. A window with fewer than `min_requests` requests is
    /// never hot: a node lagging while it serves a trickle (say, its machine is busy with
    /// something else) is not under attack.
    pub fn cause(&self, w: &Window) -> Option<Cause> {
        if !w.is_broad() || w.requests < self.settings.min_requests {
            return None;
        }
        if self.saturated(w, 1.0) {
            Some(Cause::Saturated)
        } else if self.abusive(w, 1.0) {
            Some(Cause::Abusive)
        } else {
            None
        }
    }

    /// Feeds one window; returns `Some(new state)` when the mode changed.
    pub fn observe(&self, w: Window) -> Option<bool> {
        if self.settings.mode != AttackMode::Auto {
            return None;
        }
        let hot = self.cause(&w).is_some();
        let calm = w.requests < self.settings.min_requests / 2
            || (!self.saturated(&w, 0.5) && !self.abusive(&w, 0.5));
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        let (hot_run, calm_run) = &mut *streaks;
        *hot_run = if hot { *hot_run + 1 } else { 0 };
        *calm_run = if calm { *calm_run + 1 } else { 0 };
        if !self.is_on() && *hot_run >= self.settings.on_windows.max(1) {
            self.on.store(true, Relaxed);
            *calm_run = 0;
            return Some(true);
        }
        if self.is_on() && *calm_run >= self.settings.calm_windows {
            self.on.store(false, Relaxed);
            *hot_run = 0;
            return Some(false);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: AttackMode) -> AttackSettings {
        AttackSettings {
            mode,
            refused_ratio: 0.5,
            min_requests: 100,
            p99: Duration::from_millis(200),
            lag: Duration::from_millis(50),
            busy: 0.9,
            on_windows: 2,
            calm_windows: 3,
        }
    }

    /// A window from many sources (the busiest made 1% of the requests).
    fn w(requests: u64, refused: u64, p99_ms: u64) -> Window {
        Window {
            requests,
            refused,
            p99: Duration::from_millis(p99_ms),
            heaviest_source: requests / 100,
            heaviest_prefix: requests / 100,
            ..Window::default()
        }
    }

    #[test]
    fn switches_on_under_a_broad_flood_and_off_after_a_calm_period() {
        let d = AttackDetector::new(settings(AttackMode::Auto));
        assert_eq!(d.observe(w(1_000, 100, 5)), None);
        assert_eq!(d.observe(w(50, 50, 5)), None, "too few requests to judge");
        assert_eq!(d.observe(w(10_000, 6_000, 5)), None, "one hot window");
        assert_eq!(d.observe(w(10_000, 6_000, 5)), Some(true));
        assert!(d.is_on());
        assert_eq!(d.observe(w(10_000, 100, 5)), None);
        assert_eq!(
            d.observe(w(10_000, 4_000, 5)),
            None,
            "not calm enough: the count restarts"
        );
        for _ in 0..2 {
            assert_eq!(d.observe(w(10_000, 100, 5)), None);
        }
        assert_eq!(d.observe(w(10_000, 100, 5)), Some(false));
        assert!(!d.is_on());
    }

    #[test]
    fn saturation_alone_switches_it_on_even_when_everything_is_answered() {
        let d = AttackDetector::new(settings(AttackMode::Auto));
        let lagging = Window {
            lag: Duration::from_millis(120),
            ..w(3_000, 0, 1)
        };
        assert_eq!(d.observe(lagging), None);
        assert_eq!(d.observe(lagging), Some(true));
        let d = AttackDetector::new(settings(AttackMode::Auto));
        let busy = Window {
            busy: 0.97,
            ..w(3_000, 0, 1)
        };
        d.observe(busy);
        assert_eq!(d.observe(busy), Some(true), "CPU at its allowance");
        let d = AttackDetector::new(settings(AttackMode::Auto));
        d.observe(w(1_000, 0, 900));
        assert_eq!(d.observe(w(1_000, 0, 900)), Some(true), "latency alone");
    }

    #[test]
    fn one_source_or_one_prefix_cannot_switch_it_on() {
        let d = AttackDetector::new(settings(AttackMode::Auto));
        // One address pipelining 600 lookups (550 refused) beside 200 customers, lagging.
        let one_address = Window {
            requests: 800,
            refused: 550,
            heaviest_source: 600,
            heaviest_prefix: 600,
            lag: Duration::from_millis(80),
            ..Window::default()
        };
        let one_prefix = Window {
            heaviest_source: 20,
            ..one_address
        };
        for _ in 0..10 {
            assert_eq!(d.observe(one_address), None);
            assert_eq!(d.observe(one_prefix), None);
        }
        assert!(!d.is_on());
    }

    #[test]
    fn a_lagging_node_serving_a_trickle_is_not_under_attack() {
        let d = AttackDetector::new(settings(AttackMode::Auto));
        let trickle = Window {
            lag: Duration::from_millis(300),
            ..w(20, 0, 1)
        };
        for _ in 0..5 {
            assert_eq!(d.observe(trickle), None);
        }
        let flood = Window {
            lag: Duration::from_millis(300),
            ..w(5_000, 0, 1)
        };
        d.observe(flood);
        assert_eq!(d.observe(flood), Some(true));
        for _ in 0..2 {
            assert_eq!(d.observe(trickle), None);
        }
        assert_eq!(
            d.observe(trickle),
            Some(false),
            "quiet again, however laggy"
        );
    }

    #[test]
    fn forced_modes_do_not_move() {
        let on = AttackDetector::new(settings(AttackMode::On));
        assert!(on.is_on());
        for _ in 0..10 {
            assert_eq!(on.observe(w(0, 0, 0)), None);
        }
        assert!(on.is_on());
        let off = AttackDetector::new(settings(AttackMode::Off));
        for _ in 0..10 {
            assert_eq!(off.observe(w(100_000, 100_000, 10_000)), None);
        }
        assert!(!off.is_on());
    }
}
