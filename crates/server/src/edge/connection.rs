//! The public listener's connection loop: reads requests into a bounded buffer, answers every
//! complete request it holds (pipelining, at most [`MAX_ANSWERS_PER_TURN`] before letting other
//! connections run) with one write, and enforces the connection's deadlines. It knows nothing
//! of parcels: a [`Service`] decides each answer, and after each answer whether the connection
//! goes on, is closed (it keeps earning refusals) or is handed over (to the priority runtime).
//!
//! Deadlines: the head (and body) must arrive within the header timeout, counted from the
//! accept for the first request and from the request's first byte after that; a keep-alive
//! connection with nothing to do is closed after the idle timeout, and at shutdown (after
//! finishing what it has read). Until its first head is complete, a connection may be evicted
//! to make room for a newcomer (`listener/seats.rs`). A framing refusal (`request.rs`) is
//! answered once, then the connection is closed after a bounded lingering read.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::request::{Framing, Refusal, Request, parse_head};
use super::response::Response;
use crate::listener::{ListenerLimits, MAX_HEAD_BYTES, MAX_HEADERS, Seat};

/// Bytes read from the socket at a time.
pub const READ_CHUNK: usize = 4096;
/// Most bytes read and dropped after a refusal before closing.
const LINGER_BYTES: usize = 64 * 1024;
/// Most pipelined requests answered before other connections get a turn.
pub const MAX_ANSWERS_PER_TURN: u32 = 16;

/// What a service makes of a request without waiting for anything.
// Responses are moved, never boxed: answering a refusal must not allocate.
#[allow(clippy::large_enum_variant)]
pub enum Step<P> {
    Done(Response),
    /// Needs storage: finished by [`Service::finish`] (the request buffer is released first).
    Pending(P),
}

/// What becomes of the connection after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// Close after this answer (`connection: close`).
    Close,
    /// Stop serving here once what is buffered is answered; the caller serves the connection
    /// elsewhere (the client proved itself: see `crate::public`).
    Handoff,
}

/// The public side's request handling, split where it has to wait: everything decided from the
/// request's bytes happens in [`Service::prepare`], synchronously.
pub trait Service {
    type Pending: Send;
    /// `arrived`: when the request's first bytes were read (the accept, for a connection's
    /// first request), so that its latency includes the time it waited for this connection.
    fn prepare(&self, req: &Request<'_>, arrived: Instant) -> Step<Self::Pending>;
    fn finish(&self, pending: Self::Pending) -> impl Future<Output = Response> + Send;
    /// After each answer: what becomes of the connection.
    fn answered(&self, status: StatusCode) -> Next;
    /// A request this layer answered itself (malformed or too large).
    fn refused(&self, status: StatusCode);
}

/// How a connection ended (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed, or asked to close.
    Client,
    /// The service closed it (it kept earning refusals).
    Cut,
    /// The service asked to serve it elsewhere; the stream and buffer are the caller's again.
    Handoff,
    /// The head or body did not arrive within the header timeout.
    HeaderTimeout,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// A newcomer took its seat before it completed a head.
    Evicted,
    /// The node is shutting down.
    Shutdown,
    /// The request was refused as malformed or too large, then the connection closed.
    Refused,
    /// A read or write failed.
    Io,
}

/// What a connection starts with.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// When the listener accepted it.
    pub accepted: Instant,
    pub limits: ListenerLimits,
    /// Its seat under the listener's cap, settled at its first answer below 400 if `settles`.
    pub seat: Option<&'a Seat>,
    /// Whether being served settles the seat. The public side says no on the open runtime:
    /// a connection there has not proved itself, whatever it was served (a flood of real
    /// numbers is served 200s), so it stays evictable; it settles once proven.
    pub settles: bool,
}

/// Serves one public connection until the client closes, a limit is hit, the service hands it
/// over or the node stops. `buf` holds what was read and not yet answered, in and out.
pub async fn serve_connection<S, V>(
    stream: &mut S,
    buf: &mut BytesMut,
    setup: Setup<'_>,
    mut shutdown: watch::Receiver<bool>,
    service: &V,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
    V: Service,
{
    let mut conn = Connection::new(stream, buf, setup, *shutdown.borrow());
    // One timer and one shutdown subscription per connection, not per read.
    let timer = std::pin::pin!(tokio::time::sleep(setup.limits.header_timeout));
    let stop = std::pin::pin!(shutdown.changed());
    let mut waits = Waits { timer, stop };
    loop {
        let turn = match conn.answer_buffered(service).await {
            Ok(turn) => turn,
            Err(ended) => return ended,
        };
        if let Some(ended) = conn.flush(turn).await {
            return ended;
        }
        if turn == Turn::Yield {
            tokio::task::yield_now().await;
            continue;
        }
        if let Err(ended) = conn.read_more(&mut waits).await {
            return ended;
        }
    }
}

/// How a round of answering ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Everything complete was answered; read more.
    Read,
    /// The budget of the turn is spent and more is buffered: let others run, then go on.
    Yield,
    /// Close after writing (the client or the service asked).
    Close,
    /// The service asked for a handoff after writing.
    Handoff,
}

/// The timer of the deadline that applies now, and the shutdown signal.
struct Waits<'a, F> {
    timer: Pin<&'a mut Sleep>,
    stop: Pin<&'a mut F>,
}

/// One connection's state between reads.
struct Connection<'c, S> {
    stream: &'c mut S,
    buf: &'c mut BytesMut,
    limits: ListenerLimits,
    seat: Option<&'c Seat>,
    settles: bool,
    out: Vec<u8>,
    served: u64,
    /// When the request being read began (the accept, for the first one), once known: the
    /// clock is read only when a request turns out incomplete, not for every request.
    request_started: Instant,
    request_started_known: bool,
    /// When the bytes at the start of the buffer were read (the accept, for the first request).
    arrived: Instant,
    last_answer: Instant,
    continue_sent: bool,
    stopping: bool,
}

impl<'c, S: AsyncRead + AsyncWrite + Unpin> Connection<'c, S> {
    fn new(stream: &'c mut S, buf: &'c mut BytesMut, setup: Setup<'c>, stopping: bool) -> Self {
        let now = Instant::now();
        Connection {
            stream,
            buf,
            limits: setup.limits,
            seat: setup.seat,
            settles: setup.settles,
            out: Vec::with_capacity(READ_CHUNK),
            served: 0,
            request_started: setup.accepted,
            request_started_known: true,
            arrived: setup.accepted,
            last_answer: now,
            continue_sent: false,
            stopping,
        }
    }

    fn note_request_start(&mut self) {
        if !self.request_started_known {
            self.request_started = Instant::now();
            self.request_started_known = true;
        }
    }

    /// Answers the complete requests buffered, into `out`, at most [`MAX_ANSWERS_PER_TURN`];
    /// `Err` when a refusal ended the connection.
    async fn answer_buffered<V: Service>(&mut self, service: &V) -> Result<Turn, Ended> {
        let answered_before = self.served;
        let mut turn = Turn::Read;
        while !self.buf.is_empty() {
            if self.served - answered_before == u64::from(MAX_ANSWERS_PER_TURN) {
                turn = Turn::Yield;
                break;
            }
            let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let (step, framing) = match parse_head(self.buf, &mut slots, MAX_HEAD_BYTES) {
                Ok(None) => {
                    self.note_request_start();
                    break;
                }
                Err(refusal) => return Err(self.refuse(service, refusal).await),
                Ok(Some((request, framing))) => {
                    if self.buf.len() < framing.request_len() {
                        self.await_body(framing);
                        break;
                    }
                    (service.prepare(&request, self.arrived), framing)
                }
            };
            self.continue_sent = false;
            self.buf.advance(framing.request_len());
            let response = match step {
                Step::Done(response) => response,
                Step::Pending(pending) => service.finish(pending).await,
            };
            // A connection settles (is never evicted) once it was *served*, not merely once it
            // sent a head: a flood of unknown numbers completes heads too, and its connections
            // would then fill the cap for good and keep customers out.
            if let Some(seat) = self
                .seat
                .filter(|_| self.settles && response.status().as_u16() < 400)
            {
                seat.settle();
            }
            let next = service.answered(response.status());
            let close = !framing.keep_alive || self.stopping || next == Next::Close;
            response.encode(&mut self.out, framing.head_only, close);
            self.served += 1;
            self.request_started_known = false;
            if close {
                turn = Turn::Close;
                if next == Next::Close && framing.keep_alive && !self.stopping {
                    return self.cut().await;
                }
                break;
            }
            if next == Next::Handoff {
                turn = Turn::Handoff;
                break;
            }
        }
        if self.served > answered_before {
            self.last_answer = Instant::now();
        }
        Ok(turn)
    }

    /// Writes the answers so far and closes: the service cut the connection.
    async fn cut(&mut self) -> Result<Turn, Ended> {
        let _ = self.stream.write_all(&self.out).await;
        self.out.clear();
        let _ = self.stream.shutdown().await;
        Err(Ended::Cut)
    }

    /// A head arrived, its body not yet: answer `100 Continue` once if asked.
    fn await_body(&mut self, framing: Framing) {
        if framing.expect_continue && !self.continue_sent {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            self.continue_sent = true;
        }
        self.note_request_start();
    }

    /// Answers a framing refusal, closes, and reads what the client still sends for a while:
    /// closing a socket with unread bytes sends a reset, which can destroy the answer before
    /// the client reads it. Bounded in bytes and time.
    async fn refuse<V: Service>(&mut self, service: &V, refusal: Refusal) -> Ended {
        service.refused(refusal.status);
        Response::error(refusal.status, refusal.code, refusal.message).encode(
            &mut self.out,
            false,
            true,
        );
        let _ = self.stream.write_all(&self.out).await;
        let _ = self.stream.shutdown().await;
        let mut sink = [0u8; READ_CHUNK];
        let mut left = LINGER_BYTES;
        let stream = &mut *self.stream;
        let _ = tokio::time::timeout(self.limits.header_timeout, async {
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
        Ended::Refused
    }

    /// Writes what was answered; `Some` when the connection ends here.
    async fn flush(&mut self, turn: Turn) -> Option<Ended> {
        if !self.out.is_empty() {
            if self.stream.write_all(&self.out).await.is_err() {
                return Some(Ended::Io);
            }
            self.out.clear();
        }
        match turn {
            Turn::Close => {
                let _ = self.stream.shutdown().await;
                return Some(Ended::Client);
            }
            Turn::Handoff => return Some(Ended::Handoff),
            Turn::Read | Turn::Yield => {}
        }
        if self.idle() && self.stopping {
            let _ = self.stream.shutdown().await;
            return Some(Ended::Shutdown);
        }
        None
    }

    /// Nothing buffered after at least one answer: waiting for the next request.
    fn idle(&self) -> bool {
        self.buf.is_empty() && self.served > 0
    }

    /// The deadline that applies now: idle timeout between requests, header timeout within one.
    fn deadline(&self) -> Instant {
        if self.idle() {
            self.last_answer + self.limits.idle_timeout
        } else {
            self.request_started + self.limits.header_timeout
        }
    }

    /// Reads more, under the deadline that applies now. The timer is moved forward only when
    /// it fires early (the deadline moved on since it was set), and back when the deadline is
    /// earlier than it: not once per request.
    async fn read_more<F: Future>(&mut self, waits: &mut Waits<'_, F>) -> Result<(), Ended> {
        self.buf.reserve(READ_CHUNK);
        let idle = self.idle();
        let was_empty = self.buf.is_empty();
        let seat = self.seat.filter(|s| !s.is_settled());
        let read = loop {
            let deadline = self.deadline();
            if tokio::time::Instant::from_std(deadline) < waits.timer.deadline() {
                waits.timer.as_mut().reset(deadline.into());
            }
            tokio::select! {
                biased;
                read = self.stream.read_buf(self.buf) => break read,
                () = waits.timer.as_mut() => {
                    if Instant::now() >= deadline {
                        let _ = self.stream.shutdown().await;
                        return Err(if idle { Ended::Idle } else { Ended::HeaderTimeout });
                    }
                    waits.timer.as_mut().reset(deadline.into());
                }
                () = async { if let Some(seat) = seat { seat.evicted().await } else { std::future::pending().await } } => {
                    let _ = self.stream.shutdown().await;
                    return Err(Ended::Evicted);
                }
                _ = waits.stop.as_mut(), if !self.stopping => {
                    self.stopping = true;
                    if idle {
                        let _ = self.stream.shutdown().await;
                        return Err(Ended::Shutdown);
                    }
                }
            }
        };
        match read {
            Ok(0) => Err(Ended::Client),
            Ok(_) => {
                if was_empty && self.served > 0 {
                    self.arrived = Instant::now();
                }
                Ok(())
            }
            Err(_) => Err(Ended::Io),
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
            max_unsettled: 8,
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(400),
            shutdown_grace: Duration::from_millis(100),
        }
    }

    /// Echoes method, path, a header and the body, so tests can see what the service got;
    /// paths under `/wait` go through `finish` (as storage lookups do).
    struct Echo {
        refused: Mutex<Vec<u16>>,
        next: Mutex<Next>,
    }

    impl Default for Echo {
        fn default() -> Self {
            Echo {
                refused: Mutex::new(Vec::new()),
                next: Mutex::new(Next::Continue),
            }
        }
    }

    impl Service for Echo {
        type Pending = String;

        fn prepare(&self, req: &Request<'_>, _arrived: Instant) -> Step<String> {
            let text = format!(
                "{} {} x={} body={}",
                req.method,
                req.path,
                String::from_utf8_lossy(req.header("X-Test").unwrap_or_default()),
                String::from_utf8_lossy(req.body)
            );
            if req.path.starts_with("/wait") {
                Step::Pending(text)
            } else if req.path.starts_with("/missing") {
                Step::Done(Response::new(
                    StatusCode::NOT_FOUND,
                    crate::content::TEXT,
                    text,
                ))
            } else {
                Step::Done(Response::new(StatusCode::OK, crate::content::TEXT, text))
            }
        }

        async fn finish(&self, text: String) -> Response {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Response::error_body(StatusCode::OK, text).retry_after(7)
        }

        fn answered(&self, _status: StatusCode) -> Next {
            *self.next.lock().unwrap()
        }

        fn refused(&self, status: StatusCode) {
            self.refused.lock().unwrap().push(status.as_u16());
        }
    }

    /// Serves a connection that it owns, closing it at the end (as the public side does).
    async fn serve_owned<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        setup: Setup<'_>,
        stop: watch::Receiver<bool>,
        echo: &Echo,
    ) -> Ended {
        let mut buf = BytesMut::new();
        serve_connection(&mut stream, &mut buf, setup, stop, echo).await
    }

    fn setup(limits: ListenerLimits) -> Setup<'static> {
        Setup {
            accepted: Instant::now(),
            limits,
            seat: None,
            settles: true,
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
        exchange_with(limits(), chunks, pause, close_after).await
    }

    /// [`exchange`] under other limits.
    async fn exchange_with(
        limits: ListenerLimits,
        chunks: &[&[u8]],
        pause: Duration,
        close_after: bool,
    ) -> (String, Ended, Vec<u16>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let conn = serve_owned(server, setup(limits), stop_rx, &echo);
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
        // A timeout far above what the bytes take, so that a busy machine cannot make it fire.
        let patient = ListenerLimits {
            header_timeout: Duration::from_secs(30),
            ..limits()
        };
        let (reply, ended, _) =
            exchange_with(patient, &chunks, Duration::from_millis(1), false).await;
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
        let conn = serve_owned(server, setup(limits), stop_rx, &echo);
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
        let conn = serve_owned(server, setup(limits()), stop_rx, &echo);
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
        let patient = ListenerLimits {
            header_timeout: Duration::from_secs(30),
            ..limits()
        };
        let (reply, _, _) = exchange_with(
            patient,
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

    /// Many pipelined requests are all answered, in order, a turn at a time.
    #[tokio::test]
    async fn a_long_pipeline_is_answered_in_turns() {
        let mut all = String::new();
        for i in 0..(3 * MAX_ANSWERS_PER_TURN + 1) {
            all.push_str(&format!("GET /r{i} HTTP/1.1\r\n\r\n"));
        }
        all.push_str("GET /last HTTP/1.1\r\nconnection: close\r\n\r\n");
        let (reply, ended, _) = exchange(&[all.as_bytes()], Duration::ZERO, false).await;
        assert_eq!(ended, Ended::Client);
        let paths: Vec<&str> = reply
            .split(" x= body=")
            .filter_map(|a| a.rsplit("GET ").next())
            .filter(|p| p.starts_with('/'))
            .collect();
        assert_eq!(paths.len() as u32, 3 * MAX_ANSWERS_PER_TURN + 2);
        assert_eq!(paths[5], "/r5");
        assert_eq!(*paths.last().unwrap(), "/last");
    }

    /// A service that closes the connection: the answer carries `connection: close`, nothing
    /// after it is served.
    #[tokio::test]
    async fn the_service_can_cut_a_connection() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        *echo.next.lock().unwrap() = Next::Close;
        let conn = serve_owned(server, setup(limits()), stop_rx, &echo);
        let client_side = async move {
            let mut client = client;
            client
                .write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            let mut reply = Vec::new();
            let _ = client.read_to_end(&mut reply).await;
            String::from_utf8_lossy(&reply).into_owned()
        };
        let (ended, reply) = tokio::join!(conn, client_side);
        assert_eq!(ended, Ended::Cut);
        assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
        assert!(reply.contains("connection: close"));
    }

    /// A handoff stops after the answer, leaving the stream and the unanswered bytes to the
    /// caller, which serves the rest elsewhere.
    #[tokio::test]
    async fn a_handed_over_connection_goes_on_where_it_stopped() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        *echo.next.lock().unwrap() = Next::Handoff;
        let mut server = server;
        let mut buf = BytesMut::new();
        let mut client = client;
        client
            .write_all(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let ended = serve_connection(
            &mut server,
            &mut buf,
            setup(limits()),
            stop_rx.clone(),
            &echo,
        )
        .await;
        assert_eq!(ended, Ended::Handoff);
        assert!(
            buf.starts_with(b"GET /b"),
            "the second request waits in the buffer"
        );
        *echo.next.lock().unwrap() = Next::Continue;
        let ended = serve_connection(&mut server, &mut buf, setup(limits()), stop_rx, &echo).await;
        assert_eq!(ended, Ended::Client);
        drop(server);
        let mut reply = Vec::new();
        let _ = client.read_to_end(&mut reply).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.contains("GET /a x= body=") && reply.ends_with("GET /b x= body="),
            "{reply}"
        );
    }

    /// A connection that was only refused stays evictable; once served, it is not.
    #[tokio::test]
    async fn a_connection_settles_when_served_not_when_refused() {
        let seats = crate::listener::Seats::new(4, 4);
        let seat = seats.take().unwrap();
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let mut buf = BytesMut::new();
        let setup = Setup {
            accepted: Instant::now(),
            limits: limits(),
            seat: Some(&seat),
            settles: true,
        };
        let conn = serve_connection(&mut server, &mut buf, setup, stop_rx, &echo);
        let client_side = async {
            client
                .write_all(b"GET /missing HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut answer = [0u8; 12];
            client.read_exact(&mut answer).await.unwrap();
            let refused_then = seat.is_settled();
            client
                .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest).await;
            (answer, refused_then)
        };
        let (_, (answer, refused_then)) = tokio::join!(conn, client_side);
        assert_eq!(&answer, b"HTTP/1.1 404");
        assert!(!refused_then, "a 404 does not settle the connection");
        assert!(seat.is_settled(), "a 200 does");
    }

    /// Where serving does not settle (the public open runtime), even a 200 leaves the
    /// connection evictable.
    #[tokio::test]
    async fn a_connection_that_may_not_settle_stays_evictable() {
        let seats = crate::listener::Seats::new(4, 4);
        let seat = seats.take().unwrap();
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let mut buf = BytesMut::new();
        let setup = Setup {
            accepted: Instant::now(),
            limits: limits(),
            seat: Some(&seat),
            settles: false,
        };
        let conn = serve_connection(&mut server, &mut buf, setup, stop_rx, &echo);
        let client_side = async {
            client
                .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut reply = Vec::new();
            let _ = client.read_to_end(&mut reply).await;
            reply
        };
        let (_, reply) = tokio::join!(conn, client_side);
        assert!(reply.starts_with(b"HTTP/1.1 200"));
        assert!(!seat.is_settled());
    }

    /// A connection that has not completed a head is closed when a newcomer takes its seat; one
    /// that has is not.
    #[tokio::test]
    async fn an_unsettled_connection_is_evicted_for_a_newcomer() {
        let seats = crate::listener::Seats::new(1, 1);
        let seat = seats.take().unwrap();
        let (client, server) = tokio::io::duplex(1 << 16);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let echo = Echo::default();
        let mut server = server;
        let mut buf = BytesMut::new();
        let mut limits = limits();
        limits.header_timeout = Duration::from_secs(30);
        let setup = Setup {
            accepted: Instant::now(),
            limits,
            seat: Some(&seat),
            settles: true,
        };
        let conn = serve_connection(&mut server, &mut buf, setup, stop_rx, &echo);
        let newcomer = async {
            let mut client = client;
            client.write_all(b"GET /slow HT").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let taken = seats.take();
            let mut reply = Vec::new();
            let _ = client.read_to_end(&mut reply).await;
            (taken.is_some(), reply)
        };
        let (ended, (taken, reply)) = tokio::join!(conn, newcomer);
        assert!(taken);
        assert_eq!(ended, Ended::Evicted);
        assert!(reply.is_empty());
        assert!(seat.was_evicted());
    }
}
