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
            log: args.log.or(file.log).unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            log_json: args.log_json || file.log_json.unwrap_or(false),
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
