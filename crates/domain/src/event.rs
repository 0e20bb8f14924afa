//! Scan events: the wire form a depot sends (one JSON object per NDJSON line), its validation,
//! and the stored form with its reception order.

use std::borrow::Cow;
use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{EventCode, TrackingNumber};

/// Longest `event_id`, in bytes (SPEC: 1–128 printable ASCII).
pub const EVENT_ID_MAX_LEN: usize = 128;
/// Longest `location`, in characters.
pub const LOCATION_MAX_CHARS: usize = 128;
/// Longest `product`, in characters.
pub const PRODUCT_MAX_CHARS: usize = 64;
/// Earliest accepted `occurred_at`: 2000-01-01T00:00:00Z. Earlier dates are typing or clock errors.
pub const EARLIEST_OCCURRED_AT: Timestamp = Timestamp(946_684_800_000_000);
/// How far in the future (relative to the receiver's clock) an `occurred_at` may lie: one day,
/// which absorbs a depot's clock drift but refuses obviously wrong dates.
pub const MAX_FUTURE_MICROS: i64 = 24 * 3600 * 1_000_000;

/// An instant in UTC, in microseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Parses RFC 3339 with any offset (e.g. `2025-12-22T07:02:11+01:00`), normalizing to UTC.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let micros = t.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros).ok().map(Timestamp)
    }

    /// Formats as RFC 3339 in UTC with a `Z`, e.g. `2025-12-22T08:14:00Z`; fractional seconds
    /// appear only when present.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        t.format(&Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }

    /// From an `OffsetDateTime` (the caller's clock, e.g. `OffsetDateTime::now_utc()`).
    #[must_use]
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        Timestamp((t.unix_timestamp_nanos() / 1_000) as i64)
    }

    #[must_use]
    pub fn micros(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 date"))
    }
}

/// The idempotency key of an event: 1–128 printable ASCII characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    pub fn parse(text: &str) -> Result<Self, EventError> {
        if text.is_empty() || text.len() > EVENT_ID_MAX_LEN {
            return Err(EventError::Field {
                field: "event_id",
                message: format!("must be 1 to {EVENT_ID_MAX_LEN} characters"),
            });
        }
        if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(EventError::Field {
                field: "event_id",
                message: "must be printable ASCII".into(),
            });
        }
        Ok(EventId(text.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({:?})", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        EventId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A validated scan event. No personal data: only a code, a time, a facility and a product.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub event_id: EventId,
    pub tracking_number: TrackingNumber,
    #[serde(with = "code_serde")]
    pub code: EventCode,
    pub occurred_at: Timestamp,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
}

mod code_serde {
    use super::*;
    use serde::Deserialize;
    pub fn serialize<S: serde::Serializer>(c: &EventCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_str())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EventCode, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        EventCode::parse(&s).ok_or_else(|| serde::de::Error::custom("unknown event code"))
    }
}

impl Event {
    /// The NDJSON line a client sends for this event (without the trailing newline).
    #[must_use]
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

/// An event as kept by a store: the event plus `received`, a number that grows with the order in
/// which the store accepted events. It breaks ties between events with the same `occurred_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    pub received: u64,
}

/// Why an ingest line is refused. The message is safe to show to the client that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("missing field {0:?}")]
    Missing(&'static str),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

/// The raw line as sent, borrowed where possible. Unknown fields are ignored (newer clients may
/// send more); they are never stored.
#[derive(serde::Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tracking_number: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    location: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    product: Option<Cow<'a, str>>,
}

/// Parses and validates one NDJSON line (without its newline). `now` is the receiver's clock,
/// used to refuse events dated more than a day in the future.
pub fn parse_event_line(line: &[u8], now: Timestamp) -> Result<Event, EventError> {
    let raw: RawEvent<'_> =
        serde_json::from_slice(line).map_err(|e| EventError::Json(e.to_string()))?;
    let event_id = EventId::parse(&raw.event_id.ok_or(EventError::Missing("event_id"))?)?;
    let tracking_number = raw
        .tracking_number
        .ok_or(EventError::Missing("tracking_number"))?;
    let tracking_number =
        TrackingNumber::parse(&tracking_number).map_err(|e| EventError::Field {
            field: "tracking_number",
            message: e.to_string(),
        })?;
    let code = raw.code.ok_or(EventError::Missing("code"))?;
    let code = EventCode::parse(&code).ok_or_else(|| EventError::Field {
        field: "code",
        message: format!("unknown event code {:?}", truncate(&code, 16)),
    })?;
    let occurred_at = raw.occurred_at.ok_or(EventError::Missing("occurred_at"))?;
    let occurred_at = Timestamp::parse_rfc3339(&occurred_at).ok_or_else(|| EventError::Field {
        field: "occurred_at",
        message: "must be an RFC 3339 date with an offset, e.g. 2025-12-22T07:02:11+01:00".into(),
    })?;
    if occurred_at < EARLIEST_OCCURRED_AT || occurred_at.0 > now.0.saturating_add(MAX_FUTURE_MICROS)
    {
        return Err(EventError::Field {
            field: "occurred_at",
            message: "must lie between 2000-01-01 and one day from now".into(),
        });
    }
    let location = optional_text(raw.location, "location", LOCATION_MAX_CHARS)?;
    let product = optional_text(raw.product, "product", PRODUCT_MAX_CHARS)?;
    Ok(Event {
        event_id,
        tracking_number,
        code,
        occurred_at,
        location,
        product,
    })
}

/// An optional free-text field: trimmed, empty means absent, bounded, no control characters.
fn optional_text(
    value: Option<Cow<'_, str>>,
    field: &'static str,
    max_chars: usize,
) -> Result<Option<String>, EventError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max_chars {
        return Err(EventError::Field {
            field,
            message: format!("at most {max_chars} characters"),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(EventError::Field {
            field,
            message: "must not contain control characters".into(),
        });
    }
    if let Some((at, c)) = value
        .chars()
        .enumerate()
        .find(|&(_, c)| is_invisible_format(c))
    {
        return Err(EventError::Field {
            field,
            message: format!(
                "must not contain invisible or bidirectional formatting characters (U+{:04X} at character {})",
                u32::from(c),
                at + 1
            ),
        });
    }
    Ok(Some(value.to_owned()))
}

/// Unicode format characters (general category `Cf`, Unicode 16) and the line and paragraph
/// separators (U+2028, U+2029). They are invisible yet change what a reader sees: U+202E turns
/// `Paris 15` into text that reads backwards, U+200B hides a difference between two look-alike
/// names, U+2028 breaks a line inside a JSON string some parsers choke on. Nothing a depot stores
/// (a facility name, a product name) needs one, so ingest refuses them all rather than guess
/// which are harmless.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp(1_766_400_000_000_000); // 2025-12-22T10:40:00Z

    fn line(fields: &str) -> Vec<u8> {
        format!("{{{fields}}}").into_bytes()
    }

    const GOOD: &str = r#""event_id":"depot-17:000123","tracking_number":"RR123456785FR","code":"PC1","occurred_at":"2025-12-22T07:02:11+01:00","location":"Paris 15","product":"colissimo""#;

    #[test]
    fn the_spec_example_parses_and_normalizes_to_utc() {
        let e = parse_event_line(&line(GOOD), NOW).unwrap();
        assert_eq!(e.event_id.as_str(), "depot-17:000123");
        assert_eq!(e.tracking_number.as_str(), "RR123456785FR");
        assert_eq!(e.code, EventCode::Pc1);
        assert_eq!(e.occurred_at.to_rfc3339(), "2025-12-22T06:02:11Z");
        assert_eq!(e.location.as_deref(), Some("Paris 15"));
        assert_eq!(e.product.as_deref(), Some("colissimo"));
    }

    #[test]
    fn wire_form_round_trips() {
        let e = parse_event_line(&line(GOOD), NOW).unwrap();
        let again = parse_event_line(e.to_json_line().as_bytes(), NOW).unwrap();
        assert_eq!(e, again);
    }

    #[test]
    fn optional_fields_may_be_null_absent_or_empty() {
        let l = r#"{"event_id":"a","tracking_number":"6A12345678905","code":"DI1","occurred_at":"2025-12-22T08:00:00Z","location":null,"product":""}"#;
        let e = parse_event_line(l.as_bytes(), NOW).unwrap();
        assert_eq!(e.location, None);
        assert_eq!(e.product, None);
    }

    #[test]
    fn bad_lines_are_refused_with_the_field_named() {
        let cases: &[(&str, &str)] = &[
            ("", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            (r#"{"event_id":"a"}"#, "tracking_number"),
            (&GOOD.replace("PC1", "ZZ9"), "unknown event code"),
            (
                &GOOD.replace("RR123456785FR", "RR123456784FR"),
                "tracking_number",
            ),
            (
                &GOOD.replace("2025-12-22T07:02:11+01:00", "yesterday"),
                "occurred_at",
            ),
            (
                &GOOD.replace("2025-12-22T07:02:11+01:00", "1999-12-31T23:59:59Z"),
                "occurred_at",
            ),
            (
                &GOOD.replace("2025-12-22T07:02:11+01:00", "2025-12-24T07:02:11Z"),
                "occurred_at",
            ),
            (&GOOD.replace("depot-17:000123", ""), "event_id"),
            (
                &GOOD.replace("depot-17:000123", &"x".repeat(129)),
                "event_id",
            ),
            (
                &GOOD.replace("depot-17:000123", "d\\u00e9p\\u00f4t"),
                "event_id",
            ),
            (&GOOD.replace("Paris 15", &"é".repeat(129)), "location"),
            (&GOOD.replace("Paris 15", "a\\u0000b"), "location"),
            (&GOOD.replace("colissimo", &"p".repeat(65)), "product"),
        ];
        for (text, expect) in cases {
            let text = if text.starts_with('{') || text.starts_with('[') || text.is_empty() {
                text.to_string()
            } else {
                format!("{{{text}}}")
            };
            let err = parse_event_line(text.as_bytes(), NOW)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expect),
                "{text:?} gave {err:?}, expected {expect:?}"
            );
        }
    }

    #[test]
    fn invisible_and_bidirectional_characters_are_refused_with_their_code_point() {
        for (field, sample) in [("location", "Paris 15"), ("product", "colissimo")] {
            for (escaped, shown) in [
                ("\\u202e", "U+202E"),
                ("\\u202a", "U+202A"),
                ("\\u2066", "U+2066"),
                ("\\u2069", "U+2069"),
                ("\\u200b", "U+200B"),
                ("\\u200f", "U+200F"),
                ("\\u2028", "U+2028"),
                ("\\u2029", "U+2029"),
                ("\\ufeff", "U+FEFF"),
                ("\\u00ad", "U+00AD"),
                ("\\u2060", "U+2060"),
                ("\\udb40\\udc41", "U+E0041"),
            ] {
                let text = GOOD.replace(sample, &format!("ab{escaped}c"));
                let err = parse_event_line(&line(&text), NOW).unwrap_err();
                let EventError::Field { field: f, message } = &err else {
                    panic!("{err:?}")
                };
                assert_eq!(*f, field);
                assert!(
                    message.contains(shown) && message.contains("at character 3"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn ordinary_non_ascii_text_is_kept() {
        for name in [
            "Saint-Étienne PPDC",
            "Łódź",
            "Ελλάδα",
            "東京",
            "São Paulo – Centro",
            "Zürich 1",
        ] {
            let e = parse_event_line(&line(&GOOD.replace("Paris 15", name)), NOW).unwrap();
            assert_eq!(e.location.as_deref(), Some(name));
        }
    }

    #[test]
    fn the_format_character_table_matches_the_categories_it_names() {
        // Spot checks on both sides of each boundary the table draws.
        for c in [
            '\u{ad}', '\u{200b}', '\u{200f}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}',
            '\u{feff}', '\u{2028}', '\u{2029}',
        ] {
            assert!(is_invisible_format(c), "{c:?}");
        }
        for c in [
            'a', 'é', '\u{2010}', '\u{2027}', '\u{202f}', '\u{2065}', '\u{fefe}', ' ', '\u{a0}',
        ] {
            assert!(!is_invisible_format(c), "{c:?}");
        }
    }

    #[test]
    fn non_utf8_is_refused() {
        let mut bytes = line(GOOD);
        let pos = bytes.iter().position(|&b| b == b'P').unwrap();
        bytes[pos] = 0xff;
        assert!(matches!(
            parse_event_line(&bytes, NOW),
            Err(EventError::Json(_))
        ));
    }

    #[test]
    fn limits_are_inclusive() {
        let l = GOOD
            .replace("depot-17:000123", &"x".repeat(128))
            .replace("Paris 15", &"é".repeat(128))
            .replace("colissimo", &"p".repeat(64));
        assert!(parse_event_line(&line(&l), NOW).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_event_line(&bytes, NOW);
        }

        /// Whatever text a line carries, an accepted event never stores a format character.
        #[test]
        fn stored_text_never_holds_format_characters(
            chars in prop::collection::vec(
                prop_oneof![
                    any::<char>(),
                    prop::sample::select(vec!['\u{202e}', '\u{200b}', '\u{2028}', '\u{feff}', '\u{2066}', '\u{e0041}']),
                ],
                0..40,
            )
        ) {
            let text: String = chars.into_iter().collect();
            let l = serde_json::json!({
                "event_id": "p", "tracking_number": "RR123456785FR", "code": "PC1",
                "occurred_at": "2025-12-22T07:02:11+01:00", "location": text, "product": text,
            });
            if let Ok(e) = parse_event_line(l.to_string().as_bytes(), NOW) {
                for t in [e.location, e.product].into_iter().flatten() {
                    prop_assert!(!t.chars().any(is_invisible_format));
                }
            }
        }

        #[test]
        fn timestamps_round_trip(micros in EARLIEST_OCCURRED_AT.0..NOW.0) {
            let t = Timestamp(micros);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
    }
}
