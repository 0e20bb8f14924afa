//! [`PushStore`] on PostgreSQL (tables in `migrations.rs`, version 2). The outbox rows
//! themselves are written by `append`'s transaction (`outbox.rs`).
//!
//! - **Several nodes share the outbox**: `lease_due` picks due rows with `FOR UPDATE SKIP
//!   LOCKED` and leases them in the same statement, so nodes polling at once take different rows
//!   instead of waiting for each other.
//! - **Fencing**: every lease draws a new token from a sequence; ack, retry, release and park
//!   update the row only `WHERE lease_token = $token AND state = 'leased'`.
//! - Each call is one statement or one short transaction; every call's result is committed
//!   before it returns.

use std::time::Duration;

use async_trait::async_trait;
use rempart_domain::{Event, EventCode, EventId, Status, Timestamp, TrackingNumber};
use rempart_store::StoreError;
use rempart_store::push::*;
use tokio_postgres::Row;

use crate::PgStore;
use crate::error::unavailable;

/// The wall clock as a timestamp (creation time of deliveries).
pub(crate) fn wall_clock() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    Timestamp(micros)
}

const STATUSES: [Status; 8] = [
    Status::InfoReceived,
    Status::InTransit,
    Status::OutForDelivery,
    Status::AttemptFailed,
    Status::AvailableForPickup,
    Status::Delivered,
    Status::Returned,
    Status::Exception,
];

pub(crate) fn status_name(s: Status) -> &'static str {
    s.as_str()
}

fn status_named(name: &str) -> Result<Status, StoreError> {
    STATUSES
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| corrupt("status"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("push row: {what}"))
}

fn tn_of(text: &str) -> Result<TrackingNumber, StoreError> {
    TrackingNumber::from_bytes(text.as_bytes()).map_err(|_| corrupt("tracking_number"))
}

pub(crate) fn decode_email(row: &Row) -> Result<EmailSubscription, StoreError> {
    let get = |e: tokio_postgres::Error| corrupt(&format!("e-mail: {e}"));
    let tn: String = row.try_get("tracking_number").map_err(get)?;
    let address: String = row.try_get("address").map_err(get)?;
    let lang: String = row.try_get("lang").map_err(get)?;
    let confirmed: Option<i64> = row.try_get("confirmed_at_us").map_err(get)?;
    let state = match confirmed {
        Some(at) => EmailState::Confirmed { at: Timestamp(at) },
        None => {
            let digest: Vec<u8> = row.try_get("token_digest").map_err(get)?;
            let expires: i64 = row.try_get("expires_at_us").map_err(get)?;
            EmailState::Pending {
                token_digest: digest.try_into().map_err(|_| corrupt("token digest"))?,
                expires_at: Timestamp(expires),
            }
        }
    };
    Ok(EmailSubscription {
        tracking_number: tn_of(&tn)?,
        address: EmailAddress::parse(&address).map_err(|_| corrupt("address"))?,
        lang: if lang == "en" { Lang::En } else { Lang::Fr },
        state,
        created_at: Timestamp(row.try_get("created_at_us").map_err(get)?),
        final_at: row
            .try_get::<_, Option<i64>>("final_at_us")
            .map_err(get)?
            .map(Timestamp),
    })
}

const DELIVERY_COLUMNS: &str = "id, owner, endpoint, tracking_number, previous_status, status, \
    is_final, event_id, code, occurred_at_us, location, product, created_at_us, retry_since_us, \
    attempts, next_attempt_at_us, state, state_at_us, last_error, lease_token";

fn decode_delivery(row: &Row) -> Result<Delivery, StoreError> {
    let get = |e: tokio_postgres::Error| corrupt(&format!("delivery: {e}"));
    let owner: Option<i64> = row.try_get(1).map_err(get)?;
    let endpoint: Option<i64> = row.try_get(2).map_err(get)?;
    let channel = match (owner, endpoint) {
        (Some(o), Some(e)) => Channel::Webhook {
            owner: KeyId(o as u64),
            endpoint: EndpointId(e as u64),
        },
        _ => Channel::Email,
    };
    let tracking_number = tn_of(row.try_get(3).map_err(get)?)?;
    let previous: Option<&str> = row.try_get(4).map_err(get)?;
    let code: &str = row.try_get(8).map_err(get)?;
    let event = Event {
        event_id: EventId::parse(row.try_get(7).map_err(get)?).map_err(|_| corrupt("event_id"))?,
        tracking_number,
        code: EventCode::parse(code).ok_or_else(|| corrupt("code"))?,
        occurred_at: Timestamp(row.try_get(9).map_err(get)?),
        location: row.try_get(10).map_err(get)?,
        product: row.try_get(11).map_err(get)?,
    };
    let state_at: Option<i64> = row.try_get(17).map_err(get)?;
    let at = || state_at.map(Timestamp).ok_or_else(|| corrupt("state time"));
    let state = match row.try_get::<_, &str>(16).map_err(get)? {
        "pending" => DeliveryState::Pending,
        "leased" => DeliveryState::Leased { until: at()? },
        "delivered" => DeliveryState::Delivered { at: at()? },
        "dead" => DeliveryState::Dead { at: at()? },
        _ => return Err(corrupt("state")),
    };
    Ok(Delivery {
        id: DeliveryId(row.try_get::<_, i64>(0).map_err(get)? as u64),
        channel,
        notice: Notice {
            tracking_number,
            previous: previous.map(status_named).transpose()?,
            status: status_named(row.try_get(5).map_err(get)?)?,
            is_final: row.try_get(6).map_err(get)?,
            event,
        },
        created_at: Timestamp(row.try_get(12).map_err(get)?),
        retry_since: Timestamp(row.try_get(13).map_err(get)?),
        attempts: row.try_get::<_, i32>(14).map_err(get)? as u32,
        next_attempt_at: Timestamp(row.try_get(15).map_err(get)?),
        state,
        last_error: row.try_get(18).map_err(get)?,
        lease_token: row.try_get::<_, i64>(19).map_err(get)? as u64,
    })
}

fn decode_endpoint(row: &Row) -> Result<Endpoint, StoreError> {
    let get = |e: tokio_postgres::Error| corrupt(&format!("endpoint: {e}"));
    let salt: Vec<u8> = row.try_get("salt").map_err(get)?;
    Ok(Endpoint {
        id: EndpointId(row.try_get::<_, i64>("id").map_err(get)? as u64),
        owner: KeyId(row.try_get::<_, i64>("owner").map_err(get)? as u64),
        url: row.try_get("url").map_err(get)?,
        secret: SecretRef {
            key_version: row.try_get::<_, i16>("key_version").map_err(get)? as u8,
            salt: salt.try_into().map_err(|_| corrupt("salt"))?,
        },
        created_at: Timestamp(row.try_get("created_at_us").map_err(get)?),
    })
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp(t.0.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)))
}

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| unavailable(context, &e)
}

fn numbers_of(numbers: &[TrackingNumber]) -> Vec<&str> {
    let mut out: Vec<&str> = numbers.iter().map(TrackingNumber::as_str).collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl PgStore {
    /// One statement under a lease: `true` when it changed the row.
    async fn under_lease(
        &self,
        set: &str,
        lease: Lease,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "UPDATE rempart_push_deliveries SET {set} \
             WHERE id = $1 AND lease_token = $2 AND state = 'leased'"
        );
        let (id, token) = (lease.id.0 as i64, lease.token as i64);
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id, &token];
        all.extend_from_slice(params);
        let n = client
            .execute(&sql, &all)
            .await
            .map_err(db("lease update"))?;
        Ok(n == 1)
    }

    /// Makes the deliveries `ids_sql` selects (with `params`, `$1` being `now`) pending again.
    async fn replay_where(
        &self,
        ids_sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "UPDATE rempart_push_deliveries SET state = 'pending', attempts = 0, \
             retry_since_us = $1, next_attempt_at_us = $1, due_us = $1, state_at_us = NULL \
             WHERE id IN ({ids_sql})"
        );
        let n = client.execute(&sql, params).await.map_err(db("replay"))?;
        Ok(n as usize)
    }
}

#[async_trait]
impl PushStore for PgStore {
    async fn create_endpoint(
        &self,
        new: NewEndpoint,
        now: Timestamp,
    ) -> Result<Endpoint, PushError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        let owner = new.owner.0 as i64;
        let owned: i64 = tx
            .query_one(
                "SELECT count(*) FROM rempart_push_endpoints WHERE owner = $1",
                &[&owner],
            )
            .await
            .map_err(db("count endpoints"))?
            .get(0);
        if owned as usize >= MAX_ENDPOINTS_PER_KEY {
            return Err(PushError::TooMany {
                what: "endpoints",
                max: MAX_ENDPOINTS_PER_KEY,
            });
        }
        let row = tx
            .query_one(
                "INSERT INTO rempart_push_endpoints (id, owner, url, key_version, salt, created_at_us) \
                 VALUES (nextval('rempart_push_id_seq'), $1, $2, $3, $4, $5) RETURNING *",
                &[
                    &owner,
                    &new.url,
                    &i16::from(new.secret.key_version),
                    &new.secret.salt.as_slice(),
                    &now.0,
                ],
            )
            .await
            .map_err(db("create endpoint"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(decode_endpoint(&row)?)
    }

    async fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let client = self.client().await?;
        client
            .query_opt(
                "SELECT * FROM rempart_push_endpoints WHERE id = $1",
                &[&(id.0 as i64)],
            )
            .await
            .map_err(db("read endpoint"))?
            .as_ref()
            .map(decode_endpoint)
            .transpose()
    }

    async fn endpoints(&self, owner: KeyId) -> Result<Vec<Endpoint>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT * FROM rempart_push_endpoints WHERE owner = $1 ORDER BY id LIMIT $2",
                &[&(owner.0 as i64), &(MAX_ENDPOINTS_PER_KEY as i64)],
            )
            .await
            .map_err(db("list endpoints"))?
            .iter()
            .map(decode_endpoint)
            .collect()
    }

    async fn delete_endpoint(&self, owner: KeyId, id: EndpointId) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        let (owner, id) = (owner.0 as i64, id.0 as i64);
        let n = tx
            .execute(
                "DELETE FROM rempart_push_endpoints WHERE id = $1 AND owner = $2",
                &[&id, &owner],
            )
            .await
            .map_err(db("delete endpoint"))?;
        tx.execute(
            "DELETE FROM rempart_push_subscriptions WHERE endpoint = $1 AND owner = $2",
            &[&id, &owner],
        )
        .await
        .map_err(db("delete subscriptions"))?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(n == 1)
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
        let numbers = numbers_of(numbers);
        let (o, e) = (owner.0 as i64, endpoint.0 as i64);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db("begin"))?;
        let known = tx
            .query_opt(
                "SELECT 1 FROM rempart_push_endpoints WHERE id = $1 AND owner = $2 FOR SHARE",
                &[&e, &o],
            )
            .await
            .map_err(db("read endpoint"))?;
        if known.is_none() {
            return Err(PushError::UnknownEndpoint);
        }
        let created = tx
            .execute(
                "INSERT INTO rempart_push_subscriptions (tracking_number, owner, endpoint, created_at_us) \
                 SELECT t, $2, $3, $4 FROM unnest($1::TEXT[]) AS t \
                 ON CONFLICT DO NOTHING",
                &[&numbers, &o, &e, &now.0],
            )
            .await
            .map_err(db("subscribe"))? as usize;
        let crowded = tx
            .query_opt(
                "SELECT tracking_number FROM rempart_push_subscriptions \
                 WHERE tracking_number = ANY($1) GROUP BY tracking_number HAVING count(*) > $2 LIMIT 1",
                &[&numbers, &(MAX_SUBSCRIPTIONS_PER_PARCEL as i64)],
            )
            .await
            .map_err(db("count subscriptions"))?;
        if crowded.is_some() {
            return Err(PushError::TooMany {
                what: "subscriptions on one parcel",
                max: MAX_SUBSCRIPTIONS_PER_PARCEL,
            });
        }
        if created > 0 {
            let held: i64 = tx
                .query_one(
                    "SELECT count(*) FROM rempart_push_subscriptions WHERE owner = $1",
                    &[&o],
                )
                .await
                .map_err(db("count subscriptions"))?
                .get(0);
            if held as usize > MAX_SUBSCRIPTIONS_PER_KEY {
                return Err(PushError::TooMany {
                    what: "subscriptions of one key",
                    max: MAX_SUBSCRIPTIONS_PER_KEY,
                });
            }
        }
        tx.commit().await.map_err(db("commit"))?;
        Ok(SubscribeOutcome {
            created,
            existing: numbers.len() - created,
        })
    }

    async fn unsubscribe(
        &self,
        owner: KeyId,
        endpoint: Option<EndpointId>,
        numbers: &[TrackingNumber],
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM rempart_push_subscriptions WHERE owner = $1 \
                 AND tracking_number = ANY($2) AND ($3::INT8 IS NULL OR endpoint = $3)",
                &[
                    &(owner.0 as i64),
                    &numbers_of(numbers),
                    &endpoint.map(|e| e.0 as i64),
                ],
            )
            .await
            .map_err(db("unsubscribe"))?;
        Ok(n as usize)
    }

    async fn subscriptions(
        &self,
        owner: KeyId,
        after: Option<(TrackingNumber, EndpointId)>,
        limit: usize,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        let client = self.client().await?;
        let (after_tn, after_ep) = after.map_or((String::new(), -1), |(tn, e)| {
            (tn.as_str().to_owned(), e.0 as i64)
        });
        let rows = client
            .query(
                "SELECT tracking_number, endpoint, created_at_us FROM rempart_push_subscriptions \
                 WHERE owner = $1 AND (tracking_number, endpoint) > ($2, $3) \
                 ORDER BY tracking_number, endpoint LIMIT $4",
                &[
                    &(owner.0 as i64),
                    &after_tn,
                    &after_ep,
                    &(limit.min(MAX_LIST) as i64),
                ],
            )
            .await
            .map_err(db("list subscriptions"))?;
        rows.iter()
            .map(|row| {
                Ok(WebhookSubscription {
                    owner,
                    tracking_number: tn_of(row.get(0))?,
                    endpoint: EndpointId(row.get::<_, i64>(1) as u64),
                    created_at: Timestamp(row.get(2)),
                })
            })
            .collect()
    }

    async fn request_email(
        &self,
        request: EmailRequest,
        now: Timestamp,
    ) -> Result<EmailRequestOutcome, StoreError> {
        let client = self.client().await?;
        let lang = match request.lang {
            Lang::Fr => "fr",
            Lang::En => "en",
        };
        // Stored unless a confirmed address is there: then the upsert changes nothing.
        let n = client
            .execute(
                "INSERT INTO rempart_push_emails AS m (tracking_number, address, lang, token_digest, \
                 expires_at_us, confirmed_at_us, created_at_us, final_at_us) \
                 VALUES ($1, $2, $3, $4, $5, NULL, $6, NULL) \
                 ON CONFLICT (tracking_number) DO UPDATE SET address = EXCLUDED.address, \
                 lang = EXCLUDED.lang, token_digest = EXCLUDED.token_digest, \
                 expires_at_us = EXCLUDED.expires_at_us, created_at_us = EXCLUDED.created_at_us, \
                 final_at_us = NULL WHERE m.confirmed_at_us IS NULL",
                &[
                    &request.tracking_number.as_str(),
                    &request.address.as_str(),
                    &lang,
                    &request.token_digest.as_slice(),
                    &request.expires_at.0,
                    &now.0,
                ],
            )
            .await
            .map_err(db("request e-mail"))?;
        Ok(if n == 1 {
            EmailRequestOutcome::Pending
        } else {
            EmailRequestOutcome::AlreadyConfirmed
        })
    }

    async fn confirm_email(
        &self,
        token_digest: [u8; 32],
        now: Timestamp,
    ) -> Result<Option<EmailSubscription>, StoreError> {
        let client = self.client().await?;
        client
            .query_opt(
                "UPDATE rempart_push_emails SET confirmed_at_us = $2, token_digest = NULL, \
                 expires_at_us = NULL WHERE token_digest = $1 AND confirmed_at_us IS NULL \
                 AND expires_at_us > $2 RETURNING *",
                &[&token_digest.as_slice(), &now.0],
            )
            .await
            .map_err(db("confirm e-mail"))?
            .as_ref()
            .map(decode_email)
            .transpose()
    }

    async fn email_subscription(
        &self,
        tracking_number: TrackingNumber,
    ) -> Result<Option<EmailSubscription>, StoreError> {
        let client = self.client().await?;
        client
            .query_opt(
                "SELECT * FROM rempart_push_emails WHERE tracking_number = $1",
                &[&tracking_number.as_str()],
            )
            .await
            .map_err(db("read e-mail"))?
            .as_ref()
            .map(decode_email)
            .transpose()
    }

    async fn delete_email(&self, tracking_number: TrackingNumber) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM rempart_push_emails WHERE tracking_number = $1",
                &[&tracking_number.as_str()],
            )
            .await
            .map_err(db("delete e-mail"))?;
        Ok(n == 1)
    }

    async fn purge_emails(
        &self,
        final_before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM rempart_push_emails WHERE tracking_number IN (\
                 SELECT tracking_number FROM rempart_push_emails WHERE final_at_us < $1 \
                 OR (confirmed_at_us IS NULL AND expires_at_us < $2) LIMIT $3)",
                &[&final_before.0, &now.0, &(limit as i64)],
            )
            .await
            .map_err(db("purge e-mails"))?;
        Ok(n as usize)
    }

    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let client = self.client().await?;
        let until = later(now, lease_for);
        let sql = format!(
            "UPDATE rempart_push_deliveries d SET state = 'leased', state_at_us = $2, due_us = $2, \
             lease_token = nextval('rempart_push_lease_seq') \
             FROM (SELECT id FROM rempart_push_deliveries WHERE due_us IS NOT NULL AND due_us <= $1 \
                   ORDER BY due_us LIMIT $3 FOR UPDATE SKIP LOCKED) due \
             WHERE d.id = due.id RETURNING {}",
            DELIVERY_COLUMNS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = client
            .query(&sql, &[&now.0, &until.0, &(limit.min(MAX_LEASE) as i64)])
            .await
            .map_err(db("lease"))?;
        let mut out: Vec<Delivery> = rows.iter().map(decode_delivery).collect::<Result<_, _>>()?;
        out.sort_by_key(|d| (d.next_attempt_at, d.id));
        Ok(out)
    }

    async fn ack(&self, lease: Lease, now: Timestamp) -> Result<bool, StoreError> {
        self.under_lease(
            "state = 'delivered', state_at_us = $3, due_us = NULL",
            lease,
            &[&now.0],
        )
        .await
    }

    async fn retry(
        &self,
        lease: Lease,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.under_lease(
            "state = 'pending', state_at_us = NULL, attempts = attempts + 1, last_error = $4, \
             next_attempt_at_us = $3, due_us = $3",
            lease,
            &[&next_attempt_at.0, &bounded_error(error)],
        )
        .await
    }

    async fn release(&self, lease: Lease, next_attempt_at: Timestamp) -> Result<bool, StoreError> {
        self.under_lease(
            "state = 'pending', state_at_us = NULL, next_attempt_at_us = $3, due_us = $3",
            lease,
            &[&next_attempt_at.0],
        )
        .await
    }

    async fn park(&self, lease: Lease, now: Timestamp, error: &str) -> Result<bool, StoreError> {
        self.under_lease(
            "state = 'dead', state_at_us = $3, due_us = NULL, attempts = attempts + 1, \
             last_error = $4",
            lease,
            &[&now.0, &bounded_error(error)],
        )
        .await
    }

    async fn dead_letters(
        &self,
        owner: Option<KeyId>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM rempart_push_deliveries WHERE state = 'dead' \
             AND ($1::INT8 IS NULL OR owner = $1) AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = client
            .query(
                &sql,
                &[
                    &owner.map(|o| o.0 as i64),
                    &after.map_or(i64::MIN, |a| a.0 as i64),
                    &(limit.min(MAX_LIST) as i64),
                ],
            )
            .await
            .map_err(db("dead letters"))?;
        rows.iter().map(decode_delivery).collect()
    }

    async fn replay(&self, what: Replay, now: Timestamp) -> Result<usize, StoreError> {
        let max = MAX_REPLAY as i64;
        match what {
            Replay::Dead { owner, ids } => {
                let owner = owner.map(|o| o.0 as i64);
                let ids: Option<Vec<i64>> =
                    ids.map(|ids| ids.iter().take(MAX_REPLAY).map(|i| i.0 as i64).collect());
                self.replay_where(
                    "SELECT id FROM rempart_push_deliveries WHERE state = 'dead' \
                     AND ($2::INT8 IS NULL OR owner = $2) AND ($3::INT8[] IS NULL OR id = ANY($3)) \
                     ORDER BY id LIMIT $4",
                    &[&now.0, &owner, &ids, &max],
                )
                .await
            }
            Replay::Recent {
                owner,
                endpoint,
                since,
            } => {
                self.replay_where(
                    "SELECT id FROM rempart_push_deliveries WHERE owner = $2 \
                     AND ($3::INT8 IS NULL OR endpoint = $3) AND created_at_us >= $4 \
                     AND state IN ('delivered', 'dead') ORDER BY id DESC LIMIT $5",
                    &[
                        &now.0,
                        &(owner.0 as i64),
                        &endpoint.map(|e| e.0 as i64),
                        &since.0,
                        &max,
                    ],
                )
                .await
            }
        }
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE state IN ('pending', 'leased')), \
                 count(*) FILTER (WHERE state = 'dead'), \
                 min(created_at_us) FILTER (WHERE state IN ('pending', 'leased')), \
                 (SELECT overflowed FROM rempart_push_counters WHERE id = 1) \
                 FROM rempart_push_deliveries WHERE state <> 'delivered'",
                &[],
            )
            .await
            .map_err(db("outbox stats"))?;
        Ok(OutboxStats {
            pending: row.get::<_, i64>(0) as u64,
            dead: row.get::<_, i64>(1) as u64,
            oldest_pending: row.get::<_, Option<i64>>(2).map(Timestamp),
            overflowed: row.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
        })
    }

    async fn purge_deliveries(
        &self,
        policy: PurgePolicy,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let limit = limit as i64;
        let kept_max = i64::try_from(policy.delivered_kept_max).unwrap_or(i64::MAX);
        // Delivered: the oldest beyond the kept maximum, and any older than the cut-off.
        let delivered = client
            .execute(
                "DELETE FROM rempart_push_deliveries WHERE id IN (\
                 SELECT id FROM (SELECT id, state_at_us, \
                   count(*) OVER () - row_number() OVER (ORDER BY state_at_us, id) AS newer \
                   FROM rempart_push_deliveries WHERE state = 'delivered') x \
                 WHERE newer >= $2 OR state_at_us < $1 ORDER BY state_at_us, id LIMIT $3)",
                &[&policy.delivered_before.0, &kept_max, &limit],
            )
            .await
            .map_err(db("purge delivered"))? as i64;
        let dead = client
            .execute(
                "DELETE FROM rempart_push_deliveries WHERE id IN (\
                 SELECT id FROM rempart_push_deliveries WHERE state = 'dead' AND state_at_us < $1 \
                 ORDER BY state_at_us, id LIMIT $2)",
                &[&policy.dead_before.0, &(limit - delivered).max(0)],
            )
            .await
            .map_err(db("purge dead letters"))? as i64;
        Ok((delivered + dead) as usize)
    }
}
