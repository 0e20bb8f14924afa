//! The outbox inside the embedded store's commits: which parcels are watched, the outbox's
//! counters, how a delivery row and its indexes are written, and what a group commit adds to its
//! write batch for the watched parcels it touches (`plan`).
//!
//! **Ingest without subscriptions pays ~nothing**: the committer asks [`Watched`] about each
//! accepted event's parcel, an in-memory set of every parcel with a webhook or e-mail
//! subscription. Only the group's events of watched parcels go further: each such parcel's
//! latest stored event seeds a [`StatusTracker`] (one reverse seek in `events`), the group's
//! batches are applied in order, and each change becomes deliveries ([`fan_out`]), admitted
//! against the capacity ([`admit`]) and written into the group's own write batch with the
//! counters: one fsync covers the events and their deliveries.
//!
//! The set has a bound ([`EmbeddedOptions::watched_in_memory_max`]); past it the set is dropped
//! and each accepted event's parcel is looked up in the `push` keyspace instead (slower ingest,
//! bounded memory). It is rebuilt from the keyspace at every open.
//!
//! All push writes — the committer's and every `PushStore` call's — happen under one lock
//! ([`PushState`]), so a read-modify-write of the outbox never interleaves with another.
//!
//! [`EmbeddedOptions::watched_in_memory_max`]: super::EmbeddedOptions::watched_in_memory_max

use std::collections::HashSet;

use fjall::OwnedWriteBatch;
use rempart_domain::{Latest, StatusTracker, StoredEvent, Timestamp, TrackingNumber};

use super::push_codec::{self as pc, Counters, key};
use super::tables::{Tables, engine};
use crate::StoreError;
use crate::codec;
use crate::push::{
    Channel, Delivery, DeliveryId, DeliveryState, EmailSubscription, EndpointId, KeyId,
    WebhookSubscription, admit, fan_out,
};

/// The parcels with a subscription, in memory while they fit the bound.
pub(super) struct Watched {
    set: HashSet<TrackingNumber>,
    bound: usize,
    /// The set went past its bound and was dropped: ask the keyspace.
    spilled: bool,
}

impl Watched {
    pub(super) fn is_empty(&self) -> bool {
        !self.spilled && self.set.is_empty()
    }

    pub(super) fn contains(&self, t: &Tables, tn: &TrackingNumber) -> Result<bool, StoreError> {
        if !self.spilled {
            return Ok(self.set.contains(tn));
        }
        let subscribed = t
            .push
            .prefix(key(pc::SUB_BY_PARCEL, &[tn.as_bytes()]))
            .next()
            .is_some();
        Ok(subscribed
            || t.push
                .contains_key(key(pc::EMAIL, &[tn.as_bytes()]))
                .map_err(engine("reading e-mail subscriptions"))?)
    }

    pub(super) fn add(&mut self, tn: TrackingNumber) {
        if self.spilled {
            return;
        }
        if self.set.len() >= self.bound && !self.set.contains(&tn) {
            tracing::warn!(
                bound = self.bound,
                "more watched parcels than the in-memory set holds; ingest now looks each parcel up"
            );
            self.spilled = true;
            self.set = HashSet::new();
            return;
        }
        self.set.insert(tn);
    }

    /// Forgets a parcel that has no subscription left.
    pub(super) fn remove(&mut self, tn: &TrackingNumber) {
        self.set.remove(tn);
    }

    /// Bytes the set holds (hashbrown: the entries and a control byte per bucket).
    pub(super) fn bytes(&self) -> u64 {
        (self.set.capacity() * (std::mem::size_of::<TrackingNumber>() + 1)) as u64
    }
}

/// What every push write shares: the counters as stored and the watched parcels.
pub(super) struct PushState {
    pub(super) counters: Counters,
    pub(super) watched: Watched,
}

impl PushState {
    /// Reads the counters and rebuilds the watched set from the keyspace.
    pub(super) fn load(t: &Tables, bound: usize) -> Result<PushState, StoreError> {
        let counters = match t
            .push
            .get(pc::COUNTERS_KEY)
            .map_err(engine("reading the outbox counters"))?
        {
            Some(bytes) => Counters::decode(&bytes)?,
            None => Counters::default(),
        };
        let mut watched = Watched {
            set: HashSet::new(),
            bound,
            spilled: false,
        };
        for tag in [pc::SUB_BY_PARCEL, pc::EMAIL] {
            for guard in t.push.prefix([tag]) {
                let k = guard.key().map_err(engine("reading subscriptions"))?;
                watched.add(pc::key_tn_at(&k, 1)?);
            }
        }
        Ok(PushState { counters, watched })
    }
}

/// The index entries of a delivery in its state (the `w` owner entry aside).
fn state_entries(d: &Delivery) -> Vec<(Vec<u8>, Vec<u8>)> {
    let id = d.id.0.to_be_bytes();
    let due = |at: Timestamp| {
        vec![
            (key(pc::DUE, &[&pc::time_bytes(at), &id]), Vec::new()),
            (key(pc::OPEN, &[&id]), Vec::new()),
        ]
    };
    match d.state {
        DeliveryState::Pending => due(d.next_attempt_at),
        DeliveryState::Leased { until } => due(until),
        DeliveryState::Delivered { at } => {
            vec![(key(pc::DONE, &[&pc::time_bytes(at), &id]), Vec::new())]
        }
        DeliveryState::Dead { at } => {
            let owner = match d.channel {
                Channel::Webhook { owner, .. } => owner.0,
                Channel::Email => pc::NO_OWNER,
            };
            let value = [owner.to_be_bytes(), pc::time_bytes(at)].concat();
            vec![(key(pc::DEAD, &[&id]), value)]
        }
    }
}

/// Writes a delivery, new (`old` is `None`) or moved from `old`'s state, with its indexes.
pub(super) fn put_delivery(
    t: &Tables,
    batch: &mut OwnedWriteBatch,
    counters: &mut Counters,
    old: Option<&Delivery>,
    new: &Delivery,
) {
    let id = new.id.0.to_be_bytes();
    let entries = state_entries(new);
    match old {
        // A key removed and inserted in one write batch would share a sequence number: which
        // wins is not defined, so a key the new state keeps is only inserted.
        Some(old) => {
            for (k, _) in state_entries(old) {
                if !entries.iter().any(|(n, _)| *n == k) {
                    batch.remove(&t.push, k);
                }
            }
        }
        None => {
            if let Channel::Webhook { owner, .. } = new.channel {
                batch.insert(
                    &t.push,
                    key(pc::BY_OWNER, &[&owner.0.to_be_bytes(), &id]),
                    [],
                );
            }
        }
    }
    for (k, v) in entries {
        batch.insert(&t.push, k, v);
    }
    batch.insert(&t.push, key(pc::DELIVERY, &[&id]), pc::encode_delivery(new));
    counters.moved(old.map(|d| &d.state), Some(&new.state));
}

/// Removes a delivery and its indexes.
pub(super) fn remove_delivery(
    t: &Tables,
    batch: &mut OwnedWriteBatch,
    counters: &mut Counters,
    d: &Delivery,
) {
    let id = d.id.0.to_be_bytes();
    for (k, _) in state_entries(d) {
        batch.remove(&t.push, k);
    }
    if let Channel::Webhook { owner, .. } = d.channel {
        batch.remove(&t.push, key(pc::BY_OWNER, &[&owner.0.to_be_bytes(), &id]));
    }
    batch.remove(&t.push, key(pc::DELIVERY, &[&id]));
    counters.moved(Some(&d.state), None);
}

pub(super) fn read_delivery(t: &Tables, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
    t.push
        .get(key(pc::DELIVERY, &[&id.0.to_be_bytes()]))
        .map_err(engine("reading a delivery"))?
        .map(|bytes| pc::decode_delivery(id, &bytes))
        .transpose()
}

/// A parcel's webhook subscriptions (at most the per-parcel bound, by construction).
pub(super) fn parcel_subscriptions(
    t: &Tables,
    tn: &TrackingNumber,
) -> Result<Vec<WebhookSubscription>, StoreError> {
    let mut out = Vec::new();
    for guard in t.push.prefix(key(pc::SUB_BY_PARCEL, &[tn.as_bytes()])) {
        let (k, v) = guard
            .into_inner()
            .map_err(engine("reading subscriptions"))?;
        out.push(WebhookSubscription {
            owner: KeyId(pc::key_u64_at(&k, 14)?),
            tracking_number: *tn,
            endpoint: EndpointId(pc::key_u64_at(&k, 22)?),
            created_at: pc::read_time(&v)?,
        });
    }
    Ok(out)
}

pub(super) fn read_email(
    t: &Tables,
    tn: &TrackingNumber,
) -> Result<Option<EmailSubscription>, StoreError> {
    t.push
        .get(key(pc::EMAIL, &[tn.as_bytes()]))
        .map_err(engine("reading an e-mail subscription"))?
        .map(|bytes| pc::decode_email(*tn, &bytes))
        .transpose()
}

/// The latest stored event of a parcel: the last key of its range (key order is time order, then
/// reception order).
fn latest_stored(t: &Tables, tn: &TrackingNumber) -> Result<Option<Latest>, StoreError> {
    match t.events.prefix(tn.as_bytes()).next_back() {
        None => Ok(None),
        Some(guard) => {
            let (k, v) = guard.into_inner().map_err(engine("reading events"))?;
            Ok(Some(Latest::of(&codec::decode_event(&k, &v)?)))
        }
    }
}

/// Adds to a group's write batch the deliveries its batches make (`watched_events`: per batch,
/// its accepted events of watched parcels, in order) and the final marks of e-mail
/// subscriptions. Returns the counters to store once the batch is durable, or `None` when the
/// group changed no watched parcel.
pub(super) fn plan(
    t: &Tables,
    batch: &mut OwnedWriteBatch,
    state: &PushState,
    watched_events: &[Vec<StoredEvent>],
    capacity: u64,
    now: Timestamp,
) -> Result<Option<Counters>, StoreError> {
    let mut tracker = StatusTracker::new();
    for event in watched_events.iter().flatten() {
        let tn = event.event.tracking_number;
        if !tracker.is_watched(&tn) {
            tracker.seed(tn, latest_stored(t, &tn)?);
        }
    }
    if tracker.is_empty() {
        return Ok(None);
    }
    let mut wanted = Vec::new();
    for events in watched_events {
        for change in tracker.apply(events) {
            let tn = change.tracking_number;
            let email = read_email(t, &tn)?;
            wanted.extend(fan_out(
                &change,
                &parcel_subscriptions(t, &tn)?,
                email.as_ref(),
            ));
            if let Some(mut email) = email.filter(|e| change.after.is_final && e.final_at.is_none())
            {
                email.final_at = Some(now);
                batch.insert(
                    &t.push,
                    key(pc::EMAIL, &[tn.as_bytes()]),
                    pc::encode_email(&email),
                );
            }
        }
    }
    let mut counters = state.counters;
    let admission = admit(counters.undelivered(), capacity, wanted.len());
    counters.overflowed += admission.overflow as u64;
    for new in wanted.into_iter().take(admission.write) {
        counters.last_id += 1;
        let delivery = Delivery {
            id: DeliveryId(counters.last_id),
            channel: new.channel,
            notice: new.notice,
            created_at: now,
            retry_since: now,
            attempts: 0,
            next_attempt_at: now,
            state: DeliveryState::Pending,
            last_error: None,
            lease_token: 0,
        };
        put_delivery(t, batch, &mut counters, None, &delivery);
    }
    if counters == state.counters {
        return Ok(None);
    }
    batch.insert(&t.push, pc::COUNTERS_KEY, counters.encode());
    Ok(Some(counters))
}

/// The wall clock as a timestamp.
pub(super) fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp(micros)
}
