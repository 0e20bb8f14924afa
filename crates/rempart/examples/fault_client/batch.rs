//! The batches the fault client sends, and how a stored event names the batch it came from.
//!
//! Batch `b` of client `c` holds `parcels` parcels of its own, `events` events each. Parcel `p`
//! of it is the domestic number `7` + letter `A + c` + serial `b · parcels + p`; event `e` of it
//! has the `event_id` (and the `location`) `f:<run>:<c>:<b>:<p>:<e>`. So the store's contents
//! alone tell which batch every event belongs to, and an acknowledgement of batch `(c, b)` stands
//! for exactly `parcels · events` event ids.

use rempart_domain::{Event, EventCode, EventId, Timestamp, TrackingNumber};

/// Most clients: one letter of the tracking number each.
pub const MAX_CLIENTS: u64 = 26;
/// Most events per parcel: a public lookup shows at most this many, so every event stays
/// visible to a reader of the public API too.
pub const MAX_EVENTS_PER_PARCEL: u64 = rempart_domain::MAX_VIEW_EVENTS as u64;
/// Most lines in a batch (the ingest API's limit).
pub const MAX_BATCH_EVENTS: u64 = rempart_store::MAX_BATCH_EVENTS as u64;
/// Largest serial a domestic number holds.
const MAX_SERIAL: u64 = 9_999_999_999;
/// The lead digit of every tracking number the fault client makes.
const LEAD: u8 = 7;

/// What every batch of one run looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Tells this run's events from any other's.
    pub run: u64,
    pub parcels: u64,
    pub events: u64,
}

/// Where an event (or a parcel, with `event: 0`) sits in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub client: u64,
    pub batch: u64,
    pub parcel: u64,
    pub event: u64,
}

impl Shape {
    /// Checks the shape fits the ingest API and the numbering.
    pub fn new(run: u64, parcels: u64, events: u64) -> Result<Shape, String> {
        if parcels == 0 || events == 0 || events > MAX_EVENTS_PER_PARCEL {
            return Err(format!(
                "parcels ≥ 1 and 1 ≤ events ≤ {MAX_EVENTS_PER_PARCEL} per parcel"
            ));
        }
        if parcels * events > MAX_BATCH_EVENTS {
            return Err(format!("a batch holds at most {MAX_BATCH_EVENTS} events"));
        }
        Ok(Shape {
            run,
            parcels,
            events,
        })
    }

    pub fn batch_events(&self) -> u64 {
        self.parcels * self.events
    }

    /// Batches one client can send before the serials run out.
    pub fn max_batches(&self) -> u64 {
        (MAX_SERIAL + 1) / self.parcels
    }

    pub fn tracking_number(&self, client: u64, batch: u64, parcel: u64) -> TrackingNumber {
        assert!(client < MAX_CLIENTS && batch < self.max_batches() && parcel < self.parcels);
        let letter = char::from(b'A' + client as u8);
        TrackingNumber::domestic(LEAD, letter, batch * self.parcels + parcel)
            .expect("lead, letter and serial are in range")
    }

    pub fn event_id(&self, place: Place) -> String {
        let Place {
            client,
            batch,
            parcel,
            event,
        } = place;
        format!("f:{}:{client}:{batch}:{parcel}:{event}", self.run)
    }

    /// The NDJSON body of batch `batch` of client `client`.
    pub fn body(&self, client: u64, batch: u64) -> String {
        let mut body = String::with_capacity(self.batch_events() as usize * 190);
        for parcel in 0..self.parcels {
            let tn = self.tracking_number(client, batch, parcel);
            for event in 0..self.events {
                let id = self.event_id(Place {
                    client,
                    batch,
                    parcel,
                    event,
                });
                let occurred_at = Timestamp::parse_rfc3339(&format!(
                    "2025-12-22T{:02}:{:02}:00Z",
                    event / 60,
                    event % 60
                ))
                .expect("valid time");
                let line = Event {
                    event_id: EventId::parse(&id).expect("valid id"),
                    tracking_number: tn,
                    code: EventCode::Et1,
                    occurred_at,
                    location: Some(id.clone()),
                    product: None,
                };
                body.push_str(&line.to_json_line());
                body.push('\n');
            }
        }
        body
    }

    /// The client, batch and parcel a tracking number of this shape stands for.
    pub fn parcel_of(&self, tn: &TrackingNumber) -> Option<Place> {
        let s = tn.as_str().as_bytes();
        if s.len() != 13 || s[0] != b'0' + LEAD || !s[1].is_ascii_uppercase() {
            return None;
        }
        let serial: u64 = std::str::from_utf8(&s[2..12]).ok()?.parse().ok()?;
        Some(Place {
            client: u64::from(s[1] - b'A'),
            batch: serial / self.parcels,
            parcel: serial % self.parcels,
            event: 0,
        })
    }

    /// The place an `event_id` of this run names; `None` for any other id.
    pub fn place_of(&self, id: &str) -> Option<Place> {
        let mut parts = id.strip_prefix("f:")?.split(':');
        let mut next = || parts.next()?.parse::<u64>().ok();
        if next()? != self.run {
            return None;
        }
        let place = Place {
            client: next()?,
            batch: next()?,
            parcel: next()?,
            event: next()?,
        };
        (parts.next().is_none()
            && place.client < MAX_CLIENTS
            && place.parcel < self.parcels
            && place.event < self.events)
            .then_some(place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_names_its_batch_and_parcel() {
        let shape = Shape::new(42, 7, 3).unwrap();
        let body = shape.body(25, 1234);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 21);
        let now = rempart_domain::Timestamp(1_767_000_000_000_000);
        for line in lines {
            let event = rempart_domain::parse_event_line(line.as_bytes(), now).unwrap();
            let place = shape.place_of(event.event_id.as_str()).unwrap();
            assert_eq!((place.client, place.batch), (25, 1234));
            let parcel = shape.parcel_of(&event.tracking_number).unwrap();
            assert_eq!(parcel, Place { event: 0, ..place });
        }
        assert_eq!(shape.place_of("f:41:0:0:0:0"), None);
        assert_eq!(shape.place_of("f:42:0:0:7:0"), None);
        assert_eq!(shape.place_of("f:42:0:0:0:0:0"), None);
        assert!(Shape::new(1, 100, 201).is_err());
        assert!(Shape::new(1, 1000, 11).is_err());
    }
}
