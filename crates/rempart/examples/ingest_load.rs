//! Durable ingest throughput: N clients each POST batches of unique events over keep-alive
//! connections for a fixed time, and the events/s acknowledged and the ack latency are printed.
//! Loopback targets only.
//!
//! cargo run --release --example ingest_load -- ADDR TOKEN [CLIENTS] [BATCH] [SECONDS]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rempart_domain::TrackingNumber;

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
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut latencies = Vec::new();
    let mut events = 0;
    let mut b = 0u64;
    while Instant::now() < deadline {
        let mut body = String::with_capacity(batch as usize * 160);
        for i in 0..batch {
            let n = (c * 1_000_000 + b * batch + i) % 9_000_000_000;
            let tn = TrackingNumber::domestic(8, 'L', 1_000_000_000 + n).expect("valid");
            body.push_str(&format!(
                "{{\"event_id\":\"load:{run}:{c}:{b}:{i}\",\"tracking_number\":\"{tn}\",\"code\":\"ET1\",\"occurred_at\":\"2025-12-22T08:14:00Z\",\"location\":\"Lyon Corbas PFC\"}}\n"
            ));
        }
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let sent = Instant::now();
        writer.write_all(head.as_bytes()).expect("send");
        writer.write_all(body.as_bytes()).expect("send");
        let (status, reply) = read_response(&mut reader);
        assert_eq!(status, 200, "{reply}");
        latencies.push(sent.elapsed());
        events += batch;
        b += 1;
    }
    (events, latencies)
}

fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut len = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}
