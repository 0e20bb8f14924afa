//! The types of push's settings (their lines are in `settings/groups.rs`, group "Push"): each
//! parses with the push crate's own rules, so a value that resolved is one the node can use.

use std::fmt;
use std::str::FromStr;

use rempart_push::MasterKeys;
use rempart_push::signing::MAX_MASTER_KEYS;
use rempart_push::smtp::{Credentials, SmtpConfig, SmtpSecurity};
use rempart_push::ssrf::AddressPolicy;
use rempart_store::push::EmailAddress;

/// `push_master_key`: `VERSION:HEX64[,VERSION:HEX64…]`, the first one current (new endpoints);
/// the others still derive the secrets of endpoints created under them. Empty: none (push
/// cannot start). Never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct MasterKeySetting(Vec<(u8, [u8; 32])>);

impl fmt::Debug for MasterKeySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKeySetting({} keys)", self.0.len())
    }
}

impl FromStr for MasterKeySetting {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (version, hex) = item
                .split_once(':')
                .ok_or("expected VERSION:HEX64, e.g. 1:<64 hex digits>")?;
            let version: u8 = version
                .parse()
                .map_err(|_| "the version is a number from 0 to 255")?;
            let key = MasterKeys::parse_key(hex).map_err(|e| e.to_string())?;
            if keys.iter().any(|(v, _)| *v == version) {
                return Err(format!("version {version} given twice"));
            }
            keys.push((version, key));
        }
        if keys.len() > MAX_MASTER_KEYS {
            return Err(format!("at most {MAX_MASTER_KEYS} keys"));
        }
        Ok(MasterKeySetting(keys))
    }
}

impl MasterKeySetting {
    /// The keys, the first current; `None` when none is set.
    pub fn keys(&self) -> Option<MasterKeys> {
        let (&(version, key), older) = self.0.split_first()?;
        older
            .iter()
            .try_fold(MasterKeys::new(version, key), |keys, &(v, k)| {
                keys.with_older(v, k)
            })
            .ok()
    }
}

/// `push_allow`: the SSRF allow-list, addresses or CIDR blocks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList(pub AddressPolicy);

impl FromStr for AllowList {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        AddressPolicy::parse(text)
            .map(AllowList)
            .map_err(|e| e.to_string())
    }
}

/// `smtp_relay`: `smtp://host:port` (plain: a local relay, the tests' sink),
/// `smtp+starttls://host:port` or `smtps://host:port`; empty: no e-mail alerts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmtpRelay(Option<(SmtpSecurity, String, u16)>);

impl FromStr for SmtpRelay {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(SmtpRelay(None));
        }
        let (security, rest, default_port) = if let Some(r) = text.strip_prefix("smtp://") {
            (SmtpSecurity::Plain, r, 25)
        } else if let Some(r) = text.strip_prefix("smtp+starttls://") {
            (SmtpSecurity::StartTls, r, 587)
        } else if let Some(r) = text.strip_prefix("smtps://") {
            (SmtpSecurity::Tls, r, 465)
        } else {
            return Err("expected smtp://, smtp+starttls:// or smtps:// and host[:port]".into());
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| "the port is a number")?)
            }
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let printable = host.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if host.is_empty() || !printable {
            return Err("the relay's host is missing or malformed".into());
        }
        Ok(SmtpRelay(Some((security, host.to_owned(), port))))
    }
}

impl SmtpRelay {
    /// The client configuration, with `credentials` when a user is set.
    pub fn config(&self, credentials: Option<Credentials>) -> Option<SmtpConfig> {
        let (security, host, port) = self.0.as_ref()?;
        let mut config = SmtpConfig::new(host, *port);
        config.security = *security;
        config.credentials = credentials;
        Some(config)
    }
}

/// A text setting that is never printed (`smtp_password`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hidden(pub String);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hidden(…)")
    }
}

impl FromStr for Hidden {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Hidden(text.to_owned()))
    }
}

/// `mail_from`: `Display Name <address>` of the alerts' sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    pub name: String,
    pub address: EmailAddress,
}

impl FromStr for MailFrom {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || "expected `Name <address@domain>`".to_owned();
        let (name, rest) = text.trim().split_once('<').ok_or_else(bad)?;
        let address = rest.strip_suffix('>').ok_or_else(bad)?;
        let address = EmailAddress::parse(address).map_err(|e| e.to_string())?;
        let name = name.trim().to_owned();
        rempart_push::mail::Mailbox::new(&name, address.clone()).map_err(|e| e.to_string())?;
        Ok(MailFrom { name, address })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_parse_with_their_versions_and_never_print() {
        let hex = "ab".repeat(32);
        let s: MasterKeySetting = format!("2:{hex}, 1:{}", "cd".repeat(32)).parse().unwrap();
        let keys = format!("{:?}", s.keys().unwrap());
        assert!(keys.contains("current v2, 2 keys"), "{keys}");
        assert!(!format!("{s:?}").contains("ab"));
        assert!("".parse::<MasterKeySetting>().unwrap().keys().is_none());
        for bad in ["abc", &hex, &format!("1:{hex},1:{hex}"), "300:00", "1:zz"] {
            assert!(bad.parse::<MasterKeySetting>().is_err(), "{bad}");
        }
    }

    #[test]
    fn relays_parse_scheme_host_and_port() {
        let r: SmtpRelay = "smtp://127.0.0.1:2525".parse().unwrap();
        let c = r.config(None).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 2525));
        assert_eq!(c.security, SmtpSecurity::Plain);
        let r: SmtpRelay = "smtps://mail.example.fr".parse().unwrap();
        assert_eq!(r.config(None).unwrap().port, 465);
        assert!("".parse::<SmtpRelay>().unwrap().config(None).is_none());
        for bad in ["mail.example.fr", "smtp://", "smtp://h:port", "http://h"] {
            assert!(bad.parse::<SmtpRelay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sender_is_a_name_and_an_address() {
        let f: MailFrom = "Suivi <suivi@example.fr>".parse().unwrap();
        assert_eq!(f.address.as_str(), "suivi@example.fr");
        assert!("suivi@example.fr".parse::<MailFrom>().is_err());
        assert!("S <a@b.c\r\nBcc: x@y.z>".parse::<MailFrom>().is_err());
    }
}
