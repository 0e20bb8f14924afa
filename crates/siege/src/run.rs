//! Running a scenario: one group of tasks per class, all at once, for the scenario's duration;
//! then in-flight requests finish (so the report and the server's counters agree) and the
//! per-worker tallies are merged.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use rempart_domain::TrackingNumber;

use crate::browser;
use crate::client::{self, Connection};
use crate::scenario::{Class, Kind, TargetList};
use crate::stats::{ClassStats, Outcome};
use crate::target::Endpoint;

/// Most concurrent ingest requests of an ingest class.
pub const INGEST_CONCURRENCY: usize = 8;

/// A `--targets` list and the address of each of its entries.
pub type Targets = (TargetList, Vec<Endpoint>);

/// Everything a class's tasks share.
pub struct Plan {
    pub public: Endpoint,
    pub ingest: Option<(Endpoint, String)>,
    pub parcels: Arc<Vec<TrackingNumber>>,
    pub targets: Option<Arc<Targets>>,
    pub started: Instant,
    pub duration: Duration,
    pub stop: Arc<AtomicBool>,
    /// Requests sent so far, per class (for the progress bar).
    pub sent: Arc<Vec<AtomicU64>>,
    pub run_id: u64,
    /// Whole-run figures count requests started from this second on.
    pub measure_from_s: u64,
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
    pub fn running(&self) -> bool {
        !self.stop.load(Relaxed) && self.started.elapsed() < self.duration
    }
    /// Seconds since the run started.
    pub fn second(&self) -> usize {
        self.started.elapsed().as_secs() as usize
    }
    /// Sleeps until `s` seconds into the run; returns whether the run is still going.
    pub async fn wait_until(&self, s: u64) -> bool {
        let at = self.started + Duration::from_secs(s);
        while self.running() && Instant::now() < at {
            let step = at.saturating_duration_since(Instant::now()).min(STOP_CHECK);
            tokio::time::sleep(step).await;
        }
        self.running()
    }
    /// Empty tallies for one task.
    pub fn stats(&self) -> ClassStats {
        ClassStats::measuring_from(self.measure_from_s as usize)
    }
    /// A known parcel at random (a fixed number when none were given).
    fn known(&self, rng: &mut Rng) -> String {
        if self.parcels.is_empty() {
            "RR123456785FR".into()
        } else {
            self.parcels[rng.below(self.parcels.len() as u64) as usize].to_string()
        }
    }
}

/// How often a waiting task looks whether the run was stopped.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// User-Agents a DDoSia-style flood rotates through.
pub const FLOOD_USER_AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.102 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.51",
    "Go-http-client/1.1",
];

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

/// What the tasks of one class share.
struct ClassRun {
    plan: Arc<Plan>,
    index: usize,
    class: Class,
    first_user: usize,
    pacer: Pacer,
    next_source: AtomicU64,
    /// Slow connections and open-loop answers are many and short-lived: one shared tally for
    /// them, not one per task.
    shared: Arc<Mutex<ClassStats>>,
    /// Open loop: one permit per open connection.
    open: Arc<Semaphore>,
}

/// Runs one class; returns its merged tallies. `first_user`: the scenario-wide number of the
/// class's first legitimate user (each has its own /24).
pub async fn class(plan: Arc<Plan>, index: usize, class: Class, first_user: usize) -> ClassStats {
    let tasks = match class.kind {
        Kind::Legit => class.users,
        Kind::Ingest => INGEST_CONCURRENCY,
        _ => class.connections,
    };
    let run = Arc::new(ClassRun {
        pacer: Pacer {
            rate: class.rate,
            next: AtomicU64::new(0),
        },
        next_source: AtomicU64::new(0),
        shared: Arc::new(Mutex::new(plan.stats())),
        open: Arc::new(Semaphore::new(class.connections)),
        plan,
        index,
        class,
        first_user,
    });
    let handles: Vec<_> = (0..tasks)
        .map(|t| tokio::spawn(task(run.clone(), t)))
        .collect();
    let mut total = run.plan.stats();
    for h in handles {
        if let Ok(Some(s)) = h.await {
            total.merge(&s);
        }
    }
    // Open loop: wait until every connection's answers are in (or abandoned).
    let _ = run.open.acquire_many(run.class.connections as u32).await;
    if let Ok(s) = run.shared.lock() {
        total.merge(&s);
    }
    total
}

/// Task `t` of a class: one user, one depot sender, one flood connection slot or one slow
/// connection. Returns its own tallies (`None` when it recorded into the shared ones).
async fn task(run: Arc<ClassRun>, t: usize) -> Option<ClassStats> {
    let (plan, class) = (&run.plan, &run.class);
    if !plan.wait_until(class.start_s).await {
        return None;
    }
    if class.kind == Kind::Slowloris {
        slowloris(plan, run.index, class, &run.next_source, &run.shared).await;
        return None;
    }
    let mut rng = Rng::new(
        plan.run_id
            ^ ((run.index as u64) << 40)
            ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let flood = Flood {
        plan,
        index: run.index,
        class,
        pacer: &run.pacer,
        next_source: &run.next_source,
    };
    if class.open_loop {
        flood.run_open(&mut rng, &run.open, &run.shared).await;
        return None;
    }
    let mut stats = plan.stats();
    match class.kind {
        Kind::Legit => {
            let user = run.first_user + t;
            browser::run_user(plan, run.index, user, class, &mut rng, &mut stats).await
        }
        Kind::Ingest => ingest(plan, run.index, t, class, &run.pacer, &mut stats).await,
        _ => flood.run(&mut rng, &mut stats).await,
    }
    Some(stats)
}

/// The outcome of an exchange that failed: timed out, or closed before its answer.
fn failed(timed_out: bool) -> Outcome {
    if timed_out {
        Outcome::Timeout
    } else {
        Outcome::ClosedUnanswered
    }
}

async fn timed(conn: &mut Connection, request: &[u8]) -> (Outcome, u64, Option<client::Response>) {
    let started = Instant::now();
    let result = tokio::time::timeout(client::REQUEST_TIMEOUT, conn.exchange(request)).await;
    let micros = started.elapsed().as_micros() as u64;
    match result {
        Err(_) => (failed(true), micros, None),
        Ok(Err(_)) => (failed(false), micros, None),
        Ok(Ok(resp)) => (
            Outcome::Status {
                code: resp.status,
                success: (200..300).contains(&resp.status),
            },
            micros,
            Some(resp),
        ),
    }
}

fn ingest_body(plan: &Plan, task: usize, batch: usize, b: u64) -> String {
    let mut body = String::with_capacity(batch * 150);
    for i in 0..batch {
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
    body
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
        let body = ingest_body(plan, task, class.batch, b);
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
        let Some(c) = conn.as_mut() else { continue };
        let (outcome, micros, resp) = timed(c, &request).await;
        if resp.as_ref().is_none_or(|r| r.close) {
            conn = None;
        }
        stats.record(second, outcome, micros);
        plan.sent[index].fetch_add(1, Relaxed);
    }
}

/// A DDoSia-style request: a random number on the lookup path with a random query string, on
/// the page with a random path suffix, or posted to the search form; a User-Agent from a list.
fn ddosia_request(host: &str, rng: &mut Rng, close: bool) -> Vec<u8> {
    let n = random_number(rng);
    let ua = FLOOD_USER_AGENTS[rng.below(FLOOD_USER_AGENTS.len() as u64) as usize];
    let query = |rng: &mut Rng| {
        let len = 8 + rng.below(9) as usize;
        let key_len = 1 + rng.below(6) as usize;
        format!("{}={}", rng.string(key_len, ALNUM), rng.string(len, ALNUM))
    };
    match rng.below(5) {
        0 | 1 => {
            let path = format!("/v1/parcels/{n}?{}", query(rng));
            client::request_as("GET", host, &path, ua, "", b"", close)
        }
        2 => {
            let len = 4 + rng.below(9) as usize;
            let path = format!("/track/{n}/{}?{}", rng.string(len, ALNUM), query(rng));
            client::request_as("GET", host, &path, ua, "", b"", close)
        }
        3 => {
            let path = format!("/track/{n}?{}", query(rng));
            client::request_as("GET", host, &path, ua, "", b"", close)
        }
        _ => {
            let body = format!("n={n}&{}", query(rng));
            client::request_as(
                "POST",
                host,
                "/track",
                ua,
                "Content-Type: application/x-www-form-urlencoded\r\n",
                body.as_bytes(),
                close,
            )
        }
    }
}

fn flood_request(plan: &Plan, class: &Class, rng: &mut Rng, close: bool) -> (Vec<u8>, Endpoint) {
    let host = &plan.public.host;
    let req = match class.kind {
        Kind::FloodRandomNumbers | Kind::FloodNewConnections => {
            let n = random_number(rng);
            client::request("GET", host, &format!("/v1/parcels/{n}"), "", b"", close)
        }
        Kind::FloodDdosia => ddosia_request(host, rng, close),
        Kind::FloodCacheBusting => {
            let route = if rng.below(2) == 0 {
                "/v1/parcels"
            } else {
                "/track"
            };
            let path = format!(
                "{route}/{}?{}={}",
                plan.known(rng),
                rng.string(6, ALNUM),
                rng.string(12, ALNUM)
            );
            client::request("GET", host, &path, "", b"", close)
        }
        Kind::FloodHotParcel => {
            let tn = plan
                .parcels
                .first()
                .map_or_else(|| "RR123456785FR".to_owned(), |t| t.to_string());
            client::request("GET", host, &format!("/v1/parcels/{tn}"), "", b"", close)
        }
        Kind::Lookups => client::browser_get(host, &format!("/v1/parcels/{}", plan.known(rng))),
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
        Kind::Targets => return target_request(plan, rng, close),
        Kind::Legit | Kind::Ingest | Kind::Slowloris => unreachable!("not a request flood"),
    };
    (req, plan.public.clone())
}

fn target_request(plan: &Plan, rng: &mut Rng, close: bool) -> (Vec<u8>, Endpoint) {
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
    (req, targets.1[i].clone())
}

/// A request flood's task: connections from the class's sources in turn, each carrying
/// `requests_per_connection` requests written `pipeline` at a time, optionally in bursts.
struct Flood<'a> {
    plan: &'a Plan,
    index: usize,
    class: &'a Class,
    pacer: &'a Pacer,
    next_source: &'a AtomicU64,
}

/// How a batch of pipelined requests ended.
enum Batch {
    /// Every request was answered and the connection stays open.
    Open,
    /// The connection closed (or broke, or timed out); open another.
    Closed,
    /// The run ended before the batch was sent.
    Stopped,
}

impl Flood<'_> {
    async fn run(&self, rng: &mut Rng, stats: &mut ClassStats) {
        let class = self.class;
        let per_connection = if class.kind == Kind::FloodNewConnections {
            1
        } else {
            class.requests_per_connection
        };
        let depth = class.pipeline.min(per_connection);
        let mut burst = 0u64;
        'connections: while self.plan.running() {
            if class.burst_every_s > 0 {
                let at = class.start_s + burst * class.burst_every_s;
                burst += 1;
                if !self.plan.wait_until(at).await {
                    break;
                }
            }
            let src = source(
                self.index,
                (self.next_source.fetch_add(1, Relaxed) % class.sources as u64) as usize,
            );
            let (_, endpoint) = flood_request(self.plan, class, rng, per_connection == 1);
            let mut conn = match client::connect(src, endpoint.addr).await {
                Ok(c) => c,
                Err(_) => {
                    stats.record(self.plan.second(), Outcome::ConnectionError, 0);
                    self.plan.sent[self.index].fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let mut left = per_connection;
            while left > 0 {
                let n = depth.min(left);
                left -= n;
                match self
                    .batch(&mut conn, n, per_connection == 1, rng, stats)
                    .await
                {
                    Batch::Open => {}
                    Batch::Closed => continue 'connections,
                    Batch::Stopped => break 'connections,
                }
            }
        }
    }

    /// Writes `n` requests at once, then reads their answers in order.
    async fn batch(
        &self,
        conn: &mut Connection,
        n: u32,
        close: bool,
        rng: &mut Rng,
        stats: &mut ClassStats,
    ) -> Batch {
        let mut requests = Vec::new();
        for _ in 0..n {
            self.pacer.wait(self.plan.started).await;
            if !self.plan.running() {
                return Batch::Stopped;
            }
            requests.extend_from_slice(&flood_request(self.plan, self.class, rng, close).0);
        }
        let second = self.plan.second();
        let started = Instant::now();
        self.plan.sent[self.index].fetch_add(u64::from(n), Relaxed);
        if conn.write(&requests).await.is_err() {
            for _ in 0..n {
                stats.record(second, failed(false), 0);
            }
            return Batch::Closed;
        }
        for i in 0..n {
            let answer = tokio::time::timeout(client::REQUEST_TIMEOUT, conn.read_response()).await;
            let micros = started.elapsed().as_micros() as u64;
            let resp = match answer {
                Ok(Ok(resp)) => resp,
                Ok(Err(_)) | Err(_) => {
                    let outcome = failed(answer.is_err());
                    for _ in i..n {
                        stats.record(second, outcome, micros);
                    }
                    return Batch::Closed;
                }
            };
            let code = resp.status;
            stats.record(
                second,
                Outcome::Status {
                    code,
                    success: (200..300).contains(&code),
                },
                micros,
            );
            if resp.close {
                for _ in i + 1..n {
                    stats.record(second, failed(false), micros);
                }
                return Batch::Closed;
            }
        }
        Batch::Open
    }
}

/// A connection whose requests were written: where its answers are counted.
struct Written {
    conn: Connection,
    requests: u32,
    second: usize,
    at: Instant,
}

impl Flood<'_> {
    /// Open loop: connections from the class's sources in turn, each written all its requests
    /// at once and handed to a reader; at most `connections` open (or opening) at once, one
    /// task per slot, so that connects stalled by a full accept queue do not hold back others.
    async fn run_open(&self, rng: &mut Rng, open: &Arc<Semaphore>, stats: &Arc<Mutex<ClassStats>>) {
        let class = self.class;
        let per_connection = if class.kind == Kind::FloodNewConnections {
            1
        } else {
            class.requests_per_connection
        };
        let linger = Duration::from_millis(class.linger_ms);
        let mut burst = 0u64;
        while self.plan.running() {
            if class.burst_every_s > 0 {
                let at = class.start_s + burst * class.burst_every_s;
                burst += 1;
                if !self.plan.wait_until(at).await {
                    break;
                }
            }
            let Ok(permit) = open.clone().acquire_owned().await else {
                break;
            };
            let Some(written) = self.write_one(per_connection, rng, stats).await else {
                continue;
            };
            tokio::spawn(read_answers(written, linger, stats.clone(), permit));
        }
    }

    /// Opens a connection from the next source and writes its requests.
    async fn write_one(&self, n: u32, rng: &mut Rng, stats: &Mutex<ClassStats>) -> Option<Written> {
        let record = |second: usize, outcome: Outcome, times: u32| {
            if let Ok(mut s) = stats.lock() {
                for _ in 0..times {
                    s.record(second, outcome, 0);
                }
            }
        };
        let src = source(
            self.index,
            (self.next_source.fetch_add(1, Relaxed) % self.class.sources as u64) as usize,
        );
        let close = n == 1;
        let (_, endpoint) = flood_request(self.plan, self.class, rng, close);
        let Ok(mut conn) = client::connect(src, endpoint.addr).await else {
            record(self.plan.second(), Outcome::ConnectionError, 1);
            self.plan.sent[self.index].fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
            return None;
        };
        let mut requests = Vec::new();
        for _ in 0..n {
            self.pacer.wait(self.plan.started).await;
            if !self.plan.running() {
                return None;
            }
            requests.extend_from_slice(&flood_request(self.plan, self.class, rng, close).0);
        }
        let (second, at) = (self.plan.second(), Instant::now());
        self.plan.sent[self.index].fetch_add(u64::from(n), Relaxed);
        if conn.write(&requests).await.is_err() {
            record(second, Outcome::ClosedUnanswered, n);
            return None;
        }
        Some(Written {
            conn,
            requests: n,
            second,
            at,
        })
    }
}

/// Counts the answers of an open-loop connection until all are in, the connection closes, or
/// `linger` has passed since the requests were written; then closes it.
async fn read_answers(
    mut w: Written,
    linger: Duration,
    stats: Arc<Mutex<ClassStats>>,
    _open: OwnedSemaphorePermit,
) {
    let deadline = tokio::time::Instant::from_std(w.at + linger);
    for i in 0..w.requests {
        let answer = tokio::time::timeout_at(deadline, w.conn.read_response()).await;
        let micros = w.at.elapsed().as_micros() as u64;
        let Ok(mut s) = stats.lock() else { return };
        let rest = match answer {
            Ok(Ok(resp)) => {
                s.record(
                    w.second,
                    Outcome::Status {
                        code: resp.status,
                        success: (200..300).contains(&resp.status),
                    },
                    micros,
                );
                if !resp.close {
                    continue;
                }
                (i + 1, Outcome::ClosedUnanswered)
            }
            Ok(Err(_)) => (i, Outcome::ClosedUnanswered),
            Err(_) => (i, Outcome::Abandoned),
        };
        for _ in rest.0..w.requests {
            s.record(w.second, rest.1, micros);
        }
        return;
    }
}

async fn slowloris(
    plan: &Plan,
    index: usize,
    class: &Class,
    next_source: &AtomicU64,
    stats: &Mutex<ClassStats>,
) {
    let head = format!(
        "GET /v1/parcels/RR123456785FR HTTP/1.1\r\nHost: {}\r\nUser-Agent: Mozilla/5.0\r\n",
        plan.public.host
    );
    let record = |second: usize, outcome: Outcome, micros: u64| {
        if let Ok(mut s) = stats.lock() {
            s.record(second, outcome, micros);
        }
    };
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
                record(second, Outcome::ConnectionError, 0);
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
                break Outcome::HeldToEnd;
            }
            let byte = [bytes.next().expect("endless")];
            if conn.write(&byte).await.is_err() {
                break Outcome::ClosedByServer;
            }
            tokio::select! {
                _ = conn.read_some() => {
                    // The server answered (408, 431…) or closed: either way it let go.
                    break Outcome::ClosedByServer;
                }
                _ = tokio::time::sleep(interval) => {}
            }
        };
        record(second, outcome, opened.elapsed().as_micros() as u64);
        // A connection refused at once (the node at its cap) is tried again one byte interval
        // later, not in a tight loop.
        if opened.elapsed() < interval {
            tokio::time::sleep(interval).await;
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
