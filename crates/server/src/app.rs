//! The state both listeners share: the store, the response cache and its coherence, the shield
//! glue, metrics and tokens. Behaviour lives with the listeners (`public/`, `ingest/`); this is
//! what they hold in common.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;
use rempart_store::EventStore;

use crate::coherence::Coherence;
use crate::guard::Guard;
use crate::ingest::refusals::{IngestRefusals, RefusalKind};
use crate::metrics::{Metrics, OpsHistory, render};
use crate::push::Push;
use crate::push::keys::LiveKeys;
use crate::settings::{Settings, StoreKind};
use crate::tokens::LiveTokens;

/// How long a `/readyz` answer is reused, so a flood of probes cannot hammer storage.
pub const READY_CHECK_TTL: Duration = Duration::from_secs(1);
/// Longest `/readyz` waits for storage.
pub const READY_STORE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct App {
    pub store: Arc<dyn EventStore>,
    /// The response cache and its coherence with writes (here and on other nodes).
    pub coherence: Arc<Coherence>,
    /// The shield in front of the public listener (or nothing, when switched off).
    pub guard: Arc<Guard>,
    pub metrics: Metrics,
    pub tokens: LiveTokens,
    /// Merchants' API keys (the subscription API; keyed clients rank above anonymous ones).
    pub keys: LiveKeys,
    /// Webhooks and e-mail alerts, when switched on.
    pub push: Option<Arc<Push>>,
    /// Batches the store could not acknowledge (summarised in the log, counted in /metrics).
    pub ingest_refusals: IngestRefusals,
    /// Recent per-second traffic for the operations page.
    pub ops: OpsHistory,
    pub settings: Settings,
    /// The runtime unproven clients are served by (none with the shield off, or in tests:
    /// connections then stay where they are).
    pub open: Option<tokio::runtime::Handle>,
    /// Numbers the home page suggests (the demo's, checked in storage at start; none otherwise).
    pub suggestions: std::sync::OnceLock<Vec<TrackingNumber>>,
    ready: std::sync::Mutex<Option<(Instant, bool)>>,
}

impl App {
    pub fn new(store: Arc<dyn EventStore>, tokens: LiveTokens, settings: Settings) -> App {
        let shared_store = matches!(settings.store.store, StoreKind::Postgres(_));
        App {
            store,
            coherence: Arc::new(Coherence::new(
                settings.store.cache_entries.get(),
                settings.store.cache_mb.get() << 20,
                shared_store,
            )),
            guard: Arc::new(Guard::new(&settings.shield)),
            metrics: Metrics::new(),
            tokens,
            keys: LiveKeys::empty(),
            push: None,
            ingest_refusals: IngestRefusals::default(),
            ops: OpsHistory::default(),
            settings,
            open: None,
            suggestions: std::sync::OnceLock::new(),
            ready: std::sync::Mutex::new(None),
        }
    }

    /// Public connections of unproven clients run on `open` (the listener's own runtime is the
    /// priority runtime).
    #[must_use]
    pub fn with_open_runtime(mut self, open: Option<tokio::runtime::Handle>) -> App {
        self.open = open;
        self
    }

    /// Push, with the API keys its subscription API accepts.
    #[must_use]
    pub fn with_push(mut self, push: Option<Arc<Push>>, keys: LiveKeys) -> App {
        self.push = push;
        self.keys = keys;
        self
    }

    /// Whether parcel pages offer e-mail alerts (push on, with an SMTP relay).
    pub fn alerts_enabled(&self) -> bool {
        self.push.as_ref().is_some_and(|p| p.mailer.is_some())
    }

    /// Every metric of the node, in Prometheus text.
    pub fn render_metrics(&self) -> String {
        let mut out = self.metrics.render();
        render::single(
            &mut out,
            "rempart_change_feed_errors_total",
            "counter",
            "Failed polls of a shared store's change feed.",
            self.coherence.feed.errors(),
        );
        render::single(
            &mut out,
            "rempart_change_feed_given_up_total",
            "counter",
            "Reads of a shared store's change feed that could not name every change (the response cache cleared, the filter rebuilt).",
            self.coherence.feed.given_up(),
        );
        render::single(
            &mut out,
            "rempart_change_feed_pending_runs",
            "gauge",
            "Runs of skipped change numbers the feed still looks for (transactions that may yet commit).",
            self.coherence.feed.pending_runs(),
        );
        render::single(
            &mut out,
            "rempart_change_feed_caught_up",
            "gauge",
            "1 once the change feed has read to its end since start (always 1 on a store of one node).",
            u64::from(self.coherence.feed.caught_up()),
        );
        out.push_str("# HELP rempart_ingest_batches_refused_total Batches the store could not acknowledge, by kind (outcome_unknown: may be stored; resending is safe).\n# TYPE rempart_ingest_batches_refused_total counter\n");
        for (kind, n) in RefusalKind::ALL.iter().zip(self.ingest_refusals.totals()) {
            out.push_str(&format!(
                "rempart_ingest_batches_refused_total{{kind=\"{}\"}} {n}\n",
                kind.label()
            ));
        }
        self.render_store(&mut out);
        self.render_memory(&mut out);
        self.guard.render_metrics(&mut out);
        if let Some(push) = &self.push {
            push.render_metrics(&mut out);
        }
        out
    }

    /// The node's own large memory consumers (the store's are in `render_store`), each with the
    /// bound its setting gives.
    fn render_memory(&self, out: &mut String) {
        let cache = &self.coherence.cache;
        let mut memory = vec![rempart_store::MemoryUse {
            consumer: "response_cache",
            bytes: cache.memory_bytes(),
            bound_bytes: Some(cache.bound_bytes()),
        }];
        memory.extend(
            self.guard
                .memory_use(self.settings.shield.filter_max_parcels.get()),
        );
        out.push_str("# HELP rempart_memory_bytes Memory of the node's large consumers outside the store, by consumer (the response cache's is estimated).\n# TYPE rempart_memory_bytes gauge\n");
        for m in &memory {
            out.push_str(&format!(
                "rempart_memory_bytes{{consumer=\"{}\"}} {}\n",
                m.consumer, m.bytes
            ));
        }
        out.push_str("# HELP rempart_memory_bound_bytes The bound of each of the node's memory consumers outside the store (from its setting).\n# TYPE rempart_memory_bound_bytes gauge\n");
        for m in &memory {
            if let Some(bound) = m.bound_bytes {
                out.push_str(&format!(
                    "rempart_memory_bound_bytes{{consumer=\"{}\"}} {bound}\n",
                    m.consumer
                ));
            }
        }
    }

    /// The store's write health and memory consumers.
    fn render_store(&self, out: &mut String) {
        let health = self.store.write_health();
        render::single(
            out,
            "rempart_store_writes_failing",
            "gauge",
            "1 while the store takes no writes (it probes and recovers by itself).",
            u64::from(health.failure.is_some()),
        );
        render::single(
            out,
            "rempart_store_write_recoveries_total",
            "counter",
            "Times the store recovered from a write failure without a restart.",
            health.recoveries,
        );
        let memory = self.store.memory_use();
        out.push_str("# HELP rempart_store_memory_bytes Memory of the store's large consumers, by consumer.\n# TYPE rempart_store_memory_bytes gauge\n");
        for m in &memory {
            out.push_str(&format!(
                "rempart_store_memory_bytes{{consumer=\"{}\"}} {}\n",
                m.consumer, m.bytes
            ));
        }
        out.push_str("# HELP rempart_store_memory_bound_bytes The setting bounding each of the store's memory consumers.\n# TYPE rempart_store_memory_bound_bytes gauge\n");
        for m in &memory {
            if let Some(bound) = m.bound_bytes {
                out.push_str(&format!(
                    "rempart_store_memory_bound_bytes{{consumer=\"{}\"}} {bound}\n",
                    m.consumer
                ));
            }
        }
    }

    /// Whether the node can serve lookups, asking storage at most once per [`READY_CHECK_TTL`].
    pub async fn is_ready(&self) -> bool {
        if let Ok(guard) = self.ready.lock()
            && let Some((at, ok)) = *guard
            && at.elapsed() < READY_CHECK_TTL
        {
            return ok;
        }
        let ok = matches!(
            tokio::time::timeout(READY_STORE_TIMEOUT, self.store.check_ready()).await,
            Ok(Ok(()))
        );
        if let Ok(mut guard) = self.ready.lock() {
            *guard = Some((Instant::now(), ok));
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the Grafana dashboard charts is one the node exports.
    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let store = rempart_store::embedded::EmbeddedStore::open(
            dir.path(),
            rempart_store::embedded::EmbeddedOptions::default(),
        )
        .unwrap();
        let tokens = LiveTokens::load(dir.path(), None).unwrap();
        let app = App::new(Arc::new(store), tokens, Settings::defaults());
        let text = app.render_metrics();
        // Counters with no samples yet still declare themselves in # TYPE lines.
        let exported: std::collections::HashSet<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/grafana-dashboard.json");
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut checked = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !word.starts_with("rempart_") {
                        continue;
                    }
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    assert!(
                        exported.contains(base),
                        "the dashboard charts {word}, which the node does not export"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 12);
    }
}
