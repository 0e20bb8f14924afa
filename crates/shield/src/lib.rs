//! The shield: admission control in front of the public listener, each layer cheaper than the one
//! after it, every structure bounded in memory whatever the number of sources.
//!
//! | layer | type | refuses with |
//! |---|---|---|
//! | per-source connection cap | [`SourceConnections`] | connection closed |
//! | existence filter | [`ExistenceFilter`] | 404 without storage |
//! | per-source and per-prefix rate limits | [`RateLimiter`] | 429 + `Retry-After` |
//! | adaptive, prioritised storage concurrency | [`ConcurrencyLimiter`] | 503 + `Retry-After` |
//! | attack mode and proof-of-work passes | [`AttackDetector`], [`Challenges`] | 403 `challenge_required` |
//!
//! The crate knows nothing of parcels: it is handed source addresses and 13-byte keys.
//! Route and number validation, the connection cap and the response cache live in the server.

mod attack;
mod challenge;
mod concurrency;
mod conns;
mod filter;
mod limiter;
mod recent;
mod snapshot;
mod topk;

pub use attack::{AttackDetector, AttackMode, AttackSettings, Cause, Window};
pub use challenge::{Challenge, ChallengeError, Challenges, leading_zero_bits, solve};
pub use concurrency::{ConcurrencyLimiter, MIN_RESERVED, Permit, Priority};
pub use conns::{ConnectionGuard, SourceConnections};
pub use filter::{Built, DEFAULT_MAX_RECENT, ExistenceFilter, Verdict};
pub use limiter::{Decision, RateLimiter, canonical, prefix_of};
pub use snapshot::{SNAPSHOT_VERSION, SnapshotError, SnapshotMeta};
pub use topk::RefusedPrefixes;
