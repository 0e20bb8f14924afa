//! The shared store contract on the real PostgreSQL (127.0.0.1:5432, or REMPART_TEST_PG_URL's
//! server). Each store gets a database of its own, dropped at the end.

use rempart_store::EventStore;
use rempart_store_pg::testing as pg;
use rempart_store_pg::{PgOptions, PgStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_store_keeps_the_contract() {
    let mut databases = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..11 {
        let db = pg::TestDatabase::create().await;
        urls.push(db.url());
        databases.push(db);
    }
    let mut next = urls.into_iter();
    rempart_store::contract::run_all(|| {
        let url = next.next().expect("one database per check");
        async move {
            PgStore::connect(&url, PgOptions::default())
                .await
                .expect("connect")
        }
    })
    .await;
    for db in databases {
        db.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_recorded() {
    let db = pg::TestDatabase::create().await;
    let url = db.url();
    let (a, b) = tokio::join!(
        PgStore::connect(&url, PgOptions::default()),
        PgStore::connect(&url, PgOptions::default())
    );
    let (a, _b) = (a.unwrap(), b.unwrap());
    a.check_ready().await.unwrap();
    let again = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    again.check_ready().await.unwrap();
    let client = db.admin_client().await;
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM rempart_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1]);
    drop(client);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_store_are_seen_by_another() {
    use rempart_store::ChangeCursor;
    use rempart_store::contract::{event, number};
    let db = pg::TestDatabase::create().await;
    let a = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    let b = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    let start = b.changes_since(ChangeCursor::default(), 100).await.unwrap();
    assert!(start.numbers.is_empty() && start.complete);
    let _ = a
        .append(vec![
            event("ch:1", number(1), 1),
            event("ch:2", number(2), 1),
        ])
        .await
        .unwrap();
    let seen = b.changes_since(start.next, 100).await.unwrap();
    assert!(seen.complete);
    assert!(
        seen.numbers.contains(&(number(1), 1)) && seen.numbers.contains(&(number(2), 1)),
        "{seen:?}"
    );
    // Reported again within the overlap window, at the same version; a new event moves it.
    let again = b.changes_since(seen.next, 100).await.unwrap();
    assert!(again.numbers.contains(&(number(1), 1)), "{again:?}");
    let _ = a.append(vec![event("ch:3", number(1), 2)]).await.unwrap();
    let moved = b.changes_since(again.next, 100).await.unwrap();
    assert!(moved.numbers.contains(&(number(1), 2)), "{moved:?}");
    // More changes than the limit: reported as incomplete.
    let batch = (0..20)
        .map(|i| event(&format!("ch:m{i}"), number(100 + i), 1))
        .collect();
    let _ = a.append(batch).await.unwrap();
    let many = b.changes_since(moved.next, 5).await.unwrap();
    assert!(!many.complete);
    assert_eq!(many.numbers.len(), 5);
    drop((a, b));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_error() {
    let options = PgOptions {
        connect_timeout: std::time::Duration::from_millis(500),
        ..PgOptions::default()
    };
    // Port 9 (discard) on loopback: nothing listens there.
    match PgStore::connect("postgres://postgres@127.0.0.1:9/none", options).await {
        Err(rempart_store::StoreError::Unavailable(m)) => assert!(m.contains("database"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(PgStore::connect("not a url", options).await.is_err());
}
