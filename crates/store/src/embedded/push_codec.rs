//! The embedded store's encoding of push records, all in the `push` keyspace, each kind under a
//! tag byte so that one kind is one contiguous key range:
//!
//! | tag | key after the tag | value |
//! |---|---|---|
//! | `e` | endpoint id | owner · key version · salt · created · URL |
//! | `E` | owner · endpoint id | — (a key's endpoints) |
//! | `S` | tracking number · owner · endpoint id | created (a parcel's subscriptions) |
//! | `K` | owner · tracking number · endpoint id | created (a key's subscriptions, in order) |
//! | `n` | owner | how many subscriptions the key holds |
//! | `m` | tracking number | e-mail subscription |
//! | `t` | token digest | tracking number (pending e-mail requests) |
//! | `d` | delivery id | delivery |
//! | `u` | due time · delivery id | — (pending and leased deliveries, by when they are due) |
//! | `o` | delivery id | — (pending and leased deliveries, oldest first) |
//! | `x` | delivery id | owner (`u64::MAX` for e-mail) · parked at (dead letters) |
//! | `f` | delivered at · delivery id | — (delivered rows, oldest first) |
//! | `w` | owner · delivery id | — (a key's webhook deliveries, for replays) |
//! | `c` | `counters` | the outbox's counters ([`Counters`]) |
//!
//! Integers are big-endian; times have their sign bit flipped so byte order is time order. A
//! record that does not decode is a `Corrupt` error, never a panic.

use rempart_domain::{Status, Timestamp, TrackingNumber};

use crate::StoreError;
use crate::codec;
use crate::push::{
    Channel, Delivery, DeliveryId, DeliveryState, EmailAddress, EmailState, EmailSubscription,
    Endpoint, EndpointId, KeyId, Lang, Notice, SALT_LEN, SecretRef,
};

pub(super) const ENDPOINT: u8 = b'e';
pub(super) const ENDPOINT_BY_OWNER: u8 = b'E';
pub(super) const SUB_BY_PARCEL: u8 = b'S';
pub(super) const SUB_BY_OWNER: u8 = b'K';
pub(super) const SUB_COUNT: u8 = b'n';
pub(super) const EMAIL: u8 = b'm';
pub(super) const TOKEN: u8 = b't';
pub(super) const DELIVERY: u8 = b'd';
pub(super) const DUE: u8 = b'u';
pub(super) const OPEN: u8 = b'o';
pub(super) const DEAD: u8 = b'x';
pub(super) const DONE: u8 = b'f';
pub(super) const BY_OWNER: u8 = b'w';
pub(super) const COUNTERS_KEY: &[u8] = b"ccounters";
/// The owner written in a dead letter's index entry for an e-mail delivery.
pub(super) const NO_OWNER: u64 = u64::MAX;

const VERSION: u8 = 1;
const NONE_U8: u8 = u8::MAX;
const NONE_U16: u16 = u16::MAX;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("push record: {what}"))
}

/// A key: the tag, then the parts.
pub(super) fn key(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    out.push(tag);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

pub(super) fn time_bytes(t: Timestamp) -> [u8; 8] {
    ((t.0 as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(bytes: [u8; 8]) -> Timestamp {
    Timestamp((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

/// The outbox's counters, kept in one record written with every change to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Counters {
    /// The last id given to an endpoint or a delivery.
    pub(super) last_id: u64,
    /// The last lease token handed out.
    pub(super) last_lease: u64,
    /// Pending and leased deliveries.
    pub(super) open: u64,
    pub(super) dead: u64,
    pub(super) delivered: u64,
    pub(super) overflowed: u64,
}

impl Counters {
    const LEN: usize = 6 * 8;

    pub(super) fn encode(&self) -> Vec<u8> {
        [
            self.last_id,
            self.last_lease,
            self.open,
            self.dead,
            self.delivered,
            self.overflowed,
        ]
        .iter()
        .flat_map(|n| n.to_be_bytes())
        .collect()
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Counters, StoreError> {
        if bytes.len() != Self::LEN {
            return Err(corrupt("counters of the wrong length"));
        }
        let n = |i: usize| u64::from_be_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8"));
        Ok(Counters {
            last_id: n(0),
            last_lease: n(1),
            open: n(2),
            dead: n(3),
            delivered: n(4),
            overflowed: n(5),
        })
    }

    pub(super) fn undelivered(&self) -> u64 {
        self.open + self.dead
    }

    /// Moves one delivery from the class of `from` (`None`: a new row) to that of `to` (`None`:
    /// removed).
    pub(super) fn moved(&mut self, from: Option<&DeliveryState>, to: Option<&DeliveryState>) {
        if let Some(from) = from {
            *self.class(from) -= 1;
        }
        if let Some(to) = to {
            *self.class(to) += 1;
        }
    }

    fn class(&mut self, state: &DeliveryState) -> &mut u64 {
        match state {
            DeliveryState::Pending | DeliveryState::Leased { .. } => &mut self.open,
            DeliveryState::Dead { .. } => &mut self.dead,
            DeliveryState::Delivered { .. } => &mut self.delivered,
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn time(&mut self) -> Result<Timestamp, StoreError> {
        Ok(time_from(self.array()?))
    }
    fn text(&mut self, n: usize) -> Result<String, StoreError> {
        std::str::from_utf8(self.take(n)?)
            .map(str::to_owned)
            .map_err(|_| corrupt("text is not UTF-8"))
    }
    fn end(&self) -> Result<(), StoreError> {
        self.0
            .is_empty()
            .then_some(())
            .ok_or(corrupt("trailing bytes"))
    }
}

pub(super) fn read_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let mut r = Reader(bytes);
    let n = r.u64()?;
    r.end()?;
    Ok(n)
}

pub(super) fn read_time(bytes: &[u8]) -> Result<Timestamp, StoreError> {
    let mut r = Reader(bytes);
    let t = r.time()?;
    r.end()?;
    Ok(t)
}

/// The parts of a key after its tag, as a reader (for ids and numbers in index keys).
pub(super) fn key_u64_at(key: &[u8], at: usize) -> Result<u64, StoreError> {
    key.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
        .ok_or(corrupt("short key"))
}

pub(super) fn key_tn_at(key: &[u8], at: usize) -> Result<TrackingNumber, StoreError> {
    key.get(at..at + 13)
        .and_then(|b| TrackingNumber::from_bytes(b).ok())
        .ok_or(corrupt("tracking number in key"))
}

pub(super) fn encode_endpoint(e: &Endpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 1 + SALT_LEN + 8 + e.url.len());
    out.push(VERSION);
    out.extend_from_slice(&e.owner.0.to_be_bytes());
    out.push(e.secret.key_version);
    out.extend_from_slice(&e.secret.salt);
    out.extend_from_slice(&time_bytes(e.created_at));
    out.extend_from_slice(e.url.as_bytes());
    out
}

pub(super) fn decode_endpoint(id: EndpointId, bytes: &[u8]) -> Result<Endpoint, StoreError> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(corrupt("endpoint version"));
    }
    let owner = KeyId(r.u64()?);
    let key_version = r.u8()?;
    let salt = r.array::<SALT_LEN>()?;
    let created_at = r.time()?;
    let url = r.text(r.0.len())?;
    Ok(Endpoint {
        id,
        owner,
        url,
        secret: SecretRef { key_version, salt },
        created_at,
    })
}

pub(super) fn encode_email(e: &EmailSubscription) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + e.address.as_str().len());
    out.push(VERSION);
    out.push(match e.lang {
        Lang::Fr => 0,
        Lang::En => 1,
    });
    match e.state {
        EmailState::Pending {
            token_digest,
            expires_at,
        } => {
            out.push(0);
            out.extend_from_slice(&token_digest);
            out.extend_from_slice(&time_bytes(expires_at));
        }
        EmailState::Confirmed { at } => {
            out.push(1);
            out.extend_from_slice(&time_bytes(at));
        }
    }
    out.extend_from_slice(&time_bytes(e.created_at));
    match e.final_at {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&time_bytes(t));
        }
        None => out.push(0),
    }
    out.extend_from_slice(e.address.as_str().as_bytes());
    out
}

pub(super) fn decode_email(
    tracking_number: TrackingNumber,
    bytes: &[u8],
) -> Result<EmailSubscription, StoreError> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(corrupt("e-mail version"));
    }
    let lang = match r.u8()? {
        0 => Lang::Fr,
        1 => Lang::En,
        _ => return Err(corrupt("language")),
    };
    let state = match r.u8()? {
        0 => EmailState::Pending {
            token_digest: r.array()?,
            expires_at: r.time()?,
        },
        1 => EmailState::Confirmed { at: r.time()? },
        _ => return Err(corrupt("e-mail state")),
    };
    let created_at = r.time()?;
    let final_at = match r.u8()? {
        0 => None,
        1 => Some(r.time()?),
        _ => return Err(corrupt("final flag")),
    };
    let address = EmailAddress::parse(&r.text(r.0.len())?).map_err(|_| corrupt("address"))?;
    Ok(EmailSubscription {
        tracking_number,
        address,
        lang,
        state,
        created_at,
        final_at,
    })
}

/// Statuses by their stored index. The match in [`status_index`] is exhaustive, so a new status
/// cannot be forgotten here.
const STATUSES: [Status; 8] = [
    Status::InfoReceived,
    Status::InTransit,
    Status::OutForDelivery,
    Status::AttemptFailed,
    Status::AvailableForPickup,
    Status::Delivered,
    Status::Returned,
    Status::Exception,
];

fn status_index(s: Status) -> u8 {
    match s {
        Status::InfoReceived => 0,
        Status::InTransit => 1,
        Status::OutForDelivery => 2,
        Status::AttemptFailed => 3,
        Status::AvailableForPickup => 4,
        Status::Delivered => 5,
        Status::Returned => 6,
        Status::Exception => 7,
    }
}

fn status_at(i: u8) -> Result<Status, StoreError> {
    STATUSES
        .get(usize::from(i))
        .copied()
        .ok_or(corrupt("status"))
}

pub(super) fn encode_delivery(d: &Delivery) -> Vec<u8> {
    let n = &d.notice;
    let event_key = codec::event_key(&n.tracking_number, n.event.occurred_at, 0);
    let event_value = codec::encode_value(&n.event);
    let mut out = Vec::with_capacity(96 + event_value.len());
    out.push(VERSION);
    match d.channel {
        Channel::Email => out.push(0),
        Channel::Webhook { owner, endpoint } => {
            out.push(1);
            out.extend_from_slice(&owner.0.to_be_bytes());
            out.extend_from_slice(&endpoint.0.to_be_bytes());
        }
    }
    out.push(n.previous.map_or(NONE_U8, status_index));
    out.push(status_index(n.status));
    out.push(u8::from(n.is_final));
    out.extend_from_slice(&event_key);
    out.extend_from_slice(&(event_value.len() as u16).to_be_bytes());
    out.extend_from_slice(&event_value);
    for t in [d.created_at, d.retry_since, d.next_attempt_at] {
        out.extend_from_slice(&time_bytes(t));
    }
    out.extend_from_slice(&d.attempts.to_be_bytes());
    let (tag, at) = match d.state {
        DeliveryState::Pending => (0, Timestamp(0)),
        DeliveryState::Leased { until } => (1, until),
        DeliveryState::Delivered { at } => (2, at),
        DeliveryState::Dead { at } => (3, at),
    };
    out.push(tag);
    out.extend_from_slice(&time_bytes(at));
    match &d.last_error {
        Some(e) => {
            out.extend_from_slice(&(e.len() as u16).to_be_bytes());
            out.extend_from_slice(e.as_bytes());
        }
        None => out.extend_from_slice(&NONE_U16.to_be_bytes()),
    }
    out.extend_from_slice(&d.lease_token.to_be_bytes());
    out
}

pub(super) fn decode_delivery(id: DeliveryId, bytes: &[u8]) -> Result<Delivery, StoreError> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(corrupt("delivery version"));
    }
    let channel = match r.u8()? {
        0 => Channel::Email,
        1 => Channel::Webhook {
            owner: KeyId(r.u64()?),
            endpoint: EndpointId(r.u64()?),
        },
        _ => return Err(corrupt("channel")),
    };
    let previous = match r.u8()? {
        NONE_U8 => None,
        i => Some(status_at(i)?),
    };
    let status = status_at(r.u8()?)?;
    let is_final = r.u8()? != 0;
    let event_key = r.take(codec::KEY_LEN)?;
    let value_len = usize::from(r.u16()?);
    let event = codec::decode_event(event_key, r.take(value_len)?)?.event;
    let (created_at, retry_since, next_attempt_at) = (r.time()?, r.time()?, r.time()?);
    let attempts = r.u32()?;
    let tag = r.u8()?;
    let at = r.time()?;
    let state = match tag {
        0 => DeliveryState::Pending,
        1 => DeliveryState::Leased { until: at },
        2 => DeliveryState::Delivered { at },
        3 => DeliveryState::Dead { at },
        _ => return Err(corrupt("delivery state")),
    };
    let last_error = match r.u16()? {
        NONE_U16 => None,
        n => Some(r.text(usize::from(n))?),
    };
    let lease_token = r.u64()?;
    r.end()?;
    Ok(Delivery {
        id,
        channel,
        notice: Notice {
            tracking_number: event.tracking_number,
            previous,
            status,
            is_final,
            event,
        },
        created_at,
        retry_since,
        attempts,
        next_attempt_at,
        state,
        last_error,
        lease_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rempart_domain::{Event, EventCode, EventId};

    fn delivery(state: DeliveryState, channel: Channel, error: Option<&str>) -> Delivery {
        let tn = TrackingNumber::parse("RR123456785FR").unwrap();
        Delivery {
            id: DeliveryId(7),
            channel,
            notice: Notice {
                tracking_number: tn,
                previous: Some(Status::InTransit),
                status: Status::OutForDelivery,
                is_final: false,
                event: Event {
                    event_id: EventId::parse("depot-1:9").unwrap(),
                    tracking_number: tn,
                    code: EventCode::Md2,
                    occurred_at: Timestamp(-3),
                    location: Some("Paris 15".into()),
                    product: None,
                },
            },
            created_at: Timestamp(1),
            retry_since: Timestamp(2),
            attempts: 3,
            next_attempt_at: Timestamp(i64::MIN),
            state,
            last_error: error.map(str::to_owned),
            lease_token: u64::MAX,
        }
    }

    #[test]
    fn deliveries_round_trip_and_damage_is_corrupt() {
        let hook = Channel::Webhook {
            owner: KeyId(5),
            endpoint: EndpointId(6),
        };
        for d in [
            delivery(DeliveryState::Pending, Channel::Email, None),
            delivery(
                DeliveryState::Leased {
                    until: Timestamp(9),
                },
                hook,
                Some("é timeout"),
            ),
            delivery(DeliveryState::Dead { at: Timestamp(4) }, hook, Some("")),
            delivery(DeliveryState::Delivered { at: Timestamp(4) }, hook, None),
        ] {
            let bytes = encode_delivery(&d);
            assert_eq!(decode_delivery(d.id, &bytes).unwrap(), d);
            for cut in 0..bytes.len() {
                assert!(
                    decode_delivery(d.id, &bytes[..cut]).is_err(),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn endpoints_emails_and_counters_round_trip() {
        let e = Endpoint {
            id: EndpointId(3),
            owner: KeyId(4),
            url: "https://shop.example/hook".into(),
            secret: SecretRef {
                key_version: 2,
                salt: [9; SALT_LEN],
            },
            created_at: Timestamp(77),
        };
        assert_eq!(decode_endpoint(e.id, &encode_endpoint(&e)).unwrap(), e);
        let m = EmailSubscription {
            tracking_number: TrackingNumber::parse("RR123456785FR").unwrap(),
            address: EmailAddress::parse("a@example.com").unwrap(),
            lang: Lang::En,
            state: EmailState::Pending {
                token_digest: [1; 32],
                expires_at: Timestamp(5),
            },
            created_at: Timestamp(6),
            final_at: Some(Timestamp(8)),
        };
        assert_eq!(
            decode_email(m.tracking_number, &encode_email(&m)).unwrap(),
            m
        );
        let c = Counters {
            last_id: 1,
            last_lease: 2,
            open: 3,
            dead: 4,
            delivered: 5,
            overflowed: 6,
        };
        assert_eq!(Counters::decode(&c.encode()).unwrap(), c);
        assert!(time_bytes(Timestamp(-1)) < time_bytes(Timestamp(0)));
    }
}
