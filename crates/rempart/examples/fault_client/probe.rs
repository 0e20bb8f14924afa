//! What an operator and a load balancer would see during a fault: `probe` asks, once per period,
//! the public `/readyz`, the ingest `/readyz` and a public lookup of a parcel already acknowledged,
//! and writes one tab-separated line per round. `wait-ready` measures time to ready after a start.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http1::Conn;
use crate::ingest::unix_ms;
use crate::record::Acks;

/// Longest wait for one probe's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest body text kept per probe.
const BODY_CHARS: usize = 120;
/// How often `wait-ready` asks.
const READY_POLL: Duration = Duration::from_millis(5);
pub const PROBES_HEADER: &str = "unix_ms\tpublic_readyz\tpublic_readyz_body\tingest_readyz\tingest_readyz_body\tlookup\tlookup_stale";

/// `GET path` on a fresh connection: status, body on one line, and whether it was marked stale.
fn get(addr: SocketAddr, path: &str) -> (u16, String, bool) {
    let answer = Conn::connect(addr, PROBE_TIMEOUT)
        .and_then(|mut conn| conn.request("GET", path, &[("connection", "close")], b""));
    match answer {
        Ok(a) => {
            let stale = a.header("x-rempart-stale").is_some();
            let body: String = a
                .body
                .chars()
                .map(|c| if c.is_whitespace() { ' ' } else { c })
                .take(BODY_CHARS)
                .collect();
            (a.status, body.trim().to_owned(), stale)
        }
        Err(e) => (0, format!("({})", e.kind()), false),
    }
}

/// Probes until `stop_file` exists, writing one line per round to `out`.
pub fn probe(
    public: SocketAddr,
    ingest: SocketAddr,
    acks_dir: &Path,
    out: &Path,
    every: Duration,
    stop_file: &Path,
) -> std::io::Result<()> {
    let mut file = std::fs::File::create(out)?;
    writeln!(file, "{PROBES_HEADER}")?;
    let mut parcel = None;
    while !stop_file.exists() {
        let started = Instant::now();
        if parcel.is_none() {
            parcel = Acks::read(acks_dir).ok().and_then(|acks| {
                let (c, b) = acks.acked.keys().min().copied()?;
                Some(acks.shape?.tracking_number(c, b, 0))
            });
        }
        let (ps, pb, _) = get(public, "/readyz");
        let (is, ib, _) = get(ingest, "/readyz");
        let (ls, _, stale) = match &parcel {
            Some(tn) => get(public, &format!("/v1/parcels/{tn}")),
            None => (0, String::new(), false),
        };
        writeln!(
            file,
            "{}\t{ps}\t{pb}\t{is}\t{ib}\t{ls}\t{}",
            unix_ms(),
            u8::from(stale)
        )?;
        file.flush()?;
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
    Ok(())
}

/// Polls `GET path` until it answers 200; returns the milliseconds since `since_ns` (Unix time in
/// nanoseconds, taken by the caller just before it started the node).
pub fn wait_ready(addr: SocketAddr, path: &str, since_ns: u128, timeout: Duration) -> Option<f64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if get(addr, path).0 == 200 {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            return Some(now.saturating_sub(since_ns) as f64 / 1e6);
        }
        std::thread::sleep(READY_POLL);
    }
    None
}
