//! The state both listeners share: the store, the response cache, metrics, tokens, and the
//! health of a shared store's change feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;
use rempart_shield::Priority;
use rempart_store::{EventStore, StoreError};

use crate::cache::{CachedParcel, ParcelCache};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::tokens::LiveTokens;

/// How long a `/readyz` answer is reused, so a flood of probes cannot hammer storage.
pub const READY_CHECK_TTL: Duration = Duration::from_secs(1);
/// Longest a storage read for a lookup may take before the lookup answers 503.
pub const LOOKUP_STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `/readyz` waits for storage.
pub const READY_STORE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct App {
    pub store: Arc<dyn EventStore>,
    pub cache: ParcelCache,
    pub metrics: Metrics,
    pub tokens: LiveTokens,
    /// The admission layers of the public listener; `None` when switched off.
    pub shield: Option<crate::shield::Shield>,
    /// Recent per-second traffic for the operations page.
    pub ops: crate::ops::OpsHistory,
    pub settings: Settings,
    /// Whether the store is shared with other nodes (its change feed is polled).
    pub shared_store: bool,
    /// For a shared store: whether the last change-feed poll succeeded, and when one last did.
    pub feed_ok: AtomicBool,
    feed_ok_at: AtomicU64,
    started: Instant,
    ready: std::sync::Mutex<Option<(Instant, bool)>>,
}

/// A lookup's result.
pub enum Lookup {
    Found {
        parcel: Arc<CachedParcel>,
        /// Seconds since the cached copy could last be confirmed fresh, when it may be stale
        /// (a shared store whose change feed cannot be read).
        stale_for: Option<u64>,
    },
    NotFound,
    /// The shield could not start a storage read in time (503).
    Shed,
}

impl App {
    pub fn new(
        store: Arc<dyn EventStore>,
        tokens: LiveTokens,
        settings: Settings,
        shared_store: bool,
    ) -> App {
        App {
            store,
            cache: ParcelCache::new(settings.cache_entries),
            metrics: Metrics::new(),
            shield: settings
                .shield
                .then(|| crate::shield::Shield::new(&settings)),
            tokens,
            ops: crate::ops::OpsHistory::default(),
            settings,
            shared_store,
            feed_ok: AtomicBool::new(true),
            feed_ok_at: AtomicU64::new(0),
            started: Instant::now(),
            ready: std::sync::Mutex::new(None),
        }
    }

    /// Records a successful change-feed poll.
    pub fn feed_succeeded(&self) {
        self.feed_ok.store(true, Relaxed);
        self.feed_ok_at
            .store(self.started.elapsed().as_secs(), Relaxed);
    }

    /// The shield's state for the operations page (`attack_mode`, `top_refused_prefixes`);
    /// `null` while no shield runs in front of the public listener.
    pub fn shield_status(&self) -> serde_json::Value {
        self.shield
            .as_ref()
            .map_or(serde_json::Value::Null, crate::shield::Shield::status)
    }

    /// Every metric of the node, in Prometheus text.
    pub fn render_metrics(&self) -> String {
        let mut out = self.metrics.render();
        if let Some(shield) = &self.shield {
            shield.render_metrics(&mut out);
        }
        out
    }

    /// Looks a parcel up: cache first, then storage (filling the cache). With the shield on, a
    /// storage read waits for a slot of the adaptive concurrency limit, at most the queue
    /// deadline; `Lookup::Shed` when it cannot start in time.
    pub async fn lookup(
        &self,
        tn: TrackingNumber,
        priority: Priority,
    ) -> Result<Lookup, StoreError> {
        if let Some(parcel) = self.cache.get(&tn) {
            self.metrics.cache_hits.fetch_add(1, Relaxed);
            let stale_for = (self.shared_store && !self.feed_ok.load(Relaxed)).then(|| {
                self.started
                    .elapsed()
                    .as_secs()
                    .saturating_sub(self.feed_ok_at.load(Relaxed))
            });
            return Ok(Lookup::Found { parcel, stale_for });
        }
        self.metrics.cache_misses.fetch_add(1, Relaxed);
        let permit = match &self.shield {
            Some(shield) => match shield
                .concurrency
                .acquire(priority, shield.queue_deadline)
                .await
            {
                Some(permit) => Some(permit),
                None => return Ok(Lookup::Shed),
            },
            None => None,
        };
        let stamp = self.cache.stamp(&tn);
        let events = tokio::time::timeout(LOOKUP_STORE_TIMEOUT, self.store.parcel_events(&tn))
            .await
            .map_err(|_| StoreError::Unavailable("storage read timed out".into()))
            .and_then(|r| r)
            .inspect_err(|_| {
                self.metrics.store_errors.fetch_add(1, Relaxed);
            })?;
        if let Some(permit) = permit {
            permit.done();
        }
        match rempart_domain::ParcelView::build(tn, events) {
            None => Ok(Lookup::NotFound),
            Some(view) => {
                let parcel = CachedParcel::new(view);
                self.cache.fill(tn, parcel.clone(), stamp);
                Ok(Lookup::Found {
                    parcel,
                    stale_for: None,
                })
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
