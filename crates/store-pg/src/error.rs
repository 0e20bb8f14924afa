//! Database errors told with their cause. tokio-postgres' own text hides it ("db error", "error
//! connecting to server") and deadpool's adds its own ("Error occurred while creating a new
//! object: …"), so every error that leaves this crate is described here: the server's message and
//! SQLSTATE, the `source()` chain, and for connections the address and database.
//!
//! A failed COMMIT is told apart ([`AppendFailure`]): once COMMIT was sent, only an `ERROR` answer
//! proves the transaction was rolled back; anything else (connection closed, a `FATAL` from a
//! terminated session) leaves the outcome unknown.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use rempart_store::StoreError;
use tokio_postgres::config::Host;
use tokio_postgres::error::{DbError, Severity};

/// Where the pool connects, for messages: `host:port (database "db", user "u")`.
#[derive(Debug, Clone)]
pub(crate) struct Target(String);

impl Target {
    pub(crate) fn of(config: &tokio_postgres::Config) -> Target {
        let ports = config.get_ports();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                // One port for all hosts, or one per host; PostgreSQL's default otherwise.
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
                }
            })
            .collect();
        let hosts = if hosts.is_empty() {
            "the default host".to_owned()
        } else {
            hosts.join(",")
        };
        let user = config.get_user().unwrap_or("(default)");
        let db = config.get_dbname().unwrap_or(user);
        Target(format!("{hosts} (database \"{db}\", user \"{user}\")"))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One line: the server's error (severity, message, SQLSTATE, detail, hint) when it sent one,
/// else the error and each of its causes.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => describe_db(db),
        None => with_causes(e),
    }
}

fn describe_db(db: &DbError) -> String {
    let mut text = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// `e: cause: cause…`, each cause once (some errors already print their cause).
fn with_causes(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = match cause.downcast_ref::<DbError>() {
            Some(db) => describe_db(db),
            None => cause.to_string(),
        };
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Unavailable("database {context}: {cause}")`.
pub(crate) fn unavailable(context: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("database {context}: {}", describe(e)))
}

/// The limits a pool error refers to.
pub(crate) struct PoolLimits {
    pub(crate) size: usize,
    pub(crate) wait: Duration,
    pub(crate) connect_timeout: Duration,
}

/// A connection could not be had from the pool.
pub(crate) fn pool_failed(e: PoolError, target: &Target, limits: &PoolLimits) -> StoreError {
    let text = match e {
        PoolError::Backend(e) => format!("database connection to {target}: {}", describe(&e)),
        PoolError::Timeout(TimeoutType::Wait) => format!(
            "database connection: all {} connections to {target} stayed busy for {:?}",
            limits.size, limits.wait
        ),
        PoolError::Timeout(TimeoutType::Create) => format!(
            "database connection to {target}: no answer within {:?}",
            limits.connect_timeout
        ),
        PoolError::Timeout(TimeoutType::Recycle) => format!(
            "database connection to {target}: checking a pooled connection took over {:?}",
            limits.connect_timeout
        ),
        other => format!("database connection pool: {}", with_causes(&other)),
    };
    StoreError::Unavailable(text)
}

/// Whether the session is still usable after `e`: only an `ERROR` answer leaves it open (and
/// ends the transaction with a rollback). A `FATAL`, a closed connection or an I/O error do not.
fn session_survives(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.parsed_severity() == Some(Severity::Error))
}

/// Where an append's transaction failed.
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// Before COMMIT was sent (`begin`, `prepare`, `insert`): nothing is stored.
    BeforeCommit(&'static str, tokio_postgres::Error),
    /// COMMIT was sent.
    Commit(tokio_postgres::Error),
}

impl AppendFailure {
    /// Whether the connection may go back to the pool.
    pub(crate) fn session_survives(&self) -> bool {
        match self {
            AppendFailure::BeforeCommit(_, e) | AppendFailure::Commit(e) => session_survives(e),
        }
    }
}

impl From<AppendFailure> for StoreError {
    /// After COMMIT was sent, an `ERROR` answer means the server rolled the transaction back:
    /// nothing is stored. Anything else may have come after the commit was durable: a closed
    /// connection, or a `FATAL` (e.g. the session was terminated while waiting for a standby
    /// after committing locally), so the outcome is unknown.
    fn from(failure: AppendFailure) -> StoreError {
        match failure {
            AppendFailure::BeforeCommit(context, e) => unavailable(context, &e),
            AppendFailure::Commit(e) if session_survives(&e) => unavailable("commit", &e),
            AppendFailure::Commit(e) => StoreError::OutcomeUnknown(format!(
                "database commit: {}; the batch may or may not be stored",
                describe(&e)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_address_database_and_user() {
        let config: tokio_postgres::Config =
            "postgres://alice@db.example:6543/parcels".parse().unwrap();
        assert_eq!(
            Target::of(&config).to_string(),
            "db.example:6543 (database \"parcels\", user \"alice\")"
        );
        let config: tokio_postgres::Config = "host=/run/pg user=bob".parse().unwrap();
        assert_eq!(
            Target::of(&config).to_string(),
            "/run/pg/.s.PGSQL.5432 (database \"bob\", user \"bob\")"
        );
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn every_cause_is_told_once() {
        let inner = Layer("Connection refused (os error 111)", None);
        let outer = Layer("error connecting to server", Some(Box::new(inner)));
        assert_eq!(
            with_causes(&outer),
            "error connecting to server: Connection refused (os error 111)"
        );
        // A layer that already prints its cause does not get it twice.
        let inner = Layer("db error", None);
        let outer = Layer("creating a connection: db error", Some(Box::new(inner)));
        assert_eq!(with_causes(&outer), "creating a connection: db error");
    }
}
