//! The carrier's vocabulary: tracking numbers, scan event codes, normalized statuses,
//! scan events and the parcel view built from them.
//!
//! Invariant: this crate does no I/O and reads no clock. Everything here is a pure function
//! of its inputs, so every other crate (server, store, depot, siege) shares exactly the same rules.

mod change;
mod code;
mod countries;
mod event;
mod parcel;
mod tracking;

pub use change::{Latest, ParcelState, StatusChange, StatusTracker};
pub use code::{EventCode, Status};
pub use event::{
    Event, EventError, EventId, LOCATION_MAX_CHARS, PRODUCT_MAX_CHARS, StoredEvent, Timestamp,
    is_invisible_format, parse_event_line,
};
pub use parcel::{MAX_VIEW_EVENTS, ParcelEvent, ParcelView};
pub use tracking::{TYPED_MAX_BYTES, TrackingNumber, TrackingNumberError};
