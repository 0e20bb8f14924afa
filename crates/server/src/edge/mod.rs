//! The public listener's HTTP/1.1, from bytes to bytes: framing, one owned response type, and
//! the connection loop. Nothing here knows about parcels; the public routes plug in through
//! [`Service`].
//!
//! The public side is where floods land, and most of what a flood gets is a refusal: 429, 404
//! from the existence filter, 400. Each refusal is cheap to decide (well under a microsecond);
//! what it costs is the HTTP machinery around it. hyper is general (streaming bodies, chunked
//! encoding, upgrades) and measured 0.57–0.8× nginx's `limit_req` at refusing on one core
//! (BENCHMARKS.md). The public protocol surface is tiny — GET/HEAD of small resources, and two
//! POSTs with bodies under 1 KiB — so it gets this small loop instead: `httparse` for the head,
//! whole requests buffered (bounded), answers encoded into one buffer and written with one
//! `write` per batch of pipelined requests. The ingest listener keeps hyper (`crate::ingest`):
//! bodies of up to 8 MiB, chunked encoding and `Expect: 100-continue` matter there.
//!
//! - `request.rs`: one head → [`Request`] + framing, or a [`Refusal`] (431, 400, 411, 413, 417);
//! - `response.rs`: [`Response`] and its encoding;
//! - `connection.rs`: [`serve_connection`], pipelining, deadlines, lingering close.

mod connection;
mod request;
mod response;

pub use connection::{
    Ended, MAX_ANSWERS_PER_TURN, Next, READ_CHUNK, Service, Setup, Step, serve_connection,
};
pub use request::{
    API_BODY_PREFIX, Framing, MAX_API_BODY, MAX_BODY, Refusal, Request, parse_head, path_of,
};
pub use response::{HeaderText, Response};
