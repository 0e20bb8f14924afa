//! The ingest listener, for depots on a private network: `POST /v1/events` (authenticated
//! NDJSON batches, all or nothing, acknowledged only once durable), and the operator's routes
//! (`/metrics`, `/ops`, `/ops/data`, health, the OpenAPI document).
//!
//! - `connection.rs`: hyper's HTTP/1.1 for one connection;
//! - `events.rs`: a batch from the body to the fsync, and the cache follow-up;
//! - `refusals.rs`: batches the store could not acknowledge, summarised in the log;
//! - `reply.rs`: building hyper responses.

mod connection;
pub mod events;
pub mod refusals;
mod reply;

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::app::App;
use crate::content::{HTML, JSON, OPENAPI, TEXT};
use crate::listener::Seat;
use crate::metrics::{Listener, Route};
use reply::{Body, with_body};

pub use connection::serve as connection;

async fn handle(app: Arc<App>, req: Request<Incoming>, seat: &Seat) -> Response<Body> {
    let started = Instant::now();
    let (route, resp) = route(&app, req, seat).await;
    app.metrics.request(
        Listener::Ingest,
        route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

/// `GET /readyz` on the ingest listener: ready when the store serves reads **and** takes
/// writes; otherwise 503 saying why (a store that stopped taking writes says what failed and
/// since when; it keeps probing and comes back by itself).
async fn readyz(app: &App) -> Response<Body> {
    if !app.is_ready().await {
        return reply::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "storage is not available",
            1,
        );
    }
    match app.store.write_health().failure {
        None => with_body(StatusCode::OK, TEXT, "ready\n"),
        Some(failure) => {
            let since_s = failure.since.elapsed().map_or(0, |d| d.as_secs());
            let message = format!(
                "the storage takes no writes since {since_s} s: {}; it probes the disk and recovers by itself",
                failure.reason
            );
            reply::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "writes_failing",
                &message,
                events::WRITES_FAILING_RETRY_AFTER_S,
            )
        }
    }
}

async fn route(app: &Arc<App>, req: Request<Incoming>, seat: &Seat) -> (Route, Response<Body>) {
    match req.uri().path() {
        "/v1/events" if req.method() == Method::POST => {
            (Route::Events, events::receive(app, req, seat).await)
        }
        "/v1/events" => (Route::Events, reply::method_not_allowed("POST")),
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
        "/openapi.json" => (Route::Openapi, with_body(StatusCode::OK, JSON, OPENAPI)),
        "/healthz" => (Route::Healthz, with_body(StatusCode::OK, TEXT, "ok\n")),
        "/readyz" => (Route::Readyz, readyz(app).await),
        _ => (Route::Other, reply::not_found_route()),
    }
}
