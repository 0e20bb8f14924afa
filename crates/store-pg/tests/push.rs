//! Push on PostgreSQL: the shared push contract (each check on a database of its own in the
//! cluster this test process starts), and two nodes sharing one outbox.

use std::collections::HashSet;
use std::time::Duration;

use rempart_domain::{EventCode, Timestamp};
use rempart_store::EventStore;
use rempart_store::push::{KeyId, NewEndpoint, PushStore, SALT_LEN, SecretRef};
use rempart_store::push_contract::{self, scan};
use rempart_store_pg::testing as pg;
use rempart_store_pg::{PgOptions, PgStore};

/// Checks in `push_contract::run_all`.
const CHECKS: usize = 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_store_keeps_the_push_contract() {
    let mut databases = Vec::new();
    for _ in 0..CHECKS {
        databases.push(pg::TestDatabase::create().await);
    }
    let mut urls = databases.iter().map(pg::TestDatabase::url);
    push_contract::run_all(|capacity| {
        let url = urls.next().expect("one database per check");
        async move {
            let options = PgOptions {
                outbox_capacity: capacity,
                ..PgOptions::default()
            };
            PgStore::connect(&url, options).await.expect("connect")
        }
    })
    .await;
    for db in databases {
        db.drop_now().await;
    }
}

/// Two nodes leasing from one outbox at once: `FOR UPDATE SKIP LOCKED` hands each delivery to
/// one of them, and together they get them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_outbox_without_taking_a_delivery_twice() {
    let db = pg::TestDatabase::create().await;
    let a = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    let b = PgStore::connect(&db.url(), PgOptions::default())
        .await
        .unwrap();
    let secret = SecretRef {
        key_version: 1,
        salt: [3; SALT_LEN],
    };
    let ep = a
        .create_endpoint(
            NewEndpoint {
                owner: KeyId(1),
                url: "https://shop.example/hook".into(),
                secret,
            },
            Timestamp(0),
        )
        .await
        .unwrap();
    const PARCELS: u64 = 400;
    let numbers: Vec<_> = (0..PARCELS).map(rempart_store::contract::number).collect();
    let _ = a
        .subscribe(KeyId(1), ep.id, &numbers, Timestamp(0))
        .await
        .unwrap();
    let batch = (0..PARCELS)
        .map(|p| scan(&format!("n:{p}"), p, EventCode::Pc1, 1))
        .collect();
    let _ = b.append(batch).await.unwrap();
    let later = Timestamp(i64::MAX / 2);
    let lease = Duration::from_secs(60);
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let (x, y) = tokio::join!(a.lease_due(later, lease, 37), b.lease_due(later, lease, 37));
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        for d in x.iter().chain(&y) {
            assert!(seen.insert(d.id), "{} leased twice", d.id);
        }
    }
    assert_eq!(seen.len() as u64, PARCELS, "every delivery leased once");
    drop((a, b));
    db.drop_now().await;
}
