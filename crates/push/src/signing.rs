//! Webhook signatures, and the signing secrets behind them.
//!
//! Every delivery carries `Rempart-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//! HMAC-SHA256 over `<t>.<raw body>` with the endpoint's signing secret. Several `v1=` entries may
//! appear (one per secret while a secret is being rotated); a receiver accepts the delivery when
//! one of them matches and `t` is within [`TOLERANCE_SECS`] of its clock, which makes a captured
//! delivery useless to replay later. [`verify`] is what a receiver in Rust calls; `docs/webhooks.md`
//! shows the same check in other languages.
//!
//! Secrets are not stored (see `rempart_store::push`): an endpoint keeps a salt, and
//! [`MasterKeys::derive`] turns it into the secret with a master key held in the node's settings.

use std::fmt;

use hmac::{Hmac, Mac};
use rempart_store::push::{SALT_LEN, SecretRef};
use sha2::Sha256;

/// The signature header (HTTP header names are case-insensitive; sent as `Rempart-Signature`).
pub const SIGNATURE_HEADER: &str = "rempart-signature";
/// The delivery's id (`dlv_…`): the same on every retry and replay of that delivery.
pub const DELIVERY_HEADER: &str = "rempart-delivery";
/// The event's id (`evt_…`): the key a receiver de-duplicates on.
pub const EVENT_HEADER: &str = "rempart-event";
/// How far a signature's timestamp may be from the receiver's clock, either way.
pub const TOLERANCE_SECS: i64 = 300;
/// Longest signature header [`parse_header`] examines.
pub const MAX_HEADER_LEN: usize = 1024;
/// Most `v1=` signatures [`parse_header`] keeps.
pub const MAX_SIGNATURES: usize = 4;
/// Most master keys a node holds (the current one and older ones still deriving secrets).
pub const MAX_MASTER_KEYS: usize = 8;
/// Prefix of a signing secret in its text form, so one found in a log is recognisable.
pub const SECRET_PREFIX: &str = "whsec_";
/// Domain separation for secret derivation: the master key signs nothing else with this label.
const DERIVATION_LABEL: &[u8] = b"rempart webhook signing secret v1\0";
/// Domain separation for the unsubscribe links' key.
const LINK_KEY_LABEL: &[u8] = b"rempart unsubscribe link key v1\0";

type HmacSha256 = Hmac<Sha256>;

/// Why a signature does not verify, or a secret or key does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    #[error("no v1 signature in the header")]
    NoSignature,
    #[error("timestamp {age_secs} s away from now (at most {TOLERANCE_SECS} s)")]
    Stale { age_secs: i64 },
    #[error("no signature matches")]
    Mismatch,
    #[error("not a signing secret (whsec_ and 64 hex digits)")]
    BadSecret,
    #[error("not a master key (64 hex digits)")]
    BadMasterKey,
    #[error("no master key of version {0}")]
    UnknownKeyVersion(u8),
    #[error("more than {MAX_MASTER_KEYS} master keys")]
    TooManyKeys,
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

/// An endpoint's signing secret: 32 bytes. Never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret([u8; 32]);

impl SigningSecret {
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SigningSecret(bytes)
    }

    /// The form shown once to the merchant: `whsec_` and 64 lower-case hex digits.
    #[must_use]
    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", hex(&self.0))
    }

    /// Parses the text form (as a receiver holds it).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let digits = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SignatureError::BadSecret)?;
        unhex32(digits)
            .map(SigningSecret)
            .ok_or(SignatureError::BadSecret)
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

/// The value of the signature header for `body` sent at `timestamp` (Unix seconds), signed with
/// each secret (usually one).
#[must_use]
pub fn header_value(secrets: &[&SigningSecret], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for secret in secrets.iter().take(MAX_SIGNATURES) {
        out.push_str(",v1=");
        out.push_str(&hex(&secret.mac(timestamp, body).finalize().into_bytes()));
    }
    out
}

/// A parsed signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    /// The `v1` signatures, at most [`MAX_SIGNATURES`].
    pub signatures: Vec<[u8; 32]>,
}

/// Parses `t=<digits>,v1=<64 hex>[,v1=…]`. Unknown schemes (`v2=…`) are skipped so that a later
/// scheme can be added without breaking receivers; everything else malformed is refused.
pub fn parse_header(value: &str) -> Result<SignatureHeader, SignatureError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(SignatureError::TooLong);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        let (key, val) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed("an item without '='"))?;
        match key {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("two timestamps"));
                }
                let digits_only = !val.is_empty() && val.len() <= 12;
                if !digits_only || !val.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed("t is not a Unix time in seconds"));
                }
                timestamp = val.parse::<i64>().ok();
            }
            "v1" => {
                let sig = unhex32(val).ok_or(SignatureError::Malformed("v1 is not 64 hex"))?;
                if signatures.len() < MAX_SIGNATURES {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no timestamp"))?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    Ok(SignatureHeader {
        timestamp,
        signatures,
    })
}

/// Checks a delivery as a receiver should: the header parses, its timestamp is within
/// [`TOLERANCE_SECS`] of `now_secs` (the receiver's clock, Unix seconds), and one `v1` signature
/// is the HMAC of `<t>.<body>` under `secret` (compared in constant time). Returns the timestamp.
pub fn verify(
    header: &str,
    body: &[u8],
    secret: &SigningSecret,
    now_secs: i64,
) -> Result<i64, SignatureError> {
    let parsed = parse_header(header)?;
    let age_secs = now_secs.saturating_sub(parsed.timestamp);
    if age_secs.abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale { age_secs });
    }
    let expected = secret.mac(parsed.timestamp, body);
    let matches = parsed
        .signatures
        .iter()
        .any(|sig| expected.clone().verify_slice(sig).is_ok());
    if matches {
        Ok(parsed.timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The node's master keys, by version: they derive every endpoint's signing secret.
#[derive(Clone)]
pub struct MasterKeys {
    current: u8,
    keys: Vec<(u8, [u8; 32])>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MasterKeys(current v{}, {} keys)",
            self.current,
            self.keys.len()
        )
    }
}

impl MasterKeys {
    /// Keys with `key` as the current one (new endpoints use it).
    #[must_use]
    pub fn new(version: u8, key: [u8; 32]) -> Self {
        MasterKeys {
            current: version,
            keys: vec![(version, key)],
        }
    }

    /// Adds an older key that still derives the secrets of endpoints created under it.
    pub fn with_older(mut self, version: u8, key: [u8; 32]) -> Result<Self, SignatureError> {
        if self.keys.len() >= MAX_MASTER_KEYS {
            return Err(SignatureError::TooManyKeys);
        }
        self.keys
            .retain(|(v, _)| *v != version || *v == self.current);
        if version != self.current {
            self.keys.push((version, key));
        }
        Ok(self)
    }

    /// Parses a master key given as 64 hex digits (a setting).
    pub fn parse_key(text: &str) -> Result<[u8; 32], SignatureError> {
        unhex32(text.trim()).ok_or(SignatureError::BadMasterKey)
    }

    /// The secret an endpoint's [`SecretRef`] stands for.
    pub fn derive(&self, secret: &SecretRef) -> Result<SigningSecret, SignatureError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(v, _)| *v == secret.key_version)
            .ok_or(SignatureError::UnknownKeyVersion(secret.key_version))?;
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(DERIVATION_LABEL);
        mac.update(&secret.salt);
        Ok(SigningSecret(mac.finalize().into_bytes().into()))
    }

    /// The key of the e-mails' unsubscribe links (`mail::MailSettings::link_key`), derived
    /// from the current master key under its own label: it signs nothing else.
    #[must_use]
    pub fn link_key(&self) -> [u8; 32] {
        let key = self
            .keys
            .iter()
            .find(|(v, _)| *v == self.current)
            .map(|(_, k)| k)
            .expect("the current key is always held");
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(LINK_KEY_LABEL);
        mac.finalize().into_bytes().into()
    }

    /// A fresh reference for a new endpoint (random salt, current key) and the secret it derives,
    /// to show once.
    pub fn new_secret(&self) -> Result<(SecretRef, SigningSecret), SignatureError> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| SignatureError::Random(e.to_string()))?;
        let reference = SecretRef {
            key_version: self.current,
            salt,
        };
        let secret = self.derive(&reference)?;
        Ok((reference, secret))
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Exactly 64 hex digits (either case) to 32 bytes.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_766_400_000;

    fn secret(byte: u8) -> SigningSecret {
        SigningSecret::from_bytes([byte; 32])
    }

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let body = br#"{"id":"evt_1"}"#;
        let header = header_value(&[&secret(1)], NOW, body);
        assert_eq!(verify(&header, body, &secret(1), NOW + 10), Ok(NOW));
        assert_eq!(
            verify(&header, br#"{"id":"evt_2"}"#, &secret(1), NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&header, body, &secret(2), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp() {
        let body = b"{}";
        let header = header_value(&[&secret(1)], NOW, body);
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(
            verify(&moved, body, &secret(1), NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key = 32 × 0x01, "1766400000.{}"), computed independently with Python's hmac.
        assert_eq!(
            header_value(&[&secret(1)], NOW, b"{}"),
            "t=1766400000,v1=e4c5408b033b08699cbf1c7df96dfcdfcaa42a8d76fb01b8ab7ff45c39c63e9e"
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let body = b"{}";
        let header = header_value(&[&secret(1)], NOW, body);
        assert!(verify(&header, body, &secret(1), NOW + TOLERANCE_SECS).is_ok());
        assert_eq!(
            verify(&header, body, &secret(1), NOW + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale {
                age_secs: TOLERANCE_SECS + 1
            })
        );
        assert!(matches!(
            verify(&header, body, &secret(1), NOW - TOLERANCE_SECS - 1),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn any_of_several_signatures_may_match_during_a_rotation() {
        let body = b"{}";
        let header = header_value(&[&secret(1), &secret(2)], NOW, body);
        assert!(verify(&header, body, &secret(2), NOW).is_ok());
        assert!(verify(&header, body, &secret(1), NOW).is_ok());
    }

    #[test]
    fn hostile_headers_are_refused_without_panicking() {
        let sig = "ab".repeat(32);
        let long = format!("t={NOW},{}", "v2=x,".repeat(300));
        for bad in [
            String::new(),
            "t=".into(),
            format!("v1={sig}"),
            format!("t={NOW}"),
            format!("t={NOW},v1="),
            format!("t={NOW},v1={}", &sig[..63]),
            format!("t={NOW},v1={sig}0"),
            format!("t={NOW},v1={}", "zz".repeat(32)),
            format!("t=-5,v1={sig}"),
            format!("t=+5,v1={sig}"),
            format!("t=99999999999999999999,v1={sig}"),
            format!("t={NOW},t={NOW},v1={sig}"),
            format!("t={NOW};v1={sig}"),
            format!("t={NOW},v1={}", "é".repeat(32)),
            long,
        ] {
            assert!(
                verify(&bad, b"{}", &secret(1), NOW).is_err(),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn unknown_schemes_are_skipped() {
        let body = b"{}";
        let header = header_value(&[&secret(1)], NOW, body);
        let with_v2 = format!("{header},v2=whatever");
        assert!(verify(&with_v2, body, &secret(1), NOW).is_ok());
    }

    #[test]
    fn secrets_round_trip_and_never_print() {
        let s = secret(0xab);
        let text = s.to_text();
        assert!(text.starts_with("whsec_") && text.len() == 70);
        assert_eq!(SigningSecret::parse(&text), Ok(s.clone()));
        assert!(!format!("{s:?}").contains("abab"));
        for bad in [
            "",
            "whsec_",
            "abab",
            &text[..69],
            &text.replace("whsec_", "whsec-"),
        ] {
            assert_eq!(SigningSecret::parse(bad), Err(SignatureError::BadSecret));
        }
    }

    #[test]
    fn derived_secrets_depend_on_salt_and_key() {
        let keys = MasterKeys::new(1, [7; 32]);
        let a = SecretRef {
            key_version: 1,
            salt: [1; SALT_LEN],
        };
        let b = SecretRef {
            key_version: 1,
            salt: [2; SALT_LEN],
        };
        assert_eq!(keys.derive(&a), keys.derive(&a));
        assert_ne!(keys.derive(&a), keys.derive(&b));
        let other = MasterKeys::new(1, [8; 32]);
        assert_ne!(keys.derive(&a), other.derive(&a));
        let v2 = SecretRef {
            key_version: 2,
            ..a
        };
        assert_eq!(keys.derive(&v2), Err(SignatureError::UnknownKeyVersion(2)));
        let rotated = MasterKeys::new(2, [9; 32]).with_older(1, [7; 32]).unwrap();
        assert_eq!(rotated.derive(&a), keys.derive(&a));
        let (reference, secret) = rotated.new_secret().unwrap();
        assert_eq!(reference.key_version, 2);
        assert_eq!(rotated.derive(&reference), Ok(secret));
    }

    #[test]
    fn master_keys_parse_from_hex_only() {
        assert_eq!(MasterKeys::parse_key(&"0f".repeat(32)), Ok([15; 32]));
        for bad in ["", "0f", &"0g".repeat(32), &"0f".repeat(33)] {
            assert_eq!(
                MasterKeys::parse_key(bad),
                Err(SignatureError::BadMasterKey)
            );
        }
    }

    proptest! {
        #[test]
        fn parse_header_never_panics(text in "\\PC{0,200}") {
            let _ = parse_header(&text);
        }

        #[test]
        fn near_miss_headers_never_verify(
            t in 0i64..4_000_000_000,
            tail in "[tv12=,0-9a-f]{0,80}",
            body in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            // Anything not produced by the secret's holder fails: here, a random header.
            let header = format!("t={t},{tail}");
            let result = verify(&header, &body, &secret(3), t);
            prop_assert!(result.is_err());
        }

        #[test]
        fn signed_bodies_verify(body in prop::collection::vec(any::<u8>(), 0..256), t in 0i64..4_000_000_000) {
            let header = header_value(&[&secret(5)], t, &body);
            prop_assert_eq!(verify(&header, &body, &secret(5), t), Ok(t));
        }
    }
}
