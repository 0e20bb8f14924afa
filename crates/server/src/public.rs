//! The public listener's routes (SPEC.md): JSON lookups, HTML pages, health. Anonymous.
//! Query strings are never looked at: only the path is routed, so random query strings cannot
//! defeat the cache or reach storage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AGE, CACHE_CONTROL, HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use rempart_domain::TrackingNumber;

use crate::app::{App, Lookup};
use crate::html;
use crate::metrics::{Listener, Route};
use crate::response::{self, Body, HTML, JSON, TEXT, with_body};
use crate::shield::{Reason, network_of, unix_now};
use rempart_shield::Priority;

/// Longest path segment examined as a tracking number (13 characters, spaces and
/// percent-encoding allow some slack); longer ones are refused without decoding.
pub const MAX_NUMBER_SEGMENT: usize = 64;
/// Largest body of the search form (`POST /track`).
pub const MAX_FORM_BODY: usize = 1024;

pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (route, resp) = route(&app, req, peer).await;
    let took = started.elapsed();
    app.metrics
        .request(Listener::Public, route, resp.status().as_u16(), took);
    if let Some(shield) = &app.shield {
        shield.observe(took);
    }
    resp
}

async fn route(app: &App, req: Request<Incoming>, peer: SocketAddr) -> (Route, Response<Body>) {
    let path = req.uri().path();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if let Some(segment) = path.strip_prefix("/v1/parcels/") {
        if !get {
            return (Route::Parcel, response::method_not_allowed("GET, HEAD"));
        }
        return (
            Route::Parcel,
            parcel(app, &req, peer, segment, Page::Json).await,
        );
    }
    if let Some(segment) = path.strip_prefix("/track/") {
        if !get {
            return (Route::Track, response::method_not_allowed("GET, HEAD"));
        }
        return (
            Route::Track,
            parcel(app, &req, peer, segment, Page::Html).await,
        );
    }
    match path {
        "/v1/challenge" if req.method() == Method::POST && app.shield.is_some() => {
            (Route::Challenge, challenge(app, req, peer).await)
        }
        "/v1/challenge" if app.shield.is_some() => {
            (Route::Challenge, response::method_not_allowed("POST"))
        }
        "/" if get => (
            Route::Index,
            cacheable(with_body(StatusCode::OK, HTML, html::index())),
        ),
        "/" => (Route::Index, response::method_not_allowed("GET, HEAD")),
        "/track" if req.method() == Method::POST => (Route::TrackForm, track_form(req).await),
        "/track" => (Route::TrackForm, response::method_not_allowed("POST")),
        "/openapi.json" => (Route::Openapi, response::openapi()),
        "/healthz" => (Route::Healthz, with_body(StatusCode::OK, TEXT, "ok\n")),
        "/readyz" => {
            let resp = if app.is_ready().await {
                with_body(StatusCode::OK, TEXT, "ready\n")
            } else {
                response::retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "storage is not available",
                    1,
                )
            };
            (Route::Readyz, resp)
        }
        _ => (Route::Other, response::not_found_route()),
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
enum Page {
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
fn presented_pass(req: &Request<Incoming>) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get("x-rempart-pass")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.trim().to_owned());
    }
    req.headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{PASS_COOKIE}="))
                .map(str::to_owned)
        })
}

/// Cookie carrying a challenge pass.
pub const PASS_COOKIE: &str = "rempart_pass";

/// The shield's checks for one lookup, cheapest first (the number's syntax was checked already):
/// existence filter, per-source limits, attack-mode pass. API-key clients skip the limits and
/// the challenge and get the high storage priority.
fn admit(
    app: &App,
    req: &Request<Incoming>,
    peer: SocketAddr,
    tn: &TrackingNumber,
    page: Page,
) -> Result<Priority, Box<Response<Body>>> {
    let Some(shield) = &app.shield else {
        return Ok(Priority::Anonymous);
    };
    // A shared store whose change feed cannot be read may hold numbers the filter never heard
    // of: trust its "absent" only while the feed is healthy.
    let filter_current =
        !app.shared_store || app.feed_ok.load(std::sync::atomic::Ordering::Relaxed);
    if filter_current && shield.filter.check(tn.as_bytes()) == rempart_shield::Verdict::Absent {
        shield.refuse(Reason::Unknown, None);
        return Err(Box::new(not_found(tn, page)));
    }
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    if auth.is_some() && app.tokens.authorizes(auth) {
        return Ok(Priority::High);
    }
    if let rempart_shield::Decision::Limit { retry_after, .. } = shield.limiter.check(peer.ip()) {
        shield.refuse(Reason::RateLimited, Some(peer.ip()));
        return Err(Box::new(response::rate_limited(retry_after)));
    }
    if shield.attack.is_on() {
        let network = network_of(peer.ip());
        let passed = presented_pass(req)
            .is_some_and(|pass| shield.challenges.check_pass(&network, &pass, unix_now()));
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
            return Err(Box::new(resp));
        }
    }
    Ok(Priority::Anonymous)
}

fn not_found(tn: &TrackingNumber, page: Page) -> Response<Body> {
    match page {
        Page::Json => response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no event is known for {tn}"),
        ),
        Page::Html => with_body(
            StatusCode::NOT_FOUND,
            HTML,
            html::message(
                "Parcel not found",
                &format!("No event is known yet for {tn}. Check the number, or try again later."),
                tn.as_str(),
            ),
        ),
    }
}

fn overloaded(tn: &TrackingNumber, page: Page) -> Response<Body> {
    match page {
        Page::Json => response::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is busy; try again shortly",
            1,
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
            resp
        }
    }
}

/// `GET /v1/parcels/{n}` and `GET /track/{n}`.
async fn parcel(
    app: &App,
    req: &Request<Incoming>,
    peer: SocketAddr,
    segment: &str,
    page: Page,
) -> Response<Body> {
    let tn = match parse_segment(segment) {
        Ok(tn) => tn,
        Err(message) => {
            if let Some(shield) = &app.shield {
                shield.refuse(Reason::Invalid, None);
            }
            return match page {
                Page::Json => {
                    response::error(StatusCode::BAD_REQUEST, "invalid_tracking_number", &message)
                }
                Page::Html => with_body(
                    StatusCode::BAD_REQUEST,
                    HTML,
                    html::message("Not a tracking number", &message, &shown_input(segment)),
                ),
            };
        }
    };
    let priority = match admit(app, req, peer, &tn, page) {
        Ok(priority) => priority,
        Err(resp) => return *resp,
    };
    match app.lookup(tn, priority).await {
        Ok(Lookup::Found { parcel, stale_for }) => {
            let mut resp = match page {
                Page::Json => with_body(StatusCode::OK, JSON, parcel.json.clone()),
                Page::Html => with_body(StatusCode::OK, HTML, html::parcel(&parcel.view)),
            };
            mark_stale(&mut resp, stale_for);
            resp
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
async fn challenge(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let Some(shield) = &app.shield else {
        return response::not_found_route();
    };
    let body = match Limited::new(req.into_body(), MAX_CHALLENGE_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "at most 1 KiB",
            );
        }
    };
    #[derive(serde::Deserialize)]
    struct Solution {
        seed: String,
        nonce: String,
    }
    let solution: Solution = match serde_json::from_slice(&body) {
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
async fn track_form(req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), MAX_FORM_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the search form is at most 1 KiB",
            );
        }
    };
    let value = form_field(&body, b"n").unwrap_or_default();
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
