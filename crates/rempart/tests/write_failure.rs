//! A write failure (a file-size limit standing in for a full disk) told truthfully and survived
//! without a restart (issue 16 items 2, 3 and 4): while the store takes no writes, lookups go on
//! and the public `/readyz` stays ready, ingest says why (its `/readyz` body, a metric, a longer
//! `Retry-After`) and the log summarises refused batches instead of a line each; once writes
//! work again the node takes batches again by itself, and every acknowledged event is there once.
//!
//! The limit is set on the running node with `prlimit(2)` (the node ignores `SIGXFSZ`, so a write
//! past it fails with EFBIG), just past the end of what the store's journal holds and below the
//! store's 1 MiB probe write, so the store stays failed until the limit is lifted.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Server, event_line};

/// Hang guard (not a performance assertion).
const WITHIN: Duration = Duration::from_secs(60);
/// Events of a batch large enough to cross the journal's 8 KiB write buffer.
const EVENTS: usize = 300;
/// Past the journal's end: more than one buffer flush.
const MARGIN: u64 = 9 << 10;
/// Batches sent while the store takes no writes.
const REFUSED: usize = 200;

fn batch(b: usize) -> String {
    (0..EVENTS)
        .map(|i| {
            event_line(
                &format!("wf:{b}:{i}"),
                &number(b),
                "ET1",
                "2025-12-22T08:14:00Z",
                Some("Lyon Corbas PFC"),
            )
        })
        .collect()
}

/// Batch `b`'s parcel.
fn number(b: usize) -> String {
    rempart_shield_free_s10(b as u32)
}

/// An S10 number for a serial (check digit computed here, as in SPEC).
fn rempart_shield_free_s10(serial: u32) -> String {
    let digits: Vec<u32> = format!("{serial:08}")
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let sum: u32 = digits
        .iter()
        .zip([8, 6, 4, 2, 3, 5, 9, 7])
        .map(|(d, w)| d * w)
        .sum();
    let c = match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c,
    };
    format!("RR{serial:08}{c}FR")
}

/// Where the data of the node's journal ends (fjall preallocates the file with zeros).
fn journal_end(data: &Path) -> u64 {
    let db = data.join("events/db");
    std::fs::read_dir(&db)
        .expect("the engine's directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read the journal");
            bytes
                .iter()
                .rposition(|&b| b != 0)
                .map_or(0, |i| i as u64 + 1)
        })
        .max()
        .expect("a journal")
}

fn set_file_size_limit(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit reads `limit` and writes nothing back (old limit pointer null).
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_write_failure_is_told_truthfully_and_survived_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let data = dir.path().join("data");
    let server = Server::start_logging(&data, &[], &[], &log);
    let mut acked = Vec::new();
    for b in 0..4 {
        let resp = server.ingest(batch(b).as_bytes());
        assert_eq!(resp.status, 200, "{}", resp.text());
        acked.push(b);
    }
    set_file_size_limit(server.pid(), journal_end(&data) + MARGIN);

    let mut refused = 0;
    for b in 100..100 + REFUSED {
        let resp = server.ingest(batch(b).as_bytes());
        match resp.status {
            200 => acked.push(b),
            503 => refused += 1,
            other => panic!("batch {b}: {other} {}", resp.text()),
        }
    }
    assert!(
        refused >= REFUSED - 1,
        "the limit did not bite: {refused} refused"
    );
    // Said truthfully: why, and when to come back.
    let resp = server.ingest(batch(999).as_bytes());
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("10"), "{}", resp.text());
    assert!(resp.text().contains("File too large"), "{}", resp.text());
    let ready = common::request(server.ingest, "GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["error"], "writes_failing", "{}", ready.text());
    assert!(ready.text().contains("File too large"), "{}", ready.text());
    assert_eq!(server.metric("rempart_store_writes_failing"), 1);
    // Lookups go on, and the public side says it can serve them.
    let public_ready = common::request(server.public, "GET", "/readyz", &[], b"");
    assert_eq!(public_ready.status, 200, "{}", public_ready.text());
    assert_eq!(
        server
            .get_as_partner(&format!("/v1/parcels/{}", number(0)))
            .status,
        200
    );

    // No restart: lift the limit, and the node takes batches again by itself.
    set_file_size_limit(server.pid(), libc::RLIM_INFINITY);
    common::wait_for("ingest ready again", WITHIN, || {
        common::request(server.ingest, "GET", "/readyz", &[], b"").status == 200
    });
    assert_eq!(server.metric("rempart_store_write_recoveries_total"), 1);
    for b in 500..510 {
        let resp = server.ingest(batch(b).as_bytes());
        assert_eq!(resp.status, 200, "{}", resp.text());
        acked.push(b);
    }
    // Every acknowledged event is there, once.
    for b in &acked {
        let resp = server.get_as_partner(&format!("/v1/parcels/{}", number(*b)));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.json()["events_total"], EVENTS, "batch {b}");
    }
    // Summarised, not one line per refused batch.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text
        .lines()
        .filter(|l| l.contains("not acknowledged"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for {refused} refused batches:\n{text}"
    );
}
