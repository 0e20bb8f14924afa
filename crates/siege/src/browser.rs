//! Legitimate users that behave like browsers: each on its own /24, one keep-alive connection
//! (opened again when the server closes it, and a request retried once on a new connection when
//! a reused one closes before answering, as browsers do), browser headers, and the challenge of
//! attack mode solved exactly as the node's page does it: on `403 challenge_required` (the JSON
//! answer or the HTML page), find the proof of work, `POST /v1/challenge`, keep the
//! `rempart_pass` cookie until it expires, and load the page again. The time spent solving is
//! part of that lookup's latency, counted as the CPU time the proof of work took (as on the
//! user's own device, at this machine's speed), not the time it queued for the generator's
//! core behind other users' solving; lookups that met a challenge are also counted apart.
//!
//! Customers come and go: with `visit_lookups`, a user makes that many lookups on one
//! connection, then leaves, and the next visitor from the same /24 opens a new one (keeping
//! the pass cookie, as a returning browser does).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;

use crate::client::{self, Connection, Response};
use crate::run::{Plan, Rng};
use crate::scenario::Class;
use crate::stats::{ClassStats, Outcome, SLOW_LOOKUP_US};

/// Most challenges one lookup solves before giving up (a pass refused right after it was
/// earned means something is wrong; a browser's page would loop, the tool stops).
pub const MAX_SOLVES_PER_LOOKUP: u32 = 2;
/// Hardest challenge a user attempts (2^26 hashes on average); a harder one is left unsolved.
pub const MAX_DIFFICULTY: u8 = 26;
/// Longest challenge seed accepted from an answer.
pub const MAX_SEED_LEN: usize = 256;
/// Longest pass accepted from an answer.
pub const MAX_PASS_LEN: usize = 512;
/// The only proof of work the users know (docs/shield.md).
pub const ALGORITHM: &str = "sha256-leading-zero-bits";
/// Name of the pass cookie (docs/shield.md).
pub const PASS_COOKIE: &str = "rempart_pass";

/// At most two proofs of work at a time on the generator. When attack mode switches on, every
/// user meets a challenge in the same second; 200 solver threads, even at a lower priority,
/// outweigh the one thread that runs the users and the depot (the scheduler shares by total
/// weight), which then stalled for up to 1.5 s and put that stall into every depot and user
/// latency measured meanwhile. A user's solving time is counted as its CPU time anyway (below),
/// so waiting for a solver changes no user's figure, only what the generator does to the rest.
static SOLVERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The source address of legitimate user `n` (counted over the whole scenario): a /24 of its
/// own, `127.(128 + n / 256).(n % 256).1`, away from the floods' 127.10.0.0–127.41.255.255.
pub fn user_source(n: usize) -> IpAddr {
    let n = n % crate::scenario::MAX_LEGIT_USERS;
    IpAddr::V4(Ipv4Addr::new(
        127,
        128 + (n / 256) as u8,
        (n % 256) as u8,
        1,
    ))
}

/// A challenge the node asked a client to solve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub seed: String,
    pub difficulty: u8,
}

fn challenge_of(seed: &str, difficulty: u64) -> Option<Challenge> {
    let sane = !seed.is_empty()
        && seed.len() <= MAX_SEED_LEN
        && seed
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    let difficulty = u8::try_from(difficulty).ok()?;
    (sane && difficulty <= MAX_DIFFICULTY).then(|| Challenge {
        seed: seed.to_owned(),
        difficulty,
    })
}

/// Reads the challenge from a 403 body: the JSON answer (`error: challenge_required`) or the
/// HTML page (`data-seed="…" data-bits="N"`, or the earlier inline `const SEED = "…", BITS = N;`).
/// `None` for anything else.
pub fn parse_challenge(body: &[u8]) -> Option<Challenge> {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        if json.get("error")?.as_str()? != "challenge_required" {
            return None;
        }
        let c = json.get("challenge")?;
        if c.get("algorithm")
            .is_some_and(|a| a.as_str() != Some(ALGORITHM))
        {
            return None;
        }
        return challenge_of(c.get("seed")?.as_str()?, c.get("difficulty")?.as_u64()?);
    }
    let text = std::str::from_utf8(body).ok()?;
    let after = |marker: &str| text.split(marker).nth(1);
    let (seed, bits) = match (after("data-seed=\""), after("data-bits=\"")) {
        (Some(seed), Some(bits)) => (seed, bits),
        _ => (after("const SEED = \"")?, after("BITS = ")?),
    };
    let seed = seed.split('"').next()?;
    let digits: String = bits.chars().take_while(char::is_ascii_digit).collect();
    challenge_of(seed, digits.parse().ok()?)
}

/// A pass held as the browser holds the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// `rempart_pass=<pass>`, as sent in `Cookie`.
    pub cookie: String,
    pub expires: Instant,
}

/// Reads the pass from the answer to `POST /v1/challenge`: the `Set-Cookie` a browser keeps
/// (with its `Max-Age`), or else the JSON body's `pass` (valid for `fallback_ttl`).
pub fn parse_pass(resp: &Response, now: Instant, fallback_ttl: Duration) -> Option<Pass> {
    let valid = |p: &str| {
        !p.is_empty()
            && p.len() <= MAX_PASS_LEN
            && p.bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
    };
    if let Some(cookie) = &resp.set_cookie {
        let mut parts = cookie.split(';').map(str::trim);
        if let Some(pass) = parts.next().and_then(|kv| kv.strip_prefix("rempart_pass="))
            && valid(pass)
        {
            let max_age = parts
                .find_map(|a| {
                    let (k, v) = a.split_once('=')?;
                    k.eq_ignore_ascii_case("max-age")
                        .then(|| v.parse::<u64>().ok())?
                })
                .map_or(fallback_ttl, Duration::from_secs);
            return Some(Pass {
                cookie: format!("{PASS_COOKIE}={pass}"),
                expires: now + max_age,
            });
        }
    }
    let json: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
    let pass = json.get("pass")?.as_str()?;
    valid(pass).then(|| Pass {
        cookie: format!("{PASS_COOKIE}={pass}"),
        expires: now + fallback_ttl,
    })
}

/// Pass lifetime assumed when the node's answer does not say (docs/shield.md: 1 hour).
const DEFAULT_PASS_TTL: Duration = Duration::from_secs(3_600);

/// One browser-like user.
pub struct User {
    pub source: IpAddr,
    conn: Option<Connection>,
    pass: Option<Pass>,
    /// Solved at least one challenge in the measured window.
    pub paid: bool,
    pub solve_challenges: bool,
}

/// How one lookup's connections went, for the slow lookups' breakdown.
#[derive(Default)]
struct Trace {
    opened: bool,
    handshake: Duration,
    longest_handshake: Duration,
    retried: bool,
}

/// What one exchange gave.
struct Exchange {
    outcome: Outcome,
    response: Option<Response>,
}

impl User {
    pub fn new(source: IpAddr, solve_challenges: bool) -> User {
        User {
            source,
            conn: None,
            pass: None,
            paid: false,
            solve_challenges,
        }
    }

    /// Sends one request on the user's connection (opening one if needed); a reused
    /// connection that closes before answering gets the request again on a new one, once.
    async fn send(
        &mut self,
        plan: &Plan,
        request: &[u8],
        stats: &mut ClassStats,
        count: bool,
        trace: &mut Trace,
    ) -> Exchange {
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                let started = Instant::now();
                let connected = client::connect(self.source, plan.public.addr).await;
                let took = started.elapsed();
                trace.opened = true;
                trace.handshake += took;
                trace.longest_handshake = trace.longest_handshake.max(took);
                if count && connected.is_ok() {
                    let _ = stats
                        .browser()
                        .connects
                        .record((took.as_micros() as u64).max(1));
                }
                match connected {
                    Ok(c) => self.conn = Some(c),
                    Err(_) => {
                        return Exchange {
                            outcome: Outcome::ConnectionError,
                            response: None,
                        };
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            match tokio::time::timeout(client::REQUEST_TIMEOUT, conn.exchange(request)).await {
                Err(_) => {
                    self.conn = None;
                    return Exchange {
                        outcome: Outcome::Timeout,
                        response: None,
                    };
                }
                Ok(Err(_)) => {
                    self.conn = None;
                    if reused && attempt == 0 {
                        trace.retried = true;
                        if count {
                            stats.browser().retries += 1;
                        }
                        continue;
                    }
                    break;
                }
                Ok(Ok(resp)) => {
                    if resp.close {
                        self.conn = None;
                    }
                    return Exchange {
                        outcome: Outcome::Status {
                            code: resp.status,
                            success: (200..300).contains(&resp.status),
                        },
                        response: Some(resp),
                    };
                }
            }
        }
        Exchange {
            outcome: Outcome::ClosedUnanswered,
            response: None,
        }
    }

    /// Ends a visit: the connection is closed (the pass cookie stays).
    pub fn leave(&mut self) {
        self.conn = None;
    }

    fn cookie(&mut self) -> Option<String> {
        if self
            .pass
            .as_ref()
            .is_some_and(|p| p.expires <= Instant::now())
        {
            self.pass = None;
        }
        self.pass.as_ref().map(|p| p.cookie.clone())
    }

    /// Solves `challenge` and submits it; keeps the pass it earns. Returns whether it did, and
    /// how much less the user would have waited with a CPU of its own (the wall time solving
    /// took minus the CPU time it needed).
    async fn earn_pass(
        &mut self,
        plan: &Plan,
        challenge: Challenge,
        stats: &mut ClassStats,
        count: bool,
    ) -> (bool, Duration) {
        let started = Instant::now();
        let seed = challenge.seed.clone();
        let Ok(solver) = SOLVERS.acquire().await else {
            return (false, Duration::ZERO);
        };
        let solved = tokio::task::spawn_blocking(move || {
            // The solver shares the generator's core: below the users' own thread, two at a
            // time (SOLVERS), so that a crowd solving at once does not delay everyone else.
            crate::probe::lower_priority();
            crate::probe::cpu_timed(|| rempart_shield::solve(&seed, challenge.difficulty))
        })
        .await;
        drop(solver);
        let Ok((nonce, cpu)) = solved else {
            return (false, Duration::ZERO);
        };
        let queued = started.elapsed().saturating_sub(cpu);
        if count {
            let micros = cpu.as_micros() as u64;
            let _ = stats.browser().solving.record(micros.max(1));
        }
        let body = serde_json::json!({ "seed": challenge.seed, "nonce": nonce }).to_string();
        let request = client::browser_request(
            "POST",
            &plan.public.host,
            "/v1/challenge",
            self.cookie().as_deref(),
            Some(body.as_bytes()),
        );
        let answer = self
            .send(plan, &request, stats, count, &mut Trace::default())
            .await;
        let pass = match (&answer.outcome, &answer.response) {
            (Outcome::Status { code: 200, .. }, Some(resp)) => {
                parse_pass(resp, Instant::now(), DEFAULT_PASS_TTL)
            }
            _ => None,
        };
        if count {
            let b = stats.browser();
            match answer.outcome {
                Outcome::Status { code, .. } => *b.submissions.entry(code).or_default() += 1,
                _ => b.submissions_unanswered += 1,
            }
            if pass.is_some() {
                b.passes_earned += 1;
            }
        }
        let earned = pass.is_some();
        if earned {
            self.pass = pass;
            self.paid |= count;
        }
        (earned, queued)
    }

    /// One lookup as the customer sees it: the page, and if the node asks, the challenge and
    /// the page again. Recorded once, with its whole latency.
    pub async fn lookup(
        &mut self,
        plan: &Plan,
        path: &str,
        tn: &TrackingNumber,
        stats: &mut ClassStats,
    ) {
        let second = plan.second();
        let count = stats.measured(second);
        let started = Instant::now();
        let get = |cookie: Option<String>| {
            client::browser_request("GET", &plan.public.host, path, cookie.as_deref(), None)
        };
        let request = get(self.cookie());
        let mut trace = Trace::default();
        let mut answer = self.send(plan, &request, stats, count, &mut trace).await;
        let mut solves = 0;
        let mut met = false;
        let mut unsolved = false;
        // Time spent waiting for the generator's CPU to solve, which the user's own device
        // would not have spent.
        let mut not_the_users = Duration::ZERO;
        while let (Outcome::Status { code: 403, .. }, Some(resp)) =
            (&answer.outcome, &answer.response)
        {
            let Some(challenge) = parse_challenge(&resp.body) else {
                break;
            };
            met = true;
            unsolved = true;
            if count {
                stats.browser().challenges_met += 1;
            }
            if !self.solve_challenges || solves == MAX_SOLVES_PER_LOOKUP {
                break;
            }
            solves += 1;
            let (earned, queued) = self.earn_pass(plan, challenge, stats, count).await;
            not_the_users += queued;
            if !earned {
                break;
            }
            let request = get(self.cookie());
            answer = self.send(plan, &request, stats, count, &mut trace).await;
            unsolved = false;
        }
        let micros = started.elapsed().saturating_sub(not_the_users).as_micros() as u64;
        let mut outcome = answer.outcome;
        if let (Outcome::Status { code, success }, Some(resp)) = (&mut outcome, &answer.response) {
            // Success means the right parcel, not just any 200.
            *success = *code == 200 && resp.body.windows(13).any(|w| w == tn.as_bytes());
        }
        stats.record(second, outcome, micros);
        if count && matches!(outcome, Outcome::Status { .. }) {
            let b = stats.browser();
            b.unsolved += u64::from(unsolved);
            let histogram = if met { &mut b.challenged } else { &mut b.plain };
            let _ = histogram.record(micros.max(1));
            if !met && micros > SLOW_LOOKUP_US {
                let slow = &mut b.slow;
                slow.count += 1;
                slow.opened += u64::from(trace.opened);
                slow.handshake_over_1s +=
                    u64::from(trace.longest_handshake >= Duration::from_secs(1));
                slow.retried += u64::from(trace.retried);
                slow.handshake_us += trace.handshake.as_micros() as u64;
                slow.total_us += micros;
                *slow.by_second.entry(second).or_default() += 1;
            }
        }
    }
}

/// Runs legitimate user `n` (scenario-wide number) of class number `index` until the run ends:
/// a lookup, a think time (`think_ms` on average), and again.
pub async fn run_user(
    plan: &Plan,
    index: usize,
    n: usize,
    class: &Class,
    rng: &mut Rng,
    stats: &mut ClassStats,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut user = User::new(user_source(n), class.solve_challenges);
    let mut lookups = 0u64;
    // Users start spread over the first think time.
    tokio::time::sleep(Duration::from_millis(rng.below(class.think_ms.max(1)))).await;
    while plan.running() && !plan.parcels.is_empty() {
        let tn = plan.parcels[rng.below(plan.parcels.len() as u64) as usize];
        // One lookup in five is the HTML page, the others the JSON API (the page's own fetch).
        let path = if rng.below(5) == 0 {
            format!("/track/{tn}")
        } else {
            format!("/v1/parcels/{tn}")
        };
        user.lookup(plan, &path, &tn, stats).await;
        plan.sent[index].fetch_add(1, Relaxed);
        lookups += 1;
        if class.visit_lookups > 0 && lookups.is_multiple_of(u64::from(class.visit_lookups)) {
            user.leave();
        }
        let think = class.think_ms / 2 + rng.below(class.think_ms.max(1));
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    let b = stats.browser();
    b.users += 1;
    b.users_paid += u64::from(user.paid);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_has_a_24_of_its_own_away_from_the_floods() {
        let mut networks = std::collections::HashSet::new();
        for n in 0..crate::scenario::MAX_LEGIT_USERS {
            let IpAddr::V4(ip) = user_source(n) else {
                panic!("IPv4 expected")
            };
            let [a, b, c, _] = ip.octets();
            assert_eq!(a, 127);
            assert!(b >= 128, "{ip}");
            assert!(networks.insert((b, c)), "{ip} shares a /24");
        }
        for class in 0..crate::scenario::MAX_CLASSES {
            let IpAddr::V4(ip) = crate::run::source(class, 65_535) else {
                panic!("IPv4 expected")
            };
            assert!(ip.octets()[1] < 128, "{ip}");
        }
    }

    #[test]
    fn challenges_are_read_from_the_json_answer_and_from_the_page() {
        let json = br#"{"error":"challenge_required","message":"m","challenge":{"algorithm":"sha256-leading-zero-bits","seed":"ab12.cd","difficulty":18,"expires":1795000000},"submit":"/v1/challenge"}"#;
        let want = Challenge {
            seed: "ab12.cd".into(),
            difficulty: 18,
        };
        assert_eq!(parse_challenge(json), Some(want.clone()));
        let page = "<html><script>\n\"use strict\";\nconst SEED = \"ab12.cd\", BITS = 18;\nfunction f(){}</script>";
        assert_eq!(parse_challenge(page.as_bytes()), Some(want.clone()));
        let page = "<p>One moment</p><div id=\"challenge\" data-seed=\"ab12.cd\" data-bits=\"18\"></div>\n<script>const SEED = box.dataset.seed, BITS = Number(box.dataset.bits);</script>";
        assert_eq!(parse_challenge(page.as_bytes()), Some(want));
    }

    #[test]
    fn hostile_or_foreign_403_bodies_are_not_challenges() {
        for body in [
            &b""[..],
            b"{}",
            br#"{"error":"forbidden"}"#,
            br#"{"error":"challenge_required"}"#,
            br#"{"error":"challenge_required","challenge":{"seed":"","difficulty":18}}"#,
            br#"{"error":"challenge_required","challenge":{"seed":"a","difficulty":64}}"#,
            br#"{"error":"challenge_required","challenge":{"seed":"a","difficulty":-1}}"#,
            br#"{"error":"challenge_required","challenge":{"seed":"a b","difficulty":1}}"#,
            br#"{"error":"challenge_required","challenge":{"seed":1,"difficulty":1}}"#,
            br#"{"error":"challenge_required","challenge":{"algorithm":"scrypt","seed":"a","difficulty":1}}"#,
            b"const SEED = \"abc\", BITS = 99;",
            b"const SEED = \"abc\", BITS = 99999999999999999999999;",
            b"const SEED = \"abc",
            b"const SEED = \"\", BITS = 1;",
            b"data-seed=\"abc\" data-bits=\"99\"",
            b"data-seed=\"a b\" data-bits=\"1\"",
            b"data-seed=\"abc\" data-bits=\"x\"",
            b"BITS = 4",
            b"\xff\xfe const SEED = \"a\", BITS = 1",
        ] {
            assert_eq!(parse_challenge(body), None, "{}", String::from_utf8_lossy(body));
        }
        let long = format!(
            "const SEED = \"{}\", BITS = 1;",
            "a".repeat(MAX_SEED_LEN + 1)
        );
        assert_eq!(parse_challenge(long.as_bytes()), None);
    }

    fn response(set_cookie: Option<&str>, body: &str) -> Response {
        Response {
            status: 200,
            body: body.as_bytes().to_vec(),
            close: false,
            set_cookie: set_cookie.map(str::to_owned),
        }
    }

    #[test]
    fn the_pass_is_kept_as_the_cookie_says() {
        let now = Instant::now();
        let ttl = Duration::from_secs(7);
        let pass = parse_pass(
            &response(
                Some("rempart_pass=00ff; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"),
                "{}",
            ),
            now,
            ttl,
        )
        .unwrap();
        assert_eq!(pass.cookie, "rempart_pass=00ff");
        assert_eq!(pass.expires, now + Duration::from_secs(60));
        // Without a cookie, the body's pass, for the fallback lifetime.
        let pass = parse_pass(&response(None, r#"{"pass":"abc1","expires":1}"#), now, ttl).unwrap();
        assert_eq!(
            (pass.cookie.as_str(), pass.expires),
            ("rempart_pass=abc1", now + ttl)
        );
        for (cookie, body) in [
            (Some("other=1; Max-Age=5"), "{}"),
            (Some("rempart_pass=; Max-Age=5"), "{}"),
            (Some("rempart_pass=a\r\nX: y"), "{}"),
            (None, r#"{"pass":"a;b"}"#),
            (None, r#"{"pass":7}"#),
            (None, "not json"),
        ] {
            assert_eq!(
                parse_pass(&response(cookie, body), now, ttl),
                None,
                "{cookie:?} {body}"
            );
        }
        // A Max-Age that is not a number falls back.
        let pass = parse_pass(
            &response(Some("rempart_pass=ab; Max-Age=soon"), ""),
            now,
            ttl,
        )
        .unwrap();
        assert_eq!(pass.expires, now + ttl);
    }
}
