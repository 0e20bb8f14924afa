//! The types of settings' values: each checks its range in `FromStr`, the one path every value
//! takes (flag, variable, config file, default), so a setting that parsed is valid.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration in whole units, at least 1, with its unit in the type.
macro_rules! positive_duration {
    ($(#[$meta:meta])* $name:ident, $from:path, $unit:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(u64);

        impl $name {
            pub fn get(self) -> u64 {
                self.0
            }

            pub fn duration(self) -> Duration {
                $from(self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim().parse::<u64>() {
                    Ok(0) => Err(concat!("must be at least 1 (", $unit, ")").into()),
                    Ok(n) => Ok($name(n)),
                    Err(e) => Err(format!(concat!($unit, ": {}"), e)),
                }
            }
        }
    };
}

positive_duration!(
    /// Milliseconds, at least 1 (timeouts, periods, targets).
    Millis,
    Duration::from_millis,
    "milliseconds"
);
positive_duration!(
    /// Seconds, at least 1.
    Seconds,
    Duration::from_secs,
    "seconds"
);

/// Milliseconds of waiting that may be 0 (no wait at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(u64);

impl Wait {
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl FromStr for Wait {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<u64>()
            .map(Wait)
            .map_err(|e| format!("milliseconds: {e}"))
    }
}

/// Most worker threads a listener may be given.
pub const MAX_THREADS: usize = 256;

/// Worker threads: `auto` (one per CPU) or 1 to [`MAX_THREADS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    Auto,
    Count(usize),
}

impl Threads {
    pub fn get(self) -> usize {
        match self {
            Threads::Auto => std::thread::available_parallelism().map_or(1, usize::from),
            Threads::Count(n) => n,
        }
    }
}

impl FromStr for Threads {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Threads::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(Threads::Count(n)),
            _ => Err(format!("`auto` or 1 to {MAX_THREADS} threads")),
        }
    }
}

/// A share between 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(f64);

impl Ratio {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for Ratio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(Ratio(x)),
            _ => Err("a share between 0 and 1".into()),
        }
    }
}

/// Most proof-of-work bits a challenge may ask.
pub const MAX_CHALLENGE_BITS: u8 = 32;

/// Leading zero bits of a proof of work, 0 to [`MAX_CHALLENGE_BITS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits(u8);

impl Bits {
    pub fn get(self) -> u8 {
        self.0
    }
}

impl FromStr for Bits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<u8>() {
            Ok(n) if n <= MAX_CHALLENGE_BITS => Ok(Bits(n)),
            _ => Err(format!("0 to {MAX_CHALLENGE_BITS} bits")),
        }
    }
}

/// On or off: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch(bool);

impl Switch {
    pub fn get(self) -> bool {
        self.0
    }
}

impl FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Switch(true)),
            "false" | "0" | "no" | "off" => Ok(Switch(false)),
            _ => Err("true or false".into()),
        }
    }
}

/// The key signing challenge passes: `random` (one per process) or 64 hexadecimal characters,
/// shared by the nodes behind one load balancer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    Random,
    Fixed([u8; 32]),
}

impl Secret {
    pub fn bytes(self) -> Option<[u8; 32]> {
        match self {
            Secret::Random => None,
            Secret::Fixed(bytes) => Some(bytes),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Random => f.write_str("Secret::Random"),
            Secret::Fixed(_) => f.write_str("Secret::Fixed(…)"),
        }
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "random" {
            return Ok(Secret::Random);
        }
        let bad = || "`random` or 64 hexadecimal characters".to_owned();
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Secret::Fixed(out))
    }
}

/// Where the events live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded engine, in `<data>/events`.
    Embedded,
    /// A PostgreSQL-compatible database shared by several nodes.
    Postgres(String),
}

impl FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "embedded" => Ok(StoreKind::Embedded),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StoreKind::Postgres(url.to_owned()))
            }
            other => Err(format!("`embedded` or a postgres:// URL, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_out_of_range_are_refused() {
        assert!("0".parse::<Millis>().is_err());
        assert_eq!("0".parse::<Wait>().unwrap().duration(), Duration::ZERO);
        assert!("0".parse::<Seconds>().is_err());
        assert!("257".parse::<Threads>().is_err());
        assert_eq!("auto".parse::<Threads>().unwrap(), Threads::Auto);
        assert!("1.5".parse::<Ratio>().is_err());
        assert!("33".parse::<Bits>().is_err());
        assert!("maybe".parse::<Switch>().is_err());
        assert!("1".parse::<Switch>().unwrap().get());
        assert!("abc".parse::<Secret>().is_err());
        assert_eq!(
            "00".repeat(32).parse::<Secret>().unwrap(),
            Secret::Fixed([0; 32])
        );
        assert!("mysql://x".parse::<StoreKind>().is_err());
    }

    #[test]
    fn a_secret_is_never_printed() {
        let secret: Secret = "ab".repeat(32).parse().unwrap();
        assert!(!format!("{secret:?}").contains("ab"));
    }
}
