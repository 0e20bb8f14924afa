//! `GET /suivi/v2/idships/{id}[,{id}…]`: La Poste's Suivi v2, so shops and plugins written for
//! `api.laposte.fr` work by changing the host (docs/suivi-v2.md). The documents are written by
//! `rempart_views::suivi`; this is admission and lookup.
//!
//! Every number of a batch goes through the same steps as a single lookup, in order: its syntax
//! (an invalid one is answered in its envelope, as La Poste does), then the shield
//! ([`lookup::check`]: existence filter, rate limits — ten numbers cost ten lookups —, attack
//! mode's challenge), then the cache and storage under the concurrency limit ([`lookup::fetch`]),
//! one number at a time. A rate limit or a challenge met by any number answers the whole request
//! (429 or 403, Rempart's JSON errors), as it would a single lookup. The only query parameter read
//! is `lang`, and only its six values.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use rempart_domain::TrackingNumber;
use rempart_shield::Priority;
use rempart_views::Lang;
use rempart_views::suivi::{self, IdShipsError, Lookup, MAX_IDSHIPS};

use super::caching::{self, Validators};
use super::lookup::{self, Fetched, Page, percent_decode};
use crate::app::App;
use crate::coherence::cache::CachedParcel;
use crate::content::JSON;
use crate::edge::{Request, Response};
use crate::guard::{Admission, Reason};

/// The route's path prefix; what follows is `{id}[,{id}…]`.
pub const PREFIX: &str = "/suivi/v2/idships/";
/// Longest `{id}[,{id}…]` segment examined: ten numbers typed with spaces, percent-encoded, fit.
pub const MAX_IDSHIPS_SEGMENT: usize = 1024;

/// One identifier of a batch after admission.
enum Item {
    /// Not a tracking number: what was asked (repeated back, cut and neutralised, by the views).
    Invalid(String),
    /// The existence filter knows no such parcel: 104 without storage.
    Unknown(TrackingNumber),
    /// Let through: to be looked up at this priority.
    Admitted(TrackingNumber, Priority),
}

/// A request the shield let through, waiting for storage.
pub struct Batch {
    lang: Lang,
    items: Vec<Item>,
    validators: Validators,
}

/// Splits and parses the identifiers, and passes each valid one through the shield. `Err`: the
/// request is answered now (malformed, too many numbers, rate limited, challenged).
#[allow(clippy::result_large_err)]
pub fn admit(
    app: &App,
    req: &Request<'_>,
    peer: SocketAddr,
    segment: &str,
) -> Result<Batch, Response> {
    let lang = Lang::from_suivi_query(req.query);
    let malformed = || {
        app.guard.refuse(Reason::Invalid, None);
        Response::error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected /suivi/v2/idships/{id}[,{id}…], each id a tracking number",
        )
    };
    if segment.len() > MAX_IDSHIPS_SEGMENT {
        return Err(malformed());
    }
    let decoded = percent_decode(segment.as_bytes()).ok_or_else(malformed)?;
    let text = String::from_utf8_lossy(&decoded);
    let ids = match suivi::split_idships(&text) {
        Ok(ids) => ids,
        Err(IdShipsError::Empty) => vec![""],
        Err(IdShipsError::TooMany) => {
            app.guard.refuse(Reason::Invalid, None);
            return Err(Response::error(
                StatusCode::BAD_REQUEST,
                "too_many_numbers",
                &format!("at most {MAX_IDSHIPS} tracking numbers per request"),
            ));
        }
    };
    let mut items = Vec::with_capacity(ids.len());
    for id in ids {
        let Ok(tn) = TrackingNumber::parse_typed(id) else {
            app.guard.refuse(Reason::Invalid, None);
            items.push(Item::Invalid(id.to_owned()));
            continue;
        };
        items.push(match lookup::check(app, req, peer, &tn) {
            Admission::Admit(priority) => Item::Admitted(tn, priority),
            Admission::Unknown => Item::Unknown(tn),
            Admission::RateLimited { retry_after } => {
                return Err(lookup::rate_limited(retry_after));
            }
            Admission::Challenge(challenge) => {
                return Err(lookup::challenged(&challenge, Page::Json));
            }
        });
    }
    Ok(Batch {
        lang,
        items,
        validators: Validators::of(req),
    })
}

/// What one identifier gave, owning what its envelope borrows.
enum Outcome {
    Invalid(String),
    NotFound(TrackingNumber),
    Found(Arc<CachedParcel>),
    Unavailable(TrackingNumber),
}

/// Looks each admitted number up, one at a time, and writes the answer.
pub async fn finish(app: &App, peer: SocketAddr, batch: Batch) -> Response {
    let mut outcomes = Vec::with_capacity(batch.items.len());
    let mut stale_for: Option<u64> = None;
    for item in batch.items {
        outcomes.push(match item {
            Item::Invalid(id) => Outcome::Invalid(id),
            Item::Unknown(tn) => Outcome::NotFound(tn),
            Item::Admitted(tn, priority) => match lookup::fetch(app, peer, tn, priority).await {
                Fetched::Found(parcel, age) => {
                    stale_for = stale_for.max(age);
                    Outcome::Found(parcel)
                }
                Fetched::NotFound => Outcome::NotFound(tn),
                Fetched::Unavailable => Outcome::Unavailable(tn),
            },
        });
    }
    answer(
        &outcomes,
        batch.lang,
        app.settings.listeners.public_url.base(),
        &batch.validators,
        stale_for,
    )
}

/// The document and its headers: cacheable (with `ETag`, or `304`) only when every number was
/// found; `Retry-After` when any was shed.
fn answer(
    outcomes: &[Outcome],
    lang: Lang,
    page_base: &str,
    validators: &Validators,
    stale_for: Option<u64>,
) -> Response {
    let lookups: Vec<Lookup<'_>> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Invalid(id) => Lookup::Invalid { id },
            Outcome::NotFound(tn) => Lookup::NotFound(tn),
            Outcome::Found(parcel) => Lookup::Found(&parcel.view),
            Outcome::Unavailable(tn) => Lookup::Unavailable(tn),
        })
        .collect();
    let document = match lookups.as_slice() {
        [one] => suivi::one(*one, lang, page_base),
        many => suivi::many(many, lang, page_base),
    };
    let status = StatusCode::from_u16(document.status).unwrap_or(StatusCode::OK);
    let response = Response::new(status, JSON, document.body);
    let all_found = outcomes.iter().all(|o| matches!(o, Outcome::Found(_)));
    if all_found {
        let etag = crate::content::strong_etag(response.body());
        let response = caching::cacheable(response, caching::LOOKUP, etag, false, validators);
        return lookup::with_age(response, stale_for);
    }
    let response = caching::no_store(response);
    if outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Unavailable(_)))
    {
        response.retry_after(1)
    } else {
        response
    }
}
