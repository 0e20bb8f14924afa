//! Push end to end (issue 13), against the real binary with the embedded store: a merchant's
//! key subscribes parcels through the public API, depots ingest, and a real HTTP receiver on
//! loopback gets signed deliveries; a customer opts in to e-mail alerts through the pages and a
//! local SMTP sink. Receivers and the sink are started by the tests (`common/receiver.rs`,
//! `common/sink.rs`); the webhook URLs are loopback, allowed by `--push-allow 127.0.0.1/32`.

mod common;
#[path = "common/receiver.rs"]
mod receiver;
#[path = "common/sink.rs"]
mod sink;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Response, Server, binary, event_line, request, wait_for};
use receiver::{Answer, Receiver, free_addr};
use rempart_domain::{EventId, TrackingNumber};
use rempart_push::payload;
use rempart_push::signing::{SIGNATURE_HEADER, SigningSecret, verify};
use serde_json::json;

const MASTER_KEY: &str = "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// A hang guard, not a performance assertion.
const WITHIN: Duration = Duration::from_secs(60);

/// Push on, loopback allowed, quick retries; `extra` (flag, value pairs) overrides.
fn push_flags(extra: &[&str]) -> Vec<String> {
    let defaults = [
        ("--push", "true"),
        ("--push-master-key", MASTER_KEY),
        ("--push-allow", "127.0.0.1/32"),
        ("--push-retry-base-ms", "200"),
        ("--push-timeout-ms", "3000"),
    ];
    let mut flags = Vec::new();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            flags.extend([flag.to_owned(), value.to_owned()]);
        }
    }
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

fn start(data: &Path, extra: &[&str]) -> Server {
    let flags = push_flags(extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(data, &flags, &[])
}

/// `rempart key create NAME --scope webhooks`: the key, printed once.
fn create_key(data: &Path, name: &str) -> String {
    let out = Command::new(binary())
        .args(["key", "create", name, "--scope", "webhooks", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("rmk_"), "{key}");
    key
}

fn api(server: &Server, key: &str, method: &str, path: &str, body: serde_json::Value) -> Response {
    let auth = format!("Bearer {key}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    request(
        server.public,
        method,
        &format!("/v1/webhooks/{path}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        &body,
    )
}

/// Creates an endpoint for `url`: its id and signing secret.
fn endpoint(server: &Server, key: &str, url: &str) -> (String, SigningSecret) {
    let r = api(server, key, "POST", "endpoints", json!({ "url": url }));
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    let secret = SigningSecret::parse(v["secret"].as_str().unwrap()).unwrap();
    (v["id"].as_str().unwrap().to_owned(), secret)
}

fn subscribe(server: &Server, key: &str, endpoint: &str, numbers: &[String]) {
    let r = api(
        server,
        key,
        "POST",
        "subscriptions",
        json!({ "endpoint": endpoint, "tracking_numbers": numbers }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["created"], numbers.len());
}

/// Valid S10 numbers `RR{serial}{check}FR`.
fn numbers(count: u32, from: u32) -> Vec<String> {
    (from..from + count)
        .map(|serial| {
            TrackingNumber::s10("RR", serial, "FR")
                .unwrap()
                .as_str()
                .to_owned()
        })
        .collect()
}

/// Ingests one event per number with ids `{prefix}-{i}`; the public ids receivers will see.
fn ingest(server: &Server, prefix: &str, code: &str, numbers: &[String]) -> HashSet<String> {
    let mut body = String::new();
    let mut ids = HashSet::new();
    for (i, tn) in numbers.iter().enumerate() {
        let id = format!("{prefix}-{i}");
        body.push_str(&event_line(
            &id,
            tn,
            code,
            "2025-12-22T08:00:00Z",
            Some("Paris"),
        ));
        ids.insert(payload::event_id(&EventId::parse(&id).unwrap()));
    }
    let r = server.ingest(body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    ids
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn event_ids(receiver: &Receiver) -> HashSet<String> {
    receiver
        .hits()
        .iter()
        .filter(|h| h.answered == Answer::Status(200))
        .filter_map(|h| h.header("rempart-event").map(str::to_owned))
        .collect()
}

#[test]
fn a_subscribed_parcel_change_arrives_signed_at_the_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "shop");
    let server = start(dir.path(), &[]);
    let hook = Receiver::start("127.0.0.1:0".parse().unwrap(), |_| Answer::Status(200));
    let (ep, secret) = endpoint(&server, &key, &hook.url("/rempart"));
    let tn = numbers(1, 10_000_001);
    subscribe(&server, &key, &ep, &tn);

    let expected = ingest(&server, "e2e", "PC1", &tn);
    wait_for("the delivery", WITHIN, || !hook.hits().is_empty());
    let hit = &hook.hits()[0];
    let header = hit.header(SIGNATURE_HEADER).expect("a signature header");
    verify(header, &hit.body, &secret, now_secs()).expect("the signature verifies");
    let wrong = SigningSecret::from_bytes([7; 32]);
    assert!(verify(header, &hit.body, &wrong, now_secs()).is_err());
    let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["type"], "parcel.status_changed");
    assert_eq!(body["data"]["tracking_number"], tn[0].as_str());
    assert_eq!(body["data"]["status"], "in_transit");
    assert!(expected.contains(hit.header("rempart-event").unwrap()));
    assert_eq!(body["id"], hit.header("rempart-event").unwrap());

    let listed = api(
        &server,
        &key,
        "GET",
        "subscriptions",
        serde_json::Value::Null,
    );
    assert_eq!(
        listed.json()["subscriptions"][0]["tracking_number"],
        tn[0].as_str()
    );
    wait_for("the delivered count", WITHIN, || {
        server.metric("rempart_push_deliveries_total{channel=\"webhook\",outcome=\"delivered\"}")
            >= 1
    });
    let ops = request(server.ingest, "GET", "/ops/data", &[], b"").json();
    assert!(
        ops["push"]["webhook"]["delivered"].as_u64() >= Some(1),
        "{ops}"
    );
    wait_for("the outbox figures", WITHIN, || {
        let metrics = request(server.ingest, "GET", "/metrics", &[], b"").text();
        metrics.contains("rempart_push_outbox_pending 0")
    });
}

#[test]
fn deliveries_acknowledged_before_a_kill_9_all_arrive_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "shop");
    let mut server = start(dir.path(), &[]);
    // The receiver is down while the events are ingested: nothing can be delivered yet.
    let addr = free_addr();
    let (ep, _) = endpoint(&server, &key, &format!("http://{addr}/hook"));
    let tns = numbers(50, 20_000_001);
    subscribe(&server, &key, &ep, &tns);
    let expected = ingest(&server, "crash", "PC1", &tns);
    server.kill9();

    server.restart();
    let hook = Receiver::start(addr, |_| Answer::Status(200));
    wait_for("every event id", Duration::from_secs(120), || {
        event_ids(&hook).is_superset(&expected)
    });
    assert_eq!(event_ids(&hook), expected, "only the subscribed changes");
}

#[test]
fn a_receiver_that_fails_then_recovers_gets_the_same_delivery_again() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "shop");
    let server = start(dir.path(), &[]);
    let hook = Receiver::start("127.0.0.1:0".parse().unwrap(), |n| match n {
        0 | 1 => Answer::Status(503),
        _ => Answer::Status(200),
    });
    let (ep, _) = endpoint(&server, &key, &hook.url("/flaky"));
    let tn = numbers(1, 30_000_001);
    subscribe(&server, &key, &ep, &tn);
    ingest(&server, "retry", "PC1", &tn);
    wait_for("the delivery after two failures", WITHIN, || {
        hook.hits()
            .iter()
            .any(|h| h.answered == Answer::Status(200))
    });
    let hits = hook.hits();
    assert_eq!(hits.len(), 3, "two failures, then success: {hits:?}");
    let deliveries: HashSet<_> = hits.iter().map(|h| h.header("rempart-delivery")).collect();
    let events: HashSet<_> = hits.iter().map(|h| h.header("rempart-event")).collect();
    assert_eq!(
        (deliveries.len(), events.len()),
        (1, 1),
        "the same delivery"
    );
    assert!(
        server.metric("rempart_push_deliveries_total{channel=\"webhook\",outcome=\"retried\"}")
            >= 2
    );
}

#[test]
fn a_dead_endpoint_does_not_hold_up_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "shop");
    // The dead endpoint holds each request for a minute: each send to it takes a lane slot
    // that long. With one slot per endpoint, the healthy one must get everything meanwhile.
    let server = start(
        dir.path(),
        &[
            "--push-endpoint-concurrency",
            "1",
            "--push-timeout-ms",
            "60000",
        ],
    );
    let dead = Receiver::start("127.0.0.1:0".parse().unwrap(), |_| Answer::Hang);
    let healthy = Receiver::start("127.0.0.1:0".parse().unwrap(), |_| Answer::Status(200));
    let (dead_ep, _) = endpoint(&server, &key, &dead.url("/dead"));
    let (healthy_ep, _) = endpoint(&server, &key, &healthy.url("/ok"));
    let tns = numbers(20, 40_000_001);
    subscribe(&server, &key, &dead_ep, &tns);
    subscribe(&server, &key, &healthy_ep, &tns);
    let expected = ingest(&server, "iso", "PC1", &tns);
    let held = || dead.requests.load(std::sync::atomic::Ordering::SeqCst);
    wait_for("a send held by the dead endpoint", WITHIN, || held() >= 1);
    wait_for("the healthy endpoint's deliveries", WITHIN, || {
        event_ids(&healthy) == expected
    });
    assert_eq!(
        held(),
        1,
        "the dead endpoint holds its one slot, nothing more"
    );
    dead.stop();
}

#[test]
fn webhook_urls_toward_private_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "shop");
    let server = start(dir.path(), &[]);
    for url in [
        "http://10.1.2.3/hook",
        "https://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.2:8080/not-allow-listed",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
    ] {
        let r = api(&server, &key, "POST", "endpoints", json!({ "url": url }));
        assert_eq!(r.status, 422, "{url}: {}", r.text());
        assert_eq!(r.json()["error"], "forbidden_url", "{url}");
    }
    for url in [
        "ftp://example.com/",
        "http://user:pw@example.com/",
        "not a url",
    ] {
        let r = api(&server, &key, "POST", "endpoints", json!({ "url": url }));
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_url", "{url}");
    }
    let listed = api(&server, &key, "GET", "endpoints", serde_json::Value::Null);
    assert_eq!(listed.json()["endpoints"], json!([]), "nothing was stored");
    let anonymous = request(server.public, "GET", "/v1/webhooks/endpoints", &[], b"");
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"], "unauthorized");

    let listed = Command::new(binary())
        .args(["key", "list", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listed.starts_with("shop\t") && listed.trim_end().ends_with("\twebhooks"),
        "{listed}"
    );
    assert!(
        !listed.contains(&key[4..]),
        "the key itself is never shown again"
    );

    // A revoked key is refused once the running node has reread the keys file.
    let out = Command::new(binary())
        .args(["key", "revoke", "shop", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    wait_for("the revoked key refused", WITHIN, || {
        api(&server, &key, "GET", "endpoints", serde_json::Value::Null).status == 401
    });
}

#[test]
fn under_attack_keyed_clients_pass_and_the_alerts_form_costs_a_challenge() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "shop");
    let smtp = sink::Sink::start();
    let relay = format!("smtp://{}", smtp.addr);
    let server = start(dir.path(), &["--smtp-relay", &relay, "--attack-mode", "on"]);
    let tn = numbers(1, 60_000_001).remove(0);
    ingest(&server, "attack", "PC1", std::slice::from_ref(&tn));

    let anonymous = server.get(&format!("/v1/parcels/{tn}"));
    assert!(
        matches!(anonymous.status, 403 | 429),
        "{}",
        anonymous.text()
    );
    let auth = format!("Bearer {key}");
    for _ in 0..5 {
        let keyed = request(
            server.public,
            "GET",
            &format!("/v1/parcels/{tn}"),
            &[("authorization", &auth)],
            b"",
        );
        assert_eq!(keyed.status, 200, "an API key passes: {}", keyed.text());
    }
    let listed = api(&server, &key, "GET", "endpoints", serde_json::Value::Null);
    assert_eq!(listed.status, 200, "{}", listed.text());

    let form = request(
        server.public,
        "POST",
        &format!("/alerts/{tn}"),
        &[("content-type", "application/x-www-form-urlencoded")],
        b"email=someone%40example.com",
    );
    assert_eq!(form.status, 403, "{}", form.text());
    assert!(form.text().contains("<html"), "the check page");
    assert!(
        smtp.mails().is_empty(),
        "nothing sent without the challenge"
    );
}

/// The link to the confirmation page in a confirmation e-mail: its path.
fn confirm_path(mail: &sink::Mail) -> String {
    let body = mail.body_text();
    let start = body
        .find("/en/alerts/confirm/")
        .expect("a confirmation link");
    body[start..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn e_mail_alerts_need_the_confirmation_link_and_never_show_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = sink::Sink::start();
    let relay = format!("smtp://{}", smtp.addr);
    let server = start(dir.path(), &["--smtp-relay", &relay]);
    let tn = numbers(1, 50_000_001).remove(0);
    ingest(&server, "mail-a", "PC1", std::slice::from_ref(&tn));

    let page = server.get(&format!("/en/track/{tn}")).text();
    assert!(
        page.contains(&format!("action=\"/en/alerts/{tn}\"")),
        "{page}"
    );
    let form = |body: &str| {
        request(
            server.public,
            "POST",
            &format!("/en/alerts/{tn}"),
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    };
    let bad = form("email=not-an-address");
    assert_eq!(bad.status, 400);
    let asked = form("email=jeanne.dupont%40example.com");
    assert_eq!(asked.status, 200, "{}", asked.text());
    assert!(!asked.text().contains("jeanne"));

    wait_for("the confirmation e-mail", WITHIN, || {
        smtp.mails().len() == 1
    });
    let mail = &smtp.mails()[0];
    assert!(mail.to[0].contains("jeanne.dupont@example.com"));
    let path = confirm_path(mail);
    let shown = request(server.public, "GET", &path, &[], b"");
    assert_eq!(shown.status, 200);
    assert!(
        shown.text().contains(&format!("action=\"{path}\"")),
        "a button, not an action"
    );
    let confirmed = request(server.public, "POST", &path, &[], b"");
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    assert!(confirmed.text().contains(&tn));
    let again = request(server.public, "POST", &path, &[], b"");
    assert_eq!(again.status, 404, "a link works once");

    ingest(&server, "mail-b", "MD2", std::slice::from_ref(&tn));
    wait_for("the status e-mail", WITHIN, || smtp.mails().len() == 2);
    let alert = &smtp.mails()[1];
    assert!(alert.to[0].contains("jeanne.dupont@example.com"));
    assert!(
        alert.body_text().contains("/en/alerts/stop/"),
        "{}",
        alert.body_text()
    );
    for path in [format!("/en/track/{tn}"), format!("/v1/parcels/{tn}")] {
        assert!(!server.get(&path).text().contains("jeanne"), "{path}");
    }

    // The unsubscribe link: a button, then the address is gone.
    let body = alert.body_text();
    let start = body.find("/en/alerts/stop/").unwrap();
    let stop = body[start..].split_whitespace().next().unwrap().to_owned();
    assert_eq!(request(server.public, "GET", &stop, &[], b"").status, 200);
    let last = if stop.ends_with('A') { "B" } else { "A" };
    let forged = format!("{}{last}", &stop[..stop.len() - 1]);
    assert_eq!(
        request(server.public, "POST", &forged, &[], b"").status,
        404
    );
    let stopped = request(server.public, "POST", &stop, &[], b"");
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let again = request(server.public, "POST", &stop, &[], b"");
    assert_eq!(again.status, 404, "the address is gone");
}
