//! Two `rempart serve` nodes on one PostgreSQL database: what one ingests the other shows
//! (through its cache too), and PostgreSQL stopped (immediate) and started with both nodes running
//! loses no acknowledged event; meanwhile cached lookups are served marked stale and ingest
//! answers 503. The database is a throwaway cluster of this test's own
//! (`rempart_store_pg::testing`), stopped and removed at the end.

mod common;

use std::time::Duration;

use common::{Server, event_line};
use rempart_store_pg::testing::{Cluster, StopMode, TestDatabase};

/// The bound on cross-node visibility this test accepts: far above the documented delay
/// (change poll period + one poll), so it only fails when coherence is broken.
const VISIBLE_WITHIN: Duration = Duration::from_secs(15);

fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    common::wait_for(what, VISIBLE_WITHIN, ok);
}

/// A throwaway cluster, a database in it and two nodes on it, each with its own data directory.
struct Shared {
    runtime: tokio::runtime::Runtime,
    cluster: Cluster,
    db: TestDatabase,
    _dir_a: tempfile::TempDir,
    dir_b: tempfile::TempDir,
    a: Server,
    b: Server,
}

impl Shared {
    fn start() -> Shared {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cluster = Cluster::start();
        let db = runtime.block_on(TestDatabase::create_in(&cluster));
        let url = db.url();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let args = ["--store", url.as_str(), "--change-poll-ms", "200"];
        let a = Server::start(dir_a.path(), &args, &[]);
        let b = Server::start(dir_b.path(), &args, &[]);
        Shared {
            runtime,
            cluster,
            db,
            _dir_a: dir_a,
            dir_b,
            a,
            b,
        }
    }
}

#[test]
fn two_nodes_share_one_database_through_an_outage() {
    let Shared {
        runtime,
        cluster,
        db,
        _dir_a,
        dir_b: _dir_b,
        a,
        b,
    } = Shared::start();
    let tn = "RR123456785FR";

    assert_eq!(b.get(&format!("/v1/parcels/{tn}")).status, 404);
    let resp = a
        .ingest(event_line("mn:1", tn, "PC1", "2025-12-22T07:00:00Z", Some("Paris 15")).as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    wait_for("node B sees node A's event", || {
        b.get(&format!("/v1/parcels/{tn}")).status == 200
    });
    // Node B now holds the parcel in its cache; a later event through A must replace it.
    assert_eq!(
        b.get(&format!("/v1/parcels/{tn}")).json()["status"],
        "in_transit"
    );
    let resp = a
        .ingest(event_line("mn:2", tn, "DI1", "2025-12-23T07:00:00Z", Some("Paris 15")).as_bytes());
    assert_eq!(resp.status, 200);
    wait_for("node B's cache follows node A's ingest", || {
        b.get(&format!("/v1/parcels/{tn}")).json()["status"] == "delivered"
    });
    // Ingest through B is idempotent with what A stored.
    let resp = b
        .ingest(event_line("mn:1", tn, "PC1", "2025-12-22T07:00:00Z", Some("Paris 15")).as_bytes());
    assert_eq!(
        resp.json(),
        serde_json::json!({"accepted": 0, "duplicates": 1})
    );
    assert_eq!(
        b.get(&format!("/v1/parcels/{tn}")).json()["status"],
        "delivered"
    );

    // The database goes away.
    cluster.stop(StopMode::Immediate);
    let resp = a.ingest(
        event_line("mn:3", "6A12345678905", "PC1", "2025-12-22T07:00:00Z", None).as_bytes(),
    );
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.json()["error"], "storage_unavailable");
    assert!(resp.header("retry-after").is_some());
    // A parcel B has cached is still served, marked stale once B notices the outage.
    wait_for("node B marks cached answers stale", || {
        b.get(&format!("/v1/parcels/{tn}"))
            .header("x-rempart-stale")
            == Some("1")
    });
    let resp = b.get(&format!("/v1/parcels/{tn}"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["status"], "delivered");
    assert!(resp.header("age").is_some());
    // One it has not cached cannot be answered.
    assert_eq!(b.get("/v1/parcels/6A12345678905").status, 503);
    assert_eq!(b.get("/readyz").status, 503);
    cluster.restart();

    // Both nodes recover by themselves; the batch refused during the outage goes in now.
    wait_for("node A takes ingest again", || {
        a.ingest(
            event_line("mn:3", "6A12345678905", "PC1", "2025-12-22T07:00:00Z", None).as_bytes(),
        )
        .status
            == 200
    });
    wait_for("node B serves the new parcel", || {
        b.get("/v1/parcels/6A12345678905").status == 200
    });
    wait_for("node B's answers are fresh again", || {
        b.get(&format!("/v1/parcels/{tn}"))
            .header("x-rempart-stale")
            .is_none()
    });
    let view = b.get(&format!("/v1/parcels/{tn}")).json();
    assert_eq!(view["events"].as_array().unwrap().len(), 2, "{view}");
    drop((a, b));
    runtime.block_on(db.drop_now());
}

/// A node stopped cleanly on a shared database saves its existence filter with the change
/// feed's position; restarted, it restores the filter (no rebuild) and reads the feed from that
/// position, so parcels another node stored while it was down are found, not called unknown,
/// however long ago they were stored, and unknown numbers are still refused by the filter.
#[test]
fn a_restored_node_learns_what_another_stored_while_it_was_down() {
    let Shared {
        runtime,
        cluster: _cluster,
        db,
        _dir_a,
        dir_b,
        a,
        mut b,
    } = Shared::start();
    let (before, during, unknown) = ("RR123456785FR", "6A12345678905", "RR876543216FR");

    let line = event_line("rs:1", before, "PC1", "2025-12-22T07:00:00Z", None);
    assert_eq!(a.ingest(line.as_bytes()).status, 200);
    wait_for("node B sees node A's event", || {
        b.get(&format!("/v1/parcels/{before}")).status == 200
    });
    wait_for("node B's filter is exact", || {
        b.metric("rempart_filter_exact") == 1
    });
    assert!(b.terminate().success());
    assert!(dir_b.path().join("existence-filter.snap").exists());

    let line = event_line("rs:2", during, "PC1", "2025-12-22T08:00:00Z", None);
    assert_eq!(a.ingest(line.as_bytes()).status, 200);
    // As if stored long before the restart: a feed starting afresh would begin after it.
    runtime.block_on(async {
        db.admin_client()
            .await
            .batch_execute("UPDATE rempart_events SET ingested_at = now() - interval '1 hour'")
            .await
            .unwrap();
    });

    b.restart();
    assert_eq!(b.metric("rempart_filter_restored"), 1);
    wait_for("node B is ready", || b.get("/readyz").status == 200);
    assert_eq!(b.metric("rempart_change_feed_caught_up"), 1);
    assert_eq!(b.metric("rempart_change_feed_given_up_total"), 0);
    assert_eq!(b.get(&format!("/v1/parcels/{during}")).status, 200);
    assert_eq!(b.get(&format!("/v1/parcels/{before}")).status, 200);
    let absent = b.metric("rempart_filter_answers_total{answer=\"absent\"}");
    assert_eq!(b.get(&format!("/v1/parcels/{unknown}")).status, 404);
    assert_eq!(
        b.metric("rempart_filter_answers_total{answer=\"absent\"}"),
        absent + 1,
        "the restored filter refuses an unknown number"
    );
    drop((a, b));
    runtime.block_on(db.drop_now());
}
