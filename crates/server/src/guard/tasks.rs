//! The shield's background work, on the ingest runtime: rebuilding the existence filter from
//! storage, switching attack mode from the per-second window, and one aggregated log line of
//! refusals every few seconds (never one line per refused request).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;
use rempart_shield::ExistenceFilter;
use rempart_store::EventStore;
use tokio::sync::watch;

use super::pressure::CpuMeter;
use super::{Guard, Reason, Shield};

/// Numbers read per page while rebuilding the filter.
const REBUILD_PAGE: usize = 100_000;
/// How often refusals are summarised in the log, and the refused-prefix table decays.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// How soon a failed rebuild is tried again.
const REBUILD_RETRY: Duration = Duration::from_secs(5);

/// Why a rebuild did not happen.
enum NotRebuilt {
    /// Storage failed, or the node is stopping: try again soon.
    Failed(String),
    /// More parcels than `filter_max_parcels`: no filter until the next period.
    TooMany(usize),
}

/// Lists every stored number (hashed page by page: 8 bytes a number), then builds the filter on a
/// blocking thread (sorting and peeling 10 million keys takes about a second: on this runtime's
/// threads it would delay depots' acknowledgements), then puts it in place. Gives up when the
/// node stops, or past `max_parcels` (the filter's memory bound).
async fn rebuild_once(
    store: &dyn EventStore,
    shield: &Shield,
    max_parcels: usize,
    stop: &watch::Receiver<bool>,
) -> Result<usize, NotRebuilt> {
    shield.filter.begin_rebuild();
    let held = RebuildBytes(&shield.rebuild_bytes);
    // Sized for what the filter last knew, a tenth more: the vector seldom grows (each growth
    // holds the old and the new copy for a moment).
    let known = shield.filter.len() + shield.filter.recent_len();
    let mut keys: Vec<u64> = Vec::with_capacity((known + known / 10).min(max_parcels + 1));
    let mut after: Option<TrackingNumber> = None;
    loop {
        if *stop.borrow() {
            return Err(NotRebuilt::Failed("the node is stopping".into()));
        }
        let page = store
            .tracking_numbers(after, REBUILD_PAGE)
            .await
            .map_err(|e| NotRebuilt::Failed(e.to_string()))?;
        let Some(last) = page.last().copied() else {
            break;
        };
        keys.extend(page.iter().map(|tn| ExistenceFilter::key_of(tn.as_bytes())));
        held.set(keys.capacity() as u64 * 8);
        if keys.len() > max_parcels {
            return Err(NotRebuilt::TooMany(keys.len()));
        }
        after = Some(last);
    }
    let listed = keys.len();
    held.set(keys.capacity() as u64 * 8 + listed as u64 * BUILDER_BYTES_PER_KEY);
    let built = tokio::task::spawn_blocking(move || ExistenceFilter::build(keys))
        .await
        .map_err(|e| NotRebuilt::Failed(format!("the filter build failed: {e}")))?
        .map_err(NotRebuilt::Failed)?;
    shield.filter.install(built);
    shield.filter_off.store(false, Ordering::Relaxed);
    Ok(listed)
}

/// The builder's arrays per key besides the fingerprints it keeps (see
/// `REBUILD_BYTES_PER_PARCEL`).
const BUILDER_BYTES_PER_KEY: u64 = 24;

/// What a rebuild holds, shown on /metrics while it runs, back to 0 however it ends.
struct RebuildBytes<'a>(&'a AtomicU64);

impl RebuildBytes<'_> {
    fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }
}

impl Drop for RebuildBytes<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Rebuilds the existence filter every `every`, and early when it asks for it (its recent set
/// overflowed). Until a build succeeds the filter says "maybe": lookups go to storage (and the
/// public `/readyz` says 503). `restored`: a snapshot put the filter in force at start, so the
/// first rebuild waits a whole period. Past `max_parcels` the filter is switched off (answers
/// "maybe", the node is ready) until a later period finds the store within the bound.
pub async fn rebuild_filter(
    store: Arc<dyn EventStore>,
    guard: Arc<Guard>,
    every: Duration,
    max_parcels: usize,
    restored: bool,
    mut stop: watch::Receiver<bool>,
) {
    let Some(shield) = guard.shield() else {
        return;
    };
    let mut last = restored.then(Instant::now);
    loop {
        let early = shield.filter.needs_rebuild() && !shield.filter_off.load(Ordering::Relaxed);
        if last.is_none_or(|t| t.elapsed() >= every) || early {
            let started = Instant::now();
            match rebuild_once(store.as_ref(), shield, max_parcels, &stop).await {
                Ok(n) => {
                    tracing::info!(
                        numbers = n,
                        took_ms = started.elapsed().as_millis() as u64,
                        "existence filter built"
                    );
                    last = Some(Instant::now());
                }
                Err(NotRebuilt::TooMany(n)) => {
                    tracing::error!(
                        listed = n,
                        max_parcels,
                        "existence filter switched off: the store holds more parcels than filter_max_parcels; lookups go to storage"
                    );
                    shield.filter.degrade();
                    shield.filter_off.store(true, Ordering::Relaxed);
                    last = Some(Instant::now());
                }
                Err(NotRebuilt::Failed(e)) => {
                    tracing::warn!(error = %e, "existence filter not rebuilt; retrying");
                    last = Some(Instant::now() - every + REBUILD_RETRY.min(every));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Feeds attack mode one window a second, and logs refusals every [`REFUSAL_LOG_EVERY`].
pub async fn watch_attacks(guard: Arc<Guard>, mut stop: watch::Receiver<bool>) {
    let Some(shield) = guard.shield() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_log = Instant::now();
    let mut logged = shield.refused_total();
    let mut cpu = CpuMeter::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let window = shield.take_window(cpu.sample());
        let cause = shield.attack.cause(&window);
        shield
            .pressed
            .store(cause.is_some(), std::sync::atomic::Ordering::Relaxed);
        match shield.attack.observe(window) {
            Some(true) => tracing::warn!(
                ?cause,
                requests = window.requests,
                refused = window.refused,
                p99_ms = window.p99.as_millis() as u64,
                lag_ms = window.lag.as_millis() as u64,
                cpu = window.busy,
                heaviest_source = window.heaviest_source,
                "attack mode ON: anonymous clients must solve a challenge"
            ),
            Some(false) => tracing::info!("attack mode off"),
            None => {}
        }
        if last_log.elapsed() >= REFUSAL_LOG_EVERY {
            logged = log_refusals(shield, logged);
            shield.refused_prefixes.decay();
            last_log = Instant::now();
        }
    }
}

/// One line: refusals by reason since `before`, and the most refused prefixes. Returns the
/// totals now.
fn log_refusals(shield: &Shield, before: [u64; Reason::COUNT]) -> [u64; Reason::COUNT] {
    let now = shield.refused_total();
    let parts: Vec<String> = Reason::ALL
        .iter()
        .zip(now.iter().zip(before.iter()))
        .filter(|(_, (n, b))| n > b)
        .map(|(r, (n, b))| format!("{}={}", r.label(), n - b))
        .collect();
    if !parts.is_empty() {
        let top: Vec<String> = shield
            .refused_prefixes
            .top(3)
            .iter()
            .map(|(p, n)| format!("{p}/{n}"))
            .collect();
        tracing::info!(
            refused = %parts.join(" "),
            top_prefixes = %top.join(" "),
            "shield refusals in the last {}s",
            REFUSAL_LOG_EVERY.as_secs()
        );
    }
    now
}
