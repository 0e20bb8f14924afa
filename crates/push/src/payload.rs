//! What a webhook delivery says: its JSON body, and the ids a receiver de-duplicates on.
//!
//! ```json
//! {"id":"evt_5f0c…","type":"parcel.status_changed","delivery_id":"dlv_000000000000002a",
//!  "created_at":"2025-12-22T07:02:11Z",
//!  "data":{"tracking_number":"RR123456785FR","status":"out_for_delivery",
//!          "previous_status":"in_transit","is_final":false,
//!          "event":{"code":"MD2","status":"out_for_delivery","label":"Out for delivery",
//!                   "occurred_at":"2025-12-22T06:58:00Z","location":"Paris 15"}}}
//! ```
//!
//! `id` names the change: it derives from the scan event that caused it (a hash, so depots'
//! internal event ids are not disclosed), so it is the same on every retry, every replay and
//! every node. `delivery_id` names this delivery to this endpoint. No personal data.

use rempart_domain::{EventId, ParcelEvent, Status, Timestamp, TrackingNumber};
use rempart_store::push::Delivery;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::signing::hex;

/// The only event type so far.
pub const STATUS_CHANGED: &str = "parcel.status_changed";

/// The public id of the change a scan event caused: `evt_` and 24 hex digits of its SHA-256.
#[must_use]
pub fn event_id(scan_event: &EventId) -> String {
    let digest = Sha256::digest(scan_event.as_str().as_bytes());
    format!("evt_{}", hex(&digest[..12]))
}

#[derive(Serialize)]
struct Body<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    delivery_id: String,
    created_at: Timestamp,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    tracking_number: TrackingNumber,
    status: Status,
    previous_status: Option<Status>,
    is_final: bool,
    event: &'a ParcelEvent,
}

/// The body of a delivery, as bytes (what the signature covers).
#[must_use]
pub fn webhook_body(delivery: &Delivery) -> Vec<u8> {
    let notice = &delivery.notice;
    let event = ParcelEvent {
        code: notice.event.code,
        status: notice.event.code.status(),
        label: notice.event.code.label(),
        occurred_at: notice.event.occurred_at,
        location: notice.event.location.clone(),
    };
    let body = Body {
        id: event_id(&notice.event.event_id),
        kind: STATUS_CHANGED,
        delivery_id: delivery.id.to_string(),
        created_at: delivery.created_at,
        data: Data {
            tracking_number: notice.tracking_number,
            status: notice.status,
            previous_status: notice.previous,
            is_final: notice.is_final,
            event: &event,
        },
    };
    serde_json::to_vec(&body).expect("delivery bodies always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rempart_domain::{Event, EventCode};
    use rempart_store::push::{Channel, DeliveryId, DeliveryState, EndpointId, KeyId, Notice};

    #[test]
    fn the_body_has_the_documented_shape() {
        let t = Timestamp::parse_rfc3339("2025-12-22T07:02:11Z").unwrap();
        let delivery = Delivery {
            id: DeliveryId(42),
            channel: Channel::Webhook {
                owner: KeyId(1),
                endpoint: EndpointId(2),
            },
            notice: Notice {
                tracking_number: TrackingNumber::parse("RR123456785FR").unwrap(),
                previous: Some(Status::InTransit),
                status: Status::OutForDelivery,
                is_final: false,
                event: Event {
                    event_id: EventId::parse("depot-17:000123").unwrap(),
                    tracking_number: TrackingNumber::parse("RR123456785FR").unwrap(),
                    code: EventCode::Md2,
                    occurred_at: Timestamp::parse_rfc3339("2025-12-22T06:58:00Z").unwrap(),
                    location: Some("Paris 15".into()),
                    product: None,
                },
            },
            created_at: t,
            retry_since: t,
            attempts: 0,
            next_attempt_at: t,
            state: DeliveryState::Pending,
            last_error: None,
            lease_token: 1,
        };
        let body = String::from_utf8(webhook_body(&delivery)).unwrap();
        let id = event_id(&EventId::parse("depot-17:000123").unwrap());
        assert_eq!(
            body,
            format!(
                r#"{{"id":"{id}","type":"parcel.status_changed","delivery_id":"dlv_000000000000002a","created_at":"2025-12-22T07:02:11Z","data":{{"tracking_number":"RR123456785FR","status":"out_for_delivery","previous_status":"in_transit","is_final":false,"event":{{"code":"MD2","status":"out_for_delivery","label":"Out for delivery","occurred_at":"2025-12-22T06:58:00Z","location":"Paris 15"}}}}}}"#
            )
        );
        assert!(!body.contains("depot-17"));
    }

    #[test]
    fn event_ids_are_stable_and_distinct() {
        let a = EventId::parse("depot-17:000123").unwrap();
        let b = EventId::parse("depot-17:000124").unwrap();
        assert_eq!(event_id(&a), event_id(&a));
        assert_ne!(event_id(&a), event_id(&b));
        assert_eq!(event_id(&a).len(), 4 + 24);
    }
}
