//! The embedded store: one directory, no server, on [fjall], a log-structured merge tree.
//!
//! Why fjall: the workload is an append-heavy event log read by key prefix (a parcel's events).
//! An LSM tree turns appends into sequential writes, keeps keys ordered for prefix scans, and
//! recovers from its journal after a crash. fjall is pure Rust (no C++ toolchain, unlike RocksDB),
//! exposes atomic cross-keyspace write batches and an explicit `persist(SyncAll)`, which is what
//! group commit needs. redb (a copy-on-write B-tree) was the alternative: simpler, but every commit
//! rewrites a tree path, which costs more for this append pattern.
//!
//! **Group commit** (`committer.rs`): one committer thread owns all writes; concurrent batches
//! share one fsync. A full queue answers `Unavailable` at once (the server turns it into 503)
//! instead of queueing without bound.
//!
//! **After a write error** (`recovery.rs`) the store refuses appends, says why in
//! [`EventStore::write_health`], probes the disk, and re-opens the database through its crash
//! recovery in the process once a probe succeeds. Lookups keep working meanwhile.
//!
//! **Memory** is bounded by [`EmbeddedOptions`]: the block cache, the write buffers (memtables)
//! and the write queue each have a bound in bytes, reported by [`EventStore::memory_use`].
//!
//! **Closing** (`close`, or dropping the store) writes every memtable to a table and empties the
//! journal, so the next open has nothing to replay or read (`tables.rs`). Dropping blocks until
//! then (at most `CLOSE_FLUSH_TIMEOUT`): drop the last handle where blocking is fine.
//!
//! Keyspaces: `events` (see `codec`), `ids` (event id → event key), `parcels` (tracking number →
//! nothing, for listing), `meta` (`received` high-water mark, written in the same batch), `push`
//! (webhook endpoints, subscriptions, e-mail alerts and the outbox, see `push_codec`).
//!
//! **Push** (`outbox.rs`, `push.rs`): a group commit that changes a subscribed parcel's status
//! writes its deliveries in the same write batch as the events, under the same fsync.

mod committer;
mod health;
mod options;
mod outbox;
mod push;
mod push_codec;
mod queue;
mod recovery;
mod tables;

pub use options::*;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rempart_domain::{Event, StoredEvent, TrackingNumber};
use tokio::sync::oneshot;

use crate::codec;
use crate::{
    AppendOutcome, EventStore, MAX_BATCH_EVENTS, MAX_PAGE, MAX_PARCEL_EVENTS, MemoryUse,
    StoreError, WriteHealth,
};
use committer::{Committer, Job};
use health::Health;
use outbox::PushState;
use queue::{QueueGauge, batch_bytes};
use tables::{Tables, engine};

/// Longest `close` waits for the memtables to reach disk; after that the next open replays them.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(20);
/// File holding an exclusive lock so two processes never open the same directory.
const LOCK_FILE: &str = "rempart.lock";
/// The engine's directory inside the store's.
const DB_DIR: &str = "db";

/// Counters of the committer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub groups: AtomicU64,
    pub batches: AtomicU64,
    pub events_written: AtomicU64,
}

impl CommitStats {
    fn record(&self, batches: usize, events: u64) {
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
        self.events_written.fetch_add(events, Ordering::Relaxed);
    }
}

/// What `append`, the readers and the committer share.
struct Shared {
    /// The open database; `None` only while a recovery re-opens it, or after a re-open failed.
    tables: RwLock<Option<Tables>>,
    /// Taken by every push write, the committer's included (`outbox.rs`); always after `tables`.
    push: Mutex<PushState>,
    /// The watched set's bytes as of the last push write, for `memory_use` (which must not wait
    /// for the push lock while a commit holds it).
    watched_bytes: AtomicU64,
    health: Health,
    queue: QueueGauge,
    stats: CommitStats,
    options: EmbeddedOptions,
    /// The store's directory, canonical.
    dir: PathBuf,
}

impl Shared {
    fn db_dir(&self) -> PathBuf {
        self.dir.join(DB_DIR)
    }

    fn push_state(&self) -> MutexGuard<'_, PushState> {
        self.push.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on the open database; waits while a recovery re-opens it.
    fn read<T>(
        &self,
        read: impl FnOnce(&Tables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
        match tables.as_ref() {
            Some(tables) => read(tables),
            None => Err(StoreError::Unavailable(
                "the embedded store could not re-open its database after a write error; it retries by itself".into(),
            )),
        }
    }
}

pub struct EmbeddedStore {
    shared: Arc<Shared>,
    queue: Option<mpsc::SyncSender<Job>>,
    committer: Option<JoinHandle<()>>,
    _lock: std::fs::File,
}

/// An I/O error naming what the store was doing and where.
fn io_at(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = format!("{what} {}", path.display());
    move |e| StoreError::Io(std::io::Error::new(e.kind(), format!("{context}: {e}")))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` and starts its committer thread.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        assert!(options.queue_batches > 0 && options.max_group_events > 0);
        std::fs::create_dir_all(dir).map_err(io_at("creating the store directory", dir))?;
        let dir = dir
            .canonicalize()
            .map_err(io_at("resolving the store directory", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at("opening the lock file", &lock_path))?;
        if let Err(e) = lock.try_lock() {
            return Err(StoreError::Unavailable(format!(
                "{} is in use by another process ({e})",
                dir.display()
            )));
        }
        let tables = Tables::open(&dir.join(DB_DIR), &options)?;
        let received = tables.received()?;
        let push = PushState::load(&tables, options.watched_in_memory_max)?;
        let shared = Arc::new(Shared {
            tables: RwLock::new(Some(tables)),
            watched_bytes: AtomicU64::new(push.watched.bytes()),
            push: Mutex::new(push),
            health: Health::default(),
            queue: QueueGauge::default(),
            stats: CommitStats::default(),
            options,
            dir,
        });
        let (tx, rx) = mpsc::sync_channel(options.queue_batches);
        let committer = Committer {
            shared: shared.clone(),
            received,
            failures_in_a_row: 0,
        };
        let committer = std::thread::Builder::new()
            .name("rempart-commit".into())
            .spawn(move || committer.run(rx))
            .map_err(io_at("starting the committer thread for", &shared.dir))?;
        tracing::info!(dir = %shared.dir.display(), received, "embedded store open");
        Ok(EmbeddedStore {
            shared,
            queue: Some(tx),
            committer: Some(committer),
            _lock: lock,
        })
    }

    pub fn stats(&self) -> &CommitStats {
        &self.shared.stats
    }

    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// Stops taking writes, finishes the queued ones, writes every memtable to disk (so the next
    /// open has nothing to replay) and closes the database. Dropping the store does the same.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), StoreError> {
        // Closing the queue lets the committer finish what it holds and exit.
        drop(self.queue.take());
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
        let mut slot = self
            .shared
            .tables
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(tables) = slot.take() else {
            return Ok(());
        };
        if self.shared.health.is_failed() {
            // The disk state is what the next open must recover; writing more would not help.
            return Ok(());
        }
        if !tables.close(&self.shared.db_dir(), CLOSE_FLUSH_TIMEOUT)? {
            tracing::warn!(
                "memtables not all written within {} s; the next open replays the journal",
                CLOSE_FLUSH_TIMEOUT.as_secs()
            );
        }
        Ok(())
    }

    fn read_parcel(tables: &Tables, tn: &TrackingNumber) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        // Newest first, so the cap keeps the newest events.
        for guard in tables.events.prefix(tn.as_bytes()).rev() {
            let (key, value) = guard.into_inner().map_err(engine("reading events"))?;
            out.push(codec::decode_event(&key, &value)?);
            if out.len() == MAX_PARCEL_EVENTS {
                break;
            }
        }
        Ok(out)
    }

    fn read_numbers(
        tables: &Tables,
        after: Option<TrackingNumber>,
        limit: usize,
    ) -> Result<Vec<TrackingNumber>, StoreError> {
        let limit = limit.min(MAX_PAGE);
        let start = match &after {
            Some(tn) => Bound::Excluded(tn.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for guard in tables
            .parcels
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
        {
            if out.len() == limit {
                break;
            }
            let key = guard.key().map_err(engine("listing parcels"))?;
            out.push(
                TrackingNumber::from_bytes(&key)
                    .map_err(|_| StoreError::Corrupt("bad tracking number in parcels".into()))?,
            );
        }
        Ok(out)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if let Err(e) = self.shut_down() {
            tracing::warn!(error = %e, "closing the embedded store");
        }
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append(&self, batch: Vec<Event>) -> Result<AppendOutcome, StoreError> {
        if batch.len() > MAX_BATCH_EVENTS {
            return Err(StoreError::BatchTooLarge(batch.len()));
        }
        if batch.is_empty() {
            return Ok(AppendOutcome::default());
        }
        if self.shared.health.is_failed() {
            return Err(self.shared.health.refusal());
        }
        let bytes = batch_bytes(&batch);
        if !self
            .shared
            .queue
            .reserve(bytes, self.shared.options.queue_bytes)
        {
            return Err(StoreError::Unavailable(
                "write queue full; try again shortly".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let queue = self
            .queue
            .as_ref()
            .expect("queue lives as long as the store");
        if let Err(e) = queue.try_send(Job {
            batch,
            bytes,
            reply,
        }) {
            self.shared.queue.release(bytes);
            return Err(StoreError::Unavailable(match e {
                mpsc::TrySendError::Full(_) => "write queue full; try again shortly".into(),
                mpsc::TrySendError::Disconnected(_) => "the embedded store is closing".into(),
            }));
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the committer stopped".into()))?
    }

    async fn parcel_events(&self, tn: &TrackingNumber) -> Result<Vec<StoredEvent>, StoreError> {
        let shared = self.shared.clone();
        let tn = *tn;
        tokio::task::spawn_blocking(move || shared.read(|t| Self::read_parcel(t, &tn)))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task: {e}")))?
    }

    async fn tracking_numbers(
        &self,
        after: Option<TrackingNumber>,
        limit: usize,
    ) -> Result<Vec<TrackingNumber>, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.read(|t| Self::read_numbers(t, after, limit)))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task: {e}")))?
    }

    /// Ready while the database is open: lookups work even while writes are failing.
    async fn check_ready(&self) -> Result<(), StoreError> {
        match self.shared.tables.try_read() {
            Ok(tables) if tables.is_none() => Err(StoreError::Unavailable(
                "the embedded store could not re-open its database after a write error".into(),
            )),
            // Open, or being re-opened (lookups wait a moment).
            _ => Ok(()),
        }
    }

    fn write_health(&self) -> WriteHealth {
        self.shared.health.snapshot()
    }

    fn memory_use(&self) -> Vec<MemoryUse> {
        let options = &self.shared.options;
        let (cache, write_buffers, pinned) = match self.shared.tables.try_read() {
            Ok(tables) => tables.as_ref().map_or((0, 0, 0), |t| {
                (t.cache_bytes(), t.write_buffer_bytes(), t.pinned_bytes())
            }),
            // Being re-opened: nothing is held.
            Err(_) => (0, 0, 0),
        };
        vec![
            MemoryUse {
                consumer: "block_cache",
                bytes: cache,
                bound_bytes: Some(options.cache_bytes),
            },
            MemoryUse {
                consumer: "write_buffers",
                bytes: write_buffers,
                bound_bytes: Some(options.write_buffer_bytes),
            },
            MemoryUse {
                consumer: "pinned_index_and_filter_blocks",
                bytes: pinned,
                bound_bytes: None,
            },
            MemoryUse {
                consumer: "watched_parcels",
                bytes: self.shared.watched_bytes.load(Ordering::Relaxed),
                bound_bytes: None,
            },
            MemoryUse {
                consumer: "write_queue",
                bytes: self.shared.queue.bytes(),
                bound_bytes: Some(options.queue_bytes),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwritable_directory_is_named_with_what_was_being_done() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        // A directory cannot be created under a regular file, whoever runs the test.
        let dir = file.path().join("store");
        match EmbeddedStore::open(&dir, EmbeddedOptions::default()) {
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains("creating the store directory")
                        && message.contains(&dir.display().to_string()),
                    "{message}"
                );
            }
            Ok(_) => panic!("opened a store under a regular file"),
        }
    }
}
