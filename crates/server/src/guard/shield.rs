//! The shield's layers (`rempart-shield`) configured for this node from [`ShieldSettings`],
//! plus what they need from the server: refusal counters by reason, and the per-second window
//! of requests, refusals and latency that feeds attack mode. See docs/shield.md.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rempart_shield::{
    AttackDetector, AttackSettings, Challenges, ConcurrencyLimiter, ExistenceFilter, RateLimiter,
    RefusedPrefixes, SourceConnections, Window, prefix_of,
};

use super::Reason;
use super::pressure::Lag;
use super::trust::TrustTable;
use crate::listener::gate::GateState;
use crate::settings::ShieldSettings;

/// Latency buckets of the attack-mode window (upper bounds, microseconds).
const WINDOW_BUCKETS: [u64; 12] = [
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    u64::MAX,
];
/// Labels of [`Shield::filter_answers`], in order.
pub const FILTER_ANSWERS: [&str; 3] = ["absent", "maybe", "skipped"];
/// Most entries the existence filter's recent sets hold before it asks for a rebuild.
pub const MAX_RECENT_NUMBERS: usize = rempart_shield::DEFAULT_MAX_RECENT;
/// Most bytes a rebuild of the existence filter holds per parcel while it runs: the listed
/// keys (8 bytes each, up to twice that while their vector grows past its first estimate), then
/// `xorf`'s binary fuse builder, ~24 bytes a key besides the fingerprints it keeps (per array
/// slot, 1.125 a key: `alone` 4, `t2count` 1, `t2hash` 8; per key: `reverse_order` 8,
/// `reverse_h` 1). Bounded by `filter_max_parcels`, like the filter itself; shown on /metrics
/// as `existence_filter_rebuild`.
pub const REBUILD_BYTES_PER_PARCEL: u64 = 40;
/// Smallest adaptive storage concurrency (half of it kept for priority reads at the floor, see
/// `rempart_shield::MIN_RESERVED`).
pub const STORAGE_CONCURRENCY_FLOOR: usize = 8;
/// Share of the storage concurrency kept for priority reads (API keys, passes, known sources).
pub const PRIORITY_RESERVE_PERCENT: usize = 20;
/// Seconds a challenge stays solvable.
pub const CHALLENGE_TTL_S: u64 = 120;

pub struct Shield {
    pub conns: Arc<SourceConnections>,
    pub filter: ExistenceFilter,
    pub limiter: RateLimiter,
    pub concurrency: ConcurrencyLimiter,
    pub attack: AttackDetector,
    pub challenges: Challenges,
    pub refused_prefixes: RefusedPrefixes,
    pub queue_deadline: Duration,
    /// Scheduling lag of the public runtime (its probe runs there).
    pub lag: Lag,
    /// What the node remembers of each source.
    pub trust: TrustTable,
    /// The public listener's gate (`listener/gate.rs`).
    pub gate: GateState,
    /// Whether the last window was saturated or abusive.
    pub pressed: AtomicBool,
    /// The last window's CPU use against the node's allowance, in thousandths.
    busy_permille: AtomicU64,
    refused: [AtomicU64; Reason::COUNT],
    /// Existence filter answers on lookups: absent (404, no storage), maybe (storage asked),
    /// skipped (the filter was not trusted: a shared store's feed unreadable).
    pub filter_answers: [AtomicU64; 3],
    /// Storage reads let through the concurrency limit (each a lookup the cache did not answer).
    pub storage_reads: AtomicU64,
    /// 1 when the filter was restored from a snapshot at start.
    pub filter_restored: AtomicBool,
    /// The store holds more parcels than `filter_max_parcels`: no filter (every answer "maybe").
    pub filter_off: AtomicBool,
    /// Bytes a rebuild of the filter holds while it runs (listed keys, then the builder's
    /// arrays); 0 between rebuilds. See [`REBUILD_BYTES_PER_PARCEL`].
    pub rebuild_bytes: AtomicU64,
    window_requests: AtomicU64,
    window_refused: AtomicU64,
    window_latency: [AtomicU64; WINDOW_BUCKETS.len()],
}

impl Shield {
    pub fn new(s: &ShieldSettings) -> Shield {
        let storage_concurrency = s.storage_concurrency.get();
        Shield {
            conns: SourceConnections::new(s.source_max_connections.get()),
            filter: ExistenceFilter::new(MAX_RECENT_NUMBERS),
            limiter: RateLimiter::new(s.rate_per_source.get(), s.rate_per_prefix.get()),
            concurrency: ConcurrencyLimiter::new(
                STORAGE_CONCURRENCY_FLOOR.min(storage_concurrency),
                storage_concurrency,
                PRIORITY_RESERVE_PERCENT,
                s.storage_target_ms.duration(),
            ),
            attack: AttackDetector::new(AttackSettings {
                mode: s.attack_mode,
                refused_ratio: s.attack_refused_ratio.get(),
                min_requests: s.attack_min_requests,
                p99: s.attack_p99_ms.duration(),
                lag: s.attack_lag_ms.duration(),
                busy: s.attack_cpu_ratio.get(),
                on_windows: u32::try_from(s.attack_on_s.get()).unwrap_or(u32::MAX),
                calm_windows: u32::try_from(s.attack_calm_s.get()).unwrap_or(u32::MAX),
            }),
            challenges: Challenges::new(
                s.shield_secret.bytes(),
                s.challenge_difficulty.get(),
                CHALLENGE_TTL_S,
                s.pass_ttl_s.get(),
            ),
            refused_prefixes: RefusedPrefixes::default(),
            queue_deadline: s.storage_queue_ms.duration(),
            lag: Lag::default(),
            trust: TrustTable::default(),
            gate: GateState::default(),
            pressed: AtomicBool::new(false),
            busy_permille: AtomicU64::new(0),
            refused: Default::default(),
            filter_answers: Default::default(),
            storage_reads: AtomicU64::new(0),
            filter_restored: AtomicBool::new(false),
            filter_off: AtomicBool::new(false),
            rebuild_bytes: AtomicU64::new(0),
            window_requests: AtomicU64::new(0),
            window_refused: AtomicU64::new(0),
            window_latency: Default::default(),
        }
    }

    /// Counts a refusal. Refusals that protect the node, and bogus requests (unknown or invalid
    /// numbers), count toward attack mode.
    pub fn refuse(&self, reason: Reason, source: Option<IpAddr>) {
        self.refused[reason.index()].fetch_add(1, Relaxed);
        if reason.counts_toward_attack() {
            self.window_refused.fetch_add(1, Relaxed);
        }
        if reason.protects_the_node()
            && let Some(ip) = source
        {
            self.refused_prefixes.record(prefix_of(ip));
        }
    }

    /// Counts a public request and its latency for the attack-mode window.
    pub fn observe(&self, took: Duration) {
        self.window_requests.fetch_add(1, Relaxed);
        let micros = took.as_micros() as u64;
        let i = WINDOW_BUCKETS
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(WINDOW_BUCKETS.len() - 1);
        self.window_latency[i].fetch_add(1, Relaxed);
    }

    /// Takes the window's counts and starts a new one; `busy` is the CPU used over it, as a
    /// share of the node's allowance.
    pub fn take_window(&self, busy: f64) -> Window {
        let requests = self.window_requests.swap(0, Relaxed);
        let refused = self.window_refused.swap(0, Relaxed);
        let counts: [u64; WINDOW_BUCKETS.len()] =
            std::array::from_fn(|i| self.window_latency[i].swap(0, Relaxed));
        let total: u64 = counts.iter().sum();
        let mut p99 = Duration::ZERO;
        if total > 0 {
            let want = (total as f64 * 0.99).ceil() as u64;
            let mut seen = 0;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= want {
                    p99 = Duration::from_micros(WINDOW_BUCKETS[i].min(10_000_000));
                    break;
                }
            }
        }
        let (heaviest_source, heaviest_prefix) = self.limiter.take_heaviest();
        self.busy_permille
            .store((busy * 1000.0).round() as u64, Relaxed);
        Window {
            requests,
            refused,
            p99,
            lag: self.lag.take_max(),
            busy,
            heaviest_source,
            heaviest_prefix,
        }
    }

    pub fn refused_total(&self) -> [u64; Reason::COUNT] {
        std::array::from_fn(|i| self.refused[i].load(Relaxed))
    }

    /// The shield's Prometheus samples.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str("# HELP rempart_shield_refused_total Requests or connections the shield refused, by reason.\n# TYPE rempart_shield_refused_total counter\n");
        for (reason, n) in Reason::ALL.iter().zip(self.refused_total()) {
            let _ = writeln!(
                out,
                "rempart_shield_refused_total{{reason=\"{}\"}} {n}",
                reason.label()
            );
        }
        out.push_str("# HELP rempart_filter_answers_total The existence filter's answers to lookups of valid numbers (absent: 404 without storage; maybe: storage asked; skipped: filter not trusted).\n# TYPE rempart_filter_answers_total counter\n");
        for (answer, n) in FILTER_ANSWERS.iter().zip(&self.filter_answers) {
            let _ = writeln!(
                out,
                "rempart_filter_answers_total{{answer=\"{answer}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP rempart_storage_reads_total Lookups let through to storage (a cache miss admitted by the storage concurrency limit).\n# TYPE rempart_storage_reads_total counter\nrempart_storage_reads_total {}",
            self.storage_reads.load(Relaxed)
        );
        let (probes, lag_seconds) = self.lag.totals();
        let _ = writeln!(
            out,
            "# HELP rempart_public_lag_seconds How late the public runtime wakes a probe asking every 10 ms (scheduling lag).\n# TYPE rempart_public_lag_seconds summary\nrempart_public_lag_seconds_sum {lag_seconds}\nrempart_public_lag_seconds_count {probes}"
        );
        let _ = writeln!(
            out,
            "# HELP rempart_cpu_allowance_used_ratio CPU used over the last second, as a share of the node's allowance (its cgroup quota, else its CPUs).\n# TYPE rempart_cpu_allowance_used_ratio gauge\nrempart_cpu_allowance_used_ratio {}",
            self.busy_permille.load(Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "# HELP rempart_gate_programs_total Programs the public listener's gate put in place.\n# TYPE rempart_gate_programs_total counter\nrempart_gate_programs_total {}",
            self.gate.programs.load(Relaxed)
        );
        for (name, help, value) in self.gauges() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }

    /// The shield's gauges for `/metrics`: name, help, value.
    fn gauges(&self) -> [(&'static str, &'static str, u64); 13] {
        [
            (
                "rempart_shield_attack_mode",
                "1 while attack mode is on.",
                u64::from(self.attack.is_on()),
            ),
            (
                "rempart_shield_sources_tracked",
                "Source addresses with a connection open (per-source caps).",
                self.conns.sources() as u64,
            ),
            (
                "rempart_shield_rate_limiter_bytes",
                "Memory of the rate limiter's sketches (fixed).",
                self.limiter.memory_bytes() as u64,
            ),
            (
                "rempart_filter_numbers",
                "Tracking numbers in the existence filter's last build.",
                self.filter.len() as u64,
            ),
            (
                "rempart_filter_in_force",
                "1 once the existence filter is built or restored (until then it answers maybe, and the public /readyz says 503).",
                u64::from(self.filter.is_built()),
            ),
            (
                "rempart_filter_exact",
                "1 while the existence filter holds every known number (built, recent set not overflowed): what a clean stop can save.",
                u64::from(self.filter.is_built() && !self.filter.needs_rebuild()),
            ),
            (
                "rempart_filter_restored",
                "1 when the existence filter was restored from the snapshot saved at the last clean stop.",
                u64::from(self.filter_restored.load(Relaxed)),
            ),
            (
                "rempart_filter_recent_numbers",
                "Tracking numbers added since the last build.",
                self.filter.recent_len() as u64,
            ),
            (
                "rempart_storage_concurrency_limit",
                "Storage reads allowed at once now (adaptive).",
                self.concurrency.limit() as u64,
            ),
            (
                "rempart_storage_reads_in_flight",
                "Storage reads running now.",
                self.concurrency.in_flight() as u64,
            ),
            (
                "rempart_gate_level",
                "The public listener's gate: 0 open; n lets one new connection in 2^n from unknown sources in (known sources always).",
                u64::from(self.gate.level.load(Relaxed)),
            ),
            (
                "rempart_gate_listen_queue",
                "Connections waiting in the public listener's accept queue at the gate's last look.",
                u64::from(self.gate.queue.load(Relaxed)),
            ),
            (
                "rempart_gate_known_addresses",
                "Known addresses the gate's program in force always lets in.",
                u64::from(self.gate.known.load(Relaxed)),
            ),
        ]
    }

    /// The shield's state for the operations page.
    pub fn status(&self) -> serde_json::Value {
        let top: Vec<serde_json::Value> = self
            .refused_prefixes
            .top(10)
            .into_iter()
            .map(|(p, n)| serde_json::json!({"prefix": p.to_string(), "refused": n}))
            .collect();
        let refused: serde_json::Map<_, _> = Reason::ALL
            .iter()
            .zip(self.refused_total())
            .map(|(r, n)| (r.label().to_owned(), serde_json::Value::from(n)))
            .collect();
        serde_json::json!({
            "attack_mode": self.attack.is_on(),
            "top_refused_prefixes": top,
            "refused": refused,
            "filter_numbers": self.filter.len(),
            "storage_concurrency_limit": self.concurrency.limit(),
            "gate_level": self.gate.level.load(Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ShieldSettings;

    #[test]
    fn the_window_reports_refusals_and_p99() {
        let shield = Shield::new(&ShieldSettings::defaults());
        for _ in 0..99 {
            shield.observe(Duration::from_micros(300));
        }
        shield.observe(Duration::from_millis(80));
        shield.refuse(Reason::RateLimited, Some("127.9.9.9".parse().unwrap()));
        shield.refuse(Reason::Invalid, None);
        shield.refuse(Reason::Malformed, None);
        let w = shield.take_window(0.5);
        assert_eq!(
            (w.requests, w.refused),
            (100, 2),
            "bogus numbers count toward attack mode, framing refusals do not"
        );
        assert_eq!(w.p99, Duration::from_micros(500));
        assert_eq!(w.busy, 0.5);
        assert_eq!(shield.take_window(0.0).requests, 0);
        assert_eq!(shield.refused_total()[Reason::Invalid.index()], 1);
    }
}
