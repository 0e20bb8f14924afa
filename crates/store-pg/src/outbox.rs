//! The outbox inside an append's transaction: after the events' insert and before COMMIT, the
//! batch's accepted events of subscribed parcels become deliveries (`rempart_store::push`'s
//! module comment is the design).
//!
//! - **Cheap without subscriptions**: one query reads the subscriptions and e-mail
//!   subscriptions of the batch's parcels (an index probe per parcel); none found, nothing more.
//! - **Concurrent appends of one parcel** are serialized by that query's `FOR UPDATE` on the
//!   parcel's subscription rows (taken in key order, so no deadlock): the second transaction
//!   reads the parcel's latest event after the first committed, and compares with that.
//! - **Capacity** is checked against a count of undelivered rows (a count reads every undelivered
//!   row). While the node's last count, taken less than [`COUNT_EVERY`] ago, plus what it wrote
//!   since, leaves room, that figure is used; otherwise the rows are counted in the transaction,
//!   so a delivery is never dropped for a stale figure. Other nodes' writes and appends
//!   committing at the same moment are not in the figure: the outbox can pass its capacity by
//!   what the nodes write in one such period. A full outbox costs a count per append that has
//!   deliveries to write.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rempart_domain::{Event, Latest, StatusTracker, StoredEvent, Timestamp, TrackingNumber};
use rempart_store::push::{
    Channel, EmailSubscription, EndpointId, KeyId, NewDelivery, WebhookSubscription, admit, fan_out,
};
use tokio_postgres::Transaction;

use crate::push::{decode_email, status_name};

/// How long a count of undelivered rows stands for the outbox's size.
pub(crate) const COUNT_EVERY: Duration = Duration::from_secs(1);

/// A node's last count of undelivered rows, plus what it wrote since.
#[derive(Default)]
pub(crate) struct Undelivered(Mutex<Option<(Instant, u64)>>);

impl Undelivered {
    fn recent(&self) -> Option<u64> {
        let last = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
        last.filter(|(at, _)| at.elapsed() < COUNT_EVERY)
            .map(|(_, n)| n)
    }

    fn set(&self, at: Instant, n: u64) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((at, n));
    }

    fn add(&self, n: u64) {
        if let Some((_, count)) = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            *count += n;
        }
    }
}

/// Where an append's deliveries are admitted: the outbox capacity and this node's count.
pub(crate) struct Outbox<'a> {
    pub(crate) capacity: u64,
    pub(crate) undelivered: &'a Undelivered,
}

/// The accepted events (with their `received`) → deliveries, written in `tx`.
pub(crate) async fn write_deliveries(
    tx: &Transaction<'_>,
    accepted: &[StoredEvent],
    outbox: Outbox<'_>,
    now: Timestamp,
) -> Result<(), tokio_postgres::Error> {
    let mut numbers: Vec<&str> = accepted
        .iter()
        .map(|e| e.event.tracking_number.as_str())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let hooks = tx
        .query(
            "SELECT tracking_number, owner, endpoint, created_at_us FROM rempart_push_subscriptions \
             WHERE tracking_number = ANY($1) ORDER BY tracking_number, owner, endpoint FOR UPDATE",
            &[&numbers],
        )
        .await?;
    let emails = tx
        .query(
            "SELECT * FROM rempart_push_emails WHERE tracking_number = ANY($1) \
             ORDER BY tracking_number FOR UPDATE",
            &[&numbers],
        )
        .await?;
    if hooks.is_empty() && emails.is_empty() {
        return Ok(());
    }
    let mut subs: Vec<WebhookSubscription> = Vec::with_capacity(hooks.len());
    for row in &hooks {
        let tn: String = row.get(0);
        let Ok(tracking_number) = TrackingNumber::from_bytes(tn.as_bytes()) else {
            continue;
        };
        subs.push(WebhookSubscription {
            owner: KeyId(row.get::<_, i64>(1) as u64),
            tracking_number,
            endpoint: EndpointId(row.get::<_, i64>(2) as u64),
            created_at: Timestamp(row.get(3)),
        });
    }
    let emails: HashMap<TrackingNumber, EmailSubscription> = emails
        .iter()
        .filter_map(|row| decode_email(row).ok())
        .map(|e| (e.tracking_number, e))
        .collect();
    let watched: HashSet<TrackingNumber> = subs
        .iter()
        .map(|s| s.tracking_number)
        .chain(emails.keys().copied())
        .collect();
    let events: Vec<StoredEvent> = accepted
        .iter()
        .filter(|e| watched.contains(&e.event.tracking_number))
        .cloned()
        .collect();
    let mut tracker = StatusTracker::new();
    seed(tx, &mut tracker, &watched, &events).await?;
    let mut wanted = Vec::new();
    let mut finals = Vec::new();
    for change in tracker.apply(&events) {
        let tn = change.tracking_number;
        let hooks: Vec<WebhookSubscription> = subs
            .iter()
            .filter(|s| s.tracking_number == tn)
            .copied()
            .collect();
        let email = emails.get(&tn);
        wanted.extend(fan_out(&change, &hooks, email));
        if change.after.is_final && email.is_some_and(|e| e.final_at.is_none()) {
            finals.push(tn.as_str().to_owned());
        }
    }
    if !finals.is_empty() {
        tx.execute(
            "UPDATE rempart_push_emails SET final_at_us = $2 \
             WHERE tracking_number = ANY($1) AND final_at_us IS NULL",
            &[&finals, &now.0],
        )
        .await?;
    }
    admit_and_insert(tx, wanted, outbox, now).await
}

/// Seeds the tracker with each watched parcel's latest event before this batch.
async fn seed(
    tx: &Transaction<'_>,
    tracker: &mut StatusTracker,
    watched: &HashSet<TrackingNumber>,
    events: &[StoredEvent],
) -> Result<(), tokio_postgres::Error> {
    let numbers: Vec<&str> = watched.iter().map(TrackingNumber::as_str).collect();
    let mine: Vec<&str> = events.iter().map(|e| e.event.event_id.as_str()).collect();
    let rows = tx
        .query(
            "SELECT DISTINCT ON (tracking_number) tracking_number, code, occurred_at_us, received \
             FROM rempart_events WHERE tracking_number = ANY($1) AND NOT (event_id = ANY($2)) \
             ORDER BY tracking_number, occurred_at_us DESC, received DESC",
            &[&numbers, &mine],
        )
        .await?;
    for tn in watched {
        tracker.seed(*tn, None);
    }
    for row in &rows {
        let tn: String = row.get(0);
        let code: String = row.get(1);
        let (Ok(tn), Some(code)) = (
            TrackingNumber::from_bytes(tn.as_bytes()),
            rempart_domain::EventCode::parse(&code),
        ) else {
            continue;
        };
        tracker.seed(
            tn,
            Some(Latest {
                occurred_at: Timestamp(row.get(2)),
                received: row.get::<_, i64>(3) as u64,
                code,
            }),
        );
    }
    Ok(())
}

async fn admit_and_insert(
    tx: &Transaction<'_>,
    wanted: Vec<NewDelivery>,
    outbox: Outbox<'_>,
    now: Timestamp,
) -> Result<(), tokio_postgres::Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let wanted_n = wanted.len() as u64;
    let undelivered = match outbox.undelivered.recent() {
        Some(n) if n + wanted_n <= outbox.capacity => n,
        // No recent count, or one that says full: count now, so that no delivery is dropped
        // for a stale figure (acks since the last count made room).
        _ => {
            let at = Instant::now();
            let n: i64 = tx
                .query_one(
                    "SELECT count(*) FROM rempart_push_deliveries WHERE state <> 'delivered'",
                    &[],
                )
                .await?
                .get(0);
            let n = n.max(0) as u64;
            outbox.undelivered.set(at, n);
            n
        }
    };
    let admission = admit(undelivered, outbox.capacity, wanted.len());
    // Counted as written before the commit: an append that then fails only makes the count high
    // until the next count.
    outbox.undelivered.add(admission.write as u64);
    if admission.overflow > 0 {
        tx.execute(
            "UPDATE rempart_push_counters SET overflowed = overflowed + $1 WHERE id = 1",
            &[&(admission.overflow as i64)],
        )
        .await?;
    }
    let rows: Vec<&NewDelivery> = wanted.iter().take(admission.write).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let hook = |d: &NewDelivery| match d.channel {
        Channel::Webhook { owner, endpoint } => Some((owner.0 as i64, endpoint.0 as i64)),
        Channel::Email => None,
    };
    let owners: Vec<Option<i64>> = rows.iter().map(|d| hook(d).map(|h| h.0)).collect();
    let endpoints: Vec<Option<i64>> = rows.iter().map(|d| hook(d).map(|h| h.1)).collect();
    let tns: Vec<&str> = rows
        .iter()
        .map(|d| d.notice.tracking_number.as_str())
        .collect();
    let previous: Vec<Option<&str>> = rows
        .iter()
        .map(|d| d.notice.previous.map(status_name))
        .collect();
    let statuses: Vec<&str> = rows.iter().map(|d| status_name(d.notice.status)).collect();
    let finals: Vec<bool> = rows.iter().map(|d| d.notice.is_final).collect();
    let events: Vec<&Event> = rows.iter().map(|d| &d.notice.event).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let codes: Vec<&str> = events.iter().map(|e| e.code.as_str()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.occurred_at.0).collect();
    let locations: Vec<Option<&str>> = events.iter().map(|e| e.location.as_deref()).collect();
    let products: Vec<Option<&str>> = events.iter().map(|e| e.product.as_deref()).collect();
    tx.execute(
        "INSERT INTO rempart_push_deliveries (id, owner, endpoint, tracking_number, \
         previous_status, status, is_final, event_id, code, occurred_at_us, location, product, \
         created_at_us, retry_since_us, attempts, next_attempt_at_us, state, due_us, lease_token) \
         SELECT nextval('rempart_push_id_seq'), o, e, t, p, s, f, i, c, at, l, pr, \
                $12, $12, 0, $12, 'pending', $12, 0 \
         FROM unnest($1::INT8[], $2::INT8[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BOOL[], \
                     $7::TEXT[], $8::TEXT[], $9::INT8[], $10::TEXT[], $11::TEXT[]) \
              WITH ORDINALITY AS u(o, e, t, p, s, f, i, c, at, l, pr, n) ORDER BY n",
        &[
            &owners, &endpoints, &tns, &previous, &statuses, &finals, &ids, &codes, &times,
            &locations, &products, &now.0,
        ],
    )
    .await?;
    Ok(())
}
