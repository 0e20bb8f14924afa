//! The dispatcher's counters, and their Prometheus text.
//!
//! Deliveries by channel and outcome are fixed arrays of atomics. Per-endpoint figures (failures,
//! breaker state) live in a table of at most [`MAX_ENDPOINT_SERIES`] entries: when it is full,
//! the entry with the fewest failures and a closed breaker gives way, so the endpoints worth
//! looking at stay listed and the number of series stays bounded whatever merchants do.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rempart_domain::Timestamp;
use rempart_store::push::{EndpointId, OutboxStats};

use crate::breaker::BreakerState;

/// Most endpoints with their own series.
pub const MAX_ENDPOINT_SERIES: usize = 256;

/// Every metric name, written once.
pub mod names {
    pub const DELIVERIES: &str = "rempart_push_deliveries_total";
    pub const IN_FLIGHT: &str = "rempart_push_in_flight";
    pub const HELD: &str = "rempart_push_held";
    pub const STORE_ERRORS: &str = "rempart_push_store_errors_total";
    pub const OUTBOX_PENDING: &str = "rempart_push_outbox_pending";
    pub const OUTBOX_DEAD: &str = "rempart_push_outbox_dead";
    pub const OUTBOX_OLDEST: &str = "rempart_push_outbox_oldest_pending_seconds";
    pub const OUTBOX_OVERFLOW: &str = "rempart_push_outbox_overflow_total";
    pub const ENDPOINT_FAILURES: &str = "rempart_push_endpoint_failures_total";
    pub const ENDPOINT_BREAKER: &str = "rempart_push_endpoint_breaker_state";
    pub const BREAKERS_OPEN: &str = "rempart_push_breakers_open";
}

/// Which channel a delivery went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Webhook = 0,
    Email = 1,
}
const CHANNELS: [&str; 2] = ["webhook", "email"];

/// What became of one delivery attempt (or non-attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted by the receiver (2xx; the relay's 250).
    Delivered = 0,
    /// Failed; scheduled again with backoff.
    Retried,
    /// Failed for good or for too long: parked in the dead letters.
    Dead,
    /// Nothing to send any more (the e-mail subscription is gone): acknowledged unsent.
    Dropped,
    /// Given back unsent for later: breaker open, queue full, lease about to expire.
    Deferred,
}
const OUTCOMES: [&str; 5] = ["delivered", "retried", "dead", "dropped", "deferred"];

/// A target's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointFigures {
    pub failures: u64,
    pub breaker: BreakerState,
}

/// A target a lane sends to (an endpoint, or the SMTP relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Endpoint(EndpointId),
    Relay,
}

impl Target {
    fn label(self) -> String {
        match self {
            Target::Endpoint(id) => id.to_string(),
            Target::Relay => "smtp".into(),
        }
    }
}

/// The counters; shared between the dispatcher and whoever renders `/metrics`.
#[derive(Debug, Default)]
pub struct PushMetrics {
    deliveries: [[AtomicU64; 5]; 2],
    in_flight: AtomicU64,
    held: AtomicU64,
    store_errors: AtomicU64,
    endpoints: Mutex<HashMap<Target, EndpointFigures>>,
}

impl PushMetrics {
    pub fn count(&self, channel: ChannelKind, outcome: Outcome) {
        self.deliveries[channel as usize][outcome as usize].fetch_add(1, Relaxed);
    }

    #[must_use]
    pub fn deliveries(&self, channel: ChannelKind, outcome: Outcome) -> u64 {
        self.deliveries[channel as usize][outcome as usize].load(Relaxed)
    }

    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_load(&self, in_flight: usize, held: usize) {
        self.in_flight.store(in_flight as u64, Relaxed);
        self.held.store(held as u64, Relaxed);
    }

    /// Records a failure against a target, and its breaker's state after it.
    pub(crate) fn endpoint(&self, target: Target, failed: bool, breaker: BreakerState) {
        let mut table = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&target) && table.len() >= MAX_ENDPOINT_SERIES {
            let evict = table
                .iter()
                .filter(|(_, f)| f.breaker == BreakerState::Closed)
                .min_by_key(|(_, f)| f.failures)
                .map(|(t, _)| *t);
            match evict {
                Some(t) => {
                    table.remove(&t);
                }
                None => return,
            }
        }
        let entry = table.entry(target).or_insert(EndpointFigures {
            failures: 0,
            breaker,
        });
        entry.failures += u64::from(failed);
        entry.breaker = breaker;
    }

    /// A target's figures, if it has a series.
    #[must_use]
    pub fn endpoint_figures(&self, target: Target) -> Option<EndpointFigures> {
        let table = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        table.get(&target).copied()
    }

    /// The targets with the most failures, most first, at most `limit` (the operations page).
    #[must_use]
    pub fn worst_targets(&self, limit: usize) -> Vec<(String, EndpointFigures)> {
        let table = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(String, EndpointFigures)> =
            table.iter().map(|(t, f)| (t.label(), *f)).collect();
        rows.sort_by(|a, b| b.1.failures.cmp(&a.1.failures).then(a.0.cmp(&b.0)));
        rows.truncate(limit);
        rows
    }

    /// Sends in flight and deliveries held (queued and in flight) by this node's dispatcher.
    #[must_use]
    pub fn load(&self) -> (u64, u64) {
        (self.in_flight.load(Relaxed), self.held.load(Relaxed))
    }

    /// Appends the Prometheus text of every push metric; the outbox's figures when given.
    pub fn render(&self, out: &mut String, outbox: Option<&OutboxStats>, now: Timestamp) {
        use names::*;
        let _ = writeln!(
            out,
            "# HELP {DELIVERIES} Push deliveries by channel and outcome."
        );
        let _ = writeln!(out, "# TYPE {DELIVERIES} counter");
        for (c, channel) in CHANNELS.iter().enumerate() {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let n = self.deliveries[c][o].load(Relaxed);
                let _ = writeln!(
                    out,
                    "{DELIVERIES}{{channel=\"{channel}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        gauge(
            out,
            IN_FLIGHT,
            "Deliveries being sent now.",
            self.in_flight.load(Relaxed),
        );
        gauge(
            out,
            HELD,
            "Leased deliveries held by this node (queued or in flight).",
            self.held.load(Relaxed),
        );
        let _ = writeln!(out, "# TYPE {STORE_ERRORS} counter");
        let _ = writeln!(out, "{STORE_ERRORS} {}", self.store_errors.load(Relaxed));
        if let Some(stats) = outbox {
            gauge(
                out,
                OUTBOX_PENDING,
                "Deliveries pending or leased.",
                stats.pending,
            );
            gauge(
                out,
                OUTBOX_DEAD,
                "Deliveries parked in the dead letters.",
                stats.dead,
            );
            let age = stats.oldest_pending.map_or(0, |t| {
                now.micros().saturating_sub(t.micros()).max(0) / 1_000_000
            });
            gauge(
                out,
                OUTBOX_OLDEST,
                "Age of the oldest pending delivery.",
                age as u64,
            );
            let _ = writeln!(
                out,
                "# HELP {OUTBOX_OVERFLOW} Deliveries not written because the outbox was full."
            );
            let _ = writeln!(out, "# TYPE {OUTBOX_OVERFLOW} counter");
            let _ = writeln!(out, "{OUTBOX_OVERFLOW} {}", stats.overflowed);
        }
        self.render_endpoints(out);
    }

    fn render_endpoints(&self, out: &mut String) {
        use names::*;
        let table = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = table.iter().map(|(t, f)| (*t, *f)).collect();
        drop(table);
        rows.sort_by_key(|(t, _)| *t);
        let _ = writeln!(out, "# TYPE {ENDPOINT_FAILURES} counter");
        for (target, f) in &rows {
            let _ = writeln!(
                out,
                "{ENDPOINT_FAILURES}{{endpoint=\"{}\"}} {}",
                target.label(),
                f.failures
            );
        }
        let _ = writeln!(
            out,
            "# HELP {ENDPOINT_BREAKER} 0 closed, 1 open, 2 half-open."
        );
        let _ = writeln!(out, "# TYPE {ENDPOINT_BREAKER} gauge");
        for (target, f) in &rows {
            let _ = writeln!(
                out,
                "{ENDPOINT_BREAKER}{{endpoint=\"{}\"}} {}",
                target.label(),
                f.breaker as u8
            );
        }
        let open = rows
            .iter()
            .filter(|(_, f)| f.breaker != BreakerState::Closed)
            .count();
        gauge(
            out,
            BREAKERS_OPEN,
            "Endpoints whose breaker is open or half-open.",
            open as u64,
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_outbox_and_endpoints() {
        let m = PushMetrics::default();
        m.count(ChannelKind::Webhook, Outcome::Delivered);
        m.count(ChannelKind::Webhook, Outcome::Delivered);
        m.count(ChannelKind::Email, Outcome::Dead);
        m.endpoint(Target::Endpoint(EndpointId(7)), true, BreakerState::Open);
        let stats = OutboxStats {
            pending: 3,
            dead: 1,
            oldest_pending: Some(Timestamp(10_000_000)),
            overflowed: 2,
        };
        let mut out = String::new();
        m.render(&mut out, Some(&stats), Timestamp(70_000_000));
        for line in [
            "rempart_push_deliveries_total{channel=\"webhook\",outcome=\"delivered\"} 2",
            "rempart_push_deliveries_total{channel=\"email\",outcome=\"dead\"} 1",
            "rempart_push_outbox_pending 3",
            "rempart_push_outbox_oldest_pending_seconds 60",
            "rempart_push_outbox_overflow_total 2",
            "rempart_push_endpoint_failures_total{endpoint=\"ep_0000000000000007\"} 1",
            "rempart_push_endpoint_breaker_state{endpoint=\"ep_0000000000000007\"} 1",
            "rempart_push_breakers_open 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
        }
    }

    #[test]
    fn the_endpoint_table_is_bounded_and_keeps_the_failing_ones() {
        let m = PushMetrics::default();
        m.endpoint(Target::Endpoint(EndpointId(0)), true, BreakerState::Open);
        for i in 1..(MAX_ENDPOINT_SERIES as u64 * 2) {
            m.endpoint(Target::Endpoint(EndpointId(i)), false, BreakerState::Closed);
        }
        let table = m.endpoints.lock().unwrap();
        assert_eq!(table.len(), MAX_ENDPOINT_SERIES);
        assert!(table.contains_key(&Target::Endpoint(EndpointId(0))));
    }
}
