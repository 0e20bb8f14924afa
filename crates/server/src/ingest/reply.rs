//! Building the ingest listener's hyper responses: a body with its content type, and JSON
//! errors (`crate::content::error_body`) that are never cached.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::content::{JSON, error_body};

pub type Body = Full<Bytes>;

/// A response with a body and its content type.
pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON error response (`Cache-Control: no-store`).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut resp = with_body(status, JSON, error_body(code, message));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error with `Retry-After` in seconds (503).
pub fn retry_later(status: StatusCode, code: &str, message: &str, seconds: u32) -> Response<Body> {
    let mut resp = error(status, code, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    resp
}

pub fn not_found_route() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this route accepts {allow}"),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}
