//! Storage of scan events behind one trait, [`EventStore`].
//!
//! Invariants every backend keeps (the contract suite, [`contract`] behind the feature of that
//! name, checks them on every backend):
//! - `append` returns `Ok` only once every event of the batch is durable (fsync'd or committed):
//!   an acknowledged event survives a crash of the process or of the machine.
//! - `append` is idempotent by `event_id`: an id seen before (in an earlier batch or earlier in the
//!   same batch) counts as a duplicate and changes nothing.
//! - a batch is all or nothing: on `Err`, none of it is stored (on [`StoreError::OutcomeUnknown`],
//!   all of it or none).
//!
//! This crate knows nothing of HTTP or the shield.

mod codec;
#[cfg(feature = "contract")]
pub mod contract;
pub mod embedded;
pub mod push;
#[cfg(feature = "contract")]
pub mod push_contract;

use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use rempart_domain::{Event, StoredEvent, TrackingNumber};

/// Most events one `append` call takes (SPEC: a batch is at most 10,000 lines).
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Most events `parcel_events` returns for one parcel (the newest ones).
pub const MAX_PARCEL_EVENTS: usize = 1_000;
/// Most tracking numbers one `tracking_numbers` page returns.
pub const MAX_PAGE: usize = 100_000;

/// What an acknowledged batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct AppendOutcome {
    /// Events stored by this call.
    pub accepted: usize,
    /// Events whose `event_id` was already known; they changed nothing.
    pub duplicates: usize,
}

/// Why a store operation failed. On an `append` error nothing of the batch is stored, except
/// [`StoreError::OutcomeUnknown`]. The text reads once after a caller's "storage: " prefix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes or answer now (full queue, database down, disk error).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// `append` only: the batch was handed to the database for commit, then the answer was lost
    /// (connection closed, session ended), or the embedded store's fsync of it failed, so the
    /// whole batch may or may not be stored (never a part of it). Resending it is always safe:
    /// event ids already stored count as duplicates.
    #[error("outcome unknown, resending is safe: {0}")]
    OutcomeUnknown(String),
    /// A batch larger than [`MAX_BATCH_EVENTS`].
    #[error("batch of {0} events is over the limit of {MAX_BATCH_EVENTS}")]
    BatchTooLarge(usize),
    /// Stored bytes that do not decode: a bug or disk corruption.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A position in a store's change feed (see [`EventStore::changes_since`]). Kept by the caller
/// between calls; `ChangeCursor::default()` means "from now on".
///
/// A shared store numbers its changes in the order they were *made* (a database sequence),
/// which is not the order they become *visible*: a transaction that took a lower number may
/// commit after one that took a higher one. So the cursor is the highest number read plus the
/// lower numbers not visible when the feed passed them ([`PendingChanges`]), looked at again on
/// each call until their transaction can no longer be running. Each change is then read about
/// once, instead of re-reading a window of recent changes at every poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeCursor {
    /// Every change numbered at or below this was reported, except those in `pending`. `None`:
    /// not positioned yet ("from now on").
    pub after: Option<i64>,
    /// Numbers at or below `after` not visible when the feed passed them, in ascending order.
    pub pending: Vec<PendingChanges>,
    /// Resumed from a saved position ([`Self::resume`]): the store checks the position is one
    /// of its own (not ahead of its feed, as after the database was replaced) before using it.
    pub resumed: bool,
}

/// A run of change numbers `first..=last` not visible when the feed passed them: a transaction
/// still running, or one that will never commit (rolled back, or a duplicate event's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingChanges {
    pub first: i64,
    pub last: i64,
    /// After this, no transaction holding these numbers can still commit: they are dropped.
    pub until: Instant,
}

impl ChangeCursor {
    /// A cursor that reports every change numbered after `position` (from [`Self::position`]).
    /// Should the store's feed not have reached `position` (another database), the first call
    /// says it is not complete and starts from now.
    pub fn resume(position: i64) -> ChangeCursor {
        ChangeCursor {
            after: Some(position),
            pending: Vec::new(),
            resumed: true,
        }
    }

    /// A position to save: every change numbered at or below it has been reported; resuming
    /// from it reports the rest (and maybe some again). `None` before the first call.
    pub fn position(&self) -> Option<i64> {
        let after = self.after?;
        Some(
            self.pending
                .first()
                .map_or(after, |p| (p.first - 1).min(after)),
        )
    }
}

/// What [`EventStore::changes_since`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Parcels whose events changed, each once; a later call may name a parcel again.
    pub numbers: Vec<TrackingNumber>,
    /// The cursor to pass next time.
    pub next: ChangeCursor,
    /// The call stopped at its limit: call again now for the rest.
    pub more: bool,
    /// False when some changes could not be named (the store gave up following them): the
    /// caller must treat every parcel as changed.
    pub complete: bool,
}

/// Whether a store can take writes now (see [`EventStore::write_health`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteHealth {
    /// `None` while writes work; otherwise why and since when they do not.
    pub failure: Option<WriteFailure>,
    /// Times the store has recovered from a write failure by itself since it was opened.
    pub recoveries: u64,
}

/// Why a store stopped taking writes, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// For operators: what failed, and what the store is doing about it.
    pub reason: String,
    /// When writes stopped.
    pub since: SystemTime,
}

/// One large memory consumer of a store, with its bound (see [`EventStore::memory_use`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// A stable name for metrics, e.g. `block_cache`.
    pub consumer: &'static str,
    /// Bytes in use now (the engine's own estimate where it only estimates).
    pub bytes: u64,
    /// The configured bound, in bytes; `None` for a consumer no setting bounds directly (its
    /// size follows from other bounds and is stated where the store documents it).
    pub bound_bytes: Option<u64>,
}

/// A durable, idempotent log of scan events, keyed by tracking number.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Durably appends a batch (at most [`MAX_BATCH_EVENTS`]), all or nothing. Returns only once
    /// every accepted event is durable. Concurrent calls may share one fsync (group commit).
    async fn append(&self, batch: Vec<Event>) -> Result<AppendOutcome, StoreError>;

    /// A parcel's events (at most [`MAX_PARCEL_EVENTS`], the newest by `occurred_at`), in any order.
    /// Empty when the parcel is unknown.
    async fn parcel_events(&self, tn: &TrackingNumber) -> Result<Vec<StoredEvent>, StoreError>;

    /// One page of all known tracking numbers in ascending order, strictly after `after`, at
    /// most `limit` (capped at [`MAX_PAGE`]). An empty page means the end. The order is the
    /// store's own (byte order for the embedded store; on PostgreSQL the column's collation,
    /// which orders tracking numbers, upper-case letters and digits, as bytes in the C collation
    /// and the usual locales); callers need only that paging with `after` visits each once.
    async fn tracking_numbers(
        &self,
        after: Option<TrackingNumber>,
        limit: usize,
    ) -> Result<Vec<TrackingNumber>, StoreError>;

    /// Parcels whose events changed since `cursor` through *any* node sharing this store. Nodes
    /// poll it to keep their response cache and existence filter coherent. Reads at most
    /// `limit` changes per call ([`Changes::more`]: call again). No change visible after a call
    /// is missed by the calls that follow it; a parcel may be named more than once. When the
    /// store cannot name every change, [`Changes::complete`] is false and the caller must treat
    /// every parcel as changed.
    ///
    /// `ChangeCursor::default()` means "from now on": the first call positions the cursor and
    /// may report changes made shortly before it. The default implementation reports nothing:
    /// right for a store only one process can open (embedded), where every change goes through
    /// this node's own ingest path.
    async fn changes_since(
        &self,
        cursor: &ChangeCursor,
        limit: usize,
    ) -> Result<Changes, StoreError> {
        let _ = limit;
        Ok(Changes {
            numbers: Vec::new(),
            next: cursor.clone(),
            more: false,
            complete: true,
        })
    }

    /// Whether the store can serve reads now (for `/readyz`: "can serve lookups"). Writes may
    /// still be failing: see [`EventStore::write_health`].
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Whether the store can take writes now, and if not, why and since when. Cheap: no I/O.
    /// The default reports healthy: right for a store whose failures show up per call (a
    /// database server), not as a state of its own.
    fn write_health(&self) -> WriteHealth {
        WriteHealth::default()
    }

    /// The store's large memory consumers in this process, each with its bound, for metrics.
    /// Cheap: no I/O. The default reports none.
    fn memory_use(&self) -> Vec<MemoryUse> {
        Vec::new()
    }
}
