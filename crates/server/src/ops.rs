//! The live operations page (`GET /ops` on the ingest listener) and its data (`GET /ops/data`).
//!
//! A sampler task turns the metrics counters into per-second rates once a second and keeps the
//! last [`OPS_SAMPLES`] seconds in a ring; the page (self-contained: inline CSS, JS and SVG, no
//! CDN) polls the data and draws it. Reading the page costs the node one small JSON render.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::app::App;
use crate::metrics::{Listener, STATUS_LABELS};

/// Seconds of history kept (and drawn).
pub const OPS_SAMPLES: usize = 300;

/// One second of traffic, as rates.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sample {
    /// Unix time, seconds.
    pub t: u64,
    /// Public lookups answered with a parcel or a page (2xx, 3xx).
    pub public_ok: u64,
    /// Public requests refused as invalid or unknown (400, 404, 405, 413).
    pub public_invalid: u64,
    /// Public requests refused to protect the node (429, 503, other refusals) and connections
    /// closed at the cap.
    pub public_refused: u64,
    /// Events acknowledged (accepted + duplicates).
    pub ingest_events: u64,
    pub ingest_batches: u64,
    /// Mean time to make a batch durable over the second, in milliseconds.
    pub commit_ms: f64,
    pub connections_public: u64,
    pub memory_mb: u64,
}

#[derive(Default)]
struct Totals {
    ok: u64,
    invalid: u64,
    refused: u64,
    events: u64,
    batches: u64,
    commits: u64,
    commit_micros: u64,
}

fn totals(app: &App) -> Totals {
    let by_status = app.metrics.status_totals(Listener::Public);
    let mut t = Totals::default();
    for (status, n) in STATUS_LABELS.iter().zip(by_status) {
        match status {
            200..=399 => t.ok += n,
            400 | 404 | 405 | 413 => t.invalid += n,
            _ => t.refused += n,
        }
    }
    t.refused += app.metrics.connections_refused[Listener::Public as usize].load(Relaxed);
    t.events =
        app.metrics.ingest_accepted.load(Relaxed) + app.metrics.ingest_duplicates.load(Relaxed);
    t.batches = app.metrics.ingest_batches.load(Relaxed);
    (t.commits, t.commit_micros) = app.metrics.commit_totals();
    t
}

/// The ring of recent samples.
#[derive(Default)]
pub struct OpsHistory {
    samples: Mutex<VecDeque<Sample>>,
}

impl OpsHistory {
    pub fn snapshot(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn push(&self, sample: Sample) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() == OPS_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }
}

/// Samples the metrics once a second until shutdown.
pub async fn sample(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = totals(&app);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = totals(&app);
        let commits = now.commits - last.commits;
        let sample = Sample {
            t: unix_now(),
            public_ok: now.ok - last.ok,
            public_invalid: now.invalid - last.invalid,
            public_refused: now.refused - last.refused,
            ingest_events: now.events - last.events,
            ingest_batches: now.batches - last.batches,
            commit_ms: if commits == 0 {
                0.0
            } else {
                (now.commit_micros - last.commit_micros) as f64 / commits as f64 / 1e3
            },
            connections_public: app.metrics.connections_open[Listener::Public as usize]
                .load(Relaxed),
            memory_mb: crate::metrics::resident_memory_bytes().unwrap_or(0) >> 20,
        };
        app.ops.push(sample);
        last = now;
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `GET /ops/data`.
pub fn data(app: &App) -> String {
    serde_json::json!({
        "now": unix_now(),
        "interval_seconds": 1,
        "samples": app.ops.snapshot(),
        "cache_entries": app.cache.len(),
        "shield": app.shield_status(),
    })
    .to_string()
}

/// `GET /ops`.
pub const PAGE: &str = include_str!("ops.html");
