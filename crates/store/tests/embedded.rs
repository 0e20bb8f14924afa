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
    // Full by its count of batches, then by its bytes (one batch at a time).
    for options in [
        EmbeddedOptions {
            queue_batches: 1,
            max_group_events: 1,
            ..EmbeddedOptions::default()
        },
        EmbeddedOptions {
            queue_bytes: 1,
            ..EmbeddedOptions::default()
        },
    ] {
        full_queue_answers_unavailable(options).await;
    }
}

async fn full_queue_answers_unavailable(options: EmbeddedOptions) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), options).unwrap());
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
        "ok {ok}, unavailable {unavailable} with {options:?}"
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

/// The write buffers' bytes the store reports.
fn write_buffer_bytes(store: &EmbeddedStore) -> u64 {
    store
        .memory_use()
        .iter()
        .find(|m| m.consumer == "write_buffers")
        .expect("the write buffers are reported")
        .bytes
}

/// Bytes of the engine's journal files (`db/*.jnl`) in a store directory.
fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_leaves_nothing_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let batch = |round: u64| -> Vec<_> {
        (0..500)
            .map(|i| event(&format!("cl:{round}:{i}"), number(i % 50), i as i64))
            .collect()
    };
    // Once with `close`, once by dropping the store.
    for round in 0..2u64 {
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let _ = store.append(batch(round)).await.unwrap();
        assert!(
            write_buffer_bytes(&store) > 0,
            "appended events sit in memtables"
        );
        if round == 0 {
            store.close().unwrap();
        } else {
            drop(store);
        }
        assert_eq!(
            journal_bytes(dir.path()),
            0,
            "round {round}: journal left to read"
        );
        // Replaying a journal rebuilds memtables; after a clean close there is none to rebuild.
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        assert_eq!(
            write_buffer_bytes(&store),
            0,
            "round {round}: replayed on open"
        );
        let outcome = store.append(batch(round)).await.unwrap();
        assert_eq!(
            outcome.duplicates, 500,
            "round {round}: the events were kept"
        );
        // Leave the duplicates-only append out of the next round's memtables.
        store.close().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_buffers_stay_within_their_bound() {
    const BOUND: u64 = 2 << 20;
    const BATCH: u64 = 1_000;
    // One group is written after the committer made room: it may go past the bound by itself.
    const ONE_GROUP_BYTES: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    // A store created with the default bound keeps the engine's memtable size of its creation
    // (64 MiB each): the store's own bound must hold for it too.
    EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .close()
        .unwrap();
    let options = EmbeddedOptions {
        write_buffer_bytes: BOUND,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), options).unwrap();
    let mut peak = 0;
    for b in 0..40u64 {
        let batch = (0..BATCH)
            .map(|i| event(&format!("wb:{b}:{i}"), number(b * BATCH + i), i as i64))
            .collect();
        let _ = store.append(batch).await.unwrap();
        peak = peak.max(write_buffer_bytes(&store));
        assert!(
            write_buffer_bytes(&store) <= BOUND + ONE_GROUP_BYTES,
            "write buffers at {} bytes over a bound of {BOUND}",
            write_buffer_bytes(&store)
        );
    }
    // 40,000 events are several times the bound: memtables were flushed along the way.
    assert!(
        peak > BOUND / 2,
        "the test wrote too little to reach the bound: {peak}"
    );
    assert_eq!(
        store
            .parcel_events(&number(39 * BATCH + 7))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_a_clean_close_supersede_those_before_it() {
    // A clean close empties the journal; the engine then takes its sequence numbers from its
    // tables. Were they to restart, a later write of the `received` counter would lose to the
    // stored one and `received` numbers would be given twice.
    let dir = tempfile::tempdir().unwrap();
    for session in 0..4u64 {
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let _ = store
            .append(vec![event(&format!("ss:{session}"), number(9), 1)])
            .await
            .unwrap();
        store.close().unwrap();
    }
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let mut events = store.parcel_events(&number(9)).await.unwrap();
    events.sort_by_key(|e| e.received);
    let ids: Vec<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(
        ids,
        ["ss:0", "ss:1", "ss:2", "ss:3"],
        "received follows the sessions"
    );
    assert!(events.windows(2).all(|w| w[0].received < w[1].received));
}
