//! Attack mode: switches on by itself when, over the last window, the share of public requests
//! refused to protect the node, or the lookup latency, crosses a threshold; switches off after a
//! calm period (hysteresis, so it does not flap). It can also be forced on or off.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy)]
pub struct AttackSettings {
    pub mode: AttackMode,
    /// Refused / all public requests over a window that switches attack mode on.
    pub refused_ratio: f64,
    /// Fewest requests in a window for the ratio to count (a quiet node is never "under attack").
    pub min_requests: u64,
    /// p99 lookup latency that switches attack mode on.
    pub p99: Duration,
    /// Windows in a row below half the thresholds before attack mode switches off.
    pub calm_windows: u32,
}

/// What one window (typically one second) looked like.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub requests: u64,
    pub refused: u64,
    pub p99: Duration,
}

pub struct AttackDetector {
    settings: AttackSettings,
    on: AtomicBool,
    calm: std::sync::Mutex<u32>,
}

impl AttackDetector {
    pub fn new(settings: AttackSettings) -> AttackDetector {
        AttackDetector {
            on: AtomicBool::new(settings.mode == AttackMode::On),
            settings,
            calm: std::sync::Mutex::new(0),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Feeds one window; returns `Some(new state)` when the mode changed.
    pub fn observe(&self, w: Window) -> Option<bool> {
        if self.settings.mode != AttackMode::Auto {
            return None;
        }
        let ratio = if w.requests == 0 {
            0.0
        } else {
            w.refused as f64 / w.requests as f64
        };
        let busy = w.requests >= self.settings.min_requests;
        let hot = busy && (ratio >= self.settings.refused_ratio || w.p99 >= self.settings.p99);
        let cool =
            !busy || (ratio < self.settings.refused_ratio / 2.0 && w.p99 < self.settings.p99 / 2);
        let mut calm = self.calm.lock().unwrap_or_else(|p| p.into_inner());
        if hot {
            *calm = 0;
            return (!self.on.swap(true, Relaxed)).then_some(true);
        }
        if self.is_on() {
            *calm = if cool { *calm + 1 } else { 0 };
            if *calm >= self.settings.calm_windows {
                *calm = 0;
                self.on.store(false, Relaxed);
                return Some(false);
            }
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
            calm_windows: 3,
        }
    }

    fn w(requests: u64, refused: u64, p99_ms: u64) -> Window {
        Window {
            requests,
            refused,
            p99: Duration::from_millis(p99_ms),
        }
    }

    #[test]
    fn switches_on_under_a_flood_and_off_after_a_calm_period() {
        let d = AttackDetector::new(settings(AttackMode::Auto));
        assert_eq!(d.observe(w(1_000, 100, 5)), None);
        assert_eq!(d.observe(w(50, 50, 5)), None, "too few requests to judge");
        assert_eq!(d.observe(w(10_000, 6_000, 5)), Some(true));
        assert!(d.is_on());
        assert_eq!(d.observe(w(10_000, 100, 5)), None);
        assert_eq!(
            d.observe(w(10_000, 4_000, 5)),
            None,
            "not calm enough: the count restarts"
        );
        assert_eq!(d.observe(w(10_000, 100, 5)), None);
        assert_eq!(d.observe(w(10_000, 100, 5)), None);
        assert_eq!(d.observe(w(10_000, 100, 5)), Some(false));
        assert!(!d.is_on());
        assert_eq!(
            d.observe(w(1_000, 0, 900)),
            Some(true),
            "latency alone switches it on"
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
        assert_eq!(off.observe(w(100_000, 100_000, 10_000)), None);
        assert!(!off.is_on());
    }
}
