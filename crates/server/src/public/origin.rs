//! Where customers reach the public listener: the `public_url` setting. Behind a CDN or a TLS
//! proxy the node cannot see the scheme and host its pages are served under, so the operator says
//! it once. It is used for the links of Suivi v2 answers (`url`) and, when it is `https://`, to
//! mark the pass cookie `Secure` (docs/cdn.md).

use std::fmt;
use std::str::FromStr;

/// Longest `public_url` accepted.
pub const MAX_PUBLIC_URL: usize = 200;

/// The public origin, `http(s)://host[:port][/path]` without a trailing slash, or empty (links
/// are then paths relative to whatever host the client used).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// What goes before `/fr/track/{n}` in a link: the URL, or nothing.
    pub fn base(&self) -> &str {
        &self.0
    }

    /// Whether customers reach the node over TLS (the URL is `https://…`).
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl FromStr for PublicUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('/');
        if s.is_empty() {
            return Ok(PublicUrl::default());
        }
        let bad = || {
            format!(
                "an http:// or https:// URL without query or fragment (at most {MAX_PUBLIC_URL} characters), or empty; not {s:?}"
            )
        };
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let host_ok = !rest.is_empty() && !rest.starts_with('/');
        let chars_ok = s
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'"' | b'<' | b'>'));
        if !host_ok || !chars_ok || s.len() > MAX_PUBLIC_URL {
            return Err(bad());
        }
        Ok(PublicUrl(s.to_owned()))
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_lose_their_trailing_slash() {
        let url: PublicUrl = " https://suivi.example.fr/ ".parse().unwrap();
        assert_eq!(url.base(), "https://suivi.example.fr");
        assert!(url.is_https());
        let url: PublicUrl = "http://127.0.0.1:8080/colis".parse().unwrap();
        assert_eq!(url.base(), "http://127.0.0.1:8080/colis");
        assert!(!url.is_https());
        let empty: PublicUrl = "".parse().unwrap();
        assert_eq!(empty.base(), "");
        assert!(!empty.is_https());
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "suivi.example.fr",
            "ftp://x",
            "https://",
            "https:///path",
            "https://a b",
            "https://x/?q=1",
            "https://x/#f",
            "https://x/\"><script>",
            "https://x/\u{202e}",
            "javascript:alert(1)",
            &format!("https://{}", "a".repeat(MAX_PUBLIC_URL)),
        ] {
            assert!(bad.parse::<PublicUrl>().is_err(), "{bad:?}");
        }
    }
}
