//! The languages Rempart speaks and how a request picks one.
//!
//! Six languages, the six of La Poste's Suivi v2 API: French (the default), English, German,
//! Spanish, Italian and Dutch. A page's language comes from its path (`/en/track/{n}`), else from
//! the browser's `Accept-Language`; a Suivi v2 document's from its `lang` parameter (`fr_FR`…).
//! Every parser here reads a bounded prefix of its input, so a hostile header costs no more than
//! a short one.

/// One of the six languages. Pages, event labels and Suivi v2 messages exist in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    Fr,
    En,
    De,
    Es,
    It,
    Nl,
}

/// Bytes of an `Accept-Language` header that are read; the rest is ignored. Real browsers send
/// well under 100.
pub const ACCEPT_LANGUAGE_MAX_BYTES: usize = 512;
/// Comma-separated entries of an `Accept-Language` header that are read.
pub const ACCEPT_LANGUAGE_MAX_ITEMS: usize = 32;
/// `&`-separated pairs of a Suivi v2 query string that are read when looking for `lang`.
pub const QUERY_MAX_PAIRS: usize = 16;

impl Lang {
    /// Every language, French first.
    pub const ALL: [Lang; 6] = [Lang::Fr, Lang::En, Lang::De, Lang::Es, Lang::It, Lang::Nl];
    /// What is shown when nothing says otherwise.
    pub const DEFAULT: Lang = Lang::Fr;

    /// The position in [`Lang::ALL`], for tables written in that order.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The ISO 639-1 code, for `lang` attributes and path prefixes: `fr`, `en`…
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
            Lang::De => "de",
            Lang::Es => "es",
            Lang::It => "it",
            Lang::Nl => "nl",
        }
    }

    /// La Poste's Suivi v2 value: `fr_FR`, `en_GB`, `de_DE`, `es_ES`, `it_IT`, `nl_NL`.
    #[must_use]
    pub fn laposte(self) -> &'static str {
        match self {
            Lang::Fr => "fr_FR",
            Lang::En => "en_GB",
            Lang::De => "de_DE",
            Lang::Es => "es_ES",
            Lang::It => "it_IT",
            Lang::Nl => "nl_NL",
        }
    }

    /// The language's name in itself, for the language links of every page.
    #[must_use]
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::Fr => "Français",
            Lang::En => "English",
            Lang::De => "Deutsch",
            Lang::Es => "Español",
            Lang::It => "Italiano",
            Lang::Nl => "Nederlands",
        }
    }

    /// The path prefix of pages in this language: `/fr`, `/en`… (`/fr/track/{n}` is French
    /// whatever the browser says; the unprefixed `/track/{n}` follows `Accept-Language`).
    #[must_use]
    pub fn path_prefix(self) -> &'static str {
        match self {
            Lang::Fr => "/fr",
            Lang::En => "/en",
            Lang::De => "/de",
            Lang::Es => "/es",
            Lang::It => "/it",
            Lang::Nl => "/nl",
        }
    }

    /// Exactly one of La Poste's six `lang` values (case-sensitive, as La Poste documents them).
    #[must_use]
    pub fn from_laposte(value: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.laposte() == value)
    }

    /// A two-letter path segment (`en`), case-sensitive: `/EN/…` is not a language path.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.code() == code)
    }

    /// The language of a Suivi v2 query string (`lang=en_GB&…`, without the `?`): the first `lang`
    /// pair among the first [`QUERY_MAX_PAIRS`]; French when absent or not one of the six values.
    /// Nothing else of the query is read, so no other parameter can vary an answer.
    #[must_use]
    pub fn from_suivi_query(query: &str) -> Lang {
        query
            .split('&')
            .take(QUERY_MAX_PAIRS)
            .find_map(|pair| pair.strip_prefix("lang="))
            .and_then(Lang::from_laposte)
            .unwrap_or(Lang::DEFAULT)
    }

    /// Picks a language from an `Accept-Language` header (RFC 9110 §12.5.4): the supported
    /// language with the highest q-value, ties to the first listed; region subtags are ignored
    /// (`fr-CA` is French, `en-US` English); `*` stands for the default; `q=0` excludes; an entry
    /// with a malformed q-value is skipped. French when nothing matches. Reads at most
    /// [`ACCEPT_LANGUAGE_MAX_BYTES`] bytes and [`ACCEPT_LANGUAGE_MAX_ITEMS`] entries.
    #[must_use]
    pub fn from_accept_language(header: &[u8]) -> Lang {
        let header = &header[..header.len().min(ACCEPT_LANGUAGE_MAX_BYTES)];
        let mut best: Option<(u16, Lang)> = None;
        for item in header.split(|&b| b == b',').take(ACCEPT_LANGUAGE_MAX_ITEMS) {
            let mut parts = item.split(|&b| b == b';');
            let tag = parts.next().unwrap_or_default().trim_ascii();
            let Some(q) = quality(parts) else { continue };
            let Some(lang) = language_of_tag(tag) else {
                continue;
            };
            if q > 0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::DEFAULT, |(_, lang)| lang)
    }
}

/// The language a tag names, by its primary subtag: `fr`, `FR-be`, `en_GB` (a common mistake)…
/// `*` is the default language.
fn language_of_tag(tag: &[u8]) -> Option<Lang> {
    if tag == b"*" {
        return Some(Lang::DEFAULT);
    }
    let primary = tag.split(|&b| b == b'-' || b == b'_').next()?;
    if primary.len() != 2 {
        return None;
    }
    let code = [
        primary[0].to_ascii_lowercase(),
        primary[1].to_ascii_lowercase(),
    ];
    Lang::ALL.into_iter().find(|l| l.code().as_bytes() == code)
}

/// The q-value among an entry's parameters, in thousandths (1000 when absent); `None` when
/// malformed (`q=2`, `q=0.1234`, `q=abc`).
fn quality<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    for param in params {
        let param = param.trim_ascii();
        let Some(value) = param
            .strip_prefix(b"q=")
            .or_else(|| param.strip_prefix(b"Q="))
        else {
            continue;
        };
        return parse_qvalue(value.trim_ascii());
    }
    Some(1000)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(value: &[u8]) -> Option<u16> {
    let (whole, fraction) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Splits a language prefix off a page path: `/en/track/X` → (`Some(En)`, `/track/X`), `/en` and
/// `/en/` → (`Some(En)`, `/`), anything else → (`None`, the path unchanged).
#[must_use]
pub fn split_lang_path(path: &str) -> (Option<Lang>, &str) {
    let Some(rest) = path.strip_prefix('/') else {
        return (None, path);
    };
    let (first, tail) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    match Lang::from_code(first) {
        Some(lang) => (Some(lang), tail),
        None => (None, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pick(header: &str) -> Lang {
        Lang::from_accept_language(header.as_bytes())
    }

    #[test]
    fn browsers_headers_pick_the_preferred_supported_language() {
        assert_eq!(pick("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"), Lang::Fr);
        assert_eq!(pick("en-US,en;q=0.9"), Lang::En);
        assert_eq!(pick("de-CH, de;q=0.9, fr;q=0.8"), Lang::De);
        assert_eq!(pick("ja,zh;q=0.9,es;q=0.3"), Lang::Es);
        assert_eq!(pick("pt-BR,it;q=0.5,nl;q=0.6"), Lang::Nl);
        assert_eq!(pick("EN-gb"), Lang::En);
        assert_eq!(pick("en_GB"), Lang::En);
    }

    #[test]
    fn q_values_order_and_exclude() {
        assert_eq!(pick("fr;q=0.1, en;q=0.9"), Lang::En);
        assert_eq!(
            pick("fr;q=0.5, en;q=0.5"),
            Lang::Fr,
            "ties go to the first listed"
        );
        assert_eq!(pick("en;q=0, de"), Lang::De);
        assert_eq!(pick("en;q=0.000"), Lang::Fr, "q=0 is 'not acceptable'");
        assert_eq!(pick("en ; Q=1.000"), Lang::En);
        assert_eq!(pick("de;q=0.5, *;q=0.8"), Lang::Fr, "* is the default");
        assert_eq!(pick("en;level=1;q=0.9, de;q=0.8"), Lang::En);
    }

    #[test]
    fn nothing_usable_means_french() {
        for header in [
            "",
            ",,,",
            "ja",
            "english",
            "e",
            "en;q=2",
            "en;q=1.5",
            "en;q=0.1234",
            "en;q=-1",
            "en;q=",
            "en;q=.5",
            "\u{0}\u{ff}",
        ] {
            assert_eq!(pick(header), Lang::Fr, "{header:?}");
        }
        assert_eq!(Lang::from_accept_language(b"\xff\xfe,en"), Lang::En);
    }

    #[test]
    fn hostile_headers_are_read_only_up_to_the_bounds() {
        // The supported language comes after the byte bound: it is never seen.
        let long = format!("{}en", "x;q=0.5,".repeat(100));
        assert!(long.len() > ACCEPT_LANGUAGE_MAX_BYTES);
        assert_eq!(pick(&long), Lang::Fr);
        // Within the byte bound but after the item bound: not seen either.
        let many = format!("{}en", ",".repeat(ACCEPT_LANGUAGE_MAX_ITEMS));
        assert!(many.len() < ACCEPT_LANGUAGE_MAX_BYTES);
        assert_eq!(pick(&many), Lang::Fr);
        let just_within = format!("{}en", ",".repeat(ACCEPT_LANGUAGE_MAX_ITEMS - 1));
        assert_eq!(pick(&just_within), Lang::En);
        // A megabyte costs what 512 bytes cost, and does not panic.
        let huge = vec![b'e'; 1 << 20];
        assert_eq!(Lang::from_accept_language(&huge), Lang::Fr);
    }

    #[test]
    fn index_is_the_position_in_all() {
        for (i, lang) in Lang::ALL.into_iter().enumerate() {
            assert_eq!(lang.index(), i);
        }
    }

    #[test]
    fn la_poste_values_are_exact() {
        for lang in Lang::ALL {
            assert_eq!(Lang::from_laposte(lang.laposte()), Some(lang));
        }
        for bad in ["", "fr", "FR_fr", "fr-FR", "en_US", "fr_FR ", "de_de"] {
            assert_eq!(Lang::from_laposte(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_suivi_query_reads_lang_only() {
        assert_eq!(Lang::from_suivi_query(""), Lang::Fr);
        assert_eq!(Lang::from_suivi_query("lang=en_GB"), Lang::En);
        assert_eq!(Lang::from_suivi_query("x=1&lang=nl_NL&y=2"), Lang::Nl);
        assert_eq!(Lang::from_suivi_query("lang=xx_XX"), Lang::Fr);
        assert_eq!(Lang::from_suivi_query("LANG=en_GB"), Lang::Fr);
        assert_eq!(Lang::from_suivi_query("lang=en_GB&lang=de_DE"), Lang::En);
        let far = format!("{}lang=de_DE", "a=1&".repeat(QUERY_MAX_PAIRS));
        assert_eq!(Lang::from_suivi_query(&far), Lang::Fr);
    }

    #[test]
    fn language_paths_split_off_their_prefix() {
        assert_eq!(
            split_lang_path("/en/track/RR123456785FR"),
            (Some(Lang::En), "/track/RR123456785FR")
        );
        assert_eq!(split_lang_path("/fr/track/X"), (Some(Lang::Fr), "/track/X"));
        assert_eq!(split_lang_path("/de"), (Some(Lang::De), "/"));
        assert_eq!(split_lang_path("/nl/"), (Some(Lang::Nl), "/"));
        for unprefixed in [
            "/track/X",
            "/",
            "",
            "/EN/track/X",
            "/eng/x",
            "/e/x",
            "track",
        ] {
            assert_eq!(split_lang_path(unprefixed), (None, unprefixed));
        }
        for lang in Lang::ALL {
            let path = format!("{}/track/N", lang.path_prefix());
            assert_eq!(split_lang_path(&path), (Some(lang), "/track/N"));
        }
    }

    proptest! {
        #[test]
        fn any_header_picks_some_language_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
            let _ = Lang::from_accept_language(&bytes);
        }

        /// A header naming exactly one supported language with a positive q picks it, whatever
        /// unsupported entries surround it.
        #[test]
        fn one_supported_language_is_found(
            lang in prop::sample::select(Lang::ALL.to_vec()),
            region in "[A-Z]{2}",
            q in 1u16..=1000,
            noise in prop::collection::vec("(ja|zh|pt|ru|ar|sv)(-[A-Z]{2})?", 0..5),
        ) {
            let mut items: Vec<String> = noise.iter().map(|n| format!("{n};q=0.9")).collect();
            let q = if q == 1000 { "1".to_string() } else { format!("0.{q:03}") };
            items.insert(items.len() / 2, format!("{}-{region};q={q}", lang.code()));
            prop_assert_eq!(pick(&items.join(", ")), lang);
        }

        /// Any path splits without panicking, and what is split off is exactly a language prefix.
        #[test]
        fn any_path_splits_safely(path in "\\PC{0,40}", lang in prop::sample::select(Lang::ALL.to_vec())) {
            let (found, rest) = split_lang_path(&path);
            match found {
                Some(l) => prop_assert!(path.starts_with(l.path_prefix()) && path.ends_with(rest.trim_start_matches('/'))),
                None => prop_assert_eq!(rest, path.as_str()),
            }
            let prefixed = format!("{}{}", lang.path_prefix(), if path.starts_with('/') { path.clone() } else { format!("/{path}") });
            prop_assert_eq!(split_lang_path(&prefixed).0, Some(lang));
        }

        #[test]
        fn q_values_parse_to_their_value(t in 0u16..=1000) {
            let text = if t == 1000 { "1.000".to_string() } else { format!("0.{t:03}") };
            prop_assert_eq!(parse_qvalue(text.as_bytes()), Some(t));
        }
    }
}
