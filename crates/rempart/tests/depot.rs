//! `rempart depot` against the real `rempart serve`: the server stopped for a while and
//! `kill -9`ed during forwarding, then the depot itself `kill -9`ed while it spools. Afterwards
//! every event the depot said OK to is on the server exactly once.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, TOKEN, try_request};
use rempart_domain::TrackingNumber;

/// Hang guard for waiting on the depot to drain (not a performance assertion).
const DRAIN_WITHIN: Duration = Duration::from_secs(120);

struct Depot {
    child: Option<Child>,
    addr: SocketAddr,
    spool: PathBuf,
    ingest: SocketAddr,
}

impl Depot {
    fn start(spool: &Path, ingest: SocketAddr, listen: &str) -> Depot {
        let mut child = Command::new(common::binary())
            .args(["depot", "--spool"])
            .arg(spool)
            .args([
                "--ingest",
                &format!("http://{ingest}"),
                "--listen",
                listen,
                "--depot-id",
                "lyon-7",
                "--batch",
                "150",
            ])
            .env("REMPART_INGEST_TOKEN", TOKEN)
            .env("REMPART_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start rempart depot");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("depot output").unwrap();
        let addr = line
            .strip_prefix("rempart depot listening ")
            .unwrap_or_else(|| panic!("unexpected depot output {line:?}"))
            .parse()
            .unwrap();
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Depot {
            child: Some(child),
            addr,
            spool: spool.to_owned(),
            ingest,
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill9();
        *self = Depot::start(&self.spool.clone(), self.ingest, &self.addr.to_string());
    }

    fn backlog(&self) -> Option<u64> {
        let resp = try_request(self.addr, "GET", "/status", &[], b"").ok()?;
        resp.json()["backlog_events"].as_u64()
    }

    fn wait_drained(&self) {
        let deadline = Instant::now() + DRAIN_WITHIN;
        while self.backlog() != Some(0) {
            assert!(
                Instant::now() < deadline,
                "the depot did not drain its spool"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Depot {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Batch `b`: 40 scans over 8 parcels of series `series`, each with a location naming it, and no
/// `event_id` (the depot derives one from the content).
fn scans(series: u64, b: u64) -> (String, Vec<(String, String)>) {
    let mut body = String::new();
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let tn = TrackingNumber::domestic(6, 'D', series * 1_000_000 + b * 8 + i % 8)
            .unwrap()
            .to_string();
        let name = format!("scan {series}-{b}-{i}");
        let minute = i / 8;
        body += &format!(
            "{{\"tracking_number\":\"{tn}\",\"code\":\"ET1\",\"occurred_at\":\"2025-12-22T08:{minute:02}:00Z\",\"location\":\"{name}\"}}\n"
        );
        expected.push((tn, name));
    }
    (body, expected)
}

/// Every expected scan is on the server exactly once, and nothing else is.
fn assert_on_server_once(server: &Server, expected: &[(String, String)]) {
    let mut by_parcel: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for (tn, name) in expected {
        by_parcel.entry(tn).or_default().insert(name);
    }
    for (tn, names) in by_parcel {
        let shown =
            common::locations_once(server, tn).unwrap_or_else(|| panic!("parcel {tn} missing"));
        let unique: HashSet<&str> = shown.iter().map(String::as_str).collect();
        assert_eq!(unique, names, "parcel {tn}");
    }
}

fn post(depot: &Depot, body: &str) -> Option<u16> {
    try_request(depot.addr, "POST", "/v1/events", &[], body.as_bytes())
        .ok()
        .map(|r| r.status)
}

#[test]
fn nothing_is_lost_when_the_server_stops_and_is_killed_during_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("server"), &[], &[]);
    let depot = Depot::start(&dir.path().join("spool"), server.ingest, "127.0.0.1:0");
    let mut expected = Vec::new();
    for b in 0..90 {
        match b {
            20 => {
                server.terminate();
            }
            50 => server.restart(),
            70 => {
                // Killed while the depot forwards its backlog.
                server.kill9();
                server.restart();
            }
            _ => {}
        }
        let (body, scans) = scans(1, b);
        assert_eq!(
            post(&depot, &body),
            Some(200),
            "the depot takes scans whatever the server does"
        );
        expected.extend(scans);
        if b == 49 {
            assert!(
                depot.backlog().unwrap() > 0,
                "scans wait in the spool while the server is down"
            );
        }
    }
    // An undeliverable scan is refused at entry, with its line, and nothing of its batch spooled.
    let bad = "{\"tracking_number\":\"6A12345678905\",\"code\":\"ET1\",\"occurred_at\":\"2025-12-22T08:00:00Z\"}\n{\"tracking_number\":\"6A12345678904\",\"code\":\"ET1\",\"occurred_at\":\"2025-12-22T08:00:00Z\"}\n";
    let resp = try_request(depot.addr, "POST", "/v1/events", &[], bad.as_bytes()).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.json()["line"], 2);
    depot.wait_drained();
    assert_on_server_once(&server, &expected);
    assert_eq!(server.get("/v1/parcels/6A12345678905").status, 404);
    let metrics = try_request(depot.addr, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    assert!(
        metrics.contains("rempart_depot_backlog_events 0"),
        "{metrics}"
    );
}

#[test]
fn nothing_is_lost_when_the_depot_is_killed_while_spooling() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("server"), &[], &[]);
    let mut depot = Depot::start(&dir.path().join("spool"), server.ingest, "127.0.0.1:0");
    let mut acknowledged = Vec::new();
    let mut kills = 0;
    let mut b = 0;
    while b < 80 {
        let (body, scans) = scans(2, b);
        match post(&depot, &body) {
            Some(200) => {
                acknowledged.extend(scans);
                b += 1;
                if b % 12 == 0 {
                    depot.kill9();
                    kills += 1;
                    depot.restart();
                }
            }
            // Not acknowledged (connection cut): the scanner sends the same batch again.
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // Killed once more while requests are in flight, from another thread.
    let addr = depot.addr;
    let sender = std::thread::spawn(move || {
        let mut ok = Vec::new();
        for b in 80..120 {
            let (body, scans) = scans(2, b);
            if try_request(addr, "POST", "/v1/events", &[], body.as_bytes())
                .ok()
                .map(|r| r.status)
                == Some(200)
            {
                ok.extend(scans);
            }
        }
        ok
    });
    std::thread::sleep(Duration::from_millis(30));
    depot.kill9();
    kills += 1;
    acknowledged.extend(sender.join().unwrap());
    depot.restart();
    depot.wait_drained();
    assert!(kills >= 7);
    assert_on_server_once(&server, &acknowledged);
}
