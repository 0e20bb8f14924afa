//! The fjall database behind the embedded store: opening it within the memory bounds of
//! [`EmbeddedOptions`], reading the `received` high-water mark, moving memtables to disk (on close,
//! and when the write buffers reach their bound), and measuring what it holds in memory.
//!
//! What fjall's open does (fjall 3.1, `Database::recover`): it replays every journal file into
//! memtables — the sealed journals whole, and the active one batch by batch, skipping items
//! already in tables (but still reading and checking each, with a lookup per item) — then starts
//! its flush and compaction workers. Memtables live only in memory and in the journal, so a store
//! dropped with full memtables is replayed like a crashed one, and even a flushed store reads its
//! whole active journal (up to 64 MiB and more) again.
//!
//! [`Tables::close`] therefore writes every memtable to a table, waits until fjall has deleted
//! the sealed journals they covered, closes the database, and empties the active journal: every
//! item in it is then in a table. An empty active journal is a state fjall reaches by itself
//! after rotating its journal; the next open reads nothing and takes its sequence numbers from
//! the tables. If anything is left in memory (the flush timed out, a journal remains), the
//! journal is kept and the next open replays it as after a crash.

use std::path::Path;
use std::time::{Duration, Instant};

use fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions};

use super::EmbeddedOptions;
use crate::StoreError;

pub(super) const RECEIVED_KEY: &[u8] = b"received";
/// Names of the keyspaces; the first holds the events and most of the bytes. `push` holds
/// endpoints, subscriptions and the outbox (`push_codec.rs`).
const KEYSPACES: [&str; 5] = ["events", "ids", "parcels", "meta", "push"];
/// How often a wait for fjall's flushes looks again.
const FLUSH_POLL: Duration = Duration::from_millis(5);
/// Longest wait for a closed engine instance to close its journal file.
pub(super) const JOURNAL_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// The extension of fjall's journal files.
const JOURNAL_EXTENSION: &str = "jnl";

/// An error of the engine, naming what the store was doing.
pub(super) fn engine(what: &str) -> impl Fn(fjall::Error) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("embedded store: {what}: {}", describe(&e)))
}

/// An engine error in words for operators (fjall's own `Display` is its `Debug`).
pub(super) fn describe(e: &fjall::Error) -> String {
    match e {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => io.to_string(),
        fjall::Error::Poisoned => {
            "the engine stopped writing after an earlier write failure (its own, or a background flush or compaction)".into()
        }
        fjall::Error::Locked => "the database is locked by another instance".into(),
        other => format!("{other:?}"),
    }
}

/// One open fjall database and its keyspaces. Dropping it closes the database (without
/// flushing: see [`Tables::flush_memtables`]).
pub(super) struct Tables {
    pub(super) db: Database,
    pub(super) events: Keyspace,
    pub(super) ids: Keyspace,
    pub(super) parcels: Keyspace,
    pub(super) meta: Keyspace,
    pub(super) push: Keyspace,
}

impl Tables {
    /// Opens (creating if needed) the database in `dir`, through fjall's crash recovery.
    pub(super) fn open(dir: &Path, options: &EmbeddedOptions) -> Result<Tables, StoreError> {
        let opening = format!("opening the database in {}", dir.display());
        let db = Database::builder(dir)
            .manual_journal_persist(true)
            .cache_size(options.cache_bytes)
            .open()
            .map_err(engine(&opening))?;
        // Used only when a keyspace is created: an existing store keeps the size it was created
        // with, and the committer's own bound on all write buffers applies to it as well.
        let memtable_bytes = (options.write_buffer_bytes / 2).max(1 << 20);
        let open = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable_bytes)
            })
            .map_err(engine(&opening))
        };
        let [events, ids, parcels, meta, push] = KEYSPACES;
        Ok(Tables {
            events: open(events)?,
            ids: open(ids)?,
            parcels: open(parcels)?,
            meta: open(meta)?,
            push: open(push)?,
            db,
        })
    }

    fn keyspaces(&self) -> [&Keyspace; 5] {
        [
            &self.events,
            &self.ids,
            &self.parcels,
            &self.meta,
            &self.push,
        ]
    }

    /// The `received` number of the last stored event (0 for an empty store).
    pub(super) fn received(&self) -> Result<u64, StoreError> {
        match self
            .meta
            .get(RECEIVED_KEY)
            .map_err(engine("reading the received high-water mark"))?
        {
            None => Ok(0),
            Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt("received high-water mark".into())
            })?)),
        }
    }

    /// Bytes in memtables, active and sealed (fjall's estimate: keys, values and entry headers).
    pub(super) fn write_buffer_bytes(&self) -> u64 {
        self.db.write_buffer_size()
    }

    /// Bytes of blocks in the block cache.
    pub(super) fn cache_bytes(&self) -> u64 {
        self.db.cache_size()
    }

    /// Bytes of index and filter blocks the engine keeps pinned in memory, outside the cache
    /// (those of the newest tables; more tables go through the cache).
    pub(super) fn pinned_bytes(&self) -> u64 {
        self.keyspaces()
            .iter()
            .map(|k| (k.tree.pinned_filter_size() + k.tree.pinned_block_index_size()) as u64)
            .sum()
    }

    /// Whether a memtable is waiting to be written to a table.
    pub(super) fn flush_pending(&self) -> bool {
        self.keyspaces()
            .iter()
            .any(|k| k.sealed_memtable_count() > 0)
    }

    /// Whether some written item is only in memory and the journal.
    fn unflushed(&self) -> bool {
        self.keyspaces()
            .iter()
            .any(|k| k.tree.get_highest_memtable_seqno().is_some())
    }

    /// Seals every non-empty memtable and hands it to fjall's flush workers (not waiting).
    pub(super) fn seal_memtables(&self) -> Result<(), StoreError> {
        for keyspace in self.keyspaces() {
            keyspace
                .rotate_memtable()
                .map_err(engine("sealing a memtable"))?;
        }
        Ok(())
    }

    /// Writes every memtable to a table and waits (at most `timeout`) until fjall has deleted
    /// the sealed journals: then every item of the active journal is in a table. Returns whether
    /// that happened in time. The caller must not write meanwhile.
    fn flush_memtables(&self, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        self.seal_memtables()?;
        while self.unflushed() || self.db.journal_count() > 1 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(FLUSH_POLL);
        }
        Ok(true)
    }

    /// Closes the database so that the next open has nothing to replay (see the module
    /// comment); waits at most `timeout` for the flushes. Returns whether the journal was emptied.
    pub(super) fn close(self, db_dir: &Path, timeout: Duration) -> Result<bool, StoreError> {
        let flushed = self.flush_memtables(timeout)?;
        drop(self);
        if !flushed {
            return Ok(false);
        }
        wait_for_journal_closed(db_dir, JOURNAL_CLOSE_WAIT)?;
        let journals = journal_files(db_dir)
            .map_err(|e| StoreError::Unavailable(format!("listing the journal: {e}")))?;
        let [journal] = journals.as_slice() else {
            return Ok(false);
        };
        let emptying = |e| StoreError::Unavailable(format!("emptying {}: {e}", journal.display()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(journal)
            .map_err(emptying)?;
        file.set_len(0).map_err(emptying)?;
        file.sync_all().map_err(emptying)?;
        Ok(true)
    }
}

fn is_journal(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == JOURNAL_EXTENSION)
}

fn journal_files(db_dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(db_dir)? {
        let path = entry?.path();
        if is_journal(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// Waits until no file descriptor of this process refers to a journal in `db_dir` (canonical).
/// A closed engine instance's journal writer may outlive it briefly on a worker thread, and
/// flushes its buffer into the file when it closes: that must happen before the file is
/// recovered or emptied. Where `/proc/self/fd` does not exist there is nothing to check.
pub(super) fn wait_for_journal_closed(db_dir: &Path, timeout: Duration) -> Result<(), StoreError> {
    let deadline = Instant::now() + timeout;
    while journal_open(db_dir) {
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "the previous instance of the database in {} did not close its journal within {} s",
                db_dir.display(),
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn journal_open(db_dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.parent() == Some(db_dir) && is_journal(&target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_close_empties_the_journal_and_sequence_numbers_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_dir = dir.path().canonicalize().expect("canonical").join("db");
        let options = EmbeddedOptions::default();
        let mut last_seqno = 0;
        for round in 0..3u64 {
            let tables = Tables::open(&db_dir, &options).expect("open");
            assert!(
                tables.db.seqno() >= last_seqno,
                "round {round}: sequence numbers restarted at {} after {last_seqno}",
                tables.db.seqno()
            );
            assert!(!tables.unflushed(), "round {round}: something was replayed");
            for i in 0..100u64 {
                tables
                    .meta
                    .insert(RECEIVED_KEY, (round * 100 + i).to_be_bytes())
                    .expect("insert");
            }
            last_seqno = tables.db.seqno();
            assert!(
                tables
                    .close(&db_dir, Duration::from_secs(60))
                    .expect("close")
            );
            let journals = journal_files(&db_dir).expect("list");
            assert_eq!(journals.len(), 1);
            assert_eq!(std::fs::metadata(&journals[0]).expect("size").len(), 0);
        }
        let tables = Tables::open(&db_dir, &options).expect("open");
        assert_eq!(
            tables.received().expect("received"),
            299,
            "the newest write wins"
        );
    }

    #[test]
    fn an_open_journal_is_seen_until_it_is_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_dir = dir.path().canonicalize().expect("canonical");
        let file = std::fs::File::create(db_dir.join("7.jnl")).expect("create");
        let other = std::fs::File::create(db_dir.join("lock")).expect("create");
        if std::fs::read_dir("/proc/self/fd").is_ok() {
            assert!(journal_open(&db_dir));
            assert!(wait_for_journal_closed(&db_dir, Duration::from_millis(20)).is_err());
        }
        drop(file);
        assert!(!journal_open(&db_dir), "other files do not count");
        wait_for_journal_closed(&db_dir, Duration::from_millis(20)).expect("closed");
        drop(other);
    }
}
