//! PostgreSQL stopped and started while appends run: appends during the outage fail cleanly
//! (`Unavailable`), the store recovers by itself, and every acknowledged event is there exactly
//! once. Alone in its test binary: it stops the machine's PostgreSQL for a few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rempart_store::contract::{event, number};
use rempart_store::{EventStore, StoreError};
use rempart_store_pg::testing::{self as pg, pg_ctl};
use rempart_store_pg::{PgOptions, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_event_is_lost_when_postgres_restarts() {
    let db = pg::TestDatabase::create().await;
    let options = PgOptions {
        connect_timeout: Duration::from_millis(500),
        pool_wait: Duration::from_millis(500),
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::connect(&db.url(), options).await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (store, stop, failures) = (store.clone(), stop.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut b = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..100)
                    .map(|i| event(&format!("o:{t}:{b}:{i}"), number(t * 10_000 + b), i))
                    .collect();
                match store.append(batch).await {
                    Ok(outcome) => {
                        assert_eq!(outcome.accepted + outcome.duplicates, 100);
                        acked.push(b);
                        b += 1;
                    }
                    Err(StoreError::Unavailable(_)) => {
                        // Resend the same batch later, as the ingest client would.
                        failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            (t, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    tokio::task::spawn_blocking(|| pg_ctl("stop"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        store.check_ready().await.is_err(),
        "the store should notice the database is down"
    );
    tokio::task::spawn_blocking(|| pg_ctl("start"))
        .await
        .unwrap();
    // Recovers on its own: appends succeed again through the same pool.
    let mut recovered = false;
    for _ in 0..100 {
        if store.check_ready().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the store did not recover after PostgreSQL came back"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked: HashMap<u64, Vec<u64>> = HashMap::new();
    for task in tasks {
        let (t, batches) = task.await.unwrap();
        acked.insert(t, batches);
    }
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "the outage never hit an append"
    );
    let mut total = 0;
    for (t, batches) in &acked {
        for b in batches {
            let events = store.parcel_events(&number(t * 10_000 + b)).await.unwrap();
            assert_eq!(
                events.len(),
                100,
                "acknowledged batch {t}:{b} has {} events",
                events.len()
            );
            total += 1;
        }
    }
    assert!(total > 0);
    drop(store);
    db.drop_now().await;
}
