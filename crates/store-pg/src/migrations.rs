//! Versioned schema migrations, applied by the binary at start. Each migration is a list of
//! idempotent statements (`IF NOT EXISTS`) run one by one outside an explicit transaction (some
//! distributed databases do not mix DDL and DML in one transaction), then its version is recorded.
//! Two nodes starting at once may both run a migration: the statements are idempotent and the
//! version insert ignores conflicts; a failed run is retried once.

use rempart_store::StoreError;

/// `(version, statements)`, in order. Never edit a released migration; add a new one.
const MIGRATIONS: &[(i64, &[&str])] = &[(
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
)];

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
