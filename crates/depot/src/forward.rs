//! Forwarding the spool to the ingest API: in batches of at most `batch` events, up to
//! `in_flight` batches at once (each on its own connection, so the node's group commit can make
//! them durable together), with exponential backoff and full jitter on failure. Outcomes are
//! taken in spool order and the spool's cursor moves only over a contiguous run of acknowledged
//! (or parked) batches: after a failure, the batches behind it are sent again (the server counts
//! them as duplicates). Batches in flight together may be committed in any order among
//! themselves; a parcel's status does not depend on arrival order except for events with the
//! very same `occurred_at`.
//!
//! - `200`: acknowledged; advance the cursor.
//! - connection error, timeout, `5xx`, `429`: retry the same batch after a backoff.
//! - `400`: the server refused a line this depot validated (rules changed, clock skew): the batch
//!   is parked in `rejected.ndjson` with the reason and the cursor moves on, loudly; one bad
//!   batch must not block every scan behind it.
//! - `401`/`403`: the token is wrong; retry at the longest backoff and log an error each time.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, Notify};

use crate::spool::{Record, Spool};

/// First retry delay.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest wait for the server's answer to one batch.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest batch (the ingest API takes at most 10,000 lines).
pub const MAX_BATCH: usize = 10_000;
/// Most batches in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// Counters shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct ForwardStats {
    pub forwarded: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub failures: AtomicU64,
}

/// Full-jitter exponential backoff: a uniform delay in `[0, min(cap, base · 2^attempt))`.
pub fn backoff(attempt: u32, random: u64) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(20))
        .min(BACKOFF_CAP);
    let micros = ceiling.as_micros().max(1) as u64;
    Duration::from_micros(random % micros)
}

/// A cheap random number for jitter (no cryptographic need).
fn jitter_source(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub struct Target {
    /// `host:port` of the ingest listener.
    pub authority: String,
    pub path: String,
    pub token: String,
}

impl Target {
    /// Parses `http://host:port[/path]`; the path defaults to `/v1/events`.
    pub fn parse(url: &str, token: String) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("the ingest URL must start with http:// (got {url:?})"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err("the ingest URL has no host".into());
        }
        let path = if path.is_empty() || path == "/" {
            "/v1/events"
        } else {
            path
        };
        Ok(Target {
            authority: authority.to_owned(),
            path: path.to_owned(),
            token,
        })
    }
}

enum Outcome {
    Acked { accepted: u64, duplicates: u64 },
    Retry(String),
    Rejected(String),
    Unauthorized(String),
}

async fn post(target: &Target, body: Bytes) -> Outcome {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&target.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", target.authority))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let request = Request::post(target.path.as_str())
            .header("host", target.authority.as_str())
            .header("authorization", format!("Bearer {}", target.token))
            .header("content-type", "application/x-ndjson")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Err(_) => return Outcome::Retry("no answer in time".into()),
        Ok(Err(e)) => return Outcome::Retry(e),
        Ok(Ok(answer)) => answer,
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Outcome::Acked {
                accepted: v["accepted"].as_u64().unwrap_or(0),
                duplicates: v["duplicates"].as_u64().unwrap_or(0),
            }
        }
        400 => Outcome::Rejected(text),
        401 | 403 => Outcome::Unauthorized(text),
        _ => Outcome::Retry(format!("status {status}: {text}")),
    }
}

/// Forwards until `stop` says so (or, with `once`, until the spool is empty).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    spool: Arc<Mutex<Spool>>,
    target: Target,
    batch: usize,
    in_flight: usize,
    stats: Arc<ForwardStats>,
    wake: Arc<Notify>,
    once: bool,
    rejected_path: std::path::PathBuf,
) -> Result<(), String> {
    assert!((1..=MAX_BATCH).contains(&batch));
    assert!((1..=MAX_IN_FLIGHT).contains(&in_flight));
    let target = Arc::new(target);
    let mut attempt = 0u32;
    let mut random = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    loop {
        let pending = {
            let spool = spool.lock().await;
            spool
                .pending(batch * in_flight)
                .map_err(|e| e.to_string())?
        };
        if pending.is_empty() {
            if once {
                return Ok(());
            }
            // New events wake us; a timeout guards against a missed wake-up.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        // Every batch goes out at once; answers are taken in order.
        let mut sent = send_all(&target, &pending, batch).into_iter();
        for (records, body, answer) in sent.by_ref() {
            let outcome = answer
                .await
                .unwrap_or_else(|e| Outcome::Retry(format!("forwarding task: {e}")));
            let last = records.last().expect("chunks are not empty").seq;
            match outcome {
                Outcome::Acked {
                    accepted,
                    duplicates,
                } => {
                    tracing::debug!(first = records[0].seq, last, accepted, duplicates, to = %target.authority, "batch acknowledged");
                    spool.lock().await.ack(last).map_err(|e| e.to_string())?;
                    stats.forwarded.fetch_add(accepted, Relaxed);
                    stats.duplicates.fetch_add(duplicates, Relaxed);
                    attempt = 0;
                }
                Outcome::Rejected(reason) => {
                    tracing::error!(events = records.len(), %reason, "the server refused a batch; parked in rejected.ndjson");
                    park_rejected(&rejected_path, &reason, &body)?;
                    spool.lock().await.ack(last).map_err(|e| e.to_string())?;
                    stats.rejected.fetch_add(records.len() as u64, Relaxed);
                    attempt = 0;
                }
                Outcome::Unauthorized(reason) => {
                    stats.failures.fetch_add(1, Relaxed);
                    tracing::error!(%reason, "the ingest API refuses this depot's token; fix --token");
                    tokio::time::sleep(BACKOFF_CAP).await;
                    break;
                }
                Outcome::Retry(reason) => {
                    stats.failures.fetch_add(1, Relaxed);
                    let delay = backoff(attempt, jitter_source(&mut random));
                    if attempt < 3 || attempt.is_multiple_of(10) {
                        tracing::warn!(%reason, attempt, delay_ms = delay.as_millis() as u64, "forwarding failed; retrying");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                    break;
                }
            }
        }
        // After a failure, the batches behind it are abandoned and sent again from the cursor.
        for (_, _, answer) in sent {
            answer.abort();
        }
    }
}

/// A batch on its way: its records, its body, and the task waiting for the answer.
type InFlight<'r> = (&'r [Record], Bytes, tokio::task::JoinHandle<Outcome>);

/// Sends `pending` as batches of `batch` events, all at once.
fn send_all<'r>(target: &Arc<Target>, pending: &'r [Record], batch: usize) -> Vec<InFlight<'r>> {
    pending
        .chunks(batch)
        .map(|records| {
            let mut body = Vec::new();
            for r in records {
                body.extend_from_slice(&r.payload);
                body.push(b'\n');
            }
            let body = Bytes::from(body);
            let target = target.clone();
            let request = body.clone();
            let answer = tokio::spawn(async move { post(&target, request).await });
            (records, body, answer)
        })
        .collect()
}

/// Appends a refused batch, after a line saying why, to the rejected file, durably.
fn park_rejected(path: &std::path::Path, reason: &str, body: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let note = serde_json::json!({ "rejected": reason.trim() }).to_string();
    file.write_all(format!("{note}\n").as_bytes())
        .and_then(|_| file.write_all(body))
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert!(backoff(0, u64::MAX) < BACKOFF_BASE);
        assert!(backoff(3, u64::MAX) < BACKOFF_BASE * 8);
        for attempt in [10, 20, 100, u32::MAX] {
            assert!(backoff(attempt, u64::MAX - 1) < BACKOFF_CAP);
        }
        let mut state = 7;
        let delays: std::collections::HashSet<_> = (0..50)
            .map(|_| backoff(8, jitter_source(&mut state)))
            .collect();
        assert!(delays.len() > 40, "full jitter spreads retries");
    }

    #[test]
    fn ingest_urls() {
        let t = Target::parse("http://10.0.0.5:8081", "t".into()).unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("10.0.0.5:8081", "/v1/events")
        );
        let t = Target::parse("http://central:8081/v1/events", "t".into()).unwrap();
        assert_eq!(t.path, "/v1/events");
        for bad in ["https://x", "ftp://x", "http://", "central:8081"] {
            assert!(Target::parse(bad, "t".into()).is_err(), "{bad}");
        }
    }
}
