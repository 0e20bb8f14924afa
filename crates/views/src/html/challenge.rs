//! The attack-mode check page: the only page with a script. The script is a constant file
//! (`challenge.js`) allowed by its hash; what varies per visitor (the seed, the difficulty, the
//! translated failure message) travels in `data-` attributes the script reads.

use super::texts::texts;
use super::{document, escape};
use crate::Lang;

/// The proof-of-work script, inlined verbatim in the check page; its SHA-256 is in
/// [`super::CONTENT_SECURITY_POLICY`].
pub const CHALLENGE_SCRIPT: &str = include_str!("challenge.js");

/// The 403 page of attack mode: explains the wait, finds a nonce whose SHA-256 with `seed` starts
/// with `difficulty` zero bits, posts it to `/v1/challenge` and reloads.
#[must_use]
pub fn challenge(lang: Lang, seed: &str, difficulty: u8) -> String {
    let t = texts(lang);
    let main = format!(
        "<h1>{title}</h1><div id=\"pow\" data-seed=\"{seed}\" data-bits=\"{difficulty}\" \
data-failed=\"{failed}\"><p id=\"msg\" role=\"status\">{text}</p></div>\
<noscript><p>{noscript}</p></noscript><script>{CHALLENGE_SCRIPT}</script>",
        title = escape(t.challenge_title),
        seed = escape(seed),
        failed = escape(t.challenge_failed),
        text = escape(t.challenge_text),
        noscript = escape(t.challenge_noscript),
    );
    document(lang, t.challenge_title, None, &main)
}
