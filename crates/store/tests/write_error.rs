//! A write error (EFBIG from a file size limit, standing in for a full disk) stops the embedded
//! store from taking writes, `write_health` says why, and once writes work again the store comes
//! back by itself — re-opened through its crash recovery in the same process — with every event
//! acknowledged before and after stored exactly once.
//!
//! The limit (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored so writes fail with EFBIG instead of killing
//! the process) is set in a child process running this same binary, so the test harness's own
//! output never meets it. It is placed just after the end of what the journal holds (fjall
//! preallocates the file with zeros), after enough batches that the engine's own small files
//! (its version files, rewritten by background work) stay below it, and below the store's 1 MiB
//! probe write, so the store stays failed until the limit is lifted.
//!
//! Twice, because fjall buffers journal writes (8 KiB): a limit a little more than one buffer
//! past the end fails the next large batch while it is written into the journal (nothing
//! stored: `Unavailable`); a limit a few bytes past the end fails a small batch, which sits whole
//! in the buffer, when the buffer is flushed for the fsync (`OutcomeUnknown`: stored or not,
//! never in part).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rempart_domain::Event;
use rempart_store::contract::{event, number};
use rempart_store::embedded::{EmbeddedOptions, EmbeddedStore};
use rempart_store::{EventStore, StoreError};

const CHILD_DIR: &str = "REMPART_WRITE_ERROR_CHILD_DIR";
const CHILD_EVENTS: &str = "REMPART_WRITE_ERROR_CHILD_EVENTS";
/// Events of a batch several times larger than fjall's journal buffer (about 140 bytes each).
const LARGE_BATCH: u64 = 300;
/// Events of a batch that fits in fjall's journal buffer.
const SMALL_BATCH: u64 = 2;
/// Where the limit goes past the journal's end: for a large batch, past the first buffer flush;
/// for a small one, inside the batch.
const LARGE_MARGIN_BYTES: u64 = 9 << 10;
const SMALL_MARGIN_BYTES: u64 = 100;
/// The store's probe write; the limit stays below it so the probe fails while it holds.
const PROBE_BYTES: u64 = 1 << 20;
/// Batches acknowledged before the limit.
const BEFORE: u64 = 5;
/// Large batches acknowledged before the limit, so that the journal (about 45 KiB each) ends
/// beyond the engine's small files.
const FILLERS: u64 = 3;
/// The first batch number of the fillers, and of the batches after recovery.
const FILLER_START: u64 = 20_000;
const AFTER_START: u64 = 10_000;
/// Batches tried (and refused) under the limit after the failure.
const REFUSED: u64 = 3;
/// Batches appended after the store came back.
const AFTER: u64 = 20;
/// Longest wait for the store to come back once the limit is lifted.
const RECOVERY_WAIT: Duration = Duration::from_secs(60);

/// Batch `b` of `n` events: its own parcel, so what a batch stored can be read back alone.
fn batch(b: u64, n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| event(&format!("we:{b}:{i}"), number(b), i as i64))
        .collect()
}

/// Events of batch `b` stored, after checking none is stored twice.
async fn stored(store: &EmbeddedStore, b: u64) -> usize {
    let events = store.parcel_events(&number(b)).await.expect("lookup");
    let ids: HashSet<String> = events
        .iter()
        .map(|e| e.event.event_id.as_str().to_owned())
        .collect();
    assert_eq!(ids.len(), events.len(), "batch {b}: an event stored twice");
    assert!(
        ids.iter().all(|id| id.starts_with(&format!("we:{b}:"))),
        "batch {b}: foreign events"
    );
    events.len()
}

fn set_file_size_limit(bytes: u64) {
    // SAFETY: plain system calls on this process's own signal disposition and limits.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

/// Where the data of the store's only journal ends: fjall preallocates the file with zeros.
/// (A last batch ending in zero bytes makes this a few bytes early, which the margins absorb.)
fn journal_end(dir: &Path) -> u64 {
    let journals: Vec<_> = std::fs::read_dir(dir.join("db"))
        .expect("the engine's directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    let [journal] = journals.as_slice() else {
        panic!("one journal expected, found {journals:?}");
    };
    let bytes = std::fs::read(journal).expect("read the journal");
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p as u64 + 1)
}

/// The child: runs the whole scenario in-process; any broken rule panics (non-zero exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_error_child() {
    let (Ok(dir), Ok(n)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_EVENTS)) else {
        return;
    };
    let (dir, n): (&Path, u64) = (dir.as_ref(), n.parse().expect("events per batch"));
    let options = EmbeddedOptions {
        probe_interval: Duration::from_millis(20),
        ..EmbeddedOptions::default()
    };
    // (batch, events) acknowledged.
    let mut acked: Vec<(u64, u64)> = (0..BEFORE).map(|b| (b, n)).collect();
    acked.extend((FILLER_START..FILLER_START + FILLERS).map(|b| (b, LARGE_BATCH)));
    let store = EmbeddedStore::open(dir, options).expect("open");
    for &(b, events) in &acked {
        let _ = store
            .append(batch(b, events))
            .await
            .expect("append before the limit");
    }
    let margin = if n == SMALL_BATCH {
        SMALL_MARGIN_BYTES
    } else {
        LARGE_MARGIN_BYTES
    };
    let limit = journal_end(dir) + margin;
    assert!(
        limit < PROBE_BYTES,
        "journal too large for the test: {limit}"
    );
    set_file_size_limit(limit);

    let failed = BEFORE;
    let error = store
        .append(batch(failed, n))
        .await
        .expect_err("a write past the limit");
    let failure = store
        .write_health()
        .failure
        .expect("failed state after a write error");
    println!("batch {failed}: {error}\nstate: {}", failure.reason);
    let outcome_unknown = match &error {
        StoreError::OutcomeUnknown(_) => true,
        StoreError::Unavailable(_) => false,
        other => panic!("a failed write must be Unavailable or OutcomeUnknown, got {other:?}"),
    };
    assert_eq!(
        outcome_unknown,
        n == SMALL_BATCH,
        "failing to write a batch leaves nothing; failing to flush it is unknown: {error}"
    );
    assert!(
        failure.reason.contains("File too large"),
        "the state says why: {}",
        failure.reason
    );
    // While the limit holds, the probe fails: every append is refused, the state stays failed.
    for b in failed + 1..=failed + REFUSED {
        match store.append(batch(b, n)).await {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("File too large"), "{m}"),
            other => panic!("an append while failed must be refused, got {other:?}"),
        }
        tokio::time::sleep(options.probe_interval * 2).await;
        assert!(store.write_health().failure.is_some());
    }
    assert_eq!(store.write_health().recoveries, 0);
    // Lookups keep working while writes fail.
    store.check_ready().await.expect("ready for lookups");
    assert_eq!(stored(&store, 0).await, n as usize);

    set_file_size_limit(u64::MAX);
    let started = Instant::now();
    while store.write_health().failure.is_some() {
        assert!(
            started.elapsed() < RECOVERY_WAIT,
            "the store did not come back by itself: {:?}",
            store.write_health()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.write_health().recoveries, 1);

    // The failed batch: nothing of it if refused; all or nothing if its outcome is unknown.
    let kept = stored(&store, failed).await;
    println!("events of batch {failed} found after recovery: {kept}");
    if outcome_unknown {
        assert!(kept == 0 || kept == n as usize, "torn batch: {kept} of {n}");
        let again = store.append(batch(failed, n)).await.expect("resend");
        assert_eq!(again.duplicates, kept, "what survived counts as duplicates");
        assert_eq!(again.accepted + again.duplicates, n as usize);
        acked.push((failed, n));
    } else {
        assert_eq!(kept, 0, "a batch answered Unavailable must not be stored");
    }
    for b in failed + 1..=failed + REFUSED {
        assert_eq!(stored(&store, b).await, 0, "refused batch {b} stored");
    }
    for b in AFTER_START..AFTER_START + AFTER {
        let outcome = store
            .append(batch(b, n))
            .await
            .expect("append after recovery");
        assert_eq!(outcome.accepted, n as usize);
        acked.push((b, n));
    }
    let mut received = HashSet::new();
    for &(b, events) in &acked {
        assert_eq!(stored(&store, b).await, events as usize, "batch {b}");
        for e in store.parcel_events(&number(b)).await.expect("lookup") {
            assert!(
                received.insert(e.received),
                "received {} given twice",
                e.received
            );
        }
    }
    println!("acked {}", acked.len());
}

/// Runs the scenario in a child with batches of `n` events, then checks the disk in this process.
async fn scenario(n: u64) {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "write_error_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_EVENTS, n.to_string())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("acked "),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // What the child acknowledged is on disk, once: re-open in this process and resend it.
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("reopen");
    let fillers = (FILLER_START..FILLER_START + FILLERS).map(|b| (b, LARGE_BATCH));
    let others = (0..BEFORE).chain(AFTER_START..AFTER_START + AFTER);
    for (b, events) in others.map(|b| (b, n)).chain(fillers) {
        assert_eq!(stored(&store, b).await, events as usize, "batch {b}");
        let again = store.append(batch(b, events)).await.expect("resend");
        assert_eq!(again.duplicates, events as usize, "batch {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_failed_writing_is_refused_and_the_store_comes_back_with_every_ack_once() {
    scenario(LARGE_BATCH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_flush_failed_is_unknown_and_the_store_comes_back_with_every_ack_once() {
    scenario(SMALL_BATCH).await;
}
