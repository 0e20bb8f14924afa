//! The shield's background work, on the ingest runtime: rebuilding the existence filter from
//! storage, switching attack mode from the per-second window, and one aggregated log line of
//! refusals every few seconds (never one line per refused request).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;
use tokio::sync::watch;

use crate::app::App;
use crate::shield::REASONS;

/// Numbers read per page while rebuilding the filter.
const REBUILD_PAGE: usize = 100_000;
/// How often refusals are summarised in the log, and the refused-prefix table decays.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

async fn rebuild_once(app: &App) -> Result<usize, String> {
    let shield = app.shield.as_ref().expect("shield on");
    shield.filter.begin_rebuild();
    let mut numbers: Vec<[u8; 13]> = Vec::new();
    let mut after: Option<TrackingNumber> = None;
    loop {
        let page = app
            .store
            .tracking_numbers(after, REBUILD_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last().copied() else {
            break;
        };
        numbers.extend(page.iter().map(|tn| *tn.as_bytes()));
        after = Some(last);
    }
    shield.filter.finish_rebuild(&numbers)?;
    Ok(numbers.len())
}

pub async fn rebuild_filter(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(app.settings.filter_rebuild_s);
    let mut last = None::<Instant>;
    loop {
        let due = last.is_none_or(|t| t.elapsed() >= every)
            || app
                .shield
                .as_ref()
                .is_some_and(|s| s.filter.needs_rebuild());
        if due {
            let started = Instant::now();
            match rebuild_once(&app).await {
                Ok(n) => {
                    tracing::info!(
                        numbers = n,
                        took_ms = started.elapsed().as_millis() as u64,
                        "existence filter built"
                    );
                    last = Some(Instant::now());
                }
                Err(e) => {
                    // Until a build succeeds the filter says "maybe": lookups go to storage.
                    tracing::warn!(error = %e, "existence filter not rebuilt; retrying");
                    last = Some(Instant::now() - every + Duration::from_secs(5).min(every));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

pub async fn watch_attacks(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let shield = app.shield.as_ref().expect("shield on");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_log = Instant::now();
    let mut logged = shield.refused_total();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let window = shield.take_window();
        match shield.attack.observe(window) {
            Some(true) => tracing::warn!(
                requests = window.requests,
                refused = window.refused,
                p99_ms = window.p99.as_millis() as u64,
                "attack mode ON: anonymous clients must solve a challenge"
            ),
            Some(false) => tracing::info!("attack mode off"),
            None => {}
        }
        if last_log.elapsed() >= REFUSAL_LOG_EVERY {
            let now = shield.refused_total();
            let parts: Vec<String> = REASONS
                .iter()
                .zip(now.iter().zip(logged.iter()))
                .filter(|(_, (n, l))| n > l)
                .map(|(r, (n, l))| format!("{r}={}", n - l))
                .collect();
            if !parts.is_empty() {
                let top: Vec<String> = shield
                    .refused_prefixes
                    .top(3)
                    .iter()
                    .map(|(p, n)| format!("{p}/{n}"))
                    .collect();
                tracing::info!(refused = %parts.join(" "), top_prefixes = %top.join(" "), "shield refusals in the last {}s", REFUSAL_LOG_EVERY.as_secs());
            }
            shield.refused_prefixes.decay();
            logged = now;
            last_log = Instant::now();
        }
    }
}
