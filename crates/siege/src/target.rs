//! The loopback-only rule: `rempart siege` sends traffic to loopback addresses only
//! (127.0.0.0/8, ::1). A URL whose host is a name is resolved, and every address it resolves to
//! must be loopback; anything else is refused before a single packet is sent.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0}: only http://host:port URLs are supported")]
    Url(String),
    #[error(
        "{0}: refused — rempart siege only sends traffic to loopback addresses (127.0.0.0/8, ::1); {1} is not one"
    )]
    NotLoopback(String, IpAddr),
    #[error("{0}: cannot resolve: {1}")]
    Resolve(String, String),
}

/// A checked target: a loopback socket address and the `Host` header to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
}

/// Checks one address.
pub fn require_loopback(what: &str, ip: IpAddr) -> Result<(), TargetError> {
    if ip.is_loopback() {
        Ok(())
    } else {
        Err(TargetError::NotLoopback(what.to_owned(), ip))
    }
}

/// Resolves `host:port` and requires every address to be loopback.
pub fn resolve(what: &str, host: &str, port: u16) -> Result<Endpoint, TargetError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| TargetError::Resolve(what.to_owned(), e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Resolve(what.to_owned(), "no address".into()));
    }
    for a in &addrs {
        require_loopback(what, a.ip())?;
    }
    Ok(Endpoint {
        addr: addrs[0],
        host: format!("{host}:{port}"),
    })
}

/// Parses `http://host:port[/]` and checks it.
pub fn parse_url(url: &str) -> Result<Endpoint, TargetError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| TargetError::Url(url.to_owned()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.ends_with(':') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| TargetError::Url(url.to_owned()))?)
        }
        _ if !authority.is_empty() => (authority, 80),
        _ => return Err(TargetError::Url(url.to_owned())),
    };
    resolve(url, host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:80/",
            "http://localhost:8080",
            "http://[::1]:8080",
            "http://127.0.0.1",
        ] {
            let e = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(e.addr.ip().is_loopback());
        }
    }

    #[test]
    fn everything_else_is_refused_clearly() {
        for url in [
            "http://10.0.0.1:8080",
            "http://192.168.1.10",
            "http://8.8.8.8:53",
            "http://[2001:db8::1]:80",
            "http://0.0.0.0:8080",
            "http://169.254.1.1:80",
        ] {
            match parse_url(url) {
                Err(e @ TargetError::NotLoopback(..)) => assert!(
                    e.to_string().contains("only sends traffic to loopback"),
                    "{e}"
                ),
                other => panic!("{url}: {other:?}"),
            }
        }
        for url in [
            "https://127.0.0.1:8080",
            "ftp://127.0.0.1",
            "127.0.0.1:8080",
            "http://",
            "http://127.0.0.1:notaport",
        ] {
            assert!(parse_url(url).is_err(), "{url}");
        }
        // A name that does not resolve is refused too (no traffic to unknown places).
        assert!(parse_url("http://no-such-host.invalid:8080").is_err());
    }
}
