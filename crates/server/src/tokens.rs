//! Ingest bearer tokens. Only SHA-256 digests are stored (`<data>/tokens`, one `name<TAB>hex`
//! line each); a presented token is hashed and compared with every digest in constant time.
//!
//! Tokens are 32 random bytes, so a plain (unsalted, fast) hash is enough: there is nothing to
//! brute-force that a salt or a slow hash would protect.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// File of token digests inside the data directory.
pub const TOKENS_FILE: &str = "tokens";
/// Prefix of every generated token, so one found in a log or a repository is recognisable.
pub const TOKEN_PREFIX: &str = "rmp_";
/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;
/// Most tokens a node accepts (the check is linear in their number).
pub const MAX_TOKENS: usize = 10_000;
/// Longest `Authorization` value examined.
pub const MAX_TOKEN_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token names are 1 to {MAX_NAME_LEN} characters among A-Z a-z 0-9 . _ -")]
    BadName,
    #[error("a token named {0:?} exists already")]
    Exists(String),
    #[error("{path}:{line}: not a `name<TAB>sha256-hex` line")]
    Corrupt { path: PathBuf, line: usize },
    #[error("more than {MAX_TOKENS} tokens")]
    TooMany,
    #[error("cannot get random bytes: {0}")]
    Random(String),
    #[error("tokens file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The digests of every accepted token.
#[derive(Clone, Default)]
pub struct TokenSet {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSet({} tokens)", self.digests.len())
    }
}

impl TokenSet {
    /// Loads `<data>/tokens` (absent means none) plus `extra`, a token given in the clear
    /// (`REMPART_INGEST_TOKEN`), hashed on the spot.
    pub fn load(data: &Path, extra: Option<&str>) -> Result<TokenSet, TokenError> {
        let mut set = TokenSet::default();
        for (_, digest) in read_entries(&data.join(TOKENS_FILE))? {
            set.digests.push(digest);
        }
        if let Some(token) = extra.filter(|t| !t.is_empty()) {
            set.digests.push(digest(token.as_bytes()));
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether an `Authorization` header value carries an accepted bearer token. Compares the
    /// presented token's digest with every stored digest without stopping early.
    pub fn authorizes(&self, header: Option<&[u8]>) -> bool {
        let Some(token) = header.and_then(bearer) else {
            return false;
        };
        let presented = digest(token);
        let mut found = subtle::Choice::from(0u8);
        for d in &self.digests {
            found |= d.ct_eq(&presented);
        }
        found.into()
    }
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    if header.len() > MAX_TOKEN_LEN || header.len() < 7 {
        return None;
    }
    let (scheme, rest) = header.split_at(7);
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn read_entries(path: &Path) -> Result<Vec<(String, [u8; 32])>, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TokenError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let corrupt = || TokenError::Corrupt {
            path: path.to_owned(),
            line: i + 1,
        };
        let (name, hex) = line.split_once('\t').ok_or_else(corrupt)?;
        let digest = parse_hex32(hex.trim()).ok_or_else(corrupt)?;
        entries.push((name.to_owned(), digest));
        if entries.len() > MAX_TOKENS {
            return Err(TokenError::TooMany);
        }
    }
    Ok(entries)
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Creates a token named `name`, appends its digest to `<data>/tokens` (fsync'd) and returns
/// the token itself, which is never stored.
pub fn create(data: &Path, name: &str) -> Result<String, TokenError> {
    let valid_name = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid_name {
        return Err(TokenError::BadName);
    }
    let path = data.join(TOKENS_FILE);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data).map_err(io)?;
    let entries = read_entries(&path)?;
    if entries.iter().any(|(n, _)| n == name) {
        return Err(TokenError::Exists(name.to_owned()));
    }
    if entries.len() >= MAX_TOKENS {
        return Err(TokenError::TooMany);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", to_hex(&secret));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    writeln!(file, "{name}\t{}", to_hex(&digest(token.as_bytes()))).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tokens_authorize_and_only_their_digest_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let token = create(dir.path(), "depot-17").unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        let stored = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&token[TOKEN_PREFIX.len()..]));
        let set = TokenSet::load(dir.path(), None).unwrap();
        assert!(set.authorizes(Some(format!("Bearer {token}").as_bytes())));
        assert!(set.authorizes(Some(format!("bearer {token}").as_bytes())));
        assert!(!set.authorizes(Some(format!("Bearer {token}x").as_bytes())));
        assert!(!set.authorizes(Some(token.as_bytes())));
        assert!(!set.authorizes(None));
    }

    #[test]
    fn duplicate_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path(), "a").unwrap();
        assert!(matches!(
            create(dir.path(), "a"),
            Err(TokenError::Exists(_))
        ));
        for bad in ["", "has space", "tab\tname", &"x".repeat(65), "é"] {
            assert!(matches!(create(dir.path(), bad), Err(TokenError::BadName)));
        }
    }

    #[test]
    fn the_environment_token_is_accepted_too() {
        let dir = tempfile::tempdir().unwrap();
        let set = TokenSet::load(dir.path(), Some("s3cret")).unwrap();
        assert!(set.authorizes(Some(b"Bearer s3cret")));
        assert!(!set.authorizes(Some(b"Bearer s3cre")));
        assert!(!set.authorizes(Some(b"Basic s3cret")));
        let empty = TokenSet::load(dir.path(), Some("")).unwrap();
        assert!(empty.is_empty());
        assert!(!empty.authorizes(Some(b"Bearer ")));
    }

    #[test]
    fn hostile_headers_are_refused_without_panicking() {
        let set = TokenSet::load(tempfile::tempdir().unwrap().path(), Some("t")).unwrap();
        let long = vec![b'a'; 10_000];
        for h in [&b""[..], b"Bearer", b"Bearer  ", b"\xff\xfe", &long] {
            assert!(!set.authorizes(Some(h)));
        }
    }

    #[test]
    fn a_corrupt_tokens_file_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENS_FILE), "ok\t00\n").unwrap();
        let err = TokenSet::load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }
}
