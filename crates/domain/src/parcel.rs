//! The parcel view: what a customer sees, built from a parcel's stored events.

use serde::Serialize;

use crate::{EventCode, Status, StoredEvent, Timestamp, TrackingNumber};

/// Most events a view shows (the newest ones). A parcel has a dozen in practice; the bound keeps
/// a pathological parcel from producing an unbounded response. A view that is cut says so
/// (`events_truncated`, `events_total`).
pub const MAX_VIEW_EVENTS: usize = 200;

/// One line of a parcel's history, as shown publicly. `code` is written as its three letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParcelEvent {
    #[serde(serialize_with = "code_as_str")]
    pub code: EventCode,
    pub status: Status,
    pub label: &'static str,
    pub occurred_at: Timestamp,
    pub location: Option<String>,
}

fn code_as_str<S: serde::Serializer>(code: &EventCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

/// A parcel as the public API shows it (docs/api.md, `GET /v1/parcels/{n}`). Field order is the
/// JSON order.
///
/// `events` holds at most [`MAX_VIEW_EVENTS`], the newest. `events_total` is how many events the
/// view was built from and `events_truncated` whether `events` holds fewer. A store hands over at
/// most its own bound of events per parcel (1,000 for both backends), so past that bound the total
/// counts what was read, not every event ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParcelView {
    pub tracking_number: TrackingNumber,
    pub product: Option<String>,
    pub status: Status,
    pub is_final: bool,
    pub last_event_at: Timestamp,
    pub events: Vec<ParcelEvent>,
    pub events_truncated: bool,
    pub events_total: usize,
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
        let events_total = events.len();
        let events: Vec<ParcelEvent> = events
            .into_iter()
            .take(MAX_VIEW_EVENTS)
            .map(|e| ParcelEvent {
                code: e.event.code,
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
            events_truncated: events.len() < events_total,
            events_total,
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
        let codes: Vec<_> = view.events.iter().map(|e| e.code.as_str()).collect();
        assert_eq!(codes, ["MD2", "ET1", "PC1"]);
        assert!(!view.events_truncated);
        assert_eq!(view.events_total, 3);
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
            r#"{"tracking_number":"RR123456785FR","product":"colissimo","status":"in_transit","is_final":false,"last_event_at":"2025-12-22T08:14:00Z","events":[{"code":"ET1","status":"in_transit","label":"Being processed","occurred_at":"2025-12-22T08:14:00Z","location":"site a"}],"events_truncated":false,"events_total":1}"#
        );
    }

    /// `n` ET1 events one microsecond apart, received in order.
    fn numbered_events(n: usize) -> Vec<StoredEvent> {
        (0..n as u64)
            .map(|i| {
                let mut e = ev("a", EventCode::Et1, "2025-12-22T08:14:00Z", i, None);
                e.event.occurred_at = Timestamp(e.event.occurred_at.0 + i as i64);
                e
            })
            .collect()
    }

    #[test]
    fn views_are_bounded() {
        let events = numbered_events(MAX_VIEW_EVENTS + 50);
        let view = ParcelView::build(tn(), events).unwrap();
        assert_eq!(view.events.len(), MAX_VIEW_EVENTS);
        assert!(view.events_truncated);
        assert_eq!(view.events_total, MAX_VIEW_EVENTS + 50);
        // The newest are kept.
        assert!(
            view.events
                .iter()
                .all(|e| e.occurred_at.0 >= view.events[0].occurred_at.0 - 199)
        );
        let json: serde_json::Value = serde_json::from_slice(&view.to_json()).unwrap();
        assert_eq!(json["events_truncated"], true);
        assert_eq!(json["events_total"], MAX_VIEW_EVENTS + 50);
        assert_eq!(json["events"].as_array().unwrap().len(), MAX_VIEW_EVENTS);
    }

    #[test]
    fn a_view_exactly_at_the_bound_is_not_truncated() {
        let events = numbered_events(MAX_VIEW_EVENTS);
        let view = ParcelView::build(tn(), events).unwrap();
        assert_eq!(view.events.len(), MAX_VIEW_EVENTS);
        assert!(!view.events_truncated);
        assert_eq!(view.events_total, MAX_VIEW_EVENTS);
    }
}
