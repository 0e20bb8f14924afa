//! One public connection from the accept to its end. The listener accepts on the priority
//! runtime (so a known client's new connection is not stuck behind a flood); there a connection
//! from a bad source is closed unread while the node is under pressure, a known source's is
//! served at once, and anyone else's moves to the open runtime until its client proves itself
//! (`conduct.rs`), when it moves back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::Public;
use super::conduct::{Conduct, Runtime};
use crate::app::App;
use crate::edge::{self, Ended, Setup};
use crate::guard::{Reason, Trust};
use crate::listener::{Accepted, ListenerLimits, Seat};

/// Serves one public connection, accepted on the priority runtime.
///
/// Serving futures are tens of kilobytes, and tokio copies a task's future when it spawns it and
/// when it ends (~8,600 instructions a copy, callgrind: most of a refusal's cost when the shield
/// cuts connections). So this future stays small: a connection closed unread never builds one,
/// and a served one is built once, on the heap.
pub async fn connection(
    app: Arc<App>,
    accepted: Accepted,
    limits: ListenerLimits,
    shutdown: watch::Receiver<bool>,
) {
    let Accepted {
        stream,
        peer,
        at,
        seat,
    } = accepted;
    let trust = app.guard.trust_of(peer.ip());
    if trust == Trust::Bad && app.guard.under_pressure() {
        app.guard.refuse(Reason::Distrusted, Some(peer.ip()));
        return;
    }
    let conn = Conn {
        stream,
        buf: BytesMut::with_capacity(edge::READ_CHUNK),
        peer,
        at,
        limits,
        seat,
        shutdown,
    };
    Box::pin(serve_from_start(app, conn, trust)).await;
}

/// A connection that may be served: on the open runtime until its client proves itself, unless
/// its source is known, then on the priority runtime.
async fn serve_from_start(app: Arc<App>, mut conn: Conn, trust: Trust) {
    if trust != Trust::Known {
        match app.open.clone() {
            // Until the client proves itself, it is served by the open runtime; it comes back
            // here when it does.
            Some(open) => match conn.serve_on(&open, app.clone()).await {
                Some(back) => conn = back,
                None => return,
            },
            None => {
                if conn.serve(&app, Runtime::Open).await != Ended::Handoff {
                    return;
                }
            }
        }
    }
    conn.serve(&app, Runtime::Priority).await;
}

/// A public connection and what it carries from one runtime to the other.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    peer: SocketAddr,
    at: Instant,
    limits: ListenerLimits,
    seat: Arc<Seat>,
    shutdown: watch::Receiver<bool>,
}

impl Conn {
    /// Serves it where this task runs until it ends or is handed over.
    async fn serve(&mut self, app: &App, runtime: Runtime) -> Ended {
        let setup = Setup {
            accepted: self.at,
            limits: self.limits,
            seat: Some(&self.seat),
            // Without the shield (no open runtime) a served connection settles, as it always did.
            settles: runtime == Runtime::Priority || app.open.is_none(),
        };
        let shutdown = self.shutdown.clone();
        let (stream, buf, peer) = (&mut self.stream, &mut self.buf, self.peer);
        serve(app, stream, buf, peer, setup, runtime, shutdown).await
    }

    /// Serves it on the open runtime (the socket is registered there meanwhile); `Some` with
    /// the connection back when its client proved itself. This task waits, idle: the
    /// listener's accounting and the per-source slot stay with it.
    async fn serve_on(self, open: &Handle, app: Arc<App>) -> Option<Conn> {
        let (parked, stream) = self.park()?;
        // The serving future boxed, so that the spawned task is small (see `connection`).
        let served = open.spawn(async move {
            let mut conn = parked.unpark(stream)?;
            match Box::pin(conn.serve(&app, Runtime::Open)).await {
                Ended::Handoff => conn.park(),
                _ => None,
            }
        });
        let (parked, stream) = served.await.ok()??;
        parked.unpark(stream)
    }

    /// Deregisters the socket from this runtime, to register it on another.
    fn park(self) -> Option<(Parked, std::net::TcpStream)> {
        let stream = self.stream.into_std().ok()?;
        let parked = Parked {
            buf: self.buf,
            peer: self.peer,
            at: self.at,
            limits: self.limits,
            seat: self.seat,
            shutdown: self.shutdown,
        };
        Some((parked, stream))
    }
}

/// A connection between two runtimes.
struct Parked {
    buf: BytesMut,
    peer: SocketAddr,
    at: Instant,
    limits: ListenerLimits,
    seat: Arc<Seat>,
    shutdown: watch::Receiver<bool>,
}

impl Parked {
    /// Registers the socket on the runtime this runs on.
    fn unpark(self, stream: std::net::TcpStream) -> Option<Conn> {
        Some(Conn {
            stream: TcpStream::from_std(stream).ok()?,
            buf: self.buf,
            peer: self.peer,
            at: self.at,
            limits: self.limits,
            seat: self.seat,
            shutdown: self.shutdown,
        })
    }
}

/// Serves the connection on the runtime it runs on until it ends or is handed over.
async fn serve(
    app: &App,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    setup: Setup<'_>,
    runtime: Runtime,
    shutdown: watch::Receiver<bool>,
) -> Ended {
    let service = Public {
        app,
        peer,
        conduct: Conduct::new(peer.ip(), runtime),
    };
    let ended = edge::serve_connection(stream, buf, setup, shutdown, &service).await;
    match ended {
        Ended::HeaderTimeout => {
            app.guard.refuse(Reason::HeaderTimeout, Some(peer.ip()));
            app.guard.mark_bad(peer.ip());
        }
        Ended::Evicted => {
            app.guard.refuse(Reason::Evicted, Some(peer.ip()));
            app.guard.mark_bad(peer.ip());
        }
        _ => {}
    }
    tracing::trace!(?ended, %peer, ?runtime, "connection ended");
    ended
}
