//! The dispatcher: drains the outbox, one lane per target, so one slow or dead endpoint never
//! delays the others.
//!
//! One task runs [`Dispatcher::run`]'s loop:
//! 1. **lease** due deliveries from the store while this node holds fewer than `max_held`
//!    (queued or in flight), at most `lease_batch` at a time; after a short lease answer the
//!    outbox is drained and the loop waits for the next tick or a wake-up from ingest;
//! 2. **route** each to its target's lane (an endpoint, or the SMTP relay), a bounded queue;
//!    a delivery finding its lane's queue full, or no room for a new lane, is given back to the
//!    outbox for a little later, unsent and without counting an attempt; after a full queue,
//!    nothing more is leased until a lane runs dry, the next tick or a wake-up (else every turn
//!    of the loop would lease deliveries only to give them back);
//! 3. **pump**: start sends while the node has fewer than `max_in_flight`, each lane fewer than
//!    `per_endpoint_concurrency`, and the lane's circuit breaker permits; an open breaker's queued
//!    deliveries go back to the outbox, due when it can probe;
//! 4. **finish**: each send task settles its delivery in the store itself (ack, retry with
//!    backoff, park) and reports to the loop whether the target answered, for the breaker.
//!
//! A slow endpoint therefore holds at most `per_endpoint_concurrency` sends and
//! `per_endpoint_queue` queued deliveries, each send bounded by the client's total timeout, and a
//! dead one is reduced to a probe now and then by its breaker; everyone else's lanes keep moving.
//! Deliveries are at least once: a node that dies mid-send leaves a lease that expires, and the
//! delivery goes out again, with the same ids.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rempart_domain::Timestamp;
use rempart_store::push::{
    Channel, Delivery, DeliveryState, EmailState, Endpoint, EndpointId, MAX_LEASE, PushStore,
    bounded_error,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::{Id, JoinError, JoinSet};

use crate::backoff::{Backoff, Jitter};
use crate::breaker::{Breaker, BreakerConfig, BreakerState, Permit};
use crate::client::WebhookClient;
use crate::mail::Mailer;
use crate::metrics::{ChannelKind, Outcome, PushMetrics, Target};
use crate::payload;
use crate::signing::{
    DELIVERY_HEADER, EVENT_HEADER, MasterKeys, SIGNATURE_HEADER, SignatureError, SigningSecret,
    header_value,
};
use crate::url::{UrlError, WebhookUrl};

/// How long a lane keeps an endpoint's URL and secret before reading them again.
const ENDPOINT_REFRESH: Duration = Duration::from_secs(30);

/// The dispatcher's bounds and schedule.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// How long a leased delivery is this node's; longer than the client's total timeout (a
    /// queued delivery whose lease would end before a send could finish is given back).
    pub lease_for: Duration,
    /// How often the outbox is polled when nothing wakes the dispatcher.
    pub poll_every: Duration,
    /// Sends in flight at most, all targets together.
    pub max_in_flight: usize,
    /// Leased deliveries held at most (queued and in flight).
    pub max_held: usize,
    /// Deliveries leased at most per store call.
    pub lease_batch: usize,
    pub per_endpoint_concurrency: usize,
    pub per_endpoint_queue: usize,
    /// Targets with a lane at most (idle lanes are dropped to make room).
    pub max_lanes: usize,
    /// How much later a delivery given back for lack of room is due again.
    pub busy_retry: Duration,
    pub backoff: Backoff,
    pub breaker: BreakerConfig,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            lease_for: Duration::from_secs(120),
            poll_every: Duration::from_secs(1),
            max_in_flight: 64,
            max_held: 1024,
            lease_batch: 256,
            per_endpoint_concurrency: 4,
            per_endpoint_queue: 64,
            max_lanes: 4096,
            busy_retry: Duration::from_secs(2),
            backoff: Backoff::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// An endpoint as a lane uses it: the parsed URL and the derived secret.
struct Prepared {
    url: Result<WebhookUrl, UrlError>,
    secret: Result<SigningSecret, SignatureError>,
}

impl Prepared {
    fn new(endpoint: &Endpoint, keys: &MasterKeys) -> Self {
        Prepared {
            url: WebhookUrl::parse(&endpoint.url),
            secret: keys.derive(&endpoint.secret),
        }
    }
}

/// Whether a send told anything about its target, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The target answered as it should.
    Answered,
    /// The target failed (no connection, timeout, error status).
    Failed,
    /// Nothing was sent to the target.
    NotSent,
}

struct Finished {
    attempt: Attempt,
    prepared: Option<Arc<Prepared>>,
}

struct Lane {
    queue: VecDeque<Delivery>,
    in_flight: usize,
    breaker: Breaker,
    endpoint: Option<(Arc<Prepared>, Instant)>,
}

impl Lane {
    fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0 && self.breaker.is_idle()
    }
}

/// What every send task needs.
struct Shared<S: ?Sized> {
    store: Arc<S>,
    http: WebhookClient,
    mailer: Option<Mailer>,
    keys: MasterKeys,
    config: DispatchConfig,
    metrics: Arc<PushMetrics>,
    jitter: Jitter,
}

/// Drains the outbox; see the module comment.
pub struct Dispatcher<S: PushStore + ?Sized> {
    shared: Arc<Shared<S>>,
    lanes: HashMap<Target, Lane>,
    /// Lanes with queued deliveries.
    ready: BTreeSet<Target>,
    queued: usize,
    tasks: JoinSet<Finished>,
    task_targets: HashMap<Id, (Target, bool)>,
    drained: bool,
    /// A lane's queue was full when the last lease was routed.
    lanes_full: bool,
    wake: Arc<Notify>,
}

fn now() -> Timestamp {
    Timestamp::from_datetime(OffsetDateTime::now_utc())
}

fn later(at: Timestamp, by: Duration) -> Timestamp {
    Timestamp(at.micros().saturating_add(by.as_micros() as i64))
}

fn channel_kind(channel: &Channel) -> ChannelKind {
    match channel {
        Channel::Webhook { .. } => ChannelKind::Webhook,
        Channel::Email => ChannelKind::Email,
    }
}

impl<S: PushStore + ?Sized> Dispatcher<S> {
    pub fn new(
        store: Arc<S>,
        http: WebhookClient,
        keys: MasterKeys,
        config: DispatchConfig,
    ) -> Self {
        assert!(config.max_in_flight > 0 && config.per_endpoint_concurrency > 0);
        assert!(config.max_held >= config.max_in_flight && config.per_endpoint_queue > 0);
        assert!(config.lease_batch > 0 && config.max_lanes > 0);
        assert!(
            config.lease_for > http.config().total_timeout,
            "a lease must outlast a send (lease_for > the client's total timeout)"
        );
        Dispatcher {
            shared: Arc::new(Shared {
                store,
                http,
                mailer: None,
                keys,
                config,
                metrics: Arc::new(PushMetrics::default()),
                jitter: Jitter::new(),
            }),
            lanes: HashMap::new(),
            ready: BTreeSet::new(),
            queued: 0,
            tasks: JoinSet::new(),
            task_targets: HashMap::new(),
            drained: false,
            lanes_full: false,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Sends e-mail deliveries through this mailer (without one, they wait in the outbox).
    #[must_use]
    pub fn with_mailer(mut self, mailer: Mailer) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.mailer = Some(mailer);
        }
        self
    }

    #[must_use]
    pub fn metrics(&self) -> Arc<PushMetrics> {
        self.shared.metrics.clone()
    }

    /// Wakes the dispatcher at once (ingest calls it after a commit that wrote deliveries).
    #[must_use]
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` completes, then gives queued deliveries back and waits for the
    /// sends in flight (at most the client's total timeout).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.shared.config.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.fill().await;
            self.pump().await;
            self.shared
                .metrics
                .set_load(self.tasks.len(), self.tasks.len() + self.queued);
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finish(joined);
                }
                () = self.wake.notified() => (self.drained, self.lanes_full) = (false, false),
                _ = tick.tick() => (self.drained, self.lanes_full) = (false, false),
            }
        }
        self.stop().await;
    }

    /// Leases due deliveries while there is room.
    async fn fill(&mut self) {
        let config = &self.shared.config;
        let held = self.tasks.len() + self.queued;
        let room = config.max_held.saturating_sub(held);
        // Lease in batches: not one store call per finished send while the outbox is deep.
        let worth_it = held == 0 || room >= config.lease_batch.min(config.max_held) / 2;
        if self.drained || self.lanes_full || room == 0 || !worth_it {
            return;
        }
        let ask = room.min(config.lease_batch).min(MAX_LEASE);
        match self
            .shared
            .store
            .lease_due(now(), config.lease_for, ask)
            .await
        {
            Ok(batch) => {
                self.drained = batch.len() < ask;
                for delivery in batch {
                    self.route(delivery).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "push: cannot lease deliveries");
                self.shared.metrics.store_error();
                self.drained = true;
            }
        }
    }

    /// Puts a leased delivery on its lane's queue, or gives it back when there is no room.
    async fn route(&mut self, delivery: Delivery) {
        let target = match delivery.channel {
            Channel::Webhook { endpoint, .. } => Target::Endpoint(endpoint),
            Channel::Email => Target::Relay,
        };
        let config = &self.shared.config;
        if !self.lanes.contains_key(&target) && self.lanes.len() >= config.max_lanes {
            self.lanes.retain(|_, lane| !lane.is_idle());
        }
        if !self.lanes.contains_key(&target) && self.lanes.len() >= config.max_lanes {
            give_back(&self.shared, &delivery, config.busy_retry).await;
            return;
        }
        let lane = self.lanes.entry(target).or_insert_with(|| Lane {
            queue: VecDeque::new(),
            in_flight: 0,
            breaker: Breaker::new(config.breaker),
            endpoint: None,
        });
        if lane.queue.len() >= config.per_endpoint_queue {
            // Lease no more until a lane runs dry (`finish`) or the next tick: leasing while
            // lanes are full would only give deliveries back, one store write each, in a loop.
            self.lanes_full = true;
            give_back(&self.shared, &delivery, config.busy_retry).await;
            return;
        }
        lane.queue.push_back(delivery);
        self.queued += 1;
        self.ready.insert(target);
    }

    /// Starts the sends that lanes, breakers and the global limit allow.
    async fn pump(&mut self) {
        let config = self.shared.config.clone();
        let mut back: Vec<(Delivery, Duration)> = Vec::new();
        let targets: Vec<Target> = self.ready.iter().copied().collect();
        for target in targets {
            let Some(lane) = self.lanes.get_mut(&target) else {
                self.ready.remove(&target);
                continue;
            };
            while self.tasks.len() < config.max_in_flight
                && lane.in_flight < config.per_endpoint_concurrency
            {
                let Some(delivery) = lane.queue.pop_front() else {
                    break;
                };
                self.queued -= 1;
                let now_instant = Instant::now();
                let probe = match lane.breaker.permit(now_instant) {
                    Permit::Go => false,
                    Permit::Probe => true,
                    Permit::Wait(until) => {
                        let wait = until.saturating_duration_since(now_instant);
                        back.push((delivery, wait));
                        self.queued -= lane.queue.len();
                        back.extend(lane.queue.drain(..).map(|d| (d, wait)));
                        break;
                    }
                };
                if lease_nearly_over(&delivery, &self.shared.http) {
                    if probe {
                        lane.breaker.abandon_probe();
                    }
                    back.push((delivery, Duration::ZERO));
                    continue;
                }
                let prepared = lane
                    .endpoint
                    .as_ref()
                    .filter(|(_, at)| at.elapsed() < ENDPOINT_REFRESH)
                    .map(|(p, _)| p.clone());
                lane.in_flight += 1;
                let handle = self
                    .tasks
                    .spawn(send(self.shared.clone(), delivery, prepared));
                self.task_targets.insert(handle.id(), (target, probe));
                if probe {
                    break;
                }
            }
            if lane.queue.is_empty() {
                self.ready.remove(&target);
            }
        }
        for (delivery, after) in back {
            give_back(&self.shared, &delivery, after).await;
        }
    }

    /// Takes a finished send's report: lane accounting, breaker, metrics, endpoint cache.
    fn finish(&mut self, joined: Result<(Id, Finished), JoinError>) {
        let (id, finished) = match joined {
            Ok((id, finished)) => (id, Some(finished)),
            Err(e) => {
                tracing::error!(error = %e, "push: a send task failed");
                (e.id(), None)
            }
        };
        let Some((target, probe)) = self.task_targets.remove(&id) else {
            return;
        };
        let Some(lane) = self.lanes.get_mut(&target) else {
            return;
        };
        lane.in_flight -= 1;
        let now_instant = Instant::now();
        let before = lane.breaker.state(now_instant);
        let attempt = finished.as_ref().map_or(Attempt::NotSent, |f| f.attempt);
        match attempt {
            Attempt::Answered => lane.breaker.record(true, now_instant),
            Attempt::Failed => lane.breaker.record(false, now_instant),
            Attempt::NotSent if probe => lane.breaker.abandon_probe(),
            Attempt::NotSent => {}
        }
        let after = lane.breaker.state(now_instant);
        let failed = attempt == Attempt::Failed;
        if failed || before != BreakerState::Closed || after != BreakerState::Closed {
            self.shared.metrics.endpoint(target, failed, after);
        }
        if let Some(prepared) = finished.and_then(|f| f.prepared) {
            lane.endpoint = Some((prepared, now_instant));
        }
        if lane.queue.is_empty() {
            // This lane could take more: leasing is worth it again.
            self.lanes_full = false;
        } else {
            self.ready.insert(target);
        }
    }

    /// Gives queued deliveries back (due now, for another node or the next start) and waits for
    /// the sends in flight.
    async fn stop(&mut self) {
        let queued: Vec<Delivery> = self
            .lanes
            .values_mut()
            .flat_map(|lane| lane.queue.drain(..))
            .collect();
        for delivery in &queued {
            give_back(&self.shared, delivery, Duration::ZERO).await;
        }
        self.queued = 0;
        let grace = self.shared.http.config().total_timeout + Duration::from_secs(1);
        let tasks = &mut self.tasks;
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        self.tasks.abort_all();
    }
}

/// Whether a queued delivery's lease ends before a send could finish: then it goes back instead
/// (another node may lease it any moment).
fn lease_nearly_over(delivery: &Delivery, http: &WebhookClient) -> bool {
    let DeliveryState::Leased { until } = delivery.state else {
        return false;
    };
    later(now(), http.config().total_timeout) >= until
}

/// One delivery, start to settled.
async fn send<S: PushStore + ?Sized>(
    shared: Arc<Shared<S>>,
    delivery: Delivery,
    prepared: Option<Arc<Prepared>>,
) -> Finished {
    match delivery.channel {
        Channel::Webhook { endpoint, .. } => {
            send_webhook(&shared, &delivery, endpoint, prepared).await
        }
        Channel::Email => Finished {
            attempt: send_email(&shared, &delivery).await,
            prepared: None,
        },
    }
}

async fn send_webhook<S: PushStore + ?Sized>(
    shared: &Shared<S>,
    delivery: &Delivery,
    endpoint: EndpointId,
    prepared: Option<Arc<Prepared>>,
) -> Finished {
    let not_sent = |prepared| Finished {
        attempt: Attempt::NotSent,
        prepared,
    };
    let prepared = match prepared {
        Some(p) => p,
        None => match shared.store.endpoint(endpoint).await {
            Ok(Some(e)) => Arc::new(Prepared::new(&e, &shared.keys)),
            Ok(None) => {
                park(shared, delivery, "endpoint deleted").await;
                return not_sent(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "push: cannot read an endpoint");
                shared.metrics.store_error();
                give_back(shared, delivery, shared.config.busy_retry).await;
                return not_sent(None);
            }
        },
    };
    let url = match &prepared.url {
        Ok(url) => url,
        Err(e) => {
            park(shared, delivery, &e.to_string()).await;
            return not_sent(Some(prepared));
        }
    };
    let secret = match &prepared.secret {
        Ok(secret) => secret,
        Err(e) => {
            // A settings problem, not the endpoint's: retried until the key is back.
            fail(shared, delivery, &e.to_string(), false).await;
            return not_sent(Some(prepared));
        }
    };
    let body = Bytes::from(payload::webhook_body(delivery));
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let headers = [
        (SIGNATURE_HEADER, header_value(&[secret], timestamp, &body)),
        (DELIVERY_HEADER, delivery.id.to_string()),
        (
            EVENT_HEADER,
            payload::event_id(&delivery.notice.event.event_id),
        ),
    ];
    let attempt = match shared.http.post(url, &headers, body).await {
        Ok(_) => {
            ack(shared, delivery, Outcome::Delivered).await;
            Attempt::Answered
        }
        Err(e) => {
            fail(shared, delivery, &e.to_string(), false).await;
            Attempt::Failed
        }
    };
    Finished {
        attempt,
        prepared: Some(prepared),
    }
}

async fn send_email<S: PushStore + ?Sized>(shared: &Shared<S>, delivery: &Delivery) -> Attempt {
    let Some(mailer) = &shared.mailer else {
        fail(
            shared,
            delivery,
            "e-mail is not configured on this node",
            false,
        )
        .await;
        return Attempt::NotSent;
    };
    let tn = delivery.notice.tracking_number;
    let subscription = match shared.store.email_subscription(tn).await {
        Ok(Some(s)) if matches!(s.state, EmailState::Confirmed { .. }) => s,
        Ok(_) => {
            ack(shared, delivery, Outcome::Dropped).await;
            return Attempt::NotSent;
        }
        Err(e) => {
            tracing::warn!(error = %e, "push: cannot read an e-mail subscription");
            shared.metrics.store_error();
            give_back(shared, delivery, shared.config.busy_retry).await;
            return Attempt::NotSent;
        }
    };
    let id = delivery.id.to_string();
    match mailer
        .send_status(&subscription, &delivery.notice, &id)
        .await
    {
        Ok(()) => {
            ack(shared, delivery, Outcome::Delivered).await;
            Attempt::Answered
        }
        Err(e) => {
            let permanent = e.is_permanent();
            fail(shared, delivery, &e.to_string(), permanent).await;
            // A refused recipient says nothing against the relay.
            if permanent {
                Attempt::Answered
            } else {
                Attempt::Failed
            }
        }
    }
}

/// Logs a store call's answer and counts the outcome when it took effect.
fn settled<S: PushStore + ?Sized>(
    shared: &Shared<S>,
    delivery: &Delivery,
    outcome: Outcome,
    result: Result<bool, rempart_store::StoreError>,
) {
    match result {
        Ok(true) => shared
            .metrics
            .count(channel_kind(&delivery.channel), outcome),
        Ok(false) => {
            tracing::debug!(delivery = %delivery.id, "push: lease lost; another node has it")
        }
        Err(e) => {
            tracing::warn!(delivery = %delivery.id, error = %e, "push: cannot settle a delivery; it will come back when its lease ends");
            shared.metrics.store_error();
        }
    }
}

async fn ack<S: PushStore + ?Sized>(shared: &Shared<S>, delivery: &Delivery, outcome: Outcome) {
    let result = shared.store.ack(delivery.lease(), now()).await;
    settled(shared, delivery, outcome, result);
}

async fn park<S: PushStore + ?Sized>(shared: &Shared<S>, delivery: &Delivery, error: &str) {
    let result = shared
        .store
        .park(delivery.lease(), now(), &bounded_error(error))
        .await;
    settled(shared, delivery, Outcome::Dead, result);
}

async fn give_back<S: PushStore + ?Sized>(
    shared: &Shared<S>,
    delivery: &Delivery,
    after: Duration,
) {
    let spread = shared.jitter.up_to(shared.config.busy_retry / 2);
    let due = later(now(), after + spread);
    let result = shared.store.release(delivery.lease(), due).await;
    settled(shared, delivery, Outcome::Deferred, result);
}

/// A failed attempt: parked when permanent or when its retry window is over, else retried with
/// backoff.
async fn fail<S: PushStore + ?Sized>(
    shared: &Shared<S>,
    delivery: &Delivery,
    error: &str,
    permanent: bool,
) {
    let at = now();
    let backoff = &shared.config.backoff;
    if permanent || backoff.gives_up(delivery.retry_since, at) {
        park(shared, delivery, error).await;
        return;
    }
    let due = later(at, backoff.delay(delivery.attempts, shared.jitter.next()));
    let result = shared
        .store
        .retry(delivery.lease(), due, &bounded_error(error))
        .await;
    settled(shared, delivery, Outcome::Retried, result);
}
