//! The depot's local HTTP endpoint for scanner software, on loopback only:
//! `POST /v1/events` (NDJSON like the ingest API, `event_id` optional; `200 {"spooled":N}` only
//! after fsync, `400` with the first bad line and nothing spooled), `GET /status`, `GET /metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::Depot;

/// Largest request body (as the ingest API).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Most lines per request (as the ingest API).
pub const MAX_LINES: usize = 10_000;
/// Most open connections to the endpoint.
pub const MAX_CONNECTIONS: usize = 256;

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({ "error": code, "message": message }),
    )
}

async fn handle(depot: Arc<Depot>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/events") => events(&depot, req).await,
        (&Method::GET, "/status") => json(StatusCode::OK, depot.status().await),
        (&Method::GET, "/metrics") => {
            let mut resp = Response::new(Full::new(Bytes::from(depot.metrics().await)));
            resp.headers_mut().insert(
                "content-type",
                "text/plain; version=0.0.4".parse().expect("static"),
            );
            resp
        }
        (_, "/v1/events" | "/status" | "/metrics") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "wrong method",
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

async fn events(depot: &Depot, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "at most 8 MiB",
            );
        }
    };
    let mut lines = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if lines.len() == MAX_LINES {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "at most 10000 lines",
            );
        }
        match crate::entry::ndjson(line, &depot.depot_id, crate::now()) {
            Ok((_, spooled)) => lines.push(spooled),
            Err(e) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "invalid_event", "line": i + 1, "message": e.to_string()}),
                );
            }
        }
    }
    match depot.spool(&lines).await {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({ "spooled": lines.len() }),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "spool_unavailable", &e),
    }
}

/// Serves the endpoint on `listener` forever.
pub async fn serve(listener: tokio::net::TcpListener, depot: Arc<Depot>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let depot = depot.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let depot = depot.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(depot, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// Refuses any listen address that is not loopback: the endpoint has no authentication.
pub fn check_loopback(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--listen {addr}: the depot's endpoint has no authentication and only listens on loopback (127.0.0.0/8, ::1)"
        ))
    }
}
