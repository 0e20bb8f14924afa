//! The embedded store: one directory, no server, on [fjall], a log-structured merge tree.
//!
//! Why fjall: the workload is an append-heavy event log read by key prefix (a parcel's events).
//! An LSM tree turns appends into sequential writes, keeps keys ordered for prefix scans, and
//! recovers from its journal after a crash. fjall is pure Rust (no C++ toolchain, unlike RocksDB),
//! exposes atomic cross-keyspace write batches and an explicit `persist(SyncAll)`, which is what
//! group commit needs. redb (a copy-on-write B-tree) was the alternative: simpler, but every commit
//! rewrites a tree path, which costs more for this append pattern.
//!
//! **Group commit.** One committer thread owns all writes. `append` puts its batch on a bounded
//! queue and waits; the committer takes a batch, drains whatever else is queued (up to
//! [`EmbeddedOptions::max_group_events`]), deduplicates by `event_id` against the `ids` keyspace
//! and within the group, writes the whole group as **one** atomic write batch, makes it durable
//! with **one** fsync, and only then answers every waiter. Concurrent batches share one fsync.
//! A full queue answers `Unavailable` at once (the server turns it into 503) instead of queueing
//! without bound.
//!
//! **Fail-stop.** After any write or fsync error the store refuses every later append: after a
//! failed fsync the kernel may have dropped dirty pages, so retrying and acknowledging could lie.
//! Restarting the process recovers from the journal.
//!
//! Keyspaces: `events` (see `codec`), `ids` (event id → event key), `parcels` (tracking number →
//! nothing, for listing), `meta` (`received` high-water mark, written in the same batch).

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use rempart_domain::{Event, StoredEvent, TrackingNumber};
use tokio::sync::oneshot;

use crate::codec;
use crate::{AppendOutcome, EventStore, MAX_BATCH_EVENTS, MAX_PAGE, MAX_PARCEL_EVENTS, StoreError};

/// Batches waiting for the committer at most; more get `Unavailable`.
pub const DEFAULT_QUEUE_BATCHES: usize = 1024;
/// Events one group commit takes at most (batches are never split).
pub const DEFAULT_MAX_GROUP_EVENTS: usize = 50_000;
const RECEIVED_KEY: &[u8] = b"received";
/// File holding an exclusive lock so two processes never open the same directory.
const LOCK_FILE: &str = "rempart.lock";

#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    pub queue_batches: usize,
    pub max_group_events: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            queue_batches: DEFAULT_QUEUE_BATCHES,
            max_group_events: DEFAULT_MAX_GROUP_EVENTS,
        }
    }
}

/// Counters of the committer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub groups: AtomicU64,
    pub batches: AtomicU64,
    pub events_written: AtomicU64,
}

struct Job {
    batch: Vec<Event>,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

#[derive(Clone)]
struct Tables {
    db: Database,
    events: Keyspace,
    ids: Keyspace,
    parcels: Keyspace,
    meta: Keyspace,
}

pub struct EmbeddedStore {
    tables: Tables,
    queue: Option<mpsc::SyncSender<Job>>,
    committer: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    stats: Arc<CommitStats>,
    path: PathBuf,
    _lock: std::fs::File,
}

fn io_error(e: fjall::Error) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir` and starts its committer thread.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        assert!(options.queue_batches > 0 && options.max_group_events > 0);
        std::fs::create_dir_all(dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        if let Err(e) = lock.try_lock() {
            return Err(StoreError::Unavailable(format!(
                "{} is in use by another process ({e})",
                dir.display()
            )));
        }
        let db = Database::builder(dir.join("db"))
            .manual_journal_persist(true)
            .open()
            .map_err(io_error)?;
        let open = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(io_error)
        };
        let tables = Tables {
            events: open("events")?,
            ids: open("ids")?,
            parcels: open("parcels")?,
            meta: open("meta")?,
            db: db.clone(),
        };
        let received = match tables.meta.get(RECEIVED_KEY).map_err(io_error)? {
            None => 0,
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("received high-water mark".into()))?,
            ),
        };
        let (tx, rx) = mpsc::sync_channel(options.queue_batches);
        let failed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(CommitStats::default());
        let committer = {
            let tables = tables.clone();
            let failed = failed.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("rempart-commit".into())
                .spawn(move || {
                    Committer {
                        tables,
                        received,
                        failed,
                        stats,
                        max_group_events: options.max_group_events,
                    }
                    .run(rx)
                })?
        };
        tracing::info!(dir = %dir.display(), received, "embedded store open");
        Ok(EmbeddedStore {
            tables,
            queue: Some(tx),
            committer: Some(committer),
            failed,
            stats,
            path: dir.to_owned(),
            _lock: lock,
        })
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_parcel(tables: &Tables, tn: &TrackingNumber) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        // Newest first, so the cap keeps the newest events.
        for guard in tables.events.prefix(tn.as_bytes()).rev() {
            let (key, value) = guard.into_inner().map_err(io_error)?;
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
            let key = guard.key().map_err(io_error)?;
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
        // Closing the queue lets the committer finish what it holds and exit.
        drop(self.queue.take());
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
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
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "the embedded store stopped after a write error; restart the node".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let queue = self
            .queue
            .as_ref()
            .expect("queue lives as long as the store");
        queue.try_send(Job { batch, reply }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                StoreError::Unavailable("write queue full; try again shortly".into())
            }
            mpsc::TrySendError::Disconnected(_) => {
                StoreError::Unavailable("the embedded store is closing".into())
            }
        })?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the committer stopped".into()))?
    }

    async fn parcel_events(&self, tn: &TrackingNumber) -> Result<Vec<StoredEvent>, StoreError> {
        let tables = self.tables.clone();
        let tn = *tn;
        tokio::task::spawn_blocking(move || Self::read_parcel(&tables, &tn))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task: {e}")))?
    }

    async fn tracking_numbers(
        &self,
        after: Option<TrackingNumber>,
        limit: usize,
    ) -> Result<Vec<TrackingNumber>, StoreError> {
        let tables = self.tables.clone();
        tokio::task::spawn_blocking(move || Self::read_numbers(&tables, after, limit))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task: {e}")))?
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "the embedded store stopped after a write error".into(),
            ));
        }
        Ok(())
    }
}

struct Committer {
    tables: Tables,
    received: u64,
    failed: Arc<AtomicBool>,
    stats: Arc<CommitStats>,
    max_group_events: usize,
}

impl Committer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut events = first.batch.len();
            let mut group = vec![first];
            while events < self.max_group_events {
                match rx.try_recv() {
                    Ok(job) => {
                        events += job.batch.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            if self.failed.load(Ordering::Acquire) {
                for job in group {
                    let _ = job.reply.send(Err(StoreError::Unavailable(
                        "the embedded store stopped after a write error; restart the node".into(),
                    )));
                }
                continue;
            }
            let started = Instant::now();
            let before = self.received;
            match self.commit(&group) {
                Ok(outcomes) => {
                    self.stats.groups.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .batches
                        .fetch_add(group.len() as u64, Ordering::Relaxed);
                    self.stats
                        .events_written
                        .fetch_add(self.received - before, Ordering::Relaxed);
                    tracing::trace!(
                        batches = group.len(),
                        events,
                        micros = started.elapsed().as_micros() as u64,
                        "group committed"
                    );
                    for (job, outcome) in group.into_iter().zip(outcomes) {
                        let _ = job.reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "write failed; the embedded store stops taking writes");
                    self.failed.store(true, Ordering::Release);
                    self.received = before;
                    for job in group {
                        let _ = job
                            .reply
                            .send(Err(StoreError::Unavailable(format!("write failed: {e}"))));
                    }
                }
            }
        }
    }

    /// Writes a group as one atomic batch and makes it durable with one fsync.
    fn commit(&mut self, group: &[Job]) -> Result<Vec<AppendOutcome>, StoreError> {
        let t = &self.tables;
        let mut seen: HashSet<&str> = HashSet::new();
        let mut batch = t.db.batch();
        let mut outcomes = Vec::with_capacity(group.len());
        for job in group {
            let mut outcome = AppendOutcome::default();
            for event in &job.batch {
                let id = event.event_id.as_str();
                if seen.contains(id) || t.ids.get(id.as_bytes()).map_err(io_error)?.is_some() {
                    outcome.duplicates += 1;
                    continue;
                }
                seen.insert(id);
                self.received += 1;
                let key =
                    codec::event_key(&event.tracking_number, event.occurred_at, self.received);
                batch.insert(&t.events, key.to_vec(), codec::encode_value(event));
                batch.insert(&t.ids, id.as_bytes().to_vec(), key.to_vec());
                batch.insert(
                    &t.parcels,
                    event.tracking_number.as_bytes().to_vec(),
                    Vec::new(),
                );
                outcome.accepted += 1;
            }
            outcomes.push(outcome);
        }
        if batch.is_empty() {
            return Ok(outcomes);
        }
        batch.insert(
            &t.meta,
            RECEIVED_KEY.to_vec(),
            self.received.to_be_bytes().to_vec(),
        );
        batch.commit().map_err(io_error)?;
        t.db.persist(PersistMode::SyncAll).map_err(io_error)?;
        Ok(outcomes)
    }
}
