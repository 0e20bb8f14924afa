//! Versioned schema migrations, applied by the binary at start. Each migration is a list of
//! idempotent statements (`IF NOT EXISTS`) run one by one outside an explicit transaction (some
//! distributed databases do not mix DDL and DML in one transaction), then its version is recorded.
//! Two nodes starting at once may both run a migration: the statements are idempotent and the
//! version insert ignores conflicts; a failed run is retried once.

use rempart_store::StoreError;

/// `(version, statements)`, in order. Never edit a released migration; add a new one.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE SEQUENCE IF NOT EXISTS rempart_received_seq",
            "CREATE TABLE IF NOT EXISTS rempart_events (\
            event_id TEXT PRIMARY KEY, \
            tracking_number TEXT NOT NULL, \
            code TEXT NOT NULL, \
            occurred_at_us INT8 NOT NULL, \
            location TEXT, \
            product TEXT, \
            received INT8 NOT NULL DEFAULT nextval('rempart_received_seq'), \
            ingested_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            "CREATE INDEX IF NOT EXISTS rempart_events_parcel \
            ON rempart_events (tracking_number, occurred_at_us, received)",
            "CREATE INDEX IF NOT EXISTS rempart_events_ingested ON rempart_events (ingested_at)",
        ],
    ),
    (2, PUSH),
    (
        3,
        &[
            // The change feed reads forward by `received` (`feed.rs`). Built without blocking
            // writes, so that an existing large store keeps ingesting during the upgrade.
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS rempart_events_received \
            ON rempart_events (received, tracking_number)",
        ],
    ),
];

/// Push (issue 13): endpoints, subscriptions, e-mail alerts, the outbox (`push.rs`, `outbox.rs`).
/// Tracking numbers are `COLLATE "C"` so listings follow byte order, like the embedded store.
/// `due_us` is when a pending (`next_attempt_at_us`) or leased (lease end) delivery is due.
const PUSH: &[&str] = &[
    "CREATE SEQUENCE IF NOT EXISTS rempart_push_id_seq",
    "CREATE SEQUENCE IF NOT EXISTS rempart_push_lease_seq",
    "CREATE TABLE IF NOT EXISTS rempart_push_endpoints (\
        id INT8 PRIMARY KEY, \
        owner INT8 NOT NULL, \
        url TEXT NOT NULL, \
        key_version INT2 NOT NULL, \
        salt BYTEA NOT NULL, \
        created_at_us INT8 NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rempart_push_endpoints_owner ON rempart_push_endpoints (owner, id)",
    "CREATE TABLE IF NOT EXISTS rempart_push_subscriptions (\
        tracking_number TEXT COLLATE \"C\" NOT NULL, \
        owner INT8 NOT NULL, \
        endpoint INT8 NOT NULL, \
        created_at_us INT8 NOT NULL, \
        PRIMARY KEY (tracking_number, owner, endpoint))",
    "CREATE INDEX IF NOT EXISTS rempart_push_subscriptions_owner \
        ON rempart_push_subscriptions (owner, tracking_number, endpoint)",
    "CREATE INDEX IF NOT EXISTS rempart_push_subscriptions_endpoint \
        ON rempart_push_subscriptions (endpoint)",
    "CREATE TABLE IF NOT EXISTS rempart_push_emails (\
        tracking_number TEXT COLLATE \"C\" PRIMARY KEY, \
        address TEXT NOT NULL, \
        lang TEXT NOT NULL, \
        token_digest BYTEA, \
        expires_at_us INT8, \
        confirmed_at_us INT8, \
        created_at_us INT8 NOT NULL, \
        final_at_us INT8)",
    "CREATE UNIQUE INDEX IF NOT EXISTS rempart_push_emails_token ON rempart_push_emails (token_digest)",
    "CREATE TABLE IF NOT EXISTS rempart_push_deliveries (\
        id INT8 PRIMARY KEY, \
        owner INT8, \
        endpoint INT8, \
        tracking_number TEXT COLLATE \"C\" NOT NULL, \
        previous_status TEXT, \
        status TEXT NOT NULL, \
        is_final BOOL NOT NULL, \
        event_id TEXT NOT NULL, \
        code TEXT NOT NULL, \
        occurred_at_us INT8 NOT NULL, \
        location TEXT, \
        product TEXT, \
        created_at_us INT8 NOT NULL, \
        retry_since_us INT8 NOT NULL, \
        attempts INT4 NOT NULL, \
        next_attempt_at_us INT8 NOT NULL, \
        state TEXT NOT NULL, \
        state_at_us INT8, \
        due_us INT8, \
        last_error TEXT, \
        lease_token INT8 NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rempart_push_deliveries_due \
        ON rempart_push_deliveries (due_us) WHERE due_us IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS rempart_push_deliveries_state \
        ON rempart_push_deliveries (state, state_at_us, id)",
    "CREATE INDEX IF NOT EXISTS rempart_push_deliveries_owner \
        ON rempart_push_deliveries (owner, id)",
    "CREATE TABLE IF NOT EXISTS rempart_push_counters (\
        id INT2 PRIMARY KEY, overflowed INT8 NOT NULL)",
    "INSERT INTO rempart_push_counters (id, overflowed) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
];

fn failed(e: tokio_postgres::Error) -> StoreError {
    crate::error::unavailable("migration", &e)
}

pub async fn apply(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    match try_apply(client).await {
        Ok(()) => Ok(()),
        Err(first) => {
            tracing::warn!(error = %first, "migration failed; retrying once (another node may be migrating)");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            try_apply(client).await
        }
    }
}

async fn try_apply(client: &mut deadpool_postgres::Object) -> Result<(), StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS rempart_schema_migrations (\
                version INT8 PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(failed)?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM rempart_schema_migrations", &[])
        .await
        .map_err(failed)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (version, statements) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for statement in *statements {
            client.batch_execute(statement).await.map_err(failed)?;
        }
        client
            .execute(
                "INSERT INTO rempart_schema_migrations (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
                &[version],
            )
            .await
            .map_err(failed)?;
        tracing::info!(version, "database migration applied");
    }
    Ok(())
}
