//! The parcel view: what a customer sees, built from a parcel's stored events.

use serde::Serialize;

use crate::{EventCode, Status, StoredEvent, Timestamp, TrackingNumber};

/// Most events a view shows (the newest ones). A parcel has a dozen in practice; the bound keeps
/// a pathological parcel from producing an unbounded response.
pub const MAX_VIEW_EVENTS: usize = 200;

/// One line of a parcel's history, as shown publicly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParcelEvent {
    pub code: &'static str,
    pub status: Status,
    pub label: &'static str,
    pub occurred_at: Timestamp,
    pub location: Option<String>,
}

/// A parcel as the public API shows it (SPEC.md, `GET /v1/parcels/{n}`). Field order is the
/// JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParcelView {
    pub tracking_number: TrackingNumber,
    pub product: Option<String>,
    pub status: Status,
    pub is_final: bool,
    pub last_event_at: Timestamp,
    pub events: Vec<ParcelEvent>,
}

impl ParcelView {
    /// Builds the view from a parcel's events in any order. `None` when there are none.
    ///
    /// Events are shown newest first by `occurred_at`; ties go to the one received last. The
    /// status is that of the newest event; the parcel is final when that event is DI1 or DI2.
    /// The product is the one named by the newest event that names one.
    #[must_use]
    pub fn build(tracking_number: TrackingNumber, mut events: Vec<StoredEvent>) -> Option<Self> {
        events.sort_unstable_by(|a, b| {
            (b.event.occurred_at, b.received).cmp(&(a.event.occurred_at, a.received))
        });
        let latest = events.first()?;
        debug_assert!(
            events
                .iter()
                .all(|e| e.event.tracking_number == tracking_number)
        );
        let code: EventCode = latest.event.code;
        let product = events.iter().find_map(|e| e.event.product.clone());
        let last_event_at = latest.event.occurred_at;
        let events = events
            .into_iter()
            .take(MAX_VIEW_EVENTS)
            .map(|e| ParcelEvent {
                code: e.event.code.as_str(),
                status: e.event.code.status(),
                label: e.event.code.label(),
                occurred_at: e.event.occurred_at,
                location: e.event.location,
            })
            .collect();
        Some(ParcelView {
            tracking_number,
            product,
            status: code.status(),
            is_final: code.is_final(),
            last_event_at,
            events,
        })
    }

    /// The JSON body of `GET /v1/parcels/{n}`.
    #[must_use]
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("parcel views always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventId};

    fn ev(
        id: &str,
        code: EventCode,
        at: &str,
        received: u64,
        product: Option<&str>,
    ) -> StoredEvent {
        StoredEvent {
            event: Event {
                event_id: EventId::parse(id).unwrap(),
                tracking_number: TrackingNumber::parse("RR123456785FR").unwrap(),
                code,
                occurred_at: Timestamp::parse_rfc3339(at).unwrap(),
                location: Some(format!("site {id}")),
                product: product.map(str::to_owned),
            },
            received,
        }
    }

    fn tn() -> TrackingNumber {
        TrackingNumber::parse("RR123456785FR").unwrap()
    }

    #[test]
    fn no_events_no_view() {
        assert!(ParcelView::build(tn(), vec![]).is_none());
    }

    #[test]
    fn out_of_order_events_are_sorted_newest_first() {
        let view = ParcelView::build(
            tn(),
            vec![
                ev("b", EventCode::Et1, "2025-12-21T10:00:00Z", 3, None),
                ev("c", EventCode::Md2, "2025-12-22T08:00:00+01:00", 1, None),
                ev(
                    "a",
                    EventCode::Pc1,
                    "2025-12-20T10:00:00Z",
                    2,
                    Some("colissimo"),
                ),
            ],
        )
        .unwrap();
        let codes: Vec<_> = view.events.iter().map(|e| e.code).collect();
        assert_eq!(codes, ["MD2", "ET1", "PC1"]);
        assert_eq!(view.status, Status::OutForDelivery);
        assert!(!view.is_final);
        assert_eq!(view.last_event_at.to_rfc3339(), "2025-12-22T07:00:00Z");
        assert_eq!(view.product.as_deref(), Some("colissimo"));
    }

    #[test]
    fn ties_go_to_the_latest_received() {
        let at = "2025-12-22T08:00:00Z";
        let view = ParcelView::build(
            tn(),
            vec![
                ev("x", EventCode::Di1, at, 5, None),
                ev("y", EventCode::Nd1, at, 9, None),
            ],
        )
        .unwrap();
        assert_eq!(view.status, Status::AttemptFailed);
        assert!(!view.is_final);
    }

    #[test]
    fn final_after_di1_or_di2() {
        for (code, status) in [
            (EventCode::Di1, Status::Delivered),
            (EventCode::Di2, Status::Returned),
        ] {
            let view = ParcelView::build(
                tn(),
                vec![
                    ev("a", EventCode::Pc1, "2025-12-20T10:00:00Z", 1, None),
                    ev("b", code, "2025-12-21T10:00:00Z", 2, None),
                ],
            )
            .unwrap();
            assert!(view.is_final);
            assert_eq!(view.status, status);
        }
    }

    #[test]
    fn json_has_the_spec_shape() {
        let view = ParcelView::build(
            tn(),
            vec![ev(
                "a",
                EventCode::Et1,
                "2025-12-22T08:14:00Z",
                1,
                Some("colissimo"),
            )],
        )
        .unwrap();
        let json = String::from_utf8(view.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"tracking_number":"RR123456785FR","product":"colissimo","status":"in_transit","is_final":false,"last_event_at":"2025-12-22T08:14:00Z","events":[{"code":"ET1","status":"in_transit","label":"Being processed","occurred_at":"2025-12-22T08:14:00Z","location":"site a"}]}"#
        );
    }

    #[test]
    fn views_are_bounded() {
        let events = (0..MAX_VIEW_EVENTS as u64 + 50)
            .map(|i| {
                let mut e = ev("a", EventCode::Et1, "2025-12-22T08:14:00Z", i, None);
                e.event.occurred_at = Timestamp(e.event.occurred_at.0 + i as i64);
                e
            })
            .collect();
        let view = ParcelView::build(tn(), events).unwrap();
        assert_eq!(view.events.len(), MAX_VIEW_EVENTS);
    }
}
