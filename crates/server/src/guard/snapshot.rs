//! The existence filter saved beside the embedded store, so that a node restarted under a flood
//! refuses unknown numbers from its first request (issue 14). Design and trade-off, also in
//! docs/shield.md ("Restarts"):
//!
//! - **Written at a clean stop only**, once the listeners have drained and no ingest task is left
//!   (so every acknowledged number is in the filter), atomically: a temporary file, fsync,
//!   rename, fsync of the directory. A filter that is not exact (never built, or its recent set
//!   overflowed) is not written.
//! - **Consumed at start**: read, then deleted (and the deletion made durable) *before* the node
//!   can write anything, then restored. So a snapshot on disk always describes the store as it
//!   is: every writer of the data directory (`rempart serve`, `rempart import`) removes it before
//!   its first write, and a node that crashes leaves none behind.
//! - **Otherwise, not ready until rebuilt**: missing, damaged, another format or another hash:
//!   the filter is rebuilt from storage as before, and the public `/readyz` answers 503 until it
//!   is in force (a load balancer keeps customers, and floods, on other nodes meanwhile).
//!
//! - **Shared (PostgreSQL) stores**: other nodes write while this one is down, so the snapshot
//!   carries the change feed's position at the stop (every change up to it is in the filter);
//!   at start the feed resumes from it, and the node is not ready until the feed has read to
//!   its end (the numbers stored meanwhile learned). A position the database has not reached
//!   (another database) makes the feed start afresh and the filter rebuild.
//!
//! Why no periodic snapshot: the embedded store's trait exposes no position (sequence, count) to
//! say which numbers a snapshot taken while writes continue would lack, so after a crash such a
//! snapshot could hide parcels stored after it.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rempart_shield::{ExistenceFilter, SnapshotError, SnapshotMeta};
use tokio::runtime::Runtime;

use super::Guard;
use crate::settings::{Settings, StoreKind};

/// How long start waits for a first build of the filter before saying it listens (a small store
/// is listed in milliseconds: its node is ready at once; a large one is not ready, `/readyz`
/// 503, until the build is in place).
const FIRST_BUILD_WAIT: Duration = Duration::from_secs(2);

/// The snapshot's file in the data directory.
pub const FILE: &str = "existence-filter.snap";
const TEMP: &str = "existence-filter.snap.tmp";

/// What [`restore`] made of a snapshot.
#[derive(Debug)]
pub enum Restored {
    /// The filter is in force: `numbers` built plus `recent` added since; `position`: the change
    /// feed's at the stop (shared stores; 0 for the embedded store).
    Yes {
        numbers: usize,
        recent: usize,
        position: i64,
    },
    /// No usable snapshot: rebuild (why, for the log).
    No(String),
}

fn embedded(settings: &Settings) -> bool {
    matches!(settings.store.store, StoreKind::Embedded)
}

/// Start, before anything can write to the store: reads and deletes the snapshot (even with the
/// shield off: writes are about to follow).
pub fn take_at_start(settings: &Settings) -> Result<Vec<u8>, String> {
    take(&settings.store.data)
}

/// Start, once the guard exists: restores the snapshot into the filter unless demo data was
/// written to an embedded store since it was read (on a shared store the change feed brings
/// those). When the filter is in force, the change feed's position it was saved at.
pub fn restore_at_start(
    guard: &Guard,
    settings: &Settings,
    snapshot: Result<Vec<u8>, String>,
    demo_wrote: bool,
) -> Option<i64> {
    let shield = guard.shield()?;
    let demo_wrote = demo_wrote && embedded(settings);
    let outcome = match (snapshot, demo_wrote) {
        (Err(why), _) => Restored::No(why),
        (Ok(_), true) => Restored::No("demo data written since".into()),
        (Ok(bytes), false) => restore(&bytes, &shield.filter),
    };
    match outcome {
        Restored::Yes {
            numbers,
            recent,
            position,
        } => {
            shield
                .filter_restored
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                numbers,
                recent,
                position,
                "existence filter restored from its snapshot"
            );
            Some(position)
        }
        Restored::No(why) => {
            tracing::info!(%why, "existence filter not restored: rebuilding; not ready until built");
            None
        }
    }
}

/// Start, before the listening line: waits up to [`FIRST_BUILD_WAIT`] for the filter.
pub fn wait_for_first_build(guard: &Guard, rt: &Runtime) {
    let started = Instant::now();
    rt.block_on(async {
        while !guard.filter_ready() && started.elapsed() < FIRST_BUILD_WAIT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// Clean stop, once the listeners drained: saves the filter.
///
/// Embedded store: once every task of the ingest runtime has ended, so that every acknowledged
/// number is in the filter; a task still alive after `grace` might be an append whose number
/// never reaches the filter: nothing is saved then. Shared store: with `feed_position`, read
/// before the filter (which only grows meanwhile): every change up to it is in the filter, and
/// a restart reads the feed from there, so appends still in flight need no wait (their numbers
/// are past the position, or pending below it). On a shared store the ingest runtime also runs
/// the database connections' tasks, which live on until the store is closed.
pub fn save_at_stop(
    guard: &Guard,
    settings: &Settings,
    feed_position: impl FnOnce() -> Option<i64>,
    ingest: &Runtime,
    grace: Duration,
) {
    let Some(shield) = guard.shield() else {
        return;
    };
    let started = Instant::now();
    let position = match embedded(settings) {
        true => {
            let metrics = ingest.metrics();
            while metrics.num_alive_tasks() > 0 && started.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(5));
            }
            if metrics.num_alive_tasks() > 0 {
                tracing::warn!(
                    "existence filter not saved: ingest tasks still running at shutdown"
                );
                return;
            }
            0
        }
        false => match feed_position() {
            Some(position) => position,
            None => {
                tracing::info!("existence filter not saved: the change feed was never read");
                return;
            }
        },
    };
    match save(&settings.store.data, &shield.filter, position) {
        Ok(bytes) => tracing::info!(
            bytes,
            position,
            took_ms = started.elapsed().as_millis() as u64,
            "existence filter saved"
        ),
        Err(why) => tracing::warn!(%why, "existence filter not saved; the next start rebuilds it"),
    }
}

/// Reads and deletes the snapshot in `dir`. Call before anything can write to the store: from
/// the first write on, a snapshot left on disk would be stale.
pub fn take(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no snapshot (first start, or the last stop was not clean)".into());
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    // A snapshot that stays on disk could be read again after writes: never trust it.
    discard(dir).map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
    Ok(bytes)
}

/// Puts a snapshot read by [`take`] in force, when it is sound and was written at a clean stop.
pub fn restore(bytes: &[u8], filter: &ExistenceFilter) -> Restored {
    let accept = |meta: &SnapshotMeta| match meta.clean {
        true => Ok(()),
        false => Err("not written at a clean stop".to_owned()),
    };
    match filter.restore(bytes, accept) {
        Ok(meta) => Restored::Yes {
            numbers: filter.len(),
            recent: filter.recent_len(),
            position: meta.position,
        },
        Err(e) => Restored::No(format!("snapshot refused: {e}")),
    }
}

/// Deletes the snapshot in `dir`, if any, durably. Every writer of the store calls it before
/// its first write.
pub fn discard(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(FILE)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Saves `filter` in `dir` (clean stop) with the change feed's `position` (0 for none).
/// Returns the bytes written, or why nothing was.
pub fn save(dir: &Path, filter: &ExistenceFilter, position: i64) -> Result<usize, String> {
    let meta = SnapshotMeta {
        clean: true,
        position,
        written_unix_s: crate::clock::unix_now(),
    };
    let bytes = filter.snapshot(meta).map_err(|e| match e {
        SnapshotError::NotBuilt => "the filter is not exact (not built, or overflowed)".to_owned(),
        other => other.to_string(),
    })?;
    write_atomically(dir, &bytes).map_err(|e| format!("cannot write the snapshot: {e}"))?;
    Ok(bytes.len())
}

/// Temporary file, fsync, rename over the snapshot, fsync of the directory: after a crash the
/// snapshot is the old one, the new one, or none, never a part of one (and a part would fail
/// its checksum anyway).
fn write_atomically(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A node on a shared database may never have written to its data directory.
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(TEMP);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, dir.join(FILE))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> ExistenceFilter {
        let f = ExistenceFilter::new(100);
        f.begin_rebuild();
        f.finish_rebuild(&[*b"RR123456785FR", *b"6A12345678905"])
            .unwrap();
        f
    }

    #[test]
    fn a_data_directory_never_written_to_is_created() {
        // A node on a shared database writes nothing to its data directory before its stop.
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("rempart-data");
        save(&dir, &built(), 7).unwrap();
        assert!(dir.join(FILE).exists());
    }

    #[test]
    fn a_saved_filter_is_restored_once() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &built(), 42).unwrap();
        assert!(!dir.path().join(TEMP).exists());
        let bytes = take(dir.path()).unwrap();
        assert!(
            !dir.path().join(FILE).exists(),
            "consumed: writes from now on would make it stale"
        );
        assert!(take(dir.path()).is_err());
        let f = ExistenceFilter::new(100);
        assert!(matches!(
            restore(&bytes, &f),
            Restored::Yes {
                numbers: 2,
                recent: 0,
                position: 42
            }
        ));
        assert!(f.is_built());
    }

    #[test]
    fn a_damaged_snapshot_is_deleted_and_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &built(), 42).unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, bytes).unwrap();
        let bytes = take(dir.path()).unwrap();
        assert!(!path.exists());
        let f = ExistenceFilter::new(100);
        assert!(matches!(restore(&bytes, &f), Restored::No(_)));
        assert!(!f.is_built());
    }

    #[test]
    fn an_unbuilt_filter_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        assert!(save(dir.path(), &ExistenceFilter::new(100), 0).is_err());
        assert!(!dir.path().join(FILE).exists());
    }
}
