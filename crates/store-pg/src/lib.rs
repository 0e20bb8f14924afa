//! [`EventStore`] on a PostgreSQL-compatible database, so that several `rempart serve` nodes can
//! share one (PostgreSQL, CockroachDB, YugabyteDB).
//!
//! - **Append** is one transaction: one multi-row `INSERT … SELECT FROM unnest(…) ON CONFLICT
//!   (event_id) DO NOTHING RETURNING event_id` per batch (accepted = rows returned), then COMMIT;
//!   the call returns only after the commit. Rows are inserted in `event_id` order so that two
//!   batches sharing ids always take row locks in the same order (no deadlocks).
//! - **Push**: in the same transaction, before COMMIT, the batch's changes of subscribed parcels
//!   become outbox rows (`outbox.rs`); `PushStore` is in `push.rs`.
//! - **Schema** is created and migrated by the binary (`migrations.rs`, versioned).
//! - **Change feed** (cross-node cache coherence, `feed.rs`): every row takes a number from a
//!   sequence; the feed reads forward by number and looks again at the numbers it skipped (a
//!   transaction still running) until no append transaction holding them can still commit
//!   ([`PgOptions::change_window`]). Each row is read about once.
//! - **Errors** (`error.rs`) carry their cause: the server's message and SQLSTATE, the address and
//!   database for connections. A database that is down or slow becomes `StoreError::Unavailable`;
//!   a COMMIT whose answer never came (connection lost, session terminated) becomes
//!   `StoreError::OutcomeUnknown`, since the batch may be stored. The pool replaces broken
//!   connections, so the node recovers by itself.
//!
//! Only plain SQL that CockroachDB and YugabyteDB accept is used: no extensions, no LISTEN/NOTIFY,
//! no advisory locks (see docs/postgres-compat.md).

mod error;
mod feed;
mod migrations;
mod outbox;
mod push;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rempart_domain::{Event, EventCode, EventId, StoredEvent, Timestamp, TrackingNumber};
use rempart_store::{
    AppendOutcome, ChangeCursor, Changes, EventStore, MAX_BATCH_EVENTS, MAX_PAGE,
    MAX_PARCEL_EVENTS, StoreError,
};
use tokio_postgres::NoTls;

use crate::error::{AppendFailure, PoolLimits, Target, describe, pool_failed, unavailable};
pub use crate::feed::{FORWARD_SQL, MAX_PENDING_RUNS, PENDING_SQL, START_SQL};

/// Connections in the pool.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Time to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time to wait for a free connection from the pool.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(2);
/// Longest a statement may run (set on every connection).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the change feed keeps looking for a number it skipped (a transaction still running);
/// must exceed the longest append transaction (bounded by the statement timeout) plus clock
/// adjustments (a fresh cursor also starts twice this far back, `feed.rs`).
pub const DEFAULT_CHANGE_WINDOW: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy)]
pub struct PgOptions {
    pub pool_size: usize,
    pub connect_timeout: Duration,
    pub pool_wait: Duration,
    pub statement_timeout: Duration,
    pub change_window: Duration,
    /// Undelivered push deliveries the outbox holds at most (see `outbox.rs` for the slack of
    /// concurrent appends).
    pub outbox_capacity: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_wait: DEFAULT_POOL_WAIT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            change_window: DEFAULT_CHANGE_WINDOW,
            outbox_capacity: rempart_store::push::DEFAULT_OUTBOX_CAPACITY,
        }
    }
}

pub struct PgStore {
    pool: Pool,
    options: PgOptions,
    /// Where the pool connects, for error messages.
    target: Target,
    /// This node's count of undelivered deliveries, for the outbox's capacity (`outbox.rs`).
    undelivered: outbox::Undelivered,
}

impl PgStore {
    /// Connects, checks the database answers, and applies pending migrations.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {}", describe(&e))))?;
        config.connect_timeout(options.connect_timeout);
        config.options(format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        ));
        if config.get_application_name().is_none() {
            config.application_name("rempart");
        }
        let target = Target::of(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.pool_wait))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("database pool: {e}")))?;
        let store = PgStore {
            pool,
            options,
            target,
            undelivered: outbox::Undelivered::default(),
        };
        {
            let mut client = store.client().await?;
            migrations::apply(&mut client).await?;
        }
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            let limits = PoolLimits {
                size: self.options.pool_size,
                wait: self.options.pool_wait,
                connect_timeout: self.options.connect_timeout,
            };
            pool_failed(e, &self.target, &limits)
        })
    }
}

/// A tracking number read back from the database.
fn tracking_number(text: &str) -> Result<TrackingNumber, StoreError> {
    TrackingNumber::from_bytes(text.as_bytes())
        .map_err(|_| StoreError::Corrupt("invalid tracking_number".into()))
}

fn decode_row(row: &tokio_postgres::Row) -> Result<StoredEvent, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("row: {what}"));
    let event_id: String = row.try_get(0).map_err(|_| corrupt("event_id"))?;
    let tn: String = row.try_get(1).map_err(|_| corrupt("tracking_number"))?;
    let code: String = row.try_get(2).map_err(|_| corrupt("code"))?;
    let occurred_at: i64 = row.try_get(3).map_err(|_| corrupt("occurred_at_us"))?;
    let location: Option<String> = row.try_get(4).map_err(|_| corrupt("location"))?;
    let product: Option<String> = row.try_get(5).map_err(|_| corrupt("product"))?;
    let received: i64 = row.try_get(6).map_err(|_| corrupt("received"))?;
    Ok(StoredEvent {
        event: Event {
            event_id: EventId::parse(&event_id).map_err(|_| corrupt("invalid event_id"))?,
            tracking_number: TrackingNumber::from_bytes(tn.as_bytes())
                .map_err(|_| corrupt("invalid tracking_number"))?,
            code: EventCode::parse(&code).ok_or_else(|| corrupt("unknown code"))?,
            occurred_at: Timestamp(occurred_at),
            location,
            product,
        },
        received: u64::try_from(received).map_err(|_| corrupt("negative received"))?,
    })
}

const INSERT: &str = "INSERT INTO rempart_events \
     (event_id, tracking_number, code, occurred_at_us, location, product) \
     SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::INT8[], $5::TEXT[], $6::TEXT[]) \
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id, received";

/// One transaction: the insert, the push deliveries it makes (`outbox.rs`), then COMMIT.
/// Returns the number of events stored.
async fn insert_batch(
    client: &mut deadpool_postgres::Object,
    events: &[Event],
    outbox: outbox::Outbox<'_>,
) -> Result<usize, AppendFailure> {
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let tns: Vec<&str> = events.iter().map(|e| e.tracking_number.as_str()).collect();
    let codes: Vec<&str> = events.iter().map(|e| e.code.as_str()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.occurred_at.0).collect();
    let locations: Vec<Option<&str>> = events.iter().map(|e| e.location.as_deref()).collect();
    let products: Vec<Option<&str>> = events.iter().map(|e| e.product.as_deref()).collect();
    let before = |context| move |e| AppendFailure::BeforeCommit(context, e);
    let tx = client.transaction().await.map_err(before("begin"))?;
    let statement = tx.prepare_cached(INSERT).await.map_err(before("prepare"))?;
    let inserted = tx
        .query(
            &statement,
            &[&ids, &tns, &codes, &times, &locations, &products],
        )
        .await
        .map_err(before("insert"))?;
    if !inserted.is_empty() {
        let received: HashMap<String, i64> = inserted
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
            .collect();
        let accepted: Vec<StoredEvent> = events
            .iter()
            .filter_map(|e| {
                let received = *received.get(e.event_id.as_str())?;
                Some(StoredEvent {
                    event: e.clone(),
                    received: received as u64,
                })
            })
            .collect();
        outbox::write_deliveries(&tx, &accepted, outbox, push::wall_clock())
            .await
            .map_err(before("push outbox"))?;
    }
    // From here on the batch may be stored even if no answer comes back.
    tx.commit().await.map_err(AppendFailure::Commit)?;
    Ok(inserted.len())
}

/// One page of tracking numbers, `$1` the last of the previous page, `$2` the page's size. In
/// the column's own collation, so that the parcel index (tracking_number, …) serves both the `>`
/// and the order, and a page reads about `$2` parcels' index entries. An explicit `COLLATE "C"`
/// made PostgreSQL scan and sort every row for every page: at 10 million parcels (30 million
/// rows) each page outran the statement timeout and a node's existence filter was never built.
/// Tracking numbers are upper-case ASCII letters and digits, which the C collation and the usual
/// locales order as bytes, as the embedded store does; paging is consistent in any collation,
/// since one query does both the `>` and the order.
pub const LIST_SQL: &str = "SELECT DISTINCT tracking_number FROM rempart_events \
     WHERE tracking_number > $1 ORDER BY tracking_number LIMIT $2";

#[async_trait]
impl EventStore for PgStore {
    async fn append(&self, batch: Vec<Event>) -> Result<AppendOutcome, StoreError> {
        if batch.len() > MAX_BATCH_EVENTS {
            return Err(StoreError::BatchTooLarge(batch.len()));
        }
        if batch.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let total = batch.len();
        // Same ids in one batch count once; sorted ids take row locks in one global order.
        let mut events = batch;
        events.sort_by(|a, b| a.event_id.as_str().cmp(b.event_id.as_str()));
        events.dedup_by(|a, b| a.event_id == b.event_id);
        let mut client = self.client().await?;
        let outbox = outbox::Outbox {
            capacity: self.options.outbox_capacity,
            undelivered: &self.undelivered,
        };
        match insert_batch(&mut client, &events, outbox).await {
            Ok(accepted) => Ok(AppendOutcome {
                accepted,
                duplicates: total - accepted,
            }),
            Err(failure) => {
                if !failure.session_survives() {
                    // Never back to the pool: the next append would be handed a dead connection.
                    drop(deadpool_postgres::Object::take(client));
                }
                Err(failure.into())
            }
        }
    }

    async fn parcel_events(&self, tn: &TrackingNumber) -> Result<Vec<StoredEvent>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT event_id, tracking_number, code, occurred_at_us, location, product, received \
                 FROM rempart_events WHERE tracking_number = $1 \
                 ORDER BY occurred_at_us DESC, received DESC LIMIT $2",
            )
            .await
            .map_err(|e| unavailable("prepare", &e))?;
        let rows = client
            .query(&statement, &[&tn.as_str(), &(MAX_PARCEL_EVENTS as i64)])
            .await
            .map_err(|e| unavailable("read", &e))?;
        rows.iter().map(decode_row).collect()
    }

    async fn tracking_numbers(
        &self,
        after: Option<TrackingNumber>,
        limit: usize,
    ) -> Result<Vec<TrackingNumber>, StoreError> {
        let limit = limit.min(MAX_PAGE) as i64;
        let after = after.map_or(String::new(), |tn| tn.as_str().to_owned());
        let client = self.client().await?;
        let rows = client
            .query(LIST_SQL, &[&after, &limit])
            .await
            .map_err(|e| unavailable("list", &e))?;
        rows.iter().map(|row| tracking_number(row.get(0))).collect()
    }

    async fn changes_since(
        &self,
        cursor: &ChangeCursor,
        limit: usize,
    ) -> Result<Changes, StoreError> {
        let client = self.client().await?;
        feed::changes_since(&client, cursor, limit, self.options.change_window).await
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| unavailable("ping", &e))?;
        Ok(())
    }
}
