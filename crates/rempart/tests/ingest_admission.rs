//! The ingest listener cannot be locked out (issue 18): idle unauthenticated connections make
//! room for depots, one source holds a bounded number of connections, a head must come quickly
//! before a client can authenticate, and a body sent at a trickle is cut off.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Server, TOKEN, event_line};

/// Hang guard for "the server eventually answers or closes" (not a performance assertion).
const WITHIN: Duration = Duration::from_secs(20);

fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = common::try_connect_from(source, to)?;
    stream.set_read_timeout(Some(WITHIN))?;
    Ok(stream)
}

/// Whatever the server sends until it closes (or the hang guard).
fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn batch_request(body: &str) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn idle_unauthenticated_connections_cannot_keep_a_depot_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--ingest-max-connections",
            "200",
            "--ingest-header-timeout-ms",
            "60000",
        ],
        &[],
    );
    // 300 idle connections from 20 addresses: more than the whole cap.
    let mut idle = Vec::new();
    for i in 0..300 {
        let source = format!("127.0.{}.{}", 60 + i % 4, 1 + i % 5);
        if let Ok(s) = connect_from(&source, server.ingest) {
            idle.push(s);
        }
    }
    let body = event_line(
        "adm:1",
        "RR123456785FR",
        "PC1",
        "2025-12-22T07:00:00Z",
        None,
    );
    let mut depot = connect_from("127.0.70.1", server.ingest).unwrap();
    depot.write_all(batch_request(&body).as_bytes()).unwrap();
    let reply = read_all(&mut depot);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "the depot was kept out: {reply:?}"
    );
    assert!(reply.contains("\"accepted\":1"), "{reply}");
    drop(idle);
}

#[test]
fn one_source_holds_a_bounded_number_of_ingest_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--ingest-source-max-connections", "4"], &[]);
    let held: Vec<_> = (0..4)
        .map(|_| connect_from("127.0.71.1", server.ingest).unwrap())
        .collect();
    let mut fifth = connect_from("127.0.71.1", server.ingest).unwrap();
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(
        read_all(&mut fifth),
        "",
        "the fifth connection is closed unanswered"
    );
    // Another address is not affected.
    let mut other = connect_from("127.0.71.2", server.ingest).unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    assert!(read_all(&mut other).starts_with("HTTP/1.1 200"));
    drop(held);
}

#[test]
fn a_head_must_come_quickly_and_a_body_cannot_trickle() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--ingest-header-timeout-ms",
            "300",
            "--ingest-body-timeout-ms",
            "1000",
        ],
        &[],
    );
    // Nothing sent: the server closes the connection after the head timeout (a read that
    // times out instead, at the hang guard, fails here).
    let mut silent = connect_from("127.0.72.1", server.ingest).unwrap();
    let mut sink = Vec::new();
    let closed = silent.read_to_end(&mut sink);
    assert!(
        closed.is_ok(),
        "the silent connection was kept open: {closed:?}"
    );

    // An authenticated head, then a body at a trickle: answered 408 and closed.
    let body = event_line(
        "adm:2",
        "RR123456785FR",
        "PC1",
        "2025-12-22T07:00:00Z",
        None,
    );
    let request = batch_request(&body);
    let (head, body) = request.split_at(request.find("\r\n\r\n").unwrap() + 4);
    let mut slow = connect_from("127.0.72.2", server.ingest).unwrap();
    slow.write_all(head.as_bytes()).unwrap();
    for byte in body.as_bytes().iter().take(20) {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = read_all(&mut slow);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?}");
    assert!(reply.contains("body_timeout"), "{reply}");
    // Nothing of it was stored.
    assert_eq!(server.get("/v1/parcels/RR123456785FR").status, 404);
}
