//! Helpers for tests that need a real PostgreSQL (feature `testing`): a database of their own on
//! the local server (127.0.0.1:5432, or `REMPART_TEST_PG_URL`), dropped at the end, and stopping
//! or starting the local cluster for outage tests.

use std::process::Command;

use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The server the tests use; the database part of the URL is replaced per test.
pub fn server_url() -> String {
    std::env::var("REMPART_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let name = format!(
            "rempart_t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = admin(&format!("{}/postgres", server_url())).await;
        for statement in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&statement)
                .await
                .expect("create test database");
        }
        TestDatabase { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    pub async fn admin_client(&self) -> tokio_postgres::Client {
        admin(&self.url()).await
    }

    pub async fn drop_now(self) {
        let client = admin(&format!("{}/postgres", server_url())).await;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("drop test database");
    }
}

pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("connect to {url} (is PostgreSQL running? scripts/ensure-postgres): {e}")
        });
    tokio::spawn(connection);
    client
}

/// `(version, name)` of the local cluster serving 127.0.0.1:5432.
fn cluster() -> (String, String) {
    let out = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .expect(
            "pg_lsclusters (Debian's postgresql-common) is needed to stop and start PostgreSQL",
        );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("5432"))
        .expect("a cluster on port 5432");
    let mut parts = line.split_whitespace();
    (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    )
}

/// Runs `pg_ctlcluster <action>` (`stop` is a fast shutdown) on the cluster of port 5432.
pub fn pg_ctl(action: &str) {
    let (version, name) = cluster();
    let mut cmd = Command::new("pg_ctlcluster");
    cmd.args(["--skip-systemctl-redirect", &version, &name, action]);
    if action == "stop" {
        cmd.args(["-m", "fast"]);
    }
    let status = cmd.status().expect("run pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}
