//! PostgreSQL stopped (fast, then immediate) and started again while appends run, on a cluster of
//! this test's own: appends during an outage fail cleanly (`Unavailable`: nothing stored;
//! `OutcomeUnknown` for a commit in flight: all or nothing), the store recovers by itself, and
//! every acknowledged event is there exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rempart_store::contract::{event, number};
use rempart_store::{EventStore, StoreError};
use rempart_store_pg::testing::{Cluster, StopMode, TestDatabase};
use rempart_store_pg::{PgOptions, PgStore};

const WRITERS: u64 = 4;
const BATCH: usize = 100;

/// Appends batches until `stop`, resending a failed batch as the ingest client would; returns
/// the acknowledged batches.
async fn writer(
    t: u64,
    store: Arc<PgStore>,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
) -> Vec<u64> {
    let mut acked = Vec::new();
    let mut b = 0u64;
    // Whether the current batch may be stored already (an earlier try's outcome is unknown).
    let mut maybe_stored = false;
    while !stop.load(Ordering::Relaxed) {
        let batch = (0..BATCH as i64)
            .map(|i| event(&format!("o:{t}:{b}:{i}"), number(t * 10_000 + b), i))
            .collect();
        match store.append(batch).await {
            Ok(outcome) => {
                if maybe_stored {
                    assert!(
                        outcome.accepted == BATCH || outcome.duplicates == BATCH,
                        "batch {t}:{b} was partly stored: {outcome:?}"
                    );
                } else {
                    // Every earlier try said `Unavailable`: none of it was stored.
                    assert_eq!(outcome.accepted, BATCH, "batch {t}:{b}");
                }
                acked.push(b);
                b += 1;
                maybe_stored = false;
            }
            Err(e) => {
                match e {
                    StoreError::Unavailable(_) => {}
                    StoreError::OutcomeUnknown(_) => maybe_stored = true,
                    e => panic!("unexpected error: {e}"),
                }
                failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    acked
}

async fn outage(cluster: &Arc<Cluster>, store: &PgStore, mode: StopMode) {
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop(mode))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        store.check_ready().await.is_err(),
        "the store should notice the database is down ({mode:?} stop)"
    );
    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.restart())
        .await
        .unwrap();
    // Recovers on its own: the same pool works again (a hang guard, not a timing assertion).
    for _ in 0..100 {
        if store.check_ready().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the store did not recover after PostgreSQL came back ({mode:?} stop)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_event_is_lost_when_postgres_restarts() {
    let cluster = Arc::new(Cluster::start());
    let db = TestDatabase::create_in(&cluster).await;
    let options = PgOptions {
        connect_timeout: Duration::from_millis(500),
        pool_wait: Duration::from_millis(500),
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::connect(&db.url(), options).await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|t| {
            let writing = writer(t, store.clone(), stop.clone(), failures.clone());
            tokio::spawn(async move { (t, writing.await) })
        })
        .collect();
    for mode in [StopMode::Fast, StopMode::Immediate] {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let before = failures.load(Ordering::Relaxed);
        outage(&cluster, &store, mode).await;
        assert!(
            failures.load(Ordering::Relaxed) > before,
            "the {mode:?} outage never hit an append"
        );
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked: HashMap<u64, Vec<u64>> = HashMap::new();
    for task in tasks {
        let (t, batches) = task.await.unwrap();
        acked.insert(t, batches);
    }
    let mut total = 0;
    for (t, batches) in &acked {
        for b in batches {
            let events = store.parcel_events(&number(t * 10_000 + b)).await.unwrap();
            assert_eq!(
                events.len(),
                BATCH,
                "acknowledged batch {t}:{b} has {} events",
                events.len()
            );
            total += 1;
        }
    }
    assert!(total > 0);
}
