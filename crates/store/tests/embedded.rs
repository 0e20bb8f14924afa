//! The embedded store: the shared contract, persistence across reopen, back-pressure, and a real
//! crash (`kill -9` of a child process appending concurrently).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rempart_store::contract::{self, event, number};
use rempart_store::embedded::{EmbeddedOptions, EmbeddedStore};
use rempart_store::{EventStore, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_store_keeps_the_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    contract::run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        dirs.lock().unwrap().push(dir);
        async move { store }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_the_received_counter_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let _ = store
            .append(vec![event("p:1", number(1), 1), event("p:2", number(1), 1)])
            .await
            .unwrap();
    }
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let outcome = store
        .append(vec![event("p:1", number(1), 1), event("p:3", number(1), 1)])
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (1, 1));
    let mut events = store.parcel_events(&number(1)).await.unwrap();
    events.sort_by_key(|e| e.received);
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[2].event.event_id.as_str(),
        "p:3",
        "received keeps growing after reopen"
    );
    assert!(events[0].received < events[1].received && events[1].received < events[2].received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    match EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("in use"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("two opens of one directory"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_unavailable_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        EmbeddedStore::open(
            dir.path(),
            EmbeddedOptions {
                queue_batches: 1,
                max_group_events: 1,
            },
        )
        .unwrap(),
    );
    let mut handles = Vec::new();
    for t in 0..64u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let batch = (0..200)
                .map(|i| event(&format!("q:{t}:{i}"), number(t), i))
                .collect();
            store.append(batch).await
        }));
    }
    let mut unavailable = 0;
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Unavailable(_)) => unavailable += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        ok > 0 && unavailable > 0,
        "ok {ok}, unavailable {unavailable}"
    );
    // What was refused is not stored; what was accepted is.
    let mut stored = 0;
    for t in 0..64 {
        let n = store.parcel_events(&number(t)).await.unwrap().len();
        assert!(n == 0 || n == 200, "batch {t} partial: {n}");
        stored += usize::from(n == 200);
    }
    assert_eq!(stored, ok);
}

/// Child mode of the crash test: appends batches from several tasks forever, printing the ids
/// of every acknowledged batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_child() {
    let Ok(dir) = std::env::var("REMPART_CRASH_CHILD_DIR") else {
        return;
    };
    let round: u64 = std::env::var("REMPART_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.as_ref(), EmbeddedOptions::default()).unwrap());
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for b in 0u64.. {
                let tag = format!("{round}:{t}:{b}");
                let batch = (0..100)
                    .map(|i| {
                        event(
                            &format!("k:{tag}:{i}"),
                            number(round * 1000 + t * 100 + b % 100),
                            i,
                        )
                    })
                    .collect();
                let _ = store.append(batch).await.unwrap();
                println!("acked {tag}");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_kill_9() {
    if std::env::var("REMPART_CRASH_CHILD_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    for round in 0..4u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("REMPART_CRASH_CHILD_DIR", dir.path())
            .env("REMPART_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut this_round = 0;
        // Kill after a number of acknowledgements that differs per round.
        while this_round < 30 + round * 25 {
            let line = lines.next().expect("child output").unwrap();
            if let Some(tag) = line.strip_prefix("acked ") {
                acked.push(tag.to_owned());
                this_round += 1;
            }
        }
        child.kill().unwrap();
        // Acks printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            if let Some(tag) = line.strip_prefix("acked ") {
                acked.push(tag.to_owned());
            }
        }
        child.wait().unwrap();
    }
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    for tag in &acked {
        let parts: Vec<u64> = tag.split(':').map(|p| p.parse().unwrap()).collect();
        let (round, t, b) = (parts[0], parts[1], parts[2]);
        let events = store
            .parcel_events(&number(round * 1000 + t * 100 + b % 100))
            .await
            .unwrap();
        let mine = events
            .iter()
            .filter(|e| e.event.event_id.as_str().starts_with(&format!("k:{tag}:")))
            .count();
        assert_eq!(
            mine, 100,
            "acknowledged batch {tag} has {mine} of 100 events"
        );
    }
    // Resending everything acknowledged is all duplicates: nothing was stored twice.
    for tag in acked.iter().take(20) {
        let parts: Vec<u64> = tag.split(':').map(|p| p.parse().unwrap()).collect();
        let batch = (0..100)
            .map(|i| {
                event(
                    &format!("k:{tag}:{i}"),
                    number(parts[0] * 1000 + parts[1] * 100 + parts[2] % 100),
                    i,
                )
            })
            .collect();
        let outcome = store.append(batch).await.unwrap();
        assert_eq!(outcome.duplicates, 100);
    }
    assert!(acked.len() >= 4 * 30);
}
