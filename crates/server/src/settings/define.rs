//! The machinery behind [`settings!`](crate::settings::groups): one line per setting gives its
//! resolved field, its flag (with `--help` text and default), its `REMPART_*` variable, its
//! config-file key and its entry in the list the docs and tests read.
//!
//! Every value — flag, variable, config-file entry and the default itself — goes through the
//! type's one `FromStr`, so a value is checked the same way wherever it comes from.

use std::fmt::Display;
use std::str::FromStr;

use super::ConfigError;

/// One setting, as the docs and tests see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    /// Config-file key; the flag is the same with dashes.
    pub name: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// The default, written as it would be typed.
    pub default: &'static str,
    pub help: &'static str,
    /// The part of the node that uses it (the `--help` heading).
    pub group: &'static str,
}

impl Definition {
    /// `--rate-per-source` for `rate_per_source`.
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

/// `REMPART_` and the name in upper case, computed at compile time (see `env_name!`).
pub const fn env_bytes<const N: usize>(name: &str) -> [u8; N] {
    const PREFIX: &[u8] = b"REMPART_";
    let mut out = [0u8; N];
    let mut i = 0;
    while i < PREFIX.len() {
        out[i] = PREFIX[i];
        i += 1;
    }
    let name = name.as_bytes();
    let mut j = 0;
    while j < name.len() {
        out[i + j] = name[j].to_ascii_uppercase();
        j += 1;
    }
    out
}

/// The environment variable of a setting: `REMPART_` + its name in upper case.
macro_rules! env_name {
    ($name:ident) => {{
        const NAME: &str = stringify!($name);
        const BYTES: [u8; NAME.len() + 8] = $crate::settings::define::env_bytes(NAME);
        const TEXT: &str = match ::core::str::from_utf8(&BYTES) {
            Ok(text) => text,
            Err(_) => panic!("setting names are ASCII"),
        };
        TEXT
    }};
}

/// `flag` settings (`--demo`) may be given without a value, meaning `true`.
macro_rules! flag_value {
    (flag) => {
        "true"
    };
}

/// Defines one group of settings. Each line:
/// `name: Type = "default" [=> flag], "help";` — the default is parsed by `Type::from_str`
/// like any other value.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        $group:ident, $args:ident, $heading:literal {
            $( $name:ident : $ty:ty = $default:literal $(=> $flag:ident)?, $help:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $group {
            $( #[doc = $help] pub $name: $ty, )*
        }

        #[doc = concat!("The flags (and `REMPART_*` variables) of [`", stringify!($group), "`].")]
        #[derive(clap::Args, Debug, Default, Clone)]
        #[command(next_help_heading = $heading)]
        pub struct $args {
            $(
                #[arg(long, env = env_name!($name), hide_env_values = true,
                      help = concat!($help, " [default: ", $default, "]"))]
                $( #[arg(num_args = 0..=1, default_missing_value = flag_value!($flag))] )?
                pub $name: Option<$ty>,
            )*
        }

        impl $group {
            /// Every setting of the group, for docs and tests.
            pub const LIST: &'static [$crate::settings::Definition] = &[
                $( $crate::settings::Definition {
                    name: stringify!($name),
                    env: env_name!($name),
                    default: $default,
                    help: $help,
                    group: $heading,
                }, )*
            ];

            /// Flag (or variable), else config-file entry, else default, for each setting.
            pub(crate) fn resolve(
                args: $args,
                file: &$crate::settings::FileValues,
            ) -> Result<Self, $crate::settings::ConfigError> {
                Ok($group {
                    $( $name: $crate::settings::define::pick(
                        args.$name, stringify!($name), file, $default)?, )*
                })
            }

            /// Every setting at its default (variables and config files ignored).
            pub fn defaults() -> Self {
                Self::resolve(
                    $args::default(),
                    &$crate::settings::FileValues::default(),
                )
                .expect("every default parses (tested)")
            }
        }
    };
}

pub(crate) use {env_name, flag_value, settings};

/// A setting's value: the flag's (or variable's), else the config file's, else the default.
pub fn pick<T>(
    given: Option<T>,
    name: &'static str,
    file: &super::FileValues,
    default: &'static str,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    if let Some(value) = given {
        return Ok(value);
    }
    if let Some(raw) = file.get(name) {
        return raw.parse().map_err(|e| ConfigError::Parse {
            path: file.path().to_owned(),
            message: format!("{name} = {raw:?}: {e}"),
        });
    }
    default.parse().map_err(|e| ConfigError::Invalid {
        name,
        message: format!("the default {default:?} does not parse: {e}"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn environment_names_are_the_setting_names_in_upper_case() {
        assert_eq!(env_name!(rate_per_source), "REMPART_RATE_PER_SOURCE");
        assert_eq!(env_name!(data), "REMPART_DATA");
    }
}
