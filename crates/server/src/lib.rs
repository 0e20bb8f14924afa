//! The Rempart node: two HTTP listeners over one [`EventStore`](rempart_store::EventStore).
//! The binary resolves [`Settings`], opens the store and calls [`run`].
//!
//! Where things are (ARCHITECTURE.md has the map and where to start reading):
//!
//! | module | what |
//! |---|---|
//! | [`node`] | wiring, background tasks, graceful shutdown |
//! | `runtimes` | the three runtimes (ingest, public priority, public open) and their threads' scheduling |
//! | [`settings`] | every setting, defined once, typed, grouped by the part that uses it |
//! | [`listener`] | the accept loop: connection caps, per-source caps, drain |
//! | [`edge`] | the public listener's HTTP/1.1: framing, [`edge::Response`], the connection loop |
//! | [`public`] | the public routes: lookups (admission → cache → storage), Suivi v2, pages (written by `rempart-views`), caching headers, challenges |
//! | [`ingest`] | the ingest listener: batches to the fsync, metrics and ops routes |
//! | [`guard`] | the shield glue: one call per admission step, nothing when the shield is off |
//! | [`coherence`] | the response cache and the rule that keeps it true after a change |
//! | [`app`] | the state both listeners share |
//! | [`metrics`], [`ops`] | Prometheus counters, the live operations page |
//! | [`tokens`], [`demo`] | ingest tokens, demo data |
//! | [`push`] | webhooks and e-mail alerts wired in: API keys, the subscription API, the opt-in pages, the dispatcher's tasks |
//! | [`import`] | `rempart import`: NDJSON event lines into the store, ingest's rules without HTTP |

pub mod app;
pub mod clock;
pub mod coherence;
pub mod content;
pub mod demo;
pub mod edge;
pub mod guard;
pub mod import;
pub mod ingest;
mod labels;
pub mod listener;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod public;
pub mod push;
mod runtimes;
pub mod settings;
pub mod tokens;

pub use node::{PUBLIC_NICE, ServeError, StoreOpener, Stores, init_logging, run};
pub use settings::{ServeArgs, Settings, StoreKind};
