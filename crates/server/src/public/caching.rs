//! HTTP caching and page safety on the public listener: which `Cache-Control` each answer gets,
//! strong `ETag`s and `304 Not Modified`, `Vary`, and the security headers of every page.
//! docs/cdn.md says what a CDN in front may keep and for how long.
//!
//! Every header value here is static text or an entity tag built once (a cached parcel's), so a
//! hot JSON lookup adds no allocation.

use bytes::Bytes;
use http::StatusCode;
use smallvec::SmallVec;

use crate::edge::{HeaderText, Request, Response};

/// Lookups that found a parcel (JSON, pages, Suivi v2): fresh for 10 s, then served stale while
/// revalidating for a minute, and for a day while the origin fails (RFC 5861): a CDN keeps
/// answering customers during an attack that makes the node shed.
pub const LOOKUP: &str = "public, max-age=10, stale-while-revalidate=60, stale-if-error=86400";
/// The home page (its suggestions change only when the node restarts).
pub const HOME: &str = "public, max-age=300";
/// Fixed documents (`/openapi.json`).
pub const DOCUMENT: &str = "public, max-age=3600";
/// Refusals, errors, redirects of the search form, health checks and anything carrying a
/// cookie: never stored.
pub const NO_STORE: &str = "no-store";

/// `Referrer-Policy` of every page (the pages also say so in a `<meta>`).
pub const REFERRER_POLICY: &str = "no-referrer";

/// Longest `If-None-Match` read; a longer one is ignored (the full answer is sent).
pub const MAX_IF_NONE_MATCH: usize = 1024;
/// Bytes of `If-None-Match` kept inline (a browser sends one tag of 26 bytes).
const INLINE_IF_NONE_MATCH: usize = 64;

/// What a request says it already has (`If-None-Match`), copied out of the connection's buffer
/// so that it can wait for storage with the lookup. Inline up to 64 bytes.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    if_none_match: Option<SmallVec<[u8; INLINE_IF_NONE_MATCH]>>,
}

impl Validators {
    /// The validators of a `GET` or `HEAD` (other methods are never answered 304).
    pub fn of(req: &Request<'_>) -> Validators {
        let get = matches!(req.method, "GET" | "HEAD");
        Validators {
            if_none_match: req
                .header("if-none-match")
                .filter(|v| get && v.len() <= MAX_IF_NONE_MATCH)
                .map(SmallVec::from_slice),
        }
    }

    /// Whether the client's copy is current: `If-None-Match` is `*` or lists `etag` (weak
    /// comparison, RFC 9110 §13.1.2: a `W/` prefix does not matter).
    pub fn matches(&self, etag: &[u8]) -> bool {
        let Some(header) = &self.if_none_match else {
            return false;
        };
        header.split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == etag
        })
    }
}

/// A found answer: `Cache-Control: policy`, its strong `ETag`, `Vary: Accept-Language` when the
/// language came from that header, and `304` (same headers, no body) when the client has it.
pub fn cacheable(
    response: Response,
    policy: &'static str,
    etag: Bytes,
    vary_language: bool,
    validators: &Validators,
) -> Response {
    let fresh = validators.matches(&etag);
    let response = response
        .header("cache-control", HeaderText::Static(policy))
        .header("etag", HeaderText::Shared(etag));
    let response = if vary_language {
        response.header("vary", HeaderText::Static("Accept-Language"))
    } else {
        response
    };
    if fresh {
        response.not_modified()
    } else {
        response
    }
}

/// An answer no cache may keep.
pub fn no_store(response: Response) -> Response {
    response.header("cache-control", HeaderText::Static(NO_STORE))
}

/// The headers every HTML page carries: its `Content-Security-Policy` (scripts and styles by
/// hash, `frame-ancestors 'none'`), `X-Content-Type-Options` and `Referrer-Policy`.
pub fn page_safety(response: Response) -> Response {
    response
        .header(
            "content-security-policy",
            HeaderText::Static(rempart_views::html::CONTENT_SECURITY_POLICY),
        )
        .header("x-content-type-options", HeaderText::Static("nosniff"))
        .header("referrer-policy", HeaderText::Static(REFERRER_POLICY))
}

/// A page answer that must not be stored (not found, not a number, busy, the check page).
pub fn uncached_page(status: StatusCode, body: String) -> Response {
    page_safety(no_store(Response::new(status, crate::content::HTML, body)))
}

/// A page answer that may be stored: its `ETag` is the hash of the page.
pub fn cached_page(
    body: String,
    policy: &'static str,
    vary_language: bool,
    validators: &Validators,
) -> Response {
    let body = Bytes::from(body);
    let etag = crate::content::strong_etag(&body);
    let response = Response::new(StatusCode::OK, crate::content::HTML, body);
    cacheable(
        page_safety(response),
        policy,
        etag,
        vary_language,
        validators,
    )
}

/// Whether the client reached the node over TLS: the configured public URL is `https://`, or a
/// proxy in front says so in `X-Forwarded-Proto` (a client forging it only makes its own cookie
/// `Secure`, which then never travels over plain HTTP: no one else is affected).
pub fn over_tls(req: &Request<'_>, public_https: bool) -> bool {
    public_https
        || req
            .header("x-forwarded-proto")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators(header: &[u8]) -> Validators {
        Validators {
            if_none_match: Some(SmallVec::from_slice(header)),
        }
    }

    #[test]
    fn if_none_match_lists_star_and_weak_tags_match() {
        let etag = b"\"0123abcd\"";
        assert!(validators(b"\"0123abcd\"").matches(etag));
        assert!(validators(b"W/\"0123abcd\"").matches(etag));
        assert!(validators(b"\"x\", \"0123abcd\"").matches(etag));
        assert!(validators(b"*").matches(etag));
        assert!(!validators(b"\"0123abcd").matches(etag));
        assert!(!validators(b"0123abcd").matches(etag));
        assert!(!validators(b"\"0123abce\"").matches(etag));
        assert!(!validators(b"").matches(etag));
        assert!(!validators(b",,,\xff").matches(etag));
        assert!(!Validators::default().matches(etag));
    }

    #[test]
    fn a_matching_tag_answers_304_with_the_same_headers() {
        let etag = Bytes::from_static(b"\"t\"");
        let ok = Response::new(StatusCode::OK, crate::content::JSON, "{}");
        let full = cacheable(
            ok.clone(),
            LOOKUP,
            etag.clone(),
            true,
            &validators(b"\"u\""),
        );
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(full.header_value("cache-control").as_deref(), Some(LOOKUP));
        assert_eq!(full.header_value("etag").as_deref(), Some("\"t\""));
        assert_eq!(
            full.header_value("vary").as_deref(),
            Some("Accept-Language")
        );
        let fresh = cacheable(ok, LOOKUP, etag, false, &validators(b"\"t\""));
        assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED);
        assert!(fresh.body().is_empty());
        assert_eq!(fresh.header_value("etag").as_deref(), Some("\"t\""));
        assert_eq!(fresh.header_value("vary"), None);
    }

    #[test]
    fn tls_is_the_configured_url_or_what_a_proxy_says() {
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; 8];
        let raw = b"GET / HTTP/1.1\r\nx-forwarded-proto:  HTTPS \r\n\r\n";
        let (proxied, _) = crate::edge::parse_head(raw, &mut slots, 1024)
            .unwrap()
            .unwrap();
        assert!(over_tls(&proxied, false));
        let mut slots = [const { std::mem::MaybeUninit::uninit() }; 8];
        let raw = b"GET / HTTP/1.1\r\nx-forwarded-proto: http\r\n\r\n";
        let (plain, _) = crate::edge::parse_head(raw, &mut slots, 1024)
            .unwrap()
            .unwrap();
        assert!(!over_tls(&plain, false));
        assert!(over_tls(&plain, true));
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let page = uncached_page(StatusCode::NOT_FOUND, "<p>x</p>".into());
        assert_eq!(
            page.header_value("cache-control").as_deref(),
            Some(NO_STORE)
        );
        let csp = page.header_value("content-security-policy").unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
        assert_eq!(
            page.header_value("x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(
            page.header_value("referrer-policy").as_deref(),
            Some("no-referrer")
        );
    }
}
