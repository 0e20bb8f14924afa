//! `rempart siege` against a real `rempart serve`: a short mixed scenario, and the report's
//! numbers checked against what the server's `/metrics` counted.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Server, TOKEN, request};

const SCENARIO: &str = r#"
name = "test-mixed"
duration_s = 3

[[class]]
name = "legit"
kind = "legit"
users = 10
think_ms = 100

[[class]]
name = "depot"
kind = "ingest"
rate = 5
batch = 50

[[class]]
name = "numbers"
kind = "flood-random-numbers"
connections = 8
sources = 2000
rate = 300

[[class]]
name = "busting"
kind = "flood-cache-busting"
connections = 4
sources = 2000
rate = 100

[[class]]
name = "paths"
kind = "flood-random-paths"
connections = 2
sources = 500
rate = 50

[[class]]
name = "posts"
kind = "flood-post"
connections = 2
sources = 500
rate = 50

[[class]]
name = "new-conns"
kind = "flood-new-connections"
connections = 4
sources = 2000
rate = 50

[[class]]
name = "slow"
kind = "slowloris"
connections = 20
sources = 20
byte_interval_ms = 200
"#;

/// Requests the server answered, by status, on one listener (optionally one route).
fn answered(server: &Server, listener: &str, route: Option<&str>) -> BTreeMap<String, u64> {
    let text = request(server.ingest, "GET", "/metrics", &[], b"").text();
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("rempart_http_requests_total{"))
    {
        let (labels, value) = line.rsplit_once(' ').unwrap();
        if !labels.contains(&format!("listener=\"{listener}\"")) {
            continue;
        }
        if let Some(route) = route
            && !labels.contains(&format!("route=\"{route}\""))
        {
            continue;
        }
        let status = labels
            .split("status=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        *out.entry(status).or_default() += value.parse::<u64>().unwrap();
    }
    out
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[test]
fn a_mixed_scenario_reports_what_the_server_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let scenario = dir.path().join("mixed.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");

    let public_before = answered(&server, "public", None);
    let ingest_before = answered(&server, "ingest", Some("events"));
    let out = Command::new(common::binary())
        .args(["siege", "--quiet", "--threads", "2"])
        .args(["--target", &format!("http://{}", server.public)])
        .args([
            "--ingest",
            &format!("http://{}", server.ingest),
            "--token",
            TOKEN,
        ])
        .arg("--scenario")
        .arg(&scenario)
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "siege failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("legit") && table.contains("numbers"),
        "{table}"
    );
    let public_after = answered(&server, "public", None);
    let ingest_after = answered(&server, "ingest", Some("events"));

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let classes = report["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 8);
    let mut public_reported: BTreeMap<String, u64> = BTreeMap::new();
    let mut ingest_reported: BTreeMap<String, u64> = BTreeMap::new();
    for c in classes {
        let target = if c["kind"] == "ingest" {
            &mut ingest_reported
        } else {
            &mut public_reported
        };
        for (status, n) in c["statuses"].as_object().unwrap() {
            *target.entry(status.clone()).or_default() += n.as_u64().unwrap();
        }
        assert!(
            c["sent"].as_u64().unwrap() > 0,
            "class {} sent nothing",
            c["name"]
        );
        assert_eq!(c["timeouts"], 0, "class {}", c["name"]);
    }
    // Every response the tool received is one the server counted, status by status. (Slow
    // clients never finish a request, so neither side counts one for them.)
    assert_eq!(public_reported, delta(&public_before, &public_after));
    // The ingest side also counted the one batch that seeded the legitimate users' parcels.
    let mut ingest_counted = delta(&ingest_before, &ingest_after);
    *ingest_counted.get_mut("200").unwrap() -= 1;
    assert_eq!(ingest_reported, ingest_counted);

    let by_name = |name: &str| classes.iter().find(|c| c["name"] == name).unwrap();
    let legit = by_name("legit");
    assert_eq!(
        legit["success"], legit["statuses"]["200"],
        "every 200 carried the right parcel"
    );
    assert!(legit["success_ratio"].as_f64().unwrap() > 0.9);
    let numbers = by_name("numbers")["statuses"].as_object().unwrap();
    assert!(
        numbers.contains_key("400") && numbers.contains_key("404"),
        "{numbers:?}"
    );
    assert!(by_name("slow")["sent"].as_u64().unwrap() >= 20);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("test-mixed"));
}

#[test]
fn non_loopback_targets_are_refused_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        "name='x'\nduration_s=1\n[[class]]\nname='f'\nkind='flood-post'\n",
    )
    .unwrap();
    for target in [
        "http://10.1.2.3:8080",
        "http://192.0.2.1:80",
        "http://[2001:db8::1]:80",
    ] {
        let out = Command::new(common::binary())
            .args(["siege", "--quiet", "--target", target, "--scenario"])
            .arg(&scenario)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback"), "{err}");
    }
    let targets = dir.path().join("t.json");
    std::fs::write(&targets, r#"{"targets":[{"host":"198.51.100.7","port":80,"path":"/$_1"}],"randoms":[{"name":"$_1","digit":true,"min":3,"max":3}]}"#).unwrap();
    let out = Command::new(common::binary())
        .args([
            "siege",
            "--quiet",
            "--target",
            "http://127.0.0.1:9",
            "--targets",
        ])
        .arg(&targets)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
