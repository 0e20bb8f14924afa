//! Prometheus metrics, kept in fixed arrays of atomics: recording a request is a few relaxed
//! increments with no lock and no allocation, so counting cannot become the bottleneck during a
//! flood. Label sets are closed enums, so the number of series is bounded.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Which listener answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public = 0,
    Ingest = 1,
}
const LISTENERS: [&str; 2] = ["public", "ingest"];

/// The route a request matched (`other` for anything unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Parcel = 0,
    Track,
    TrackForm,
    Index,
    Healthz,
    Readyz,
    Events,
    Metrics,
    Ops,
    OpsData,
    Openapi,
    Challenge,
    Other,
}
const ROUTES: [&str; 13] = [
    "parcel",
    "track",
    "track_form",
    "index",
    "healthz",
    "readyz",
    "events",
    "metrics",
    "ops",
    "ops_data",
    "openapi",
    "challenge",
    "other",
];

impl Route {
    /// Every route but `Other`, with the method and path template it serves and its listener
    /// (`None`: both). The OpenAPI document is checked against this list in tests.
    pub const SERVED: [(Route, &'static str, &'static str, Option<Listener>); 12] = [
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
        (Route::TrackForm, "POST", "/track", Some(Listener::Public)),
        (Route::Index, "GET", "/", Some(Listener::Public)),
        (Route::Healthz, "GET", "/healthz", None),
        (Route::Readyz, "GET", "/readyz", None),
        (Route::Openapi, "GET", "/openapi.json", None),
        (Route::Events, "POST", "/v1/events", Some(Listener::Ingest)),
        (Route::Metrics, "GET", "/metrics", Some(Listener::Ingest)),
        (Route::Ops, "GET", "/ops", Some(Listener::Ingest)),
        (Route::OpsData, "GET", "/ops/data", Some(Listener::Ingest)),
    ];

    /// The `route` label.
    pub fn label(self) -> &'static str {
        ROUTES[self as usize]
    }
}

/// Statuses counted under their own label; anything else (0 here) is counted as `other`.
pub const STATUS_LABELS: [u16; 12] = STATUSES;
const STATUSES: [u16; 12] = [200, 303, 400, 401, 404, 405, 408, 413, 429, 500, 503, 0];
const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram with fixed buckets (cumulative on export).
struct Histogram {
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

    fn export(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_SECONDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let labels = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Every metric of a node.
pub struct Metrics {
    requests: Vec<AtomicU64>,
    latency: [Histogram; 2],
    pub connections_refused: [AtomicU64; 2],
    pub connections_open: [AtomicU64; 2],
    pub ingest_batches: AtomicU64,
    pub ingest_accepted: AtomicU64,
    pub ingest_duplicates: AtomicU64,
    pub ingest_refused_events: AtomicU64,
    commit_latency: Histogram,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub store_errors: AtomicU64,
    pub change_feed_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            requests: (0..LISTENERS.len() * ROUTES.len() * STATUSES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: [Histogram::new(), Histogram::new()],
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
            change_feed_errors: AtomicU64::new(0),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, listener: Listener, route: Route, status: u16, took: Duration) {
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len() - 1);
        let i = (listener as usize * ROUTES.len() + route as usize) * STATUSES.len() + s;
        self.requests[i].fetch_add(1, Relaxed);
        self.latency[listener as usize].observe(took);
    }

    /// Requests answered by one listener, per status of [`STATUS_LABELS`], over all routes.
    pub fn status_totals(&self, listener: Listener) -> [u64; STATUSES.len()] {
        let mut out = [0; STATUSES.len()];
        for r in 0..ROUTES.len() {
            for (s, total) in out.iter_mut().enumerate() {
                let i = (listener as usize * ROUTES.len() + r) * STATUSES.len() + s;
                *total += self.requests[i].load(Relaxed);
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP rempart_http_requests_total Requests answered, by listener, route and status.\n");
        out.push_str("# TYPE rempart_http_requests_total counter\n");
        for (l, listener) in LISTENERS.iter().enumerate() {
            for (r, route) in ROUTES.iter().enumerate() {
                for (s, status) in STATUSES.iter().enumerate() {
                    let i = (l * ROUTES.len() + r) * STATUSES.len() + s;
                    let n = self.requests[i].load(Relaxed);
                    if n == 0 {
                        continue;
                    }
                    let status = if *status == 0 {
                        "other".to_owned()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        out,
                        "rempart_http_requests_total{{listener=\"{listener}\",route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP rempart_http_request_duration_seconds Time from request head to response, by listener.\n");
        out.push_str("# TYPE rempart_http_request_duration_seconds histogram\n");
        for (l, listener) in LISTENERS.iter().enumerate() {
            self.latency[l].export(
                &mut out,
                "rempart_http_request_duration_seconds",
                &format!("listener=\"{listener}\","),
            );
        }
        counter_pair(
            &mut out,
            "rempart_connections_refused_total",
            "Connections closed on accept because the listener was at its connection cap.",
            &self.connections_refused,
        );
        out.push_str("# HELP rempart_connections_open Connections open now.\n# TYPE rempart_connections_open gauge\n");
        for (l, listener) in LISTENERS.iter().enumerate() {
            let _ = writeln!(
                out,
                "rempart_connections_open{{listener=\"{listener}\"}} {}",
                self.connections_open[l].load(Relaxed)
            );
        }
        let simple: [(&str, &str, &str, &AtomicU64); 4] = [
            (
                "rempart_ingest_batches_total",
                "counter",
                "Ingest batches acknowledged.",
                &self.ingest_batches,
            ),
            (
                "rempart_ingest_refused_events_total",
                "counter",
                "Events in refused ingest batches (bad line, limits).",
                &self.ingest_refused_events,
            ),
            (
                "rempart_store_errors_total",
                "counter",
                "Store operations that failed.",
                &self.store_errors,
            ),
            (
                "rempart_change_feed_errors_total",
                "counter",
                "Failed polls of a shared store's change feed.",
                &self.change_feed_errors,
            ),
        ];
        for (name, kind, help, v) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Relaxed)
            );
        }
        out.push_str("# HELP rempart_ingest_events_total Events in acknowledged batches, by outcome.\n# TYPE rempart_ingest_events_total counter\n");
        let _ = writeln!(
            out,
            "rempart_ingest_events_total{{outcome=\"accepted\"}} {}\nrempart_ingest_events_total{{outcome=\"duplicate\"}} {}",
            self.ingest_accepted.load(Relaxed),
            self.ingest_duplicates.load(Relaxed)
        );
        out.push_str("# HELP rempart_ingest_commit_duration_seconds Time to make a batch durable.\n# TYPE rempart_ingest_commit_duration_seconds histogram\n");
        self.commit_latency
            .export(&mut out, "rempart_ingest_commit_duration_seconds", "");
        out.push_str("# HELP rempart_cache_lookups_total Response cache lookups, by result.\n# TYPE rempart_cache_lookups_total counter\n");
        let _ = writeln!(
            out,
            "rempart_cache_lookups_total{{result=\"hit\"}} {}\nrempart_cache_lookups_total{{result=\"miss\"}} {}",
            self.cache_hits.load(Relaxed),
            self.cache_misses.load(Relaxed)
        );
        if let Some(rss) = resident_memory_bytes() {
            let _ = writeln!(
                out,
                "# HELP rempart_process_resident_memory_bytes Resident memory of the process.\n# TYPE rempart_process_resident_memory_bytes gauge\nrempart_process_resident_memory_bytes {rss}"
            );
        }
        out
    }
}

fn counter_pair(out: &mut String, name: &str, help: &str, values: &[AtomicU64; 2]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (l, listener) in LISTENERS.iter().enumerate() {
        let _ = writeln!(
            out,
            "{name}{{listener=\"{listener}\"}} {}",
            values[l].load(Relaxed)
        );
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
    fn every_route_but_other_is_listed_as_served_once() {
        let mut listed: Vec<&str> = Route::SERVED.iter().map(|(r, ..)| r.label()).collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(listed.len(), ROUTES.len() - 1);
        assert!(!listed.contains(&Route::Other.label()));
    }

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
    }
}
