//! Webhook deliveries per second from one node to a local receiver (`scripts/bench/push`).
//!
//! Starts `rempart serve` (the binary given) with push on and the embedded store, a minimal
//! HTTP receiver on loopback (tokio, answers 200 to every POST, counts distinct event ids),
//! creates ENDPOINTS endpoints on that receiver, subscribes PARCELS parcels spread over them,
//! ingests one status-changing event per parcel (batches of 1,000), and measures from the first
//! batch sent until the receiver has seen every event id once.
//!
//!   push_deliveries BIN [PARCELS=20000] [ENDPOINTS=16] [PER_ENDPOINT=4]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MASTER_KEY: &str = "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const TOKEN: &str = "bench-token";

fn http(addr: SocketAddr, method: &str, path: &str, auth: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer {auth}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Every event id the receiver saw.
type Seen = Arc<Mutex<HashSet<String>>>;

async fn receive(listener: tokio::net::TcpListener, seen: Seen) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(2048);
            let mut chunk = [0u8; 2048];
            let (head_end, len) = loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let Ok(n) = stream.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            if let Some(id) = head.lines().find_map(|l| l.strip_prefix("rempart-event:")) {
                seen.lock().unwrap().insert(id.trim().to_owned());
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        });
    }
}

/// A valid S10 number `RR{serial}{check}FR`.
fn s10(serial: u32) -> String {
    const W: [u32; 8] = [8, 6, 4, 2, 3, 5, 9, 7];
    let digits: Vec<u32> = format!("{serial:08}")
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let sum: u32 = digits.iter().zip(W).map(|(d, w)| d * w).sum();
    let c = match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c,
    };
    format!("RR{serial:08}{c}FR")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .get(1)
        .expect("usage: push_deliveries BIN [PARCELS] [ENDPOINTS] [PER_ENDPOINT]");
    let parcels: u32 = args.get(2).map_or(20_000, |a| a.parse().unwrap());
    let endpoints: usize = args.get(3).map_or(16, |a| a.parse().unwrap());
    let per_endpoint = args.get(4).cloned().unwrap_or_else(|| "4".into());
    let dir = tempfile::tempdir().unwrap();

    let out = Command::new(bin)
        .args(["key", "create", "bench", "--scope", "webhooks", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let seen: Seen = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let receiver = listener.local_addr().unwrap();
    rt.spawn(receive(listener, seen.clone()));

    let mut node = Command::new(bin)
        .arg("serve")
        .arg("--data")
        .arg(dir.path())
        .args([
            "--public",
            "127.0.0.1:0",
            "--ingest",
            "127.0.0.1:0",
            "--push",
            "true",
        ])
        .args([
            "--push-master-key",
            MASTER_KEY,
            "--push-allow",
            "127.0.0.1/32",
        ])
        .args(["--push-endpoint-concurrency", &per_endpoint])
        .env("REMPART_INGEST_TOKEN", TOKEN)
        .env("REMPART_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let (public, ingest) = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix("rempart listening ") {
            let addr = |p: &str| -> SocketAddr {
                rest.split_whitespace()
                    .find_map(|w| w.strip_prefix(p))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            break (addr("public="), addr("ingest="));
        }
    };

    let mut ids = Vec::new();
    for i in 0..endpoints {
        let body = format!(r#"{{"url":"http://{receiver}/hook/{i}"}}"#);
        let (status, text) = http(
            public,
            "POST",
            "/v1/webhooks/endpoints",
            &key,
            body.as_bytes(),
        );
        assert_eq!(status, 201, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let numbers: Vec<String> = (1..=parcels).map(|i| s10(10_000_000 + i)).collect();
    // Parcel i goes to endpoint i mod ENDPOINTS: the outbox's due order then spreads over every
    // endpoint, as a real mix of merchants would.
    for (e, id) in ids.iter().enumerate() {
        let mine: Vec<&String> = numbers.iter().skip(e).step_by(endpoints).collect();
        for chunk in mine.chunks(500) {
            let body = serde_json::json!({"endpoint": id, "tracking_numbers": chunk});
            let (status, text) = http(
                public,
                "POST",
                "/v1/webhooks/subscriptions",
                &key,
                body.to_string().as_bytes(),
            );
            assert_eq!(status, 200, "{text}");
        }
    }

    let started = Instant::now();
    for (n, chunk) in numbers.chunks(1000).enumerate() {
        let mut body = String::new();
        for (i, tn) in chunk.iter().enumerate() {
            body.push_str(&format!(
                "{{\"event_id\":\"b-{n}-{i}\",\"tracking_number\":\"{tn}\",\"code\":\"PC1\",\"occurred_at\":\"2025-12-22T08:00:00Z\"}}\n"
            ));
        }
        let (status, text) = http(ingest, "POST", "/v1/events", TOKEN, body.as_bytes());
        assert_eq!(status, 200, "{text}");
    }
    let ingested = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.lock().unwrap().len() < parcels as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let got = seen.lock().unwrap().len();
    let _ = node.kill();
    let _ = node.wait();
    println!(
        "{got} of {parcels} deliveries to {endpoints} endpoints ({per_endpoint} in flight each) in {:.2} s \
         (ingest of the events: {:.2} s): {:.0} deliveries/s",
        took.as_secs_f64(),
        ingested.as_secs_f64(),
        got as f64 / took.as_secs_f64()
    );
}
