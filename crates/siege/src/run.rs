//! Running a scenario: one group of tasks per class, all at once, for the scenario's duration;
//! then in-flight requests finish (so the report and the server's counters agree) and the
//! per-worker tallies are merged.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;

use crate::client::{self, Connection};
use crate::scenario::{Class, Kind, TargetList};
use crate::stats::{ClassStats, Outcome};
use crate::target::Endpoint;

/// Most concurrent ingest requests of an ingest class.
pub const INGEST_CONCURRENCY: usize = 8;

/// Everything a class's tasks share.
pub struct Plan {
    pub public: Endpoint,
    pub ingest: Option<(Endpoint, String)>,
    pub parcels: Arc<Vec<TrackingNumber>>,
    pub targets: Option<Arc<(TargetList, Vec<Endpoint>)>>,
    pub started: Instant,
    pub duration: Duration,
    pub stop: Arc<AtomicBool>,
    /// Requests sent so far, per class (for the progress bar).
    pub sent: Arc<Vec<AtomicU64>>,
    pub run_id: u64,
}

/// The source address of member `i` of class number `class`: 127.<10+class>.<i/256>.<i%256+1>
/// would overflow at 255; this spreads `i` over the last two octets and keeps 127.0.0.1 (the
/// usual address of real local clients) out of every class.
pub fn source(class: usize, i: usize) -> IpAddr {
    let i = i % 65_536;
    IpAddr::V4(Ipv4Addr::new(
        127,
        10 + (class % 200) as u8,
        (i >> 8) as u8,
        (i & 0xFF) as u8,
    ))
}

/// A small, fast random generator (xorshift); floods need volume, not quality.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn string(&mut self, len: usize, alphabet: &[u8]) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Paces a class to `rate` requests per second across its tasks (0: no pacing).
struct Pacer {
    rate: u64,
    next: AtomicU64,
}

impl Pacer {
    async fn wait(&self, started: Instant) {
        if self.rate == 0 {
            return;
        }
        let n = self.next.fetch_add(1, Relaxed);
        let at = started + Duration::from_nanos(n.saturating_mul(1_000_000_000 / self.rate));
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Plan {
    fn running(&self) -> bool {
        !self.stop.load(Relaxed) && self.started.elapsed() < self.duration
    }
    fn second(&self) -> usize {
        self.started.elapsed().as_secs() as usize
    }
}

/// A random tracking number for a flood: half with a wrong check digit, half valid but unknown.
pub fn random_number(rng: &mut Rng) -> String {
    let serial = rng.below(100_000_000) as u32;
    let valid = TrackingNumber::s10("ZZ", serial, "FR").expect("valid by construction");
    if rng.below(2) == 0 {
        valid.to_string()
    } else {
        let mut bytes = valid.as_str().as_bytes().to_vec();
        bytes[10] = b'0' + (bytes[10] - b'0' + 1 + rng.below(9) as u8) % 10;
        String::from_utf8(bytes).expect("ASCII")
    }
}

/// Fills `$_N` placeholders of a DDoSia-style template.
pub fn fill(template: &str, list: &TargetList, rng: &mut Rng) -> String {
    let mut out = template.to_owned();
    // Longest names first, so `$_10` is not read as `$_1` followed by `0`.
    let mut rules: Vec<_> = list.randoms.iter().collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r.name.len()));
    for rule in rules {
        while let Some(at) = out.find(&rule.name) {
            let mut alphabet = Vec::new();
            if rule.digit {
                alphabet.extend_from_slice(b"0123456789");
            }
            if rule.upper {
                alphabet.extend_from_slice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");
            }
            if rule.lower {
                alphabet.extend_from_slice(b"abcdefghijklmnopqrstuvwxyz");
            }
            let len = rule.min + rng.below((rule.max - rule.min + 1) as u64) as usize;
            let value = rng.string(len, &alphabet);
            out.replace_range(at..at + rule.name.len(), &value);
        }
    }
    out
}

/// Runs one class; returns its merged tallies.
pub async fn class(plan: Arc<Plan>, index: usize, class: Class) -> ClassStats {
    let pacer = Arc::new(Pacer {
        rate: class.rate,
        next: AtomicU64::new(0),
    });
    let tasks = match class.kind {
        Kind::Legit => class.users,
        Kind::Ingest => INGEST_CONCURRENCY,
        _ => class.connections,
    };
    let next_source = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (plan, class, pacer, next_source) = (
            plan.clone(),
            class.clone(),
            pacer.clone(),
            next_source.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut stats = ClassStats::default();
            let mut rng = Rng::new(
                plan.run_id
                    ^ ((index as u64) << 40)
                    ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            match class.kind {
                Kind::Legit => legit(&plan, index, t, &class, &mut rng, &mut stats).await,
                Kind::Ingest => ingest(&plan, index, t, &class, &pacer, &mut stats).await,
                Kind::Slowloris => slowloris(&plan, index, &class, &next_source, &mut stats).await,
                _ => {
                    flood(
                        &plan,
                        index,
                        &class,
                        &pacer,
                        &next_source,
                        &mut rng,
                        &mut stats,
                    )
                    .await
                }
            }
            stats
        }));
    }
    let mut total = ClassStats::default();
    for h in handles {
        if let Ok(s) = h.await {
            total.merge(&s);
        }
    }
    total
}

async fn timed(conn: &mut Connection, request: &[u8]) -> (Outcome, u64, Option<client::Response>) {
    let started = Instant::now();
    match tokio::time::timeout(client::REQUEST_TIMEOUT, conn.exchange(request)).await {
        Err(_) => (Outcome::Timeout, started.elapsed().as_micros() as u64, None),
        Ok(Err(_)) => (
            Outcome::ConnectionError,
            started.elapsed().as_micros() as u64,
            None,
        ),
        Ok(Ok(resp)) => (
            Outcome::Status {
                code: resp.status,
                success: (200..300).contains(&resp.status),
            },
            started.elapsed().as_micros() as u64,
            Some(resp),
        ),
    }
}

async fn legit(
    plan: &Plan,
    index: usize,
    user: usize,
    class: &Class,
    rng: &mut Rng,
    stats: &mut ClassStats,
) {
    let src = source(index, user);
    let mut conn: Option<Connection> = None;
    // Users start spread over the first think time.
    tokio::time::sleep(Duration::from_millis(rng.below(class.think_ms.max(1)))).await;
    while plan.running() && !plan.parcels.is_empty() {
        let tn = plan.parcels[rng.below(plan.parcels.len() as u64) as usize];
        let path = if rng.below(5) == 0 {
            format!("/track/{tn}")
        } else {
            format!("/v1/parcels/{tn}")
        };
        let second = plan.second();
        if conn.is_none() {
            match client::connect(src, plan.public.addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    stats.record(second, Outcome::ConnectionError, 0);
                    plan.sent[index].fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(class.think_ms)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let (mut outcome, micros, resp) =
            timed(c, &client::browser_get(&plan.public.host, &path)).await;
        if let (Outcome::Status { code, success }, Some(resp)) = (&mut outcome, &resp) {
            // Success means the right parcel, not just any 200.
            *success = *code == 200 && resp.body.windows(13).any(|w| w == tn.as_bytes());
        }
        if resp.as_ref().is_none_or(|r| r.close) {
            conn = None;
        }
        stats.record(second, outcome, micros);
        plan.sent[index].fetch_add(1, Relaxed);
        let think = class.think_ms / 2 + rng.below(class.think_ms.max(1));
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

async fn ingest(
    plan: &Plan,
    index: usize,
    task: usize,
    class: &Class,
    pacer: &Pacer,
    stats: &mut ClassStats,
) {
    let Some((endpoint, token)) = &plan.ingest else {
        return;
    };
    let mut conn: Option<Connection> = None;
    let mut b = 0u64;
    while plan.running() {
        pacer.wait(plan.started).await;
        if !plan.running() {
            break;
        }
        let mut body = String::with_capacity(class.batch * 150);
        for i in 0..class.batch {
            let tn = if plan.parcels.is_empty() {
                TrackingNumber::domestic(
                    7,
                    'T',
                    (task as u64 * 1_000_000 + b * 100 + i as u64 % 100) % 9_000_000_000,
                )
                .expect("valid")
            } else {
                plan.parcels[(b as usize * 31 + i) % plan.parcels.len()]
            };
            body.push_str(&format!(
                "{{\"event_id\":\"siege:{}:{task}:{b}:{i}\",\"tracking_number\":\"{tn}\",\"code\":\"ET1\",\"occurred_at\":\"2025-12-22T08:14:00Z\",\"location\":\"Siege depot {task}\"}}\n",
                plan.run_id
            ));
        }
        b += 1;
        let second = plan.second();
        if conn.is_none() {
            match client::connect(IpAddr::V4(Ipv4Addr::LOCALHOST), endpoint.addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    stats.record(second, Outcome::ConnectionError, 0);
                    plan.sent[index].fetch_add(1, Relaxed);
                    continue;
                }
            }
        }
        let request = client::request(
            "POST",
            &endpoint.host,
            "/v1/events",
            &format!("Authorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\n"),
            body.as_bytes(),
            false,
        );
        let (outcome, micros, resp) = timed(conn.as_mut().expect("connected"), &request).await;
        if resp.as_ref().is_none_or(|r| r.close) {
            conn = None;
        }
        stats.record(second, outcome, micros);
        plan.sent[index].fetch_add(1, Relaxed);
    }
}

fn flood_request(plan: &Plan, class: &Class, rng: &mut Rng, close: bool) -> (Vec<u8>, Endpoint) {
    let host = &plan.public.host;
    let known = |rng: &mut Rng| -> String {
        if plan.parcels.is_empty() {
            "RR123456785FR".into()
        } else {
            plan.parcels[rng.below(plan.parcels.len() as u64) as usize].to_string()
        }
    };
    let req = match class.kind {
        Kind::FloodRandomNumbers | Kind::FloodNewConnections => {
            let n = random_number(rng);
            client::request("GET", host, &format!("/v1/parcels/{n}"), "", b"", close)
        }
        Kind::FloodCacheBusting => {
            let route = if rng.below(2) == 0 {
                "/v1/parcels"
            } else {
                "/track"
            };
            let path = format!(
                "{route}/{}?{}={}",
                known(rng),
                rng.string(6, ALNUM),
                rng.string(12, ALNUM)
            );
            client::request("GET", host, &path, "", b"", close)
        }
        Kind::FloodRandomPaths => {
            let path = format!("/{}/{}", rng.string(8, ALNUM), rng.string(16, ALNUM));
            client::request("GET", host, &path, "", b"", close)
        }
        Kind::FloodPost => {
            let len = 64 + rng.below(2_000) as usize;
            let body = rng.string(len, ALNUM);
            let path = if rng.below(2) == 0 {
                "/track".to_owned()
            } else {
                format!("/v1/parcels/{}", random_number(rng))
            };
            client::request(
                "POST",
                host,
                &path,
                "Content-Type: application/x-www-form-urlencoded\r\n",
                body.as_bytes(),
                close,
            )
        }
        Kind::Targets => {
            let targets = plan.targets.as_ref().expect("targets class has a list");
            let i = rng.below(targets.0.targets.len() as u64) as usize;
            let t = &targets.0.targets[i];
            let path = fill(&t.path, &targets.0, rng);
            let body = t
                .body
                .as_deref()
                .map(|b| fill(b, &targets.0, rng))
                .unwrap_or_default();
            let req = client::request(
                &t.method,
                &targets.1[i].host,
                &path,
                "",
                body.as_bytes(),
                close,
            );
            return (req, targets.1[i].clone());
        }
        Kind::Legit | Kind::Ingest | Kind::Slowloris => unreachable!("not a request flood"),
    };
    (req, plan.public.clone())
}

async fn flood(
    plan: &Plan,
    index: usize,
    class: &Class,
    pacer: &Pacer,
    next_source: &AtomicU64,
    rng: &mut Rng,
    stats: &mut ClassStats,
) {
    let per_connection = if class.kind == Kind::FloodNewConnections {
        1
    } else {
        class.requests_per_connection
    };
    let close = per_connection == 1;
    'connections: while plan.running() {
        let src = source(
            index,
            (next_source.fetch_add(1, Relaxed) % class.sources as u64) as usize,
        );
        let (_, endpoint) = flood_request(plan, class, rng, close);
        let mut conn = match client::connect(src, endpoint.addr).await {
            Ok(c) => c,
            Err(_) => {
                stats.record(plan.second(), Outcome::ConnectionError, 0);
                plan.sent[index].fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        for _ in 0..per_connection {
            pacer.wait(plan.started).await;
            if !plan.running() {
                break 'connections;
            }
            let (request, _) = flood_request(plan, class, rng, close);
            let second = plan.second();
            let (outcome, micros, resp) = timed(&mut conn, &request).await;
            stats.record(second, outcome, micros);
            plan.sent[index].fetch_add(1, Relaxed);
            if resp.is_none_or(|r| r.close) {
                continue 'connections;
            }
        }
    }
}

async fn slowloris(
    plan: &Plan,
    index: usize,
    class: &Class,
    next_source: &AtomicU64,
    stats: &mut ClassStats,
) {
    let head = format!(
        "GET /v1/parcels/RR123456785FR HTTP/1.1\r\nHost: {}\r\nUser-Agent: Mozilla/5.0\r\n",
        plan.public.host
    );
    let interval = Duration::from_millis(class.byte_interval_ms.max(1));
    while plan.running() {
        let src = source(
            index,
            (next_source.fetch_add(1, Relaxed) % class.sources as u64) as usize,
        );
        let second = plan.second();
        let opened = Instant::now();
        let mut conn = match client::connect(src, plan.public.addr).await {
            Ok(c) => c,
            Err(_) => {
                stats.record(second, Outcome::ConnectionError, 0);
                plan.sent[index].fetch_add(1, Relaxed);
                tokio::time::sleep(interval).await;
                continue;
            }
        };
        plan.sent[index].fetch_add(1, Relaxed);
        // Header bytes one at a time, then endless extra header lines, never the blank line.
        let mut bytes = head
            .bytes()
            .chain(std::iter::repeat_n(b"X-a: b\r\n".iter().copied(), usize::MAX).flatten());
        let outcome = loop {
            if !plan.running() {
                break Some(Outcome::HeldToEnd);
            }
            let byte = [bytes.next().expect("endless")];
            if conn.write(&byte).await.is_err() {
                break Some(Outcome::ClosedByServer);
            }
            tokio::select! {
                _ = conn.read_some() => {
                    // The server answered (408, 431…) or closed: either way it let go.
                    break Some(Outcome::ClosedByServer);
                }
                _ = tokio::time::sleep(interval) => {}
            }
        };
        if let Some(o) = outcome {
            stats.record(second, o, opened.elapsed().as_micros() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_distinct_loopback_addresses_and_never_127_0_0_1() {
        let mut seen = std::collections::HashSet::new();
        for class in 0..3 {
            for i in 0..20_000 {
                let ip = source(class, i);
                assert!(ip.is_loopback());
                assert_ne!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
                assert!(seen.insert(ip));
            }
        }
    }

    #[test]
    fn random_numbers_mix_bad_check_digits_and_unknown_valid_ones() {
        let mut rng = Rng::new(7);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..1_000 {
            match TrackingNumber::parse(&random_number(&mut rng)) {
                Ok(_) => valid += 1,
                Err(_) => invalid += 1,
            }
        }
        assert!(valid > 300 && invalid > 300, "{valid} {invalid}");
    }

    #[test]
    fn placeholders_are_filled_by_their_rules() {
        let list = TargetList::parse(r#"{"targets":[{"host":"127.0.0.1","port":1,"path":"/x"}],"randoms":[{"name":"$_1","digit":true,"min":3,"max":3},{"name":"$_10","upper":true,"min":2,"max":2}]}"#).unwrap();
        let mut rng = Rng::new(1);
        let out = fill("/a/$_1/$_10/$_1", &list, &mut rng);
        let parts: Vec<&str> = out.split('/').collect();
        assert_eq!(parts.len(), 5);
        assert!(
            parts[2].len() == 3 && parts[2].bytes().all(|b| b.is_ascii_digit()),
            "{out}"
        );
        assert!(
            parts[3].len() == 2 && parts[3].bytes().all(|b| b.is_ascii_uppercase()),
            "{out}"
        );
        assert!(!out.contains('$'));
    }
}
