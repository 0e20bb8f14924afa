//! The public listener's HTTP/1.1 connection loop.
//!
//! The public side is where floods land, and most of what a flood gets is a refusal: 429, 404
//! from the existence filter, 400. Each refusal is cheap to decide (well under a microsecond);
//! what it costs is the HTTP machinery around it. hyper is general (streaming bodies, chunked
//! encoding, upgrades) and measured 0.57–0.8× nginx's `limit_req` at refusing on one core
//! (BENCHMARKS.md). The public protocol surface is tiny — GET/HEAD of small resources, and two
//! POSTs with bodies under 1 KiB — so it gets this small loop instead: `httparse` for the head,
//! whole requests buffered (bounded), answers encoded into one buffer and written with one
//! `write` per batch of pipelined requests. The ingest listener keeps hyper: bodies of up to
//! 8 MiB, chunked encoding and `Expect: 100-continue` from all kinds of clients matter there.
//!
//! Limits and the refusals of this layer (each answered once, then the connection is closed):
//! - head larger than `max_head` bytes → 431; more than [`MAX_HEADERS`] headers → 431;
//! - malformed head, bad target, conflicting `Content-Length`s → 400;
//! - `Transfer-Encoding` (chunked bodies) → 411: public requests must declare their length;
//! - body over [`MAX_BODY`] → 413;
//! - the head (and body) must arrive within the header timeout, counted from the accept for the
//!   first request and from the request's first byte after that; a keep-alive connection with
//!   nothing to do is closed after the idle timeout, and at shutdown (after finishing what it
//!   has read).

use std::future::Future;
use std::mem::MaybeUninit;
use std::time::{Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::http::{ListenerLimits, MAX_HEAD_BYTES, MAX_HEADERS};
use crate::response::Body;

/// Largest request body on the public listener (the search form and challenge answers are far
/// smaller).
pub const MAX_BODY: usize = 1024;

/// One request, borrowed from the connection's buffer: no copy, no header map.
pub struct Request<'a> {
    pub method: &'a str,
    /// The target's path: without query string or fragment, without scheme and authority
    /// (absolute form). Not decoded.
    pub path: &'a str,
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

/// An answer.
pub enum Reply {
    /// A response with its own headers.
    Full(Box<Response<Body>>),
    /// A JSON error (`content-type: application/json`, `cache-control: no-store`, and
    /// `Retry-After` when given), encoded without building a header map: the refusals a flood
    /// gets most.
    Json {
        status: StatusCode,
        body: Bytes,
        retry_after: Option<u32>,
    },
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        match self {
            Reply::Full(resp) => resp.status(),
            Reply::Json { status, .. } => *status,
        }
    }
}

/// What a service makes of a request without waiting for anything.
pub enum Step<P> {
    Done(Reply),
    /// Needs storage: finished by [`Service::finish`] (the request buffer is released first).
    Pending(P),
}

/// The public side's request handling, split where it has to wait: everything decided from the
/// request's bytes happens in [`Service::prepare`], synchronously.
pub trait Service {
    type Pending: Send;
    fn prepare(&self, req: &Request<'_>) -> Step<Self::Pending>;
    fn finish(&self, pending: Self::Pending) -> impl Future<Output = Reply> + Send;
    /// A request this layer answered itself (malformed or too large).
    fn refused(&self, status: StatusCode);
}

/// How a connection ended (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed, or asked to close.
    Client,
    /// The head or body did not arrive within the header timeout.
    HeaderTimeout,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The node is shutting down.
    Shutdown,
    /// The request was refused as malformed or too large, then the connection closed.
    Refused,
    /// A read or write failed.
    Io,
}

/// Why a head was refused.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
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

/// Framing of a parsed head.
struct Framing {
    head_len: usize,
    body_len: usize,
    keep_alive: bool,
    head_only: bool,
    expect_continue: bool,
}

/// Parses the head at the start of `buf` into `slots`: `Ok(None)` when more bytes are needed.
fn parse_head<'b>(
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
    let mut body_len: Option<usize> = None;
    let mut close = false;
    let mut keep_alive_asked = false;
    let mut expect_continue = false;
    // httparse has checked the names (tokens) and values (no control characters).
    for h in parsed.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or(bad("bad Content-Length"))?;
            if body_len.is_some_and(|m| m != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            body_len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Refusal::new(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "public requests must declare their body length (no Transfer-Encoding)",
            ));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !h.value.eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal::new(
                    StatusCode::EXPECTATION_FAILED,
                    "expectation_failed",
                    "only Expect: 100-continue is understood",
                ));
            }
            expect_continue = true;
        }
    }
    let body_len = body_len.unwrap_or(0);
    if body_len > MAX_BODY {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "public requests carry at most 1 KiB of body",
        ));
    }
    let framing = Framing {
        head_len,
        body_len,
        keep_alive: !close && (!http10 || keep_alive_asked),
        head_only: method == "HEAD",
        expect_continue: expect_continue && body_len > 0,
    };
    let body = buf.get(head_len..head_len + body_len).unwrap_or_default();
    let request = Request {
        method,
        path: path_of(parsed.path.unwrap_or_default()),
        http10,
        headers: parsed.headers,
        body,
    };
    Ok(Some((request, framing)))
}

/// The path of a request target: origin form (`/p?q`) or absolute form (`http://h/p?q`).
fn path_of(target: &str) -> &str {
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
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
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

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Content-Length`, `Date`, `Connection: close` if closing, the blank line, the body.
fn finish_head(out: &mut Vec<u8>, body: &[u8], head_only: bool, close: bool) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(&http_date());
    if close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends one answer to `out`. `Content-Length`, `Date` and `Connection` are set here (a
/// handler's own are dropped).
fn encode(out: &mut Vec<u8>, reply: Reply, head_only: bool, close: bool) {
    match reply {
        Reply::Full(resp) => {
            let (parts, body) = (*resp).into_parts();
            let body = full_bytes(body);
            status_line(out, parts.status);
            for (name, value) in &parts.headers {
                if name == hyper::header::CONTENT_LENGTH
                    || name == hyper::header::DATE
                    || name == hyper::header::CONNECTION
                {
                    continue;
                }
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            finish_head(out, &body, head_only, close);
        }
        Reply::Json {
            status,
            body,
            retry_after,
        } => {
            status_line(out, status);
            out.extend_from_slice(b"content-type: application/json\r\ncache-control: no-store\r\n");
            if let Some(seconds) = retry_after {
                out.extend_from_slice(b"retry-after: ");
                out.extend_from_slice(itoa::Buffer::new().format(seconds).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            finish_head(out, &body, head_only, close);
        }
    }
}

/// The bytes of a `Full` body (it is complete from the start).
fn full_bytes(body: Body) -> Bytes {
    use std::task::{Context, Poll, Waker};
    let mut body = std::pin::pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    match hyper::body::Body::poll_frame(body.as_mut(), &mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// After refusing a request, reads (and drops) what the client is still sending for a short
/// while: closing a socket with unread bytes sends a reset, which can destroy the answer before
/// the client reads it. Bounded in bytes and time.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S, within: std::time::Duration) {
    let mut sink = [0u8; 4096];
    let mut left = 64 * 1024usize;
    let _ = tokio::time::timeout(within, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Serves one public connection until the client closes, a limit is hit or the node stops.
pub async fn serve_connection<S, V>(
    mut stream: S,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
    service: &V,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Service,
{
    let max_head = MAX_HEAD_BYTES;
    let mut buf = BytesMut::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut served = 0u64;
    // When the request being read began (the accept, for the first one), once known: the clock
    // is read only when a request turns out incomplete, not for every request.
    let mut request_started = Instant::now();
    let mut request_started_known = true;
    let mut last_answer = request_started;
    let mut continue_sent = false;
    let mut stopping = *shutdown.borrow();
    // One timer and one shutdown subscription per connection, not per read.
    let timer = tokio::time::sleep(limits.header_timeout);
    let mut timer = std::pin::pin!(timer);
    let stop = shutdown.changed();
    let mut stop = std::pin::pin!(stop);
    loop {
        // Answer every complete request already buffered (pipelining), then write once.
        let mut close = false;
        let answered_before = served;
        while !buf.is_empty() {
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let (step, framing) = match parse_head(&buf, &mut slots, max_head) {
                Ok(None) => {
                    if !request_started_known {
                        request_started = Instant::now();
                        request_started_known = true;
                    }
                    break;
                }
                Err(refusal) => {
                    service.refused(refusal.status);
                    let reply = Reply::Json {
                        status: refusal.status,
                        body: crate::response::error_body(refusal.code, refusal.message),
                        retry_after: None,
                    };
                    encode(&mut out, reply, false, true);
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                    linger(&mut stream, limits.header_timeout).await;
                    return Ended::Refused;
                }
                Ok(Some((request, framing))) => {
                    if buf.len() < framing.head_len + framing.body_len {
                        if framing.expect_continue && !continue_sent {
                            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                            continue_sent = true;
                        }
                        if !request_started_known {
                            request_started = Instant::now();
                            request_started_known = true;
                        }
                        break;
                    }
                    (service.prepare(&request), framing)
                }
            };
            continue_sent = false;
            buf.advance(framing.head_len + framing.body_len);
            let reply = match step {
                Step::Done(reply) => reply,
                Step::Pending(pending) => service.finish(pending).await,
            };
            close = !framing.keep_alive || stopping;
            encode(&mut out, reply, framing.head_only, close);
            served += 1;
            request_started_known = false;
            if close {
                break;
            }
        }
        if served > answered_before {
            last_answer = Instant::now();
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return Ended::Io;
            }
            out.clear();
        }
        if close {
            let _ = stream.shutdown().await;
            return Ended::Client;
        }
        let idle = buf.is_empty() && served > 0;
        if idle && stopping {
            let _ = stream.shutdown().await;
            return Ended::Shutdown;
        }
        // Read more, under the deadline that applies now. The timer is moved forward only when
        // it fires early (the deadline moved on since it was set), and back when the deadline
        // is earlier than it: not once per request.
        buf.reserve(4096);
        let read = loop {
            let deadline = if idle {
                last_answer + limits.idle_timeout
            } else {
                request_started + limits.header_timeout
            };
            if tokio::time::Instant::from_std(deadline) < timer.deadline() {
                timer.as_mut().reset(deadline.into());
            }
            tokio::select! {
                biased;
                read = stream.read_buf(&mut buf) => break read,
                () = &mut timer => {
                    if Instant::now() >= deadline {
                        let _ = stream.shutdown().await;
                        return if idle { Ended::Idle } else { Ended::HeaderTimeout };
                    }
                    timer.as_mut().reset(deadline.into());
                }
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    if idle {
                        let _ = stream.shutdown().await;
                        return Ended::Shutdown;
                    }
                }
            }
        };
        match read {
            Ok(0) => return Ended::Client,
            Ok(_) => {}
            Err(_) => return Ended::Io,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> ListenerLimits {
        ListenerLimits {
            max_connections: 8,
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(400),
            shutdown_grace: Duration::from_millis(100),
        }
    }

    /// Echoes method, path, a header and the body, so tests can see what the service got;
    /// paths under `/wait` go through `finish` (as storage lookups do).
    #[derive(Default)]
    struct Echo {
        refused: Mutex<Vec<u16>>,
    }

    impl Service for Echo {
        type Pending = String;

        fn prepare(&self, req: &Request<'_>) -> Step<String> {
            let text = format!(
                "{} {} x={} body={}",
                req.method,
                req.path,
                String::from_utf8_lossy(req.header("X-Test").unwrap_or_default()),
                String::from_utf8_lossy(req.body)
            );
            if req.path.starts_with("/wait") {
                Step::Pending(text)
            } else {
                Step::Done(Reply::Full(Box::new(crate::response::with_body(
                    StatusCode::OK,
                    crate::response::TEXT,
                    text,
                ))))
            }
        }

        async fn finish(&self, text: String) -> Reply {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Reply::Json {
                status: StatusCode::OK,
                body: text.into(),
                retry_after: Some(7),
            }
        }

        fn refused(&self, status: StatusCode) {
            self.refused.lock().unwrap().push(status.as_u16());
        }
    }

    /// Runs a connection over an in-memory pipe: sends `chunks` (with `pause` between them),
    /// optionally closes its side, then reads until the server closes. Returns what came back,
    /// how the connection ended and what the layer refused.
    async fn exchange(
        chunks: &[&[u8]],
        pause: Duration,
        close_after: bool,
    ) -> (String, Ended, Vec<u16>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let conn = serve_connection(server, limits(), stop_rx, &echo);
        let client_side = async move {
            let mut client = client;
            for chunk in chunks {
                if client.write_all(chunk).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            if close_after {
                let _ = client.shutdown().await;
            }
            let mut reply = Vec::new();
            let _ = client.read_to_end(&mut reply).await;
            String::from_utf8_lossy(&reply).into_owned()
        };
        let (ended, reply) = tokio::join!(conn, client_side);
        (reply, ended, echo.refused.into_inner().unwrap())
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

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let (reply, ended, refused) = exchange(
            &[b"GET /a?q=1 HTTP/1.1\r\nhost: x\r\nx-test: 1\r\n\r\nHEAD /b HTTP/1.1\r\nhost: x\r\n\r\nPOST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhelloGET /wait HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\nconnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n"],
            Duration::ZERO,
            false,
        )
        .await;
        assert_eq!(ended, Ended::Client);
        assert!(refused.is_empty());
        let answers: Vec<&str> = reply.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 5, "{reply}");
        assert!(
            answers[0].starts_with("200 OK\r\n")
                && answers[0].ends_with("\r\n\r\nGET /a x=1 body="),
            "{}",
            answers[0]
        );
        assert!(answers[0].contains("\r\ndate: ") && !answers[0].contains("connection: close"));
        // HEAD: the length of the body it would have, and no body.
        assert!(answers[1].contains("content-length: 16\r\n") && answers[1].ends_with("\r\n\r\n"));
        assert!(answers[2].ends_with("POST /c x= body=hello"));
        assert!(
            answers[3].contains("retry-after: 7\r\n") && answers[3].ends_with("GET /wait x= body=")
        );
        assert!(
            answers[3].contains("content-type: application/json\r\ncache-control: no-store\r\n")
        );
        // Nothing after `connection: close` is served.
        assert!(
            answers[4].contains("connection: close\r\n") && answers[4].ends_with("GET /d x= body=")
        );
    }

    #[tokio::test]
    async fn a_request_split_byte_by_byte_is_served_within_the_timeout() {
        let request = b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        let chunks: Vec<&[u8]> = request.chunks(1).collect();
        let (reply, ended, _) = exchange(&chunks, Duration::from_millis(1), false).await;
        assert_eq!(ended, Ended::Client);
        assert!(reply.ends_with("GET /slow x= body="), "{reply}");
    }

    #[tokio::test]
    async fn a_head_that_does_not_arrive_in_time_is_cut_off() {
        let started = Instant::now();
        let (reply, ended, _) = exchange(
            &[
                b"GET /slow HTTP/1.1\r\n",
                b"host: x\r\n",
                b"x-a: 1\r\n",
                b"x-b: 1\r\n",
            ],
            Duration::from_millis(120),
            false,
        )
        .await;
        assert_eq!(ended, Ended::HeaderTimeout);
        assert!(reply.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// On a keep-alive connection, a second request's head gets the header timeout from its
    /// first byte, not the (longer) idle timeout.
    #[tokio::test]
    async fn a_slow_second_head_is_cut_off_at_the_header_timeout() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let limits = ListenerLimits {
            idle_timeout: Duration::from_secs(30),
            ..limits()
        };
        let conn = serve_connection(server, limits, stop_rx, &echo);
        let client_side = async move {
            let mut client = client;
            client.write_all(b"GET /a HTTP/1.1\r\n\r\n").await.unwrap();
            let mut first = [0u8; 256];
            let _ = client.read(&mut first).await;
            // Longer than the header timeout: the connection's timer now waits for the idle one.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let started = Instant::now();
            client.write_all(b"GET /b HT").await.unwrap();
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
            started.elapsed()
        };
        let (ended, took) = tokio::join!(conn, client_side);
        assert_eq!(ended, Ended::HeaderTimeout);
        assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_cut_off() {
        let (reply, ended, _) = exchange(
            &[b"POST /f HTTP/1.1\r\ncontent-length: 10\r\n\r\nabc", b"def"],
            Duration::from_millis(300),
            false,
        )
        .await;
        assert_eq!(ended, Ended::HeaderTimeout);
        assert!(reply.is_empty());
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let (reply, ended, _) =
            exchange(&[b"GET /a HTTP/1.1\r\n\r\n"], Duration::ZERO, false).await;
        assert_eq!(ended, Ended::Idle);
        assert!(reply.ends_with("GET /a x= body="));
    }

    #[tokio::test]
    async fn shutdown_closes_idle_connections_after_their_answer() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let conn = serve_connection(server, limits(), stop_rx, &echo);
        let client_side = async move {
            let mut client = client;
            client.write_all(b"GET /a HTTP/1.1\r\n\r\n").await.unwrap();
            let mut first = [0u8; 64];
            let _ = client.read(&mut first).await;
            stop_tx.send(true).unwrap();
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
        };
        let (ended, ()) = tokio::join!(conn, client_side);
        assert_eq!(ended, Ended::Shutdown);
    }

    #[tokio::test]
    async fn http_10_closes_unless_asked_to_keep_alive() {
        let (reply, ended, _) =
            exchange(&[b"GET /a HTTP/1.0\r\n\r\n"], Duration::ZERO, false).await;
        assert_eq!(ended, Ended::Client);
        assert!(reply.contains("connection: close"));
        let (reply, _, _) = exchange(
            &[b"GET /a HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"],
            Duration::ZERO,
            false,
        )
        .await;
        assert_eq!(reply.matches("200 OK").count(), 2, "{reply}");
    }

    #[tokio::test]
    async fn expect_continue_gets_an_interim_answer() {
        let (reply, _, _) = exchange(
            &[
                b"POST /f HTTP/1.1\r\ncontent-length: 3\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
                b"n=1",
            ],
            Duration::from_millis(20),
            false,
        )
        .await;
        assert!(
            reply.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
            "{reply}"
        );
        assert!(reply.ends_with("body=n=1"));
    }

    /// Each hostile head gets its status once, then the connection closes; nothing reaches the
    /// service.
    #[tokio::test]
    async fn hostile_heads_are_refused_and_the_connection_closed() {
        let huge_header = format!(
            "GET / HTTP/1.1\r\nx: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let many_headers = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..MAX_HEADERS + 1)
                .map(|i| format!("x-{i}: 1\r\n"))
                .collect::<String>()
        );
        let endless_head = "GET / HTTP/1.1\r\nx: ".to_owned() + &"a".repeat(MAX_HEAD_BYTES + 10);
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (huge_header.into_bytes(), 431),
            (many_headers.into_bytes(), 431),
            (endless_head.into_bytes(), 431),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 400),
            (b"\x00\x01\x02\x03\r\n\r\n".to_vec(), 400),
            (b"GET /\x7f HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET /\xff\xfe HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nx: a\rb\r\n\r\n".to_vec(), 400),
            (b"G(T / HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nbad header\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nx: \x01\r\n\r\n".to_vec(), 400),
            (
                b"POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 1x\r\n\r\n".to_vec(),
                400,
            ),
            (b"POST / HTTP/1.1\r\ncontent-length: \r\n\r\n".to_vec(), 400),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 99999999999999999999999\r\n\r\n".to_vec(),
                400,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(),
                400,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 1025\r\n\r\n".to_vec(),
                413,
            ),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                    .to_vec(),
                411,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_vec(),
                411,
            ),
            (
                b"POST / HTTP/1.1\r\ncontent-length: 3\r\nexpect: magic\r\n\r\nabc".to_vec(),
                417,
            ),
        ];
        for (bytes, status) in cases {
            let (reply, ended, refused) = exchange(&[&bytes], Duration::ZERO, false).await;
            let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
            assert_eq!(ended, Ended::Refused, "{shown}");
            assert_eq!(refused, vec![status], "{shown}");
            assert!(
                reply.starts_with(&format!("HTTP/1.1 {status} ")),
                "{shown}: {reply}"
            );
            assert!(
                reply.contains("connection: close") && !reply.contains(" body="),
                "{shown}"
            );
        }
    }

    /// Random bytes, random splits: the loop never panics, and every connection ends (answered,
    /// refused, or closed by the client).
    #[tokio::test]
    async fn random_bytes_never_panic_or_hang() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"GET POST HEAD / HTTP/1.1\r\n:content-length: 0123456789 expect transfer-encoding chunked connection close \x00\xff";
        for _ in 0..500 {
            let len = (next() % 400) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % 4 == 0 {
                        next() as u8
                    } else {
                        alphabet[(next() % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let cut = if bytes.is_empty() {
                0
            } else {
                (next() as usize) % bytes.len()
            };
            let (a, b) = bytes.split_at(cut);
            let (_, ended, _) = exchange(&[a, b], Duration::ZERO, true).await;
            assert!(matches!(ended, Ended::Client | Ended::Refused | Ended::Io));
        }
    }
}
