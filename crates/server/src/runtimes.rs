//! The node's three runtimes and how their threads are scheduled against each other.

use std::sync::Arc;

use tokio::runtime::Runtime;

use crate::app::App;
use crate::node::ServeError;
use crate::settings::Settings;

/// How much lower the public runtimes' threads (workers and the blocking pool where embedded
/// storage reads run) are scheduled than the rest of the process, in nice levels added to the
/// process's: the priority runtime (proven clients) [`PUBLIC_NICE`] lower, the open runtime
/// (everyone else) [`OPEN_NICE`] lower (capped at nice 19). Under a
/// flood, the kernel runs ingest first, then proven clients, then the rest (CFS weights 1024,
/// 335 and 15: a runnable priority thread gets ~22 times an open one's share).
pub const PUBLIC_NICE: i32 = 5;
pub const OPEN_NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority by `by` nice levels below the process's
/// (capped at 19). When a flood keeps the public threads busy on the same cores as ingest, the
/// kernel then gives the ingest runtime and the store's committer a larger share and wakes them
/// first: ingest never waits behind public lookups, down to the CPU scheduler. Relative, not
/// absolute: a node started under `nice 10` must not have its public threads *raised* above
/// ingest (root may lower a nice value). (Linux: `setpriority` on a thread id affects that
/// thread only.)
fn lower_priority(by: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority, setpriority, getpid and gettid only read their integer arguments.
    unsafe {
        // The main thread's nice (never lowered), not this thread's: a blocking-pool thread
        // inherits its spawner's lowered nice and must not be lowered twice.
        let process = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        let tid = libc::gettid();
        let _ = libc::setpriority(
            libc::PRIO_PROCESS,
            tid as libc::id_t,
            process.saturating_add(by).min(19),
        );
    }
}

/// The node's runtimes: ingest (reserved threads), the public priority runtime (proven clients)
/// and the public open runtime (everyone else; with the shield off, none: the public listener
/// runs on the priority runtime, as it did before it had one).
pub(crate) struct Runtimes {
    pub ingest: Runtime,
    pub priority: Runtime,
    pub open: Option<Runtime>,
}

impl Runtimes {
    pub fn build(settings: &Settings) -> Result<Runtimes, ServeError> {
        let public_threads = settings.listeners.public_threads.get();
        let public = |name: &str, nice: i32| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(public_threads)
                .thread_name(name)
                .on_thread_start(move || lower_priority(nice))
                .enable_all()
                .build()
                .map_err(ServeError::Runtime)
        };
        Ok(Runtimes {
            ingest: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(settings.listeners.ingest_threads.get())
                .thread_name("rempart-ingest")
                .enable_all()
                .build()
                .map_err(ServeError::Runtime)?,
            priority: public("rempart-public", PUBLIC_NICE)?,
            open: match settings.shield.shield.get() {
                true => Some(public("rempart-open", OPEN_NICE)?),
                false => None,
            },
        })
    }

    /// Where the public listener accepts: the priority runtime, so that a known client's new
    /// connection is not stuck behind a flood (unproven ones move to the open runtime).
    pub fn public(&self) -> &Runtime {
        &self.priority
    }

    /// Where floods land, and the lag probe measures: the open runtime when there is one.
    pub fn floods(&self) -> &Runtime {
        self.open.as_ref().unwrap_or(&self.priority)
    }

    pub fn shutdown(self, grace: std::time::Duration, app: Arc<App>) {
        if let Some(open) = self.open {
            open.shutdown_timeout(grace);
        }
        self.priority.shutdown_timeout(grace);
        drop(app);
        self.ingest.shutdown_timeout(grace);
    }
}
