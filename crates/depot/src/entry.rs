//! Entry of scan events into the depot: NDJSON (the ingest API's line format, `event_id`
//! optional) or CSV (`tracking_number,code,occurred_at,location,product[,event_id]` with a header
//! line). Every event is validated with the domain's rules *before* it is spooled, so an event the
//! server would refuse is refused here, at once, with a clear message.
//!
//! A missing `event_id` is derived from the event's content (`<depot-id>:<hash>`): a scanner that
//! resends the same scan after a crash gets the same id, and the server stores it once.

use rempart_domain::{Event, EventError, Timestamp, parse_event_line};
use sha2::{Digest, Sha256};

use crate::spool::MAX_PAYLOAD;

/// Longest input line accepted.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// CSV columns, in order; `event_id` may be left out.
pub const CSV_HEADER: [&str; 6] = [
    "tracking_number",
    "code",
    "occurred_at",
    "location",
    "product",
    "event_id",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("line is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    #[error("line is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Invalid(String),
}

impl From<EventError> for EntryError {
    fn from(e: EventError) -> Self {
        EntryError::Invalid(e.to_string())
    }
}

/// The stable id of an event that came without one.
pub fn derived_id(
    depot_id: &str,
    tn: &str,
    code: &str,
    occurred_at: &str,
    location: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [tn, code, occurred_at, location] {
        h.update(part.trim().to_ascii_uppercase().as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{depot_id}:{hex}")
}

/// Validates one NDJSON line; returns the event and the line to spool (with its id).
pub fn ndjson(line: &[u8], depot_id: &str, now: Timestamp) -> Result<(Event, Vec<u8>), EntryError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(EntryError::TooLong);
    }
    let mut value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| EntryError::Invalid(format!("not a JSON object: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| EntryError::Invalid("not a JSON object".into()))?;
    if !object.contains_key("event_id") {
        let field = |k: &str| {
            object
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let id = derived_id(
            depot_id,
            &field("tracking_number"),
            &field("code"),
            &field("occurred_at"),
            &field("location"),
        );
        object.insert("event_id".into(), serde_json::Value::from(id));
    }
    let event = parse_event_line(
        &serde_json::to_vec(&value).expect("JSON values serialize"),
        now,
    )?;
    Ok(spoolable(event))
}

/// The spooled form is the event's canonical line: exactly what will be sent.
fn spoolable(event: Event) -> (Event, Vec<u8>) {
    let line = event.to_json_line().into_bytes();
    debug_assert!(line.len() <= MAX_PAYLOAD);
    (event, line)
}

/// Splits one CSV line (RFC 4180 quoting: `"a,b"`, `""` inside quotes).
pub fn csv_fields(line: &str) -> Result<Vec<String>, EntryError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, '"') => return Err(EntryError::Invalid("stray quote in a CSV field".into())),
            (false, c) => field.push(c),
        }
        // Every comma closes a field and opens another: once as many fields as the header has
        // are closed, the one still open is one too many (found by the fuzz target
        // `depot_entry`: with `>`, a seventh field was accepted and silently dropped).
        if fields.len() >= CSV_HEADER.len() {
            return Err(EntryError::Invalid("too many CSV fields".into()));
        }
    }
    if quoted {
        return Err(EntryError::Invalid("unterminated quote".into()));
    }
    fields.push(field);
    Ok(fields)
}

/// Checks a CSV header line.
pub fn csv_header(line: &str) -> Result<(), EntryError> {
    let fields = csv_fields(line.trim_end_matches('\r'))?;
    let names: Vec<&str> = fields.iter().map(|f| f.trim()).collect();
    if names == CSV_HEADER[..5] || names == CSV_HEADER {
        Ok(())
    } else {
        Err(EntryError::Invalid(format!(
            "the CSV header must be `{}` (event_id optional)",
            CSV_HEADER.join(",")
        )))
    }
}

/// Validates one CSV data line.
pub fn csv(line: &[u8], depot_id: &str, now: Timestamp) -> Result<(Event, Vec<u8>), EntryError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(EntryError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| EntryError::NotUtf8)?;
    let fields = csv_fields(text.trim_end_matches('\r'))?;
    if fields.len() < 5 {
        return Err(EntryError::Invalid(format!(
            "{} CSV fields, expected 5 or 6",
            fields.len()
        )));
    }
    let mut object = serde_json::Map::new();
    for (name, value) in CSV_HEADER.iter().zip(&fields) {
        if !value.trim().is_empty() {
            object.insert((*name).into(), serde_json::Value::from(value.as_str()));
        }
    }
    ndjson(
        &serde_json::to_vec(&object).expect("JSON values serialize"),
        depot_id,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_767_000_000_000_000);

    #[test]
    fn missing_ids_are_derived_stably_from_content() {
        let line = br#"{"tracking_number":"RR123456785FR","code":"PC1","occurred_at":"2025-12-22T07:02:11+01:00","location":"Paris 15"}"#;
        let (a, spooled) = ndjson(line, "depot-17", NOW).unwrap();
        let (b, _) = ndjson(line, "depot-17", NOW).unwrap();
        assert_eq!(a.event_id, b.event_id);
        assert!(a.event_id.as_str().starts_with("depot-17:"));
        let other = br#"{"tracking_number":"RR123456785FR","code":"ET1","occurred_at":"2025-12-22T07:02:11+01:00","location":"Paris 15"}"#;
        assert_ne!(
            ndjson(other, "depot-17", NOW).unwrap().0.event_id,
            a.event_id
        );
        // The spooled line parses back to the same event.
        assert_eq!(parse_event_line(&spooled, NOW).unwrap(), a);
        // A given id is kept.
        let with_id = br#"{"event_id":"x:1","tracking_number":"RR123456785FR","code":"PC1","occurred_at":"2025-12-22T07:02:11Z"}"#;
        assert_eq!(
            ndjson(with_id, "d", NOW).unwrap().0.event_id.as_str(),
            "x:1"
        );
    }

    #[test]
    fn undeliverable_events_are_refused_at_entry() {
        for bad in [
            &br#"{"tracking_number":"RR123456784FR","code":"PC1","occurred_at":"2025-12-22T07:02:11Z"}"#[..],
            br#"{"tracking_number":"RR123456785FR","code":"ZZ1","occurred_at":"2025-12-22T07:02:11Z"}"#,
            br#"{"tracking_number":"RR123456785FR","code":"PC1","occurred_at":"yesterday"}"#,
            br#"{"tracking_number":"RR123456785FR","code":"PC1"}"#,
            b"[1]",
            b"\xff\xfe",
            b"",
        ] {
            assert!(ndjson(bad, "d", NOW).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            ndjson(&vec![b' '; MAX_LINE_BYTES + 1], "d", NOW),
            Err(EntryError::TooLong)
        );
    }

    #[test]
    fn csv_lines_with_quotes() {
        csv_header("tracking_number,code,occurred_at,location,product").unwrap();
        csv_header("tracking_number,code,occurred_at,location,product,event_id\r").unwrap();
        assert!(csv_header("code,tracking_number").is_err());
        let (e, _) = csv(
            b"rr123456785fr,PC1,2025-12-22T07:02:11Z,\"Paris 15, guichet \"\"B\"\"\",colissimo",
            "d",
            NOW,
        )
        .unwrap();
        assert_eq!(e.location.as_deref(), Some("Paris 15, guichet \"B\""));
        assert_eq!(e.tracking_number.as_str(), "RR123456785FR");
        let (e, _) = csv(
            b"6A12345678905,DI1,2025-12-22T07:02:11Z,,,my-id:1\r",
            "d",
            NOW,
        )
        .unwrap();
        assert_eq!(e.event_id.as_str(), "my-id:1");
        assert_eq!(e.location, None);
        for bad in [
            &b"RR123456785FR,PC1"[..],
            b"RR123456785FR,PC1,2025-12-22T07:02:11Z,\"open,x",
            b"RR123456785FR,PC1,2025-12-22T07:02:11Z,a\"b,x",
            b"RR123456785FR,PC1,2025-12-22T07:02:11Z,a,b,c,d,e",
            b"RR123456785FR,PC1,2025-12-22T07:02:11Z,a,b,id:1,extra",
            b"\xc3\x28,PC1,2025-12-22T07:02:11Z,a,b",
            b"RR123456785FR,XX1,2025-12-22T07:02:11Z,a,b",
        ] {
            assert!(
                csv(bad, "d", NOW).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
