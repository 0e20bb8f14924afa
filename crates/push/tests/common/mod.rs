//! Shared pieces of the integration tests: an in-memory outbox, loopback webhook receivers, a
//! local SMTP sink, and builders for deliveries.
#![allow(dead_code)]

pub mod memory;
pub mod receiver;
pub mod sink;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rempart_domain::{Event, EventCode, EventId, Status, Timestamp, TrackingNumber};
use rempart_push::backoff::Backoff;
use rempart_push::breaker::BreakerConfig;
use rempart_push::ssrf::AddressPolicy;
use rempart_push::{ClientConfig, DispatchConfig, Dispatcher, MasterKeys, WebhookClient};
use rempart_store::push::{Channel, Endpoint, KeyId, NewDelivery, NewEndpoint, Notice, PushStore};
use tokio::sync::oneshot;

use memory::MemoryPush;

pub fn now() -> Timestamp {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc())
}

pub fn keys() -> MasterKeys {
    MasterKeys::new(1, [42; 32])
}

pub fn tn(serial: u32) -> TrackingNumber {
    TrackingNumber::s10("RR", serial, "FR").unwrap()
}

pub fn notice(serial: u32, event_id: &str) -> Notice {
    Notice {
        tracking_number: tn(serial),
        previous: Some(Status::InTransit),
        status: Status::OutForDelivery,
        is_final: false,
        event: Event {
            event_id: EventId::parse(event_id).unwrap(),
            tracking_number: tn(serial),
            code: EventCode::Md2,
            occurred_at: now(),
            location: Some("Paris 15".into()),
            product: None,
        },
    }
}

/// Creates an endpoint for `url` with a new secret.
pub async fn endpoint(store: &MemoryPush, url: &str) -> Endpoint {
    let (secret_ref, _) = keys().new_secret().unwrap();
    store
        .create_endpoint(
            NewEndpoint {
                owner: KeyId(1),
                url: url.into(),
                secret: secret_ref,
            },
            now(),
        )
        .await
        .unwrap()
}

/// A receiver holding the secret its merchant was shown, and the endpoint pointing at it.
pub async fn receiver_endpoint(
    store: &MemoryPush,
    behaviour: impl Fn(usize) -> receiver::Answer + Send + Sync + 'static,
) -> (receiver::Receiver, Endpoint) {
    let (secret_ref, secret) = keys().new_secret().unwrap();
    let receiver = receiver::Receiver::start(secret, behaviour).await;
    let e = store
        .create_endpoint(
            NewEndpoint {
                owner: KeyId(1),
                url: receiver.url("/hooks/rempart"),
                secret: secret_ref,
            },
            now(),
        )
        .await
        .unwrap();
    (receiver, e)
}

pub fn webhook_deliveries(endpoint: &Endpoint, prefix: &str, n: u32) -> Vec<NewDelivery> {
    (0..n)
        .map(|i| NewDelivery {
            channel: Channel::Webhook {
                owner: endpoint.owner,
                endpoint: endpoint.id,
            },
            notice: notice(i + 1, &format!("{prefix}:{i}")),
        })
        .collect()
}

/// A dispatcher configuration for tests: small bounds, short backoff.
pub fn fast_config() -> DispatchConfig {
    let defaults = DispatchConfig::default();
    DispatchConfig {
        poll_every: Duration::from_millis(20),
        busy_retry: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
            ..defaults.backoff
        },
        breaker: BreakerConfig {
            open_for: Duration::from_millis(200),
            open_for_max: Duration::from_millis(400),
            ..defaults.breaker
        },
        ..defaults
    }
}

pub fn loopback_client(total: Duration) -> WebhookClient {
    WebhookClient::new(ClientConfig {
        total_timeout: total,
        connect_timeout: Duration::from_secs(2),
        policy: AddressPolicy::parse("127.0.0.0/8").unwrap(),
        ..ClientConfig::default()
    })
    .unwrap()
}

/// A dispatcher running in the background until the returned sender is dropped or fired.
pub struct Running {
    pub metrics: Arc<rempart_push::PushMetrics>,
    stop: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

pub fn spawn(dispatcher: Dispatcher<MemoryPush>) -> Running {
    let metrics = dispatcher.metrics();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    Running {
        metrics,
        stop: Some(stop),
        task,
    }
}

/// Polls `condition` until it holds; panics after `limit` (a bound so a broken dispatcher fails
/// the test instead of hanging it, not a timing assertion).
pub async fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
