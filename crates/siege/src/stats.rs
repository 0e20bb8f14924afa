//! Counting outcomes: each worker keeps its own per-second tallies (no shared locks on the hot
//! path); they are merged once at the end. Latency per second uses coarse log buckets (about
//! ±10%), the whole-run latency an HDR histogram.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Log-scale latency buckets: 4 per doubling from 1 µs, up to ~70 s.
const BUCKETS: usize = 4 * 27;

fn bucket(micros: u64) -> usize {
    let m = micros.max(1) as f64;
    ((m.log2() * 4.0) as usize).min(BUCKETS - 1)
}

fn bucket_upper_micros(i: usize) -> f64 {
    2f64.powf((i + 1) as f64 / 4.0)
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status; `success` per the class's definition.
    Status { code: u16, success: bool },
    /// No answer within the request timeout.
    Timeout,
    /// Could not connect, or the connection broke before an answer.
    ConnectionError,
    /// Slowloris: the server closed a slow connection (after holding it `latency`).
    ClosedByServer,
    /// Slowloris: the connection was still open when the run ended.
    HeldToEnd,
}

#[derive(Clone)]
pub struct Second {
    pub sent: u64,
    pub success: u64,
    latency: [u32; BUCKETS],
}

impl Default for Second {
    fn default() -> Self {
        Second {
            sent: 0,
            success: 0,
            latency: [0; BUCKETS],
        }
    }
}

impl Second {
    /// The `q` quantile of latencies in this second, in milliseconds (bucket upper bound).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return 0.0;
        }
        let want = (total as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.latency.iter().enumerate() {
            seen += u64::from(n);
            if seen >= want {
                return bucket_upper_micros(i) / 1000.0;
            }
        }
        bucket_upper_micros(BUCKETS - 1) / 1000.0
    }
}

/// Tallies of one class (one worker's, or merged).
#[derive(Clone)]
pub struct ClassStats {
    pub sent: u64,
    pub success: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub timeouts: u64,
    pub connection_errors: u64,
    pub closed_by_server: u64,
    pub held_to_end: u64,
    pub latency: Histogram<u64>,
    pub timeline: Vec<Second>,
}

impl Default for ClassStats {
    fn default() -> Self {
        ClassStats {
            sent: 0,
            success: 0,
            statuses: BTreeMap::new(),
            timeouts: 0,
            connection_errors: 0,
            closed_by_server: 0,
            held_to_end: 0,
            latency: Histogram::new_with_bounds(1, 120_000_000, 2).expect("valid bounds"),
            timeline: Vec::new(),
        }
    }
}

impl ClassStats {
    /// Records one request that started `second` seconds into the run and took `micros`.
    pub fn record(&mut self, second: usize, outcome: Outcome, micros: u64) {
        self.sent += 1;
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, Second::default());
        }
        let s = &mut self.timeline[second];
        s.sent += 1;
        match outcome {
            Outcome::Status { code, success } => {
                *self.statuses.entry(code).or_default() += 1;
                if success {
                    self.success += 1;
                    s.success += 1;
                }
                let _ = self.latency.record(micros.clamp(1, 120_000_000));
                s.latency[bucket(micros)] += 1;
            }
            Outcome::Timeout => self.timeouts += 1,
            Outcome::ConnectionError => self.connection_errors += 1,
            Outcome::HeldToEnd => self.held_to_end += 1,
            Outcome::ClosedByServer => {
                self.closed_by_server += 1;
                let _ = self.latency.record(micros.clamp(1, 120_000_000));
                s.latency[bucket(micros)] += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &ClassStats) {
        self.sent += other.sent;
        self.success += other.success;
        for (code, n) in &other.statuses {
            *self.statuses.entry(*code).or_default() += n;
        }
        self.timeouts += other.timeouts;
        self.connection_errors += other.connection_errors;
        self.closed_by_server += other.closed_by_server;
        self.held_to_end += other.held_to_end;
        let _ = self.latency.add(&other.latency);
        if self.timeline.len() < other.timeline.len() {
            self.timeline
                .resize(other.timeline.len(), Second::default());
        }
        for (mine, theirs) in self.timeline.iter_mut().zip(&other.timeline) {
            mine.sent += theirs.sent;
            mine.success += theirs.success;
            for (a, b) in mine.latency.iter_mut().zip(theirs.latency.iter()) {
                *a += b;
            }
        }
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_everything_up() {
        let mut a = ClassStats::default();
        let mut b = ClassStats::default();
        for i in 0..100 {
            a.record(
                0,
                Outcome::Status {
                    code: 200,
                    success: true,
                },
                1_000 + i,
            );
            b.record(
                2,
                Outcome::Status {
                    code: 404,
                    success: false,
                },
                50_000,
            );
        }
        b.record(1, Outcome::Timeout, 0);
        b.record(1, Outcome::ConnectionError, 0);
        a.merge(&b);
        assert_eq!(a.sent, 202);
        assert_eq!(a.success, 100);
        assert_eq!(a.statuses[&200], 100);
        assert_eq!(a.statuses[&404], 100);
        assert_eq!((a.timeouts, a.connection_errors), (1, 1));
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.timeline[1].sent, 2);
        let p50 = a.timeline[0].quantile_ms(0.5);
        assert!((0.9..1.4).contains(&p50), "{p50}");
        let p99 = a.quantile_ms(0.99);
        assert!((45.0..56.0).contains(&p99), "{p99}");
    }
}
