//! The change-feed poller: on a shared database, learns which parcels other nodes changed and
//! applies the coherence rule to them ([`super::Coherence::parcels_changed`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rempart_domain::TrackingNumber;
use rempart_store::{ChangeCursor, Changes, EventStore};
use tokio::sync::watch;

use super::Coherence;
use crate::guard::Guard;

/// Parcel versions a node remembers having handled from the change feed.
pub const HANDLED_VERSIONS: usize = 200_000;
/// Most tracking numbers taken from a change feed per poll.
pub const CHANGE_FEED_PAGE: usize = 10_000;

/// Polls `store`'s change feed every `every` until `stop`.
pub async fn poll_changes(
    store: Arc<dyn EventStore>,
    coherence: Arc<Coherence>,
    guard: Arc<Guard>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = ChangeCursor::default();
    let mut handled: HashMap<TrackingNumber, u64> = HashMap::new();
    let mut first = true;
    loop {
        match store.changes_since(cursor, CHANGE_FEED_PAGE).await {
            Ok(changes) => {
                // The first poll only positions the cursor: the cache starts empty.
                if !first {
                    apply(&coherence, &guard, &changes, &mut handled);
                }
                first = false;
                cursor = changes.next;
                if coherence.feed.succeeded() {
                    tracing::info!("change feed readable again; cached parcels are fresh");
                }
            }
            Err(e) => {
                // Log the transition, not every failed poll.
                if coherence.feed.failed() {
                    tracing::warn!(error = %e, "change feed unavailable; cached parcels may be stale");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Applies one page of changes. The feed re-reports recent changes; each parcel version is
/// acted on once.
fn apply(
    coherence: &Coherence,
    guard: &Guard,
    changes: &Changes,
    handled: &mut HashMap<TrackingNumber, u64>,
) {
    if !changes.complete {
        tracing::info!("more parcels changed elsewhere than a page holds; clearing the cache");
        coherence.everything_changed(guard);
        return;
    }
    let fresh: Vec<TrackingNumber> = changes
        .numbers
        .iter()
        .filter(|(tn, version)| handled.insert(*tn, *version) != Some(*version))
        .map(|(tn, _)| *tn)
        .collect();
    if handled.len() > HANDLED_VERSIONS {
        // Bounded: forgetting costs at most one more invalidation per parcel.
        handled.clear();
    }
    coherence.parcels_changed(guard, &fresh, true);
}
