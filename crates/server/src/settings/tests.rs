//! Settings: precedence, errors, and the docs that list them.

use std::path::{Path, PathBuf};

use super::*;

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn with_file(file: &tempfile::NamedTempFile) -> ServeArgs {
    ServeArgs {
        config: Some(file.path().to_owned()),
        ..ServeArgs::default()
    }
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let s = Settings::resolve(ServeArgs::default()).unwrap();
    assert_eq!(s, Settings::defaults());
    assert_eq!(s.listeners.public.to_string(), "127.0.0.1:8080");
    assert_eq!(s.listeners.ingest.to_string(), "127.0.0.1:8081");
    assert_eq!(s.store.data, PathBuf::from("rempart-data"));
    assert_eq!(s.store.store, StoreKind::Embedded);
    assert!(!s.run.demo.get());
    assert!(s.shield.shield.get());
}

#[test]
fn flags_override_the_file_and_the_file_overrides_defaults() {
    let file =
        write("public = \"127.0.0.1:9000\"\ningest = \"127.0.0.1:9001\"\ncache_entries = 5\n");
    let mut args = with_file(&file);
    args.listeners.public = Some("127.0.0.1:7000".parse().unwrap());
    let s = Settings::resolve(args).unwrap();
    assert_eq!(s.listeners.public.to_string(), "127.0.0.1:7000");
    assert_eq!(s.listeners.ingest.to_string(), "127.0.0.1:9001");
    assert_eq!(s.store.cache_entries.get(), 5);
}

#[test]
fn unknown_keys_and_bad_values_are_clear_errors() {
    let err = Settings::resolve(with_file(&write("pubic = \"127.0.0.1:9000\"\n")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pubic"), "{err}");

    for (text, named) in [
        ("store = \"mysql://x\"\n", "store"),
        ("cache_entries = 0\n", "cache_entries"),
        ("attack_mode = \"sometimes\"\n", "attack_mode"),
        ("attack_refused_ratio = 2.0\n", "attack_refused_ratio"),
        ("challenge_difficulty = 40\n", "challenge_difficulty"),
        ("shield_secret = \"abc\"\n", "shield_secret"),
        ("public_threads = 0\n", "public_threads"),
        ("header_timeout_ms = [1, 2]\n", "header_timeout_ms"),
    ] {
        let err = Settings::resolve(with_file(&write(text)))
            .unwrap_err()
            .to_string();
        assert!(err.contains(named), "{text}: {err}");
    }
}

#[test]
fn a_postgres_url_selects_the_shared_store() {
    let mut args = ServeArgs::default();
    args.store.store = Some("postgres://db/rempart".parse().unwrap());
    let s = Settings::resolve(args).unwrap();
    assert_eq!(
        s.store.store,
        StoreKind::Postgres("postgres://db/rempart".into())
    );
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

/// Each setting is one flag, and its `--help` line shows its default.
#[test]
fn every_setting_has_a_flag_with_its_default_in_the_help() {
    use clap::CommandFactory as _;
    #[derive(clap::Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }
    let command = Wrapper::command();
    let flags: Vec<_> = command.get_arguments().collect();
    for d in all() {
        let arg = flags
            .iter()
            .find(|a| a.get_id() == d.name)
            .unwrap_or_else(|| panic!("{} has no flag", d.name));
        let help = arg.get_help().unwrap().to_string();
        assert!(
            help.contains(&format!("[default: {}]", d.default)),
            "{help}"
        );
        assert_eq!(arg.get_env().unwrap(), d.env);
    }
    assert_eq!(flags.len(), all().count() + 1, "settings and --config");
}

/// deploy/rempart.toml names every setting and its values are the defaults.
#[test]
fn the_example_config_has_every_setting_at_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rempart.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    for d in all() {
        let present = text.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{} =", d.name))
        });
        assert!(present, "deploy/rempart.toml does not mention `{}`", d.name);
    }
    let resolved = Settings::resolve(ServeArgs {
        config: Some(path),
        ..ServeArgs::default()
    })
    .unwrap();
    assert_eq!(resolved, Settings::defaults());
}

/// README's settings table has a row per setting with its flag, variable and default.
#[test]
fn the_readme_lists_every_setting_with_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(path).unwrap();
    for d in all() {
        let flag = d.flag();
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| `{flag}")))
            .unwrap_or_else(|| panic!("README has no row for {flag}"));
        assert!(row.contains(d.env), "{row}");
        assert!(row.contains(&format!("`{}`", d.default)), "{row}");
    }
}
