//! Webhook URLs: a strict parser of what merchants submit.
//!
//! Server-side request forgery often hides in the gap between the parser that checks a URL and
//! the one that fetches it (`http://a@b/`, `http://127.1/`, `http://0x7f.0.0.1/`, backslashes,
//! `%2e` in hosts). Here one parser does both: it accepts a narrow form and the client connects
//! to what it parsed. Accepted: `https://` (or `http://`, which the address policy then allows
//! only toward allow-listed addresses), a host that is a DNS name, a dotted-quad IPv4 address or
//! a bracketed IPv6 address, an optional port, and a path with an optional query, in printable
//! ASCII. Refused: user info, fragments, backslashes, percent signs or anything but letters,
//! digits, hyphens and dots in a host name, a numeric last label (old IPv4 spellings), zone ids,
//! port 0, and anything longer than [`MAX_URL_LEN`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use rempart_store::push::MAX_URL_LEN;
use rempart_store::push::is_dns_label;

/// Longest host name (DNS).
const MAX_HOST_LEN: usize = 253;

/// Why a URL is refused. Safe to show to the merchant who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook URL: {0}")]
pub struct UrlError(pub &'static str);

/// A URL's host, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lower-case.
    Name(String),
    Ip(IpAddr),
}

/// A webhook URL that passed [`WebhookUrl::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    https: bool,
    host: Host,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError("longer than 2048 bytes"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UrlError("only printable ASCII without spaces"));
        }
        if text.contains('\\') {
            return Err(UrlError("backslashes are not allowed"));
        }
        if text.contains('#') {
            return Err(UrlError("fragments are not allowed"));
        }
        let (https, rest) = split_scheme(text)?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError("user info is not allowed"));
        }
        let (host, port) = split_port(authority)?;
        let host = parse_host(host)?;
        let port = match port {
            None if https => 443,
            None => 80,
            Some(p) => parse_port(p)?,
        };
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        Ok(WebhookUrl {
            https,
            host,
            port,
            target,
        })
    }

    #[must_use]
    pub fn is_https(&self) -> bool {
        self.https
    }

    #[must_use]
    pub fn host(&self) -> &Host {
        &self.host
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query, as sent in the request line.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The `Host` header: the host, and the port when it is not the scheme's default.
    #[must_use]
    pub fn authority(&self) -> String {
        let host = match &self.host {
            Host::Name(name) => name.clone(),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.target)
    }
}

fn split_scheme(text: &str) -> Result<(bool, &str), UrlError> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or(UrlError("must start with https://"))?;
    if scheme.eq_ignore_ascii_case("https") {
        Ok((true, rest))
    } else if scheme.eq_ignore_ascii_case("http") {
        Ok((false, rest))
    } else {
        Err(UrlError("the scheme must be https"))
    }
}

/// Splits `host[:port]` and `[v6][:port]`.
fn split_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or(UrlError("unclosed IPv6 bracket"))?;
        return match after {
            "" => Ok((authority.get(..v6.len() + 2).unwrap_or(authority), None)),
            p => p
                .strip_prefix(':')
                .map(|port| (&authority[..v6.len() + 2], Some(port)))
                .ok_or(UrlError("junk after the IPv6 address")),
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((host, port)) => Ok((host, Some(port))),
    }
}

fn parse_port(text: &str) -> Result<u16, UrlError> {
    let valid = (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(port) if valid && port != 0 => Ok(port),
        _ => Err(UrlError("the port must be 1 to 65535")),
    }
}

fn parse_host(text: &str) -> Result<Host, UrlError> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or(UrlError("unclosed IPv6 bracket"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| UrlError("not an IPv6 address"));
    }
    if text.is_empty() || text.len() > MAX_HOST_LEN {
        return Err(UrlError("the host must be 1 to 253 characters"));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Only the four-part dotted decimal form; std refuses leading zeros (octal spellings).
        return text
            .parse::<Ipv4Addr>()
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| UrlError("not a dotted-quad IPv4 address"));
    }
    let name = text.to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    if !labels.iter().all(|l| is_dns_label(l)) {
        return Err(UrlError(
            "host names are letters, digits and hyphens between dots",
        ));
    }
    let last = labels.last().copied().unwrap_or_default();
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err(UrlError("a host name cannot end in a number"));
    }
    Ok(Host::Name(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_urls() {
        let u = WebhookUrl::parse("https://Shop.Example.com/hooks/rempart?k=1").unwrap();
        assert!(u.is_https());
        assert_eq!(u.host(), &Host::Name("shop.example.com".into()));
        assert_eq!(u.port(), 443);
        assert_eq!(u.target(), "/hooks/rempart?k=1");
        assert_eq!(u.to_string(), "https://shop.example.com/hooks/rempart?k=1");

        let u = WebhookUrl::parse("http://127.0.0.1:8099").unwrap();
        assert!(!u.is_https());
        assert_eq!(u.host(), &Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!((u.port(), u.target()), (8099, "/"));
        assert_eq!(u.authority(), "127.0.0.1:8099");

        let u = WebhookUrl::parse("https://[2001:db8::1]:8443/x").unwrap();
        assert_eq!(u.host(), &Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(u.authority(), "[2001:db8::1]:8443");
        assert_eq!(
            WebhookUrl::parse("https://a.example?q").unwrap().target(),
            "/?q"
        );
    }

    #[test]
    fn hostile_urls_are_refused() {
        let long = format!("https://a.example/{}", "a".repeat(MAX_URL_LEN));
        let long_host = format!("https://{}.example/", "a".repeat(254));
        for bad in [
            "",
            "https://",
            "https:///x",
            "example.com/hook",
            "//example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://127.0.0.1:6379/_",
            "javascript://example.com/%0aalert(1)",
            "https://user:pw@example.com/",
            "https://example.com@127.0.0.1/",
            "https://127.0.0.1#@example.com/",
            "https://example.com/#frag",
            "https://example.com\\@127.0.0.1/",
            "https:\\\\example.com/",
            "https://exa mple.com/",
            "https://example.com/ x",
            "https://example.com/\r\nHost: evil",
            "https://exämple.com/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0x7f.0.0.1/",
            "https://0177.0.0.1/",
            "https://127.000.000.001/",
            "https://127.0.0.1.nip.io.1/",
            "https://1.2.3.4.5/",
            "https://256.0.0.1/",
            "https://%31%32%37.0.0.1/",
            "https://example.com:0/",
            "https://example.com:65536/",
            "https://example.com:+443/",
            "https://example.com:/",
            "https://example.com:443:443/",
            "https://[::1/",
            "https://[::1]x/",
            "https://[fe80::1%25eth0]/",
            "https://[127.0.0.1]/",
            "https://-example.com/",
            "https://example-.com/",
            "https://example..com/",
            "https://example.com./",
            "https://.example.com/",
            "https://exa_mple.com/",
            long.as_str(),
            long_host.as_str(),
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    proptest! {
        /// Whatever the text, an accepted URL prints to a form that parses to itself, and its
        /// pieces carry nothing that could split a request line or a header.
        #[test]
        fn accepted_urls_round_trip(
            text in prop_oneof![
                "\\PC{0,60}",
                "(https?|HTTP)://[a-z0-9.:\\[\\]@%-]{0,30}(/[ -~]{0,20})?",
            ]
        ) {
            if let Ok(url) = WebhookUrl::parse(&text) {
                let printed = url.to_string();
                prop_assert_eq!(WebhookUrl::parse(&printed), Ok(url.clone()));
                prop_assert!(url.target().starts_with('/'));
                prop_assert!(url.target().bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(!url.authority().contains(['@', '\\', '%', '/']));
            }
        }
    }
}
