//! The embedded store's on-disk encoding of keys and events. Hand-written and versioned so that a
//! record decodes exactly, and a damaged one is a `Corrupt` error, never a panic.
//!
//! Event key (29 bytes): tracking number (13) · `occurred_at` (i64, big-endian, sign bit flipped
//! so byte order is time order) · `received` (u64, big-endian). A parcel's events are therefore
//! one contiguous key range, in time order.
//!
//! Event value: version byte `1` · code (u8 index into `EventCode::ALL`) · event id (u8 length +
//! bytes) · location (u16 length + UTF-8, `0xFFFF` = none) · product (u8 length + UTF-8,
//! `0xFF` = none).

use rempart_domain::{Event, EventCode, EventId, StoredEvent, Timestamp, TrackingNumber};

use crate::StoreError;

pub const KEY_LEN: usize = 13 + 8 + 8;
const VERSION: u8 = 1;
const NONE_U16: u16 = u16::MAX;
const NONE_U8: u8 = u8::MAX;

pub fn event_key(tn: &TrackingNumber, occurred_at: Timestamp, received: u64) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key[..13].copy_from_slice(tn.as_bytes());
    key[13..21].copy_from_slice(&((occurred_at.0 as u64) ^ (1 << 63)).to_be_bytes());
    key[21..].copy_from_slice(&received.to_be_bytes());
    key
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// Splits an event key into its parts.
pub fn decode_key(key: &[u8]) -> Result<(TrackingNumber, Timestamp, u64), StoreError> {
    if key.len() != KEY_LEN {
        return Err(corrupt("event key of the wrong length"));
    }
    let tn = TrackingNumber::from_bytes(&key[..13])
        .map_err(|_| corrupt("bad tracking number in key"))?;
    let at = u64::from_be_bytes(key[13..21].try_into().expect("8 bytes")) ^ (1 << 63);
    let received = u64::from_be_bytes(key[21..].try_into().expect("8 bytes"));
    Ok((tn, Timestamp(at as i64), received))
}

pub fn encode_value(event: &Event) -> Vec<u8> {
    let id = event.event_id.as_str().as_bytes();
    let location = event.location.as_deref().map(str::as_bytes);
    let product = event.product.as_deref().map(str::as_bytes);
    let mut out = Vec::with_capacity(
        5 + id.len() + location.map_or(0, <[u8]>::len) + product.map_or(0, <[u8]>::len),
    );
    out.push(VERSION);
    let code = EventCode::ALL
        .iter()
        .position(|c| *c == event.code)
        .expect("every code is in ALL");
    out.push(code as u8);
    // Domain limits (id ≤ 128 bytes, location ≤ 128 chars, product ≤ 64 chars) fit the widths.
    debug_assert!(id.len() < 256);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    match location {
        Some(l) => {
            debug_assert!(l.len() < NONE_U16 as usize);
            out.extend_from_slice(&(l.len() as u16).to_be_bytes());
            out.extend_from_slice(l);
        }
        None => out.extend_from_slice(&NONE_U16.to_be_bytes()),
    }
    match product {
        Some(p) => {
            debug_assert!(p.len() < NONE_U8 as usize);
            out.push(p.len() as u8);
            out.extend_from_slice(p);
        }
        None => out.push(NONE_U8),
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("truncated event record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StoreError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn text(&mut self, n: usize) -> Result<String, StoreError> {
        std::str::from_utf8(self.take(n)?)
            .map(str::to_owned)
            .map_err(|_| corrupt("text field is not UTF-8"))
    }
}

pub fn decode_event(key: &[u8], value: &[u8]) -> Result<StoredEvent, StoreError> {
    let (tracking_number, occurred_at, received) = decode_key(key)?;
    let mut r = Reader(value);
    if r.u8()? != VERSION {
        return Err(corrupt("unknown event record version"));
    }
    let code = *EventCode::ALL
        .get(r.u8()? as usize)
        .ok_or_else(|| corrupt("unknown event code index"))?;
    let id_len = r.u8()? as usize;
    let event_id = EventId::parse(&r.text(id_len)?).map_err(|_| corrupt("invalid event id"))?;
    let location = match r.u16()? {
        NONE_U16 => None,
        n => Some(r.text(n as usize)?),
    };
    let product = match r.u8()? {
        NONE_U8 => None,
        n => Some(r.text(n as usize)?),
    };
    if !r.0.is_empty() {
        return Err(corrupt("trailing bytes in event record"));
    }
    Ok(StoredEvent {
        event: Event {
            event_id,
            tracking_number,
            code,
            occurred_at,
            location,
            product,
        },
        received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: i64, location: Option<&str>, product: Option<&str>) -> Event {
        Event {
            event_id: EventId::parse("depot-17:000123").unwrap(),
            tracking_number: TrackingNumber::parse("RR123456785FR").unwrap(),
            code: EventCode::Di2,
            occurred_at: Timestamp(at),
            location: location.map(str::to_owned),
            product: product.map(str::to_owned),
        }
    }

    #[test]
    fn events_round_trip_exactly() {
        for e in [
            event(
                1_766_000_000_000_000,
                Some("Paris Nord PFC"),
                Some("colissimo"),
            ),
            event(-5, None, None),
            event(0, Some(""), Some("é".repeat(64).as_str())),
            event(i64::MAX, Some(&"x".repeat(128)), None),
        ] {
            let key = event_key(&e.tracking_number, e.occurred_at, 42);
            let stored = decode_event(&key, &encode_value(&e)).unwrap();
            assert_eq!(stored.event, e);
            assert_eq!(stored.received, 42);
        }
    }

    #[test]
    fn key_order_is_time_order_across_the_sign() {
        let tn = TrackingNumber::parse("RR123456785FR").unwrap();
        let times = [i64::MIN, -1_000, -1, 0, 1, 1_000, i64::MAX];
        let keys: Vec<_> = times
            .iter()
            .map(|t| event_key(&tn, Timestamp(*t), 0))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // Same time: received decides.
        assert!(event_key(&tn, Timestamp(5), 1) < event_key(&tn, Timestamp(5), 2));
    }

    #[test]
    fn damaged_records_are_corrupt_errors_not_panics() {
        let e = event(7, Some("Lyon"), Some("colissimo"));
        let key = event_key(&e.tracking_number, e.occurred_at, 1);
        let value = encode_value(&e);
        for cut in 0..value.len() {
            assert!(matches!(
                decode_event(&key, &value[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
        let mut extra = value.clone();
        extra.push(0);
        assert!(decode_event(&key, &extra).is_err());
        let mut bad_code = value.clone();
        bad_code[1] = 200;
        assert!(decode_event(&key, &bad_code).is_err());
        let mut bad_version = value.clone();
        bad_version[0] = 9;
        assert!(decode_event(&key, &bad_version).is_err());
        assert!(decode_event(&key[..10], &value).is_err());
        let mut bad_tn = key;
        bad_tn[0] = b'1';
        assert!(decode_event(&bad_tn, &value).is_err());
    }
}
