//! The contract every [`EventStore`] backend keeps, as a test suite any backend's tests can run
//! (feature `contract`): `contract::run_all(|| async { fresh_empty_store() }).await`.
//! Each check panics with a message naming what broke.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;

use rempart_domain::{Event, EventCode, EventId, Timestamp, TrackingNumber};

use crate::{EventStore, MAX_BATCH_EVENTS, MAX_PARCEL_EVENTS, StoreError};

/// A valid domestic tracking number, distinct for each `n`.
pub fn number(n: u64) -> TrackingNumber {
    TrackingNumber::domestic(6, 'A', 1_000_000_000 + n).expect("valid by construction")
}

/// An event with the given id, parcel and time (microseconds after 2025-12-01).
pub fn event(id: &str, tn: TrackingNumber, minute: i64) -> Event {
    Event {
        event_id: EventId::parse(id).expect("valid id"),
        tracking_number: tn,
        code: EventCode::Et1,
        occurred_at: Timestamp(1_764_547_200_000_000 + minute * 60_000_000),
        location: Some(format!("site of {id}")),
        product: (minute % 2 == 0).then(|| "colissimo".to_owned()),
    }
}

/// Runs every check, each on a fresh empty store made by `fresh`.
pub async fn run_all<S, F, Fut>(mut fresh: F)
where
    S: EventStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    append_then_read_back(&fresh().await).await;
    same_batch_twice_is_all_duplicates(&fresh().await).await;
    duplicates_inside_one_batch_count_once(&fresh().await).await;
    empty_batch_is_a_no_op(&fresh().await).await;
    oversized_batch_is_refused_whole(&fresh().await).await;
    unknown_parcel_has_no_events(&fresh().await).await;
    tracking_numbers_page_in_order(&fresh().await).await;
    parcel_events_are_capped_to_the_newest(&fresh().await).await;
    received_grows_in_append_order(&fresh().await).await;
    concurrent_appends_store_each_event_once(Arc::new(fresh().await)).await;
    ready_when_open(&fresh().await).await;
}

fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| a.event_id.as_str().cmp(b.event_id.as_str()));
    events
}

async fn events_of(store: &dyn EventStore, tn: &TrackingNumber) -> Vec<Event> {
    sorted(
        store
            .parcel_events(tn)
            .await
            .expect("parcel_events")
            .into_iter()
            .map(|s| s.event)
            .collect(),
    )
}

pub async fn append_then_read_back(store: &dyn EventStore) {
    let (a, b) = (number(1), number(2));
    let batch = vec![
        event("c:1", a, 3),
        event("c:2", a, 1),
        event("c:3", b, 2),
        Event {
            location: None,
            product: None,
            ..event("c:4", a, -100_000)
        },
    ];
    let outcome = store.append(batch.clone()).await.expect("append");
    assert_eq!(
        (outcome.accepted, outcome.duplicates),
        (4, 0),
        "append counts"
    );
    let expected_a: Vec<Event> = batch
        .iter()
        .filter(|e| e.tracking_number == a)
        .cloned()
        .collect();
    assert_eq!(
        events_of(store, &a).await,
        sorted(expected_a),
        "events of a read back exactly"
    );
    assert_eq!(
        events_of(store, &b).await,
        vec![batch[2].clone()],
        "events of b"
    );
}

pub async fn same_batch_twice_is_all_duplicates(store: &dyn EventStore) {
    let batch: Vec<Event> = (0..20)
        .map(|i| event(&format!("d:{i}"), number(i % 3), i as i64))
        .collect();
    let first = store.append(batch.clone()).await.expect("first append");
    assert_eq!((first.accepted, first.duplicates), (20, 0));
    let second = store.append(batch.clone()).await.expect("second append");
    assert_eq!(
        (second.accepted, second.duplicates),
        (0, 20),
        "a resent batch is all duplicates"
    );
    // A duplicate id with different content changes nothing either.
    let changed = Event {
        code: EventCode::Di1,
        ..batch[0].clone()
    };
    let third = store.append(vec![changed]).await.expect("third append");
    assert_eq!((third.accepted, third.duplicates), (0, 1));
    let stored: usize = {
        let mut n = 0;
        for p in 0..3 {
            n += store.parcel_events(&number(p)).await.expect("read").len();
        }
        n
    };
    assert_eq!(stored, 20, "each event stored once");
    assert!(
        events_of(store, &number(0))
            .await
            .iter()
            .all(|e| e.code == EventCode::Et1),
        "a duplicate must not overwrite"
    );
}

pub async fn duplicates_inside_one_batch_count_once(store: &dyn EventStore) {
    let e = event("in:1", number(5), 1);
    let outcome = store
        .append(vec![e.clone(), e.clone(), event("in:2", number(5), 2), e])
        .await
        .expect("append");
    assert_eq!((outcome.accepted, outcome.duplicates), (2, 2));
    assert_eq!(
        store.parcel_events(&number(5)).await.expect("read").len(),
        2
    );
}

pub async fn empty_batch_is_a_no_op(store: &dyn EventStore) {
    let outcome = store.append(Vec::new()).await.expect("empty append");
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 0));
    assert!(
        store
            .tracking_numbers(None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn oversized_batch_is_refused_whole(store: &dyn EventStore) {
    let batch: Vec<Event> = (0..=MAX_BATCH_EVENTS as u64)
        .map(|i| event(&format!("big:{i}"), number(i % 7), 0))
        .collect();
    match store.append(batch).await {
        Err(StoreError::BatchTooLarge(n)) => assert_eq!(n, MAX_BATCH_EVENTS + 1),
        other => panic!("an oversized batch must be BatchTooLarge, got {other:?}"),
    }
    assert!(
        store
            .tracking_numbers(None, 10)
            .await
            .expect("list")
            .is_empty(),
        "nothing stored"
    );
}

pub async fn unknown_parcel_has_no_events(store: &dyn EventStore) {
    assert!(
        store
            .parcel_events(&number(999))
            .await
            .expect("read")
            .is_empty()
    );
}

pub async fn tracking_numbers_page_in_order(store: &dyn EventStore) {
    let mut expected = BTreeSet::new();
    let mut batch = Vec::new();
    for i in 0..250u64 {
        // Both formats, in an order unrelated to byte order.
        let tn = if i % 2 == 0 {
            number(1_000 + (i * 7919) % 10_000)
        } else {
            TrackingNumber::s10("RR", (i * 104_729 % 90_000_000) as u32, "FR").expect("valid")
        };
        expected.insert(tn);
        batch.push(event(&format!("tn:{i}:a"), tn, 1));
        batch.push(event(&format!("tn:{i}:b"), tn, 2));
    }
    let _ = store.append(batch).await.expect("append");
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.tracking_numbers(after, 33).await.expect("page");
        assert!(page.len() <= 33, "a page respects its limit");
        if page.is_empty() {
            break;
        }
        assert!(page.windows(2).all(|w| w[0] < w[1]), "a page is ascending");
        if let Some(a) = after {
            assert!(page[0] > a, "a page starts strictly after `after`");
        }
        after = page.last().copied();
        all.extend(page);
    }
    assert_eq!(
        all,
        expected.into_iter().collect::<Vec<_>>(),
        "paging covers every number once"
    );
}

pub async fn parcel_events_are_capped_to_the_newest(store: &dyn EventStore) {
    let tn = number(77);
    let total = MAX_PARCEL_EVENTS + 50;
    // Oldest last in the batch, to show the cap is by time, not by arrival.
    let batch: Vec<Event> = (0..total as i64)
        .rev()
        .map(|m| event(&format!("cap:{m}"), tn, m))
        .collect();
    let _ = store.append(batch).await.expect("append");
    let events = store.parcel_events(&tn).await.expect("read");
    assert_eq!(events.len(), MAX_PARCEL_EVENTS, "capped");
    let oldest_kept = events
        .iter()
        .map(|e| e.event.occurred_at)
        .min()
        .expect("some");
    assert_eq!(
        oldest_kept,
        event("x", tn, 50).occurred_at,
        "the newest events are kept"
    );
}

pub async fn received_grows_in_append_order(store: &dyn EventStore) {
    let tn = number(88);
    for i in 0..5 {
        let _ = store
            .append(vec![event(&format!("r:{i}"), tn, 10)])
            .await
            .expect("append");
    }
    let mut events = store.parcel_events(&tn).await.expect("read");
    events.sort_by_key(|e| e.received);
    let ids: Vec<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(
        ids,
        ["r:0", "r:1", "r:2", "r:3", "r:4"],
        "received follows append order"
    );
    let distinct: HashSet<u64> = events.iter().map(|e| e.received).collect();
    assert_eq!(distinct.len(), 5);
}

pub async fn concurrent_appends_store_each_event_once<S: EventStore>(store: Arc<S>) {
    const TASKS: u64 = 16;
    const BATCHES: u64 = 10;
    const PER_BATCH: u64 = 50;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let (mut accepted, mut duplicates) = (0, 0);
            for b in 0..BATCHES {
                // Tasks t and t+1 send overlapping ids: each event id exists in two tasks.
                let batch: Vec<Event> = (0..PER_BATCH)
                    .map(|i| {
                        let owner = (t / 2) * 2;
                        let id = format!("cc:{owner}:{b}:{i}");
                        event(
                            &id,
                            number(500 + owner * 100 + i % 10),
                            (b * PER_BATCH + i) as i64,
                        )
                    })
                    .collect();
                let outcome = store.append(batch).await.expect("concurrent append");
                accepted += outcome.accepted;
                duplicates += outcome.duplicates;
            }
            (accepted, duplicates)
        }));
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for h in handles {
        let (a, d) = h.await.expect("task");
        accepted += a;
        duplicates += d;
    }
    let distinct = (TASKS / 2 * BATCHES * PER_BATCH) as usize;
    assert_eq!(accepted, distinct, "each distinct event accepted once");
    assert_eq!(
        accepted + duplicates,
        (TASKS * BATCHES * PER_BATCH) as usize,
        "counts add up"
    );
    let mut stored = 0;
    for owner in (0..TASKS).step_by(2) {
        for p in 0..10 {
            let events = store
                .parcel_events(&number(500 + owner * 100 + p))
                .await
                .expect("read");
            let ids: HashSet<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
            assert_eq!(ids.len(), events.len(), "no event stored twice");
            stored += events.len();
        }
    }
    assert_eq!(stored, distinct, "every event stored");
}

pub async fn ready_when_open(store: &dyn EventStore) {
    store
        .check_ready()
        .await
        .expect("a freshly opened store is ready");
    let health = store.write_health();
    assert!(
        health.failure.is_none(),
        "a freshly opened store takes writes: {health:?}"
    );
    let _ = store
        .append(vec![event("ready:1", number(4242), 1)])
        .await
        .expect("append");
    assert!(
        store.write_health().failure.is_none(),
        "a successful append leaves the store healthy"
    );
    for m in store.memory_use() {
        assert!(
            m.bound_bytes != Some(0),
            "{} has a bound of 0 bytes",
            m.consumer
        );
    }
}
