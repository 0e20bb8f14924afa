//! `POST /v1/events`, from the body to the fsync and the follow-up.
//!
//! Order of checks, cheapest first: token, declared size, body read under a cap, line count,
//! every line parsed and validated, then one `append` (group commit); once it is durable, the
//! cache coherence rule for every parcel the batch touched (`crate::coherence`).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use rempart_domain::{Event, Timestamp, parse_event_line};
use rempart_store::{StoreError, WriteFailure};

use super::refusals::RefusalKind;
use super::reply::{self, Body, with_body};
use crate::app::App;
use crate::content::JSON;
use crate::listener::Seat;

/// Largest batch body (SPEC: 8 MiB).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most lines in a batch (SPEC: 10,000).
pub const MAX_BATCH_LINES: usize = rempart_store::MAX_BATCH_EVENTS;

/// A refused batch.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Line `line` (1-based, counting every line of the body) is not a valid event.
    Invalid {
        line: usize,
        message: String,
    },
    TooManyLines,
}

/// Splits an NDJSON body into validated events. Blank lines (and a final newline) are skipped
/// but still counted for line numbers; `\r\n` is accepted.
pub fn parse_batch(body: &[u8], now: Timestamp) -> Result<Vec<Event>, BatchError> {
    let mut events = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if events.len() == MAX_BATCH_LINES {
            return Err(BatchError::TooManyLines);
        }
        let event = parse_event_line(line, now).map_err(|e| BatchError::Invalid {
            line: i + 1,
            message: e.to_string(),
        })?;
        events.push(event);
    }
    Ok(events)
}

/// A batch refused before the commit (boxed: the ingest path is not where a flood lands).
type Refusal = Box<Response<Body>>;

fn too_large(message: &str) -> Response<Body> {
    reply::error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
}

/// `POST /v1/events`: token, declared size, body under a cap and a deadline, every line, then
/// the commit. An authenticated request settles its connection's seat (it is never evicted to
/// make room for a newcomer).
pub async fn receive(app: &Arc<App>, req: Request<Incoming>, seat: &Seat) -> Response<Body> {
    if let Err(refusal) = authorize(app, &req, seat) {
        return *refusal;
    }
    let body = match read_body(app, req).await {
        Ok(body) => body,
        Err(refusal) => return *refusal,
    };
    let batch = match parse(app, &body) {
        Ok(batch) => batch,
        Err(refusal) => return *refusal,
    };
    // The commit and what must follow it (cache invalidation, existence filter) run in a task
    // of their own: if the client goes away mid-request, hyper drops this handler, but a batch
    // that reached the store must still invalidate the cache and feed the filter.
    let app = app.clone();
    match tokio::spawn(async move { commit(&app, batch).await }).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "ingest commit task failed");
            reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the batch may not be stored; send it again",
            )
        }
    }
}

/// A valid bearer token settles the connection's seat; anything else is 401.
fn authorize(app: &App, req: &Request<Incoming>, seat: &Seat) -> Result<(), Refusal> {
    let auth = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if app.tokens.authorizes(auth) {
        seat.settle();
        return Ok(());
    }
    let mut resp = reply::error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid `Authorization: Bearer <token>` is required",
    );
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(Box::new(resp))
}

/// The body, at most [`MAX_BATCH_BYTES`], within the body deadline.
async fn read_body(app: &App, req: Request<Incoming>) -> Result<bytes::Bytes, Refusal> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BATCH_BYTES as u64) {
        return Err(Box::new(too_large("a batch is at most 8 MiB")));
    }
    let deadline = app.settings.listeners.ingest_body_timeout_ms.duration();
    let read = tokio::time::timeout(
        deadline,
        Limited::new(req.into_body(), MAX_BATCH_BYTES).collect(),
    );
    let Ok(read) = read.await else {
        let mut resp = reply::error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the batch's body did not arrive in time; nothing was stored",
        );
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        return Err(Box::new(resp));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Box::new(too_large("a batch is at most 8 MiB")))
        }
        Err(e) => Err(Box::new(reply::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("could not read the body: {e}"),
        ))),
    }
}

/// Every line validated, or the whole batch refused naming the first bad line.
fn parse(app: &App, body: &[u8]) -> Result<Vec<Event>, Refusal> {
    match parse_batch(body, crate::clock::now()) {
        Ok(batch) => Ok(batch),
        Err(BatchError::TooManyLines) => Err(Box::new(too_large("a batch is at most 10000 lines"))),
        Err(BatchError::Invalid { line, message }) => {
            app.metrics.ingest_refused_events.fetch_add(1, Relaxed);
            let body = serde_json::json!({
                "error": "invalid_event",
                "line": line,
                "message": message,
            });
            Err(Box::new(with_body(
                StatusCode::BAD_REQUEST,
                JSON,
                body.to_string(),
            )))
        }
    }
}

async fn commit(app: &App, batch: Vec<Event>) -> Response<Body> {
    let touched: HashSet<_> = batch.iter().map(|e| e.tracking_number).collect();
    let started = Instant::now();
    match app.store.append(batch).await {
        Ok(outcome) => {
            app.metrics.commit(started.elapsed());
            // Durable now: the cache forgets these parcels, the filter learns them.
            app.coherence
                .parcels_changed(&app.guard, &touched, outcome.accepted > 0);
            // The same commit may have written deliveries: the dispatcher looks now.
            if let Some(push) = app.push.as_ref().filter(|_| outcome.accepted > 0) {
                push.wake();
            }
            app.metrics.ingest_batches.fetch_add(1, Relaxed);
            app.metrics
                .ingest_accepted
                .fetch_add(outcome.accepted as u64, Relaxed);
            app.metrics
                .ingest_duplicates
                .fetch_add(outcome.duplicates as u64, Relaxed);
            let body = serde_json::json!({
                "accepted": outcome.accepted,
                "duplicates": outcome.duplicates,
            });
            with_body(StatusCode::OK, JSON, body.to_string())
        }
        Err(StoreError::BatchTooLarge(_)) => too_large("a batch is at most 10000 lines"),
        Err(e) => {
            app.metrics.store_errors.fetch_add(1, Relaxed);
            let (response, kind) = store_failure(&e, app.store.write_health().failure.as_ref());
            app.ingest_refusals.record(kind, &e);
            response
        }
    }
}

/// `Retry-After` while the store is known to be unable to write (a full disk, say): it probes
/// by itself and comes back, but not within a second.
pub const WRITES_FAILING_RETRY_AFTER_S: u32 = 10;

/// The answer to a batch the store could not acknowledge, and how it is counted. `failing`:
/// why the store takes no writes, when it says so.
fn store_failure(e: &StoreError, failing: Option<&WriteFailure>) -> (Response<Body>, RefusalKind) {
    let retry_after = if failing.is_some() {
        WRITES_FAILING_RETRY_AFTER_S
    } else {
        1
    };
    match e {
        StoreError::OutcomeUnknown(_) => (
            reply::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                "the storage failed while committing this batch: it may or may not be stored. \
                 Send it again: events already stored count as duplicates and change nothing",
                retry_after,
            ),
            RefusalKind::OutcomeUnknown,
        ),
        _ => {
            let message = match failing {
                Some(f) => format!(
                    "the batch was not stored: the storage takes no writes ({}); it retries by itself, send the batch again later",
                    f.reason
                ),
                None => "the batch was not stored; send it again later".to_owned(),
            };
            (
                reply::retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    &message,
                    retry_after,
                ),
                RefusalKind::StorageUnavailable,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_767_000_000_000_000);

    fn line(id: &str, tn: &str) -> String {
        format!(
            "{{\"event_id\":\"{id}\",\"tracking_number\":\"{tn}\",\"code\":\"PC1\",\"occurred_at\":\"2025-12-22T07:02:11+01:00\"}}"
        )
    }

    #[test]
    fn an_unknown_commit_outcome_is_told_as_such() {
        let (resp, kind) = store_failure(
            &StoreError::OutcomeUnknown("connection closed".into()),
            None,
        );
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(kind, RefusalKind::OutcomeUnknown);
        let (resp, kind) = store_failure(&StoreError::Unavailable("pool timeout".into()), None);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(kind, RefusalKind::StorageUnavailable);
        assert_eq!(resp.headers()["retry-after"], "1");
        let failing = WriteFailure {
            reason: "No space left on device".into(),
            since: std::time::SystemTime::now(),
        };
        let (resp, _) = store_failure(&StoreError::Unavailable("stopped".into()), Some(&failing));
        assert_eq!(
            resp.headers()["retry-after"],
            WRITES_FAILING_RETRY_AFTER_S.to_string().as_str()
        );
    }

    #[test]
    fn blank_lines_and_crlf_are_accepted() {
        let body = format!(
            "{}\r\n\n{}\n",
            line("a", "RR123456785FR"),
            line("b", "6A12345678905")
        );
        let events = parse_batch(body.as_bytes(), NOW).unwrap();
        assert_eq!(events.len(), 2);
        assert!(parse_batch(b"", NOW).unwrap().is_empty());
    }

    #[test]
    fn the_first_bad_line_is_named_counting_blank_lines() {
        let body = format!(
            "{}\n\n{}\n{}\n",
            line("a", "RR123456785FR"),
            line("b", "RR123456784FR"),
            line("c", "nope")
        );
        match parse_batch(body.as_bytes(), NOW) {
            Err(BatchError::Invalid { line, message }) => {
                assert_eq!(line, 3);
                assert!(message.contains("check digit"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_lines_are_refused() {
        for bad in [
            &b"\xff\xfe"[..],
            b"{",
            b"[]",
            b"null",
            b"{\"event_id\":\"\xc3\x28\",\"tracking_number\":\"RR123456785FR\",\"code\":\"PC1\",\"occurred_at\":\"2025-12-22T07:02:11Z\"}",
            b"{\"event_id\":\"a\",\"tracking_number\":\"RR123456785FR\",\"code\":\"XX9\",\"occurred_at\":\"2025-12-22T07:02:11Z\"}",
        ] {
            assert!(
                matches!(parse_batch(bad, NOW), Err(BatchError::Invalid { line: 1, .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn more_than_the_line_limit_is_refused() {
        let one = line("a", "RR123456785FR");
        let body = format!("{one}\n").repeat(MAX_BATCH_LINES);
        assert_eq!(
            parse_batch(body.as_bytes(), NOW).unwrap().len(),
            MAX_BATCH_LINES
        );
        let body = format!("{body}{one}\n");
        assert_eq!(
            parse_batch(body.as_bytes(), NOW),
            Err(BatchError::TooManyLines)
        );
    }
}
