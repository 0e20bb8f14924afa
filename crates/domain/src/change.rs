//! Which ingested events change a parcel's status: the rule push notifications follow.
//!
//! A parcel's observable state is its status and whether it is final, both taken from its latest
//! event by `occurred_at`, ties going to the one received last (SPEC, "Event vocabulary"). Per
//! parcel, the state before a batch is compared with the state after it; when they differ, the
//! batch changed the parcel and the event now latest is the cause. So:
//! - at most one change per parcel per batch: PC1, ET1 and MD2 of one parcel in one batch notify
//!   once, from the state before the batch to "out for delivery";
//! - a late event (older than the parcel's latest) changes nothing;
//! - a new event with the same state changes nothing (ET1 then ET3: both in transit);
//! - finality counts: RE1 then DI2 are both "returned", but DI2 makes the parcel final;
//! - a parcel's first event is a change from nothing.
//!
//! [`StatusTracker`] applies the rule to consecutive batches of one commit (a group commit writes
//! several batches at once; each is compared with the state the previous one left). It is pure:
//! the store seeds it with each watched parcel's latest event before the commit and calls
//! [`StatusTracker::apply`] inside the commit. Parcels it was not seeded with are ignored, so a
//! store only pays for the parcels someone subscribed to.

use std::collections::HashMap;

use crate::{EventCode, Status, StoredEvent, Timestamp, TrackingNumber};

/// What decides a parcel's state: its latest event's time, reception order and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub occurred_at: Timestamp,
    pub received: u64,
    pub code: EventCode,
}

impl Latest {
    #[must_use]
    pub fn of(event: &StoredEvent) -> Self {
        Latest {
            occurred_at: event.event.occurred_at,
            received: event.received,
            code: event.event.code,
        }
    }

    /// The order of "latest": by `occurred_at`, then by reception.
    fn rank(&self) -> (Timestamp, u64) {
        (self.occurred_at, self.received)
    }

    #[must_use]
    pub fn state(&self) -> ParcelState {
        ParcelState {
            status: self.code.status(),
            is_final: self.code.is_final(),
        }
    }
}

/// What a customer sees change: the status and whether it is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParcelState {
    pub status: Status,
    pub is_final: bool,
}

/// One parcel whose state a batch changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange<'a> {
    pub tracking_number: TrackingNumber,
    /// The state before the batch; `None` when the parcel had no event.
    pub before: Option<ParcelState>,
    pub after: ParcelState,
    /// The batch's event that is now the parcel's latest.
    pub cause: &'a StoredEvent,
}

/// The latest event of each watched parcel, carried across the batches of one commit.
///
/// Its size is the number of parcels seeded, which the caller bounds (the parcels of one commit).
#[derive(Debug, Default, Clone)]
pub struct StatusTracker {
    latest: HashMap<TrackingNumber, Option<Latest>>,
}

impl StatusTracker {
    #[must_use]
    pub fn new() -> Self {
        StatusTracker::default()
    }

    /// Watches a parcel whose latest stored event is `latest` (`None`: no event yet). Seeding a
    /// parcel again replaces what the tracker knew.
    pub fn seed(&mut self, tracking_number: TrackingNumber, latest: Option<Latest>) {
        self.latest.insert(tracking_number, latest);
    }

    #[must_use]
    pub fn is_watched(&self, tracking_number: &TrackingNumber) -> bool {
        self.latest.contains_key(tracking_number)
    }

    /// How many parcels are watched.
    #[must_use]
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Applies one batch of newly accepted events (each with its own `received` number; duplicates
    /// already removed) and returns the watched parcels whose state it changed, in the order of
    /// their first event in the batch. Events of parcels not watched are ignored.
    pub fn apply<'a>(&mut self, batch: &'a [StoredEvent]) -> Vec<StatusChange<'a>> {
        // Per touched parcel: its state before the batch and the batch event now latest, if any.
        let mut touched: Vec<(TrackingNumber, Option<Latest>, Option<&'a StoredEvent>)> =
            Vec::new();
        let mut position: HashMap<TrackingNumber, usize> = HashMap::new();
        for event in batch {
            let tn = event.event.tracking_number;
            let Some(slot) = self.latest.get_mut(&tn) else {
                continue;
            };
            let index = *position.entry(tn).or_insert_with(|| {
                touched.push((tn, *slot, None));
                touched.len() - 1
            });
            let candidate = Latest::of(event);
            if slot.is_none_or(|current| candidate.rank() > current.rank()) {
                *slot = Some(candidate);
                touched[index].2 = Some(event);
            }
        }
        touched
            .into_iter()
            .filter_map(|(tracking_number, before, cause)| {
                let cause = cause?;
                let before = before.map(|l| l.state());
                let after = Latest::of(cause).state();
                (before != Some(after)).then_some(StatusChange {
                    tracking_number,
                    before,
                    after,
                    cause,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventId, ParcelView};
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000_000;
    const T0: i64 = 1_766_000_000_000_000;

    fn tn(serial: u32) -> TrackingNumber {
        TrackingNumber::s10("RR", serial, "FR").unwrap()
    }

    fn ev(parcel: u32, code: EventCode, day: i64, received: u64) -> StoredEvent {
        StoredEvent {
            event: Event {
                event_id: EventId::parse(&format!("e{received}")).unwrap(),
                tracking_number: tn(parcel),
                code,
                occurred_at: Timestamp(T0 + day * DAY),
                location: None,
                product: None,
            },
            received,
        }
    }

    fn state(code: EventCode) -> ParcelState {
        ParcelState {
            status: code.status(),
            is_final: code.is_final(),
        }
    }

    fn tracker_with(parcel: u32, latest: Option<&StoredEvent>) -> StatusTracker {
        let mut t = StatusTracker::new();
        t.seed(tn(parcel), latest.map(Latest::of));
        t
    }

    #[test]
    fn a_first_event_is_a_change_from_nothing() {
        let batch = [ev(1, EventCode::Dr1, 0, 1)];
        let changes = tracker_with(1, None).apply(&batch);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].before, None);
        assert_eq!(changes[0].after, state(EventCode::Dr1));
        assert_eq!(changes[0].cause, &batch[0]);
    }

    #[test]
    fn several_events_of_one_parcel_in_a_batch_notify_once_with_the_newest() {
        let old = ev(1, EventCode::Dr1, 0, 1);
        let batch = [
            ev(1, EventCode::Pc1, 1, 2),
            ev(1, EventCode::Md2, 3, 3),
            ev(1, EventCode::Et1, 2, 4),
        ];
        let changes = tracker_with(1, Some(&old)).apply(&batch);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].before, Some(state(EventCode::Dr1)));
        assert_eq!(changes[0].after, state(EventCode::Md2));
        assert_eq!(changes[0].cause, &batch[1]);
    }

    #[test]
    fn a_late_event_changes_nothing() {
        let old = ev(1, EventCode::Md2, 5, 1);
        let batch = [ev(1, EventCode::Pc1, 1, 2)];
        assert!(tracker_with(1, Some(&old)).apply(&batch).is_empty());
    }

    #[test]
    fn the_same_status_again_changes_nothing() {
        let old = ev(1, EventCode::Et1, 0, 1);
        let batch = [ev(1, EventCode::Et3, 1, 2)];
        assert!(tracker_with(1, Some(&old)).apply(&batch).is_empty());
    }

    #[test]
    fn going_back_to_the_status_before_the_batch_is_no_change() {
        let old = ev(1, EventCode::Et1, 0, 1);
        let batch = [ev(1, EventCode::Pb1, 1, 2), ev(1, EventCode::Pb2, 2, 3)];
        assert!(tracker_with(1, Some(&old)).apply(&batch).is_empty());
    }

    #[test]
    fn becoming_final_with_the_same_status_is_a_change() {
        let old = ev(1, EventCode::Re1, 0, 1);
        let batch = [ev(1, EventCode::Di2, 1, 2)];
        let changes = tracker_with(1, Some(&old)).apply(&batch);
        assert_eq!(changes.len(), 1);
        assert!(changes[0].after.is_final);
        assert_eq!(changes[0].before.map(|s| s.status), Some(Status::Returned));
    }

    #[test]
    fn ties_on_time_go_to_the_event_received_last() {
        let old = ev(1, EventCode::Md2, 1, 1);
        // Same instant, received later: it wins and changes the status.
        let batch = [ev(1, EventCode::Di1, 1, 2)];
        let changes = tracker_with(1, Some(&old)).apply(&batch);
        assert_eq!(changes[0].after, state(EventCode::Di1));
        // Same instant, but the stored event was received later: the batch changes nothing.
        let stored = ev(1, EventCode::Md2, 1, 9);
        let batch = [ev(1, EventCode::Di1, 1, 5)];
        assert!(tracker_with(1, Some(&stored)).apply(&batch).is_empty());
    }

    #[test]
    fn unwatched_parcels_are_ignored() {
        let batch = [ev(2, EventCode::Pc1, 0, 1), ev(1, EventCode::Pc1, 0, 2)];
        let changes = tracker_with(1, None).apply(&batch);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].tracking_number, tn(1));
    }

    #[test]
    fn consecutive_batches_see_what_the_previous_one_left() {
        let mut tracker = tracker_with(1, None);
        let first = [ev(1, EventCode::Pc1, 0, 1)];
        let second = [ev(1, EventCode::Et1, 1, 2)];
        let third = [ev(1, EventCode::Md2, 2, 3)];
        assert_eq!(tracker.apply(&first).len(), 1);
        assert!(tracker.apply(&second).is_empty());
        let changes = tracker.apply(&third);
        assert_eq!(changes[0].before, Some(state(EventCode::Et1)));
    }

    #[test]
    fn changes_come_in_the_order_of_each_parcel_first_event() {
        let mut tracker = StatusTracker::new();
        for p in [1, 2, 3] {
            tracker.seed(tn(p), None);
        }
        let batch = [
            ev(3, EventCode::Pc1, 0, 1),
            ev(1, EventCode::Pc1, 0, 2),
            ev(3, EventCode::Md2, 1, 3),
            ev(2, EventCode::Pc1, 0, 4),
        ];
        let order: Vec<_> = tracker
            .apply(&batch)
            .iter()
            .map(|c| c.tracking_number)
            .collect();
        assert_eq!(order, [tn(3), tn(1), tn(2)]);
    }

    /// The state the parcel view shows, from all of a parcel's events.
    fn view_state(events: &[StoredEvent]) -> Option<ParcelState> {
        let view = ParcelView::build(tn(1), events.to_vec())?;
        Some(ParcelState {
            status: view.status,
            is_final: view.is_final,
        })
    }

    fn arbitrary_events(len: usize) -> impl Strategy<Value = Vec<(usize, i64)>> {
        prop::collection::vec((0..EventCode::ALL.len(), 0i64..4), 0..len)
    }

    proptest! {
        /// Whatever the events, the tracker reports a change exactly when the parcel view's
        /// status or finality differs before and after the batch.
        #[test]
        fn agrees_with_the_parcel_view(stored in arbitrary_events(6), batch in arbitrary_events(6)) {
            let mut received = 0;
            let mut make = |list: &[(usize, i64)]| -> Vec<StoredEvent> {
                list.iter().map(|&(c, day)| {
                    received += 1;
                    ev(1, EventCode::ALL[c], day, received)
                }).collect()
            };
            let stored = make(&stored);
            let batch = make(&batch);
            let before = view_state(&stored);
            let all: Vec<StoredEvent> = stored.iter().chain(&batch).cloned().collect();
            let after = view_state(&all);
            let latest = stored.iter().map(Latest::of).max_by_key(Latest::rank);
            let mut tracker = StatusTracker::new();
            tracker.seed(tn(1), latest);
            let changes = tracker.apply(&batch);
            prop_assert_eq!(changes.len(), usize::from(before != after));
            if let Some(change) = changes.first() {
                prop_assert_eq!(Some(change.after), after);
                prop_assert_eq!(change.before, before);
            }
        }
    }
}
