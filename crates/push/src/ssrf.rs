//! The address policy: which addresses a webhook may be sent to.
//!
//! A webhook URL is the merchant's, so the node must not become their way into its own network.
//! The client resolves a URL's host **once**, checks every address it got, and connects only to
//! a checked address (a second resolution could answer differently: DNS rebinding). Refused,
//! unless the allow-list setting names them:
//! - loopback, unspecified, private (RFC 1918, IPv6 ULA `fc00::/7`), shared/CGNAT
//!   (`100.64.0.0/10`), link-local, multicast, broadcast, documentation, benchmarking and
//!   reserved ranges;
//! - the same addresses written as IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//!   `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`), and Teredo, which hides an address;
//! - cloud metadata services (`169.254.169.254`, `fd00:ec2::254`, `168.63.129.16`,
//!   `100.100.100.200`, …), which only an allow-list entry naming *that exact address* unlocks:
//!   a broad entry such as `169.254.0.0/16` or `0.0.0.0/0` does not.
//!
//! If any resolved address is refused, the URL is refused (an attacker's name could mix a public
//! and a private answer). Plain `http://` is accepted only when every address is on the
//! allow-list (local receivers, tests); the world gets `https://`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use async_trait::async_trait;

use crate::url::{Host, WebhookUrl};

/// Most entries in the allow-list setting.
pub const MAX_ALLOW_ENTRIES: usize = 64;
/// Most addresses kept from one resolution (the client tries them in order).
pub const MAX_ADDRESSES: usize = 8;

/// Where an address belongs, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    Public,
    Unspecified,
    Loopback,
    /// RFC 1918, IPv6 unique local.
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    LinkLocal,
    /// A cloud provider's instance metadata or host service.
    Metadata,
    Multicast,
    Documentation,
    /// Benchmarking, broadcast, reserved, deprecated or address-hiding ranges.
    Reserved,
}

impl AddressClass {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::Shared => "shared (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "cloud metadata",
            AddressClass::Multicast => "multicast",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
        }
    }
}

/// Cloud metadata and host-service addresses (AWS, GCP, Azure, Oracle, Alibaba, ECS tasks).
const METADATA: [IpAddr; 7] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// The class of an address, looking through IPv6 forms that carry an IPv4 address.
#[must_use]
pub fn classify(ip: IpAddr) -> AddressClass {
    let ip = canonical(ip);
    if METADATA.contains(&ip) {
        return AddressClass::Metadata;
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they reach.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    const TABLE: &[([u8; 4], u32, AddressClass)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, Shared),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Reserved),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(Public, |(_, _, class)| *class)
}

fn embedded_v4(bits: u128, shift: u32) -> Ipv4Addr {
    Ipv4Addr::from(((bits >> shift) & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    let bits = u128::from(ip);
    let top = |prefix: u32, net: u128| {
        let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
        bits & mask == net & mask
    };
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    // IPv4-compatible (deprecated): refused whatever it embeds.
    if top(96, 0) {
        return match classify_v4(embedded_v4(bits, 0)) {
            Public => Reserved,
            class => class,
        };
    }
    // NAT64 well-known prefix: judged by the IPv4 address it reaches.
    if top(96, 0x0064_ff9b_u128 << 96) {
        return classify(IpAddr::V4(embedded_v4(bits, 0)));
    }
    // 6to4: the IPv4 address sits in bits 16..48.
    if top(16, 0x2002_u128 << 112) {
        return classify(IpAddr::V4(embedded_v4(bits, 80)));
    }
    const TABLE: &[(u128, u32, AddressClass)] = &[
        (0x0064_ff9b_0001 << 80, 48, Reserved), // local-use NAT64
        (0x0100 << 112, 64, Reserved),          // discard-only
        (0x2001_0000 << 96, 32, Reserved),      // Teredo
        (0x2001_0002 << 96, 48, Reserved),      // benchmarking
        (0x2001_0010 << 96, 28, Reserved),      // ORCHID
        (0x2001_0db8 << 96, 32, Documentation),
        (0x3fff << 112, 20, Documentation),
        (0xfc00 << 112, 7, Private),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfec0 << 112, 10, Reserved), // site-local, deprecated
        (0xff00 << 112, 8, Multicast),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| top(*prefix, *net))
        .map_or(Public, |(_, _, class)| *class)
}

/// One allow-list entry: an address and a prefix length (`10.0.0.0/8`, `::1/128`, or a bare
/// address for its whole length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A setting that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("not a CIDR block or address: {0:?}")]
    BadCidr(String),
    #[error("more than {MAX_ALLOW_ENTRIES} allow-list entries")]
    TooMany,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let text = text.trim();
        let bad = || PolicyError::BadCidr(text.chars().take(64).collect());
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(bad());
        }
        match canonical(addr) {
            // An IPv4-mapped block is the IPv4 block it maps; a wider one means nothing sensible.
            IpAddr::V4(v4) if addr.is_ipv6() => match prefix.checked_sub(96) {
                Some(prefix) => Ok(Cidr {
                    addr: IpAddr::V4(v4),
                    prefix,
                }),
                None => Err(bad()),
            },
            addr => Ok(Cidr { addr, prefix }),
        }
    }

    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, net.octets(), u32::from(self.prefix)),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net) & mask
            }
            _ => false,
        }
    }

    /// Whether the entry names exactly this one address.
    fn names_exactly(&self, ip: IpAddr) -> bool {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        self.prefix == full && self.addr == canonical(ip)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a webhook target is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{addr} is a {} address", .class.as_str())]
    Forbidden { addr: IpAddr, class: AddressClass },
    #[error("plain http is only allowed toward allow-listed addresses ({addr} is not)")]
    PlainHttp { addr: IpAddr },
    #[error("the host resolves to no address")]
    NoAddress,
    #[error("cannot resolve the host: {0}")]
    Resolve(String),
}

/// The allow-list and the rules above.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// The policy with no allow-list: public addresses over https only.
    #[must_use]
    pub fn strict() -> Self {
        AddressPolicy::default()
    }

    pub fn new(allow: Vec<Cidr>) -> Result<Self, PolicyError> {
        if allow.len() > MAX_ALLOW_ENTRIES {
            return Err(PolicyError::TooMany);
        }
        Ok(AddressPolicy { allow })
    }

    /// Parses the setting: CIDR blocks or addresses separated by commas or spaces.
    pub fn parse(setting: &str) -> Result<Self, PolicyError> {
        let entries = setting
            .split([',', ' '])
            .filter(|s| !s.trim().is_empty())
            .take(MAX_ALLOW_ENTRIES + 1)
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()?;
        AddressPolicy::new(entries)
    }

    fn allow_listed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    /// Whether a webhook may be sent to `ip` (the scheme aside).
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let class = classify(ip);
        let allowed = match class {
            AddressClass::Public => true,
            AddressClass::Metadata => self.allow.iter().any(|c| c.names_exactly(ip)),
            _ => self.allow_listed(ip),
        };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::Forbidden { addr: ip, class })
        }
    }

    /// Checks every address a URL's host resolved to, and the scheme against them. Returns the
    /// addresses to connect to, in order.
    pub fn check_all(
        &self,
        url: &WebhookUrl,
        addrs: &[IpAddr],
    ) -> Result<Vec<SocketAddr>, Refusal> {
        if addrs.is_empty() {
            return Err(Refusal::NoAddress);
        }
        for &ip in addrs {
            self.check(ip)?;
            if !url.is_https() && !self.allow_listed(ip) {
                return Err(Refusal::PlainHttp { addr: ip });
            }
        }
        Ok(addrs
            .iter()
            .take(MAX_ADDRESSES)
            .map(|&ip| SocketAddr::new(ip, url.port()))
            .collect())
    }
}

/// Name resolution, behind a trait so that tests (and operators pinning names) can answer
/// without DNS.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (a DNS name), at most [`MAX_ADDRESSES`].
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` on a blocking thread, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|a| a.ip()).take(MAX_ADDRESSES).collect())
    }
}

/// Fixed answers: a name not listed does not resolve.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    #[must_use]
    pub fn new() -> Self {
        StaticResolver::default()
    }

    #[must_use]
    pub fn with(mut self, name: &str, addrs: &[IpAddr]) -> Self {
        self.names.insert(name.to_ascii_lowercase(), addrs.to_vec());
        self
    }
}

#[async_trait]
impl Resolve for StaticResolver {
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.names
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not known"))
    }
}

/// Resolves a URL's host once and checks the answer: the addresses to connect to.
pub async fn resolve_checked(
    resolver: &dyn Resolve,
    policy: &AddressPolicy,
    url: &WebhookUrl,
) -> Result<Vec<SocketAddr>, Refusal> {
    let addrs = match url.host() {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => {
            let mut addrs = resolver
                .resolve(name)
                .await
                .map_err(|e| Refusal::Resolve(e.to_string()))?;
            addrs.truncate(MAX_ADDRESSES);
            addrs
        }
    };
    policy.check_all(url, &addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_forbidden_range_is_classified() {
        for (addr, class) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.1.2.3", Private),
            ("100.64.0.1", Shared),
            ("100.127.255.254", Shared),
            ("127.0.0.1", Loopback),
            ("127.255.255.255", Loopback),
            ("169.254.1.1", LinkLocal),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("168.63.129.16", Metadata),
            ("100.100.100.200", Metadata),
            ("192.0.0.192", Metadata),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.0.0.8", Reserved),
            ("192.0.2.1", Documentation),
            ("192.168.1.1", Private),
            ("198.18.0.1", Reserved),
            ("198.51.100.1", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Reserved),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:169.254.169.254", Metadata),
            ("::127.0.0.1", Loopback),
            ("::8.8.8.8", Reserved),
            ("64:ff9b::10.0.0.1", Private),
            ("64:ff9b::169.254.169.254", Metadata),
            ("64:ff9b:1::1", Reserved),
            ("2002:7f00:0001::", Loopback),
            ("2002:a9fe:a9fe::1", Metadata),
            ("2001::1", Reserved),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fd00:ec2::254", Metadata),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Reserved),
            ("ff02::1", Multicast),
            ("100::1", Reserved),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert_eq!(classify(ip(addr)), Public, "{addr}");
            assert!(AddressPolicy::strict().check(ip(addr)).is_ok());
        }
    }

    #[test]
    fn the_allow_list_opens_ranges_but_metadata_only_by_name() {
        let policy = AddressPolicy::parse("127.0.0.0/8, 169.254.0.0/16 fd00::/8").unwrap();
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::ffff:127.0.0.2")).is_ok());
        assert!(policy.check(ip("169.254.1.1")).is_ok());
        assert!(policy.check(ip("::1")).is_err());
        assert!(policy.check(ip("10.0.0.1")).is_err());
        assert_eq!(
            policy.check(ip("169.254.169.254")),
            Err(Refusal::Forbidden {
                addr: ip("169.254.169.254"),
                class: Metadata
            })
        );
        assert!(policy.check(ip("fd00:ec2::254")).is_err());
        let everything = AddressPolicy::parse("0.0.0.0/0,::/0").unwrap();
        assert!(everything.check(ip("10.0.0.1")).is_ok());
        assert!(everything.check(ip("169.254.169.254")).is_err());
        let named = AddressPolicy::parse("169.254.169.254").unwrap();
        assert!(named.check(ip("169.254.169.254")).is_ok());
        assert!(named.check(ip("::ffff:169.254.169.254")).is_ok());
    }

    #[test]
    fn mapped_allow_list_entries_mean_their_ipv4_block() {
        let policy = AddressPolicy::parse("::ffff:127.0.0.0/104").unwrap();
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("128.0.0.1")).is_ok()); // public anyway
        assert!(policy.check(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn hostile_allow_list_entries_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "10.0.0/8",
            "localhost",
            "10.0.0.0/8/8",
            "0x0a000000/8",
            "::ffff:0:0/80",
        ] {
            assert!(AddressPolicy::parse(bad).is_err(), "{bad}");
        }
        let many = vec!["10.0.0.1"; MAX_ALLOW_ENTRIES + 1].join(",");
        assert_eq!(AddressPolicy::parse(&many), Err(PolicyError::TooMany));
    }

    fn url(text: &str) -> WebhookUrl {
        WebhookUrl::parse(text).unwrap()
    }

    #[test]
    fn plain_http_only_toward_allow_listed_addresses() {
        let policy = AddressPolicy::parse("127.0.0.0/8").unwrap();
        let local = url("http://127.0.0.1:9000/h");
        assert_eq!(
            policy.check_all(&local, &[ip("127.0.0.1")]),
            Ok(vec!["127.0.0.1:9000".parse().unwrap()])
        );
        let public = url("http://hooks.example/h");
        assert_eq!(
            policy.check_all(&public, &[ip("8.8.8.8")]),
            Err(Refusal::PlainHttp {
                addr: ip("8.8.8.8")
            })
        );
        assert!(
            policy
                .check_all(&url("https://hooks.example/h"), &[ip("8.8.8.8")])
                .is_ok()
        );
    }

    #[test]
    fn one_bad_address_in_an_answer_refuses_the_url() {
        let u = url("https://hooks.example/h");
        let mixed = [ip("8.8.8.8"), ip("10.0.0.1")];
        assert!(matches!(
            AddressPolicy::strict().check_all(&u, &mixed),
            Err(Refusal::Forbidden { class: Private, .. })
        ));
        assert_eq!(
            AddressPolicy::strict().check_all(&u, &[]),
            Err(Refusal::NoAddress)
        );
    }

    #[tokio::test]
    async fn names_are_resolved_then_checked() {
        let resolver = StaticResolver::new()
            .with("rebind.example", &[ip("10.0.0.1")])
            .with("meta.example", &[ip("169.254.169.254")])
            .with("ok.example", &[ip("8.8.4.4")]);
        let strict = AddressPolicy::strict();
        for (name, expect_ok) in [
            ("https://rebind.example/", false),
            ("https://meta.example/", false),
            ("https://ok.example/", true),
            ("https://unknown.example/", false),
            ("https://[::1]/", false),
            ("https://127.0.0.1/", false),
        ] {
            let result = resolve_checked(&resolver, &strict, &url(name)).await;
            assert_eq!(result.is_ok(), expect_ok, "{name}: {result:?}");
        }
    }

    proptest! {
        /// Any IPv4 address has the same verdict in each of its IPv6 spellings that reach it.
        #[test]
        fn mapped_forms_share_the_verdict(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            let nat64 = IpAddr::V6(Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(raw)));
            let class = classify(IpAddr::V4(v4));
            prop_assert_eq!(classify(mapped), class);
            prop_assert_eq!(classify(nat64), class);
            if class != Public {
                prop_assert!(AddressPolicy::strict().check(mapped).is_err());
            }
        }

        #[test]
        fn cidr_parse_never_panics(text in "\\PC{0,50}") {
            let _ = Cidr::parse(&text);
        }
    }
}
