//! An ingest connection on hyper's HTTP/1.1: header deadline, bounded head, idle timeout,
//! graceful close at shutdown. (hyper here, not the public side's own loop: ingest bodies are up
//! to 8 MiB, may be chunked and may ask for `100-continue`.)

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

use crate::app::App;
use crate::listener::{Accepted, ListenerLimits, MAX_HEAD_BYTES, MAX_HEADERS};

/// Serves one ingest connection with hyper's HTTP/1.1: header deadline, bounded head, idle
/// timeout, graceful close at shutdown, and an immediate close when a newcomer takes its seat
/// (it had not authenticated: see `listener/seats.rs`).
pub async fn serve(
    app: Arc<App>,
    accepted: Accepted,
    limits: ListenerLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let Accepted {
        stream, peer, seat, ..
    } = accepted;
    let activity = Arc::new(Activity::default());
    let service_activity = activity.clone();
    let service_seat = seat.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        let activity = service_activity.clone();
        let seat = service_seat.clone();
        activity.begin();
        async move {
            let resp = super::handle(app, req, &seat).await;
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
        () = seat.evicted() => {
            tracing::trace!(%peer, "unauthenticated connection evicted for a newcomer");
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
