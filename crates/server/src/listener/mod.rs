//! The accept loop both listeners share, each with its own connection driver (`edge` for the
//! public side, hyper for ingest): a connection cap with room kept for the clients that matter
//! (`seats.rs`: the oldest connection that has not proved itself makes room for a newcomer), the
//! per-source cap, and graceful shutdown (stop accepting, let requests in flight finish within
//! the grace period, then close).

pub mod gate;
mod seats;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rempart_shield::SourceConnections;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub use seats::{Seat, Seats};

use crate::app::App;
use crate::guard::{Reason, Trust};
use crate::metrics::Listener;

/// Largest request head buffer per connection.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;
/// Listen backlog.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Pause after a failed accept (EMFILE and friends), rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// How long the ingest accept loop waits for evicted connections to close before refusing a
/// newcomer (see `seats.rs`). The public loop never waits: its evicted connections live on the
/// open runtime, which a flood starves on purpose, and that must not stall the accept loop of
/// proven clients; a refused public newcomer just reconnects.
const INGEST_EVICTED_WAIT: Duration = Duration::from_secs(1);
/// Beyond the public cap, a reserve of `cap / KNOWN_RESERVE_DIVISOR` seats only sources the
/// shield knows (a clean history at a person's pace) may take: a flood whose connections hold
/// every seat, served and waiting on the starved open runtime, cannot keep known customers out.
const KNOWN_RESERVE_DIVISOR: usize = 4;
/// Extra time the drain waits beyond the grace period for connections to notice shutdown.
const DRAIN_SLACK: Duration = Duration::from_millis(500);

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    /// Most connections that have not proved themselves (see `seats.rs`).
    pub max_unsettled: usize,
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// A connection the listener let in.
pub struct Accepted {
    pub stream: TcpStream,
    /// The client's address, IPv4 for IPv4 clients of a `[::]` listener.
    pub peer: SocketAddr,
    /// When it was accepted: its first request's latency counts from here.
    pub at: Instant,
    /// Its place under the cap (settle it once the connection proved itself).
    pub seat: Arc<Seat>,
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
/// one admitted connection to its end; `per_source` caps the connections of each address.
pub async fn serve<C, F>(
    listener: TcpListener,
    which: Listener,
    app: Arc<App>,
    connection: C,
    limits: ListenerLimits,
    per_source: Option<Arc<SourceConnections>>,
    mut shutdown: watch::Receiver<bool>,
) where
    C: Fn(Arc<App>, Accepted, ListenerLimits, watch::Receiver<bool>) -> F
        + Copy
        + Send
        + Sync
        + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let reserve = match which {
        Listener::Public => limits.max_connections / KNOWN_RESERVE_DIVISOR,
        Listener::Ingest => 0,
    };
    let seats =
        Arc::new(Seats::new(limits.max_connections, limits.max_unsettled).with_reserve(reserve));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let at = Instant::now();
        // IPv4 clients of a `[::]` listener arrive as `::ffff:a.b.c.d`: IPv4 for every rule.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        // Per-source cap first (cheapest; a refused connection must not evict anyone). The table
        // holds only sources with an open connection, so it is bounded by the cap.
        let source_slot = match &per_source {
            None => None,
            Some(table) => match table.admit(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refused(&app, which, peer, Reason::SourceConnCap);
                    continue;
                }
            },
        };
        let Some(seat) = take_seat(&seats, which, &app, peer).await else {
            refused(&app, which, peer, Reason::ConnCap);
            continue;
        };
        let accepted = Accepted {
            stream,
            peer,
            at,
            seat,
        };
        spawn_connection(
            which,
            &app,
            accepted,
            source_slot,
            connection,
            limits,
            &shutdown,
        );
    }
    drop(listener);
    // Every connection holds a seat; getting them all back means every connection ended.
    seats.drained(limits.shutdown_grace + DRAIN_SLACK).await;
}

/// Drives one admitted connection on its own task; its per-source slot is given back when it
/// ends.
fn spawn_connection<C, F>(
    which: Listener,
    app: &Arc<App>,
    accepted: Accepted,
    source_slot: Option<rempart_shield::ConnectionGuard>,
    connection: C,
    limits: ListenerLimits,
    shutdown: &watch::Receiver<bool>,
) where
    C: Fn(Arc<App>, Accepted, ListenerLimits, watch::Receiver<bool>) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let _ = accepted.stream.set_nodelay(true);
    if app.guard.gate_engaged() {
        // The copy of the gate's program it inherited from the listener: packets of an
        // established connection always pass it, and it would keep an old program alive.
        gate::detach(std::os::fd::AsRawFd::as_raw_fd(&accepted.stream));
    }
    let app = app.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        app.metrics.connections_open[which.index()].fetch_add(1, Relaxed);
        // Keep `connection`'s own future small: tokio copies a task's future when it spawns
        // and ends it (the public one boxes its serving part, `public/connection.rs`).
        connection(app.clone(), accepted, limits, shutdown).await;
        app.metrics.connections_open[which.index()].fetch_sub(1, Relaxed);
        drop(source_slot);
    });
}

/// A seat for a newcomer: ingest waits a little for evicted connections to close; on the public
/// side a source the shield knows may take one of the reserve.
async fn take_seat(
    seats: &Seats,
    which: Listener,
    app: &App,
    peer: SocketAddr,
) -> Option<Arc<Seat>> {
    match which {
        Listener::Ingest => seats.take_within(INGEST_EVICTED_WAIT).await,
        Listener::Public => seats.take().or_else(|| {
            (app.guard.trust_of(peer.ip()) == Trust::Known)
                .then(|| seats.take_reserved())
                .flatten()
        }),
    }
}

/// A connection closed on accept: counted (and, on the public side, told to the shield).
fn refused(app: &App, which: Listener, peer: SocketAddr, reason: Reason) {
    app.metrics.connections_refused[which.index()].fetch_add(1, Relaxed);
    if which == Listener::Public {
        app.guard.refuse(reason, Some(peer.ip()));
    }
}
