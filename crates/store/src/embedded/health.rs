//! The embedded store's write state, shared by `append` (which refuses at once while writes are
//! failing), the committer (which records failures and recoveries) and the server (through
//! `EventStore::write_health`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::{StoreError, WriteFailure, WriteHealth};

#[derive(Default)]
pub(super) struct Health {
    /// Mirrors `state.failure.is_some()`, read on every append without taking the lock.
    failed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    health: WriteHealth,
    /// What failed first, kept while retries add what they find.
    first_reason: String,
}

impl Health {
    pub(super) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(super) fn snapshot(&self) -> WriteHealth {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .health
            .clone()
    }

    /// Records that writes stopped. Called before any waiter of the failed group is answered,
    /// so a caller that saw its append fail sees the failure here too.
    pub(super) fn fail(&self, reason: String) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.health.failure = Some(WriteFailure {
            reason: reason.clone(),
            since: SystemTime::now(),
        });
        state.first_reason = reason;
        self.failed.store(true, Ordering::Release);
    }

    /// Adds what the latest retry found to the reason, keeping when writes first stopped.
    pub(super) fn still_failing(&self, latest: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let reason = format!("{}; retry: {latest}", state.first_reason);
        if let Some(failure) = state.health.failure.as_mut() {
            failure.reason = reason;
        }
    }

    pub(super) fn recovered(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.health.failure = None;
        state.health.recoveries += 1;
        self.failed.store(false, Ordering::Release);
    }

    /// The refusal for an append while writes are failing.
    pub(super) fn refusal(&self) -> StoreError {
        let reason = self
            .snapshot()
            .failure
            .map_or_else(|| "a write error".to_owned(), |f| f.reason);
        StoreError::Unavailable(format!(
            "the embedded store is not taking writes ({reason}); it retries by itself, send the batch again later"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_visible_until_recovery_and_recoveries_are_counted() {
        let health = Health::default();
        assert!(!health.is_failed());
        assert_eq!(health.snapshot(), WriteHealth::default());
        health.fail("fsync failed: No space left on device".into());
        assert!(health.is_failed());
        let failure = health.snapshot().failure.expect("failed");
        assert!(failure.reason.contains("No space left"));
        health.still_failing("probe: Permission denied");
        health.still_failing("probe: Permission denied again");
        let again = health.snapshot().failure.expect("still failed");
        assert_eq!(again.since, failure.since, "the failure keeps its start");
        assert_eq!(
            again.reason,
            "fsync failed: No space left on device; retry: probe: Permission denied again"
        );
        match health.refusal() {
            StoreError::Unavailable(m) => assert!(m.contains("Permission denied"), "{m}"),
            other => panic!("{other:?}"),
        }
        health.recovered();
        assert!(!health.is_failed());
        assert_eq!(
            health.snapshot(),
            WriteHealth {
                failure: None,
                recoveries: 1
            }
        );
    }
}
