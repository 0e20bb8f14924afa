//! Push notifications: merchants' webhooks and customers' e-mail alerts, sent from the durable
//! outbox the store writes in the same commit as the events (`rempart_store::push`).
//!
//! - [`signing`]: HMAC-SHA256 signatures over a timestamp and the raw body, the receiver's
//!   [`signing::verify`], and the master keys that derive endpoints' secrets;
//! - [`url`] and [`ssrf`]: a strict webhook URL parser and the address policy (no loopback,
//!   private, link-local, metadata… unless allow-listed; resolved once, connected to as checked);
//! - [`client`]: the HTTP client (hyper over tokio, rustls): no redirects, bounded bodies,
//!   timeouts;
//! - [`smtp`] and [`mail`]: a small SMTP client for one relay, and the French and English
//!   messages of the double opt-in and of status changes;
//! - [`backoff`], [`breaker`], [`dispatch`]: the dispatcher that leases due deliveries, one lane
//!   per target with its own concurrency limit and circuit breaker, retries with exponential
//!   backoff and full jitter for at least 24 hours, then parks in the dead letters;
//! - [`payload`]: the JSON a webhook carries; [`metrics`]: counters and their Prometheus text.
//!
//! The store's side (the [`rempart_store::push::PushStore`] trait) has no backend yet: this
//! crate's tests run the dispatcher against an in-memory implementation of their own.

pub mod backoff;
pub mod breaker;
pub mod client;
pub mod dispatch;
pub mod mail;
pub mod metrics;
pub mod payload;
pub mod signing;
pub mod smtp;
pub mod ssrf;
pub mod url;

pub use client::{ClientConfig, SendError, WebhookClient};
pub use dispatch::{DispatchConfig, Dispatcher};
pub use metrics::PushMetrics;
pub use signing::{MasterKeys, SigningSecret, verify};
