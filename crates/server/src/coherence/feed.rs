//! The change-feed poller: on a shared database, learns which parcels other nodes changed and
//! applies the coherence rule to them ([`super::Coherence::parcels_changed`]).

use std::sync::Arc;
use std::time::Duration;

use rempart_store::{ChangeCursor, Changes, EventStore};
use tokio::sync::watch;

use super::Coherence;
use crate::guard::Guard;

/// Most changes read from a change feed per call.
pub const CHANGE_FEED_PAGE: usize = 10_000;
/// Most calls per poll when the feed has more: past it, the rest waits for the next poll (the
/// node falls behind rather than spending its time on the feed).
pub const CHANGE_FEED_PAGES_PER_POLL: usize = 50;

/// Polls `store`'s change feed from `cursor` (a fresh one, or one resumed from the filter's
/// snapshot) every `every` until `stop`.
pub async fn poll_changes(
    store: Arc<dyn EventStore>,
    coherence: Arc<Coherence>,
    guard: Arc<Guard>,
    every: Duration,
    mut cursor: ChangeCursor,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for _ in 0..CHANGE_FEED_PAGES_PER_POLL {
            match store.changes_since(&cursor, CHANGE_FEED_PAGE).await {
                Ok(changes) => {
                    apply(&coherence, &guard, &changes);
                    cursor = changes.next;
                    coherence
                        .feed
                        .applied(&cursor, changes.complete, !changes.more);
                    if coherence.feed.succeeded() {
                        tracing::info!("change feed readable again; cached parcels are fresh");
                    }
                    if !changes.more {
                        break;
                    }
                }
                Err(e) => {
                    // Log the transition, not every failed poll.
                    if coherence.feed.failed() {
                        tracing::warn!(error = %e, "change feed unavailable; cached parcels may be stale");
                    }
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Applies one page of changes (a fresh cursor's first page may name parcels changed shortly
/// before it: harmless, the cache starts empty and the filter learns numbers it may know).
fn apply(coherence: &Coherence, guard: &Guard, changes: &Changes) {
    if !changes.complete {
        tracing::info!("the change feed gave up following some changes; clearing the cache");
        coherence.everything_changed(guard);
        return;
    }
    coherence.parcels_changed(guard, &changes.numbers, true);
}
