//! The shield's state in the node: the layers of `rempart-shield`, configured from the settings,
//! plus what they need from the server (refusal counters by reason, the per-second window that
//! feeds attack mode, the challenge page). See docs/shield.md for the whole admission path.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use rempart_shield::{
    AttackDetector, AttackMode, AttackSettings, Challenges, ConcurrencyLimiter, ExistenceFilter,
    RateLimiter, RefusedPrefixes, SourceConnections, Window, prefix_of,
};

use crate::config::Settings;

/// Why the shield refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ConnCap = 0,
    SourceConnCap,
    Invalid,
    Unknown,
    RateLimited,
    Overloaded,
    Challenge,
    /// A request head the public listener refused (malformed, too large, chunked body).
    Malformed,
    /// A request head (or body) that did not arrive within the header timeout.
    HeaderTimeout,
}
pub const REASONS: [&str; 9] = [
    "conn_cap",
    "source_conn_cap",
    "invalid",
    "unknown",
    "rate_limited",
    "overloaded",
    "challenge",
    "malformed",
    "header_timeout",
];

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
/// Most entries the existence filter's recent sets hold before it asks for a rebuild.
pub const MAX_RECENT_NUMBERS: usize = rempart_shield::DEFAULT_MAX_RECENT;
/// Smallest adaptive storage concurrency.
pub const STORAGE_CONCURRENCY_FLOOR: usize = 4;
/// Share of the storage concurrency kept for API-key clients.
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
    refused: [AtomicU64; REASONS.len()],
    window_requests: AtomicU64,
    window_refused: AtomicU64,
    window_latency: [AtomicU64; WINDOW_BUCKETS.len()],
}

impl Shield {
    pub fn new(s: &Settings) -> Shield {
        let mode = match s.attack_mode.as_str() {
            "on" => AttackMode::On,
            "off" => AttackMode::Off,
            _ => AttackMode::Auto,
        };
        Shield {
            conns: SourceConnections::new(
                u32::try_from(s.source_max_connections).unwrap_or(u32::MAX),
            ),
            filter: ExistenceFilter::new(MAX_RECENT_NUMBERS),
            limiter: RateLimiter::new(s.rate_per_source, s.rate_per_prefix),
            concurrency: ConcurrencyLimiter::new(
                STORAGE_CONCURRENCY_FLOOR.min(s.storage_concurrency),
                s.storage_concurrency,
                PRIORITY_RESERVE_PERCENT,
                Duration::from_millis(s.storage_target_ms),
            ),
            attack: AttackDetector::new(AttackSettings {
                mode,
                refused_ratio: s.attack_refused_ratio,
                min_requests: s.attack_min_requests,
                p99: Duration::from_millis(s.attack_p99_ms),
                calm_windows: s.attack_calm_s,
            }),
            challenges: Challenges::new(
                s.shield_secret,
                s.challenge_difficulty,
                CHALLENGE_TTL_S,
                s.pass_ttl_s,
            ),
            refused_prefixes: RefusedPrefixes::default(),
            queue_deadline: Duration::from_millis(s.storage_queue_ms),
            refused: Default::default(),
            window_requests: AtomicU64::new(0),
            window_refused: AtomicU64::new(0),
            window_latency: Default::default(),
        }
    }

    /// Counts a refusal. Refusals that protect the node also count toward attack mode.
    pub fn refuse(&self, reason: Reason, source: Option<IpAddr>) {
        self.refused[reason as usize].fetch_add(1, Relaxed);
        if matches!(
            reason,
            Reason::ConnCap
                | Reason::SourceConnCap
                | Reason::RateLimited
                | Reason::Overloaded
                | Reason::Challenge
                | Reason::HeaderTimeout
        ) {
            self.window_refused.fetch_add(1, Relaxed);
            if let Some(ip) = source {
                self.refused_prefixes.record(prefix_of(ip));
            }
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

    /// Takes the window's counts and starts a new one.
    pub fn take_window(&self) -> Window {
        let requests = self.window_requests.swap(0, Relaxed);
        let refused = self.window_refused.swap(0, Relaxed);
        let counts: Vec<u64> = self
            .window_latency
            .iter()
            .map(|c| c.swap(0, Relaxed))
            .collect();
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
        Window {
            requests,
            refused,
            p99,
        }
    }

    pub fn refused_total(&self) -> [u64; REASONS.len()] {
        std::array::from_fn(|i| self.refused[i].load(Relaxed))
    }

    /// The shield's Prometheus samples.
    pub fn render_metrics(&self, out: &mut String) {
        out.push_str("# HELP rempart_shield_refused_total Requests or connections the shield refused, by reason.\n# TYPE rempart_shield_refused_total counter\n");
        for (reason, n) in REASONS.iter().zip(self.refused_total()) {
            let _ = writeln!(
                out,
                "rempart_shield_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let gauges = [
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
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }

    /// The shield's state for the operations page.
    pub fn status(&self) -> serde_json::Value {
        let top: Vec<serde_json::Value> = self
            .refused_prefixes
            .top(10)
            .into_iter()
            .map(|(p, n)| serde_json::json!({"prefix": p.to_string(), "refused": n}))
            .collect();
        serde_json::json!({
            "attack_mode": self.attack.is_on(),
            "top_refused_prefixes": top,
            "refused": REASONS.iter().zip(self.refused_total()).map(|(r, n)| (r.to_string(), serde_json::Value::from(n))).collect::<serde_json::Map<_, _>>(),
            "filter_numbers": self.filter.len(),
            "storage_concurrency_limit": self.concurrency.limit(),
        })
    }
}

/// The bytes a pass is bound to: the client's /24 or /48.
pub fn network_of(ip: IpAddr) -> Vec<u8> {
    match prefix_of(ip) {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The browser's challenge page: solves the proof of work in JavaScript (a small SHA-256, no
/// secure context needed), posts it, and reloads with the pass cookie set.
pub fn challenge_page(seed: &str, difficulty: u8) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>One moment</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem}}</style></head>
<body><h1>One moment, please</h1><p id="msg">Tracking is under heavy load. Your browser is doing a small computation to prove it is not part of an attack; the page will load by itself.</p>
<noscript><p>This check needs JavaScript. Please try again in a few minutes, or use the tracking API with an API key.</p></noscript>
<script>
"use strict";
const SEED = "{seed}", BITS = {difficulty};
function sha256(bytes) {{
  const K = new Uint32Array([0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2]);
  const H = new Uint32Array([0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19]);
  const len = bytes.length, total = ((len + 9 + 63) >> 6) << 6, m = new Uint8Array(total);
  m.set(bytes); m[len] = 0x80; const dv = new DataView(m.buffer); dv.setUint32(total - 4, len * 8);
  const w = new Uint32Array(64);
  for (let off = 0; off < total; off += 64) {{
    for (let i = 0; i < 16; i++) w[i] = dv.getUint32(off + i * 4);
    for (let i = 16; i < 64; i++) {{
      const a = w[i-15], b = w[i-2];
      const s0 = ((a>>>7)|(a<<25)) ^ ((a>>>18)|(a<<14)) ^ (a>>>3);
      const s1 = ((b>>>17)|(b<<15)) ^ ((b>>>19)|(b<<13)) ^ (b>>>10);
      w[i] = (w[i-16] + s0 + w[i-7] + s1) | 0;
    }}
    let [a,b,c,d,e,f,g,h] = H;
    for (let i = 0; i < 64; i++) {{
      const S1 = ((e>>>6)|(e<<26)) ^ ((e>>>11)|(e<<21)) ^ ((e>>>25)|(e<<7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a>>>2)|(a<<30)) ^ ((a>>>13)|(a<<19)) ^ ((a>>>22)|(a<<10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }}
    H[0]+=a; H[1]+=b; H[2]+=c; H[3]+=d; H[4]+=e; H[5]+=f; H[6]+=g; H[7]+=h;
  }}
  return H;
}}
function zeros(H) {{ let n = 0; for (const x of H) {{ if (x === 0) {{ n += 32; continue; }} return n + Math.clz32(x); }} return n; }}
const enc = new TextEncoder();
let nonce = 0;
while (zeros(sha256(enc.encode(SEED + ":" + nonce))) < BITS) nonce++;
fetch("/v1/challenge", {{method: "POST", headers: {{"content-type": "application/json"}}, body: JSON.stringify({{seed: SEED, nonce: String(nonce)}})}})
  .then(r => {{ if (!r.ok) throw new Error(r.status); location.reload(); }})
  .catch(e => {{ document.getElementById("msg").textContent = "The check failed (" + e + "); please reload the page."; }});
</script></body></html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServeArgs, Settings};

    /// Every metric the Grafana dashboard charts is one the node exports.
    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let settings = Settings::resolve(ServeArgs::default()).unwrap();
        let mut text = crate::metrics::Metrics::new().render();
        Shield::new(&settings).render_metrics(&mut text);
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

    #[test]
    fn the_window_reports_refusals_and_p99() {
        let settings = Settings::resolve(ServeArgs::default()).unwrap();
        let shield = Shield::new(&settings);
        for _ in 0..99 {
            shield.observe(Duration::from_micros(300));
        }
        shield.observe(Duration::from_millis(80));
        shield.refuse(Reason::RateLimited, Some("127.9.9.9".parse().unwrap()));
        shield.refuse(Reason::Invalid, None);
        let w = shield.take_window();
        assert_eq!(
            (w.requests, w.refused),
            (100, 1),
            "invalid numbers do not count toward attack mode"
        );
        assert_eq!(w.p99, Duration::from_micros(500));
        assert_eq!(shield.take_window().requests, 0);
        assert_eq!(shield.refused_total()[Reason::Invalid as usize], 1);
    }
}
