//! The ingest listener's routes (SPEC.md): `POST /v1/events` (authenticated NDJSON batches,
//! all or nothing, acknowledged only once durable) and `GET /metrics`.
//!
//! Order of checks, cheapest first: route, token, declared size, body read under a cap, line
//! count, every line parsed and validated, then one `append` (group commit) and the cache
//! invalidation for every parcel the batch touched.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use rempart_domain::{Event, Timestamp, parse_event_line};
use rempart_store::StoreError;

use crate::app::App;
use crate::metrics::{Listener, Route};
use crate::response::{self, Body, HTML, JSON, TEXT, with_body};

/// Largest batch body (SPEC: 8 MiB).
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most lines in a batch (SPEC: 10,000).
pub const MAX_BATCH_LINES: usize = rempart_store::MAX_BATCH_EVENTS;

pub async fn handle(app: Arc<App>, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (route, resp) = route(&app, req).await;
    app.metrics.request(
        Listener::Ingest,
        route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> (Route, Response<Body>) {
    match req.uri().path() {
        "/v1/events" if req.method() == Method::POST => (Route::Events, events(app, req).await),
        "/v1/events" => (Route::Events, response::method_not_allowed("POST")),
        "/metrics" => (
            Route::Metrics,
            with_body(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                app.render_metrics(),
            ),
        ),
        "/ops" => (
            Route::Ops,
            with_body(StatusCode::OK, HTML, crate::ops::PAGE),
        ),
        "/ops/data" => (
            Route::OpsData,
            with_body(StatusCode::OK, JSON, crate::ops::data(app)),
        ),
        "/openapi.json" => (Route::Openapi, crate::response::openapi()),
        "/healthz" => (Route::Healthz, with_body(StatusCode::OK, TEXT, "ok\n")),
        "/readyz" if app.is_ready().await => {
            (Route::Readyz, with_body(StatusCode::OK, TEXT, "ready\n"))
        }
        "/readyz" => (
            Route::Readyz,
            response::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "storage is not available",
                1,
            ),
        ),
        _ => (Route::Other, response::not_found_route()),
    }
}

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

fn too_large(message: &str) -> Response<Body> {
    response::error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
}

async fn events(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let auth = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    if !app.tokens.authorizes(auth) {
        let mut resp = response::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` is required",
        );
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BATCH_BYTES as u64) {
        return too_large("a batch is at most 8 MiB");
    }
    let body = match Limited::new(req.into_body(), MAX_BATCH_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return too_large("a batch is at most 8 MiB");
        }
        Err(e) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("could not read the body: {e}"),
            );
        }
    };
    let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
    let batch = match parse_batch(&body, now) {
        Ok(batch) => batch,
        Err(BatchError::TooManyLines) => {
            return too_large("a batch is at most 10000 lines");
        }
        Err(BatchError::Invalid { line, message }) => {
            app.metrics.ingest_refused_events.fetch_add(1, Relaxed);
            let body = serde_json::json!({
                "error": "invalid_event",
                "line": line,
                "message": message,
            });
            return with_body(StatusCode::BAD_REQUEST, JSON, body.to_string());
        }
    };
    // The commit and what must follow it (cache invalidation, existence filter) run in a task
    // of their own: if the client goes away mid-request, hyper drops this handler, but a batch
    // that reached the store must still invalidate the cache and feed the filter.
    let app = app.clone();
    match tokio::spawn(async move { commit(&app, batch).await }).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "ingest commit task failed");
            response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the batch may not be stored; send it again",
            )
        }
    }
}

async fn commit(app: &App, batch: Vec<Event>) -> Response<Body> {
    let touched: HashSet<_> = batch.iter().map(|e| e.tracking_number).collect();
    let started = Instant::now();
    match app.store.append(batch).await {
        Ok(outcome) => {
            app.metrics.commit(started.elapsed());
            // Durable now: forget what the cache held for these parcels (duplicates change
            // nothing, so an all-duplicate resend keeps the cache). The filter learns the
            // numbers either way: inserting a known number again is harmless.
            if outcome.accepted > 0 {
                for tn in &touched {
                    app.cache.invalidate(tn);
                }
            }
            if let Some(shield) = &app.shield {
                shield
                    .filter
                    .insert(touched.iter().map(|tn| &tn.as_bytes()[..]));
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
            tracing::warn!(error = %e, "ingest batch not stored");
            response::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the batch was not stored; send it again later",
                1,
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
