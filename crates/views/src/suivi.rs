//! La Poste's Suivi v2 documents, so that shops and plugins written for
//! `GET https://api.laposte.fr/suivi/v2/idships/{id}[,{id}…]` work by changing the host.
//!
//! One number asked: one envelope `{lang, scope, returnCode, returnMessage?, idShip?, shipment?}`
//! with the HTTP status La Poste uses (200 found, 404 + returnCode 104 not found yet, 400 + 400
//! not a number). Several numbers: a JSON array of those envelopes under HTTP 207, each with its
//! own returnCode. The mapping from Rempart's view, and what has no equivalent, is written down in
//! docs/suivi-v2.md; the contract test below checks every field and type against La Poste's
//! published OpenAPI description (tests/fixtures/laposte-suivi-v2-openapi.json).

use rempart_domain::{ParcelView, Status, TrackingNumber};
use serde::Serialize;

use crate::progress::{Progress, Step, step_dates};
use crate::wording::{Product, ReturnMessage, event_label};
use crate::{Lang, neutralise, paris};

/// Most numbers one request may ask for (La Poste: "1 to 10, comma separated").
pub const MAX_IDSHIPS: usize = 10;
/// Most characters of a refused identifier an answer repeats back in `idShip`.
pub const MAX_ECHOED_ID_CHARS: usize = 64;

/// Why the `{id}[,{id}…]` path segment cannot be answered at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdShipsError {
    #[error("no tracking number in the path")]
    Empty,
    #[error("at most {MAX_IDSHIPS} tracking numbers per request")]
    TooMany,
}

/// Splits `{id}[,{id}…]` into its identifiers (still to be parsed one by one); reads at most
/// [`MAX_IDSHIPS`] + 1 of them. An empty identifier between commas stays, as an invalid one.
pub fn split_idships(segment: &str) -> Result<Vec<&str>, IdShipsError> {
    if segment.trim().is_empty() {
        return Err(IdShipsError::Empty);
    }
    let ids: Vec<&str> = segment.split(',').take(MAX_IDSHIPS + 1).collect();
    if ids.len() > MAX_IDSHIPS {
        return Err(IdShipsError::TooMany);
    }
    Ok(ids)
}

/// What a lookup of one identifier gave.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    Found(&'a ParcelView),
    /// A valid number no event is known for.
    NotFound(&'a TrackingNumber),
    /// Not a tracking number; `id` is what was asked, repeated back (cut and neutralised).
    Invalid {
        id: &'a str,
    },
    /// A valid number that could not be looked up now (the node shed the read).
    Unavailable(&'a TrackingNumber),
}

/// A Suivi v2 answer: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiviDocument {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The answer for one identifier. `page_base` is prefixed to the parcel page path in `url`
/// (`https://suivi.example.fr`, or empty for a path relative to the host).
#[must_use]
pub fn one(lookup: Lookup<'_>, lang: Lang, page_base: &str) -> SuiviDocument {
    SuiviDocument {
        status: http_status(lookup),
        body: serde_json::to_vec(&envelope(lookup, lang, page_base))
            .expect("Suivi documents always serialize"),
    }
}

/// The 207 answer for several identifiers (at most [`MAX_IDSHIPS`]; more are not written).
#[must_use]
pub fn many(lookups: &[Lookup<'_>], lang: Lang, page_base: &str) -> SuiviDocument {
    debug_assert!(lookups.len() <= MAX_IDSHIPS);
    let envelopes: Vec<Envelope<'_>> = lookups
        .iter()
        .take(MAX_IDSHIPS)
        .map(|&l| envelope(l, lang, page_base))
        .collect();
    SuiviDocument {
        status: 207,
        body: serde_json::to_vec(&envelopes).expect("Suivi documents always serialize"),
    }
}

fn http_status(lookup: Lookup<'_>) -> u16 {
    match lookup {
        Lookup::Found(_) => 200,
        Lookup::NotFound(_) => 404,
        Lookup::Invalid { .. } => 400,
        Lookup::Unavailable(_) => 503,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    lang: &'static str,
    scope: &'static str,
    return_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    return_message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_ship: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shipment: Option<Shipment<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Shipment<'a> {
    id_ship: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a str>,
    is_final: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery_date: Option<String>,
    timeline: Vec<TimelineStep>,
    event: Vec<SuiviEvent>,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TimelineStep {
    id: u8,
    short_label: &'static str,
    long_label: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<String>,
    status: bool,
    #[serde(rename = "type")]
    kind: i8,
}

#[derive(Serialize)]
struct SuiviEvent {
    code: &'static str,
    label: &'static str,
    date: String,
}

fn envelope<'a>(lookup: Lookup<'a>, lang: Lang, page_base: &str) -> Envelope<'a> {
    let mut env = Envelope {
        lang: lang.laposte(),
        scope: "open",
        return_code: 200,
        return_message: None,
        id_ship: None,
        shipment: None,
    };
    let (code, message, id) = match lookup {
        Lookup::Found(view) => {
            env.shipment = Some(shipment(view, lang, page_base));
            return env;
        }
        Lookup::NotFound(tn) => (104, ReturnMessage::NotYetAvailable, tn.as_str().to_owned()),
        Lookup::Invalid { id } => (400, ReturnMessage::InvalidNumber, echoed(id)),
        Lookup::Unavailable(tn) => (504, ReturnMessage::Unavailable, tn.as_str().to_owned()),
    };
    env.return_code = code;
    env.return_message = Some(message.text(lang));
    env.id_ship = Some(id);
    env
}

/// A refused identifier as repeated back: trimmed, cut, invisible characters neutralised.
fn echoed(id: &str) -> String {
    neutralise(
        &id.trim()
            .chars()
            .take(MAX_ECHOED_ID_CHARS)
            .collect::<String>(),
    )
}

fn shipment<'a>(view: &'a ParcelView, lang: Lang, page_base: &str) -> Shipment<'a> {
    let progress = Progress::of(view);
    let dates = step_dates(view);
    let latest_label = view
        .events
        .first()
        .map_or("", |e| event_label(e.code, lang));
    let timeline = Step::ALL
        .into_iter()
        .map(|step| {
            let reached = step <= progress.step;
            let current = step == progress.step;
            TimelineStep {
                id: step.number(),
                short_label: progress.label(step, lang),
                long_label: if current { latest_label } else { "" },
                date: dates[usize::from(step.number()) - 1]
                    .filter(|_| reached)
                    .map(paris::rfc3339_local),
                status: reached,
                kind: if current {
                    progress.tone.suivi_type()
                } else {
                    1
                },
            }
        })
        .collect();
    let delivered = view.status == Status::Delivered;
    Shipment {
        id_ship: view.tracking_number.as_str(),
        holder: view
            .product
            .as_deref()
            .and_then(Product::recognise)
            .map(Product::holder),
        product: view.product.as_deref(),
        is_final: view.is_final,
        // Entry into the network: the first event past the announcement.
        entry_date: dates[1..]
            .iter()
            .flatten()
            .min()
            .map(|&t| paris::rfc3339_local(t)),
        delivery_date: delivered
            .then(|| {
                view.events
                    .first()
                    .map(|e| paris::rfc3339_local(e.occurred_at))
            })
            .flatten(),
        timeline,
        event: view
            .events
            .iter()
            .map(|e| SuiviEvent {
                code: e.code.as_str(),
                label: event_label(e.code, lang),
                date: paris::rfc3339_local(e.occurred_at),
            })
            .collect(),
        url: format!(
            "{page_base}{}/track/{}",
            lang.path_prefix(),
            view.tracking_number.as_str()
        ),
    }
}

#[cfg(any(test, feature = "contract"))]
pub mod contract;
#[cfg(test)]
mod tests;
