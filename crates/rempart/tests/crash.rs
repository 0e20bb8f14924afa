//! Crash safety: the server is `kill -9`ed repeatedly while several clients ingest at full rate.
//! Clients resend every batch that was not acknowledged (as a depot would). At the end every
//! acknowledged event is there exactly once, and every batch is all or nothing.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, TOKEN, event_line, try_request};
use rempart_domain::TrackingNumber;

const CLIENTS: u64 = 4;
const KILLS: usize = 6;
const PARCELS_PER_BATCH: u64 = 10;
const EVENTS_PER_PARCEL: u64 = 10;

/// Batch `b` of client `c`: its own parcels, each event's location naming its id, so the public
/// view shows which events are stored.
fn batch(c: u64, b: u64) -> (String, Vec<(String, String)>) {
    let mut body = String::new();
    let mut events = Vec::new();
    for p in 0..PARCELS_PER_BATCH {
        let tn = TrackingNumber::domestic(6, 'C', c * 100_000_000 + b * PARCELS_PER_BATCH + p)
            .unwrap()
            .to_string();
        for e in 0..EVENTS_PER_PARCEL {
            let id = format!("crash:{c}:{b}:{p}:{e}");
            let at = format!("2025-12-22T{:02}:{:02}:00Z", 8 + e / 60, e % 60);
            body += &event_line(&id, &tn, "ET1", &at, Some(&id));
            events.push((tn.clone(), id));
        }
    }
    (body, events)
}

#[test]
fn no_acknowledged_event_is_lost_or_duplicated_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let ingest = server.ingest;
    let stop = Arc::new(AtomicBool::new(false));
    // Per client: batches acknowledged (in order; a batch is resent until acknowledged).
    let acked: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let resent = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            let acked = acked.clone();
            let resent = resent.clone();
            std::thread::spawn(move || {
                let auth = format!("Bearer {TOKEN}");
                let mut b = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (body, _) = batch(c, b);
                    match try_request(
                        ingest,
                        "POST",
                        "/v1/events",
                        &[("authorization", &auth)],
                        body.as_bytes(),
                    ) {
                        Ok(resp) if resp.status == 200 => {
                            acked.lock().unwrap().insert(c, b + 1);
                            b += 1;
                        }
                        Ok(resp) => {
                            assert_eq!(resp.status, 503, "{}", resp.text());
                            resent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            // Server down: retry the same batch shortly.
                            resent.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                b
            })
        })
        .collect();

    for round in 0..KILLS {
        // Let the clients get going, with a kill at a different point each round.
        std::thread::sleep(Duration::from_millis(400 + 150 * round as u64));
        server.kill9();
        std::thread::sleep(Duration::from_millis(100));
        server.restart();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let attempted: Vec<u64> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    server.kill9();
    server.restart();

    let acked = acked.lock().unwrap().clone();
    let total_acked: u64 = acked.values().sum();
    assert!(total_acked > 0, "no batch was acknowledged");
    assert!(
        resent.load(Ordering::Relaxed) > 0,
        "the kills never interrupted a client"
    );

    let mut seen_events = 0;
    for c in 0..CLIENTS {
        let acked_batches = acked.get(&c).copied().unwrap_or(0);
        // Acknowledged batches, plus the one in flight at the end (all or nothing).
        for b in 0..=attempted[c as usize].max(acked_batches) {
            let (_, events) = batch(c, b);
            let mut by_parcel: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (tn, id) in &events {
                by_parcel.entry(tn).or_default().push(id);
            }
            let mut present_parcels = 0;
            for (tn, ids) in &by_parcel {
                let Some(shown) = common::locations_once(&server, tn) else {
                    continue;
                };
                present_parcels += 1;
                let expected: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
                assert_eq!(
                    shown.iter().cloned().collect::<HashSet<_>>(),
                    expected,
                    "parcel {tn} is partial"
                );
                seen_events += shown.len();
            }
            if b < acked_batches {
                assert_eq!(
                    present_parcels,
                    by_parcel.len(),
                    "acknowledged batch {c}:{b} lost"
                );
            } else {
                assert!(
                    present_parcels == 0 || present_parcels == by_parcel.len(),
                    "batch {c}:{b} is partial"
                );
            }
        }
    }
    let acked_events = total_acked * PARCELS_PER_BATCH * EVENTS_PER_PARCEL;
    assert!(seen_events as u64 >= acked_events);
    eprintln!(
        "crash test: {KILLS} kills, {total_acked} batches acknowledged ({acked_events} events), {} resends, {seen_events} events found",
        resent.load(Ordering::Relaxed)
    );
}
