//! What `append` says when the database goes away in the middle of a batch, made deterministic:
//! a test trigger sleeps inside the INSERT or at COMMIT (a deferred constraint trigger) while the
//! test ends the session or stops its own cluster, and a proxy lets a COMMIT through but not its
//! answer. Before COMMIT is sent the error is `Unavailable` and nothing is stored; after, it is
//! `OutcomeUnknown` and the batch is there entirely or not at all; a resend is always right (ids
//! already stored count as duplicates).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rempart_domain::Event;
use rempart_store::contract::{event, number};
use rempart_store::{AppendOutcome, EventStore, StoreError};
use rempart_store_pg::testing::{Cluster, StopMode, TestDatabase};
use rempart_store_pg::{PgOptions, PgStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::Client;

/// Sleeps for every event whose id starts with `slow:`; attached to the table by the tests.
const SLEEPER: &str = "CREATE FUNCTION rempart_test_sleep() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN IF NEW.event_id LIKE 'slow:%' THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$";
/// Runs at COMMIT, before the commit record is written.
const AT_COMMIT: &str = "CREATE CONSTRAINT TRIGGER rempart_test_slow AFTER INSERT ON rempart_events \
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION rempart_test_sleep()";
/// Runs inside the INSERT statement.
const AT_INSERT: &str = "CREATE TRIGGER rempart_test_slow BEFORE INSERT ON rempart_events \
     FOR EACH ROW EXECUTE FUNCTION rempart_test_sleep()";
const NO_TRIGGER: &str = "DROP TRIGGER rempart_test_slow ON rempart_events";

/// Longer than the trigger's sleep, so that only the test ends it.
fn patient() -> PgOptions {
    PgOptions {
        statement_timeout: Duration::from_secs(120),
        ..PgOptions::default()
    }
}

fn batch() -> Vec<Event> {
    (0..3)
        .map(|i| event(&format!("slow:{i}"), number(i), 1))
        .collect()
}

async fn stored(admin: &Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM rempart_events WHERE event_id LIKE 'slow:%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The pid of the session of `db` sleeping in the trigger (a hang guard, not a timing assertion).
async fn sleeping_session(admin: &Client, db: &str) -> i32 {
    for _ in 0..600 {
        let rows = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'PgSleep'",
                &[&db],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no session of {db} is sleeping in the trigger");
}

/// Starts `append(batch())` in the background with a store connected to `url`, and a trigger.
async fn append_with_trigger(
    url: &str,
    admin: &Client,
    trigger: &str,
) -> (
    Arc<PgStore>,
    tokio::task::JoinHandle<Result<AppendOutcome, StoreError>>,
) {
    let store = Arc::new(PgStore::connect(url, patient()).await.unwrap());
    admin.batch_execute(SLEEPER).await.unwrap();
    admin.batch_execute(trigger).await.unwrap();
    let appending = store.clone();
    let task = tokio::spawn(async move { appending.append(batch()).await });
    (store, task)
}

/// In a new database of the shared cluster: appends `batch()` while `trigger` makes its session
/// sleep, ends that session, and returns what `append` said.
async fn append_and_end_its_session(
    trigger: &str,
) -> (
    TestDatabase,
    Client,
    Arc<PgStore>,
    Result<AppendOutcome, StoreError>,
) {
    let db = TestDatabase::create_in(Cluster::shared()).await;
    let admin = db.admin_client().await;
    let (store, task) = append_with_trigger(&db.url(), &admin, trigger).await;
    let pid = sleeping_session(&admin, &db.name).await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let said = task.await.unwrap();
    (db, admin, store, said)
}

/// Drops the test trigger and sends `batch()` again: `(accepted, duplicates)`.
async fn resend(store: &PgStore, admin: &Client) -> (usize, usize) {
    admin.batch_execute(NO_TRIGGER).await.unwrap();
    let again = store.append(batch()).await.unwrap();
    (again.accepted, again.duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_during_the_insert_is_unavailable_and_stores_nothing() {
    let (db, admin, store, said) = append_and_end_its_session(AT_INSERT).await;
    match said {
        Err(StoreError::Unavailable(m)) => assert!(m.starts_with("database insert: "), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(stored(&admin).await, 0);
    assert_eq!(resend(&store, &admin).await, (3, 0));
    drop((store, admin));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_during_commit_is_an_unknown_outcome() {
    let (db, admin, store, said) = append_and_end_its_session(AT_COMMIT).await;
    match said {
        Err(e @ StoreError::OutcomeUnknown(_)) => {
            let text = e.to_string();
            assert!(text.contains("database commit: "), "{text}");
            assert!(text.contains("may or may not be stored"), "{text}");
        }
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    // The session died before the commit record: none of the batch; the resend stores it all.
    assert_eq!(stored(&admin).await, 0);
    assert_eq!(resend(&store, &admin).await, (3, 0));
    drop((store, admin));
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_immediate_stop_during_commit_is_an_unknown_outcome_all_or_nothing() {
    let cluster = Arc::new(Cluster::start());
    let db = TestDatabase::create_in(&cluster).await;
    let admin = db.admin_client().await;
    let (store, task) = append_with_trigger(&db.url(), &admin, AT_COMMIT).await;
    sleeping_session(&admin, &db.name).await;
    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop(StopMode::Immediate))
        .await
        .unwrap();
    match task.await.unwrap() {
        Err(StoreError::OutcomeUnknown(m)) => assert!(m.starts_with("database commit: "), "{m}"),
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.restart())
        .await
        .unwrap();
    let admin = db.admin_client().await;
    let there = stored(&admin).await;
    assert!(there == 0 || there == 3, "{there} of 3 events stored");
    let expected = if there == 0 { (3, 0) } else { (0, 3) };
    assert_eq!(resend(&store, &admin).await, expected);
}

/// A TCP proxy to `upstream` that, once `armed`, passes a COMMIT to the server, waits for the
/// server's answer (the commit is done) and closes the client's connection instead of passing
/// the answer on.
async fn commit_swallower(upstream: String, armed: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            tokio::spawn(relay(client, server, armed.clone()));
        }
    });
    addr
}

async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let commit_sent = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            // The simple-query message tokio-postgres sends for `Transaction::commit`.
            if armed.load(Ordering::SeqCst) && buf[..n].windows(7).any(|w| w == b"COMMIT\0") {
                commit_sent.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            if commit_sent.load(Ordering::SeqCst) {
                // The server answered COMMIT: the batch is stored. The client never hears it.
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_an_unknown_outcome_and_the_resend_counts_duplicates() {
    let db = TestDatabase::create_in(Cluster::shared()).await;
    let admin = db.admin_client().await;
    let config: tokio_postgres::Config = db.url().parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => format!("{host}:{port}"),
        other => panic!("the test database is not on a TCP server: {other:?}"),
    };
    let armed = Arc::new(AtomicBool::new(false));
    let proxy = commit_swallower(upstream, armed.clone()).await;
    let url = format!("postgres://postgres@{proxy}/{}", db.name);
    let store = PgStore::connect(&url, PgOptions::default()).await.unwrap();
    armed.store(true, Ordering::SeqCst);
    match store.append(batch()).await {
        Err(StoreError::OutcomeUnknown(m)) => assert!(m.contains("connection closed"), "{m}"),
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    armed.store(false, Ordering::SeqCst);
    // The commit went through: all of the batch is there, and the resend changes nothing.
    assert_eq!(stored(&admin).await, 3);
    let again = store.append(batch()).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    drop((store, admin));
    db.drop_now().await;
}
