//! Tracking numbers: the two accepted formats and their check digits (docs/api.md, "Conventions").
//!
//! A [`TrackingNumber`] is valid by construction: the only way to get one is [`TrackingNumber::parse`]
//! (or [`TrackingNumber::from_bytes`] on stored, already-validated bytes, which re-validates).
//!
//! Two entry points, on purpose: [`TrackingNumber::parse`] is the strict form machines send (ingest,
//! the JSON API: 13 characters, surrounding spaces trimmed, any case), and
//! [`TrackingNumber::parse_typed`] is what a person types or pastes into a form or an address bar
//! (`6A 1000 0000 016`, `rr-123-456-785-fr`): it also drops the spaces and dashes people use to
//! group characters. Ingest stays strict, so a depot that sends `6A 1000…` learns of its bug
//! instead of storing a form a customer would never see.

use std::fmt;

use crate::countries::is_iso3166_alpha2;

/// Both accepted formats are exactly 13 ASCII characters long.
pub const LEN: usize = 13;

/// Longest input, in bytes, [`TrackingNumber::parse_typed`] looks at: 13 characters with a
/// separator between each and spaces around still fit; anything longer is refused before any
/// character is examined one by one.
pub const TYPED_MAX_BYTES: usize = 64;

/// A valid tracking number, stored upper-case as 13 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackingNumber([u8; LEN]);

/// Why a string is not a tracking number. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingNumberError {
    #[error("a tracking number has 13 characters, this one has {0}")]
    Length(usize),
    #[error(
        "not a tracking number: expected two letters, 9 digits and a country code (e.g. RR123456785FR) or a digit, a letter and 11 digits (e.g. 6A12345678905)"
    )]
    Format,
    #[error("unknown country code {0:?} (ISO 3166 alpha-2 expected)")]
    Country(String),
    #[error("wrong check digit")]
    CheckDigit,
}

impl TrackingNumber {
    /// Parses a tracking number as typed by a person: surrounding ASCII spaces are trimmed and
    /// letters may be lower-case. Never touches storage.
    pub fn parse(input: &str) -> Result<Self, TrackingNumberError> {
        Self::parse_bytes(input.as_bytes())
    }

    /// Like [`parse`](Self::parse) over raw bytes (e.g. a URL path segment), so that callers need
    /// not validate UTF-8 first.
    pub fn parse_bytes(input: &[u8]) -> Result<Self, TrackingNumberError> {
        let trimmed = input.trim_ascii();
        if trimmed.len() != LEN {
            return Err(TrackingNumberError::Length(trimmed.len()));
        }
        let mut b = [0u8; LEN];
        for (dst, src) in b.iter_mut().zip(trimmed) {
            *dst = src.to_ascii_uppercase();
        }
        if is_s10_shape(&b) {
            let country = [b[11], b[12]];
            if !is_iso3166_alpha2(country) {
                return Err(TrackingNumberError::Country(
                    String::from_utf8_lossy(&country).into_owned(),
                ));
            }
            if s10_check_digit(&b[2..10]) != b[10] - b'0' {
                return Err(TrackingNumberError::CheckDigit);
            }
        } else if is_domestic_shape(&b) {
            if domestic_check_digit(&b[2..12]) != b[12] - b'0' {
                return Err(TrackingNumberError::CheckDigit);
            }
        } else {
            return Err(TrackingNumberError::Format);
        }
        Ok(Self(b))
    }

    /// Parses a number as a person types or pastes it: like [`parse`](Self::parse), and spaces
    /// and dashes anywhere are ignored (ASCII whitespace, `-`, no-break and thin spaces, the
    /// Unicode hyphens and dashes U+2010–U+2015 and minus U+2212). For pages and the search form;
    /// ingest keeps the strict [`parse`](Self::parse).
    pub fn parse_typed(input: &str) -> Result<Self, TrackingNumberError> {
        if input.len() > TYPED_MAX_BYTES {
            return Err(TrackingNumberError::Length(input.chars().count()));
        }
        let mut b = [0u8; LEN];
        let mut n = 0;
        for c in input.chars().filter(|&c| !is_typed_separator(c)) {
            if n < LEN {
                // A non-ASCII character left here is not a separator: let the strict parser
                // refuse it as a format error rather than miscounting its UTF-8 bytes.
                b[n] = if c.is_ascii() { c as u8 } else { b'?' };
            }
            n += 1;
        }
        if n != LEN {
            return Err(TrackingNumberError::Length(n));
        }
        Self::parse_bytes(&b)
    }

    /// Like [`parse_typed`](Self::parse_typed) over raw bytes (e.g. a percent-decoded URL path
    /// segment); bytes that are not UTF-8 are a format error. Text answers exactly as
    /// [`parse_typed`](Self::parse_typed) does, down to the length it reports in characters (the
    /// fuzz target `tracking_number` found bytes reported as characters).
    pub fn parse_typed_bytes(input: &[u8]) -> Result<Self, TrackingNumberError> {
        match std::str::from_utf8(input) {
            Ok(text) => Self::parse_typed(text),
            Err(_) if input.len() > TYPED_MAX_BYTES => {
                Err(TrackingNumberError::Length(input.len()))
            }
            Err(_) => Err(TrackingNumberError::Format),
        }
    }

    /// Rebuilds a tracking number from its 13 stored bytes, validating them again.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrackingNumberError> {
        Self::parse_bytes(bytes)
    }

    /// The 13 upper-case ASCII bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    /// The upper-case text form, e.g. `RR123456785FR`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Every byte was checked to be an ASCII letter or digit in `parse_bytes`.
        std::str::from_utf8(&self.0).expect("tracking numbers are ASCII by construction")
    }

    /// Builds a valid S10 number from a two-letter service indicator, an 8-digit serial and a
    /// country code, computing its check digit. For demo data and traffic generators.
    pub fn s10(service: &str, serial: u32, country: &str) -> Result<Self, TrackingNumberError> {
        if serial > 99_999_999 {
            return Err(TrackingNumberError::Format);
        }
        let serial = format!("{serial:08}");
        let check = s10_check_digit(serial.as_bytes());
        Self::parse(&format!("{service}{serial}{check}{country}"))
    }

    /// Builds a valid domestic number from its leading digit, its letter and a 10-digit body,
    /// computing its check digit. For demo data and traffic generators.
    pub fn domestic(lead: u8, letter: char, body: u64) -> Result<Self, TrackingNumberError> {
        if lead > 9 || body > 9_999_999_999 {
            return Err(TrackingNumberError::Format);
        }
        let body = format!("{body:010}");
        let check = domestic_check_digit(body.as_bytes());
        Self::parse(&format!("{lead}{letter}{body}{check}"))
    }
}

/// The characters people put between groups of a number, or that copying from a PDF or a
/// word processor turns spaces and dashes into. Every ASCII whitespace is one, so that what the
/// strict parser trims (a pasted line break) the typed one ignores too (found by the fuzz
/// target `tracking_number`).
fn is_typed_separator(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\r' | '\x0c' | '-' | '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{2010}'
            ..='\u{2015}' | '\u{2212}'
    )
}

fn is_s10_shape(b: &[u8; LEN]) -> bool {
    b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..11].iter().all(u8::is_ascii_digit)
        && b[11..].iter().all(u8::is_ascii_uppercase)
}

fn is_domestic_shape(b: &[u8; LEN]) -> bool {
    b[0].is_ascii_digit() && b[1].is_ascii_uppercase() && b[2..].iter().all(u8::is_ascii_digit)
}

/// UPU S10 check digit over the 8 serial digits (ASCII): weights 8 6 4 2 3 5 9 7,
/// `c = 11 - (sum mod 11)`, 10 → 0, 11 → 5.
fn s10_check_digit(serial: &[u8]) -> u8 {
    const WEIGHTS: [u32; 8] = [8, 6, 4, 2, 3, 5, 9, 7];
    debug_assert_eq!(serial.len(), 8);
    let sum: u32 = serial
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - sum % 11 {
        10 => 0,
        11 => 5,
        c => c as u8,
    }
}

/// Domestic check digit over the 10 digits before it (ASCII): from the right, weights 3 1 3 1 …,
/// `c = (10 - sum mod 10) mod 10`.
fn domestic_check_digit(body: &[u8]) -> u8 {
    debug_assert_eq!(body.len(), 10);
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for TrackingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TrackingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrackingNumber({})", self.as_str())
    }
}

impl std::str::FromStr for TrackingNumber {
    type Err = TrackingNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for TrackingNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TrackingNumber {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_examples_are_valid() {
        assert_eq!(
            TrackingNumber::parse("RR123456785FR").unwrap().as_str(),
            "RR123456785FR"
        );
        assert_eq!(
            TrackingNumber::parse("6A12345678905").unwrap().as_str(),
            "6A12345678905"
        );
    }

    #[test]
    fn input_is_trimmed_and_upper_cased() {
        let tn = TrackingNumber::parse("  rr123456785fr ").unwrap();
        assert_eq!(tn.as_str(), "RR123456785FR");
        assert_eq!(
            TrackingNumber::parse("6a12345678905").unwrap().as_str(),
            "6A12345678905"
        );
    }

    #[test]
    fn check_digit_special_cases() {
        // sum mod 11 == 1 gives c = 10 → 0; sum mod 11 == 0 gives c = 11 → 5.
        let mut saw_zero = false;
        let mut saw_five_from_eleven = false;
        for serial in 0..2000u32 {
            let s = format!("{serial:08}");
            let sum: u32 = s
                .bytes()
                .zip([8, 6, 4, 2, 3, 5, 9, 7])
                .map(|(d, w)| u32::from(d - b'0') * w)
                .sum();
            let c = s10_check_digit(s.as_bytes());
            match sum % 11 {
                1 => {
                    assert_eq!(c, 0);
                    saw_zero = true;
                }
                0 => {
                    assert_eq!(c, 5);
                    saw_five_from_eleven = true;
                }
                r => assert_eq!(u32::from(c), 11 - r),
            }
        }
        assert!(saw_zero && saw_five_from_eleven);
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            TrackingNumber::parse(""),
            Err(TrackingNumberError::Length(0))
        );
        assert_eq!(
            TrackingNumber::parse("RR123456784FR"),
            Err(TrackingNumberError::CheckDigit)
        );
        assert_eq!(
            TrackingNumber::parse("6A12345678904"),
            Err(TrackingNumberError::CheckDigit)
        );
        assert_eq!(
            TrackingNumber::parse("RR123456785ZZ"),
            Err(TrackingNumberError::Country("ZZ".into()))
        );
        assert_eq!(
            TrackingNumber::parse("RR12345678XFR"),
            Err(TrackingNumberError::Format)
        );
        assert_eq!(
            TrackingNumber::parse("RR1234567é5FR"),
            Err(TrackingNumberError::Length(14))
        );
        assert!(TrackingNumber::parse_bytes(b"RR12345\xff785F").is_err());
        assert!(TrackingNumber::parse("RR 23456785FR").is_err());
    }

    #[test]
    fn builders_compute_the_check_digit() {
        assert_eq!(
            TrackingNumber::s10("RR", 12_345_678, "FR")
                .unwrap()
                .as_str(),
            "RR123456785FR"
        );
        assert_eq!(
            TrackingNumber::domestic(6, 'A', 1_234_567_890)
                .unwrap()
                .as_str(),
            "6A12345678905"
        );
        assert!(TrackingNumber::s10("RR", 100_000_000, "FR").is_err());
    }

    #[test]
    fn typed_numbers_accept_the_groupings_people_use() {
        let domestic = TrackingNumber::parse("6A12345678905").unwrap();
        for typed in [
            "6A 1234 5678 905",
            " 6a-1234-5678-905 ",
            "6A\u{a0}1234\u{202f}5678\u{2009}905",
            "6a\u{2013}12345678905",
            "6 A 1 2 3 4 5 6 7 8 9 0 5",
            "\t6A12345678905\t",
        ] {
            assert_eq!(
                TrackingNumber::parse_typed(typed),
                Ok(domestic),
                "{typed:?}"
            );
        }
        let s10 = TrackingNumber::parse("RR123456785FR").unwrap();
        assert_eq!(TrackingNumber::parse_typed("rr 123 456 785 fr"), Ok(s10));
        assert_eq!(
            TrackingNumber::parse_typed_bytes(b"RR-123-456-785-FR"),
            Ok(s10)
        );
        // The strict parser keeps refusing them: ingest does not guess.
        assert!(TrackingNumber::parse("6A 1234 5678 905").is_err());
        // What the strict parser trims, the typed one ignores (fuzz/regressions/tracking_number).
        for pasted in [
            "RR123456785FR\n",
            "\r\nRR123456785FR",
            "\x0cRR123456785FR\r",
        ] {
            assert_eq!(TrackingNumber::parse(pasted), Ok(s10), "{pasted:?}");
            assert_eq!(TrackingNumber::parse_typed(pasted), Ok(s10), "{pasted:?}");
        }
    }

    #[test]
    fn typed_numbers_still_refuse_what_is_not_a_number() {
        let cases: &[(&str, TrackingNumberError)] = &[
            ("", TrackingNumberError::Length(0)),
            (" - - ", TrackingNumberError::Length(0)),
            ("6A 1234 5678 90", TrackingNumberError::Length(12)),
            ("6A 1234 5678 9055", TrackingNumberError::Length(14)),
            ("6A 1234 5678 904", TrackingNumberError::CheckDigit),
            ("6A.1234.5678.905", TrackingNumberError::Length(16)),
            ("6A_12345678905", TrackingNumberError::Length(14)),
            ("6A1234567890\u{0665}", TrackingNumberError::Format),
            ("6A12345678905\u{200b}", TrackingNumberError::Length(14)),
        ];
        for (typed, err) in cases {
            assert_eq!(
                &TrackingNumber::parse_typed(typed).unwrap_err(),
                err,
                "{typed:?}"
            );
        }
        let long = "6".repeat(TYPED_MAX_BYTES + 1);
        assert!(TrackingNumber::parse_typed(&long).is_err());
        assert!(TrackingNumber::parse_typed_bytes(long.as_bytes()).is_err());
        assert_eq!(
            TrackingNumber::parse_typed_bytes(b"6A1234567890\xff"),
            Err(TrackingNumberError::Format)
        );
        // Too long is told in characters, from text or from bytes alike.
        let accents = "\u{e9}".repeat(TYPED_MAX_BYTES);
        let told = Err(TrackingNumberError::Length(TYPED_MAX_BYTES));
        assert_eq!(TrackingNumber::parse_typed(&accents), told);
        assert_eq!(TrackingNumber::parse_typed_bytes(accents.as_bytes()), told);
    }

    fn valid_s10() -> impl Strategy<Value = TrackingNumber> {
        (
            "[A-Z]{2}",
            0u32..=99_999_999,
            prop::sample::select(vec!["FR", "DE", "US", "CN", "GB"]),
        )
            .prop_map(|(svc, serial, cc)| TrackingNumber::s10(&svc, serial, cc).unwrap())
    }

    fn valid_domestic() -> impl Strategy<Value = TrackingNumber> {
        (0u8..=9, prop::char::range('A', 'Z'), 0u64..=9_999_999_999)
            .prop_map(|(lead, letter, body)| TrackingNumber::domestic(lead, letter, body).unwrap())
    }

    fn valid_any() -> impl Strategy<Value = TrackingNumber> {
        prop_oneof![valid_s10(), valid_domestic()]
    }

    proptest! {
        #[test]
        fn valid_numbers_round_trip(tn in valid_any(), pad_l in 0usize..3, pad_r in 0usize..3, lower in any::<bool>()) {
            let mut text = tn.as_str().to_string();
            if lower { text = text.to_ascii_lowercase(); }
            let text = format!("{}{}{}", " ".repeat(pad_l), text, " ".repeat(pad_r));
            let parsed = TrackingNumber::parse(&text).unwrap();
            prop_assert_eq!(parsed, tn);
            prop_assert_eq!(TrackingNumber::parse(parsed.as_str()).unwrap(), tn);
        }

        /// Every single wrong digit in a position the check digit covers is refused, with the two
        /// blind spots of the schemes themselves: the domestic lead digit is outside the checked
        /// digits (SPEC: "over the 10 digits before it"), and S10 maps the sum residues 0 and 6 to
        /// the same check digit 5, so a serial substitution moving the residue between them passes.
        #[test]
        fn every_single_wrong_digit_is_refused(tn in valid_any(), pos in 0usize..13, delta in 1u8..10) {
            let mut b = *tn.as_bytes();
            prop_assume!(b[pos].is_ascii_digit());
            let s10 = b[0].is_ascii_uppercase();
            prop_assume!(s10 || pos != 0);
            let residue = |serial: &[u8]| -> u32 {
                serial.iter().zip([8, 6, 4, 2, 3, 5, 9, 7]).map(|(d, w)| u32::from(d - b'0') * w).sum::<u32>() % 11
            };
            let before = residue(&b[2..10]);
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            let after = residue(&b[2..10]);
            let blind_spot = s10 && pos < 10 && matches!((before, after), (0, 6) | (6, 0));
            prop_assert_eq!(TrackingNumber::parse_bytes(&b).is_err(), !blind_spot);
        }

        #[test]
        fn a_wrong_check_digit_is_always_refused(tn in valid_any(), delta in 1u8..10) {
            let mut b = *tn.as_bytes();
            let pos = if b[0].is_ascii_uppercase() { 10 } else { 12 };
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            prop_assert!(TrackingNumber::parse_bytes(&b).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = TrackingNumber::parse_bytes(&bytes);
        }

        /// Any valid number, cut into groups by any separators people type, in any case, parses
        /// back to itself.
        #[test]
        fn typed_groupings_round_trip(
            tn in valid_any(),
            seps in prop::collection::vec(
                prop::option::of(prop::sample::select(vec![" ", "-", "  ", "\u{a0}", "\u{202f}", "\u{2013}", " - "])),
                14,
            ),
            lower in any::<bool>(),
        ) {
            let mut text = String::new();
            for (i, c) in tn.as_str().chars().enumerate() {
                if let Some(sep) = seps[i] { text.push_str(sep); }
                text.push(if lower { c.to_ascii_lowercase() } else { c });
            }
            if let Some(sep) = seps[13] { text.push_str(sep); }
            prop_assume!(text.len() <= TYPED_MAX_BYTES);
            prop_assert_eq!(TrackingNumber::parse_typed(&text), Ok(tn));
        }

        /// The typed parser accepts exactly what the strict one accepts once separators are
        /// removed: it is a relaxation of the spelling, never of the rules.
        #[test]
        fn typed_parse_agrees_with_strict_parse(s in "[ a-zA-Z0-9\\-]{0,30}") {
            let squeezed: String = s.chars().filter(|&c| c != ' ' && c != '-').collect();
            prop_assert_eq!(TrackingNumber::parse_typed(&s).ok(), TrackingNumber::parse(&squeezed).ok());
        }

        #[test]
        fn typed_parse_never_panics(s in "\\PC{0,80}", bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = TrackingNumber::parse_typed(&s);
            let _ = TrackingNumber::parse_typed_bytes(&bytes);
        }

        #[test]
        fn parsed_output_is_always_canonical(s in "[ a-zA-Z0-9]{11,16}") {
            if let Ok(tn) = TrackingNumber::parse(&s) {
                prop_assert_eq!(tn.as_str(), s.trim().to_ascii_uppercase());
            }
        }
    }
}
