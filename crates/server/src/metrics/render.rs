//! The Prometheus text exposition of [`Metrics`], section by section.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{
    Histogram, LATENCY_BUCKETS_SECONDS, Listener, Metrics, Route, STATUS_LABELS, request_index,
    resident_memory_bytes,
};

/// Writes `# HELP`, `# TYPE` and one sample without labels.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

impl Histogram {
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

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_requests(&mut out);
        self.render_connections(&mut out);
        self.render_ingest(&mut out);
        self.render_cache(&mut out);
        if let Some(rss) = resident_memory_bytes() {
            single(
                &mut out,
                "rempart_process_resident_memory_bytes",
                "gauge",
                "Resident memory of the process.",
                rss,
            );
        }
        out
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str("# HELP rempart_http_requests_total Requests answered, by listener, route and status.\n");
        out.push_str("# TYPE rempart_http_requests_total counter\n");
        for listener in Listener::ALL {
            for route in Route::ALL {
                for (s, status) in STATUS_LABELS.iter().enumerate() {
                    let i = request_index(listener.index(), route.index(), s);
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
                        "rempart_http_requests_total{{listener=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                        listener.label(),
                        route.label()
                    );
                }
            }
        }
        out.push_str("# HELP rempart_http_request_duration_seconds Time from the first byte of a request (the accept, for the first request of a public connection) to its answer, by listener.\n");
        out.push_str("# TYPE rempart_http_request_duration_seconds histogram\n");
        for listener in Listener::ALL {
            self.latency[listener.index()].export(
                out,
                "rempart_http_request_duration_seconds",
                &format!("listener=\"{}\",", listener.label()),
            );
        }
    }

    fn render_connections(&self, out: &mut String) {
        per_listener(
            out,
            "rempart_connections_refused_total",
            "counter",
            "Connections closed on accept because the listener was at its connection cap.",
            &self.connections_refused,
        );
        per_listener(
            out,
            "rempart_connections_open",
            "gauge",
            "Connections open now.",
            &self.connections_open,
        );
    }

    fn render_ingest(&self, out: &mut String) {
        let simple: [(&str, &str, &AtomicU64); 3] = [
            (
                "rempart_ingest_batches_total",
                "Ingest batches acknowledged.",
                &self.ingest_batches,
            ),
            (
                "rempart_ingest_refused_events_total",
                "Events in refused ingest batches (bad line, limits).",
                &self.ingest_refused_events,
            ),
            (
                "rempart_store_errors_total",
                "Store operations that failed.",
                &self.store_errors,
            ),
        ];
        for (name, help, v) in simple {
            single(out, name, "counter", help, v.load(Relaxed));
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
            .export(out, "rempart_ingest_commit_duration_seconds", "");
    }

    fn render_cache(&self, out: &mut String) {
        out.push_str("# HELP rempart_cache_lookups_total Response cache lookups, by result.\n# TYPE rempart_cache_lookups_total counter\n");
        let _ = writeln!(
            out,
            "rempart_cache_lookups_total{{result=\"hit\"}} {}\nrempart_cache_lookups_total{{result=\"miss\"}} {}",
            self.cache_hits.load(Relaxed),
            self.cache_misses.load(Relaxed)
        );
    }
}

fn per_listener(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    values: &[AtomicU64; Listener::COUNT],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for listener in Listener::ALL {
        let _ = writeln!(
            out,
            "{name}{{listener=\"{}\"}} {}",
            listener.label(),
            values[listener.index()].load(Relaxed)
        );
    }
}
