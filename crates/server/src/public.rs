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

/// Longest path segment examined as a tracking number (13 characters, spaces and
/// percent-encoding allow some slack); longer ones are refused without decoding.
pub const MAX_NUMBER_SEGMENT: usize = 64;
/// Largest body of the search form (`POST /track`).
pub const MAX_FORM_BODY: usize = 1024;

pub async fn handle(app: Arc<App>, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (route, resp) = route(&app, req).await;
    app.metrics.request(
        Listener::Public,
        route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

async fn route(app: &App, req: Request<Incoming>) -> (Route, Response<Body>) {
    let path = req.uri().path();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if let Some(segment) = path.strip_prefix("/v1/parcels/") {
        if !get {
            return (Route::Parcel, response::method_not_allowed("GET, HEAD"));
        }
        return (Route::Parcel, parcel_json(app, segment).await);
    }
    if let Some(segment) = path.strip_prefix("/track/") {
        if !get {
            return (Route::Track, response::method_not_allowed("GET, HEAD"));
        }
        return (Route::Track, parcel_html(app, segment).await);
    }
    match path {
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

async fn parcel_json(app: &App, segment: &str) -> Response<Body> {
    let tn = match parse_segment(segment) {
        Ok(tn) => tn,
        Err(message) => {
            return response::error(StatusCode::BAD_REQUEST, "invalid_tracking_number", &message);
        }
    };
    match app.lookup(tn).await {
        Ok(Lookup::Found { parcel, stale_for }) => {
            let mut resp = with_body(StatusCode::OK, JSON, parcel.json.clone());
            mark_stale(&mut resp, stale_for);
            resp
        }
        Ok(Lookup::NotFound) => response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no event is known for {tn}"),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "lookup failed");
            response::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "storage is not available; try again shortly",
                1,
            )
        }
    }
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

async fn parcel_html(app: &App, segment: &str) -> Response<Body> {
    let shown = String::from_utf8_lossy(&percent_decode(segment.as_bytes()).unwrap_or_default())
        .chars()
        .take(MAX_NUMBER_SEGMENT)
        .collect::<String>();
    let tn = match parse_segment(segment) {
        Ok(tn) => tn,
        Err(message) => {
            let page = html::message("Not a tracking number", &message, shown.trim());
            return with_body(StatusCode::BAD_REQUEST, HTML, page);
        }
    };
    match app.lookup(tn).await {
        Ok(Lookup::Found { parcel, stale_for }) => {
            let mut resp = with_body(StatusCode::OK, HTML, html::parcel(&parcel.view));
            mark_stale(&mut resp, stale_for);
            resp
        }
        Ok(Lookup::NotFound) => with_body(
            StatusCode::NOT_FOUND,
            HTML,
            html::message(
                "Parcel not found",
                &format!("No event is known yet for {tn}. Check the number, or try again later."),
                tn.as_str(),
            ),
        ),
        Err(_) => {
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
