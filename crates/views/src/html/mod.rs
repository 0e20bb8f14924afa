//! The HTML pages customers see: the search form, a parcel, "not found yet", "not a tracking
//! number", "try again shortly", and the attack-mode check. Strings in, a string out: the server
//! adds the status, the headers and [`CONTENT_SECURITY_POLICY`].
//!
//! Every page is one document with its style inline, allowed by hash in the policy (no
//! `unsafe-inline`); only the check page has a script, also allowed by hash. Everything that comes
//! from data (numbers, places, products, what a visitor typed, a seed) goes through [`escape`].
//! Pages link to each other by path, with the language in the path (`/en/track/{n}`); nothing
//! here reads or writes a query string.

pub mod alerts;
mod challenge;
mod pages;
mod texts;

use std::fmt::Write as _;

use rempart_domain::TrackingNumber;

pub use challenge::{CHALLENGE_SCRIPT, challenge};
pub use pages::{
    MAX_SHOWN_INPUT_CHARS, MAX_SUGGESTIONS, busy, home, invalid, not_found, parcel,
    parcel_with_alerts,
};

use crate::Lang;
use texts::texts;

/// The style sheet of every page, inlined in a `<style>` element.
pub const STYLE: &str = include_str!("style.css");

/// The `Content-Security-Policy` every page needs: nothing loads from elsewhere, the inline style
/// and the check page's script are allowed by their SHA-256 (never `unsafe-inline`), the script
/// may post to its own origin, forms submit to the same origin, no page can be framed. The two
/// hashes are those of [`STYLE`] and [`CHALLENGE_SCRIPT`]; a test recomputes them from the pages
/// themselves and fails, printing the right value, if either file changes without this line.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'sha256-L3IegYB+76RICcLGI1Nk6we9sSBeglUrHNvbp8BBsU0='; style-src 'sha256-K5F3J9BfIs9/ODTMfTKuSpmQLH5rjXq2Hgoufua7icY='; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Escapes text for element content and attribute values. Invisible and bidirectional format
/// characters and control characters become U+FFFD: older stored data (from before ingest refused
/// them) cannot reorder or hide what a page shows.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if crate::is_hidden(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Which page is shown, so the language links can point at the same page in each language.
#[derive(Clone, Copy)]
enum Place<'a> {
    Home,
    Track(&'a TrackingNumber),
}

impl Place<'_> {
    fn path(self, lang: Lang) -> String {
        match self {
            Place::Home => format!("{}/", lang.path_prefix()),
            Place::Track(tn) => format!("{}/track/{}", lang.path_prefix(), tn.as_str()),
        }
    }
}

/// The frame of every page: `lang`, title, header with the language links, `main`.
fn document(lang: Lang, title: &str, place: Option<Place<'_>>, main: &str) -> String {
    let t = texts(lang);
    let mut out = String::with_capacity(STYLE.len() + main.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"{code}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{title} – {site}</title><style>{STYLE}</style></head><body>\
<header><div class=\"bar\"><a class=\"brand\" href=\"{home}\">{site}</a>",
        code = lang.code(),
        title = escape(title),
        site = escape(t.site),
        home = Place::Home.path(lang),
    );
    if let Some(place) = place {
        language_links(&mut out, lang, place);
    }
    let _ = writeln!(out, "</div></header><main>{main}</main></body></html>");
    out
}

fn language_links(out: &mut String, current: Lang, place: Place<'_>) {
    let _ = write!(
        out,
        "<nav aria-label=\"{}\"><ul>",
        escape(texts(current).languages)
    );
    for lang in Lang::ALL {
        let marker = if lang == current {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<li><a href=\"{href}\" hreflang=\"{code}\" lang=\"{code}\"{marker}>{name}</a></li>",
            href = escape(&place.path(lang)),
            code = lang.code(),
            name = lang.native_name(),
        );
    }
    out.push_str("</ul></nav>");
}

/// The search form, posting to `{prefix}/track`, pre-filled with `value`.
fn search_form(lang: Lang, value: &str) -> String {
    let t = texts(lang);
    format!(
        "<form method=\"post\" action=\"{prefix}/track\"><label for=\"n\">{label}</label>\
<p class=\"hint\" id=\"n-hint\">{hint}</p><div class=\"row\">\
<input id=\"n\" name=\"n\" type=\"text\" value=\"{value}\" maxlength=\"64\" required \
autocomplete=\"off\" autocapitalize=\"characters\" spellcheck=\"false\" aria-describedby=\"n-hint\">\
<button type=\"submit\">{submit}</button></div></form>",
        prefix = lang.path_prefix(),
        label = escape(t.number_label),
        hint = escape(t.number_hint),
        value = escape(value),
        submit = escape(t.submit),
    )
}

#[cfg(test)]
mod tests;
