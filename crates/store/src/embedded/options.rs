//! The embedded store's settings: its memory bounds (each large consumer has one, in bytes),
//! its queue and group sizes, and how often it probes the disk after a write error.

use std::time::Duration;

/// Batches waiting for the committer at most; more get `Unavailable`.
pub const DEFAULT_QUEUE_BATCHES: usize = 1024;
/// Bytes of events waiting for the committer or being written at most; more get `Unavailable`.
pub const DEFAULT_QUEUE_BYTES: u64 = 64 << 20;
/// Events one group commit takes at most (batches are never split).
pub const DEFAULT_MAX_GROUP_EVENTS: usize = 50_000;
/// Bytes of the engine's block cache (blocks of tables read from disk).
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// Bytes of the engine's write buffers (memtables, active and being flushed, all keyspaces).
pub const DEFAULT_WRITE_BUFFER_BYTES: u64 = 128 << 20;
/// Parcels the in-memory set of watched parcels holds at most (about 28 MiB at the bound); past
/// it, ingest looks each parcel up in the keyspace instead (`outbox.rs`).
pub const DEFAULT_WATCHED_IN_MEMORY_MAX: usize = 1_000_000;
/// How often a store that stopped taking writes probes the disk.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The embedded store's settings.
///
/// The three byte bounds (`cache_bytes`, `write_buffer_bytes`, `queue_bytes`; 448 MiB by default,
/// sized for a 2 GiB node) cover the store's large consumers, reported with their current bytes
/// by `EventStore::memory_use`. Not under a setting: the index and filter blocks the engine pins
/// for its newest tables (reported; about 12 MiB after 17 million events), and the engine's
/// working memory — memtable entries' overhead beyond its own estimate, flush and compaction
/// buffers, memory the allocator keeps after memtables are freed — about 200 MiB more during a
/// long full-rate ingest (measured with the `ingest_rss` example).
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// Batches waiting for the committer at most.
    pub queue_batches: usize,
    /// Bytes (estimated in memory, see `queue.rs`) of batches waiting for the committer or
    /// being written at most; a batch arriving beyond it gets `Unavailable`. One batch is always
    /// taken when the queue is empty, whatever its size.
    pub queue_bytes: u64,
    /// Events one group commit takes at most.
    pub max_group_events: usize,
    /// Bytes of the engine's block cache.
    pub cache_bytes: u64,
    /// Bytes of the engine's write buffers (memtables): at half of it every memtable is flushed,
    /// at the bound writes wait for the flushes. Also the size of a new store's memtables (half).
    pub write_buffer_bytes: u64,
    /// How often a store that stopped taking writes probes the disk (doubling, up to 32×, while
    /// recoveries keep failing again).
    pub probe_interval: Duration,
    /// Undelivered push deliveries (pending, leased, dead) the outbox holds at most; a commit
    /// that would go over writes what fits and counts the rest (`push::admit`).
    pub outbox_capacity: u64,
    /// Watched parcels kept in memory at most, see [`DEFAULT_WATCHED_IN_MEMORY_MAX`].
    pub watched_in_memory_max: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            queue_batches: DEFAULT_QUEUE_BATCHES,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            max_group_events: DEFAULT_MAX_GROUP_EVENTS,
            cache_bytes: DEFAULT_CACHE_BYTES,
            write_buffer_bytes: DEFAULT_WRITE_BUFFER_BYTES,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            outbox_capacity: crate::push::DEFAULT_OUTBOX_CAPACITY,
            watched_in_memory_max: DEFAULT_WATCHED_IN_MEMORY_MAX,
        }
    }
}
