//! The last [`OPS_SAMPLES`] seconds of traffic as per-second rates, for the operations page
//! (`crate::ops` samples the counters into it once a second).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

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

    pub fn push(&self, sample: Sample) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() == OPS_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }
}
