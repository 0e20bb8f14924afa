//! An in-memory `PushStore` for the dispatcher's tests. The real backends (embedded, PostgreSQL)
//! come in phase 2 and will run a shared contract suite; this one only has to be right enough
//! for the tests, and simple enough to trust at a glance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rempart_domain::{Timestamp, TrackingNumber};
use rempart_store::StoreError;
use rempart_store::push::*;

#[derive(Default)]
struct State {
    next_id: u64,
    lease_counter: u64,
    endpoints: BTreeMap<EndpointId, Endpoint>,
    subs: BTreeMap<(KeyId, TrackingNumber, EndpointId), WebhookSubscription>,
    emails: HashMap<TrackingNumber, EmailSubscription>,
    deliveries: BTreeMap<DeliveryId, Delivery>,
    overflowed: u64,
}

pub struct MemoryPush {
    state: Mutex<State>,
    capacity: u64,
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp(t.micros() + d.as_micros() as i64)
}

impl MemoryPush {
    pub fn new(capacity: u64) -> Self {
        MemoryPush {
            state: Mutex::new(State::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// What `EventStore::append` will do in phase 2, inside its commit: admit and write.
    pub fn enqueue(&self, new: Vec<NewDelivery>, now: Timestamp) -> Vec<DeliveryId> {
        let mut s = self.lock();
        let undelivered = s
            .deliveries
            .values()
            .filter(|d| !matches!(d.state, DeliveryState::Delivered { .. }))
            .count() as u64;
        let admission = admit(undelivered, self.capacity, new.len());
        s.overflowed += admission.overflow as u64;
        let mut ids = Vec::new();
        for n in new.into_iter().take(admission.write) {
            s.next_id += 1;
            let id = DeliveryId(s.next_id);
            s.deliveries.insert(
                id,
                Delivery {
                    id,
                    channel: n.channel,
                    notice: n.notice,
                    created_at: now,
                    retry_since: now,
                    attempts: 0,
                    next_attempt_at: now,
                    state: DeliveryState::Pending,
                    last_error: None,
                    lease_token: 0,
                },
            );
            ids.push(id);
        }
        ids
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.lock().deliveries.values().cloned().collect()
    }

    pub fn get(&self, id: DeliveryId) -> Delivery {
        self.lock().deliveries[&id].clone()
    }

    pub fn put_email(&self, sub: EmailSubscription) {
        self.lock().emails.insert(sub.tracking_number, sub);
    }

    /// Applies `f` to a delivery still held under `lease`.
    fn under_lease(&self, lease: Lease, f: impl FnOnce(&mut Delivery)) -> bool {
        let mut s = self.lock();
        match s.deliveries.get_mut(&lease.id) {
            Some(d)
                if d.lease_token == lease.token
                    && matches!(d.state, DeliveryState::Leased { .. }) =>
            {
                f(d);
                true
            }
            _ => false,
        }
    }
}

#[async_trait]
impl PushStore for MemoryPush {
    async fn create_endpoint(
        &self,
        new: NewEndpoint,
        now: Timestamp,
    ) -> Result<Endpoint, PushError> {
        let mut s = self.lock();
        let owned = s
            .endpoints
            .values()
            .filter(|e| e.owner == new.owner)
            .count();
        if owned >= MAX_ENDPOINTS_PER_KEY {
            return Err(PushError::TooMany {
                what: "endpoints",
                max: MAX_ENDPOINTS_PER_KEY,
            });
        }
        s.next_id += 1;
        let endpoint = Endpoint {
            id: EndpointId(s.next_id),
            owner: new.owner,
            url: new.url,
            secret: new.secret,
            created_at: now,
        };
        s.endpoints.insert(endpoint.id, endpoint.clone());
        Ok(endpoint)
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        Ok(self.lock().endpoints.get(&id).cloned())
    }

    async fn endpoints(&self, owner: KeyId) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .lock()
            .endpoints
            .values()
            .filter(|e| e.owner == owner)
            .cloned()
            .collect())
    }

    async fn delete_endpoint(&self, owner: KeyId, id: EndpointId) -> Result<bool, StoreError> {
        let mut s = self.lock();
        if s.endpoints.get(&id).is_none_or(|e| e.owner != owner) {
            return Ok(false);
        }
        s.endpoints.remove(&id);
        s.subs.retain(|k, _| k.2 != id);
        Ok(true)
    }

    async fn subscribe(
        &self,
        owner: KeyId,
        endpoint: EndpointId,
        numbers: &[TrackingNumber],
        now: Timestamp,
    ) -> Result<SubscribeOutcome, PushError> {
        let mut s = self.lock();
        if s.endpoints.get(&endpoint).is_none_or(|e| e.owner != owner) {
            return Err(PushError::UnknownEndpoint);
        }
        let mut outcome = SubscribeOutcome::default();
        for &tn in numbers {
            let key = (owner, tn, endpoint);
            if s.subs.contains_key(&key) {
                outcome.existing += 1;
                continue;
            }
            s.subs.insert(
                key,
                WebhookSubscription {
                    owner,
                    tracking_number: tn,
                    endpoint,
                    created_at: now,
                },
            );
            outcome.created += 1;
        }
        Ok(outcome)
    }

    async fn unsubscribe(
        &self,
        owner: KeyId,
        endpoint: Option<EndpointId>,
        numbers: &[TrackingNumber],
    ) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let before = s.subs.len();
        s.subs.retain(|k, _| {
            !(k.0 == owner && numbers.contains(&k.1) && endpoint.is_none_or(|e| e == k.2))
        });
        Ok(before - s.subs.len())
    }

    async fn subscriptions(
        &self,
        owner: KeyId,
        after: Option<(TrackingNumber, EndpointId)>,
        limit: usize,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        let s = self.lock();
        Ok(s.subs
            .values()
            .filter(|w| {
                w.owner == owner && after.is_none_or(|a| (w.tracking_number, w.endpoint) > a)
            })
            .take(limit.min(MAX_LIST))
            .copied()
            .collect())
    }

    async fn request_email(
        &self,
        r: EmailRequest,
        now: Timestamp,
    ) -> Result<EmailRequestOutcome, StoreError> {
        let mut s = self.lock();
        if let Some(existing) = s.emails.get(&r.tracking_number)
            && matches!(existing.state, EmailState::Confirmed { .. })
        {
            return Ok(EmailRequestOutcome::AlreadyConfirmed);
        }
        s.emails.insert(
            r.tracking_number,
            EmailSubscription {
                tracking_number: r.tracking_number,
                address: r.address,
                lang: r.lang,
                state: EmailState::Pending {
                    token_digest: r.token_digest,
                    expires_at: r.expires_at,
                },
                created_at: now,
                final_at: None,
            },
        );
        Ok(EmailRequestOutcome::Pending)
    }

    async fn confirm_email(
        &self,
        digest: [u8; 32],
        now: Timestamp,
    ) -> Result<Option<EmailSubscription>, StoreError> {
        let mut s = self.lock();
        for sub in s.emails.values_mut() {
            if let EmailState::Pending {
                token_digest,
                expires_at,
            } = sub.state
                && token_digest == digest
                && now < expires_at
            {
                sub.state = EmailState::Confirmed { at: now };
                return Ok(Some(sub.clone()));
            }
        }
        Ok(None)
    }

    async fn email_subscription(
        &self,
        tn: TrackingNumber,
    ) -> Result<Option<EmailSubscription>, StoreError> {
        Ok(self.lock().emails.get(&tn).cloned())
    }

    async fn delete_email(&self, tn: TrackingNumber) -> Result<bool, StoreError> {
        Ok(self.lock().emails.remove(&tn).is_some())
    }

    async fn purge_emails(
        &self,
        final_before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let doomed: Vec<TrackingNumber> = s
            .emails
            .values()
            .filter(|e| {
                e.final_at.is_some_and(|f| f < final_before)
                    || matches!(e.state, EmailState::Pending { expires_at, .. } if expires_at < now)
            })
            .map(|e| e.tracking_number)
            .take(limit)
            .collect();
        for tn in &doomed {
            s.emails.remove(tn);
        }
        Ok(doomed.len())
    }

    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut s = self.lock();
        let mut due: Vec<(Timestamp, DeliveryId)> = s
            .deliveries
            .values()
            .filter(|d| match d.state {
                DeliveryState::Pending => d.next_attempt_at <= now,
                DeliveryState::Leased { until } => until <= now,
                _ => false,
            })
            .map(|d| (d.next_attempt_at, d.id))
            .collect();
        due.sort();
        due.truncate(limit.min(MAX_LEASE));
        let mut out = Vec::new();
        for (_, id) in due {
            s.lease_counter += 1;
            let token = s.lease_counter;
            let d = s.deliveries.get_mut(&id).unwrap();
            d.state = DeliveryState::Leased {
                until: later(now, lease_for),
            };
            d.lease_token = token;
            out.push(d.clone());
        }
        Ok(out)
    }

    async fn ack(&self, lease: Lease, now: Timestamp) -> Result<bool, StoreError> {
        Ok(self.under_lease(lease, |d| d.state = DeliveryState::Delivered { at: now }))
    }

    async fn retry(&self, lease: Lease, next: Timestamp, error: &str) -> Result<bool, StoreError> {
        Ok(self.under_lease(lease, |d| {
            d.attempts += 1;
            d.last_error = Some(bounded_error(error));
            d.next_attempt_at = next;
            d.state = DeliveryState::Pending;
        }))
    }

    async fn release(&self, lease: Lease, next: Timestamp) -> Result<bool, StoreError> {
        Ok(self.under_lease(lease, |d| {
            d.next_attempt_at = next;
            d.state = DeliveryState::Pending;
        }))
    }

    async fn park(&self, lease: Lease, now: Timestamp, error: &str) -> Result<bool, StoreError> {
        Ok(self.under_lease(lease, |d| {
            d.attempts += 1;
            d.last_error = Some(bounded_error(error));
            d.state = DeliveryState::Dead { at: now };
        }))
    }

    async fn dead_letters(
        &self,
        owner: Option<KeyId>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let s = self.lock();
        Ok(s.deliveries
            .values()
            .filter(|d| matches!(d.state, DeliveryState::Dead { .. }))
            .filter(|d| after.is_none_or(|a| d.id > a))
            .filter(|d| {
                owner.is_none_or(
                    |o| matches!(d.channel, Channel::Webhook { owner, .. } if owner == o),
                )
            })
            .take(limit.min(MAX_LIST))
            .cloned()
            .collect())
    }

    async fn replay(&self, what: Replay, now: Timestamp) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let mut n = 0;
        for d in s.deliveries.values_mut() {
            let owner_of =
                |o: KeyId| matches!(d.channel, Channel::Webhook { owner, .. } if owner == o);
            let chosen = match &what {
                Replay::Dead { owner, ids } => {
                    matches!(d.state, DeliveryState::Dead { .. })
                        && owner.is_none_or(owner_of)
                        && ids.as_ref().is_none_or(|ids| ids.contains(&d.id))
                }
                Replay::Recent {
                    owner,
                    endpoint,
                    since,
                } => matches!(
                    d.state,
                    DeliveryState::Dead { .. } | DeliveryState::Delivered { .. }
                ) && owner_of(*owner)
                    && d.created_at >= *since
                    && endpoint.is_none_or(
                        |e| matches!(d.channel, Channel::Webhook { endpoint, .. } if endpoint == e),
                    ),
            };
            if chosen && n < MAX_REPLAY {
                d.state = DeliveryState::Pending;
                d.attempts = 0;
                d.retry_since = now;
                d.next_attempt_at = now;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let s = self.lock();
        let pending: Vec<&Delivery> = s
            .deliveries
            .values()
            .filter(|d| {
                matches!(
                    d.state,
                    DeliveryState::Pending | DeliveryState::Leased { .. }
                )
            })
            .collect();
        Ok(OutboxStats {
            pending: pending.len() as u64,
            dead: s
                .deliveries
                .values()
                .filter(|d| matches!(d.state, DeliveryState::Dead { .. }))
                .count() as u64,
            oldest_pending: pending.iter().map(|d| d.created_at).min(),
            overflowed: s.overflowed,
        })
    }

    async fn purge_deliveries(
        &self,
        policy: PurgePolicy,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let doomed: Vec<DeliveryId> = s
            .deliveries
            .values()
            .filter(|d| match d.state {
                DeliveryState::Delivered { at } => at < policy.delivered_before,
                DeliveryState::Dead { at } => at < policy.dead_before,
                _ => false,
            })
            .map(|d| d.id)
            .take(limit)
            .collect();
        for id in &doomed {
            s.deliveries.remove(id);
        }
        Ok(doomed.len())
    }
}
