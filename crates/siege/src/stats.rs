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
    /// Could not connect.
    ConnectionError,
    /// The request was written, then the connection was closed or reset before its answer
    /// (or the answer was not HTTP).
    ClosedUnanswered,
    /// Open loop: the tool stopped waiting for the answer (`linger_ms`) and closed.
    Abandoned,
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

/// Longest latency recorded, in microseconds (longer ones count as this).
const MAX_MICROS: u64 = 120_000_000;

/// A whole-run latency histogram (1 µs to 120 s, 2 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid bounds")
}

/// The `q` quantile of a histogram, in milliseconds (0 when empty).
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// What browser-like users went through besides their lookups' outcomes: challenges met and
/// solved, and their latencies apart.
#[derive(Clone)]
pub struct BrowserStats {
    /// Lookups that never met a challenge.
    pub plain: Histogram<u64>,
    /// Lookups that met one: the whole lookup, solving and submitting included.
    pub challenged: Histogram<u64>,
    /// Solving alone (the proof of work).
    pub solving: Histogram<u64>,
    /// `403 challenge_required` answers received.
    pub challenges_met: u64,
    /// Lookups whose final answer was a challenge (not solved, or the pass refused).
    pub unsolved: u64,
    /// Passes earned (`POST /v1/challenge` answered 200).
    pub passes_earned: u64,
    /// `POST /v1/challenge` answers by status.
    pub submissions: BTreeMap<u16, u64>,
    /// Submissions that got no answer (timeout, closed).
    pub submissions_unanswered: u64,
    /// Users who solved at least one challenge.
    pub users_paid: u64,
    /// Users in the class.
    pub users: u64,
    /// Requests sent again on a new connection because a reused one closed before answering
    /// (what browsers do for idempotent requests).
    pub retries: u64,
    /// Time to open each new connection (the TCP handshake; a lost SYN is retried after 1 s).
    pub connects: Histogram<u64>,
    /// Lookups without a challenge over [`SLOW_LOOKUP_US`], and where their time went.
    pub slow: SlowLookups,
}

/// A lookup without a challenge slower than this is broken down in [`SlowLookups`].
pub const SLOW_LOOKUP_US: u64 = 100_000;

/// Where the slow lookups' time went: opening connections (a handshake ≥ 1 s is a SYN sent
/// again) or waiting for the answer on an open one.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct SlowLookups {
    pub count: u64,
    /// Slow lookups that opened a connection.
    pub opened: u64,
    /// ... whose handshake took ≥ 1 s.
    pub handshake_over_1s: u64,
    /// ... sent again on a new connection because the reused one closed unanswered.
    pub retried: u64,
    /// Microseconds the slow lookups spent in handshakes, and in all.
    pub handshake_us: u64,
    pub total_us: u64,
    /// Slow lookups by the second of the run they started in.
    pub by_second: BTreeMap<usize, u64>,
}

impl SlowLookups {
    fn merge(&mut self, other: &SlowLookups) {
        self.count += other.count;
        self.opened += other.opened;
        self.handshake_over_1s += other.handshake_over_1s;
        self.retried += other.retried;
        self.handshake_us += other.handshake_us;
        self.total_us += other.total_us;
        for (second, n) in &other.by_second {
            *self.by_second.entry(*second).or_default() += n;
        }
    }
}

impl Default for BrowserStats {
    fn default() -> Self {
        BrowserStats {
            plain: histogram(),
            challenged: histogram(),
            solving: histogram(),
            challenges_met: 0,
            unsolved: 0,
            passes_earned: 0,
            submissions: BTreeMap::new(),
            submissions_unanswered: 0,
            users_paid: 0,
            users: 0,
            retries: 0,
            connects: histogram(),
            slow: SlowLookups::default(),
        }
    }
}

impl BrowserStats {
    fn merge(&mut self, other: &BrowserStats) {
        let _ = self.plain.add(&other.plain);
        let _ = self.challenged.add(&other.challenged);
        let _ = self.solving.add(&other.solving);
        self.challenges_met += other.challenges_met;
        self.unsolved += other.unsolved;
        self.passes_earned += other.passes_earned;
        for (code, n) in &other.submissions {
            *self.submissions.entry(*code).or_default() += n;
        }
        self.submissions_unanswered += other.submissions_unanswered;
        self.users_paid += other.users_paid;
        self.users += other.users;
        self.retries += other.retries;
        let _ = self.connects.add(&other.connects);
        self.slow.merge(&other.slow);
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
    pub closed_unanswered: u64,
    pub abandoned: u64,
    pub closed_by_server: u64,
    pub held_to_end: u64,
    pub latency: Histogram<u64>,
    pub timeline: Vec<Second>,
    /// Requests started before this second go to the timeline only (warm-up).
    pub measure_from_s: usize,
    /// Browser-like users only.
    pub browser: Option<Box<BrowserStats>>,
}

impl Default for ClassStats {
    fn default() -> Self {
        ClassStats {
            sent: 0,
            success: 0,
            statuses: BTreeMap::new(),
            timeouts: 0,
            connection_errors: 0,
            closed_unanswered: 0,
            abandoned: 0,
            closed_by_server: 0,
            held_to_end: 0,
            latency: histogram(),
            timeline: Vec::new(),
            measure_from_s: 0,
            browser: None,
        }
    }
}

impl ClassStats {
    /// Empty tallies that count whole-run figures from `measure_from_s` on.
    pub fn measuring_from(measure_from_s: usize) -> ClassStats {
        ClassStats {
            measure_from_s,
            ..ClassStats::default()
        }
    }

    /// Whether a request started `second` seconds into the run counts in whole-run figures.
    pub fn measured(&self, second: usize) -> bool {
        second >= self.measure_from_s
    }

    /// Records one request that started `second` seconds into the run and took `micros`.
    pub fn record(&mut self, second: usize, outcome: Outcome, micros: u64) {
        if self.timeline.len() <= second {
            self.timeline.resize(second + 1, Second::default());
        }
        let s = &mut self.timeline[second];
        s.sent += 1;
        let timed = matches!(outcome, Outcome::Status { .. } | Outcome::ClosedByServer);
        if timed {
            s.latency[bucket(micros)] += 1;
        }
        if let Outcome::Status { success: true, .. } = outcome {
            s.success += 1;
        }
        if !self.measured(second) {
            return;
        }
        self.sent += 1;
        if timed {
            let _ = self.latency.record(micros.clamp(1, MAX_MICROS));
        }
        match outcome {
            Outcome::Status { code, success } => {
                *self.statuses.entry(code).or_default() += 1;
                self.success += u64::from(success);
            }
            Outcome::Timeout => self.timeouts += 1,
            Outcome::ConnectionError => self.connection_errors += 1,
            Outcome::ClosedUnanswered => self.closed_unanswered += 1,
            Outcome::Abandoned => self.abandoned += 1,
            Outcome::HeldToEnd => self.held_to_end += 1,
            Outcome::ClosedByServer => self.closed_by_server += 1,
        }
    }

    /// The browser tallies (created on first use).
    pub fn browser(&mut self) -> &mut BrowserStats {
        self.browser.get_or_insert_with(Box::default)
    }

    pub fn merge(&mut self, other: &ClassStats) {
        self.sent += other.sent;
        self.success += other.success;
        for (code, n) in &other.statuses {
            *self.statuses.entry(*code).or_default() += n;
        }
        self.timeouts += other.timeouts;
        self.connection_errors += other.connection_errors;
        self.closed_unanswered += other.closed_unanswered;
        self.abandoned += other.abandoned;
        self.closed_by_server += other.closed_by_server;
        self.held_to_end += other.held_to_end;
        let _ = self.latency.add(&other.latency);
        if let Some(theirs) = &other.browser {
            self.browser().merge(theirs);
        }
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
        quantile_ms(&self.latency, q)
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
        b.record(1, Outcome::ClosedUnanswered, 0);
        b.record(1, Outcome::Abandoned, 0);
        b.browser().challenges_met = 3;
        b.browser().users_paid = 1;
        let _ = b.browser().challenged.record(30_000);
        let _ = b.browser().connects.record(1_000_000);
        b.browser().slow.count = 2;
        b.browser().slow.by_second.insert(7, 2);
        a.browser().slow.count = 1;
        a.browser().slow.by_second.insert(7, 1);
        a.merge(&b);
        assert_eq!(a.sent, 204);
        assert_eq!((a.closed_unanswered, a.abandoned), (1, 1));
        let browser = a.browser.as_ref().unwrap();
        assert_eq!((browser.challenges_met, browser.users_paid), (3, 1));
        assert_eq!(browser.challenged.len(), 1);
        assert_eq!(browser.connects.len(), 1);
        assert_eq!(browser.slow.count, 3);
        assert_eq!(browser.slow.by_second[&7], 3);
        assert_eq!(a.success, 100);
        assert_eq!(a.statuses[&200], 100);
        assert_eq!(a.statuses[&404], 100);
        assert_eq!((a.timeouts, a.connection_errors), (1, 1));
        assert_eq!(a.timeline.len(), 3);
        assert_eq!(a.timeline[1].sent, 4);
        let p50 = a.timeline[0].quantile_ms(0.5);
        assert!((0.9..1.4).contains(&p50), "{p50}");
        let p99 = a.quantile_ms(0.99);
        assert!((45.0..56.0).contains(&p99), "{p99}");
    }

    #[test]
    fn requests_before_the_measured_window_go_to_the_timeline_only() {
        let mut s = ClassStats::measuring_from(2);
        let ok = Outcome::Status {
            code: 200,
            success: true,
        };
        s.record(0, ok, 1_000);
        s.record(1, Outcome::Timeout, 0);
        s.record(2, ok, 5_000);
        s.record(3, Outcome::ClosedUnanswered, 0);
        assert_eq!(
            (s.sent, s.success, s.timeouts, s.closed_unanswered),
            (2, 1, 0, 1)
        );
        assert_eq!(s.statuses[&200], 1);
        assert_eq!(s.latency.len(), 1);
        let per_second: Vec<u64> = s.timeline.iter().map(|x| x.sent).collect();
        assert_eq!(per_second, [1, 1, 1, 1]);
        assert_eq!(s.timeline[0].success, 1);
    }
}
