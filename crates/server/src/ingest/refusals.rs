//! Batches the store could not acknowledge, summarised in the log: the first one after a quiet
//! spell is logged at once, then one line every [`SUMMARY_EVERY`] with the counts by kind and the
//! last error. A full disk or a database outage must not write one line per refused batch.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;

use crate::labels::labelled;

/// How often refused batches are summarised.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// Longest error text kept for the summary.
const MAX_ERROR_CHARS: usize = 300;

labelled! {
    /// Why a batch was not acknowledged.
    pub enum RefusalKind {
        /// Storage refused the write: nothing of the batch is stored.
        StorageUnavailable = "storage_unavailable",
        /// The storage failed during the commit: the batch may or may not be stored.
        OutcomeUnknown = "outcome_unknown",
    }
}

#[derive(Default)]
pub struct IngestRefusals {
    counts: [AtomicU64; RefusalKind::COUNT],
    /// Counts since the last summary, and the last error.
    pending: Mutex<(u64, String)>,
}

impl IngestRefusals {
    /// Counts one refused batch; logs it at once if it is the first since the last summary.
    pub fn record(&self, kind: RefusalKind, error: &dyn std::fmt::Display) {
        self.counts[kind.index()].fetch_add(1, Relaxed);
        let text: String = error.to_string().chars().take(MAX_ERROR_CHARS).collect();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.0 == 0 {
            tracing::warn!(kind = kind.label(), error = %text, "ingest batch not acknowledged (further ones are summarised every {}s)", SUMMARY_EVERY.as_secs());
        }
        pending.0 += 1;
        pending.1 = text;
    }

    /// Refused batches so far, by kind.
    pub fn totals(&self) -> [u64; RefusalKind::COUNT] {
        std::array::from_fn(|i| self.counts[i].load(Relaxed))
    }

    /// One line for what was refused since the last call, if anything was.
    fn summarise(&self) -> Option<(u64, String)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        (pending.0 > 0).then(|| {
            (
                std::mem::take(&mut pending.0),
                std::mem::take(&mut pending.1),
            )
        })
    }

    /// Logs a summary every [`SUMMARY_EVERY`] until `stop`.
    pub async fn log_summaries(&self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SUMMARY_EVERY) => {}
                _ = stop.changed() => return,
            }
            if let Some((batches, last)) = self.summarise() {
                let totals: Vec<String> = RefusalKind::ALL
                    .iter()
                    .zip(self.totals())
                    .map(|(k, n)| format!("{}={n}", k.label()))
                    .collect();
                tracing::warn!(batches, totals = %totals.join(" "), last_error = %last, "ingest batches not acknowledged in the last {}s", SUMMARY_EVERY.as_secs());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_and_summarised_once() {
        let refusals = IngestRefusals::default();
        assert!(refusals.summarise().is_none());
        for i in 0..1_000 {
            refusals.record(RefusalKind::StorageUnavailable, &format!("disk full {i}"));
        }
        refusals.record(RefusalKind::OutcomeUnknown, &"fsync failed");
        assert_eq!(refusals.summarise(), Some((1_001, "fsync failed".into())));
        assert!(refusals.summarise().is_none(), "nothing new: no line");
        assert_eq!(refusals.totals(), [1_000, 1]);
    }
}
