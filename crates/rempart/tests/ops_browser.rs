//! The /ops page in a real headless Chromium (Debian's `chromium`, installed by
//! scripts/ensure-chromium): it loads, its charts draw, its numbers move while traffic flows, and a
//! screenshot of it is not blank.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, chromium, event_line};

/// The value of attribute `attr` of the element with id `id` in a dumped DOM.
fn attribute(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let v = tag.find(&key)? + key.len();
    Some(tag[v..v + tag[v..].find('"')?].to_owned())
}

/// The text of the element with id `id`.
fn text(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = at + dom[at..].find('>')? + 1;
    Some(dom[start..start + dom[start..].find('<')?].to_owned())
}

#[test]
fn the_ops_page_draws_live_traffic_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let (public, ingest) = (server.public, server.ingest);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let auth = format!("Bearer {}", common::TOKEN);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tn = rempart_domain::TrackingNumber::domestic(6, 'A', 1_000 + i % 50).unwrap();
                let body = event_line(
                    &format!("ops:{i}"),
                    tn.as_str(),
                    "ET1",
                    "2025-12-22T08:00:00Z",
                    Some("Lyon"),
                );
                let _ = common::try_request(
                    ingest,
                    "POST",
                    "/v1/events",
                    &[("authorization", &auth)],
                    body.as_bytes(),
                );
                let _ = common::try_request(public, "GET", &format!("/v1/parcels/{tn}"), &[], b"");
                let _ = common::try_request(public, "GET", "/v1/parcels/RR123456784FR", &[], b"");
                i += 1;
                // About 20 lookups a second: under the per-source rate limit.
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // Let the sampler record a few seconds of traffic.
    std::thread::sleep(Duration::from_millis(3_500));
    let url = format!("http://{ingest}/ops");
    let profile = dir.path().join("chromium-profile");
    let out = chromium(
        &profile,
        &[
            "--virtual-time-budget=3000".into(),
            "--dump-dom".into(),
            url.clone(),
        ],
    );
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = String::from_utf8_lossy(&out.stdout).into_owned();

    std::thread::sleep(Duration::from_millis(2_500));
    let out = chromium(
        &profile,
        &[
            "--virtual-time-budget=3000".into(),
            "--dump-dom".into(),
            url.clone(),
        ],
    );
    let second = String::from_utf8_lossy(&out.stdout).into_owned();

    let shot = dir.path().join("ops.png");
    let out = chromium(
        &profile,
        &[
            "--virtual-time-budget=3000".into(),
            "--window-size=1280,1100".into(),
            format!("--screenshot={}", shot.display()),
            url,
        ],
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(
        out.status.success(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The script ran: the status line was replaced and every chart drew its samples.
    assert!(
        text(&first, "status").unwrap().starts_with("updated"),
        "{first}"
    );
    for chart in ["chart-public", "chart-ingest", "chart-commit"] {
        let points: usize = attribute(&first, chart, "data-points")
            .unwrap()
            .parse()
            .unwrap();
        assert!(points >= 2, "{chart} drew {points} points");
    }
    assert!(first.contains("<polyline"));
    // Numbers move: more samples the second time, and traffic shows in the tiles.
    let n1: usize = attribute(&first, "chart-public", "data-points")
        .unwrap()
        .parse()
        .unwrap();
    let n2: usize = attribute(&second, "chart-public", "data-points")
        .unwrap()
        .parse()
        .unwrap();
    assert!(n2 > n1, "no new samples: {n1} then {n2}");
    let events: u64 = text(&second, "n-events").unwrap().parse().unwrap();
    let served: u64 = text(&second, "n-ok").unwrap().parse().unwrap();
    let invalid: u64 = text(&second, "n-invalid").unwrap().parse().unwrap();
    assert!(
        events > 0 && served > 0 && invalid > 0,
        "events {events}, served {served}, invalid {invalid}"
    );

    // The screenshot is a real picture of the page, not a blank one.
    let png = std::fs::read(&shot).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert!(info.width >= 1000 && info.height >= 800);
    let channels = info.color_type.samples();
    let mut colors = std::collections::HashSet::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        colors.insert(px.to_vec());
        if colors.len() > 50 {
            break;
        }
    }
    assert!(
        colors.len() > 50,
        "the screenshot has only {} colours",
        colors.len()
    );
    let keep = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops-screenshot.png");
    let _ = std::fs::copy(&shot, &keep);
}
