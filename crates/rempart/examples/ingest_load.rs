//! Durable ingest throughput: N clients each POST batches of unique events over keep-alive
//! connections for a fixed time, and the events/s acknowledged and the ack latency are printed.
//! Loopback targets only.
//!
//! cargo run --release --example ingest_load -- ADDR TOKEN [CLIENTS] [BATCH] [SECONDS]

#[path = "support/http1.rs"]
mod http1;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http1::Conn;
use rempart_domain::{Event, EventCode, EventId, Timestamp, TrackingNumber};

/// Longest wait for an acknowledgement (a hang guard).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ingest_load ADDR TOKEN [CLIENTS=8] [BATCH=1000] [SECONDS=10]";
    let addr: SocketAddr = args.first().expect(usage).parse().expect("ADDR is ip:port");
    assert!(
        addr.ip().is_loopback(),
        "ingest_load only targets loopback addresses"
    );
    let token = args.get(1).expect(usage).clone();
    let clients: u64 = args.get(2).map_or(8, |s| s.parse().expect(usage));
    let batch: u64 = args.get(3).map_or(1000, |s| s.parse().expect(usage));
    let seconds: u64 = args.get(4).map_or(10, |s| s.parse().expect(usage));
    let run =
        std::process::id() as u64 * 1_000 + (Instant::now().elapsed().subsec_nanos() as u64 % 1000);

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let token = token.clone();
            std::thread::spawn(move || client(addr, &token, run, c, batch, deadline))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut events = 0u64;
    for h in handles {
        let (n, mut l) = h.join().expect("client thread");
        events += n;
        latencies.append(&mut l);
    }
    let took = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "clients={clients} batch={batch} batches={} events={events} seconds={took:.1} events_per_s={:.0} ack_p50_ms={:.1} ack_p99_ms={:.1} ack_max_ms={:.1}",
        latencies.len(),
        events as f64 / took,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn client(
    addr: SocketAddr,
    token: &str,
    run: u64,
    c: u64,
    batch: u64,
    deadline: Instant,
) -> (u64, Vec<Duration>) {
    let mut conn = Conn::connect(addr, ANSWER_TIMEOUT).expect("connect");
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/x-ndjson"),
    ];
    let mut latencies = Vec::new();
    let mut events = 0;
    let mut b = 0u64;
    let occurred_at = Timestamp::parse_rfc3339("2025-12-22T08:14:00Z").expect("valid time");
    while Instant::now() < deadline {
        let mut body = String::with_capacity(batch as usize * 160);
        for i in 0..batch {
            let n = (c * 1_000_000 + b * batch + i) % 9_000_000_000;
            let tn = TrackingNumber::domestic(8, 'L', 1_000_000_000 + n).expect("valid");
            let event = Event {
                event_id: EventId::parse(&format!("load:{run}:{c}:{b}:{i}")).expect("valid id"),
                tracking_number: tn,
                code: EventCode::Et1,
                occurred_at,
                location: Some("Lyon Corbas PFC".into()),
                product: None,
            };
            body.push_str(&event.to_json_line());
            body.push('\n');
        }
        let sent = Instant::now();
        let answer = conn
            .request("POST", "/v1/events", &headers, body.as_bytes())
            .expect("answer");
        assert_eq!(answer.status, 200, "{}", answer.body);
        latencies.push(sent.elapsed());
        events += batch;
        b += 1;
    }
    (events, latencies)
}
