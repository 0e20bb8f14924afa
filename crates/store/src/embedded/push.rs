//! [`PushStore`] on the embedded store: every call runs on a blocking thread; writes take the
//! push lock (`outbox.rs`), fill one write batch with the rows and the counters, and commit it.
//!
//! **What is fsync'd**: whatever a person was told is done — endpoints, subscriptions, e-mail
//! requests, confirmations and deletions, replays — before the call returns. Outbox moves made
//! by the dispatcher (lease, ack, retry, release, park, purge) are written to the journal
//! without their own fsync: the next group commit's fsync covers them, and a crash that loses
//! one sends a delivery again at worst, which at-least-once allows (leases live only as long as
//! this process anyway: one process opens the store).
//!
//! A failed write stops the store's writes like a failed group commit does, and wakes the
//! committer so that it recovers (`recovery.rs`).

use std::collections::HashSet;
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use fjall::{OwnedWriteBatch, PersistMode};
use rempart_domain::{Timestamp, TrackingNumber};
use tokio::sync::oneshot;

use super::committer::Job;
use super::outbox::{
    PushState, parcel_subscriptions, put_delivery, read_delivery, read_email, remove_delivery,
};
use super::push_codec::{self as pc, Counters, key};
use super::tables::{Tables, describe, engine};
use super::{EmbeddedStore, Shared};
use crate::StoreError;
use crate::push::*;

/// Whether a push write is fsync'd before the call returns (see the module comment).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durable {
    Yes,
    ByNextCommit,
}

/// What a push write's closure gets: the open tables, the push state (its watched set may be
/// changed directly: a wrong set after a failed write is rebuilt by the recovery), the batch and
/// a copy of the counters, stored with the batch and kept once it is written.
struct Write<'a> {
    t: &'a Tables,
    state: &'a mut PushState,
    batch: OwnedWriteBatch,
    counters: Counters,
}

fn blocking_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("push task: {e}"))
}

impl EmbeddedStore {
    async fn push_read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Tables) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.read(read))
            .await
            .map_err(blocking_failed)?
    }

    async fn push_write<T, E>(
        &self,
        durable: Durable,
        write: impl FnOnce(&mut Write<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        let wake = self.queue.clone();
        tokio::task::spawn_blocking(move || {
            if shared.health.is_failed() {
                return Err(shared.health.refusal().into());
            }
            let outcome = shared
                .read(|t| Ok(write_under_lock(&shared, t, durable, write)))
                .map_err(E::from)?;
            if let Err(Failed::Engine(reason)) = &outcome {
                tracing::error!(error = %reason, "a push write failed; the embedded store stops taking writes until it recovers");
                shared.health.fail(reason.clone());
                wake_committer(wake.as_ref());
            }
            match outcome {
                Ok(value) => Ok(value),
                Err(Failed::Refused(e)) => Err(e),
                Err(Failed::Engine(reason)) => Err(StoreError::Unavailable(reason).into()),
            }
        })
        .await
        .map_err(|e| E::from(blocking_failed(e)))?
    }
}

enum Failed<E> {
    /// The closure refused: nothing was written.
    Refused(E),
    /// The engine failed writing: the store must recover.
    Engine(String),
}

fn write_under_lock<T, E>(
    shared: &Shared,
    t: &Tables,
    durable: Durable,
    write: impl FnOnce(&mut Write<'_>) -> Result<T, E>,
) -> Result<T, Failed<E>> {
    let mut state = shared.push_state();
    let counters = state.counters;
    let mut w = Write {
        t,
        state: &mut state,
        batch: t.db.batch(),
        counters,
    };
    let value = write(&mut w).map_err(Failed::Refused)?;
    let Write {
        mut batch,
        counters,
        ..
    } = w;
    if counters != state.counters {
        batch.insert(&t.push, pc::COUNTERS_KEY, counters.encode());
    }
    batch
        .commit()
        .map_err(|e| Failed::Engine(format!("push write: {}", describe(&e))))?;
    if durable == Durable::Yes {
        t.db.persist(PersistMode::SyncAll)
            .map_err(|e| Failed::Engine(format!("push write fsync: {}", describe(&e))))?;
    }
    state.counters = counters;
    shared
        .watched_bytes
        .store(state.watched.bytes(), std::sync::atomic::Ordering::Relaxed);
    Ok(value)
}

/// Hands the committer an empty batch so that it leaves its wait and sees the failed state.
fn wake_committer(queue: Option<&std::sync::mpsc::SyncSender<Job>>) {
    let (reply, _) = oneshot::channel();
    if let Some(queue) = queue {
        let _ = queue.try_send(Job {
            batch: Vec::new(),
            bytes: 0,
            reply,
        });
    }
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp(t.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

/// Keys (whole, tag included) of a prefix, in order, starting strictly after `after` when given.
fn keys_after(
    t: &Tables,
    prefix: &[u8],
    after: Option<Vec<u8>>,
) -> impl Iterator<Item = Result<(fjall::Slice, fjall::Slice), StoreError>> {
    let start = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Included(prefix.to_vec()),
    };
    let prefix = prefix.to_vec();
    t.push
        .range::<Vec<u8>, _>((start, Bound::Unbounded))
        .map(|g| g.into_inner().map_err(engine("reading push records")))
        .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
}

fn read_endpoint(t: &Tables, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
    t.push
        .get(key(pc::ENDPOINT, &[&id.0.to_be_bytes()]))
        .map_err(engine("reading an endpoint"))?
        .map(|bytes| pc::decode_endpoint(id, &bytes))
        .transpose()
}

fn sub_count(t: &Tables, owner: KeyId) -> Result<u64, StoreError> {
    t.push
        .get(key(pc::SUB_COUNT, &[&owner.0.to_be_bytes()]))
        .map_err(engine("reading a subscription count"))?
        .map_or(Ok(0), |v| pc::read_u64(&v))
}

impl Write<'_> {
    fn put_sub_count(&mut self, owner: KeyId, n: u64) {
        let k = key(pc::SUB_COUNT, &[&owner.0.to_be_bytes()]);
        self.batch.insert(&self.t.push, k, n.to_be_bytes());
    }

    /// Removes one webhook subscription's two keys.
    fn remove_sub(&mut self, owner: KeyId, tn: &TrackingNumber, endpoint: EndpointId) {
        let (o, e) = (owner.0.to_be_bytes(), endpoint.0.to_be_bytes());
        let push = &self.t.push;
        self.batch
            .remove(push, key(pc::SUB_BY_PARCEL, &[tn.as_bytes(), &o, &e]));
        self.batch
            .remove(push, key(pc::SUB_BY_OWNER, &[&o, tn.as_bytes(), &e]));
    }

    /// Forgets a parcel in the watched set when, once this write is applied, nothing watches
    /// it: `removed` of its webhook subscriptions go, and its e-mail subscription stays or not.
    fn unwatch_if_unused(
        &mut self,
        tn: &TrackingNumber,
        removed: usize,
        email_stays: bool,
    ) -> Result<(), StoreError> {
        let hooks = parcel_subscriptions(self.t, tn)?.len();
        if hooks <= removed && !email_stays {
            self.state.watched.remove(tn);
        }
        Ok(())
    }

    /// Moves a delivery still held under `lease`; `false` when the lease was lost.
    fn under_lease(
        &mut self,
        lease: Lease,
        change: impl FnOnce(&mut Delivery),
    ) -> Result<bool, StoreError> {
        let Some(old) = read_delivery(self.t, lease.id)? else {
            return Ok(false);
        };
        if old.lease_token != lease.token || !matches!(old.state, DeliveryState::Leased { .. }) {
            return Ok(false);
        }
        let mut new = old.clone();
        change(&mut new);
        put_delivery(
            self.t,
            &mut self.batch,
            &mut self.counters,
            Some(&old),
            &new,
        );
        Ok(true)
    }

    /// Makes a delivery pending again, due now, with a new retry window.
    fn replay_one(&mut self, old: &Delivery, now: Timestamp) {
        let mut new = old.clone();
        new.state = DeliveryState::Pending;
        new.attempts = 0;
        new.retry_since = now;
        new.next_attempt_at = now;
        put_delivery(self.t, &mut self.batch, &mut self.counters, Some(old), &new);
    }
}

fn owned_by(d: &Delivery, owner: KeyId) -> bool {
    matches!(d.channel, Channel::Webhook { owner: o, .. } if o == owner)
}

fn dead_owner(value: &[u8]) -> Result<u64, StoreError> {
    pc::key_u64_at(value, 0)
}

fn dead_at(value: &[u8]) -> Result<Timestamp, StoreError> {
    value
        .get(8..16)
        .ok_or(StoreError::Corrupt("dead letter entry".into()))
        .and_then(pc::read_time)
}

/// Dead letters of one key or all, by id after `after`: their ids, at most `limit`.
fn dead_ids(
    t: &Tables,
    owner: Option<KeyId>,
    after: Option<DeliveryId>,
    limit: usize,
) -> Result<Vec<DeliveryId>, StoreError> {
    let after = after.map(|a| key(pc::DEAD, &[&a.0.to_be_bytes()]));
    let mut out = Vec::new();
    for entry in keys_after(t, &[pc::DEAD], after) {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry?;
        if owner.is_none_or(|o| dead_owner(&v).is_ok_and(|d| d == o.0)) {
            out.push(DeliveryId(pc::key_u64_at(&k, 1)?));
        }
    }
    Ok(out)
}

fn read_all(t: &Tables, ids: &[DeliveryId]) -> Result<Vec<Delivery>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.extend(read_delivery(t, *id)?);
    }
    Ok(out)
}

#[async_trait]
impl PushStore for EmbeddedStore {
    async fn create_endpoint(
        &self,
        new: NewEndpoint,
        now: Timestamp,
    ) -> Result<Endpoint, PushError> {
        self.push_write(Durable::Yes, move |w| {
            let owner = new.owner.0.to_be_bytes();
            let owned = keys_after(w.t, &key(pc::ENDPOINT_BY_OWNER, &[&owner]), None).count();
            if owned >= MAX_ENDPOINTS_PER_KEY {
                return Err(PushError::TooMany {
                    what: "endpoints",
                    max: MAX_ENDPOINTS_PER_KEY,
                });
            }
            w.counters.last_id += 1;
            let endpoint = Endpoint {
                id: EndpointId(w.counters.last_id),
                owner: new.owner,
                url: new.url,
                secret: new.secret,
                created_at: now,
            };
            let id = endpoint.id.0.to_be_bytes();
            let push = &w.t.push;
            w.batch.insert(
                push,
                key(pc::ENDPOINT, &[&id]),
                pc::encode_endpoint(&endpoint),
            );
            w.batch
                .insert(push, key(pc::ENDPOINT_BY_OWNER, &[&owner, &id]), []);
            Ok(endpoint)
        })
        .await
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        self.push_read(move |t| read_endpoint(t, id)).await
    }

    async fn endpoints(&self, owner: KeyId) -> Result<Vec<Endpoint>, StoreError> {
        self.push_read(move |t| {
            let prefix = key(pc::ENDPOINT_BY_OWNER, &[&owner.0.to_be_bytes()]);
            let mut out = Vec::new();
            for entry in keys_after(t, &prefix, None).take(MAX_ENDPOINTS_PER_KEY) {
                let id = EndpointId(pc::key_u64_at(&entry?.0, 9)?);
                out.extend(read_endpoint(t, id)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_endpoint(&self, owner: KeyId, id: EndpointId) -> Result<bool, StoreError> {
        self.push_write(Durable::Yes, move |w| {
            if read_endpoint(w.t, id)?.is_none_or(|e| e.owner != owner) {
                return Ok(false);
            }
            let (o, i) = (owner.0.to_be_bytes(), id.0.to_be_bytes());
            w.batch.remove(&w.t.push, key(pc::ENDPOINT, &[&i]));
            w.batch
                .remove(&w.t.push, key(pc::ENDPOINT_BY_OWNER, &[&o, &i]));
            let mut gone = Vec::new();
            for entry in keys_after(w.t, &key(pc::SUB_BY_OWNER, &[&o]), None) {
                let k = entry?.0;
                if pc::key_u64_at(&k, 22)? == id.0 {
                    gone.push(pc::key_tn_at(&k, 9)?);
                }
            }
            for tn in &gone {
                w.remove_sub(owner, tn, id);
                let email = read_email(w.t, tn)?.is_some();
                w.unwatch_if_unused(tn, 1, email)?;
            }
            let count = sub_count(w.t, owner)?;
            w.put_sub_count(owner, count.saturating_sub(gone.len() as u64));
            Ok(true)
        })
        .await
    }

    async fn subscribe(
        &self,
        owner: KeyId,
        endpoint: EndpointId,
        numbers: &[TrackingNumber],
        now: Timestamp,
    ) -> Result<SubscribeOutcome, PushError> {
        if numbers.len() > MAX_SUBSCRIBE_BATCH {
            return Err(PushError::TooMany {
                what: "tracking numbers in one call",
                max: MAX_SUBSCRIBE_BATCH,
            });
        }
        let mut numbers = numbers.to_vec();
        numbers.sort();
        numbers.dedup();
        self.push_write(Durable::Yes, move |w| {
            if read_endpoint(w.t, endpoint)?.is_none_or(|e| e.owner != owner) {
                return Err(PushError::UnknownEndpoint);
            }
            let (o, e) = (owner.0.to_be_bytes(), endpoint.0.to_be_bytes());
            let mut outcome = SubscribeOutcome::default();
            let mut fresh = Vec::new();
            for tn in &numbers {
                let subs = parcel_subscriptions(w.t, tn)?;
                if subs
                    .iter()
                    .any(|s| s.owner == owner && s.endpoint == endpoint)
                {
                    outcome.existing += 1;
                    continue;
                }
                if subs.len() >= MAX_SUBSCRIPTIONS_PER_PARCEL {
                    return Err(PushError::TooMany {
                        what: "subscriptions on one parcel",
                        max: MAX_SUBSCRIPTIONS_PER_PARCEL,
                    });
                }
                fresh.push(*tn);
            }
            let count = sub_count(w.t, owner)? + fresh.len() as u64;
            if count > MAX_SUBSCRIPTIONS_PER_KEY as u64 {
                return Err(PushError::TooMany {
                    what: "subscriptions of one key",
                    max: MAX_SUBSCRIPTIONS_PER_KEY,
                });
            }
            let created = pc::time_bytes(now);
            for tn in fresh {
                let push = &w.t.push;
                let by_parcel = key(pc::SUB_BY_PARCEL, &[tn.as_bytes(), &o, &e]);
                w.batch.insert(push, by_parcel, created);
                let by_owner = key(pc::SUB_BY_OWNER, &[&o, tn.as_bytes(), &e]);
                w.batch.insert(push, by_owner, created);
                w.state.watched.add(tn);
                outcome.created += 1;
            }
            w.put_sub_count(owner, count);
            Ok(outcome)
        })
        .await
    }

    async fn unsubscribe(
        &self,
        owner: KeyId,
        endpoint: Option<EndpointId>,
        numbers: &[TrackingNumber],
    ) -> Result<usize, StoreError> {
        let mut numbers = numbers.to_vec();
        numbers.sort();
        numbers.dedup();
        self.push_write(Durable::Yes, move |w| {
            let mut removed = 0;
            for tn in &numbers {
                let subs = parcel_subscriptions(w.t, tn)?;
                let gone: Vec<EndpointId> = subs
                    .iter()
                    .filter(|s| s.owner == owner && endpoint.is_none_or(|e| e == s.endpoint))
                    .map(|s| s.endpoint)
                    .collect();
                for e in &gone {
                    w.remove_sub(owner, tn, *e);
                }
                if !gone.is_empty() {
                    let email = read_email(w.t, tn)?.is_some();
                    w.unwatch_if_unused(tn, gone.len(), email)?;
                }
                removed += gone.len();
            }
            if removed > 0 {
                let count = sub_count(w.t, owner)?;
                w.put_sub_count(owner, count.saturating_sub(removed as u64));
            }
            Ok(removed)
        })
        .await
    }

    async fn subscriptions(
        &self,
        owner: KeyId,
        after: Option<(TrackingNumber, EndpointId)>,
        limit: usize,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        self.push_read(move |t| {
            let o = owner.0.to_be_bytes();
            let after = after
                .map(|(tn, e)| key(pc::SUB_BY_OWNER, &[&o, tn.as_bytes(), &e.0.to_be_bytes()]));
            let mut out = Vec::new();
            for entry in
                keys_after(t, &key(pc::SUB_BY_OWNER, &[&o]), after).take(limit.min(MAX_LIST))
            {
                let (k, v) = entry?;
                out.push(WebhookSubscription {
                    owner,
                    tracking_number: pc::key_tn_at(&k, 9)?,
                    endpoint: EndpointId(pc::key_u64_at(&k, 22)?),
                    created_at: pc::read_time(&v)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn request_email(
        &self,
        request: EmailRequest,
        now: Timestamp,
    ) -> Result<EmailRequestOutcome, StoreError> {
        self.push_write(Durable::Yes, move |w| {
            let tn = request.tracking_number;
            let existing = read_email(w.t, &tn)?;
            match existing.as_ref().map(|e| e.state) {
                Some(EmailState::Confirmed { .. }) => {
                    return Ok(EmailRequestOutcome::AlreadyConfirmed);
                }
                Some(EmailState::Pending { token_digest, .. }) => {
                    w.batch.remove(&w.t.push, key(pc::TOKEN, &[&token_digest]));
                }
                None => {}
            }
            let sub = EmailSubscription {
                tracking_number: tn,
                address: request.address,
                lang: request.lang,
                state: EmailState::Pending {
                    token_digest: request.token_digest,
                    expires_at: request.expires_at,
                },
                created_at: now,
                final_at: None,
            };
            let push = &w.t.push;
            w.batch.insert(
                push,
                key(pc::EMAIL, &[tn.as_bytes()]),
                pc::encode_email(&sub),
            );
            w.batch.insert(
                push,
                key(pc::TOKEN, &[&request.token_digest]),
                tn.as_bytes().to_vec(),
            );
            w.state.watched.add(tn);
            Ok(EmailRequestOutcome::Pending)
        })
        .await
    }

    async fn confirm_email(
        &self,
        token_digest: [u8; 32],
        now: Timestamp,
    ) -> Result<Option<EmailSubscription>, StoreError> {
        self.push_write(Durable::Yes, move |w| {
            let token_key = key(pc::TOKEN, &[&token_digest]);
            let Some(tn) =
                w.t.push
                    .get(&token_key)
                    .map_err(engine("reading an e-mail token"))?
            else {
                return Ok(None);
            };
            let tn = pc::key_tn_at(&tn, 0)?;
            let Some(mut sub) = read_email(w.t, &tn)? else {
                return Ok(None);
            };
            match sub.state {
                EmailState::Pending {
                    token_digest: d,
                    expires_at,
                } if d == token_digest && now < expires_at => {}
                _ => return Ok(None),
            }
            sub.state = EmailState::Confirmed { at: now };
            w.batch.remove(&w.t.push, token_key);
            let email_key = key(pc::EMAIL, &[tn.as_bytes()]);
            w.batch.insert(&w.t.push, email_key, pc::encode_email(&sub));
            Ok(Some(sub))
        })
        .await
    }

    async fn email_subscription(
        &self,
        tracking_number: TrackingNumber,
    ) -> Result<Option<EmailSubscription>, StoreError> {
        self.push_read(move |t| read_email(t, &tracking_number))
            .await
    }

    async fn delete_email(&self, tracking_number: TrackingNumber) -> Result<bool, StoreError> {
        self.push_write(Durable::Yes, move |w| {
            let Some(sub) = read_email(w.t, &tracking_number)? else {
                return Ok(false);
            };
            remove_email(w, &sub)?;
            Ok(true)
        })
        .await
    }

    async fn purge_emails(
        &self,
        final_before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.push_write(Durable::Yes, move |w| {
            let mut doomed = Vec::new();
            for entry in keys_after(w.t, &[pc::EMAIL], None) {
                if doomed.len() >= limit {
                    break;
                }
                let (k, v) = entry?;
                let sub = pc::decode_email(pc::key_tn_at(&k, 1)?, &v)?;
                let expired =
                    matches!(sub.state, EmailState::Pending { expires_at, .. } if expires_at < now);
                if expired || sub.final_at.is_some_and(|f| f < final_before) {
                    doomed.push(sub);
                }
            }
            for sub in &doomed {
                remove_email(w, sub)?;
            }
            Ok(doomed.len())
        })
        .await
    }

    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let limit = limit.min(MAX_LEASE);
        self.push_write(Durable::ByNextCommit, move |w| {
            let mut ids = Vec::new();
            for entry in keys_after(w.t, &[pc::DUE], None).take(limit) {
                let k = entry?.0;
                let due = k.get(1..9).ok_or(StoreError::Corrupt("due key".into()))?;
                if pc::read_time(due)? > now {
                    break;
                }
                ids.push(DeliveryId(pc::key_u64_at(&k, 9)?));
            }
            let mut out = Vec::with_capacity(ids.len());
            for old in read_all(w.t, &ids)? {
                w.counters.last_lease += 1;
                let mut new = old.clone();
                new.state = DeliveryState::Leased {
                    until: later(now, lease_for),
                };
                new.lease_token = w.counters.last_lease;
                put_delivery(w.t, &mut w.batch, &mut w.counters, Some(&old), &new);
                out.push(new);
            }
            Ok(out)
        })
        .await
    }

    async fn ack(&self, lease: Lease, now: Timestamp) -> Result<bool, StoreError> {
        self.push_write(Durable::ByNextCommit, move |w| {
            w.under_lease(lease, |d| d.state = DeliveryState::Delivered { at: now })
        })
        .await
    }

    async fn retry(
        &self,
        lease: Lease,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError> {
        let error = bounded_error(error);
        self.push_write(Durable::ByNextCommit, move |w| {
            w.under_lease(lease, |d| {
                d.attempts = d.attempts.saturating_add(1);
                d.last_error = Some(error);
                d.next_attempt_at = next_attempt_at;
                d.state = DeliveryState::Pending;
            })
        })
        .await
    }

    async fn release(&self, lease: Lease, next_attempt_at: Timestamp) -> Result<bool, StoreError> {
        self.push_write(Durable::ByNextCommit, move |w| {
            w.under_lease(lease, |d| {
                d.next_attempt_at = next_attempt_at;
                d.state = DeliveryState::Pending;
            })
        })
        .await
    }

    async fn park(&self, lease: Lease, now: Timestamp, error: &str) -> Result<bool, StoreError> {
        let error = bounded_error(error);
        self.push_write(Durable::ByNextCommit, move |w| {
            w.under_lease(lease, |d| {
                d.attempts = d.attempts.saturating_add(1);
                d.last_error = Some(error);
                d.state = DeliveryState::Dead { at: now };
            })
        })
        .await
    }

    async fn dead_letters(
        &self,
        owner: Option<KeyId>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.push_read(move |t| read_all(t, &dead_ids(t, owner, after, limit.min(MAX_LIST))?))
            .await
    }

    async fn replay(&self, what: Replay, now: Timestamp) -> Result<usize, StoreError> {
        self.push_write(Durable::Yes, move |w| {
            let chosen = match what {
                Replay::Dead { owner, ids: None } => {
                    read_all(w.t, &dead_ids(w.t, owner, None, MAX_REPLAY)?)?
                }
                Replay::Dead {
                    owner,
                    ids: Some(ids),
                } => {
                    let ids: HashSet<DeliveryId> = ids.into_iter().take(MAX_REPLAY).collect();
                    let ids: Vec<DeliveryId> = ids.into_iter().collect();
                    read_all(w.t, &ids)?
                        .into_iter()
                        .filter(|d| matches!(d.state, DeliveryState::Dead { .. }))
                        .filter(|d| owner.is_none_or(|o| owned_by(d, o)))
                        .collect()
                }
                Replay::Recent {
                    owner,
                    endpoint,
                    since,
                } => recent(w.t, owner, endpoint, since)?,
            };
            for d in &chosen {
                w.replay_one(d, now);
            }
            Ok(chosen.len())
        })
        .await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.read(|t| {
                let counters = shared.push_state().counters;
                let oldest = match t.push.prefix([pc::OPEN]).next() {
                    Some(g) => {
                        let k = g.key().map_err(engine("reading the outbox"))?;
                        read_delivery(t, DeliveryId(pc::key_u64_at(&k, 1)?))?.map(|d| d.created_at)
                    }
                    None => None,
                };
                Ok(OutboxStats {
                    pending: counters.open,
                    dead: counters.dead,
                    oldest_pending: oldest,
                    overflowed: counters.overflowed,
                })
            })
        })
        .await
        .map_err(blocking_failed)?
    }

    async fn purge_deliveries(
        &self,
        policy: PurgePolicy,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.push_write(Durable::ByNextCommit, move |w| {
            let mut doomed = Vec::new();
            let mut delivered = w.counters.delivered;
            for entry in keys_after(w.t, &[pc::DONE], None) {
                if doomed.len() >= limit {
                    break;
                }
                let k = entry?.0;
                let at = pc::read_time(k.get(1..9).ok_or(StoreError::Corrupt("done key".into()))?)?;
                if at >= policy.delivered_before && delivered <= policy.delivered_kept_max {
                    break;
                }
                doomed.push(DeliveryId(pc::key_u64_at(&k, 9)?));
                delivered -= 1;
            }
            for entry in keys_after(w.t, &[pc::DEAD], None) {
                if doomed.len() >= limit {
                    break;
                }
                let (k, v) = entry?;
                if dead_at(&v)? < policy.dead_before {
                    doomed.push(DeliveryId(pc::key_u64_at(&k, 1)?));
                }
            }
            let rows = read_all(w.t, &doomed)?;
            for d in &rows {
                remove_delivery(w.t, &mut w.batch, &mut w.counters, d);
            }
            Ok(rows.len())
        })
        .await
    }
}

/// A key's delivered or dead deliveries created since `since` (newest first, at most
/// [`MAX_REPLAY`]), to one endpoint or all.
fn recent(
    t: &Tables,
    owner: KeyId,
    endpoint: Option<EndpointId>,
    since: Timestamp,
) -> Result<Vec<Delivery>, StoreError> {
    let prefix = key(pc::BY_OWNER, &[&owner.0.to_be_bytes()]);
    let mut out = Vec::new();
    for guard in t.push.prefix(&prefix).rev() {
        let k = guard.key().map_err(engine("reading a key's deliveries"))?;
        let Some(d) = read_delivery(t, DeliveryId(pc::key_u64_at(&k, 9)?))? else {
            continue;
        };
        // Ids grow with creation: older ones are all before `since`.
        if d.created_at < since || out.len() >= MAX_REPLAY {
            break;
        }
        let to_endpoint = endpoint.is_none_or(
            |e| matches!(d.channel, Channel::Webhook { endpoint, .. } if endpoint == e),
        );
        let settled = matches!(
            d.state,
            DeliveryState::Delivered { .. } | DeliveryState::Dead { .. }
        );
        if to_endpoint && settled {
            out.push(d);
        }
    }
    Ok(out)
}

fn remove_email(w: &mut Write<'_>, sub: &EmailSubscription) -> Result<(), StoreError> {
    let tn = sub.tracking_number;
    if let EmailState::Pending { token_digest, .. } = sub.state {
        w.batch.remove(&w.t.push, key(pc::TOKEN, &[&token_digest]));
    }
    w.batch.remove(&w.t.push, key(pc::EMAIL, &[tn.as_bytes()]));
    w.unwatch_if_unused(&tn, 0, false)
}
