//! Settings of `rempart serve`: flags, then `REMPART_*` variables, then the TOML config file,
//! then defaults. Every limit the server applies is one of these settings.
//!
//! Each setting is defined once, in `groups.rs`, in the group of the part that uses it
//! ([`ListenerSettings`], [`StoreSettings`], [`ShieldSettings`], [`PushSettings`],
//! [`RunSettings`]); the
//! `settings!` machinery (`define.rs`) derives its flag, variable, config-file key, `--help`
//! line and its entry in [`all`]. Values are typed (`values.rs`): a setting that resolved is
//! valid.

pub mod define;
mod groups;
pub mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use define::Definition;
pub use groups::{
    ListenerArgs, ListenerSettings, PushArgs, PushSettings, RunArgs, RunSettings, ShieldArgs,
    ShieldSettings, StoreArgs, StoreSettings,
};
pub use values::StoreKind;

/// `rempart serve` arguments. Each may also come from its `REMPART_*` variable or the config file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file (the settings' names as keys); flags and REMPART_* variables override it
    #[arg(long, env = "REMPART_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub listeners: ListenerArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub shield: ShieldArgs,
    #[command(flatten)]
    pub push: PushArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Resolved settings: every field has its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub listeners: ListenerSettings,
    pub store: StoreSettings,
    pub shield: ShieldSettings,
    pub push: PushSettings,
    pub run: RunSettings,
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
    #[error("setting {name}: {message}")]
    Invalid { name: &'static str, message: String },
}

/// Every setting, group by group.
pub fn all() -> impl Iterator<Item = &'static Definition> {
    [
        ListenerSettings::LIST,
        StoreSettings::LIST,
        ShieldSettings::LIST,
        PushSettings::LIST,
        RunSettings::LIST,
    ]
    .into_iter()
    .flatten()
}

impl Settings {
    /// Resolves flags and variables (already in `args`) over the config file over defaults.
    pub fn resolve(args: ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => FileValues::read(path)?,
            None => FileValues::default(),
        };
        Ok(Settings {
            listeners: ListenerSettings::resolve(args.listeners, &file)?,
            store: StoreSettings::resolve(args.store, &file)?,
            shield: ShieldSettings::resolve(args.shield, &file)?,
            push: PushSettings::resolve(args.push, &file)?,
            run: RunSettings::resolve(args.run, &file)?,
        })
    }

    /// Every setting at its default.
    pub fn defaults() -> Settings {
        Settings {
            listeners: ListenerSettings::defaults(),
            store: StoreSettings::defaults(),
            shield: ShieldSettings::defaults(),
            push: PushSettings::defaults(),
            run: RunSettings::defaults(),
        }
    }

    /// Directory of the embedded store.
    pub fn events_dir(&self) -> PathBuf {
        self.store.data.join("events")
    }
}

/// The values of a config file, as text (each is parsed by its setting's type).
#[derive(Debug, Default)]
pub struct FileValues {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl FileValues {
    /// Reads a TOML file whose keys must all be settings' names.
    fn read(path: &Path) -> Result<FileValues, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<FileValues, ConfigError> {
        let bad = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut values = BTreeMap::new();
        for (key, value) in table {
            if !all().any(|d| d.name == key) {
                return Err(bad(format!("unknown setting `{key}`")));
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(bad(format!("{key}: not a single value: {other}"))),
            };
            values.insert(key, text);
        }
        Ok(FileValues {
            path: path.to_owned(),
            values,
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests;
