//! Building responses: JSON errors with a stable `error` code and a human `message`, and the
//! few headers every response carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

pub type Body = Full<Bytes>;

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

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

/// `{"error":code,"message":message}`: the body of every JSON error.
pub fn error_body(code: &str, message: &str) -> Bytes {
    #[derive(serde::Serialize)]
    struct Error<'a> {
        error: &'a str,
        message: &'a str,
    }
    let mut out = Vec::with_capacity(32 + code.len() + message.len());
    let _ = serde_json::to_writer(
        &mut out,
        &Error {
            error: code,
            message,
        },
    );
    out.into()
}

/// A JSON error response (`Cache-Control: no-store`).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut resp = with_body(status, JSON, error_body(code, message));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error with `Retry-After` in seconds (429, 503).
pub fn retry_later(status: StatusCode, code: &str, message: &str, seconds: u32) -> Response<Body> {
    let mut resp = error(status, code, message);
    resp.headers_mut()
        .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
    resp
}

/// The OpenAPI document of both listeners.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn openapi() -> Response<Body> {
    with_body(StatusCode::OK, JSON, OPENAPI)
}

/// The body of 429 `rate_limited`, built once: this is the answer a flood gets most.
pub const RATE_LIMITED_BODY: &str =
    r#"{"error":"rate_limited","message":"too many requests from your network; slow down"}"#;

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
        .insert(hyper::header::ALLOW, HeaderValue::from_static(allow));
    resp
}

#[cfg(test)]
mod tests {
    use crate::metrics::{Listener, Route};

    /// Every route the server serves is in the document with its method, and the document
    /// names no path the server does not serve. (The integration tests check the real listeners
    /// answer each of these.)
    #[test]
    fn the_openapi_document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (_, method, path, listener) in Route::SERVED {
            let item = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not documented"));
            assert!(
                item.get(method.to_ascii_lowercase()).is_some(),
                "{method} {path} is not documented"
            );
            let expected = match listener {
                Some(Listener::Public) => "public",
                Some(Listener::Ingest) => "ingest",
                None => "both",
            };
            assert_eq!(item["x-rempart-listener"], expected, "{path}");
        }
        for (path, item) in paths {
            for method in item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !k.starts_with("x-"))
            {
                assert!(
                    Route::SERVED
                        .iter()
                        .any(|(_, m, p, _)| p == path && m.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }
}
