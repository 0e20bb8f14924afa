//! Ingest bearer tokens. Only SHA-256 digests are stored (`<data>/tokens`, one `name<TAB>hex`
//! line each); a presented token is hashed and compared with every digest in constant time.
//! A running node rereads the file when it changes ([`LiveTokens`]), so `rempart token create`
//! and `rempart token revoke` take effect within [`RELOAD_EVERY`] without a restart.
//!
//! Tokens are 32 random bytes, so a plain (unsalted, fast) hash is enough: there is nothing to
//! brute-force that a salt or a slow hash would protect.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

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
/// How often a running node looks for changes to the tokens file.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

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

/// What identifies a version of the tokens file: a change to any of these means "reread".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub(crate) fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// The tokens a running node accepts: the file's, plus the environment's, reread when the file
/// changes. A file that cannot be read or parsed keeps the tokens accepted so far (and is
/// reported), so a half-edited file cannot lock every depot out.
pub struct LiveTokens {
    path: PathBuf,
    /// Digest of `REMPART_INGEST_TOKEN`, never the token itself.
    extra: Option<[u8; 32]>,
    current: RwLock<Arc<TokenSet>>,
    seen: Mutex<Option<FileStamp>>,
}

impl std::fmt::Debug for LiveTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveTokens({:?})", self.snapshot())
    }
}

impl LiveTokens {
    /// Loads `<data>/tokens` (absent means none) plus `extra` (`REMPART_INGEST_TOKEN`). At
    /// start a bad file is an error.
    pub fn load(data: &Path, extra: Option<&str>) -> Result<LiveTokens, TokenError> {
        let path = data.join(TOKENS_FILE);
        let extra = extra
            .filter(|t| !t.is_empty())
            .map(|t| digest(t.as_bytes()));
        let seen = stamp(&path);
        let set = Self::read(&path, extra)?;
        Ok(LiveTokens {
            path,
            extra,
            current: RwLock::new(Arc::new(set)),
            seen: Mutex::new(seen),
        })
    }

    fn read(path: &Path, extra: Option<[u8; 32]>) -> Result<TokenSet, TokenError> {
        let mut set = TokenSet::default();
        set.digests
            .extend(read_entries(path)?.into_iter().map(|(_, d)| d));
        set.digests.extend(extra);
        Ok(set)
    }

    fn snapshot(&self) -> Arc<TokenSet> {
        match self.current.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// See [`TokenSet::authorizes`].
    pub fn authorizes(&self, header: Option<&[u8]>) -> bool {
        self.snapshot().authorizes(header)
    }

    /// Rereads the file if it changed since last time: `Ok(Some(n))` with the number of tokens
    /// now accepted, `Ok(None)` if unchanged. On error the previous tokens stay.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, TokenError> {
        let now = stamp(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return Ok(None);
        }
        // Remember the version even if it is bad: it is reported once, not every poll.
        *seen = now;
        let set = Self::read(&self.path, self.extra)?;
        let n = set.len();
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
        Ok(Some(n))
    }
}

/// Rereads the tokens file every [`RELOAD_EVERY`] until `stop` turns true.
pub async fn watch(tokens: &LiveTokens, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_EVERY) => {}
            _ = stop.changed() => return,
        }
        match tokens.reload_if_changed() {
            Ok(Some(n)) => tracing::info!(tokens = n, "tokens file reread"),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "tokens file not reread; the tokens accepted so far stay")
            }
        }
    }
}

/// The token of a `Bearer <token>` header value (scheme case-insensitive).
pub(crate) fn bearer(header: &[u8]) -> Option<&[u8]> {
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

pub(crate) fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn read_entries(path: &Path) -> Result<Vec<(String, [u8; 32])>, TokenError> {
    read_records(path, MAX_TOKENS, |line| {
        let (name, hex) = line.split_once('\t')?;
        Some((name.to_owned(), parse_hex32(hex.trim())?))
    })
    .map_err(|e| match e {
        RecordsError::Io(source) => TokenError::Io {
            path: path.to_owned(),
            source,
        },
        RecordsError::Corrupt(line) => TokenError::Corrupt {
            path: path.to_owned(),
            line,
        },
        RecordsError::TooMany => TokenError::TooMany,
    })
}

/// Why a file of secrets' digests (tokens, API keys) could not be read.
pub(crate) enum RecordsError {
    Io(std::io::Error),
    /// This line (from 1) does not parse.
    Corrupt(usize),
    /// More than the file's bound.
    TooMany,
}

/// The records of a file of one record a line (absent: none), skipping blank lines and `#`
/// comments; at most `max`.
pub(crate) fn read_records<T>(
    path: &Path,
    max: usize,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, RecordsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RecordsError::Io(e)),
    };
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        records.push(parse(line).ok_or(RecordsError::Corrupt(i + 1))?);
        if records.len() > max {
            return Err(RecordsError::TooMany);
        }
    }
    Ok(records)
}

/// Writes `text` as the whole of `<data>/<name>`: a temporary file, fsync'd, renamed over the
/// old one, then the directory fsync'd.
pub(crate) fn write_whole(data: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = data.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, data.join(name))?;
    if let Ok(dir) = std::fs::File::open(data) {
        let _ = dir.sync_all();
    }
    Ok(())
}

pub(crate) fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
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

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether `name` can name a token: 1 to [`MAX_NAME_LEN`] characters among `A-Z a-z 0-9 . _ -`
/// (a tab or a newline would break the file's lines).
pub(crate) fn check_name(name: &str) -> Result<(), TokenError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    valid.then_some(()).ok_or(TokenError::BadName)
}

/// A new token: [`TOKEN_PREFIX`] and 32 random bytes in hexadecimal.
fn new_token() -> Result<String, TokenError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", to_hex(&secret)))
}

/// Creates a token named `name`, appends its digest to `<data>/tokens` (fsync'd) and returns
/// the token itself, which is never stored. A name already taken is refused ([`replace`] gives
/// it a new token instead).
pub fn create(data: &Path, name: &str) -> Result<String, TokenError> {
    check_name(name)?;
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
    let token = new_token()?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    writeln!(file, "{name}\t{}", to_hex(&digest(token.as_bytes()))).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(token)
}

/// Gives `name` a new token, created as by [`create`] if there was none by that name; the old
/// token of that name is refused from then on (a running node follows within
/// [`RELOAD_EVERY`]). Returns the new token, which is never stored. The file is rewritten in one
/// step (temporary file, fsync, rename): no moment has both tokens or neither.
pub fn replace(data: &Path, name: &str) -> Result<String, TokenError> {
    check_name(name)?;
    let path = data.join(TOKENS_FILE);
    std::fs::create_dir_all(data).map_err(|source| TokenError::Io {
        path: path.clone(),
        source,
    })?;
    let mut entries = read_entries(&path)?;
    entries.retain(|(n, _)| n != name);
    if entries.len() >= MAX_TOKENS {
        return Err(TokenError::TooMany);
    }
    let token = new_token()?;
    entries.push((name.to_owned(), digest(token.as_bytes())));
    rewrite(data, &entries)?;
    Ok(token)
}

/// Removes the token named `name` from `<data>/tokens` (rewritten through a temporary file,
/// fsync'd, renamed). `Ok(false)` if there was none by that name.
pub fn revoke(data: &Path, name: &str) -> Result<bool, TokenError> {
    let mut entries = read_entries(&data.join(TOKENS_FILE))?;
    if !entries.iter().any(|(n, _)| n == name) {
        return Ok(false);
    }
    entries.retain(|(n, _)| n != name);
    rewrite(data, &entries)?;
    Ok(true)
}

/// Writes `entries` as the whole of `<data>/tokens` ([`write_whole`]).
fn rewrite(data: &Path, entries: &[(String, [u8; 32])]) -> Result<(), TokenError> {
    let mut text = String::new();
    for (n, d) in entries {
        let _ = writeln!(text, "{n}\t{}", to_hex(d));
    }
    write_whole(data, TOKENS_FILE, &text).map_err(|source| TokenError::Io {
        path: data.join(TOKENS_FILE),
        source,
    })
}

/// The names of the tokens in `<data>/tokens`.
pub fn names(data: &Path) -> Result<Vec<String>, TokenError> {
    Ok(read_entries(&data.join(TOKENS_FILE))?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
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
        let set = LiveTokens::load(dir.path(), None).unwrap();
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
    fn replacing_a_token_revokes_the_old_one_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let other = create(dir.path(), "other").unwrap();
        let old = create(dir.path(), "depot").unwrap();
        let new = replace(dir.path(), "depot").unwrap();
        assert_ne!(old, new);
        let set = LiveTokens::load(dir.path(), None).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(set.authorizes(Some(bearer(&new).as_bytes())));
        assert!(!set.authorizes(Some(bearer(&old).as_bytes())));
        assert!(set.authorizes(Some(bearer(&other).as_bytes())));
        assert_eq!(names(dir.path()).unwrap(), ["other", "depot"]);
        // A name not taken yet is created; bad names are refused as by `create`.
        let fresh = replace(dir.path(), "fresh").unwrap();
        assert!(fresh.starts_with(TOKEN_PREFIX));
        assert_eq!(names(dir.path()).unwrap().len(), 3);
        assert!(matches!(
            replace(dir.path(), "has space"),
            Err(TokenError::BadName)
        ));
    }

    #[test]
    fn the_environment_token_is_accepted_too() {
        let dir = tempfile::tempdir().unwrap();
        let set = LiveTokens::load(dir.path(), Some("s3cret")).unwrap();
        assert!(set.authorizes(Some(b"Bearer s3cret")));
        assert!(!set.authorizes(Some(b"Bearer s3cre")));
        assert!(!set.authorizes(Some(b"Basic s3cret")));
        let empty = LiveTokens::load(dir.path(), Some("")).unwrap();
        assert!(empty.is_empty());
        assert!(!empty.authorizes(Some(b"Bearer ")));
    }

    #[test]
    fn hostile_headers_are_refused_without_panicking() {
        let set = LiveTokens::load(tempfile::tempdir().unwrap().path(), Some("t")).unwrap();
        let long = vec![b'a'; 10_000];
        for h in [&b""[..], b"Bearer", b"Bearer  ", b"\xff\xfe", &long] {
            assert!(!set.authorizes(Some(h)));
        }
    }

    #[test]
    fn a_running_node_follows_creations_and_revocations() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveTokens::load(dir.path(), Some("env-token")).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live.reload_if_changed().unwrap(), None);
        let a = create(dir.path(), "depot-a").unwrap();
        let b = create(dir.path(), "depot-b").unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(!live.authorizes(Some(bearer(&a).as_bytes())));
        assert_eq!(live.reload_if_changed().unwrap(), Some(3));
        assert!(live.authorizes(Some(bearer(&a).as_bytes())));
        assert!(live.authorizes(Some(bearer(&b).as_bytes())));
        assert!(live.authorizes(Some(b"Bearer env-token")));

        assert!(revoke(dir.path(), "depot-a").unwrap());
        assert!(!revoke(dir.path(), "depot-a").unwrap());
        assert_eq!(names(dir.path()).unwrap(), vec!["depot-b".to_owned()]);
        assert_eq!(live.reload_if_changed().unwrap(), Some(2));
        assert!(!live.authorizes(Some(bearer(&a).as_bytes())));
        assert!(live.authorizes(Some(bearer(&b).as_bytes())));

        // A broken file is reported once and changes nothing; fixing it is picked up.
        let good = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        std::fs::write(dir.path().join(TOKENS_FILE), "half-written\tab").unwrap();
        assert!(live.reload_if_changed().is_err());
        assert_eq!(live.reload_if_changed().unwrap(), None);
        assert!(live.authorizes(Some(bearer(&b).as_bytes())));
        std::fs::write(dir.path().join(TOKENS_FILE), good).unwrap();
        assert_eq!(live.reload_if_changed().unwrap(), Some(2));

        // Removing the file removes its tokens, not the environment's.
        std::fs::remove_file(dir.path().join(TOKENS_FILE)).unwrap();
        assert_eq!(live.reload_if_changed().unwrap(), Some(1));
        assert!(!live.authorizes(Some(bearer(&b).as_bytes())));
        assert!(live.authorizes(Some(b"Bearer env-token")));
    }

    #[test]
    fn a_corrupt_tokens_file_is_an_error_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENS_FILE), "ok\t00\n").unwrap();
        let err = LiveTokens::load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
    }
}
