//! The node's clock, read in one place: the domain crate reads none, so every "now" it needs
//! is passed in from here.

use rempart_domain::Timestamp;

/// Now, as the domain's timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc())
}

/// Now, in whole seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
