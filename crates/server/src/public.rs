//! The public listener's routes (SPEC.md): JSON lookups, HTML pages, health. Anonymous.
//! Query strings are never looked at: only the path is routed, so random query strings cannot
//! defeat the cache or reach storage.
//!
//! Requests arrive through [`edge`], split in two: everything decided from the request's bytes
//! (routing, the number's syntax, the shield's checks, the search form, challenge answers)
//! happens synchronously in [`Public::prepare`], without allocating on the refusal paths; only
//! what needs storage (lookups, readiness) is awaited in [`Public::finish`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::{AGE, CACHE_CONTROL, HeaderValue, LOCATION};
use hyper::{Response, StatusCode};
use rempart_domain::TrackingNumber;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::app::{App, Lookup};
use crate::edge::{self, Reply, Step};
use crate::html;
use crate::http::ListenerLimits;
use crate::metrics::{Listener, Route};
use crate::response::{self, Body, HTML, JSON, TEXT, with_body};
use crate::shield::{Reason, network_of, unix_now};
use rempart_shield::Priority;

/// Longest path segment examined as a tracking number (13 characters, spaces and
/// percent-encoding allow some slack); longer ones are refused without decoding.
pub const MAX_NUMBER_SEGMENT: usize = 64;
/// Largest body of the search form (`POST /track`).
pub const MAX_FORM_BODY: usize = 1024;

/// Serves one public connection.
pub async fn connection(
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    limits: ListenerLimits,
    shutdown: watch::Receiver<bool>,
) {
    let service = Public { app: &app, peer };
    let ended = edge::serve_connection(stream, limits, shutdown, &service).await;
    if let (edge::Ended::HeaderTimeout, Some(shield)) = (ended, &app.shield) {
        shield.refuse(Reason::HeaderTimeout, Some(peer.ip()));
    }
    tracing::trace!(?ended, %peer, "connection ended");
}

/// The public routes for one connection.
pub struct Public<'a> {
    pub app: &'a App,
    pub peer: SocketAddr,
}

/// What waits for storage.
pub enum Pending {
    Parcel {
        route: Route,
        started: Instant,
        tn: TrackingNumber,
        priority: Priority,
        page: Page,
    },
    Readyz {
        started: Instant,
    },
}

impl Public<'_> {
    fn record(&self, route: Route, reply: &Reply, started: Instant) {
        let took = started.elapsed();
        self.app
            .metrics
            .request(Listener::Public, route, reply.status().as_u16(), took);
        if let Some(shield) = &self.app.shield {
            shield.observe(took);
        }
    }
}

impl edge::Service for Public<'_> {
    type Pending = Pending;

    fn prepare(&self, req: &edge::Request<'_>) -> Step<Pending> {
        let started = Instant::now();
        let (route, step) = route(self.app, req, self.peer, started);
        if let Step::Done(reply) = &step {
            self.record(route, reply, started);
        }
        step
    }

    async fn finish(&self, pending: Pending) -> Reply {
        match pending {
            Pending::Parcel {
                route,
                started,
                tn,
                priority,
                page,
            } => {
                let reply = lookup(self.app, self.peer, tn, priority, page).await;
                self.record(route, &reply, started);
                reply
            }
            Pending::Readyz { started } => {
                let reply = if self.app.is_ready().await {
                    full(with_body(StatusCode::OK, TEXT, "ready\n"))
                } else {
                    json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_ready",
                        "storage is not available",
                        Some(1),
                    )
                };
                self.record(Route::Readyz, &reply, started);
                reply
            }
        }
    }

    fn refused(&self, status: StatusCode) {
        self.app.metrics.request(
            Listener::Public,
            Route::Other,
            status.as_u16(),
            Duration::ZERO,
        );
        if let Some(shield) = &self.app.shield {
            shield.refuse(Reason::Malformed, Some(self.peer.ip()));
        }
    }
}

fn full(resp: Response<Body>) -> Reply {
    Reply::Full(Box::new(resp))
}

/// A JSON error, encoded without a header map.
fn json_error(status: StatusCode, code: &str, message: &str, retry_after: Option<u32>) -> Reply {
    Reply::Json {
        status,
        body: response::error_body(code, message),
        retry_after,
    }
}

fn route(
    app: &App,
    req: &edge::Request<'_>,
    peer: SocketAddr,
    started: Instant,
) -> (Route, Step<Pending>) {
    let path = req.path;
    let get = matches!(req.method, "GET" | "HEAD");
    let post = req.method == "POST";
    let done = |route, reply| (route, Step::Done(reply));
    for (prefix, route, page) in [
        ("/v1/parcels/", Route::Parcel, Page::Json),
        ("/track/", Route::Track, Page::Html),
    ] {
        if let Some(segment) = path.strip_prefix(prefix) {
            if !get {
                return done(route, full(response::method_not_allowed("GET, HEAD")));
            }
            return match parcel(app, req, peer, segment, page) {
                Ok((tn, priority)) => (
                    route,
                    Step::Pending(Pending::Parcel {
                        route,
                        started,
                        tn,
                        priority,
                        page,
                    }),
                ),
                Err(reply) => done(route, reply),
            };
        }
    }
    match path {
        "/v1/challenge" if post && app.shield.is_some() => {
            done(Route::Challenge, challenge(app, req, peer))
        }
        "/v1/challenge" if app.shield.is_some() => {
            done(Route::Challenge, full(response::method_not_allowed("POST")))
        }
        "/" if get => done(
            Route::Index,
            full(cacheable(with_body(StatusCode::OK, HTML, html::index()))),
        ),
        "/" => done(
            Route::Index,
            full(response::method_not_allowed("GET, HEAD")),
        ),
        "/track" if post => done(Route::TrackForm, track_form(req)),
        "/track" => done(Route::TrackForm, full(response::method_not_allowed("POST"))),
        "/openapi.json" => done(Route::Openapi, full(response::openapi())),
        "/healthz" => done(
            Route::Healthz,
            full(with_body(StatusCode::OK, TEXT, "ok\n")),
        ),
        "/readyz" => (Route::Readyz, Step::Pending(Pending::Readyz { started })),
        _ => done(
            Route::Other,
            json_error(StatusCode::NOT_FOUND, "not_found", "no such route", None),
        ),
    }
}

fn cacheable(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=10"),
    );
    resp
}

/// Decodes a path segment (percent-encoding) and parses it as a tracking number.
pub fn parse_segment(segment: &str) -> Result<TrackingNumber, String> {
    if segment.len() > MAX_NUMBER_SEGMENT {
        return Err("not a tracking number: too long".into());
    }
    let decoded = percent_decode(segment.as_bytes()).ok_or("bad percent-encoding in the path")?;
    TrackingNumber::parse_bytes(&decoded).map_err(|e| e.to_string())
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Json,
    Html,
}

/// A cached answer that could not be confirmed fresh carries its age (RFC 9111 `Age`) and
/// `X-Rempart-Stale: 1`.
fn mark_stale(resp: &mut Response<Body>, stale_for: Option<u64>) {
    if let Some(age) = stale_for {
        resp.headers_mut().insert(AGE, HeaderValue::from(age));
        resp.headers_mut()
            .insert("x-rempart-stale", HeaderValue::from_static("1"));
    }
}

fn shown_input(segment: &str) -> String {
    String::from_utf8_lossy(&percent_decode(segment.as_bytes()).unwrap_or_default())
        .chars()
        .take(MAX_NUMBER_SEGMENT)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The pass a client shows: header `X-Rempart-Pass`, or cookie `rempart_pass`.
fn presented_pass<'a>(req: &edge::Request<'a>) -> Option<&'a str> {
    if let Some(v) = req.header("x-rempart-pass") {
        return std::str::from_utf8(v).ok().map(str::trim);
    }
    req.headers_named("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(PASS_COOKIE)?.strip_prefix('='))
}

/// Cookie carrying a challenge pass.
pub const PASS_COOKIE: &str = "rempart_pass";

/// The shield's checks for one lookup, cheapest first (the number's syntax was checked already):
/// existence filter, per-source limits, attack-mode pass. API-key clients skip the limits and
/// the challenge and get the high storage priority.
fn admit(
    app: &App,
    req: &edge::Request<'_>,
    peer: SocketAddr,
    tn: &TrackingNumber,
    page: Page,
) -> Result<Priority, Reply> {
    let Some(shield) = &app.shield else {
        return Ok(Priority::Anonymous);
    };
    // A shared store whose change feed cannot be read may hold numbers the filter never heard
    // of: trust its "absent" only while the feed is healthy.
    let filter_current =
        !app.shared_store || app.feed_ok.load(std::sync::atomic::Ordering::Relaxed);
    if filter_current && shield.filter.check(tn.as_bytes()) == rempart_shield::Verdict::Absent {
        shield.refuse(Reason::Unknown, None);
        return Err(not_found(tn, page));
    }
    let auth = req.header("authorization");
    if auth.is_some() && app.tokens.authorizes(auth) {
        return Ok(Priority::High);
    }
    if let rempart_shield::Decision::Limit { retry_after, .. } = shield.limiter.check(peer.ip()) {
        shield.refuse(Reason::RateLimited, Some(peer.ip()));
        return Err(Reply::Json {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: Bytes::from_static(response::RATE_LIMITED_BODY.as_bytes()),
            retry_after: Some(retry_after),
        });
    }
    if shield.attack.is_on() {
        let network = network_of(peer.ip());
        let passed = presented_pass(req)
            .is_some_and(|pass| shield.challenges.check_pass(&network, pass, unix_now()));
        if !passed {
            shield.refuse(Reason::Challenge, Some(peer.ip()));
            let challenge = shield.challenges.issue(&network, unix_now());
            let mut resp = match page {
                Page::Html => with_body(
                    StatusCode::FORBIDDEN,
                    HTML,
                    crate::shield::challenge_page(&challenge.seed, challenge.difficulty),
                ),
                Page::Json => with_body(
                    StatusCode::FORBIDDEN,
                    JSON,
                    serde_json::json!({
                        "error": "challenge_required",
                        "message": "the service is under attack: solve the challenge and POST it to /v1/challenge, then send the pass in X-Rempart-Pass (see README)",
                        "challenge": {
                            "algorithm": "sha256-leading-zero-bits",
                            "seed": challenge.seed,
                            "difficulty": challenge.difficulty,
                            "expires": challenge.expires,
                        },
                        "submit": "/v1/challenge",
                    })
                    .to_string(),
                ),
            };
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Err(full(resp));
        }
    }
    Ok(Priority::Anonymous)
}

fn not_found(tn: &TrackingNumber, page: Page) -> Reply {
    match page {
        Page::Json => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no event is known for {tn}"),
            None,
        ),
        Page::Html => full(with_body(
            StatusCode::NOT_FOUND,
            HTML,
            html::message(
                "Parcel not found",
                &format!("No event is known yet for {tn}. Check the number, or try again later."),
                tn.as_str(),
            ),
        )),
    }
}

fn overloaded(tn: &TrackingNumber, page: Page) -> Reply {
    match page {
        Page::Json => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is busy; try again shortly",
            Some(1),
        ),
        Page::Html => {
            let mut resp = with_body(
                StatusCode::SERVICE_UNAVAILABLE,
                HTML,
                html::message(
                    "Try again shortly",
                    "Tracking is busy right now.",
                    tn.as_str(),
                ),
            );
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(1));
            full(resp)
        }
    }
}

/// `GET /v1/parcels/{n}` and `GET /track/{n}`, before storage: the number's syntax, then the
/// shield's checks. `Ok` means "look it up".
fn parcel(
    app: &App,
    req: &edge::Request<'_>,
    peer: SocketAddr,
    segment: &str,
    page: Page,
) -> Result<(TrackingNumber, Priority), Reply> {
    let tn = match parse_segment(segment) {
        Ok(tn) => tn,
        Err(message) => {
            if let Some(shield) = &app.shield {
                shield.refuse(Reason::Invalid, None);
            }
            return Err(match page {
                Page::Json => json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_tracking_number",
                    &message,
                    None,
                ),
                Page::Html => full(with_body(
                    StatusCode::BAD_REQUEST,
                    HTML,
                    html::message("Not a tracking number", &message, &shown_input(segment)),
                )),
            });
        }
    };
    let priority = admit(app, req, peer, &tn, page)?;
    Ok((tn, priority))
}

/// The storage part of a parcel lookup (cache, then storage under the concurrency limit).
async fn lookup(
    app: &App,
    peer: SocketAddr,
    tn: TrackingNumber,
    priority: Priority,
    page: Page,
) -> Reply {
    match app.lookup(tn, priority).await {
        Ok(Lookup::Found { parcel, stale_for }) => {
            let mut resp = match page {
                Page::Json => with_body(StatusCode::OK, JSON, parcel.json.clone()),
                Page::Html => with_body(StatusCode::OK, HTML, html::parcel(&parcel.view)),
            };
            mark_stale(&mut resp, stale_for);
            full(resp)
        }
        Ok(Lookup::NotFound) => not_found(&tn, page),
        Ok(Lookup::Shed) => {
            if let Some(shield) = &app.shield {
                shield.refuse(Reason::Overloaded, Some(peer.ip()));
            }
            overloaded(&tn, page)
        }
        Err(e) => {
            tracing::debug!(error = %e, "lookup failed");
            overloaded(&tn, page)
        }
    }
}

/// Largest body of `POST /v1/challenge`.
pub const MAX_CHALLENGE_BODY: usize = 1024;

/// `POST /v1/challenge` with `{"seed":…,"nonce":…}` → a pass (JSON and cookie).
fn challenge(app: &App, req: &edge::Request<'_>, peer: SocketAddr) -> Reply {
    full(challenge_response(app, req, peer))
}

fn challenge_response(app: &App, req: &edge::Request<'_>, peer: SocketAddr) -> Response<Body> {
    let Some(shield) = &app.shield else {
        return response::not_found_route();
    };
    let body = req.body;
    if body.len() > MAX_CHALLENGE_BODY {
        return response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "at most 1 KiB",
        );
    }
    #[derive(serde::Deserialize)]
    struct Solution {
        seed: String,
        nonce: String,
    }
    let solution: Solution = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "challenge_failed",
                &format!("expected {{\"seed\":…,\"nonce\":…}}: {e}"),
            );
        }
    };
    match shield.challenges.redeem(
        &network_of(peer.ip()),
        &solution.seed,
        &solution.nonce,
        unix_now(),
    ) {
        Ok((pass, expires)) => {
            let mut resp = with_body(
                StatusCode::OK,
                JSON,
                serde_json::json!({ "pass": pass, "expires": expires }).to_string(),
            );
            let cookie = format!(
                "{PASS_COOKIE}={pass}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax",
                shield.challenges.pass_ttl()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => response::error(StatusCode::BAD_REQUEST, "challenge_failed", &e.to_string()),
    }
}

/// `POST /track` with `n=<number>` (the search form) → 303 to `/track/{N}`.
fn track_form(req: &edge::Request<'_>) -> Reply {
    full(track_form_response(req.body))
}

fn track_form_response(body: &[u8]) -> Response<Body> {
    if body.len() > MAX_FORM_BODY {
        return response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the search form is at most 1 KiB",
        );
    }
    let value = form_field(body, b"n").unwrap_or_default();
    match TrackingNumber::parse_bytes(&value) {
        Ok(tn) => {
            let mut resp = with_body(StatusCode::SEE_OTHER, TEXT, Bytes::new());
            let location = HeaderValue::from_str(&format!("/track/{tn}"))
                .expect("tracking numbers are header-safe");
            resp.headers_mut().insert(LOCATION, location);
            resp
        }
        Err(e) => {
            let shown = String::from_utf8_lossy(&value).into_owned();
            with_body(
                StatusCode::BAD_REQUEST,
                HTML,
                html::message("Not a tracking number", &e.to_string(), shown.trim()),
            )
        }
    }
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        if key != name {
            return None;
        }
        let plus_as_space: Vec<u8> = value[1..]
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&plus_as_space)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded_trimmed_and_validated() {
        assert_eq!(
            parse_segment("rr123456785fr").unwrap().as_str(),
            "RR123456785FR"
        );
        assert_eq!(
            parse_segment("%20RR123456785FR%20").unwrap().as_str(),
            "RR123456785FR"
        );
        for bad in [
            "",
            "RR123456784FR",
            "%",
            "%zz",
            "%FF%FE",
            "RR123456785FR/extra",
            &"A".repeat(10_000),
        ] {
            assert!(parse_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"x=1&n=+rr123456785fr+", b"n").unwrap(),
            b" rr123456785fr "
        );
        assert_eq!(form_field(b"n=6A%312", b"n").unwrap(), b"6A12");
        assert!(form_field(b"m=1", b"n").is_none());
        assert!(form_field(b"n=%", b"n").is_none());
    }
}
