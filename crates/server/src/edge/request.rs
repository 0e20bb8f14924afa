//! Reading one request head: `httparse` for the syntax, then the framing rules of the public
//! listener (declared lengths only, bodies of at most [`MAX_BODY`] bytes, keep-alive). A
//! [`Request`] borrows from the connection's buffer: no copy, no header map.

use std::mem::MaybeUninit;

use http::StatusCode;

/// Largest request body on the public listener (the search form and challenge answers are far
/// smaller).
pub const MAX_BODY: usize = 1024;
/// Largest body under [`API_BODY_PREFIX`] (the subscription API's batches of tracking numbers):
/// no more than a request head may already take ([`crate::listener::MAX_HEAD_BYTES`]), so a
/// connection's buffer is bounded as before.
pub const MAX_API_BODY: usize = 16 * 1024;
/// The paths whose bodies may reach [`MAX_API_BODY`].
pub const API_BODY_PREFIX: &str = "/v1/webhooks/";

/// One request, borrowed from the connection's buffer.
pub struct Request<'a> {
    pub method: &'a str,
    /// The target's path: without query string or fragment, without scheme and authority
    /// (absolute form). Not decoded.
    pub path: &'a str,
    /// The target's query string, without the `?` and without any fragment (empty when there is
    /// none). Not decoded. Only the Suivi v2 route reads it, for its `lang` parameter.
    pub query: &'a str,
    pub http10: bool,
    headers: &'a [httparse::Header<'a>],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers_named(name).next()
    }

    /// Every value of header `name` (any case), in order.
    pub fn headers_named(&self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// How a parsed request is framed on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub head_len: usize,
    pub body_len: usize,
    pub keep_alive: bool,
    pub head_only: bool,
    pub expect_continue: bool,
}

impl Framing {
    /// Bytes the whole request (head and body) takes in the buffer.
    pub fn request_len(&self) -> usize {
        self.head_len + self.body_len
    }
}

/// Why a head was refused: answered once, then the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Refusal {
        Refusal {
            status,
            code,
            message,
        }
    }
}

const TOO_LARGE_HEAD: Refusal = Refusal::new(
    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    "headers_too_large",
    "the request head is too large or has too many headers",
);

const fn bad(message: &'static str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

const CHUNKED: Refusal = Refusal::new(
    StatusCode::LENGTH_REQUIRED,
    "length_required",
    "public requests must declare their body length (no Transfer-Encoding)",
);

const BAD_EXPECT: Refusal = Refusal::new(
    StatusCode::EXPECTATION_FAILED,
    "expectation_failed",
    "only Expect: 100-continue is understood",
);

const TOO_LARGE_BODY: Refusal = Refusal::new(
    StatusCode::PAYLOAD_TOO_LARGE,
    "payload_too_large",
    "public requests carry at most 1 KiB of body (16 KiB under /v1/webhooks/)",
);

/// What the headers say about framing.
#[derive(Default)]
struct HeaderFacts {
    body_len: Option<usize>,
    close: bool,
    keep_alive_asked: bool,
    expect_continue: bool,
}

/// Reads the framing headers (httparse has checked names are tokens and values have no
/// control characters).
fn header_facts(headers: &[httparse::Header<'_>]) -> Result<HeaderFacts, Refusal> {
    let mut facts = HeaderFacts::default();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(bad("bad Content-Length"))?;
            if facts.body_len.is_some_and(|m| m != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            facts.body_len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(CHUNKED);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                facts.close |= token.eq_ignore_ascii_case(b"close");
                facts.keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !h.value.eq_ignore_ascii_case(b"100-continue") {
                return Err(BAD_EXPECT);
            }
            facts.expect_continue = true;
        }
    }
    Ok(facts)
}

/// Parses the head at the start of `buf` into `slots`: `Ok(None)` when more bytes are needed.
/// The body is whatever of it `buf` holds already (complete when `buf.len() >= framing.request_len()`).
pub fn parse_head<'b>(
    buf: &'b [u8],
    slots: &'b mut [MaybeUninit<httparse::Header<'b>>],
    max_head: usize,
) -> Result<Option<(Request<'b>, Framing)>, Refusal> {
    let mut parsed = httparse::Request::new(&mut []);
    let head_len = match parsed.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) => return Err(TOO_LARGE_HEAD),
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(TOO_LARGE_HEAD),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_LARGE_HEAD),
        Err(_) => return Err(bad("malformed HTTP/1.1 request")),
    };
    let method = parsed.method.unwrap_or_default();
    let http10 = parsed.version == Some(0);
    let facts = header_facts(parsed.headers)?;
    let body_len = facts.body_len.unwrap_or(0);
    let target = parsed.path.unwrap_or_default();
    let path = path_of(target);
    let max_body = if path.starts_with(API_BODY_PREFIX) {
        MAX_API_BODY
    } else {
        MAX_BODY
    };
    if body_len > max_body {
        return Err(TOO_LARGE_BODY);
    }
    let framing = Framing {
        head_len,
        body_len,
        keep_alive: !facts.close && (!http10 || facts.keep_alive_asked),
        head_only: method == "HEAD",
        expect_continue: facts.expect_continue && body_len > 0,
    };
    let body = buf.get(head_len..head_len + body_len).unwrap_or_default();
    let request = Request {
        method,
        path,
        query: query_of(target),
        http10,
        headers: parsed.headers,
        body,
    };
    Ok(Some((request, framing)))
}

/// The path of a request target: origin form (`/p?q`) or absolute form (`http://h/p?q`).
pub fn path_of(target: &str) -> &str {
    let rest = if target.starts_with('/') {
        target
    } else {
        match target.split_once("://") {
            Some((scheme, rest)) if !scheme.contains('/') => {
                rest.find('/').map_or("/", |i| &rest[i..])
            }
            _ => target,
        }
    };
    // A vectorised byte search: `str::find` with a set of chars decodes UTF-8 char by char
    // (~800 instructions a lookup, the largest single cost the reshaping added).
    let end = memchr::memchr2(b'?', b'#', rest.as_bytes()).unwrap_or(rest.len());
    &rest[..end]
}

/// The query string of a request target: what follows the first `?` up to any `#`, borrowed
/// (empty when there is none).
pub fn query_of(target: &str) -> &str {
    let target = &target[..target.find('#').unwrap_or(target.len())];
    target.split_once('?').map_or("", |(_, query)| query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_what_follows_the_question_mark_up_to_a_fragment() {
        assert_eq!(query_of("/suivi/v2/idships/X?lang=en_GB"), "lang=en_GB");
        assert_eq!(query_of("/a?x=1&lang=de_DE#frag"), "x=1&lang=de_DE");
        assert_eq!(query_of("/a?"), "");
        assert_eq!(query_of("/a"), "");
        assert_eq!(
            query_of("/a#f?x=1"),
            "",
            "a ? after the fragment is not a query"
        );
        assert_eq!(query_of("/a?b?c"), "b?c");
        assert_eq!(query_of("http://h/p?q=1"), "q=1");
        for odd in ["", "?", "#", "?#", "\u{0}?\u{ff}", "%3F"] {
            let q = query_of(odd);
            assert!(odd.contains(q) && !q.contains('#'), "{odd:?} → {q:?}");
        }
    }

    #[test]
    fn paths_lose_their_query_string_and_authority() {
        assert_eq!(path_of("/v1/parcels/X?a=1#f"), "/v1/parcels/X");
        assert_eq!(path_of("/a#f?x"), "/a");
        assert_eq!(path_of("http://example.org/track/X?y"), "/track/X");
        assert_eq!(path_of("http://example.org"), "/");
        assert_eq!(path_of("*"), "*");
        assert_eq!(path_of("/x/http://y/z"), "/x/http://y/z");
    }

    #[test]
    fn a_head_is_framed_by_its_headers() {
        let mut slots = [const { MaybeUninit::uninit() }; 8];
        let buf = b"POST /f?q HTTP/1.0\r\nconnection: keep-alive\r\ncontent-length: 3\r\n\r\nab";
        let (req, framing) = parse_head(buf, &mut slots, 1024).unwrap().unwrap();
        assert_eq!((req.method, req.path, req.http10), ("POST", "/f", true));
        assert_eq!(req.query, "q");
        assert_eq!(req.body, b"");
        assert!(framing.keep_alive && !framing.head_only);
        assert_eq!(
            framing.request_len(),
            buf.len() + 1,
            "one body byte still to come"
        );
        let mut slots = [const { MaybeUninit::uninit() }; 8];
        assert!(
            parse_head(b"GET / HTTP/1.1\r\nhost: x\r\n", &mut slots, 1024)
                .unwrap()
                .is_none()
        );
    }
}
