//! The accept loop shared by both listeners, each with its own connection driver: a connection
//! cap (a connection over it is closed at once, before any byte is read), the per-source cap on
//! the public side, and graceful shutdown (stop accepting, let requests in flight finish within
//! the grace period, then close). The ingest listener's connections run on hyper (header
//! deadline, bounded head, idle timeout) in [`hyper_connection`]; the public listener's on
//! [`crate::edge`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::app::App;
use crate::metrics::Listener;
use crate::response::Body;
use crate::shield::Reason;

/// Largest request head buffer per connection.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;
/// Listen backlog.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Binds a listener socket (SO_REUSEADDR, large backlog). Must run inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `listener` until `shutdown` turns true, then drains connections. `connection` drives
/// one admitted connection to its end (hyper for ingest, [`crate::edge`] for the public side).
pub async fn serve<C, F>(
    listener: TcpListener,
    which: Listener,
    app: Arc<App>,
    connection: C,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    C: Fn(Arc<App>, TcpStream, SocketAddr, ListenerLimits, watch::Receiver<bool>) -> F
        + Copy
        + Send
        + Sync
        + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            app.metrics.connections_refused[which as usize].fetch_add(1, Relaxed);
            if let (Listener::Public, Some(shield)) = (which, &app.shield) {
                shield.refuse(Reason::ConnCap, Some(peer.ip()));
            }
            drop(stream);
            continue;
        };
        // Per-source cap (public side, shield on): the table holds only sources with an open
        // connection, so it is bounded by the global cap above.
        let source_slot = match (which, &app.shield) {
            (Listener::Public, Some(shield)) => match shield.conns.admit(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    shield.refuse(Reason::SourceConnCap, Some(peer.ip()));
                    drop(stream);
                    continue;
                }
            },
            _ => None,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            app.metrics.connections_open[which as usize].fetch_add(1, Relaxed);
            connection(app.clone(), stream, peer, limits, shutdown).await;
            app.metrics.connections_open[which as usize].fetch_sub(1, Relaxed);
            drop(source_slot);
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot; getting them all back means every connection ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        limits.shutdown_grace + Duration::from_millis(500),
        slots.acquire_many(all),
    )
    .await;
}

/// Serves one connection with hyper's HTTP/1.1 (the ingest listener): header deadline, bounded
/// head, idle timeout, graceful close at shutdown.
pub async fn hyper_connection<H, F>(
    handler: H,
    app: Arc<App>,
    stream: TcpStream,
    peer: SocketAddr,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Arc<App>, Request<Incoming>, SocketAddr) -> F + Copy + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service_activity = activity.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        let activity = service_activity.clone();
        activity.begin();
        async move {
            let resp = handler(app, req, peer).await;
            activity.end();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::trace!(error = %e, %peer, "connection ended");
            }
        }
        _ = activity.idle_for(limits.idle_timeout) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn.as_mut()).await;
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn.as_mut()).await;
        }
    }
}

/// When a connection last finished a request, and how many it is serving now: the idle timer.
#[derive(Default)]
struct Activity {
    in_flight: std::sync::atomic::AtomicU32,
    /// Requests finished; a change means "not idle".
    finished: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
        self.finished.fetch_add(1, Relaxed);
    }

    /// Resolves once the connection has served nothing for a whole `idle` period. (Before its
    /// first request, the header timeout applies instead.)
    async fn idle_for(&self, idle: Duration) {
        let mut seen = self.finished.load(Relaxed);
        loop {
            tokio::time::sleep(idle).await;
            let now = self.finished.load(Relaxed);
            if now == seen && self.in_flight.load(Relaxed) == 0 && now > 0 {
                return;
            }
            seen = now;
        }
    }
}
