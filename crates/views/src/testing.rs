//! Parcel views for the tests of this crate.

use rempart_domain::{
    Event, EventCode, EventId, ParcelView, StoredEvent, Timestamp, TrackingNumber,
};

/// The caller's clock in tests: Tuesday 23 December 2025, 11:00 in Paris.
pub(crate) const NOW: Timestamp = Timestamp(1_766_484_000_000_000);

pub(crate) fn tn() -> TrackingNumber {
    TrackingNumber::parse("6A12345678905").expect("valid")
}

/// A view of `tn()` whose events have `codes`, oldest first, three hours apart from Saturday
/// 20 December 2025 08:00 Paris time, each at "Site k" (DR1 has no place), all Colissimo.
pub(crate) fn view(codes: &[&str]) -> ParcelView {
    let start = Timestamp::parse_rfc3339("2025-12-20T07:00:00Z")
        .expect("valid")
        .0;
    let events = codes
        .iter()
        .enumerate()
        .map(|(k, code)| {
            let code = EventCode::parse(code).expect("known code");
            StoredEvent {
                event: Event {
                    event_id: EventId::parse(&format!("t:{k}")).expect("valid"),
                    tracking_number: tn(),
                    code,
                    occurred_at: Timestamp(start + k as i64 * 3 * 3600 * 1_000_000),
                    location: (code != EventCode::Dr1).then(|| format!("Site {k}")),
                    product: Some("colissimo".into()),
                },
                received: k as u64,
            }
        })
        .collect();
    ParcelView::build(tn(), events).expect("at least one event")
}
