//! Webhook receivers for the tests: real HTTP servers on loopback, started by the tests, each
//! checking signatures the way `docs/webhooks.md` tells merchants to.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rempart_push::signing::{self, SigningSecret};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the receiver answers to its n-th request (0-based).
#[derive(Clone)]
pub enum Answer {
    Status(u16),
    /// Waits until the gate opens, then answers 200.
    HoldUntilOpen,
    Redirect(String),
    /// Streams this many bytes of body with this status.
    Huge {
        status: u16,
        bytes: usize,
    },
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery_id: String,
    pub event_id: String,
    pub body: Bytes,
    /// Whether the signature verified with the receiver's secret.
    pub verified: bool,
}

type Behaviour = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

pub struct Receiver {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Received>>>,
    pub requests: Arc<AtomicUsize>,
    pub concurrent_max: Arc<AtomicUsize>,
    /// Body bytes handed to the connection by `Huge` answers.
    pub body_bytes_sent: Arc<AtomicUsize>,
    /// Connections whose serving ended (for the huge-body test to wait on).
    pub connections_done: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
}

impl Receiver {
    pub async fn start(
        secret: SigningSecret,
        behaviour: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (gate, _) = watch::channel(false);
        let receiver = Receiver {
            addr,
            log: Arc::default(),
            requests: Arc::default(),
            concurrent_max: Arc::default(),
            body_bytes_sent: Arc::default(),
            connections_done: Arc::default(),
            gate,
        };
        let ctx = Arc::new(Ctx {
            secret,
            behaviour: Arc::new(behaviour),
            log: receiver.log.clone(),
            requests: receiver.requests.clone(),
            concurrent: AtomicUsize::new(0),
            concurrent_max: receiver.concurrent_max.clone(),
            body_bytes_sent: receiver.body_bytes_sent.clone(),
            gate: receiver.gate.subscribe(),
        });
        let done = receiver.connections_done.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let ctx = ctx.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(ctx.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Lets held requests through.
    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }
}

struct Ctx {
    secret: SigningSecret,
    behaviour: Behaviour,
    log: Arc<Mutex<Vec<Received>>>,
    requests: Arc<AtomicUsize>,
    concurrent: AtomicUsize,
    concurrent_max: Arc<AtomicUsize>,
    body_bytes_sent: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
}

async fn handle(
    ctx: Arc<Ctx>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let n = ctx.requests.fetch_add(1, Ordering::SeqCst);
    let now_in = ctx.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
    ctx.concurrent_max.fetch_max(now_in, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (signature, delivery_id, event_id) = (
        header("rempart-signature"),
        header("rempart-delivery"),
        header("rempart-event"),
    );
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let verified = signing::verify(&signature, &body, &ctx.secret, now).is_ok();
    let answer = (ctx.behaviour)(n);
    if let Answer::HoldUntilOpen = answer {
        let mut gate = ctx.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
    }
    ctx.log.lock().unwrap().push(Received {
        delivery_id,
        event_id,
        body,
        verified,
    });
    ctx.concurrent.fetch_sub(1, Ordering::SeqCst);
    let response = match answer {
        Answer::Status(status) => respond(status, Full::new(Bytes::from_static(b"ok")).boxed()),
        Answer::HoldUntilOpen => respond(200, Full::new(Bytes::new()).boxed()),
        Answer::Redirect(location) => {
            let mut r = respond(302, Full::new(Bytes::new()).boxed());
            r.headers_mut()
                .insert("location", location.parse().unwrap());
            r
        }
        Answer::Huge { status, bytes } => respond(
            status,
            Counting {
                remaining: bytes,
                sent: ctx.body_bytes_sent.clone(),
            }
            .boxed(),
        ),
    };
    Ok(response)
}

fn respond(status: u16, body: BoxBody<Bytes, Infallible>) -> Response<BoxBody<Bytes, Infallible>> {
    let mut r = Response::new(body);
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r
}

/// A body of `remaining` bytes, produced 64 KiB at a time, counting what hyper took.
struct Counting {
    remaining: usize,
    sent: Arc<AtomicUsize>,
}

const CHUNK: usize = 64 * 1024;

impl Body for Counting {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK);
        self.remaining -= n;
        self.sent.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}
