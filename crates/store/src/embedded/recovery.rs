//! How the embedded store comes back after a write error without a restart.
//!
//! After a failed write or fsync the engine's memory may be ahead of the disk (fjall applies a
//! batch to its memtables before the journal is fsync'd, and a failed fsync may have dropped
//! dirty pages), so retrying the same instance could acknowledge what is not durable. Instead,
//! as PostgreSQL does after a failed write, the store goes through crash recovery — but in the
//! process: while failed, the committer refuses every batch at once, and every
//! [`EmbeddedOptions::probe_interval`] (doubling, up to 32×, while recoveries keep failing
//! again) writes and fsyncs a small file in the data directory. Once that succeeds it closes the
//! database, waits until the old instance has closed its journal (its buffered bytes may still
//! reach the file when it does), opens the database again — fjall replays the journal, keeping
//! exactly the batches that are whole on disk — and reloads the `received` high-water mark.
//! Lookups wait during the re-open and are served before and after it.
//!
//! [`EmbeddedOptions::probe_interval`]: super::EmbeddedOptions::probe_interval

use std::io::Write;
use std::path::Path;
use std::sync::PoisonError;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use super::committer::{Committer, Job};
use super::outbox::PushState;
use super::tables::{JOURNAL_CLOSE_WAIT, Tables, wait_for_journal_closed};
use crate::StoreError;

/// The file a probe writes in the data directory (and removes).
const PROBE_FILE: &str = "write-probe";
/// Bytes a probe writes: a disk with less room than this stays failed without re-opening.
const PROBE_BYTES: usize = 1 << 20;
/// Largest factor applied to the probe interval while recoveries keep failing again.
const MAX_BACKOFF_SHIFT: u32 = 5;

impl Committer {
    /// One round of the failed state: refuses the batches that arrive until the next probe is
    /// due, probes, and re-opens the database if the probe succeeds. Returns `false` once the
    /// queue is closed (the store is being dropped).
    pub(super) fn recover(&mut self, rx: &mpsc::Receiver<Job>) -> bool {
        let shift = self
            .failures_in_a_row
            .saturating_sub(1)
            .min(MAX_BACKOFF_SHIFT);
        let due = Instant::now() + self.shared.options.probe_interval * (1 << shift);
        loop {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left) {
                Ok(job) => {
                    self.shared.queue.release(job.bytes);
                    let _ = job.reply.send(Err(self.shared.health.refusal()));
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        if let Err(e) = probe(&self.shared.dir) {
            self.shared.health.still_failing(&format!(
                "probe write in {}: {e}",
                self.shared.dir.display()
            ));
            return true;
        }
        match self.reopen() {
            Ok(received) => {
                self.received = received;
                self.shared.health.recovered();
                tracing::info!(
                    received,
                    "the embedded store re-opened after a write error and takes writes again"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-opening the embedded store failed; retrying later");
                self.shared.health.still_failing(&format!("re-open: {e}"));
            }
        }
        true
    }

    /// Closes the database and opens it again through fjall's crash recovery. Returns the
    /// `received` high-water mark found on disk. Lookups wait meanwhile (write lock).
    fn reopen(&self) -> Result<u64, StoreError> {
        let mut slot = self
            .shared
            .tables
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        drop(slot.take());
        let db_dir = self.shared.db_dir();
        wait_for_journal_closed(&db_dir, JOURNAL_CLOSE_WAIT)?;
        let tables = Tables::open(&db_dir, &self.shared.options)?;
        let received = tables.received()?;
        // The push state in memory may be ahead of what the journal kept: read it again.
        *self.shared.push_state() =
            PushState::load(&tables, self.shared.options.watched_in_memory_max)?;
        *slot = Some(tables);
        Ok(received)
    }
}

/// Writes [`PROBE_BYTES`] to a file in `dir`, fsyncs it and removes it.
fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_leaves_nothing_behind_and_names_its_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        probe(dir.path()).expect("probe in a writable directory");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        let missing = dir.path().join("missing");
        assert!(probe(&missing).is_err());
    }
}
