//! Push on the embedded store: the shared push contract, and deliveries that survive a crash
//! (`kill -9` of a child process appending batches of subscribed parcels).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rempart_domain::{EventCode, Timestamp};
use rempart_store::EventStore;
use rempart_store::contract::number;
use rempart_store::embedded::{EmbeddedOptions, EmbeddedStore};
use rempart_store::push::{KeyId, MAX_LEASE, NewEndpoint, PushStore, SALT_LEN, SecretRef};
use rempart_store::push_contract::{self, scan};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_store_keeps_the_push_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    push_contract::run_all(|capacity| {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            outbox_capacity: capacity,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        dirs.lock().unwrap().push(dir);
        async move { store }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_contract_holds_with_the_watched_set_spilled_to_disk() {
    let dirs = std::sync::Mutex::new(Vec::new());
    push_contract::run_all(|capacity| {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            outbox_capacity: capacity,
            watched_in_memory_max: 0,
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), options).unwrap();
        dirs.lock().unwrap().push(dir);
        async move { store }
    })
    .await;
}

const CRASH_PARCELS: u64 = 50;

/// Child mode of the crash test: subscribes parcels, then appends one new status per parcel per
/// batch forever, printing each acknowledged batch's number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_crash_child() {
    let Ok(dir) = std::env::var("REMPART_PUSH_CRASH_DIR") else {
        return;
    };
    let store = EmbeddedStore::open(dir.as_ref(), EmbeddedOptions::default()).unwrap();
    let ep = store
        .create_endpoint(
            NewEndpoint {
                owner: KeyId(1),
                url: "https://shop.example/hook".into(),
                secret: SecretRef {
                    key_version: 1,
                    salt: [7; SALT_LEN],
                },
            },
            Timestamp(0),
        )
        .await
        .unwrap();
    let numbers: Vec<_> = (0..CRASH_PARCELS).map(number).collect();
    let _ = store
        .subscribe(KeyId(1), ep.id, &numbers, Timestamp(0))
        .await
        .unwrap();
    println!("subscribed");
    // Alternating statuses: every batch changes every parcel.
    for b in 0i64.. {
        let code = if b % 2 == 0 {
            EventCode::Et1
        } else {
            EventCode::Md2
        };
        let batch = (0..CRASH_PARCELS)
            .map(|p| scan(&format!("pc:{b}:{p}"), p, code, b))
            .collect();
        let _ = store.append(batch).await.unwrap();
        println!("acked {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_acknowledged_batches_survive_kill_9() {
    if std::env::var("REMPART_PUSH_CRASH_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "push_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("REMPART_PUSH_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 40 {
        let line = lines.next().expect("child output").unwrap();
        if let Some(b) = line.strip_prefix("acked ") {
            acked.push(b.parse::<i64>().unwrap());
        }
    }
    child.kill().unwrap();
    for line in lines.map_while(Result::ok) {
        if let Some(b) = line.strip_prefix("acked ") {
            acked.push(b.parse::<i64>().unwrap());
        }
    }
    child.wait().unwrap();
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let mut ids = std::collections::HashSet::new();
    loop {
        let leased = store
            .lease_due(Timestamp(i64::MAX / 2), Duration::from_secs(60), MAX_LEASE)
            .await
            .unwrap();
        if leased.is_empty() {
            break;
        }
        for d in leased {
            assert!(ids.insert(d.notice.event.event_id.as_str().to_owned()));
            assert!(store.ack(d.lease(), Timestamp(0)).await.unwrap());
        }
    }
    for b in &acked {
        for p in 0..CRASH_PARCELS {
            let id = format!("pc:{b}:{p}");
            assert!(
                ids.contains(&id),
                "acknowledged change {id} has no delivery"
            );
        }
    }
    assert!(acked.len() >= 40);
}
