//! The live operations page (`GET /ops` on the ingest listener) and its data (`GET /ops/data`).
//!
//! A sampler task turns the metrics counters into per-second rates once a second and keeps the
//! last [`crate::metrics::OPS_SAMPLES`] seconds in a ring; the page (self-contained: inline CSS, JS and SVG, no
//! CDN) polls the data and draws it. Reading the page costs the node one small JSON render.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::clock::unix_now;
use crate::metrics::{Listener, STATUS_LABELS, Sample};

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
    t.refused += app.metrics.connections_refused[Listener::Public.index()].load(Relaxed);
    t.events =
        app.metrics.ingest_accepted.load(Relaxed) + app.metrics.ingest_duplicates.load(Relaxed);
    t.batches = app.metrics.ingest_batches.load(Relaxed);
    (t.commits, t.commit_micros) = app.metrics.commit_totals();
    t
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
            connections_public: app.metrics.connections_open[Listener::Public.index()]
                .load(Relaxed),
            memory_mb: crate::metrics::resident_memory_bytes().unwrap_or(0) >> 20,
        };
        app.ops.push(sample);
        last = now;
    }
}

/// `GET /ops/data`.
pub fn data(app: &App) -> String {
    serde_json::json!({
        "now": unix_now(),
        "interval_seconds": 1,
        "samples": app.ops.snapshot(),
        "cache_entries": app.coherence.cache.len(),
        "shield": app.guard.status(),
        "push": app.push.as_ref().map(|push| push.status()),
    })
    .to_string()
}

/// `GET /ops`.
pub const PAGE: &str = include_str!("ops.html");
