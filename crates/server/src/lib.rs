//! The Rempart node: two HTTP listeners over one [`EventStore`].
//!
//! - the **public** listener (anonymous lookups, HTML pages, health) runs on its own tokio
//!   runtime, sized to the machine;
//! - the **ingest** listener (authenticated batches, metrics) runs on a second runtime with its
//!   own reserved threads, so a saturated public side cannot delay a depot's acknowledgement;
//!   the public runtime's threads also run at a lower CPU priority ([`PUBLIC_NICE`]).
//!
//! The store's own work (the embedded store's committer thread, a database pool's connections)
//! runs outside the public runtime too. The binary resolves [`Settings`], opens the store and
//! calls [`run`].

pub mod app;
pub mod cache;
pub mod config;
pub mod demo;
pub mod edge;
pub mod html;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod ops;
pub mod public;
pub mod response;
pub mod shield;
mod shield_tasks;
pub mod tokens;

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rempart_domain::{Timestamp, TrackingNumber};
use rempart_store::{ChangeCursor, EventStore, StoreError};
use tokio::sync::watch;

pub use config::{ServeArgs, Settings, StoreKind};

use crate::app::App;
use crate::http::ListenerLimits;
use crate::metrics::Listener;

/// Parcel versions a node remembers having handled from the change feed.
pub const HANDLED_VERSIONS: usize = 200_000;
/// Most tracking numbers taken from a change feed per poll.
pub const CHANGE_FEED_PAGE: usize = 10_000;

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Opens the store, on the ingest runtime (so its background work lives there).
pub type StoreOpener = Box<
    dyn FnOnce(
            Settings,
        )
            -> Pin<Box<dyn Future<Output = Result<Arc<dyn EventStore>, StoreError>> + Send>>
        + Send,
>;

/// Installs the tracing subscriber (stderr; text or JSON) per the settings.
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if settings.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn now() -> Timestamp {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc())
}

/// How much lower the public runtime's threads (workers and the blocking pool where embedded
/// storage reads run) are scheduled than the rest of the process.
pub const PUBLIC_NICE: i32 = 5;

/// Lowers the calling thread's scheduling priority by [`PUBLIC_NICE`]. When a flood keeps the
/// public threads busy on the same cores as ingest, the kernel then gives the ingest runtime and
/// the store's committer about three times their share and wakes them first: ingest never waits
/// behind public lookups, down to the CPU scheduler. (Linux: `setpriority` on a thread id
/// affects that thread only.)
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority and gettid only read their integer arguments.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, PUBLIC_NICE);
    }
}

/// Runs the node until SIGTERM or SIGINT, then shuts down gracefully: stop accepting, finish
/// requests in flight (within the grace period), close the store (which finishes its commits).
pub fn run(settings: Settings, open_store: StoreOpener) -> Result<(), ServeError> {
    let ingest_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.ingest_threads)
        .thread_name("rempart-ingest")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let public_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.public_threads)
        .thread_name("rempart-public")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;

    let shared_store = matches!(settings.store, StoreKind::Postgres(_));
    let store = ingest_rt.block_on(open_store(settings.clone()))?;
    let token_env = std::env::var("REMPART_INGEST_TOKEN").ok();
    let tokens = tokens::LiveTokens::load(&settings.data, token_env.as_deref())?;
    if tokens.is_empty() {
        tracing::warn!(
            "no ingest token: create one with `rempart token create NAME` or set REMPART_INGEST_TOKEN"
        );
    }

    if settings.demo {
        ingest_rt.block_on(async {
            if demo::store_is_empty(store.as_ref()).await? {
                let started = std::time::Instant::now();
                let events = demo::fill(store.as_ref(), settings.demo_parcels, now()).await?;
                tracing::info!(
                    parcels = settings.demo_parcels,
                    events,
                    took_ms = started.elapsed().as_millis() as u64,
                    "demo data written"
                );
            }
            Ok::<_, StoreError>(())
        })?;
    }

    let app = Arc::new(App::new(store, tokens, settings.clone(), shared_store));
    let bind = |rt: &tokio::runtime::Runtime, addr| {
        let _guard = rt.enter();
        http::bind(addr).map_err(|source| ServeError::Bind { addr, source })
    };
    let public_listener = bind(&public_rt, settings.public)?;
    let ingest_listener = bind(&ingest_rt, settings.ingest)?;
    let public_addr = public_listener.local_addr().map_err(ServeError::Runtime)?;
    let ingest_addr = ingest_listener.local_addr().map_err(ServeError::Runtime)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    let header_timeout = Duration::from_millis(settings.header_timeout_ms);
    let idle_timeout = Duration::from_millis(settings.idle_timeout_ms);
    let public_task = public_rt.spawn(http::serve(
        public_listener,
        Listener::Public,
        app.clone(),
        public::connection,
        ListenerLimits {
            max_connections: settings.public_max_connections,
            header_timeout,
            idle_timeout,
            shutdown_grace: grace,
        },
        stop_rx.clone(),
    ));
    let ingest_task = ingest_rt.spawn(http::serve(
        ingest_listener,
        Listener::Ingest,
        app.clone(),
        |app, stream, peer, limits, shutdown| {
            http::hyper_connection(ingest::handle, app, stream, peer, limits, shutdown)
        },
        ListenerLimits {
            max_connections: settings.ingest_max_connections,
            header_timeout,
            idle_timeout,
            shutdown_grace: grace,
        },
        stop_rx.clone(),
    ));
    ingest_rt.spawn(ops::sample(app.clone(), stop_rx.clone()));
    {
        let app = app.clone();
        let stop = stop_rx.clone();
        ingest_rt.spawn(async move { tokens::watch(&app.tokens, stop).await });
    }
    if app.shield.is_some() {
        ingest_rt.spawn(shield_tasks::rebuild_filter(app.clone(), stop_rx.clone()));
        ingest_rt.spawn(shield_tasks::watch_attacks(app.clone(), stop_rx.clone()));
    }
    if shared_store {
        ingest_rt.spawn(poll_changes(app.clone(), stop_rx.clone()));
    }

    print_ready(&settings, public_addr, ingest_addr);
    tracing::info!(%public_addr, %ingest_addr, "serving");

    ingest_rt.block_on(wait_for_signal());
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    ingest_rt.block_on(async {
        let _ = public_task.await;
        let _ = ingest_task.await;
    });
    public_rt.shutdown_timeout(grace);
    drop(app);
    // The last reference to the store goes with the runtime: the embedded store's committer
    // finishes what it was given before the thread exits.
    ingest_rt.shutdown_timeout(grace);
    tracing::info!("stopped");
    Ok(())
}

/// The demo's numbers to try, then the line tests and scripts wait for (last, so that whoever
/// waits for it has everything printed before it).
fn print_ready(settings: &Settings, public: std::net::SocketAddr, ingest: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    if settings.demo {
        let _ = writeln!(
            out,
            "demo data: {} parcels. Numbers to try:",
            settings.demo_parcels
        );
        for (tn, status, international) in demo::samples(settings.demo_parcels, now()) {
            let kind = if international {
                "international"
            } else {
                "domestic"
            };
            let _ = writeln!(
                out,
                "  {tn}  {:<22} {kind:<13} http://{public}/track/{tn}   curl http://{public}/v1/parcels/{tn}",
                status.as_str()
            );
        }
    }
    let _ = writeln!(out, "rempart listening public={public} ingest={ingest}");
    let _ = out.flush();
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Keeps the cache coherent with writes made through other nodes of a shared store.
async fn poll_changes(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(app.settings.change_poll_ms);
    let mut cursor = ChangeCursor::default();
    let mut handled: std::collections::HashMap<TrackingNumber, u64> =
        std::collections::HashMap::new();
    let mut first = true;
    loop {
        match app.store.changes_since(cursor, CHANGE_FEED_PAGE).await {
            Ok(changes) => {
                // The first poll only positions the cursor: the cache starts empty.
                if !first {
                    if changes.complete {
                        // The feed re-reports recent changes; act once per parcel version.
                        let fresh: Vec<TrackingNumber> = changes
                            .numbers
                            .iter()
                            .filter(|(tn, version)| handled.insert(*tn, *version) != Some(*version))
                            .map(|(tn, _)| *tn)
                            .collect();
                        if handled.len() > HANDLED_VERSIONS {
                            // Bounded: forgetting costs at most one more invalidation per parcel.
                            handled.clear();
                        }
                        for tn in &fresh {
                            app.cache.invalidate(tn);
                        }
                        if let Some(shield) = &app.shield {
                            shield
                                .filter
                                .insert(fresh.iter().map(|tn| &tn.as_bytes()[..]));
                        }
                    } else {
                        tracing::info!(
                            "more parcels changed elsewhere than a page holds; clearing the cache"
                        );
                        app.cache.invalidate_all();
                        if let Some(shield) = &app.shield {
                            shield.filter.degrade();
                        }
                    }
                }
                first = false;
                cursor = changes.next;
                if !app.feed_ok.load(Relaxed) {
                    tracing::info!("change feed readable again; cached parcels are fresh");
                }
                app.feed_succeeded();
            }
            Err(e) => {
                // Log the transition, not every failed poll.
                if app.feed_ok.swap(false, Relaxed) {
                    tracing::warn!(error = %e, "change feed unavailable; cached parcels may be stale");
                }
                app.metrics.change_feed_errors.fetch_add(1, Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}
