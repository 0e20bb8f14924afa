//! The shared store contract on a real PostgreSQL: the cluster this test process starts for
//! itself (`rempart_store_pg::testing`), or REMPART_TEST_PG_URL's server when set. Each store gets a
//! database of its own, dropped at the end. Also: connection errors say what went wrong.

use rempart_store::{EventStore, StoreError};
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
    assert_eq!(versions, [1, 2, 3]);
    drop(client);
    db.drop_now().await;
}

fn quick() -> PgOptions {
    PgOptions {
        connect_timeout: std::time::Duration::from_secs(5),
        ..PgOptions::default()
    }
}

#[tokio::test]
async fn a_refused_connection_names_the_address_and_the_cause() {
    // A loopback port nothing listens on.
    let port = pg::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/parcels");
    match PgStore::connect(&url, quick()).await {
        Err(e @ StoreError::Unavailable(_)) => {
            let text = e.to_string();
            let expected = format!(
                "unavailable: database connection to 127.0.0.1:{port} (database \"parcels\", \
                 user \"postgres\"): error connecting to server: "
            );
            assert!(text.starts_with(&expected), "{text}");
            assert!(text.contains("refused"), "{text}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

#[tokio::test]
async fn a_missing_database_is_named_with_the_servers_message() {
    let url = format!("{}/rempart_no_such_database", pg::shared_server_url());
    match PgStore::connect(&url, quick()).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(
                m.contains("database \"rempart_no_such_database\" does not exist"),
                "{m}"
            );
            assert!(m.contains("SQLSTATE 3D000"), "{m}");
            assert!(!m.contains("db error"), "{m}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected to a database that does not exist"),
    }
}

#[tokio::test]
async fn a_malformed_url_is_refused() {
    match PgStore::connect("not a url", quick()).await {
        Err(StoreError::Unavailable(m)) => assert!(m.starts_with("bad database URL: "), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected with a malformed URL"),
    }
}

/// The filter's rebuild lists every parcel page by page: each page must walk the parcel index,
/// not scan and sort the whole table (at 30 million rows a page outran the statement timeout and
/// the filter was never built). With sequential scans priced out, a query the index cannot
/// order still plans a sort of every row; one it can walks the index in order, with no sort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_tracking_numbers_walks_the_parcel_index() {
    use rempart_store::contract::{event, number};
    let db = pg::TestDatabase::create().await;
    let store = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    let stored = store
        .append(
            (0..50)
                .map(|i| event(&format!("list:{i}"), number(i), 0))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(stored.accepted, 50);
    let client = db.admin_client().await;
    client
        .batch_execute("ANALYZE rempart_events")
        .await
        .unwrap();
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let sql = rempart_store_pg::LIST_SQL
        .replace("$1", "''")
        .replace("$2", "100000");
    let plan = pg::explain(&client, &sql).await;
    assert!(plan.contains("rempart_events_parcel"), "{plan}");
    assert!(!plan.contains("Sort"), "{plan}");
    drop(client);
    db.drop_now().await;
}
