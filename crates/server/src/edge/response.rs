//! The public listener's one response type, owned and free of any HTTP library's types, and its
//! encoding into the connection's output buffer.
//!
//! A response is a status, a content type, up to a few more headers held inline, and a body in
//! `Bytes` (static for fixed answers, shared for cached parcels), in one box: building the
//! refusals a flood gets most allocates that box and nothing else. `Content-Length`, `Date` and `Connection` are written by the
//! encoder, never by handlers.

use std::time::SystemTime;

use bytes::Bytes;
use http::StatusCode;
use smallvec::SmallVec;

use crate::content::{self, JSON};

/// Headers a response carries inline before spilling to the heap.
const INLINE_HEADERS: usize = 4;

/// A header value: static text, a number, text built for this response, or text built once and
/// shared by many responses (a cached parcel's `ETag`: cloning it allocates nothing).
#[derive(Debug, Clone)]
pub enum HeaderText {
    Static(&'static str),
    Number(u64),
    Owned(Box<str>),
    Shared(Bytes),
}

/// An answer of the public listener. Boxed: its parts are ~300 bytes (the inline headers), and a
/// response moves through the builders, the service and the connection by value; a pointer
/// moves for free where ~300 bytes cost a `memcpy` each time (callgrind: ~600 instructions a
/// lookup), against one allocation.
#[derive(Debug, Clone)]
pub struct Response(Box<Parts>);

#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    content_type: &'static str,
    headers: SmallVec<[(&'static str, HeaderText); INLINE_HEADERS]>,
    body: Bytes,
}

impl Response {
    /// A response with a body and its content type.
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response(Box::new(Parts {
            status,
            content_type,
            headers: SmallVec::new(),
            body: body.into(),
        }))
    }

    /// A JSON error `{"error":code,"message":message}`, never cached.
    pub fn error(status: StatusCode, code: &str, message: &str) -> Self {
        Self::error_body(status, content::error_body(code, message))
    }

    /// A JSON error with a body encoded beforehand (the refusals a flood gets most).
    pub fn error_body(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Response::new(status, JSON, body).header("cache-control", HeaderText::Static("no-store"))
    }

    /// `405` naming the methods the route accepts.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let message = format!("this route accepts {allow}");
        Self::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &message,
        )
        .header("allow", HeaderText::Static(allow))
    }

    /// Adds a header (names in lower case).
    #[must_use]
    pub fn header(mut self, name: &'static str, value: HeaderText) -> Self {
        self.0.headers.push((name, value));
        self
    }

    /// Adds `Retry-After` in seconds.
    #[must_use]
    pub fn retry_after(self, seconds: u32) -> Self {
        self.header("retry-after", HeaderText::Number(u64::from(seconds)))
    }

    /// The same answer as `304 Not Modified`: its headers (`ETag`, `Cache-Control`, `Vary`…)
    /// without the body; the encoder writes no `Content-Type` or `Content-Length` for it.
    #[must_use]
    pub fn not_modified(mut self) -> Self {
        self.0.status = StatusCode::NOT_MODIFIED;
        self.0.body = Bytes::new();
        self
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn body(&self) -> &Bytes {
        &self.0.body
    }

    /// The value of header `name` (as given to [`Response::header`]), for tests.
    pub fn header_value(&self, name: &str) -> Option<String> {
        self.0
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| match v {
                HeaderText::Static(s) => (*s).to_owned(),
                HeaderText::Number(n) => n.to_string(),
                HeaderText::Owned(s) => s.to_string(),
                HeaderText::Shared(b) => String::from_utf8_lossy(b).into_owned(),
            })
    }

    /// Appends the response to `out`; no body after a `HEAD`, `connection: close` when closing.
    /// A `304` carries neither `Content-Type` nor `Content-Length` (RFC 9110 §15.4.5: its
    /// length would have to be the full answer's).
    pub fn encode(&self, out: &mut Vec<u8>, head_only: bool, close: bool) {
        let not_modified = self.0.status == StatusCode::NOT_MODIFIED;
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.0.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.0.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        if !not_modified {
            out.extend_from_slice(b"content-type: ");
            out.extend_from_slice(self.0.content_type.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in &self.0.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            match value {
                HeaderText::Static(s) => out.extend_from_slice(s.as_bytes()),
                HeaderText::Number(n) => {
                    out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
                }
                HeaderText::Owned(s) => out.extend_from_slice(s.as_bytes()),
                HeaderText::Shared(b) => out.extend_from_slice(b),
            }
            out.extend_from_slice(b"\r\n");
        }
        if !not_modified {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(self.0.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&http_date());
        if close {
            out.extend_from_slice(b"\r\nconnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.0.body);
        }
    }
}

/// The `Date` header value, formatted once a second per thread.
fn http_date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((0, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let (at, text) = cache.get();
        if at == secs {
            return text;
        }
        let mut fresh = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        if formatted.len() == fresh.len() {
            fresh.copy_from_slice(formatted.as_bytes());
        }
        cache.set((secs, fresh));
        fresh
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_encoded_with_its_headers_length_and_date() {
        let resp = Response::error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down")
            .retry_after(3);
        let mut out = Vec::new();
        resp.encode(&mut out, false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncache-control: no-store\r\nretry-after: 3\r\ncontent-length: "
        ));
        assert!(text.contains("\r\nconnection: close\r\n\r\n{\"error\":\"rate_limited\""));
        let mut head = Vec::new();
        resp.encode(&mut head, true, false);
        assert!(head.ends_with(b"\r\n\r\n") && !head.windows(5).any(|w| w == b"close"));
    }

    #[test]
    fn a_304_keeps_its_validators_and_drops_body_type_and_length() {
        let etag = Bytes::from_static(b"\"abc\"");
        let resp = Response::new(StatusCode::OK, JSON, "{\"a\":1}")
            .header("etag", HeaderText::Shared(etag))
            .header("cache-control", HeaderText::Static("public, max-age=10"))
            .not_modified();
        assert_eq!(resp.header_value("etag").as_deref(), Some("\"abc\""));
        let mut out = Vec::new();
        resp.encode(&mut out, false, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "HTTP/1.1 304 Not Modified\r\netag: \"abc\"\r\ncache-control: public, max-age=10\r\ndate: "
        ));
        assert!(text.ends_with("GMT\r\n\r\n"), "{text}");
        assert!(!text.contains("content-"));
    }
}
