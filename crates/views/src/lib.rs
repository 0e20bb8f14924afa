//! What a customer or an integrator sees, as a pure library the server calls: pages in six
//! languages, Europe/Paris local times, La Poste's own wording, and La Poste's Suivi v2 documents.
//!
//! No I/O, no HTTP types, no clock: every function takes what it needs (a [`Lang`], a
//! `ParcelView`, the caller's "now") and returns a string or bytes. The server picks the language
//! ([`Lang::from_accept_language`], [`split_lang_path`], [`Lang::from_suivi_query`]), adds the
//! status and headers ([`html::CONTENT_SECURITY_POLICY`] on every page) and sends.
//!
//! - `lang.rs`: the six languages and how a request chooses one.
//! - `paris.rs`: Europe/Paris offsets by the EU rule and dates as La Poste writes them.
//! - `wording.rs`: event labels, status names, product names, Suivi v2 return messages.
//! - `progress.rs`: the five-step line (announced → delivered) and where a parcel stands on it.
//! - `html/`: the pages, their style sheet and the check page's script.
//! - `suivi.rs`: Suivi v2 documents for one number or several (207).

pub mod html;
mod lang;
pub mod paris;
pub mod progress;
pub mod suivi;
pub mod wording;

#[cfg(test)]
mod testing;

pub use lang::{
    ACCEPT_LANGUAGE_MAX_BYTES, ACCEPT_LANGUAGE_MAX_ITEMS, Lang, QUERY_MAX_PAIRS, split_lang_path,
};

/// Whether a character is one no page or document should carry as is: control characters and
/// invisible or bidirectional format characters (the ones ingest refuses).
fn is_hidden(c: char) -> bool {
    c.is_control() || rempart_domain::is_invisible_format(c)
}

/// `text` with every hidden character replaced by U+FFFD, for data repeated back in JSON.
fn neutralise(text: &str) -> String {
    text.chars()
        .map(|c| if is_hidden(c) { '\u{fffd}' } else { c })
        .collect()
}
