//! Settings of `rempart serve`: flags, then `REMPART_*` variables, then the TOML config file,
//! then defaults. Every limit the server applies is one of these settings.
//!
//! Flags and variables are parsed by clap (each flag names its variable); the config file is
//! read afterwards and only fills what neither gave.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default data directory (SPEC: `./rempart-data`).
pub const DEFAULT_DATA_DIR: &str = "rempart-data";
pub const DEFAULT_PUBLIC_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_INGEST_ADDR: &str = "127.0.0.1:8081";
/// Open connections the public listener holds at most; more are closed on accept.
pub const DEFAULT_PUBLIC_MAX_CONNECTIONS: usize = 10_000;
/// Open connections the ingest listener holds at most.
pub const DEFAULT_INGEST_MAX_CONNECTIONS: usize = 1_000;
/// A client must send its whole request head within this time (slow-header clients).
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 5_000;
/// Parcels the response cache holds.
pub const DEFAULT_CACHE_ENTRIES: usize = 200_000;
/// How long shutdown waits for open requests before closing connections.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// How often a node polls a shared store's change feed (cache coherence across nodes).
pub const DEFAULT_CHANGE_POLL_MS: u64 = 500;
/// Worker threads of the ingest runtime; they are never shared with the public listener.
pub const DEFAULT_INGEST_THREADS: usize = 1;
/// Log filter: info, but the database pool's per-connection warnings only as errors (during a
/// database outage it would log one line per request otherwise).
pub const DEFAULT_LOG: &str = "info,deadpool=error";
/// Size of the demo data set, in parcels.
pub const DEFAULT_DEMO_PARCELS: usize = 20_000;

/// Shield defaults (see docs/shield.md).
pub const DEFAULT_SHIELD: bool = true;
pub const DEFAULT_SOURCE_MAX_CONNECTIONS: usize = 64;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_RATE_PER_SOURCE: u32 = 50;
pub const DEFAULT_RATE_PER_PREFIX: u32 = 2_000;
pub const DEFAULT_STORAGE_CONCURRENCY: usize = 256;
pub const DEFAULT_STORAGE_QUEUE_MS: u64 = 100;
pub const DEFAULT_STORAGE_TARGET_MS: u64 = 50;
pub const DEFAULT_ATTACK_MODE: &str = "auto";
pub const DEFAULT_ATTACK_REFUSED_RATIO: f64 = 0.5;
pub const DEFAULT_ATTACK_MIN_REQUESTS: u64 = 500;
pub const DEFAULT_ATTACK_P99_MS: u64 = 500;
pub const DEFAULT_ATTACK_CALM_S: u32 = 30;
pub const DEFAULT_CHALLENGE_DIFFICULTY: u8 = 18;
pub const DEFAULT_PASS_TTL_S: u64 = 3_600;
pub const DEFAULT_FILTER_REBUILD_S: u64 = 600;

/// `rempart serve` arguments. Each may also come from its `REMPART_*` variable or the config file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// Data directory (embedded store, tokens) [default: ./rempart-data]
    #[arg(long, env = "REMPART_DATA")]
    pub data: Option<PathBuf>,
    /// Public listener address (anonymous lookups) [default: 127.0.0.1:8080]
    #[arg(long, env = "REMPART_PUBLIC")]
    pub public: Option<SocketAddr>,
    /// Ingest listener address (depots, metrics) [default: 127.0.0.1:8081]
    #[arg(long, env = "REMPART_INGEST")]
    pub ingest: Option<SocketAddr>,
    /// TOML config file; flags and REMPART_* variables override it
    #[arg(long, env = "REMPART_CONFIG")]
    pub config: Option<PathBuf>,
    /// Storage: `embedded` (in the data directory) or a `postgres://…` URL [default: embedded]
    #[arg(long, env = "REMPART_STORE")]
    pub store: Option<String>,
    /// Fill an empty store with demo data on first start and print numbers to try
    #[arg(long, env = "REMPART_DEMO")]
    pub demo: bool,
    /// Parcels in the demo data set [default: 20000]
    #[arg(long, env = "REMPART_DEMO_PARCELS")]
    pub demo_parcels: Option<usize>,
    /// Worker threads for the public listener [default: number of CPUs]
    #[arg(long, env = "REMPART_PUBLIC_THREADS")]
    pub public_threads: Option<usize>,
    /// Worker threads for the ingest listener, reserved for it [default: 1]
    #[arg(long, env = "REMPART_INGEST_THREADS")]
    pub ingest_threads: Option<usize>,
    /// Most open connections on the public listener [default: 10000]
    #[arg(long, env = "REMPART_PUBLIC_MAX_CONNECTIONS")]
    pub public_max_connections: Option<usize>,
    /// Most open connections on the ingest listener [default: 1000]
    #[arg(long, env = "REMPART_INGEST_MAX_CONNECTIONS")]
    pub ingest_max_connections: Option<usize>,
    /// Milliseconds a client has to send a request head [default: 5000]
    #[arg(long, env = "REMPART_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Parcels kept in the response cache [default: 200000]
    #[arg(long, env = "REMPART_CACHE_ENTRIES")]
    pub cache_entries: Option<usize>,
    /// Milliseconds shutdown waits for requests in flight [default: 10000]
    #[arg(long, env = "REMPART_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Milliseconds between polls of a shared store's change feed [default: 500]
    #[arg(long, env = "REMPART_CHANGE_POLL_MS")]
    pub change_poll_ms: Option<u64>,
    /// Log filter, e.g. `info` or `rempart_server=debug` [default: info,deadpool=error]
    #[arg(long, env = "REMPART_LOG")]
    pub log: Option<String>,
    /// Log as JSON lines instead of text
    #[arg(long, env = "REMPART_LOG_JSON")]
    pub log_json: bool,
    /// Shield in front of the public listener; `false` switches every layer off (for comparison) [default: true]
    #[arg(long, env = "REMPART_SHIELD", value_name = "BOOL")]
    pub shield: Option<bool>,
    /// Most open connections from one source address [default: 64]
    #[arg(long, env = "REMPART_SOURCE_MAX_CONNECTIONS")]
    pub source_max_connections: Option<usize>,
    /// Milliseconds a keep-alive connection may sit idle [default: 30000]
    #[arg(long, env = "REMPART_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Lookups per second one address may make [default: 50]
    #[arg(long, env = "REMPART_RATE_PER_SOURCE")]
    pub rate_per_source: Option<u32>,
    /// Lookups per second one /24 (IPv4) or /48 (IPv6) may make [default: 2000]
    #[arg(long, env = "REMPART_RATE_PER_PREFIX")]
    pub rate_per_prefix: Option<u32>,
    /// Most storage reads at once (the adaptive limit's ceiling) [default: 256]
    #[arg(long, env = "REMPART_STORAGE_CONCURRENCY")]
    pub storage_concurrency: Option<usize>,
    /// Longest a lookup waits for a storage slot before 503 [default: 100]
    #[arg(long, env = "REMPART_STORAGE_QUEUE_MS")]
    pub storage_queue_ms: Option<u64>,
    /// Storage read latency above which the concurrency limit shrinks [default: 50]
    #[arg(long, env = "REMPART_STORAGE_TARGET_MS")]
    pub storage_target_ms: Option<u64>,
    /// Attack mode: auto, on or off [default: auto]
    #[arg(long, env = "REMPART_ATTACK_MODE")]
    pub attack_mode: Option<String>,
    /// Share of refused public requests in a second that switches attack mode on [default: 0.5]
    #[arg(long, env = "REMPART_ATTACK_REFUSED_RATIO")]
    pub attack_refused_ratio: Option<f64>,
    /// Fewest public requests in a second for attack mode to judge [default: 500]
    #[arg(long, env = "REMPART_ATTACK_MIN_REQUESTS")]
    pub attack_min_requests: Option<u64>,
    /// Lookup p99 in a second that switches attack mode on [default: 500]
    #[arg(long, env = "REMPART_ATTACK_P99_MS")]
    pub attack_p99_ms: Option<u64>,
    /// Calm seconds before attack mode switches off [default: 30]
    #[arg(long, env = "REMPART_ATTACK_CALM_S")]
    pub attack_calm_s: Option<u32>,
    /// Leading zero bits of the proof of work asked in attack mode [default: 18]
    #[arg(long, env = "REMPART_CHALLENGE_DIFFICULTY")]
    pub challenge_difficulty: Option<u8>,
    /// Seconds a pass earned by a proof of work is valid [default: 3600]
    #[arg(long, env = "REMPART_PASS_TTL_S")]
    pub pass_ttl_s: Option<u64>,
    /// Seconds between rebuilds of the existence filter [default: 600]
    #[arg(long, env = "REMPART_FILTER_REBUILD_S")]
    pub filter_rebuild_s: Option<u64>,
    /// Secret (64 hex characters) signing challenge passes, shared by nodes behind one load balancer [default: random per process]
    #[arg(long, env = "REMPART_SHIELD_SECRET", hide_env_values = true)]
    pub shield_secret: Option<String>,
}

/// The config file: the same settings as the flags, all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    data: Option<PathBuf>,
    public: Option<SocketAddr>,
    ingest: Option<SocketAddr>,
    store: Option<String>,
    demo: Option<bool>,
    demo_parcels: Option<usize>,
    public_threads: Option<usize>,
    ingest_threads: Option<usize>,
    public_max_connections: Option<usize>,
    ingest_max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    cache_entries: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    change_poll_ms: Option<u64>,
    log: Option<String>,
    log_json: Option<bool>,
    shield: Option<bool>,
    source_max_connections: Option<usize>,
    idle_timeout_ms: Option<u64>,
    rate_per_source: Option<u32>,
    rate_per_prefix: Option<u32>,
    storage_concurrency: Option<usize>,
    storage_queue_ms: Option<u64>,
    storage_target_ms: Option<u64>,
    attack_mode: Option<String>,
    attack_refused_ratio: Option<f64>,
    attack_min_requests: Option<u64>,
    attack_p99_ms: Option<u64>,
    attack_calm_s: Option<u32>,
    challenge_difficulty: Option<u8>,
    pass_ttl_s: Option<u64>,
    filter_rebuild_s: Option<u64>,
    shield_secret: Option<String>,
}

/// Where the events live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded engine, in `<data>/events`.
    Embedded,
    /// A PostgreSQL-compatible database shared by several nodes.
    Postgres(String),
}

/// Resolved settings: every field has its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub data: PathBuf,
    pub public: SocketAddr,
    pub ingest: SocketAddr,
    pub store: StoreKind,
    pub demo: bool,
    pub demo_parcels: usize,
    pub public_threads: usize,
    pub ingest_threads: usize,
    pub public_max_connections: usize,
    pub ingest_max_connections: usize,
    pub header_timeout_ms: u64,
    pub cache_entries: usize,
    pub shutdown_grace_ms: u64,
    pub change_poll_ms: u64,
    pub log: String,
    pub log_json: bool,
    pub shield: bool,
    pub source_max_connections: usize,
    pub idle_timeout_ms: u64,
    pub rate_per_source: u32,
    pub rate_per_prefix: u32,
    pub storage_concurrency: usize,
    pub storage_queue_ms: u64,
    pub storage_target_ms: u64,
    pub attack_mode: String,
    pub attack_refused_ratio: f64,
    pub attack_min_requests: u64,
    pub attack_p99_ms: u64,
    pub attack_calm_s: u32,
    pub challenge_difficulty: u8,
    pub pass_ttl_s: u64,
    pub filter_rebuild_s: u64,
    pub shield_secret: Option<[u8; 32]>,
}

/// Why settings could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Resolves flags and variables (already in `args`) over the config file over defaults.
    pub fn resolve(args: ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let store = match args.store.or(file.store).as_deref() {
            None | Some("embedded") => StoreKind::Embedded,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                StoreKind::Postgres(url.to_owned())
            }
            Some(other) => {
                return Err(ConfigError::Invalid(format!(
                    "store must be `embedded` or a postgres:// URL, not {other:?}"
                )));
            }
        };
        let settings = Settings {
            data: args
                .data
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            public: args
                .public
                .or(file.public)
                .unwrap_or_else(|| DEFAULT_PUBLIC_ADDR.parse().expect("valid default")),
            ingest: args
                .ingest
                .or(file.ingest)
                .unwrap_or_else(|| DEFAULT_INGEST_ADDR.parse().expect("valid default")),
            store,
            demo: args.demo || file.demo.unwrap_or(false),
            demo_parcels: args
                .demo_parcels
                .or(file.demo_parcels)
                .unwrap_or(DEFAULT_DEMO_PARCELS),
            public_threads: args.public_threads.or(file.public_threads).unwrap_or(cpus),
            ingest_threads: args
                .ingest_threads
                .or(file.ingest_threads)
                .unwrap_or(DEFAULT_INGEST_THREADS),
            public_max_connections: args
                .public_max_connections
                .or(file.public_max_connections)
                .unwrap_or(DEFAULT_PUBLIC_MAX_CONNECTIONS),
            ingest_max_connections: args
                .ingest_max_connections
                .or(file.ingest_max_connections)
                .unwrap_or(DEFAULT_INGEST_MAX_CONNECTIONS),
            header_timeout_ms: args
                .header_timeout_ms
                .or(file.header_timeout_ms)
                .unwrap_or(DEFAULT_HEADER_TIMEOUT_MS),
            cache_entries: args
                .cache_entries
                .or(file.cache_entries)
                .unwrap_or(DEFAULT_CACHE_ENTRIES),
            shutdown_grace_ms: args
                .shutdown_grace_ms
                .or(file.shutdown_grace_ms)
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS),
            change_poll_ms: args
                .change_poll_ms
                .or(file.change_poll_ms)
                .unwrap_or(DEFAULT_CHANGE_POLL_MS),
            log: args
                .log
                .or(file.log)
                .unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            log_json: args.log_json || file.log_json.unwrap_or(false),
            shield: args.shield.or(file.shield).unwrap_or(DEFAULT_SHIELD),
            source_max_connections: args
                .source_max_connections
                .or(file.source_max_connections)
                .unwrap_or(DEFAULT_SOURCE_MAX_CONNECTIONS),
            idle_timeout_ms: args
                .idle_timeout_ms
                .or(file.idle_timeout_ms)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
            rate_per_source: args
                .rate_per_source
                .or(file.rate_per_source)
                .unwrap_or(DEFAULT_RATE_PER_SOURCE),
            rate_per_prefix: args
                .rate_per_prefix
                .or(file.rate_per_prefix)
                .unwrap_or(DEFAULT_RATE_PER_PREFIX),
            storage_concurrency: args
                .storage_concurrency
                .or(file.storage_concurrency)
                .unwrap_or(DEFAULT_STORAGE_CONCURRENCY),
            storage_queue_ms: args
                .storage_queue_ms
                .or(file.storage_queue_ms)
                .unwrap_or(DEFAULT_STORAGE_QUEUE_MS),
            storage_target_ms: args
                .storage_target_ms
                .or(file.storage_target_ms)
                .unwrap_or(DEFAULT_STORAGE_TARGET_MS),
            attack_mode: args
                .attack_mode
                .or(file.attack_mode)
                .unwrap_or_else(|| DEFAULT_ATTACK_MODE.to_owned()),
            attack_refused_ratio: args
                .attack_refused_ratio
                .or(file.attack_refused_ratio)
                .unwrap_or(DEFAULT_ATTACK_REFUSED_RATIO),
            attack_min_requests: args
                .attack_min_requests
                .or(file.attack_min_requests)
                .unwrap_or(DEFAULT_ATTACK_MIN_REQUESTS),
            attack_p99_ms: args
                .attack_p99_ms
                .or(file.attack_p99_ms)
                .unwrap_or(DEFAULT_ATTACK_P99_MS),
            attack_calm_s: args
                .attack_calm_s
                .or(file.attack_calm_s)
                .unwrap_or(DEFAULT_ATTACK_CALM_S),
            challenge_difficulty: args
                .challenge_difficulty
                .or(file.challenge_difficulty)
                .unwrap_or(DEFAULT_CHALLENGE_DIFFICULTY),
            pass_ttl_s: args
                .pass_ttl_s
                .or(file.pass_ttl_s)
                .unwrap_or(DEFAULT_PASS_TTL_S),
            filter_rebuild_s: args
                .filter_rebuild_s
                .or(file.filter_rebuild_s)
                .unwrap_or(DEFAULT_FILTER_REBUILD_S),
            shield_secret: match args.shield_secret.or(file.shield_secret) {
                None => None,
                Some(hex) => Some(parse_secret(&hex)?),
            },
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("public_threads", self.public_threads),
            ("ingest_threads", self.ingest_threads),
            ("public_max_connections", self.public_max_connections),
            ("ingest_max_connections", self.ingest_max_connections),
            ("cache_entries", self.cache_entries),
            ("header_timeout_ms", self.header_timeout_ms as usize),
            ("change_poll_ms", self.change_poll_ms as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if !matches!(self.attack_mode.as_str(), "auto" | "on" | "off") {
            return Err(ConfigError::Invalid(format!(
                "attack_mode must be auto, on or off, not {:?}",
                self.attack_mode
            )));
        }
        if !(0.0..=1.0).contains(&self.attack_refused_ratio) {
            return Err(ConfigError::Invalid(
                "attack_refused_ratio must be between 0 and 1".into(),
            ));
        }
        if self.challenge_difficulty > 32 {
            return Err(ConfigError::Invalid(
                "challenge_difficulty is at most 32 bits".into(),
            ));
        }
        let positive_shield = [
            ("source_max_connections", self.source_max_connections as u64),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("rate_per_source", u64::from(self.rate_per_source)),
            ("rate_per_prefix", u64::from(self.rate_per_prefix)),
            ("storage_concurrency", self.storage_concurrency as u64),
            ("storage_target_ms", self.storage_target_ms),
            ("attack_calm_s", u64::from(self.attack_calm_s)),
            ("pass_ttl_s", self.pass_ttl_s),
            ("filter_rebuild_s", self.filter_rebuild_s),
        ];
        for (name, value) in positive_shield {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.public_threads > 256 || self.ingest_threads > 256 {
            return Err(ConfigError::Invalid(
                "at most 256 threads per listener".into(),
            ));
        }
        Ok(())
    }

    /// Directory of the embedded store.
    pub fn events_dir(&self) -> PathBuf {
        self.data.join("events")
    }
}

fn parse_secret(hex: &str) -> Result<[u8; 32], ConfigError> {
    let bad = || ConfigError::Invalid("shield_secret must be 64 hexadecimal characters".into());
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = Settings::resolve(ServeArgs::default()).unwrap();
        assert_eq!(s.public.to_string(), DEFAULT_PUBLIC_ADDR);
        assert_eq!(s.ingest.to_string(), DEFAULT_INGEST_ADDR);
        assert_eq!(s.data, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(s.store, StoreKind::Embedded);
        assert!(!s.demo);
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let file =
            write("public = \"127.0.0.1:9000\"\ningest = \"127.0.0.1:9001\"\ncache_entries = 5\n");
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            public: Some("127.0.0.1:7000".parse().unwrap()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.public.to_string(), "127.0.0.1:7000");
        assert_eq!(s.ingest.to_string(), "127.0.0.1:9001");
        assert_eq!(s.cache_entries, 5);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let file = write("pubic = \"127.0.0.1:9000\"\n");
        let args = ServeArgs {
            config: Some(file.path().to_owned()),
            ..ServeArgs::default()
        };
        let err = Settings::resolve(args).unwrap_err().to_string();
        assert!(err.contains("pubic"), "{err}");

        let args = ServeArgs {
            store: Some("mysql://x".into()),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Settings::resolve(args),
            Err(ConfigError::Invalid(_))
        ));

        let args = ServeArgs {
            cache_entries: Some(0),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Settings::resolve(args),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn a_postgres_url_selects_the_shared_store() {
        let args = ServeArgs {
            store: Some("postgres://db/rempart".into()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.store, StoreKind::Postgres("postgres://db/rempart".into()));
    }

    /// deploy/rempart.toml names every setting (commented out where the default depends on the
    /// machine) and its values are the defaults.
    #[test]
    fn the_example_config_has_every_setting_at_its_default() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: ServeArgs,
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rempart.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for arg in Wrapper::command().get_arguments() {
            let key = arg.get_id().as_str();
            if key == "config" {
                continue;
            }
            let present = text.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.starts_with(&format!("{key} ="))
            });
            assert!(present, "deploy/rempart.toml does not mention `{key}`");
        }
        let with_file = Settings::resolve(ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(with_file, Settings::resolve(ServeArgs::default()).unwrap());
    }

    #[test]
    fn a_missing_config_file_is_an_error_naming_it() {
        let args = ServeArgs {
            config: Some("/nonexistent/rempart.toml".into()),
            ..ServeArgs::default()
        };
        let err = Settings::resolve(args).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/rempart.toml"), "{err}");
    }
}
