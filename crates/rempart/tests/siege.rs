//! `rempart siege` against a real `rempart serve`: a short mixed scenario, and the report's
//! numbers checked against what the server's `/metrics` counted.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
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

/// Every exchange the report says the tool had, by status: each class's final outcomes, plus
/// for browser-like users the challenges they met on the way (a lookup that stopped at one is
/// already in its statuses) and their submissions.
fn exchanges(classes: &[serde_json::Value]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for c in classes {
        for (status, n) in c["statuses"].as_object().unwrap() {
            *out.entry(status.clone()).or_default() += n.as_u64().unwrap();
        }
        let Some(b) = c.get("browser") else { continue };
        let on_the_way = b["challenges_met"].as_u64().unwrap() - b["unsolved"].as_u64().unwrap();
        if on_the_way > 0 {
            *out.entry("403".into()).or_default() += on_the_way;
        }
        for (status, n) in b["submissions"].as_object().unwrap() {
            *out.entry(status.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    out
}

/// Statuses as the node labels them: those it does not know are counted as "other".
fn as_labelled(statuses: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (status, n) in statuses {
        let known = status
            .parse::<u16>()
            .is_ok_and(|s| s != 0 && rempart_server::metrics::STATUS_LABELS.contains(&s));
        *out.entry(if known { status } else { "other".into() })
            .or_default() += n;
    }
    out
}

/// Runs `rempart siege` against `server` (with its ingest listener and token) with `scenario`,
/// writing its JSON report to `json`; asserts it succeeded.
fn siege(
    server: &Server,
    scenario: &Path,
    json: &Path,
    extra: &[&std::ffi::OsStr],
) -> std::process::Output {
    let out = Command::new(common::binary())
        .args(["siege", "--quiet", "--threads", "2"])
        .args(["--target", &format!("http://{}", server.public)])
        .args(["--ingest", &format!("http://{}", server.ingest)])
        .args(["--token", TOKEN])
        .arg("--scenario")
        .arg(scenario)
        .arg("--json")
        .arg(json)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "siege failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    // Attack mode stays off: this test is about the floods' and depots' counts; the next one
    // has the users meet challenges.
    let server = Server::start(dir.path(), &["--attack-mode", "off"], &[]);
    let scenario = dir.path().join("mixed.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");

    let public_before = answered(&server, "public", None);
    let ingest_before = answered(&server, "ingest", Some("events"));
    let out = siege(
        &server,
        &scenario,
        &json,
        &["--html".as_ref(), html.as_os_str()],
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
    let (public, ingest): (Vec<_>, Vec<_>) =
        classes.iter().cloned().partition(|c| c["kind"] != "ingest");
    for c in classes {
        assert!(
            c["sent"].as_u64().unwrap() > 0,
            "class {} sent nothing",
            c["name"]
        );
        assert_eq!(c["timeouts"], 0, "class {}", c["name"]);
    }
    // Every response the tool received is one the server counted, status by status. (Slow
    // clients never finish a request, so neither side counts one for them. Attack mode may
    // switch on by itself: the users' challenges and submissions are exchanges too.)
    assert_eq!(
        as_labelled(exchanges(&public)),
        delta(&public_before, &public_after)
    );
    let ingest_reported = as_labelled(exchanges(&ingest));
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

const ATTACK_SCENARIO: &str = r#"
name = "test-attack-mode"
duration_s = 3

[[class]]
name = "browsers"
kind = "legit"
users = 6
think_ms = 100

[[class]]
name = "no-script"
kind = "legit"
users = 2
think_ms = 200
solve_challenges = false

[[class]]
name = "ddosia"
kind = "flood-ddosia"
connections = 2
sources = 500
rate = 100

[[class]]
name = "burst"
kind = "flood-hot-parcel"
connections = 1
sources = 1
pipeline = 50
requests_per_connection = 50
burst_every_s = 1
"#;

/// Browser-like users meet a node in attack mode: each solves the challenge once, as the page
/// does, keeps its pass and gets its parcels; users without script get only challenges. Every
/// exchange the tool reports (lookups, challenges met, submissions) is one the node counted,
/// and the node's own attack-mode gauge is in the report.
#[test]
fn browser_users_solve_the_challenge_once_and_the_counts_match_the_node() {
    let dir = tempfile::tempdir().unwrap();
    // A small proof of work: the test binary is a debug build.
    let server = Server::start(
        dir.path(),
        &["--attack-mode", "on", "--challenge-difficulty", "8"],
        &[],
    );
    let scenario = dir.path().join("attack.toml");
    std::fs::write(&scenario, ATTACK_SCENARIO).unwrap();
    let json = dir.path().join("report.json");
    let public_before = answered(&server, "public", None);
    let metrics = format!("http://{}", server.ingest);
    siege(
        &server,
        &scenario,
        &json,
        &["--metrics".as_ref(), metrics.as_ref()],
    );
    let public_after = answered(&server, "public", None);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let classes = report["classes"].as_array().unwrap();
    let by_name = |name: &str| classes.iter().find(|c| c["name"] == name).unwrap();

    let browsers = by_name("browsers");
    let b = &browsers["browser"];
    let sent = browsers["sent"].as_u64().unwrap();
    assert!(sent > 6, "{browsers}");
    assert_eq!(
        browsers["success"], sent,
        "every lookup ends with the parcel: {browsers}"
    );
    assert_eq!(b["users"], 6);
    assert_eq!(b["users_paid"], 6, "{b}");
    // One challenge each: the pass is kept and reused for every later lookup.
    assert_eq!(b["challenges_met"], 6, "{b}");
    assert_eq!(b["passes_earned"], 6, "{b}");
    assert_eq!(b["challenged_lookups"], 6, "{b}");
    assert_eq!(b["plain_lookups"].as_u64().unwrap(), sent - 6, "{b}");
    assert!(b["challenge_latency_ms"]["p50"].as_f64().unwrap() > 0.0);

    // Users without script only ever get challenges (the node may also close connections
    // that keep earning them): none succeeds, none pays.
    let no_script = by_name("no-script");
    assert_eq!(no_script["success"], 0);
    assert_eq!(no_script["browser"]["users_paid"], 0);
    let challenged = no_script["statuses"]["403"].as_u64().unwrap();
    assert!(challenged > 0, "{no_script}");
    assert_eq!(
        no_script["statuses"].as_object().unwrap().len(),
        1,
        "{no_script}"
    );
    assert_eq!(no_script["browser"]["challenges_met"], challenged);
    assert_eq!(no_script["browser"]["unsolved"], challenged);
    assert_eq!(b["unsolved"], 0);

    // What the tool saw, exchange by exchange, is what the node counted.
    assert_eq!(
        as_labelled(exchanges(classes)),
        delta(&public_before, &public_after)
    );

    let node = &report["node"];
    assert_eq!(node["attack_mode_exported"], true);
    assert!(node["attack_mode_first_on_s"].is_number(), "{node}");
    assert!(node["polls"].as_u64().unwrap() >= 3, "{node}");
    assert_eq!(node["polls_failed"], 0);
    let challenged: u64 = classes
        .iter()
        .map(|c| {
            c.get("browser")
                .map_or(0, |b| b["challenges_met"].as_u64().unwrap())
                + if c.get("browser").is_none() {
                    c["statuses"]["403"].as_u64().unwrap_or(0)
                } else {
                    0
                }
        })
        .sum();
    assert_eq!(node["refused"]["challenge"], challenged, "{node} {report}");
    let burst = by_name("burst");
    assert_eq!(
        burst["sent"].as_u64().unwrap() % 50,
        0,
        "whole bursts: {burst}"
    );
    assert!(report["generator"]["cpu_s"].as_f64().unwrap() > 0.0);
}
