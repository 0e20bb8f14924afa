//! The pages themselves, one function each. `now` is the caller's clock: it decides whether a
//! date needs its year.

use std::fmt::Write as _;

use rempart_domain::{ParcelView, Status, Timestamp, TrackingNumber, TrackingNumberError};

use super::texts::{Texts, texts};
use super::{Place, document, escape, search_form};
use crate::progress::{Progress, Step, Tone};
use crate::wording::{ReturnMessage, event_label, product_name, status_label};
use crate::{Lang, paris};

/// Most suggested numbers the home page lists.
pub const MAX_SUGGESTIONS: usize = 6;
/// Most characters of a refused input a page repeats back.
pub const MAX_SHOWN_INPUT_CHARS: usize = 64;

/// `GET /`: the search form, and `suggestions` (numbers that exist, chosen by the caller) as
/// links to try.
#[must_use]
pub fn home(lang: Lang, suggestions: &[TrackingNumber]) -> String {
    let t = texts(lang);
    let mut main = format!(
        "<h1>{}</h1><p>{}</p>{}",
        escape(t.home_title),
        escape(t.home_intro),
        search_form(lang, "")
    );
    if !suggestions.is_empty() {
        let _ = write!(main, "<p>{}</p><ul class=\"examples\">", escape(t.examples));
        for tn in suggestions.iter().take(MAX_SUGGESTIONS) {
            let _ = write!(
                main,
                "<li><a class=\"mono\" href=\"{}\">{}</a></li>",
                escape(&Place::Track(tn).path(lang)),
                escape(tn.as_str())
            );
        }
        main.push_str("</ul>");
    }
    document(lang, t.home_title, Some(Place::Home), &main)
}

/// `GET /track/{n}` for a parcel with events: where it stands, the five steps, its history.
#[must_use]
pub fn parcel(lang: Lang, view: &ParcelView, now: Timestamp) -> String {
    parcel_with_alerts(lang, view, now, false)
}

/// [`parcel`], with the e-mail alerts form (`alerts::alerts_form`) when `alerts` is true and the
/// parcel is not final yet (a final parcel has nothing more to tell).
#[must_use]
pub fn parcel_with_alerts(lang: Lang, view: &ParcelView, now: Timestamp, alerts: bool) -> String {
    let t = texts(lang);
    let tn = &view.tracking_number;
    let progress = Progress::of(view);
    let mut main = format!("<h1>{}</h1>", escape(t.parcel_title));
    identity(&mut main, t, view);
    summary(&mut main, lang, view, progress, now);
    steps(&mut main, t, lang, progress);
    history(&mut main, t, lang, view, now);
    if alerts && !view.is_final {
        main.push_str(&super::alerts::alerts_form(lang, tn));
    }
    let _ = write!(
        main,
        "<h2>{}</h2>{}",
        escape(t.another),
        search_form(lang, "")
    );
    let title = format!("{} – {}", status_label(view.status, lang), tn.as_str());
    document(lang, &title, Some(Place::Track(tn)), &main)
}

fn identity(main: &mut String, t: &Texts, view: &ParcelView) {
    let _ = write!(
        main,
        "<dl class=\"ids\"><div><dt>{}</dt><dd class=\"mono\">{}</dd></div>",
        escape(t.number),
        escape(view.tracking_number.as_str())
    );
    if let Some(product) = &view.product {
        let _ = write!(
            main,
            "<div><dt>{}</dt><dd>{}</dd></div>",
            escape(t.product),
            escape(&product_name(product))
        );
    }
    main.push_str("</dl>");
}

/// The headline: the status, what the latest event says, when and where, and a note when the
/// parcel needs the customer's attention.
fn summary(main: &mut String, lang: Lang, view: &ParcelView, p: Progress, now: Timestamp) {
    let tone = tone_class(p.tone);
    let _ = write!(
        main,
        "<section class=\"summary {tone}\" aria-labelledby=\"status\"><h2 id=\"status\">{}</h2>",
        escape(status_label(view.status, lang))
    );
    if let Some(latest) = view.events.first() {
        let _ = write!(
            main,
            "<p>{}</p><p class=\"meta\">",
            escape(event_label(latest.code, lang))
        );
        time_element(main, latest.occurred_at, lang, now);
        if let Some(place) = &latest.location {
            let _ = write!(main, " · {}", escape(place));
        }
        main.push_str("</p>");
    }
    if let Some(note) = note(texts(lang), view.status) {
        let _ = write!(main, "<p class=\"note\">{}</p>", escape(note));
    }
    main.push_str("</section>");
}

fn tone_class(tone: Tone) -> &'static str {
    match tone {
        Tone::Ok => "ok",
        Tone::Info => "info",
        Tone::Ko => "ko",
    }
}

fn note(t: &Texts, status: Status) -> Option<&'static str> {
    match status {
        Status::Exception => Some(t.note_exception),
        Status::AttemptFailed => Some(t.note_attempt_failed),
        Status::Returned => Some(t.note_returned),
        Status::AvailableForPickup => Some(t.note_pickup),
        Status::InfoReceived | Status::InTransit | Status::OutForDelivery | Status::Delivered => {
            None
        }
    }
}

/// The five-step line: steps before the current one are done, the current one is marked (and
/// named after the status when something is wrong), the rest are to come. The state of each step
/// is also written out for screen readers.
fn steps(main: &mut String, t: &Texts, lang: Lang, p: Progress) {
    let _ = write!(
        main,
        "<ol class=\"steps\" aria-label=\"{}\">",
        escape(t.progress)
    );
    for step in Step::ALL {
        let (class, state) = match step.cmp(&p.step) {
            std::cmp::Ordering::Less => ("done", t.step_done),
            std::cmp::Ordering::Equal => ("current", t.step_current),
            std::cmp::Ordering::Greater => ("todo", t.step_todo),
        };
        let current = step == p.step;
        let _ = write!(
            main,
            "<li class=\"{class}{}\"{}><span class=\"vh\">{}, </span>{}</li>",
            if current {
                format!(" {}", tone_class(p.tone))
            } else {
                String::new()
            },
            if current {
                " aria-current=\"step\""
            } else {
                ""
            },
            escape(state),
            escape(p.label(step, lang))
        );
    }
    main.push_str("</ol>");
}

/// Every event of the view, newest first, with its Paris time, label and place; a notice first
/// when the view was cut.
fn history(main: &mut String, t: &Texts, lang: Lang, view: &ParcelView, now: Timestamp) {
    let _ = write!(main, "<h2>{}</h2>", escape(t.history));
    if view.events_truncated {
        let text = t
            .truncated
            .replace("{shown}", &view.events.len().to_string())
            .replace("{total}", &view.events_total.to_string());
        let _ = write!(main, "<p class=\"truncated\">{}</p>", escape(&text));
    }
    main.push_str("<ol class=\"events\">");
    for e in &view.events {
        main.push_str("<li>");
        time_element(main, e.occurred_at, lang, now);
        let _ = write!(
            main,
            "<span class=\"what\">{}</span>",
            escape(event_label(e.code, lang))
        );
        if let Some(place) = &e.location {
            let _ = write!(main, "<span class=\"where\">{}</span>", escape(place));
        }
        main.push_str("</li>");
    }
    let _ = write!(main, "</ol><p class=\"hint\">{}</p>", escape(t.times));
}

/// `<time datetime="2025-12-22T07:02:11+01:00">lundi 22 décembre, 07:02</time>`
fn time_element(main: &mut String, at: Timestamp, lang: Lang, now: Timestamp) {
    let _ = write!(
        main,
        "<time datetime=\"{}\">{}</time>",
        paris::rfc3339_local(at),
        escape(&paris::human(at, lang, now))
    );
}

/// `GET /track/{n}` for a valid number no event is known for yet (La Poste's 104 wording).
#[must_use]
pub fn not_found(lang: Lang, tn: &TrackingNumber) -> String {
    let t = texts(lang);
    let main = format!(
        "<h1>{}</h1><p class=\"mono\">{}</p><p>{}</p>{}",
        escape(t.not_found_title),
        escape(tn.as_str()),
        escape(ReturnMessage::NotYetAvailable.text(lang)),
        search_form(lang, tn.as_str())
    );
    document(lang, t.not_found_title, Some(Place::Track(tn)), &main)
}

/// `GET /track/{x}` when `x` is not a tracking number: what was typed (escaped, cut to
/// [`MAX_SHOWN_INPUT_CHARS`]), why it is not one, and the form to try again.
#[must_use]
pub fn invalid(lang: Lang, input: &str, error: &TrackingNumberError) -> String {
    let t = texts(lang);
    let shown: String = input.trim().chars().take(MAX_SHOWN_INPUT_CHARS).collect();
    let reason = match error {
        TrackingNumberError::Length(n) => t.reason_length.replace("{n}", &n.to_string()),
        TrackingNumberError::Format => t.reason_format.to_owned(),
        TrackingNumberError::Country(cc) => {
            let cc: String = cc.chars().take(2).collect();
            t.reason_country.replace("{cc}", &cc)
        }
        TrackingNumberError::CheckDigit => t.reason_check.to_owned(),
    };
    let main = format!(
        "<h1>{}</h1><p>{} <strong class=\"mono\">{}</strong></p><p>{}</p><p>{}</p>{}",
        escape(t.invalid_title),
        escape(t.you_typed),
        escape(&shown),
        escape(&reason),
        escape(ReturnMessage::InvalidNumber.text(lang)),
        search_form(lang, &shown)
    );
    document(lang, t.invalid_title, Some(Place::Home), &main)
}

/// The 503 page: the node is shedding load; the number is fine, try again shortly.
#[must_use]
pub fn busy(lang: Lang, tn: &TrackingNumber) -> String {
    let t = texts(lang);
    let main = format!(
        "<h1>{}</h1><p>{}</p>{}",
        escape(t.busy_title),
        escape(t.busy_text),
        search_form(lang, tn.as_str())
    );
    document(lang, t.busy_title, Some(Place::Track(tn)), &main)
}
