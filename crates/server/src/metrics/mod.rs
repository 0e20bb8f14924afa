//! Prometheus metrics, kept in fixed arrays of atomics: recording a request is a few relaxed
//! increments with no lock and no allocation, so counting cannot become the bottleneck during a
//! flood. Label sets are closed enums ([`Listener`], [`Route`]), so the number of series is
//! bounded.
//!
//! - `render.rs`: the Prometheus text exposition;
//! - `history.rs`: the last minutes of per-second rates, for the operations page.

mod history;
pub mod render;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

pub use history::{OPS_SAMPLES, OpsHistory, Sample};

use crate::labels::labelled;

labelled! {
    /// Which listener answered.
    pub enum Listener {
        Public = "public",
        Ingest = "ingest",
    }
}

labelled! {
    /// The route a request matched (`other` for anything unknown).
    pub enum Route {
        Parcel = "parcel",
        Track = "track",
        Suivi = "suivi",
        TrackForm = "track_form",
        Index = "index",
        Healthz = "healthz",
        Readyz = "readyz",
        Events = "events",
        Metrics = "metrics",
        Ops = "ops",
        OpsData = "ops_data",
        Openapi = "openapi",
        Challenge = "challenge",
        Webhooks = "webhooks",
        Alerts = "alerts",
        Other = "other",
    }
}

impl Route {
    /// Every route but `Other`, with the method and path template it serves and its listener
    /// (`None`: both). The OpenAPI document is checked against this list in tests.
    pub const SERVED: [(Route, &'static str, &'static str, Option<Listener>); 37] = [
        (
            Route::Challenge,
            "POST",
            "/v1/challenge",
            Some(Listener::Public),
        ),
        (
            Route::Parcel,
            "GET",
            "/v1/parcels/{tracking_number}",
            Some(Listener::Public),
        ),
        (
            Route::Track,
            "GET",
            "/track/{tracking_number}",
            Some(Listener::Public),
        ),
        (
            Route::Track,
            "GET",
            "/{lang}/track/{tracking_number}",
            Some(Listener::Public),
        ),
        (
            Route::Suivi,
            "GET",
            "/suivi/v2/idships/{idship}",
            Some(Listener::Public),
        ),
        (Route::TrackForm, "POST", "/track", Some(Listener::Public)),
        (
            Route::TrackForm,
            "POST",
            "/{lang}/track",
            Some(Listener::Public),
        ),
        (Route::Index, "GET", "/", Some(Listener::Public)),
        (Route::Index, "GET", "/{lang}/", Some(Listener::Public)),
        (Route::Healthz, "GET", "/healthz", None),
        (Route::Readyz, "GET", "/readyz", None),
        (Route::Openapi, "GET", "/openapi.json", None),
        (Route::Events, "POST", "/v1/events", Some(Listener::Ingest)),
        (Route::Metrics, "GET", "/metrics", Some(Listener::Ingest)),
        (Route::Ops, "GET", "/ops", Some(Listener::Ingest)),
        (Route::OpsData, "GET", "/ops/data", Some(Listener::Ingest)),
        (
            Route::Webhooks,
            "GET",
            "/v1/webhooks/endpoints",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "POST",
            "/v1/webhooks/endpoints",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "DELETE",
            "/v1/webhooks/endpoints/{endpoint_id}",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "GET",
            "/v1/webhooks/subscriptions",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "POST",
            "/v1/webhooks/subscriptions",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "GET",
            "/v1/webhooks/subscriptions/after/{tracking_number}/{endpoint_id}",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "POST",
            "/v1/webhooks/subscriptions/remove",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "POST",
            "/v1/webhooks/replay",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "GET",
            "/v1/webhooks/dead-letters",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "GET",
            "/v1/webhooks/dead-letters/after/{delivery_id}",
            Some(Listener::Public),
        ),
        (
            Route::Webhooks,
            "POST",
            "/v1/webhooks/dead-letters/replay",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "POST",
            "/alerts/{tracking_number}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "POST",
            "/{lang}/alerts/{tracking_number}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "GET",
            "/alerts/confirm/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "GET",
            "/{lang}/alerts/confirm/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "POST",
            "/alerts/confirm/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "POST",
            "/{lang}/alerts/confirm/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "GET",
            "/alerts/stop/{tracking_number}/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "GET",
            "/{lang}/alerts/stop/{tracking_number}/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "POST",
            "/alerts/stop/{tracking_number}/{token}",
            Some(Listener::Public),
        ),
        (
            Route::Alerts,
            "POST",
            "/{lang}/alerts/stop/{tracking_number}/{token}",
            Some(Listener::Public),
        ),
    ];
}

/// Statuses counted under their own label; anything else (0 here) is counted as `other`.
pub const STATUS_LABELS: [u16; 18] = [
    200, 207, 303, 304, 400, 401, 403, 404, 405, 408, 411, 413, 417, 429, 431, 500, 503, 0,
];
const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram with fixed buckets (cumulative on export).
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_SECONDS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }
}

/// The index of a request counter: listener × route × status label.
fn request_index(listener: usize, route: usize, status: usize) -> usize {
    (listener * Route::COUNT + route) * STATUS_LABELS.len() + status
}

/// Every metric of a node.
pub struct Metrics {
    requests: Vec<AtomicU64>,
    latency: [Histogram; Listener::COUNT],
    pub connections_refused: [AtomicU64; Listener::COUNT],
    pub connections_open: [AtomicU64; Listener::COUNT],
    pub ingest_batches: AtomicU64,
    pub ingest_accepted: AtomicU64,
    pub ingest_duplicates: AtomicU64,
    pub ingest_refused_events: AtomicU64,
    commit_latency: Histogram,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub store_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            requests: (0..Listener::COUNT * Route::COUNT * STATUS_LABELS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: std::array::from_fn(|_| Histogram::new()),
            connections_refused: Default::default(),
            connections_open: Default::default(),
            ingest_batches: AtomicU64::new(0),
            ingest_accepted: AtomicU64::new(0),
            ingest_duplicates: AtomicU64::new(0),
            ingest_refused_events: AtomicU64::new(0),
            commit_latency: Histogram::new(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, listener: Listener, route: Route, status: u16, took: Duration) {
        let s = STATUS_LABELS
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUS_LABELS.len() - 1);
        let i = request_index(listener.index(), route.index(), s);
        self.requests[i].fetch_add(1, Relaxed);
        self.latency[listener.index()].observe(took);
    }

    /// Requests answered by one listener, per status of [`STATUS_LABELS`], over all routes.
    pub fn status_totals(&self, listener: Listener) -> [u64; STATUS_LABELS.len()] {
        let mut out = [0; STATUS_LABELS.len()];
        for r in 0..Route::COUNT {
            for (s, total) in out.iter_mut().enumerate() {
                *total += self.requests[request_index(listener.index(), r, s)].load(Relaxed);
            }
        }
        out
    }

    /// Commits so far and their summed duration in microseconds.
    pub fn commit_totals(&self) -> (u64, u64) {
        (
            self.commit_latency.count.load(Relaxed),
            self.commit_latency.sum_micros.load(Relaxed),
        )
    }

    pub fn commit(&self, took: Duration) {
        self.commit_latency.observe(took);
    }
}

/// Resident set size from /proc (Linux); `None` elsewhere.
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_under_their_labels() {
        let m = Metrics::new();
        m.request(
            Listener::Public,
            Route::Parcel,
            200,
            Duration::from_micros(50),
        );
        m.request(
            Listener::Public,
            Route::Parcel,
            200,
            Duration::from_millis(2),
        );
        m.request(Listener::Ingest, Route::Events, 418, Duration::ZERO);
        let text = m.render();
        assert!(text.contains(
            "rempart_http_requests_total{listener=\"public\",route=\"parcel\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "rempart_http_requests_total{listener=\"ingest\",route=\"events\",status=\"other\"} 1"
        ));
        assert!(text.contains(
            "rempart_http_request_duration_seconds_bucket{listener=\"public\",le=\"0.0001\"} 1"
        ));
        assert!(
            text.contains("rempart_http_request_duration_seconds_count{listener=\"public\"} 2")
        );
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert_eq!(m.status_totals(Listener::Public)[0], 2);
    }

    #[test]
    fn every_route_but_other_is_listed_as_served_once() {
        let mut listed: Vec<&str> = Route::SERVED.iter().map(|(r, ..)| r.label()).collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed.len(), Route::COUNT - 1);
        assert!(!listed.contains(&Route::Other.label()));
    }
}
