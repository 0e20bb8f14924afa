//! The dispatcher against real HTTP receivers on loopback, with an in-memory outbox.
//!
//! The outbox here is the tests' own in-memory `PushStore` (`common/memory.rs`): the embedded and
//! PostgreSQL implementations come in phase 2 (with the kill -9 test through the real node).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::memory::MemoryPush;
use common::receiver::Answer;
use common::*;
use rempart_push::breaker::BreakerState;
use rempart_push::metrics::{ChannelKind, Outcome, Target};
use rempart_push::payload::event_id;
use rempart_push::{ClientConfig, Dispatcher, WebhookClient};
use rempart_store::push::{Delivery, DeliveryState, Endpoint, PushStore, Replay};

/// The longest any wait may take before the test fails (a bound, not a measurement).
const LIMIT: Duration = Duration::from_secs(30);

fn count(store: &MemoryPush, state: fn(&Delivery) -> bool) -> usize {
    store.all().iter().filter(|d| state(d)).count()
}

fn is_delivered(d: &Delivery) -> bool {
    matches!(d.state, DeliveryState::Delivered { .. })
}

fn is_dead(d: &Delivery) -> bool {
    matches!(d.state, DeliveryState::Dead { .. })
}

/// A receiver answering 500 while the returned flag is set, 200 once it is cleared.
async fn failing_until_cleared(
    store: &MemoryPush,
) -> (common::receiver::Receiver, Endpoint, Arc<AtomicBool>) {
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    let (receiver, e) = receiver_endpoint(store, move |_| {
        Answer::Status(if flag.load(Ordering::SeqCst) {
            500
        } else {
            200
        })
    })
    .await;
    (receiver, e, failing)
}

fn dispatcher(store: &Arc<MemoryPush>, client: WebhookClient) -> Dispatcher<MemoryPush> {
    Dispatcher::new(store.clone(), client, keys(), fast_config())
}

#[tokio::test]
async fn signed_deliveries_reach_a_real_receiver_once_each() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (receiver, e) = receiver_endpoint(&store, |_| Answer::Status(200)).await;
    let ids = store.enqueue(webhook_deliveries(&e, "depot-1", 20), now());
    let running = spawn(dispatcher(&store, loopback_client(Duration::from_secs(10))));
    let metrics = running.metrics.clone();
    wait_until(LIMIT, "20 deliveries", || count(&store, is_delivered) == 20).await;
    running.stop().await;

    let received = receiver.received();
    assert_eq!(received.len(), 20, "each delivery sent once");
    assert!(
        received.iter().all(|r| r.verified),
        "every signature verifies"
    );
    let got: HashSet<String> = received.iter().map(|r| r.delivery_id.clone()).collect();
    let sent: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(got, sent);
    let events: HashSet<String> = received.iter().map(|r| r.event_id.clone()).collect();
    let expected: HashSet<String> = store
        .all()
        .iter()
        .map(|d| event_id(&d.notice.event.event_id))
        .collect();
    assert_eq!(events, expected);
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["type"], "parcel.status_changed");
    assert_eq!(body["data"]["status"], "out_for_delivery");
    assert_eq!(body["id"].as_str(), Some(received[0].event_id.as_str()));
    assert_eq!(
        metrics.deliveries(ChannelKind::Webhook, Outcome::Delivered),
        20
    );
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_everything() {
    let store = Arc::new(MemoryPush::new(10_000));
    // The first five requests fail with 503, then everything succeeds.
    let (receiver, e) =
        receiver_endpoint(&store, |n| Answer::Status(if n < 5 { 503 } else { 200 })).await;
    store.enqueue(webhook_deliveries(&e, "depot-2", 3), now());
    let mut config = fast_config();
    config.breaker.failures_to_open = 100;
    let d = Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(10)),
        keys(),
        config,
    );
    let running = spawn(d);
    wait_until(LIMIT, "3 deliveries", || count(&store, is_delivered) == 3).await;
    let metrics = running.metrics.clone();
    running.stop().await;

    assert_eq!(
        metrics.deliveries(ChannelKind::Webhook, Outcome::Retried),
        5
    );
    assert_eq!(
        metrics.deliveries(ChannelKind::Webhook, Outcome::Delivered),
        3
    );
    let attempts: u32 = store.all().iter().map(|d| d.attempts).sum();
    assert_eq!(attempts, 5, "each failure counted on its delivery");
    assert!(
        store
            .all()
            .iter()
            .any(|d| d.last_error.as_deref().is_some_and(|e| e.contains("503")))
    );
    let received = receiver.received();
    assert_eq!(received.len(), 8);
    assert!(received.iter().all(|r| r.verified));
    let distinct: HashSet<&str> = received.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(distinct.len(), 3, "retries carry the same event id");
}

#[tokio::test]
async fn a_dead_endpoint_does_not_slow_a_healthy_one() {
    let store = Arc::new(MemoryPush::new(10_000));
    // The stuck endpoint accepts connections and never answers until the test lets it.
    let (stuck, stuck_endpoint) = receiver_endpoint(&store, |_| Answer::HoldUntilOpen).await;
    let (healthy, healthy_endpoint) = receiver_endpoint(&store, |_| Answer::Status(200)).await;
    // The stuck endpoint's deliveries are older, so they are leased first.
    store.enqueue(webhook_deliveries(&stuck_endpoint, "stuck", 30), now());
    store.enqueue(webhook_deliveries(&healthy_endpoint, "healthy", 30), now());
    let mut config = fast_config();
    config.per_endpoint_concurrency = 2;
    config.per_endpoint_queue = 4;
    config.max_in_flight = 8;
    config.max_held = 16;
    config.lease_for = Duration::from_secs(1200);
    // A total timeout far longer than the test: the healthy endpoint's progress cannot come
    // from the stuck one's requests timing out.
    let client = loopback_client(Duration::from_secs(600));
    let running = spawn(Dispatcher::new(store.clone(), client, keys(), config));
    wait_until(LIMIT, "the healthy endpoint's 30 deliveries", || {
        healthy.received().len() == 30
    })
    .await;

    assert!(
        stuck.received().is_empty(),
        "the stuck endpoint has answered nothing yet"
    );
    assert!(stuck.requests.load(Ordering::SeqCst) >= 1);
    assert!(
        stuck.concurrent_max.load(Ordering::SeqCst) <= 2,
        "at most the per-endpoint concurrency waits on the stuck endpoint"
    );
    stuck.open_gate();
    wait_until(LIMIT, "all 60 deliveries", || {
        count(&store, is_delivered) == 60
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn the_breaker_opens_on_a_failing_endpoint_and_closes_when_it_recovers() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (receiver, e, failing) = failing_until_cleared(&store).await;
    store.enqueue(webhook_deliveries(&e, "depot-3", 10), now());
    let mut config = fast_config();
    config.breaker.failures_to_open = 3;
    config.per_endpoint_concurrency = 1;
    let running = spawn(Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(10)),
        keys(),
        config,
    ));
    let metrics = running.metrics.clone();
    let target = Target::Endpoint(e.id);
    wait_until(LIMIT, "the breaker to open", || {
        metrics
            .endpoint_figures(target)
            .is_some_and(|f| f.breaker == BreakerState::Open)
    })
    .await;
    wait_until(LIMIT, "deliveries given back while open", || {
        metrics.deliveries(ChannelKind::Webhook, Outcome::Deferred) > 0
    })
    .await;
    failing.store(false, Ordering::SeqCst);
    wait_until(LIMIT, "all 10 deliveries after recovery", || {
        count(&store, is_delivered) == 10
    })
    .await;
    running.stop().await;

    let figures = metrics.endpoint_figures(target).unwrap();
    assert_eq!(figures.breaker, BreakerState::Closed);
    assert!(figures.failures >= 3);
    assert!(receiver.received().iter().all(|r| r.verified));
}

/// A client with the default policy: no allow-list.
fn strict_client() -> WebhookClient {
    WebhookClient::new(ClientConfig {
        total_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn park_at_first_failure() -> rempart_push::DispatchConfig {
    let mut config = fast_config();
    config.backoff.retry_for = Duration::ZERO;
    config
}

#[tokio::test]
async fn loopback_receivers_are_refused_without_the_allow_list() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (receiver, e) = receiver_endpoint(&store, |_| Answer::Status(200)).await;
    let https_loopback = endpoint(
        &store,
        &format!("https://127.0.0.1:{}/", receiver.addr.port()),
    )
    .await;
    let metadata = endpoint(&store, "https://169.254.169.254/latest/meta-data/").await;
    let private = endpoint(&store, "https://[::ffff:10.0.0.1]/hook").await;
    for target in [&e, &https_loopback, &metadata, &private] {
        store.enqueue(
            webhook_deliveries(target, &format!("{}", target.id), 1),
            now(),
        );
    }
    let d = Dispatcher::new(
        store.clone(),
        strict_client(),
        keys(),
        park_at_first_failure(),
    );
    let running = spawn(d);
    wait_until(LIMIT, "4 refusals", || count(&store, is_dead) == 4).await;
    running.stop().await;

    assert_eq!(
        receiver.requests.load(Ordering::SeqCst),
        0,
        "nothing reached the receiver"
    );
    let errors: Vec<String> = store
        .all()
        .into_iter()
        .filter_map(|d| d.last_error)
        .collect();
    assert!(
        errors.iter().filter(|e| e.contains("loopback")).count() == 2,
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("cloud metadata")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("private")), "{errors:?}");
}

#[tokio::test]
async fn dead_letters_can_be_replayed() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (receiver, e, failing) = failing_until_cleared(&store).await;
    store.enqueue(webhook_deliveries(&e, "depot-4", 2), now());
    let running = spawn(Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(5)),
        keys(),
        park_at_first_failure(),
    ));
    wait_until(LIMIT, "2 dead letters", || count(&store, is_dead) == 2).await;
    assert_eq!(
        store
            .dead_letters(Some(e.owner), None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    failing.store(false, Ordering::SeqCst);
    let replayed = store
        .replay(
            Replay::Dead {
                owner: Some(e.owner),
                ids: None,
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(replayed, 2);
    wait_until(LIMIT, "2 replayed deliveries", || {
        count(&store, is_delivered) == 2
    })
    .await;
    running.stop().await;
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let ids: HashSet<&str> = received.iter().map(|r| r.delivery_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "a replay keeps the delivery's id");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (elsewhere, _) = receiver_endpoint(&store, |_| Answer::Status(200)).await;
    let location = elsewhere.url("/stolen");
    let (redirecting, e) =
        receiver_endpoint(&store, move |_| Answer::Redirect(location.clone())).await;
    store.enqueue(webhook_deliveries(&e, "depot-5", 1), now());
    let running = spawn(Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(5)),
        keys(),
        park_at_first_failure(),
    ));
    wait_until(LIMIT, "the delivery to fail", || {
        count(&store, is_dead) == 1
    })
    .await;
    running.stop().await;
    assert_eq!(redirecting.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        elsewhere.requests.load(Ordering::SeqCst),
        0,
        "the Location was not followed"
    );
    let error = store.all()[0].last_error.clone().unwrap();
    assert!(error.contains("redirects are not followed"), "{error}");
}

#[tokio::test]
async fn huge_response_bodies_are_not_read() {
    const HUGE: usize = 256 * 1024 * 1024;
    let store = Arc::new(MemoryPush::new(10_000));
    let (failing, e_fail) = receiver_endpoint(&store, |_| Answer::Huge {
        status: 500,
        bytes: HUGE,
    })
    .await;
    let (ok, e_ok) = receiver_endpoint(&store, |_| Answer::Huge {
        status: 200,
        bytes: HUGE,
    })
    .await;
    store.enqueue(webhook_deliveries(&e_fail, "fail", 1), now());
    store.enqueue(webhook_deliveries(&e_ok, "ok", 1), now());
    let running = spawn(Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(60)),
        keys(),
        park_at_first_failure(),
    ));
    wait_until(LIMIT, "both deliveries settled", || {
        count(&store, is_dead) == 1 && count(&store, is_delivered) == 1
    })
    .await;
    running.stop().await;
    wait_until(LIMIT, "the receivers to see the connections close", || {
        failing.connections_done.load(Ordering::SeqCst) == 1
            && ok.connections_done.load(Ordering::SeqCst) == 1
    })
    .await;
    for receiver in [&failing, &ok] {
        let sent = receiver.body_bytes_sent.load(Ordering::SeqCst);
        assert!(sent < HUGE / 4, "the receiver could push {sent} bytes");
    }
    let dead = store.all().into_iter().find(is_dead).unwrap();
    let error = dead.last_error.unwrap();
    assert!(
        error.starts_with("answered 500: xxx") && error.len() <= 256,
        "{error}"
    );
}

#[tokio::test]
async fn a_deleted_endpoint_parks_its_deliveries() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (receiver, e) = receiver_endpoint(&store, |_| Answer::Status(200)).await;
    store.enqueue(webhook_deliveries(&e, "depot-6", 2), now());
    assert!(store.delete_endpoint(e.owner, e.id).await.unwrap());
    let running = spawn(dispatcher(&store, loopback_client(Duration::from_secs(5))));
    wait_until(LIMIT, "2 parked deliveries", || count(&store, is_dead) == 2).await;
    running.stop().await;
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 0);
    assert!(
        store
            .all()
            .iter()
            .all(|d| d.last_error.as_deref() == Some("endpoint deleted"))
    );
}

/// A node that dies with deliveries leased (here: its dispatcher task is aborted mid-send) loses
/// nothing: once the lease runs out, another dispatcher sends them, with the same ids.
#[tokio::test]
async fn deliveries_held_by_a_dead_dispatcher_are_sent_by_the_next() {
    let store = Arc::new(MemoryPush::new(10_000));
    let (receiver, e) = receiver_endpoint(&store, |n| {
        if n < 4 {
            Answer::HoldUntilOpen
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let ids = store.enqueue(webhook_deliveries(&e, "depot-7", 10), now());
    let mut config = fast_config();
    config.lease_for = Duration::from_secs(3);
    config.per_endpoint_concurrency = 4;
    let first = spawn(Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(2)),
        keys(),
        config.clone(),
    ));
    wait_until(LIMIT, "4 sends in flight", || {
        receiver.requests.load(Ordering::SeqCst) == 4
    })
    .await;
    first.task.abort();
    let _ = first.task.await;
    // Leased by the dead dispatcher: nobody else may send them until the lease ends.
    assert!(
        store
            .all()
            .iter()
            .any(|d| matches!(d.state, DeliveryState::Leased { .. }))
    );

    let second = spawn(Dispatcher::new(
        store.clone(),
        loopback_client(Duration::from_secs(2)),
        keys(),
        config,
    ));
    wait_until(LIMIT, "all 10 deliveries", || {
        count(&store, is_delivered) == 10
    })
    .await;
    second.stop().await;
    receiver.open_gate();
    let got: HashSet<String> = receiver
        .received()
        .iter()
        .map(|r| r.delivery_id.clone())
        .collect();
    let sent: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert!(
        sent.is_subset(&got),
        "every delivery id arrived at least once"
    );
}
