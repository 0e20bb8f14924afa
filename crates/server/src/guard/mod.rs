//! The shield glue: [`Guard`] is what the listeners call, one method per admission step, each
//! doing nothing (admitting) when the shield is switched off (`--shield false`). Callers never
//! see whether a shield runs.
//!
//! - `shield.rs`: the layers of `rempart-shield` configured from the settings, refusal counters
//!   and the attack-mode window;
//! - `pressure.rs`: saturation seen where it happens (scheduling lag, CPU against the allowance);
//! - `tasks.rs`: the background work (filter rebuilds, attack-mode switching, refusal logs);
//! - `trust.rs`: what the node remembers of each source (known, bad), in fixed memory.
//!
//! The page that solves a challenge in the browser is `rempart_views::html::challenge`.

pub mod pressure;
mod shield;
pub mod snapshot;
pub mod tasks;
pub mod trust;

use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use rempart_shield::{Challenge, ChallengeError, Priority, SourceConnections, prefix_of};

pub use shield::Shield;
pub use trust::Trust;

use crate::labels::labelled;
use crate::settings::ShieldSettings;

labelled! {
    /// Why the shield refused something.
    pub enum Reason {
        ConnCap = "conn_cap",
        SourceConnCap = "source_conn_cap",
        Invalid = "invalid",
        Unknown = "unknown",
        RateLimited = "rate_limited",
        Overloaded = "overloaded",
        Challenge = "challenge",
        /// A request head the public listener refused (malformed, too large, chunked body).
        Malformed = "malformed",
        /// A request head (or body) that did not arrive within the header timeout.
        HeaderTimeout = "header_timeout",
        /// A connection closed before its first head was complete, to make room for a newcomer.
        Evicted = "evicted",
        /// A connection from a source whose connections kept earning refusals, closed unread
        /// while the node is under pressure.
        Distrusted = "distrusted",
    }
}

impl Reason {
    /// Refusals that protect the node (as opposed to answering bad input) count toward attack
    /// mode and the refused-prefix table.
    pub fn protects_the_node(self) -> bool {
        matches!(
            self,
            Reason::ConnCap
                | Reason::SourceConnCap
                | Reason::RateLimited
                | Reason::Overloaded
                | Reason::Challenge
                | Reason::HeaderTimeout
                | Reason::Evicted
                | Reason::Distrusted
        )
    }

    /// Refusals that count toward attack mode's refused share: those that protect the node, and
    /// bogus lookups (unknown or invalid numbers), which alone can saturate a small node.
    pub fn counts_toward_attack(self) -> bool {
        self.protects_the_node() || matches!(self, Reason::Unknown | Reason::Invalid)
    }
}

/// How long a source that proved itself (pass, API key, a person's pace) stays known.
pub const KNOWN_FOR_S: u64 = 600;
/// How long a source whose connection was cut for refusals stays bad.
pub const BAD_FOR_S: u64 = 60;

/// What a lookup presents to the shield.
pub struct LookupClaims<'a> {
    pub number: &'a [u8],
    pub source: IpAddr,
    /// Whether the existence filter's "absent" can be trusted (a shared store's change feed is
    /// readable).
    pub filter_trusted: bool,
    /// A challenge pass, when the client showed one.
    pub pass: Option<&'a str>,
}

/// The shield's verdict on a lookup.
pub enum Admission {
    /// Look it up, at this storage priority.
    Admit(Priority),
    /// The existence filter says no such parcel: 404 without storage.
    Unknown,
    /// Over a per-source or per-prefix rate: 429.
    RateLimited { retry_after: u32 },
    /// Attack mode, and no valid pass: 403 with this challenge.
    Challenge(Challenge),
}

/// A storage read's slot under the adaptive concurrency limit (empty when the shield is off).
pub struct StoragePermit<'a>(Option<rempart_shield::Permit<'a>>);

impl StoragePermit<'_> {
    /// The read is done: feed its latency to the limit.
    pub fn done(self) {
        if let Some(permit) = self.0 {
            permit.done();
        }
    }
}

/// The shield in front of the public listener, or nothing.
pub struct Guard {
    shield: Option<Shield>,
}

impl Guard {
    pub fn new(settings: &ShieldSettings) -> Guard {
        Guard {
            shield: settings.shield.get().then(|| Shield::new(settings)),
        }
    }

    /// The layers, for the background tasks and the operations page; `None` when off.
    pub fn shield(&self) -> Option<&Shield> {
        self.shield.as_ref()
    }

    /// Counts a refusal (nothing when off).
    pub fn refuse(&self, reason: Reason, source: Option<IpAddr>) {
        if let Some(shield) = &self.shield {
            shield.refuse(reason, source);
        }
    }

    /// Counts a public request's latency for attack mode.
    pub fn observe(&self, took: Duration) {
        if let Some(shield) = &self.shield {
            shield.observe(took);
        }
    }

    /// The per-source connection caps of the public listener; `None` when off.
    pub fn source_connections(&self) -> Option<Arc<SourceConnections>> {
        self.shield.as_ref().map(|s| s.conns.clone())
    }

    /// The shield's checks for one lookup whose number is valid, cheapest first: existence
    /// filter, API key (`authorized`, asked only when needed), per-source limits, attack-mode
    /// pass. Refusals are counted here.
    pub fn admit_lookup(
        &self,
        claims: &LookupClaims<'_>,
        authorized: impl FnOnce() -> bool,
    ) -> Admission {
        let Some(shield) = &self.shield else {
            return Admission::Admit(Priority::Anonymous);
        };
        let answer = match claims.filter_trusted {
            false => 2,
            true => match shield.filter.check(claims.number) {
                rempart_shield::Verdict::Absent => 0,
                rempart_shield::Verdict::Maybe => 1,
            },
        };
        shield.filter_answers[answer].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if answer == 0 {
            shield.refuse(Reason::Unknown, None);
            return Admission::Unknown;
        }
        let now = crate::clock::unix_now();
        if authorized() {
            shield.trust.mark_known(claims.source, now + KNOWN_FOR_S);
            return Admission::Admit(Priority::High);
        }
        if let rempart_shield::Decision::Limit { retry_after, .. } =
            shield.limiter.check(claims.source)
        {
            shield.refuse(Reason::RateLimited, Some(claims.source));
            return Admission::RateLimited { retry_after };
        }
        let network = network_of(claims.source);
        // A pass is checked whenever it is shown: a valid one makes the source known.
        let passed = claims
            .pass
            .is_some_and(|pass| shield.challenges.check_pass(&network, pass, now));
        if passed {
            shield.trust.mark_known(claims.source, now + KNOWN_FOR_S);
            return Admission::Admit(Priority::High);
        }
        if shield.attack.is_on() {
            shield.refuse(Reason::Challenge, Some(claims.source));
            return Admission::Challenge(shield.challenges.issue(&network, now));
        }
        // Proven clients first at storage too: a flood of real numbers that misses the cache
        // must not take the reads of sources the shield knows.
        match shield.trust.get(claims.source, now) {
            Trust::Known => Admission::Admit(Priority::High),
            _ => Admission::Admit(Priority::Anonymous),
        }
    }

    /// A slot for a storage read, waiting at most the queue deadline; `None`: shed (503).
    pub async fn storage_permit(&self, priority: Priority) -> Option<StoragePermit<'_>> {
        match &self.shield {
            None => Some(StoragePermit(None)),
            Some(shield) => {
                let permit = shield
                    .concurrency
                    .acquire(priority, shield.queue_deadline)
                    .await?;
                shield
                    .storage_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(StoragePermit(Some(permit)))
            }
        }
    }

    /// Whether the existence filter is in force (built, or restored at start); always with the
    /// shield off. The public `/readyz` waits for it: until then every valid-looking number
    /// would cost a storage read.
    pub fn filter_ready(&self) -> bool {
        self.shield.as_ref().is_none_or(|s| {
            s.filter.is_built() || s.filter_off.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// Whether challenges are answered here (`POST /v1/challenge` exists only with a shield).
    pub fn takes_challenges(&self) -> bool {
        self.shield.is_some()
    }

    /// Checks a solved challenge from `source`; a pass, its expiry and its lifetime in seconds.
    pub fn redeem(
        &self,
        source: IpAddr,
        seed: &str,
        nonce: &str,
    ) -> Result<(String, u64, u64), ChallengeError> {
        let Some(shield) = &self.shield else {
            return Err(ChallengeError::BadSeed);
        };
        let now = crate::clock::unix_now();
        let (pass, expires) = shield
            .challenges
            .redeem(&network_of(source), seed, nonce, now)?;
        shield.trust.mark_known(source, now + KNOWN_FOR_S);
        Ok((pass, expires, shield.challenges.pass_ttl()))
    }

    /// Whether the public listener's gate has a program in place (`listener/gate.rs`).
    pub fn gate_engaged(&self) -> bool {
        self.shield
            .as_ref()
            .is_some_and(|s| s.gate.engaged.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether attack mode is on.
    pub fn attack_mode(&self) -> bool {
        self.shield.as_ref().is_some_and(|s| s.attack.is_on())
    }

    /// What the node remembers of a source (`Unknown` when the shield is off).
    pub fn trust_of(&self, source: IpAddr) -> Trust {
        self.shield.as_ref().map_or(Trust::Unknown, |s| {
            s.trust.get(source, crate::clock::unix_now())
        })
    }

    /// A source browsed at a person's pace with nothing refused: known for a while.
    pub fn mark_known(&self, source: IpAddr) {
        if let Some(shield) = &self.shield {
            shield
                .trust
                .mark_known(source, crate::clock::unix_now() + KNOWN_FOR_S);
        }
    }

    /// A source whose connection kept earning refusals: bad for a while.
    pub fn mark_bad(&self, source: IpAddr) {
        if let Some(shield) = &self.shield {
            let now = crate::clock::unix_now();
            shield.trust.mark_bad(source, now, now + BAD_FOR_S);
        }
    }

    /// Whether the node is defending itself now: attack mode on, or the last second saturated
    /// or abusive. Bad sources' new connections are then closed unread.
    pub fn under_pressure(&self) -> bool {
        self.shield.as_ref().is_some_and(|s| {
            s.attack.is_on() || s.pressed.load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The existence filter learns numbers that now have events.
    pub fn learn_numbers<'a>(&self, numbers: impl IntoIterator<Item = &'a [u8]>) {
        if let Some(shield) = &self.shield {
            shield.filter.insert(numbers);
        }
    }

    /// The existence filter answers "maybe" until its next rebuild (too much changed elsewhere
    /// to name every number).
    pub fn forget_numbers(&self) {
        if let Some(shield) = &self.shield {
            shield.filter.degrade();
        }
    }

    /// The shield's large memory consumers with their bounds (none when off): the built filter
    /// (bounded by `filter_max_parcels`, ~1.13 bytes a parcel), its recent sets (fixed), and a
    /// rebuild while it runs (bounded by `filter_max_parcels` too, see
    /// [`shield::REBUILD_BYTES_PER_PARCEL`]).
    pub fn memory_use(&self, max_parcels: u64) -> Vec<rempart_store::MemoryUse> {
        let Some(shield) = &self.shield else {
            return Vec::new();
        };
        vec![
            rempart_store::MemoryUse {
                consumer: "existence_filter",
                bytes: shield.filter.base_memory_bytes() as u64,
                // The builder's array: 1.125 slots a key, plus three segments of slack.
                bound_bytes: Some(max_parcels + max_parcels / 8 + (3 << 18)),
            },
            rempart_store::MemoryUse {
                consumer: "existence_filter_recent",
                bytes: shield.filter.recent_memory_bytes() as u64,
                bound_bytes: Some(shield.filter.recent_memory_bytes() as u64),
            },
            rempart_store::MemoryUse {
                consumer: "existence_filter_rebuild",
                bytes: shield
                    .rebuild_bytes
                    .load(std::sync::atomic::Ordering::Relaxed),
                bound_bytes: Some(max_parcels * shield::REBUILD_BYTES_PER_PARCEL),
            },
        ]
    }

    /// The shield's Prometheus samples (none when off).
    pub fn render_metrics(&self, out: &mut String) {
        if let Some(shield) = &self.shield {
            shield.render_metrics(out);
        }
    }

    /// The shield's state for the operations page; `null` when off.
    pub fn status(&self) -> serde_json::Value {
        self.shield
            .as_ref()
            .map_or(serde_json::Value::Null, Shield::status)
    }
}

/// The bytes a pass is bound to: the client's /24 or /48.
pub fn network_of(ip: IpAddr) -> Vec<u8> {
    match prefix_of(ip) {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::values::Switch;

    fn off() -> Guard {
        let mut settings = ShieldSettings::defaults();
        settings.shield = "false".parse::<Switch>().unwrap();
        Guard::new(&settings)
    }

    #[test]
    fn an_absent_shield_admits_everything_and_counts_nothing() {
        let guard = off();
        let claims = LookupClaims {
            number: b"RR123456785FR",
            source: "127.0.0.1".parse().unwrap(),
            filter_trusted: true,
            pass: None,
        };
        assert!(matches!(
            guard.admit_lookup(&claims, || panic!("no key check without a shield")),
            Admission::Admit(Priority::Anonymous)
        ));
        assert!(guard.source_connections().is_none());
        assert!(!guard.takes_challenges());
        assert_eq!(guard.status(), serde_json::Value::Null);
        let mut out = String::new();
        guard.render_metrics(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_filter_refuses_unknown_numbers_only_when_trusted() {
        let guard = Guard::new(&ShieldSettings::defaults());
        let shield = guard.shield().unwrap();
        shield.filter.begin_rebuild();
        shield.filter.finish_rebuild(&[*b"RR123456785FR"]).unwrap();
        let mut claims = LookupClaims {
            number: b"6A12345678905",
            source: "127.0.0.1".parse().unwrap(),
            filter_trusted: true,
            pass: None,
        };
        assert!(matches!(
            guard.admit_lookup(&claims, || false),
            Admission::Unknown
        ));
        claims.filter_trusted = false;
        assert!(matches!(
            guard.admit_lookup(&claims, || false),
            Admission::Admit(Priority::Anonymous)
        ));
        assert!(matches!(
            guard.admit_lookup(&claims, || true),
            Admission::Admit(Priority::High)
        ));
    }

    #[test]
    fn proven_sources_read_storage_at_the_high_priority() {
        let guard = Guard::new(&ShieldSettings::defaults());
        let stranger: IpAddr = "127.0.0.7".parse().unwrap();
        let known: IpAddr = "127.0.0.8".parse().unwrap();
        guard.mark_known(known);
        let claims = |source| LookupClaims {
            number: b"RR123456785FR",
            source,
            filter_trusted: false,
            pass: None,
        };
        assert!(matches!(
            guard.admit_lookup(&claims(stranger), || false),
            Admission::Admit(Priority::Anonymous)
        ));
        assert!(matches!(
            guard.admit_lookup(&claims(known), || false),
            Admission::Admit(Priority::High)
        ));
    }

    #[test]
    fn every_filter_consumer_is_listed_with_a_bound_from_filter_max_parcels() {
        let guard = Guard::new(&ShieldSettings::defaults());
        let uses = guard.memory_use(20_000_000);
        let bound = |name: &str| {
            uses.iter()
                .find(|u| u.consumer == name)
                .and_then(|u| u.bound_bytes)
                .unwrap_or_else(|| panic!("{name} not listed"))
        };
        assert_eq!(
            bound("existence_filter_rebuild"),
            20_000_000 * shield::REBUILD_BYTES_PER_PARCEL
        );
        assert!(bound("existence_filter") >= 20_000_000);
        assert!(bound("existence_filter_recent") > 0);
        let rebuild = uses
            .iter()
            .find(|u| u.consumer == "existence_filter_rebuild");
        assert_eq!(rebuild.map(|u| u.bytes), Some(0), "no rebuild running");
        assert!(off().memory_use(20_000_000).is_empty());
    }
}
