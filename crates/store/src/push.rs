//! Push notifications, the store's side: webhook endpoints and subscriptions, e-mail alert
//! subscriptions, and the durable outbox of deliveries that the dispatcher (`rempart-push`) sends.
//!
//! The embedded store (`embedded/outbox.rs`, `embedded/push.rs`) and the PostgreSQL store
//! implement [`PushStore`]; both pass the contract suite `push_contract` (feature `contract`).
//! What every backend keeps:
//!
//! - **Written with the events.** `EventStore::append` seeds a [`StatusTracker`] with the latest
//!   stored event of each subscribed parcel of the batch, applies the batch, turns each change into
//!   deliveries with [`fan_out`] and writes them *in the same atomic commit* as the events
//!   (embedded: the committer's write batch; PostgreSQL: the transaction). An acknowledged event
//!   that changed a subscribed parcel therefore always has its deliveries stored; a crash between
//!   the ack and the send loses nothing.
//! - **Bounded, ingest never refused.** At most `capacity` undelivered deliveries (pending, leased
//!   or dead). When a commit would go over, [`admit`] writes what fits, drops the rest and the
//!   store adds the dropped count to a durable overflow counter, in the same commit: the batch is
//!   still acknowledged. Delivered rows kept for replay are bounded apart
//!   ([`PurgePolicy::delivered_kept_max`]).
//! - **Leases, fenced.** [`PushStore::lease_due`] hands out due deliveries for a time, each with a
//!   fresh [`Lease::token`]; an ack, retry, release or park names the lease and does nothing (answers
//!   `false`) when the delivery was leased again since: a node whose lease expired cannot undo
//!   another node's work. Several nodes sharing a database send a delivery twice only when one's
//!   lease expires mid-send: deliveries are at least once, and receivers de-duplicate by event id.
//! - **Parcels go final, addresses go away.** When a change makes a parcel final, its e-mail
//!   subscription gets `final_at`; [`PushStore::purge_emails`] deletes addresses whose parcel has
//!   been final for the retention period, and pending requests that expired.
//!
//! **Signing secrets** are not stored, and neither are hashes of them (a hash cannot sign). An
//! endpoint keeps a [`SecretRef`]: a random salt and the version of a master key that lives
//! outside the store (a node setting). The signing secret is derived when needed, as
//! `HMAC-SHA256(master_key, salt)` (`rempart-push`, `signing.rs`), and shown once to the merchant
//! when the endpoint is created. A copy of the database alone (a backup, a replica) cannot sign
//! webhooks; a leaked master key alone cannot either. Nodes sharing a database share the master
//! key. The cost of deriving over encrypting: changing the master key changes every endpoint's
//! secret, which is right after a leak and is why the key is versioned (an endpoint keeps the
//! version it was created with until its secret is rotated).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rempart_domain::{Event, Status, StatusChange, Timestamp, TrackingNumber};

use crate::StoreError;

/// Longest webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Longest e-mail address, in bytes (RFC 5321's path limit, less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part of an e-mail address (RFC 5321).
pub const MAX_EMAIL_LOCAL_LEN: usize = 64;
/// Longest error text kept with a delivery.
pub const MAX_ERROR_LEN: usize = 256;
/// Bytes of salt from which an endpoint's signing secret is derived.
pub const SALT_LEN: usize = 16;
/// Most webhook subscriptions on one parcel (all keys together): the fan-out of one change.
pub const MAX_SUBSCRIPTIONS_PER_PARCEL: usize = 16;
/// Most webhook subscriptions one API key holds.
pub const MAX_SUBSCRIPTIONS_PER_KEY: usize = 1_000_000;
/// Most tracking numbers one subscribe or unsubscribe call takes.
pub const MAX_SUBSCRIBE_BATCH: usize = 1_000;
/// Most endpoints one API key holds.
pub const MAX_ENDPOINTS_PER_KEY: usize = 20;
/// Most rows one listing returns (subscriptions, dead letters).
pub const MAX_LIST: usize = 1_000;
/// Most deliveries one lease or one replay moves.
pub const MAX_LEASE: usize = 1_000;
/// Most deliveries one replay re-queues.
pub const MAX_REPLAY: usize = 10_000;
/// Undelivered deliveries a store keeps by default (pending, leased and dead together).
pub const DEFAULT_OUTBOX_CAPACITY: u64 = 1_000_000;

/// An API key's id: the owner of endpoints and webhook subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u64);

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Shown as the prefix and 16 lower-case hex digits; parsed back only in that exact form.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:016x}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                parse_hex_id(text, $prefix).map($name)
            }
        }
    };
}

prefixed_id!(
    EndpointId,
    "ep_",
    "A webhook endpoint's id, assigned by the store."
);
prefixed_id!(
    DeliveryId,
    "dlv_",
    "A delivery's id, assigned by the store when the outbox row is written; the same on every retry and replay."
);

/// A text that is not an id of the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an id of the form {prefix}<16 hex digits>")]
pub struct InvalidId {
    prefix: &'static str,
}

fn parse_hex_id(text: &str, prefix: &'static str) -> Result<u64, InvalidId> {
    let err = InvalidId { prefix };
    let digits = text.strip_prefix(prefix).ok_or(err.clone())?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if digits.len() != 16 || !digits.bytes().all(lower_hex) {
        return Err(err);
    }
    u64::from_str_radix(digits, 16).map_err(|_| err)
}

/// Where an endpoint's signing secret comes from (see the module comment): never the secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretRef {
    /// Which master key derives it.
    pub key_version: u8,
    pub salt: [u8; SALT_LEN],
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef(v{})", self.key_version)
    }
}

/// A merchant's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: EndpointId,
    pub owner: KeyId,
    /// At most [`MAX_URL_LEN`] bytes, checked by `rempart-push`'s URL rules before it is stored
    /// and again, with its addresses, before every send.
    pub url: String,
    pub secret: SecretRef,
    pub created_at: Timestamp,
}

/// What creating an endpoint takes; the store assigns the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    pub owner: KeyId,
    pub url: String,
    pub secret: SecretRef,
}

/// One tracking number watched by one API key, delivered to one of its endpoints. Unique by
/// (owner, tracking number, endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSubscription {
    pub owner: KeyId,
    pub tracking_number: TrackingNumber,
    pub endpoint: EndpointId,
    pub created_at: Timestamp,
}

/// What a subscribe call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct SubscribeOutcome {
    pub created: usize,
    /// Already subscribed; unchanged.
    pub existing: usize,
}

/// An e-mail address, checked well enough to be put in an SMTP envelope and a header: ASCII,
/// `local@domain`, no spaces, controls, quotes, brackets or commas, at most [`MAX_EMAIL_LEN`]
/// bytes. It is personal data: kept on the private side only, never logged, never shown publicly.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

/// Why a text is not an acceptable e-mail address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an e-mail address this service can write to")]
pub struct InvalidEmail;

impl EmailAddress {
    /// Parses an address as typed (surrounding spaces trimmed; the domain lower-cased).
    pub fn parse(text: &str) -> Result<Self, InvalidEmail> {
        let text = text.trim();
        if text.len() > MAX_EMAIL_LEN {
            return Err(InvalidEmail);
        }
        let (local, domain) = text.rsplit_once('@').ok_or(InvalidEmail)?;
        if !valid_local(local) || !valid_domain(domain) {
            return Err(InvalidEmail);
        }
        Ok(EmailAddress(format!(
            "{local}@{}",
            domain.to_ascii_lowercase()
        )))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 5322 dot-atom: atext runs separated by single dots.
fn valid_local(local: &str) -> bool {
    const SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    let atext = |b: u8| b.is_ascii_alphanumeric() || SPECIALS.contains(&b);
    !local.is_empty()
        && local.len() <= MAX_EMAIL_LOCAL_LEN
        && local
            .split('.')
            .all(|run| !run.is_empty() && run.bytes().all(atext))
}

/// One label of a DNS host name: 1 to 63 letters, digits and hyphens, no hyphen at either end.
#[must_use]
pub fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// A DNS name with at least two labels, letters-digits-hyphens, the last one not numeric.
fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| is_dns_label(l))
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Debug for EmailAddress {
    /// Never prints the address: debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(…)")
    }
}

/// The language of a customer's e-mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Fr,
    En,
}

/// Where an e-mail subscription stands in the double opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailState {
    /// Waiting for the link to be followed. Only the SHA-256 digest of the link's token is kept.
    Pending {
        token_digest: [u8; 32],
        expires_at: Timestamp,
    },
    Confirmed {
        at: Timestamp,
    },
}

/// A customer's e-mail alerts for one parcel. At most one per parcel (the tracking number is the
/// key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSubscription {
    pub tracking_number: TrackingNumber,
    pub address: EmailAddress,
    pub lang: Lang,
    pub state: EmailState,
    pub created_at: Timestamp,
    /// When a change made the parcel final; the address is purged a retention period later.
    pub final_at: Option<Timestamp>,
}

/// A request for e-mail alerts, before its link is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRequest {
    pub tracking_number: TrackingNumber,
    pub address: EmailAddress,
    pub lang: Lang,
    pub token_digest: [u8; 32],
    pub expires_at: Timestamp,
}

/// What [`PushStore::request_email`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum EmailRequestOutcome {
    /// Stored as pending (new, or replacing an earlier pending request for the parcel): send the
    /// confirmation.
    Pending,
    /// The parcel already has a confirmed address; nothing changed (send nothing: saying which
    /// address would disclose it).
    AlreadyConfirmed,
}

/// Who a delivery goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Webhook {
        owner: KeyId,
        endpoint: EndpointId,
    },
    /// The parcel's confirmed e-mail subscription, looked up when sending (so an address deleted
    /// in between is never written to, and the outbox holds no address).
    Email,
}

/// What a delivery tells: one change of a parcel's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub tracking_number: TrackingNumber,
    /// The status before the change; `None` for a parcel's first event.
    pub previous: Option<Status>,
    pub status: Status,
    pub is_final: bool,
    /// The event that made the change (its `event_id` is the de-duplication key receivers see,
    /// hashed by the dispatcher).
    pub event: Event,
}

/// A delivery to be written by a commit; the store assigns its id and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub channel: Channel,
    pub notice: Notice,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for `next_attempt_at`.
    Pending,
    /// Handed to a dispatcher until `until`; due again after that.
    Leased {
        until: Timestamp,
    },
    Delivered {
        at: Timestamp,
    },
    /// Parked in the dead letters; sent again only by a replay.
    Dead {
        at: Timestamp,
    },
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub channel: Channel,
    pub notice: Notice,
    pub created_at: Timestamp,
    /// Start of the current retry window: creation, or the last replay. The dispatcher parks a
    /// delivery that still fails once the window is over.
    pub retry_since: Timestamp,
    /// Failed attempts in the current window (the backoff exponent).
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub state: DeliveryState,
    /// The last failure, at most [`MAX_ERROR_LEN`] bytes.
    pub last_error: Option<String>,
    /// Bumped by every lease: see [`Lease`].
    pub lease_token: u64,
}

impl Delivery {
    /// The lease this row was handed out under (meaningful after [`PushStore::lease_due`]).
    #[must_use]
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            token: self.lease_token,
        }
    }
}

/// A claim on a leased delivery. Operations under a lease change the row only while its
/// `lease_token` is still this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: DeliveryId,
    pub token: u64,
}

/// What to send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Dead letters: of one key (`None`: every one, for operators), the listed ids or all of them
    /// (at most [`MAX_REPLAY`]).
    Dead {
        owner: Option<KeyId>,
        ids: Option<Vec<DeliveryId>>,
    },
    /// A key's deliveries created since `since` (delivered or dead; pending ones are on their
    /// way already), to one endpoint or all of them, at most [`MAX_REPLAY`].
    Recent {
        owner: KeyId,
        endpoint: Option<EndpointId>,
        since: Timestamp,
    },
}

/// The outbox's figures, for metrics and the ops page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Pending and leased deliveries.
    pub pending: u64,
    pub dead: u64,
    /// Creation time of the oldest pending or leased delivery.
    pub oldest_pending: Option<Timestamp>,
    /// Deliveries not written because the outbox was full, since the store was created.
    pub overflowed: u64,
}

/// What [`PushStore::purge_deliveries`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgePolicy {
    /// Delivered rows older than this are removed (they served only replays).
    pub delivered_before: Timestamp,
    /// Dead letters parked before this are removed.
    pub dead_before: Timestamp,
    /// Delivered rows kept at most, the oldest removed first.
    pub delivered_kept_max: u64,
}

/// Why a push operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("too many {what}: at most {max}")]
    TooMany { what: &'static str, max: usize },
    /// No endpoint of that id belongs to the key.
    #[error("unknown endpoint")]
    UnknownEndpoint,
}

/// How many of `wanted` new deliveries a commit writes when `undelivered` are stored already and
/// the outbox holds at most `capacity`; the rest overflow (counted, not written).
#[must_use]
pub fn admit(undelivered: u64, capacity: u64, wanted: usize) -> Admission {
    let room = capacity.saturating_sub(undelivered);
    let write = usize::try_from(room).map_or(wanted, |room| room.min(wanted));
    Admission {
        write,
        overflow: wanted - write,
    }
}

/// See [`admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub write: usize,
    pub overflow: usize,
}

/// The deliveries one status change makes: one per webhook subscription of the parcel (at most
/// [`MAX_SUBSCRIPTIONS_PER_PARCEL`]) and one for a *confirmed* e-mail subscription.
#[must_use]
pub fn fan_out(
    change: &StatusChange<'_>,
    webhooks: &[WebhookSubscription],
    email: Option<&EmailSubscription>,
) -> Vec<NewDelivery> {
    let notice = Notice {
        tracking_number: change.tracking_number,
        previous: change.before.map(|s| s.status),
        status: change.after.status,
        is_final: change.after.is_final,
        event: change.cause.event.clone(),
    };
    let hooks = webhooks
        .iter()
        .filter(|s| s.tracking_number == change.tracking_number)
        .take(MAX_SUBSCRIPTIONS_PER_PARCEL)
        .map(|s| Channel::Webhook {
            owner: s.owner,
            endpoint: s.endpoint,
        });
    let mail = email
        .filter(|e| {
            e.tracking_number == change.tracking_number
                && matches!(e.state, EmailState::Confirmed { .. })
        })
        .map(|_| Channel::Email);
    hooks
        .chain(mail)
        .map(|channel| NewDelivery {
            channel,
            notice: notice.clone(),
        })
        .collect()
}

/// Cuts an error text to at most [`MAX_ERROR_LEN`] bytes on a character boundary.
#[must_use]
pub fn bounded_error(text: &str) -> String {
    let mut end = text.len().min(MAX_ERROR_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The store's side of push. Implemented by each backend next to its `EventStore`; the outbox
/// rows themselves are written by `EventStore::append` (see the module comment).
#[async_trait]
pub trait PushStore: Send + Sync + 'static {
    // --- Endpoints and webhook subscriptions (the merchant API) ---

    /// Creates an endpoint; [`PushError::TooMany`] past [`MAX_ENDPOINTS_PER_KEY`].
    async fn create_endpoint(
        &self,
        new: NewEndpoint,
        now: Timestamp,
    ) -> Result<Endpoint, PushError>;

    async fn endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError>;

    /// A key's endpoints (at most [`MAX_ENDPOINTS_PER_KEY`]).
    async fn endpoints(&self, owner: KeyId) -> Result<Vec<Endpoint>, StoreError>;

    /// Deletes a key's endpoint and its subscriptions; `false` when it had no such endpoint.
    /// Its undelivered deliveries stay and are parked by the dispatcher ("endpoint deleted").
    async fn delete_endpoint(&self, owner: KeyId, id: EndpointId) -> Result<bool, StoreError>;

    /// Subscribes tracking numbers (at most [`MAX_SUBSCRIBE_BATCH`]) to one of the key's
    /// endpoints, all or nothing: [`PushError::UnknownEndpoint`], or [`PushError::TooMany`] when a
    /// parcel would pass [`MAX_SUBSCRIPTIONS_PER_PARCEL`] or the key [`MAX_SUBSCRIPTIONS_PER_KEY`].
    async fn subscribe(
        &self,
        owner: KeyId,
        endpoint: EndpointId,
        numbers: &[TrackingNumber],
        now: Timestamp,
    ) -> Result<SubscribeOutcome, PushError>;

    /// Removes a key's subscriptions of these numbers (to one endpoint, or to all); returns how
    /// many were removed.
    async fn unsubscribe(
        &self,
        owner: KeyId,
        endpoint: Option<EndpointId>,
        numbers: &[TrackingNumber],
    ) -> Result<usize, StoreError>;

    /// A page of a key's subscriptions ordered by (tracking number, endpoint), strictly after
    /// `after`, at most `limit` (capped at [`MAX_LIST`]).
    async fn subscriptions(
        &self,
        owner: KeyId,
        after: Option<(TrackingNumber, EndpointId)>,
        limit: usize,
    ) -> Result<Vec<WebhookSubscription>, StoreError>;

    // --- E-mail alerts (the opt-in pages) ---

    /// Stores a pending request, replacing a pending one for the same parcel; leaves a confirmed
    /// subscription alone.
    async fn request_email(
        &self,
        request: EmailRequest,
        now: Timestamp,
    ) -> Result<EmailRequestOutcome, StoreError>;

    /// Confirms the pending request whose token has this digest, if it has not expired. `None`
    /// when no such request exists (unknown, used or expired token).
    async fn confirm_email(
        &self,
        token_digest: [u8; 32],
        now: Timestamp,
    ) -> Result<Option<EmailSubscription>, StoreError>;

    async fn email_subscription(
        &self,
        tracking_number: TrackingNumber,
    ) -> Result<Option<EmailSubscription>, StoreError>;

    /// Deletes a parcel's e-mail subscription (unsubscribe link); `false` when there was none.
    async fn delete_email(&self, tracking_number: TrackingNumber) -> Result<bool, StoreError>;

    /// Deletes subscriptions whose parcel went final before `final_before` and pending requests
    /// expired before `now`, at most `limit`; returns how many.
    async fn purge_emails(
        &self,
        final_before: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Result<usize, StoreError>;

    // --- The outbox (the dispatcher) ---

    /// Leases up to `limit` (capped at [`MAX_LEASE`]) deliveries that are due: pending with
    /// `next_attempt_at <= now`, or leased with an expired lease. Each comes back leased until
    /// `now + lease_for` with a new `lease_token`. Oldest `next_attempt_at` first.
    async fn lease_due(
        &self,
        now: Timestamp,
        lease_for: Duration,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Marks a leased delivery delivered. `false` (and nothing changed) when the lease was lost.
    async fn ack(&self, lease: Lease, now: Timestamp) -> Result<bool, StoreError>;

    /// Records a failed attempt: `attempts + 1`, the error, pending again at `next_attempt_at`.
    async fn retry(
        &self,
        lease: Lease,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError>;

    /// Gives a leased delivery back unsent, due at `next_attempt_at`, without counting an attempt
    /// (its endpoint's breaker is open, or its queue is full).
    async fn release(&self, lease: Lease, next_attempt_at: Timestamp) -> Result<bool, StoreError>;

    /// Parks a leased delivery in the dead letters with its last error.
    async fn park(&self, lease: Lease, now: Timestamp, error: &str) -> Result<bool, StoreError>;

    /// A page of dead letters, of one key or (`None`) all, by id strictly after `after`, at most
    /// `limit` (capped at [`MAX_LIST`]).
    async fn dead_letters(
        &self,
        owner: Option<KeyId>,
        after: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Makes the selected deliveries pending again, due now, with a new retry window and no
    /// attempts counted; keeps their ids. Returns how many.
    async fn replay(&self, what: Replay, now: Timestamp) -> Result<usize, StoreError>;

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;

    /// Removes old delivered rows and old dead letters (see [`PurgePolicy`]), at most `limit`.
    async fn purge_deliveries(
        &self,
        policy: PurgePolicy,
        limit: usize,
    ) -> Result<usize, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rempart_domain::{EventCode, EventId, Latest, StatusTracker, StoredEvent};

    #[test]
    fn ids_round_trip_in_their_one_form() {
        let id = DeliveryId(0x1a2b);
        assert_eq!(id.to_string(), "dlv_0000000000001a2b");
        assert_eq!("dlv_0000000000001a2b".parse::<DeliveryId>(), Ok(id));
        assert_eq!(
            "ep_ffffffffffffffff".parse::<EndpointId>(),
            Ok(EndpointId(u64::MAX))
        );
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "",
            "dlv_",
            "dlv_1a2b",
            "dlv_0000000000001A2B",
            "dlv_+000000000001a2b",
            "dlv_00000000000001a2b",
            "DLV_0000000000001a2b",
            "ep_0000000000001a2b",
            "dlv_000000000000１a2",
            " dlv_0000000000001a2b",
        ] {
            assert!(bad.parse::<DeliveryId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn email_addresses_as_people_type_them() {
        let a = EmailAddress::parse("  Jeanne.Dupont+colis@Exemple.FR ").unwrap();
        assert_eq!(a.as_str(), "Jeanne.Dupont+colis@exemple.fr");
        assert!(EmailAddress::parse("a@b.co").is_ok());
        assert!(!format!("{a:?}").contains("Jeanne"));
    }

    #[test]
    fn hostile_email_addresses_are_refused() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b.".repeat(130));
        for bad in [
            "",
            "@",
            "a@",
            "@example.com",
            "a@example",
            "a@@example.com",
            "a@example.com\r\nBcc: victim@example.org",
            "a@example.com>\r\nRCPT TO:<x@y.z",
            "a b@example.com",
            "\"a\"@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a@-example.com",
            "a@example-.com",
            "a@example..com",
            "a@127.0.0.1",
            "a@[127.0.0.1]",
            "a,b@example.com",
            "a@exämple.com",
            "jeanne@example.com\0",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(InvalidEmail), "{bad:?}");
        }
    }

    proptest! {
        /// Whatever the bytes, an accepted address is re-parsed to itself and carries nothing
        /// that could break out of an SMTP command or a header.
        #[test]
        fn accepted_addresses_are_safe(
            text in prop_oneof!["\\PC{0,80}", "[ -~]{0,3}[a-zA-Z0-9.+_@-]{1,30}[ -~\r\n]{0,3}"]
        ) {
            if let Ok(a) = EmailAddress::parse(&text) {
                let s = a.as_str();
                prop_assert!(s.len() <= MAX_EMAIL_LEN);
                prop_assert!(s.bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(!s.contains(['<', '>', ',', '"', '\\', '(', ')', ';', ':']));
                prop_assert_eq!(EmailAddress::parse(s), Ok(a.clone()));
            }
        }

        #[test]
        fn ids_parse_only_what_they_print(text in "\\PC{0,24}", n in any::<u64>()) {
            prop_assert_eq!(DeliveryId(n).to_string().parse::<DeliveryId>(), Ok(DeliveryId(n)));
            if let Ok(id) = text.parse::<EndpointId>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }
    }

    #[test]
    fn admission_writes_what_fits_and_counts_the_rest() {
        assert_eq!(
            admit(0, 10, 4),
            Admission {
                write: 4,
                overflow: 0
            }
        );
        assert_eq!(
            admit(8, 10, 4),
            Admission {
                write: 2,
                overflow: 2
            }
        );
        assert_eq!(
            admit(12, 10, 4),
            Admission {
                write: 0,
                overflow: 4
            }
        );
    }

    fn tn(serial: u32) -> TrackingNumber {
        TrackingNumber::s10("RR", serial, "FR").unwrap()
    }

    fn stored(parcel: u32, code: EventCode, received: u64) -> StoredEvent {
        StoredEvent {
            event: Event {
                event_id: EventId::parse(&format!("e{received}")).unwrap(),
                tracking_number: tn(parcel),
                code,
                occurred_at: Timestamp(1_766_000_000_000_000 + received as i64),
                location: None,
                product: None,
            },
            received,
        }
    }

    fn email(parcel: u32, state: EmailState) -> EmailSubscription {
        EmailSubscription {
            tracking_number: tn(parcel),
            address: EmailAddress::parse("a@example.com").unwrap(),
            lang: Lang::Fr,
            state,
            created_at: Timestamp(0),
            final_at: None,
        }
    }

    #[test]
    fn a_change_fans_out_to_each_webhook_and_a_confirmed_address() {
        let before = stored(1, EventCode::Et1, 1);
        let batch = [stored(1, EventCode::Md2, 2)];
        let mut tracker = StatusTracker::new();
        tracker.seed(tn(1), Some(Latest::of(&before)));
        let changes = tracker.apply(&batch);
        let sub = |owner, endpoint| WebhookSubscription {
            owner: KeyId(owner),
            tracking_number: tn(1),
            endpoint: EndpointId(endpoint),
            created_at: Timestamp(0),
        };
        let hooks = [sub(1, 10), sub(2, 20)];
        let confirmed = email(1, EmailState::Confirmed { at: Timestamp(0) });
        let out = fan_out(&changes[0], &hooks, Some(&confirmed));
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].channel, Channel::Email);
        assert_eq!(out[0].notice.previous, Some(Status::InTransit));
        assert_eq!(out[0].notice.status, Status::OutForDelivery);
        assert_eq!(out[0].notice.event, batch[0].event);

        let pending = email(
            1,
            EmailState::Pending {
                token_digest: [0; 32],
                expires_at: Timestamp(0),
            },
        );
        assert_eq!(fan_out(&changes[0], &hooks, Some(&pending)).len(), 2);
        let other_parcel = [WebhookSubscription {
            tracking_number: tn(2),
            ..hooks[0]
        }];
        assert!(fan_out(&changes[0], &other_parcel, None).is_empty());
    }

    #[test]
    fn errors_are_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_ERROR_LEN);
        let cut = bounded_error(&text);
        assert!(cut.len() <= MAX_ERROR_LEN && cut.chars().all(|c| c == 'é'));
        assert_eq!(bounded_error("short"), "short");
    }
}
