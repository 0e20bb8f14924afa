//! API keys for merchants and integrators, modelled on the ingest tokens (`tokens.rs`): only
//! SHA-256 digests are stored (`<data>/api-keys`, one `name<TAB>id<TAB>scopes<TAB>hex` line
//! each), the key itself is printed once by `rempart key create`, and a running node rereads the
//! file when it changes ([`LiveKeys`], every [`crate::tokens::RELOAD_EVERY`]).
//!
//! A key has a stable [`KeyId`] (random, 16 hex digits in the file): the owner of its endpoints
//! and subscriptions in the store. A key revoked and created again under the same name gets a
//! new id, so it never inherits the old key's subscriptions.
//!
//! Looking a presented key up goes through a hash map of digests. That lookup is not constant
//! time, and need not be: keys are 32 random bytes, so what an attacker controls is the key,
//! not its digest, and timing tells nothing about any stored key's bytes.
//!
//! On the public listener a valid key (any scope) makes its client *known* to the shield: no
//! per-source rate limit, no challenge, priority storage reads (the same standing an ingest
//! token has there). The subscription API (`/v1/webhooks/…`) requires the `webhooks` scope.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rempart_store::push::KeyId;

use crate::tokens::{
    FileStamp, RecordsError, TokenError, bearer, check_name, digest, parse_hex32, read_records,
    stamp, to_hex, write_whole,
};

/// File of key digests inside the data directory.
pub const KEYS_FILE: &str = "api-keys";
/// Prefix of every generated key (`rmk_`, where ingest tokens are `rmp_`).
pub const KEY_PREFIX: &str = "rmk_";
/// Most keys a node accepts.
pub const MAX_KEYS: usize = 10_000;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The webhook subscription API.
    Webhooks,
}

impl Scope {
    pub const ALL: [Scope; 1] = [Scope::Webhooks];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Webhooks => "webhooks",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub name: String,
    pub id: KeyId,
    pub scopes: Vec<Scope>,
    digest: [u8; 32],
}

impl KeyEntry {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a keys file or command failed (the token errors, which share the file handling).
pub type KeyError = TokenError;

fn parse_scopes(text: &str) -> Option<Vec<Scope>> {
    let mut scopes: Vec<Scope> = text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(Scope::parse)
        .collect::<Option<_>>()?;
    scopes.sort();
    scopes.dedup();
    Some(scopes)
}

fn read_entries(path: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    read_records(path, MAX_KEYS, |line| {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, id, scopes, hex] = fields[..] else {
            return None;
        };
        Some(KeyEntry {
            name: name.to_owned(),
            id: KeyId(u64::from_str_radix(id, 16).ok()?),
            scopes: parse_scopes(scopes)?,
            digest: parse_hex32(hex.trim())?,
        })
    })
    .map_err(|e| match e {
        RecordsError::Io(source) => KeyError::Io {
            path: path.to_owned(),
            source,
        },
        RecordsError::Corrupt(line) => KeyError::Corrupt {
            path: path.to_owned(),
            line,
        },
        RecordsError::TooMany => KeyError::TooMany,
    })
}

/// Writes `entries` as the whole of `<data>/api-keys` ([`write_whole`]).
fn rewrite(data: &Path, entries: &[KeyEntry]) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: data.join(KEYS_FILE),
        source,
    };
    std::fs::create_dir_all(data).map_err(io)?;
    let mut text = String::new();
    for e in entries {
        let scopes: Vec<&str> = e.scopes.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(
            text,
            "{}\t{:016x}\t{}\t{}",
            e.name,
            e.id.0,
            scopes.join(","),
            to_hex(&e.digest)
        );
    }
    write_whole(data, KEYS_FILE, &text).map_err(io)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(out)
}

/// Creates a key named `name` with `scopes`, stores its digest and returns the key, which is
/// never stored. A name already taken is refused.
pub fn create(data: &Path, name: &str, scopes: &[Scope]) -> Result<(String, KeyEntry), KeyError> {
    check_name(name)?;
    let mut entries = read_entries(&data.join(KEYS_FILE))?;
    if entries.iter().any(|e| e.name == name) {
        return Err(KeyError::Exists(name.to_owned()));
    }
    if entries.len() >= MAX_KEYS {
        return Err(KeyError::TooMany);
    }
    let key = format!("{KEY_PREFIX}{}", to_hex(&random_bytes::<32>()?));
    // Ids are random, never reused: a key created again under a revoked key's name must not
    // inherit its subscriptions. Zero and collisions are drawn again.
    let id = loop {
        let id = u64::from_le_bytes(random_bytes::<8>()?) >> 1;
        if id != 0 && !entries.iter().any(|e| e.id.0 == id) {
            break KeyId(id);
        }
    };
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let entry = KeyEntry {
        name: name.to_owned(),
        id,
        scopes,
        digest: digest(key.as_bytes()),
    };
    entries.push(entry.clone());
    rewrite(data, &entries)?;
    Ok((key, entry))
}

/// Removes the key named `name`; `Ok(false)` if there was none. Its endpoints and subscriptions
/// stay in the store (a key of that id can never come back; see [`create`]).
pub fn revoke(data: &Path, name: &str) -> Result<bool, KeyError> {
    let mut entries = read_entries(&data.join(KEYS_FILE))?;
    let before = entries.len();
    entries.retain(|e| e.name != name);
    if entries.len() == before {
        return Ok(false);
    }
    rewrite(data, &entries)?;
    Ok(true)
}

/// The keys of `<data>/api-keys`, without their digests' use outside this module.
pub fn list(data: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    read_entries(&data.join(KEYS_FILE))
}

/// The keys a running node accepts, reread when the file changes. A file that cannot be read or
/// parsed keeps the keys accepted so far (and is reported).
pub struct LiveKeys {
    path: PathBuf,
    current: RwLock<Arc<HashMap<[u8; 32], KeyEntry>>>,
    seen: Mutex<Option<FileStamp>>,
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveKeys({} keys)", self.snapshot().len())
    }
}

fn by_digest(entries: Vec<KeyEntry>) -> HashMap<[u8; 32], KeyEntry> {
    entries.into_iter().map(|e| (e.digest, e)).collect()
}

impl LiveKeys {
    /// No keys, and no file to reread (push switched off; tests).
    pub fn empty() -> LiveKeys {
        LiveKeys {
            path: PathBuf::new(),
            current: RwLock::new(Arc::new(HashMap::new())),
            seen: Mutex::new(None),
        }
    }

    /// Loads `<data>/api-keys` (absent means none). At start a bad file is an error.
    pub fn load(data: &Path) -> Result<LiveKeys, KeyError> {
        let path = data.join(KEYS_FILE);
        let seen = stamp(&path);
        let map = by_digest(read_entries(&path)?);
        Ok(LiveKeys {
            path,
            current: RwLock::new(Arc::new(map)),
            seen: Mutex::new(seen),
        })
    }

    fn snapshot(&self) -> Arc<HashMap<[u8; 32], KeyEntry>> {
        match self.current.read() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// The key an `Authorization: Bearer rmk_…` value carries, if it is one of ours.
    pub fn identify(&self, header: Option<&[u8]>) -> Option<KeyEntry> {
        let key = header.and_then(bearer)?;
        if !key.starts_with(KEY_PREFIX.as_bytes()) {
            return None;
        }
        self.snapshot().get(&digest(key)).cloned()
    }

    /// Whether the header carries a valid key of any scope (the shield's "keyed client").
    pub fn authorizes(&self, header: Option<&[u8]>) -> bool {
        self.identify(header).is_some()
    }

    /// Rereads the file if it changed: `Ok(Some(n))` keys now, `Ok(None)` unchanged. On error
    /// the previous keys stay.
    pub fn reload_if_changed(&self) -> Result<Option<usize>, KeyError> {
        let now = stamp(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == now {
            return Ok(None);
        }
        *seen = now;
        let map = by_digest(read_entries(&self.path)?);
        let n = map.len();
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(map),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(map),
        }
        Ok(Some(n))
    }
}

/// Rereads the keys file every [`crate::tokens::RELOAD_EVERY`] until `stop` turns true.
pub async fn watch(keys: &LiveKeys, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::tokens::RELOAD_EVERY) => {}
            _ = stop.changed() => return,
        }
        match keys.reload_if_changed() {
            Ok(Some(n)) => tracing::info!(keys = n, "API keys file reread"),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "API keys file not reread; the keys accepted so far stay")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer_of(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn created_keys_identify_their_owner_and_only_digests_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (key, entry) = create(dir.path(), "shop-1", &[Scope::Webhooks]).unwrap();
        assert!(key.starts_with(KEY_PREFIX));
        let stored = std::fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap();
        assert!(!stored.contains(&key[KEY_PREFIX.len()..]));
        let live = LiveKeys::load(dir.path()).unwrap();
        let found = live.identify(Some(&bearer_of(&key))).unwrap();
        assert_eq!(found.id, entry.id);
        assert!(found.allows(Scope::Webhooks));
        assert!(
            live.identify(Some(&bearer_of(&format!("{key}0"))))
                .is_none()
        );
        assert!(live.identify(Some(key.as_bytes())).is_none());
        assert!(live.identify(None).is_none());
    }

    #[test]
    fn a_revoked_key_is_refused_after_a_reload_and_a_new_one_gets_a_new_id() {
        let dir = tempfile::tempdir().unwrap();
        let (old, first) = create(dir.path(), "shop", &[Scope::Webhooks]).unwrap();
        let live = LiveKeys::load(dir.path()).unwrap();
        assert!(matches!(
            create(dir.path(), "shop", &[]),
            Err(KeyError::Exists(_))
        ));
        assert!(revoke(dir.path(), "shop").unwrap());
        assert!(!revoke(dir.path(), "shop").unwrap());
        assert_eq!(live.reload_if_changed().unwrap(), Some(0));
        assert!(!live.authorizes(Some(&bearer_of(&old))));
        let (_, second) = create(dir.path(), "shop", &[Scope::Webhooks]).unwrap();
        assert_ne!(first.id, second.id);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn a_corrupt_file_keeps_the_keys_accepted_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = create(dir.path(), "a", &[Scope::Webhooks]).unwrap();
        let live = LiveKeys::load(dir.path()).unwrap();
        std::fs::write(dir.path().join(KEYS_FILE), "a\tzz\twebhooks\t00\n").unwrap();
        assert!(live.reload_if_changed().is_err());
        assert!(live.authorizes(Some(&bearer_of(&key))));
        std::fs::write(dir.path().join(KEYS_FILE), "a\t01\tcoffee\t00\n").unwrap();
        assert!(LiveKeys::load(dir.path()).is_err());
    }
}
