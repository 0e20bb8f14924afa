//! The change feed on a real PostgreSQL (the cluster this test process starts for itself):
//! changes made through one store are seen through another, each about once, including those
//! whose transaction commits after a later one (the case a plain "read forward" misses).

use std::collections::HashSet;
use std::time::Duration;

use rempart_domain::TrackingNumber;
use rempart_store::contract::{event, number};
use rempart_store::{ChangeCursor, Changes, EventStore};
use rempart_store_pg::testing as pg;
use rempart_store_pg::{PgOptions, PgStore};

/// A database and two stores on it (two nodes), with this overlap window.
async fn two_stores(window: Duration) -> (pg::TestDatabase, PgStore, PgStore) {
    let db = pg::TestDatabase::create().await;
    let options = PgOptions {
        change_window: window,
        ..PgOptions::default()
    };
    let a = PgStore::connect(&db.url(), options).await.unwrap();
    let b = PgStore::connect(&db.url(), options).await.unwrap();
    (db, a, b)
}

fn set(changes: &Changes) -> HashSet<TrackingNumber> {
    changes.numbers.iter().copied().collect()
}

/// Inserts an event for `tn` in a transaction left open; commit it with `COMMIT`.
async fn open_transaction(client: &tokio_postgres::Client, id: &str, tn: TrackingNumber) {
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "INSERT INTO rempart_events (event_id, tracking_number, code, occurred_at_us) \
             VALUES ($1, $2, 'ET1', 0)",
            &[&id, &tn.as_str()],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_store_are_seen_by_another_once() {
    let (db, a, b) = two_stores(Duration::from_secs(15)).await;
    let start = b
        .changes_since(&ChangeCursor::default(), 100)
        .await
        .unwrap();
    assert!(start.numbers.is_empty() && start.complete && !start.more);
    let _ = a
        .append(vec![
            event("ch:1", number(1), 1),
            event("ch:2", number(2), 1),
            event("ch:3", number(1), 2),
        ])
        .await
        .unwrap();
    let seen = b.changes_since(&start.next, 100).await.unwrap();
    assert_eq!(set(&seen), HashSet::from([number(1), number(2)]));
    assert_eq!(seen.numbers.len(), 2, "each parcel once: {seen:?}");
    assert!(seen.complete && !seen.more);
    // Nothing new: nothing reported (the feed no longer re-reads a window).
    let again = b.changes_since(&seen.next, 100).await.unwrap();
    assert!(again.numbers.is_empty(), "{again:?}");
    let _ = a.append(vec![event("ch:4", number(1), 3)]).await.unwrap();
    let moved = b.changes_since(&again.next, 100).await.unwrap();
    assert_eq!(set(&moved), HashSet::from([number(1)]));

    // More changes than a call's limit: the rest comes with the next calls, nothing given up.
    let batch = (0..20)
        .map(|i| event(&format!("ch:m{i}"), number(100 + i), 1))
        .collect();
    let _ = a.append(batch).await.unwrap();
    let mut cursor = moved.next;
    let mut found = HashSet::new();
    let mut calls = 0;
    loop {
        let page = b.changes_since(&cursor, 5).await.unwrap();
        assert!(page.complete);
        assert!(page.numbers.len() <= 5);
        found.extend(set(&page));
        cursor = page.next;
        calls += 1;
        if !page.more {
            break;
        }
    }
    assert_eq!(found, (0..20).map(|i| number(100 + i)).collect());
    assert!(calls >= 4, "{calls} calls");
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_commits_after_a_later_one_is_still_seen() {
    let (db, a, b) = two_stores(Duration::from_secs(15)).await;
    let start = b
        .changes_since(&ChangeCursor::default(), 100)
        .await
        .unwrap();
    // The slow transaction takes its number first, a later append commits before it.
    let slow = db.admin_client().await;
    open_transaction(&slow, "late:1", number(7)).await;
    let _ = a
        .append(vec![event("early:1", number(8), 1)])
        .await
        .unwrap();
    let first = b.changes_since(&start.next, 100).await.unwrap();
    assert_eq!(set(&first), HashSet::from([number(8)]));
    assert_eq!(first.next.pending.len(), 1, "{:?}", first.next);
    // The position to save stops before the number still pending.
    assert!(first.next.position() < first.next.after);
    slow.batch_execute("COMMIT").await.unwrap();
    let second = b.changes_since(&first.next, 100).await.unwrap();
    assert_eq!(set(&second), HashSet::from([number(7)]));
    assert!(second.next.pending.is_empty(), "{:?}", second.next);
    assert_eq!(second.next.position(), second.next.after);
    // Resuming from a saved position reports what came after it.
    let saved = first.next.position().unwrap();
    let resumed = b
        .changes_since(&ChangeCursor::resume(saved), 100)
        .await
        .unwrap();
    assert_eq!(set(&resumed), HashSet::from([number(7), number(8)]));
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cursor_sees_a_transaction_running_when_it_started() {
    let window = Duration::from_millis(500);
    let (db, a, b) = two_stores(window).await;
    // Old rows, so that the fresh cursor starts after some of them.
    let _ = a.append(vec![event("old:1", number(1), 1)]).await.unwrap();
    tokio::time::sleep(3 * window).await;
    let _ = a.append(vec![event("old:2", number(2), 1)]).await.unwrap();
    let slow = db.admin_client().await;
    open_transaction(&slow, "running:1", number(3)).await;
    let _ = a.append(vec![event("new:1", number(4), 1)]).await.unwrap();
    let start = b
        .changes_since(&ChangeCursor::default(), 100)
        .await
        .unwrap();
    let reported = set(&start);
    assert!(
        !reported.contains(&number(1)),
        "starts after old rows: {start:?}"
    );
    assert!(reported.contains(&number(4)), "{start:?}");
    slow.batch_execute("COMMIT").await.unwrap();
    let next = b.changes_since(&start.next, 100).await.unwrap();
    assert_eq!(set(&next), HashSet::from([number(3)]));
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_that_never_commit_are_given_up_after_the_window() {
    let window = Duration::from_millis(300);
    let (db, a, b) = two_stores(window).await;
    let start = b
        .changes_since(&ChangeCursor::default(), 100)
        .await
        .unwrap();
    let _ = a.append(vec![event("dup:1", number(1), 1)]).await.unwrap();
    // A resend takes numbers for its duplicates and stores nothing; a rolled-back transaction
    // takes one too.
    let resend = a.append(vec![event("dup:1", number(1), 1)]).await.unwrap();
    assert_eq!(resend.accepted, 0);
    let slow = db.admin_client().await;
    open_transaction(&slow, "rolled:1", number(2)).await;
    slow.batch_execute("ROLLBACK").await.unwrap();
    let _ = a.append(vec![event("dup:2", number(3), 1)]).await.unwrap();
    let first = b.changes_since(&start.next, 100).await.unwrap();
    assert_eq!(set(&first), HashSet::from([number(1), number(3)]));
    assert!(!first.next.pending.is_empty(), "{:?}", first.next);
    tokio::time::sleep(2 * window).await;
    let later = b.changes_since(&first.next, 100).await.unwrap();
    assert!(later.numbers.is_empty() && later.complete, "{later:?}");
    assert!(later.next.pending.is_empty(), "{:?}", later.next);
    drop((a, b));
    db.drop_now().await;
}

/// Each of the feed's queries walks an index: at 30 million rows a scan of the table would
/// outrun the statement timeout at every poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_reads_through_indexes() {
    let (db, a, b) = two_stores(Duration::from_secs(15)).await;
    drop(b);
    let _ = a
        .append(
            (0..50)
                .map(|i| event(&format!("plan:{i}"), number(i), 0))
                .collect(),
        )
        .await
        .unwrap();
    let client = db.admin_client().await;
    client
        .batch_execute("ANALYZE rempart_events; SET enable_seqscan = off")
        .await
        .unwrap();
    let queries = [
        (
            rempart_store_pg::START_SQL.replace("$1", "30"),
            "rempart_events_ingested",
        ),
        (
            rempart_store_pg::FORWARD_SQL
                .replace("$1", "10")
                .replace("$2", "10000"),
            "rempart_events_received",
        ),
        (
            rempart_store_pg::PENDING_SQL
                .replace("$1", "'{3,20}'")
                .replace("$2", "'{5,25}'"),
            "rempart_events_received",
        ),
    ];
    for (sql, index) in queries {
        let plan = pg::explain(&client, &sql).await;
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}\n{plan}");
    }
    drop(a);
    db.drop_now().await;
}
