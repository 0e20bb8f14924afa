//! Running a node: two runtimes, the store, both listeners and the background tasks, until
//! SIGTERM or SIGINT; then a graceful shutdown: stop accepting, finish requests in flight
//! (within the grace period), close the store (which finishes its commits).
//!
//! - the **public** listener (anonymous lookups, HTML pages, health) runs on its own tokio
//!   runtime, sized to the machine, its threads at a lower CPU priority ([`PUBLIC_NICE`]);
//! - the **ingest** listener (authenticated batches, metrics) runs on a second runtime with its
//!   own reserved threads, so a saturated public side cannot delay a depot's acknowledgement.
//!   The store is opened there, and every background task runs there.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use rempart_shield::SourceConnections;
use rempart_store::push::PushStore;
use rempart_store::{ChangeCursor, EventStore, StoreError};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::app::App;
use crate::listener::{self, ListenerLimits};
use crate::metrics::Listener;
use crate::push::{Push, PushSetupError, keys};
use crate::runtimes::Runtimes;
pub use crate::runtimes::{OPEN_NICE, PUBLIC_NICE};
use crate::settings::{Settings, StoreKind};
use crate::{clock, coherence, demo, guard, ingest, ops, public, tokens};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::settings::ConfigError),
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    #[error(transparent)]
    Push(#[from] PushSetupError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// What the binary opened: the events, and the same store's push side when it keeps an outbox.
pub struct Stores {
    pub events: Arc<dyn EventStore>,
    pub push: Option<Arc<dyn PushStore>>,
}

/// Opens the store, on the ingest runtime (so its background work lives there).
pub type StoreOpener = Box<
    dyn FnOnce(Settings) -> Pin<Box<dyn Future<Output = Result<Stores, StoreError>> + Send>> + Send,
>;

/// Installs the tracing subscriber (stderr; text or JSON) per the settings. Text is coloured
/// only when stderr is a terminal: a log file or a pipe gets no ANSI escape codes.
pub fn init_logging(settings: &Settings) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.run.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if settings.run.log_json.get() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A write past a file-size limit (`RLIMIT_FSIZE`) must fail like a full disk — the store
/// then stops taking writes and recovers by itself — not kill the node with `SIGXFSZ`.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" has no handler to run.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Runs the node until SIGTERM or SIGINT, then shuts down gracefully.
pub fn run(settings: Settings, open_store: StoreOpener) -> Result<(), ServeError> {
    ignore_file_size_signal();
    let rt = Runtimes::build(&settings)?;
    // Both listeners are bound before the store is opened: a port in use is reported before
    // anything is created on disk. Connections wait in the backlog until serving starts.
    let bind = |rt: &Runtime, addr| {
        let _guard = rt.enter();
        listener::bind(addr).map_err(|source| ServeError::Bind { addr, source })
    };
    let public_listener = bind(rt.public(), settings.listeners.public)?;
    let ingest_listener = bind(&rt.ingest, settings.listeners.ingest)?;
    let Stores {
        events: store,
        push: push_store,
    } = rt.ingest.block_on(open_store(settings.clone()))?;
    // Before anything can write to the store (demo data, ingest): the filter's snapshot.
    let snapshot = guard::snapshot::take_at_start(&settings);
    // Dropped last, here: closing the embedded store flushes its write buffers (so a restart has
    // nothing to replay), which blocks, and must not be cut short by a runtime's shutdown.
    let store_handle = store.clone();
    let tokens = load_tokens(&settings)?;
    let demo = match settings.run.demo.get() {
        true => Some(rt.ingest.block_on(demo::prepare(
            store.as_ref(),
            settings.run.demo_parcels,
            clock::now(),
        ))?),
        false => None,
    };
    let site = site_url(&settings, &public_listener)?;
    let push = Push::start(&settings, push_store, &site)?.map(Arc::new);
    let api_keys = keys::LiveKeys::load(&settings.store.data)?;
    let app = Arc::new(
        App::new(store, tokens, settings.clone())
            .with_open_runtime(rt.open.as_ref().map(|open| open.handle().clone()))
            .with_push(push, api_keys),
    );
    if let Some(demo) = &demo {
        let _ = app.suggestions.set(demo.numbers());
    }
    let demo_wrote = demo.as_ref().is_some_and(|d| d.written.is_some());
    let restored = guard::snapshot::restore_at_start(&app.guard, &settings, snapshot, demo_wrote);
    let public_addr = public_listener.local_addr().map_err(ServeError::Runtime)?;
    let ingest_addr = ingest_listener.local_addr().map_err(ServeError::Runtime)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let serving = Listeners {
        public: public_listener,
        ingest: ingest_listener,
    }
    .spawn(&app, rt.public(), &rt.ingest, &stop_rx);
    spawn_tasks(&app, &rt.ingest, restored, &stop_rx);
    spawn_lag_probe(&app, &rt, &stop_rx);

    guard::snapshot::wait_for_first_build(&app.guard, &rt.ingest);
    print_ready(&settings, demo.as_ref(), public_addr, ingest_addr);
    tracing::info!(%public_addr, %ingest_addr, "serving");

    rt.ingest.block_on(wait_for_signal());
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    rt.ingest.block_on(async {
        for task in serving {
            let _ = task.await;
        }
    });
    let grace = settings.listeners.shutdown_grace_ms.duration();
    let feed_position = || app.coherence.feed.position();
    guard::snapshot::save_at_stop(&app.guard, &settings, feed_position, &rt.ingest, grace);
    rt.shutdown(grace, app);
    tracing::info!("closing the store");
    drop(store_handle);
    tracing::info!("stopped");
    Ok(())
}

/// Links in e-mails must be absolute: the public URL, else the listener's own address.
fn site_url(settings: &Settings, public: &TcpListener) -> Result<String, ServeError> {
    Ok(match settings.listeners.public_url.base() {
        "" => format!(
            "http://{}",
            public.local_addr().map_err(ServeError::Runtime)?
        ),
        base => base.to_owned(),
    })
}

/// The lag probe measures the runtime floods land on, so it runs there.
fn spawn_lag_probe(app: &App, rt: &Runtimes, stop: &watch::Receiver<bool>) {
    if app.guard.shield().is_none() {
        return;
    }
    let guard = app.guard.clone();
    let stop = stop.clone();
    rt.floods().spawn(async move {
        if let Some(shield) = guard.shield() {
            shield.lag.probe(stop).await;
        }
    });
}

/// The ingest tokens of the data directory, and `REMPART_INGEST_TOKEN` when set.
fn load_tokens(settings: &Settings) -> Result<tokens::LiveTokens, ServeError> {
    let token_env = std::env::var("REMPART_INGEST_TOKEN").ok();
    let tokens = tokens::LiveTokens::load(&settings.store.data, token_env.as_deref())?;
    if tokens.is_empty() {
        tracing::warn!(
            "no ingest token: create one with `rempart token create NAME` or set REMPART_INGEST_TOKEN"
        );
    }
    Ok(tokens)
}

/// Both bound listeners, before they serve.
struct Listeners {
    public: TcpListener,
    ingest: TcpListener,
}

impl Listeners {
    /// Starts serving each on its runtime; the handles end once each has drained.
    fn spawn(
        self,
        app: &Arc<App>,
        public_rt: &Runtime,
        ingest_rt: &Runtime,
        stop: &watch::Receiver<bool>,
    ) -> [tokio::task::JoinHandle<()>; 2] {
        spawn_gate(app, &self.public, ingest_rt, stop);
        let l = &app.settings.listeners;
        let limits =
            |max_connections: usize, max_unsettled: usize, header_timeout| ListenerLimits {
                max_connections,
                max_unsettled: max_unsettled.clamp(1, max_connections),
                header_timeout,
                idle_timeout: l.idle_timeout_ms.duration(),
                shutdown_grace: l.shutdown_grace_ms.duration(),
            };
        let public_max = l.public_max_connections.get();
        let public = public_rt.spawn(listener::serve(
            self.public,
            Listener::Public,
            app.clone(),
            public::connection,
            limits(public_max, public_max, l.header_timeout_ms.duration()),
            app.guard.source_connections(),
            stop.clone(),
        ));
        let ingest_max = l.ingest_max_connections.get();
        let unauthenticated =
            ingest_max - (ingest_max as f64 * l.ingest_reserved_ratio.get()) as usize;
        let ingest = ingest_rt.spawn(listener::serve(
            self.ingest,
            Listener::Ingest,
            app.clone(),
            ingest::connection,
            limits(
                ingest_max,
                unauthenticated,
                l.ingest_header_timeout_ms.duration(),
            ),
            Some(SourceConnections::new(
                l.ingest_source_max_connections.get(),
            )),
            stop.clone(),
        ));
        [public, ingest]
    }
}

/// The public listener's gate (`listener/gate.rs`), with the shield, on the ingest runtime: the
/// public ones are what a flood starves.
fn spawn_gate(app: &Arc<App>, public: &TcpListener, rt: &Runtime, stop: &watch::Receiver<bool>) {
    if app.guard.shield().is_none() || !app.settings.shield.gate.get() {
        return;
    }
    match listener::gate::dup(public) {
        Ok(fd) => {
            rt.spawn(listener::gate::run(fd, app.guard.clone(), stop.clone()));
        }
        Err(e) => tracing::warn!(error = %e, "no gate: the public listener cannot be shared"),
    }
}

/// The background tasks (push's included), all on the ingest runtime.
/// `restored`: the change feed's position the filter's snapshot was saved at, when restored.
fn spawn_tasks(app: &Arc<App>, rt: &Runtime, restored: Option<i64>, stop: &watch::Receiver<bool>) {
    rt.spawn(ops::sample(app.clone(), stop.clone()));
    if let Some(push) = &app.push {
        // The dispatcher, the confirmation mailer and push's housekeeping: ingest-side work.
        push.spawn(rt, stop);
    }
    {
        let app = app.clone();
        let stop = stop.clone();
        rt.spawn(async move { app.ingest_refusals.log_summaries(stop).await });
    }
    {
        let app = app.clone();
        let stop = stop.clone();
        rt.spawn(async move { tokens::watch(&app.tokens, stop).await });
    }
    {
        // API keys rank lookups above anonymous ones even with push off: always reread them.
        let app = app.clone();
        let stop = stop.clone();
        rt.spawn(async move { keys::watch(&app.keys, stop).await });
    }
    if app.guard.shield().is_some() {
        rt.spawn(guard::tasks::rebuild_filter(
            app.store.clone(),
            app.guard.clone(),
            app.settings.shield.filter_rebuild_s.duration(),
            usize::try_from(app.settings.shield.filter_max_parcels.get()).unwrap_or(usize::MAX),
            restored.is_some(),
            stop.clone(),
        ));
        rt.spawn(guard::tasks::watch_attacks(app.guard.clone(), stop.clone()));
    }
    if matches!(app.settings.store.store, StoreKind::Postgres(_)) {
        rt.spawn(coherence::feed::poll_changes(
            app.store.clone(),
            app.coherence.clone(),
            app.guard.clone(),
            app.settings.store.change_poll_ms.duration(),
            restored.map_or_else(ChangeCursor::default, ChangeCursor::resume),
            stop.clone(),
        ));
    }
}

/// The demo's numbers to try, then the line tests and scripts wait for (last, so that whoever
/// waits for it has everything printed before it). The statuses printed are the stored ones
/// (`demo::prepare` read them back), so a restart on an existing store tells the truth.
fn print_ready(
    settings: &Settings,
    demo: Option<&demo::Prepared>,
    public: SocketAddr,
    ingest: SocketAddr,
) {
    let mut out = std::io::stdout().lock();
    if let Some(demo) = demo {
        let _ = match demo.written {
            Some(events) => writeln!(
                out,
                "demo data: {} parcels, {events} events written. Numbers to try:",
                settings.run.demo_parcels
            ),
            None => writeln!(
                out,
                "demo data: the store already holds data, left as it is. Numbers to try, as stored now:"
            ),
        };
        if demo.samples.is_empty() {
            let _ = writeln!(out, "  (none: this store holds none of the demo's numbers)");
        }
        for sample in &demo.samples {
            let tn = sample.tracking_number;
            let kind = if sample.international {
                "international"
            } else {
                "domestic"
            };
            let _ = writeln!(
                out,
                "  {tn}  {:<22} {kind:<13} http://{public}/track/{tn}   curl http://{public}/v1/parcels/{tn}",
                sample.status.as_str()
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
