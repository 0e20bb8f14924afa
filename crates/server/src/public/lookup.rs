//! `GET /v1/parcels/{n}` and `GET [/{lang}]/track/{n}`: admission (the number's syntax, then the
//! shield), synchronous; then the lookup (response cache, then storage under the adaptive
//! concurrency limit), awaited. Answers in JSON or as a page in the visitor's language. The shield
//! step ([`check`]) and the lookup step ([`fetch`]) are shared with the Suivi v2 batches, so a
//! number costs the same whichever route asks for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::StatusCode;
use rempart_domain::{ParcelView, TrackingNumber, TrackingNumberError};
use rempart_shield::{Challenge, Priority};
use rempart_store::StoreError;
use rempart_views::{Lang, html};

use super::caching::{self, Validators};
use crate::app::App;
use crate::coherence::cache::CachedParcel;
use crate::content::JSON;
use crate::edge::{HeaderText, Request, Response};
use crate::guard::{Admission, LookupClaims, Reason};

/// Longest path segment examined as a tracking number (13 characters, spaces and
/// percent-encoding allow some slack); longer ones are refused without decoding.
pub const MAX_NUMBER_SEGMENT: usize = 64;
/// Longest a storage read for a lookup may take before the lookup answers 503.
pub const LOOKUP_STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Cookie carrying a challenge pass.
pub const PASS_COOKIE: &str = "rempart_pass";
/// The body of 429 `rate_limited`, built once: this is the answer a flood gets most.
pub const RATE_LIMITED_BODY: &str =
    r#"{"error":"rate_limited","message":"too many requests from your network; slow down"}"#;

/// A page's language and how it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLang {
    pub lang: Lang,
    /// Chosen from `Accept-Language` (an unprefixed path): the answer carries
    /// `Vary: Accept-Language`.
    pub negotiated: bool,
}

impl PageLang {
    /// The language of the path's prefix, else the browser's.
    pub fn of(prefix: Option<Lang>, req: &Request<'_>) -> PageLang {
        match prefix {
            Some(lang) => PageLang {
                lang,
                negotiated: false,
            },
            None => PageLang {
                lang: Lang::from_accept_language(req.header("accept-language").unwrap_or(b"")),
                negotiated: true,
            },
        }
    }
}

/// Which form the answer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Json,
    Html(PageLang),
}

/// A lookup the shield let through.
pub struct Admitted {
    tn: TrackingNumber,
    priority: Priority,
    page: Page,
    validators: Validators,
}

/// Decodes a path segment (percent-encoding) and parses it strictly, as the JSON API does:
/// surrounding spaces and lower case are accepted, nothing else.
pub fn parse_segment(segment: &str) -> Result<TrackingNumber, String> {
    if segment.len() > MAX_NUMBER_SEGMENT {
        return Err("not a tracking number: too long".into());
    }
    if !segment.contains('%') {
        return TrackingNumber::parse_bytes(segment.as_bytes()).map_err(|e| e.to_string());
    }
    let decoded = percent_decode(segment.as_bytes()).ok_or("bad percent-encoding in the path")?;
    TrackingNumber::parse_bytes(&decoded).map_err(|e| e.to_string())
}

/// Decodes a page's path segment and parses it as a person types a number: spaces, dashes and
/// lower case anywhere ([`TrackingNumber::parse_typed`]).
pub fn parse_typed_segment(segment: &str) -> Result<TrackingNumber, TrackingNumberError> {
    if segment.len() > MAX_NUMBER_SEGMENT {
        return Err(TrackingNumberError::Length(segment.len()));
    }
    let decoded = percent_decode(segment.as_bytes()).ok_or(TrackingNumberError::Format)?;
    TrackingNumber::parse_typed_bytes(&decoded)
}

/// `%XX` decoding; `None` on a malformed escape.
pub(super) fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
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

/// The pass a client shows: header `X-Rempart-Pass`, or cookie `rempart_pass`.
pub fn presented_pass<'a>(req: &Request<'a>) -> Option<&'a str> {
    if let Some(v) = req.header("x-rempart-pass") {
        return std::str::from_utf8(v).ok().map(str::trim);
    }
    req.headers_named("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(PASS_COOKIE)?.strip_prefix('='))
}

/// The shield's verdict on one valid number asked by `req` from `peer` (counted there): every
/// number of every route goes through here.
pub fn check(app: &App, req: &Request<'_>, peer: SocketAddr, tn: &TrackingNumber) -> Admission {
    let claims = LookupClaims {
        number: tn.as_bytes(),
        source: peer.ip(),
        filter_trusted: app.coherence.feed.is_current(),
        pass: presented_pass(req),
    };
    // An ingest token or an API key (any scope): a keyed client ranks above anonymous ones.
    let authorized = || {
        let auth = req.header("authorization");
        auth.is_some() && (app.tokens.authorizes(auth) || app.keys.authorizes(auth))
    };
    app.guard.admit_lookup(&claims, authorized)
}

/// The number's syntax (400), then the shield's checks. `Ok`: look it up.
// The refusal is moved, never boxed: answering a refusal must not allocate.
#[allow(clippy::result_large_err)]
pub fn admit(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    segment: &str,
    page: Page,
) -> Result<Admitted, Response> {
    let parsed = match page {
        Page::Json => parse_segment(segment).map_err(|message| {
            Response::error(StatusCode::BAD_REQUEST, "invalid_tracking_number", &message)
        }),
        Page::Html(pl) => parse_typed_segment(segment).map_err(|error| {
            let shown =
                String::from_utf8_lossy(&percent_decode(segment.as_bytes()).unwrap_or_default())
                    .into_owned();
            caching::uncached_page(
                StatusCode::BAD_REQUEST,
                html::invalid(pl.lang, &shown, &error),
            )
        }),
    };
    let tn = parsed.inspect_err(|_| app.guard.refuse(Reason::Invalid, None))?;
    match check(app, req, peer, &tn) {
        Admission::Admit(priority) => Ok(Admitted {
            tn,
            priority,
            page,
            validators: Validators::of(req),
        }),
        Admission::Unknown => Err(not_found(&tn, page)),
        Admission::RateLimited { retry_after } => Err(rate_limited(retry_after)),
        Admission::Challenge(challenge) => Err(challenged(&challenge, page)),
    }
}

/// 429 `rate_limited` with `Retry-After`.
pub fn rate_limited(retry_after: u32) -> Response {
    Response::error_body(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED_BODY).retry_after(retry_after)
}

/// What looking a number up gave.
pub enum Fetched {
    /// The parcel, and the age of a cached answer that could not be confirmed fresh.
    Found(Arc<CachedParcel>, Option<u64>),
    NotFound,
    /// The node shed the read (no storage slot in time, or storage failed).
    Unavailable,
}

/// Cache, then storage (filling the cache) under the concurrency limit.
pub async fn fetch(app: &App, peer: SocketAddr, tn: TrackingNumber, priority: Priority) -> Fetched {
    if let Some(parcel) = app.coherence.cache.get(&tn) {
        app.metrics.cache_hits.fetch_add(1, Relaxed);
        return Fetched::Found(parcel, app.coherence.feed.stale_for());
    }
    app.metrics.cache_misses.fetch_add(1, Relaxed);
    let Some(permit) = app.guard.storage_permit(priority).await else {
        app.guard.refuse(Reason::Overloaded, Some(peer.ip()));
        return Fetched::Unavailable;
    };
    let stamp = app.coherence.cache.stamp(&tn);
    let events = match read(app, &tn).await {
        Ok(events) => events,
        Err(e) => {
            tracing::debug!(error = %e, "lookup failed");
            return Fetched::Unavailable;
        }
    };
    permit.done();
    match ParcelView::build(tn, events) {
        None => Fetched::NotFound,
        Some(view) => {
            let parcel = CachedParcel::new(view);
            app.coherence.cache.fill(tn, parcel.clone(), stamp);
            Fetched::Found(parcel, None)
        }
    }
}

/// The lookup itself, answered in the admitted form.
pub async fn finish(app: &App, peer: SocketAddr, admitted: Admitted) -> Response {
    let Admitted {
        tn,
        priority,
        page,
        validators,
    } = admitted;
    match fetch(app, peer, tn, priority).await {
        Fetched::Found(parcel, stale_for) => {
            found(&parcel, page, stale_for, &validators, app.alerts_enabled())
        }
        Fetched::NotFound => not_found(&tn, page),
        Fetched::Unavailable => overloaded(&tn, page),
    }
}

async fn read(
    app: &App,
    tn: &TrackingNumber,
) -> Result<Vec<rempart_domain::StoredEvent>, StoreError> {
    tokio::time::timeout(LOOKUP_STORE_TIMEOUT, app.store.parcel_events(tn))
        .await
        .map_err(|_| StoreError::Unavailable("storage read timed out".into()))
        .and_then(|r| r)
        .inspect_err(|_| {
            app.metrics.store_errors.fetch_add(1, Relaxed);
        })
}

/// A parcel's answer, cacheable with its `ETag` (the JSON's computed when the cache was filled),
/// or `304`. A cached answer that could not be confirmed fresh carries its age (RFC 9111 `Age`)
/// and `X-Rempart-Stale: 1`.
fn found(
    parcel: &CachedParcel,
    page: Page,
    stale_for: Option<u64>,
    validators: &Validators,
    alerts: bool,
) -> Response {
    let response = match page {
        Page::Json => caching::cacheable(
            Response::new(StatusCode::OK, JSON, parcel.json.clone())
                .header("x-content-type-options", HeaderText::Static("nosniff")),
            caching::LOOKUP,
            parcel.json_etag.clone(),
            false,
            validators,
        ),
        Page::Html(pl) => caching::cached_page(
            html::parcel_with_alerts(pl.lang, &parcel.view, crate::clock::now(), alerts),
            caching::LOOKUP,
            pl.negotiated,
            validators,
        ),
    };
    with_age(response, stale_for)
}

/// `Age` and `X-Rempart-Stale: 1` on an answer from a cache that could not be confirmed fresh.
pub fn with_age(response: Response, stale_for: Option<u64>) -> Response {
    match stale_for {
        Some(age) => response
            .header("age", HeaderText::Number(age))
            .header("x-rempart-stale", HeaderText::Static("1")),
        None => response,
    }
}

fn not_found(tn: &TrackingNumber, page: Page) -> Response {
    match page {
        Page::Json => Response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no event is known for {tn}"),
        ),
        Page::Html(pl) => {
            caching::uncached_page(StatusCode::NOT_FOUND, html::not_found(pl.lang, tn))
        }
    }
}

fn overloaded(tn: &TrackingNumber, page: Page) -> Response {
    match page {
        Page::Json => Response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is busy; try again shortly",
        ),
        Page::Html(pl) => {
            caching::uncached_page(StatusCode::SERVICE_UNAVAILABLE, html::busy(pl.lang, tn))
        }
    }
    .retry_after(1)
}

/// 403 in attack mode: the challenge, as a page that solves it or as JSON for API clients.
pub fn challenged(challenge: &Challenge, page: Page) -> Response {
    match page {
        Page::Html(pl) => caching::uncached_page(
            StatusCode::FORBIDDEN,
            html::challenge(pl.lang, &challenge.seed, challenge.difficulty),
        ),
        Page::Json => Response::error_body(
            StatusCode::FORBIDDEN,
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
    }
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
            "RR%20123456785FR",
            &"A".repeat(10_000),
        ] {
            assert!(parse_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn page_segments_accept_numbers_as_people_type_them() {
        let tn = TrackingNumber::domestic(6, 'A', 1_000_000_001).unwrap();
        let n = tn.as_str();
        let grouped = format!("{} {} {} {}", &n[..2], &n[2..6], &n[6..10], &n[10..]);
        for typed in [
            grouped.replace(' ', "%20"),
            grouped.replace(' ', "-").to_lowercase(),
            grouped.clone(),
            n.to_lowercase(),
            format!("%E2%80%91{n}"),
        ] {
            assert_eq!(parse_typed_segment(&typed), Ok(tn), "{typed:?}");
        }
        let wrong_check = format!("{}{}", &n[..12], (n.as_bytes()[12] - b'0' + 1) % 10);
        for bad in [
            "",
            "%",
            "%zz",
            "%FF%FE",
            &wrong_check,
            &format!("{}%E2%80%AE{}", &n[..2], &n[2..]),
            &"6".repeat(MAX_NUMBER_SEGMENT + 1),
        ] {
            assert!(parse_typed_segment(bad).is_err(), "{bad:?}");
        }
    }
}
