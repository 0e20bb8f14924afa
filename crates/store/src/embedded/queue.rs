//! The write queue's memory bound: the bytes of batches waiting for the committer or being
//! written, estimated from their contents, reserved by `append` and given back once the batch is
//! answered.

use std::sync::atomic::{AtomicU64, Ordering};

use rempart_domain::Event;

/// The bytes of batches waiting for the committer or being written.
#[derive(Default)]
pub(super) struct QueueGauge {
    bytes: AtomicU64,
}

impl QueueGauge {
    /// Takes `bytes` of the bound, or refuses when the queue holds something and the batch
    /// would take it over the bound.
    pub(super) fn reserve(&self, bytes: u64, bound: u64) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now == 0 || now + bytes <= bound).then_some(now + bytes)
            })
            .is_ok()
    }

    pub(super) fn release(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }
}

/// Estimated bytes a batch holds in memory.
pub(super) fn batch_bytes(batch: &[Event]) -> u64 {
    let heap: usize = batch
        .iter()
        .map(|e| {
            e.event_id.as_str().len()
                + e.location.as_ref().map_or(0, String::len)
                + e.product.as_ref().map_or(0, String::len)
        })
        .sum();
    (heap + std::mem::size_of_val(batch)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rempart_domain::{EventCode, EventId, Timestamp, TrackingNumber};

    #[test]
    fn the_queue_gauge_refuses_beyond_its_bound_but_always_takes_one_batch() {
        let gauge = QueueGauge::default();
        assert!(gauge.reserve(500, 100), "an empty queue takes any batch");
        assert!(!gauge.reserve(1, 100));
        gauge.release(500);
        assert!(gauge.reserve(60, 100));
        assert!(gauge.reserve(40, 100));
        assert!(!gauge.reserve(1, 100));
        assert_eq!(gauge.bytes(), 100);
    }

    #[test]
    fn a_batch_counts_its_strings_and_its_events() {
        let event = Event {
            event_id: EventId::parse("depot-7:123456").expect("valid id"),
            tracking_number: TrackingNumber::domestic(6, 'A', 1_000_000_001).expect("valid"),
            code: EventCode::Et1,
            occurred_at: Timestamp(0),
            location: Some("Lyon Corbas PFC".into()),
            product: None,
        };
        let one = batch_bytes(std::slice::from_ref(&event));
        let strings = "depot-7:123456".len() + "Lyon Corbas PFC".len();
        assert_eq!(one, (std::mem::size_of::<Event>() + strings) as u64);
        assert_eq!(batch_bytes(&[event.clone(), event]), 2 * one);
    }
}
