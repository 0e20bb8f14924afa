//! `rempart`: a thin shell that parses arguments, opens the chosen store and hands over to the
//! libraries. An error ends the process with status 1 and one line on stderr, `Error: ` and the
//! error with its causes, each once (never a backtrace, whatever `RUST_BACKTRACE` says: these
//! are the user's errors, not the program's).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rempart_server::{ServeArgs, Settings, StoreKind};

#[derive(Parser)]
#[command(
    name = "rempart",
    version,
    about = "Parcel tracking that stays up under a flood"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the public lookup listener and the ingest listener.
    ///
    /// Each setting comes from its flag, else its REMPART_* variable, else the config file
    /// (TOML, same names with underscores), else its default.
    Serve(Box<ServeArgs>),
    /// Import NDJSON event lines (the ingest format) into the store, in batches of 10,000:
    /// the same validation and `event_id` idempotency as ingest, without HTTP. For large fills;
    /// run it while no node serves the data directory. Takes `serve`'s settings (data
    /// directory, store, memory bounds).
    Import {
        /// The file to read; `-` reads standard input
        file: PathBuf,
        #[command(flatten)]
        args: Box<ServeArgs>,
    },
    /// Manage ingest tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage API keys for merchants and integrators (the webhook subscription API).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Traffic generator: legitimate users, depot ingest and floods, against loopback only.
    Siege(rempart_siege::SiegeArgs),
    /// Store-and-forward client for depots: spool scans locally, forward them in batches.
    Depot(rempart_depot::DepotArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an ingest token and print it once; only its SHA-256 digest is stored.
    Create {
        /// A name for the token (who uses it), e.g. `depot-lyon-7`
        name: String,
        /// If a token of that name exists, replace it: the old token stops working (a running
        /// node refuses it within 2 s). Without it, a name already taken is an error.
        #[arg(long)]
        replace: bool,
        /// Data directory [default: ./rempart-data]
        #[arg(long, env = "REMPART_DATA")]
        data: Option<PathBuf>,
    },
    /// Revoke the ingest token with this name (a running node stops accepting it within 2 s).
    Revoke {
        name: String,
        /// Data directory [default: ./rempart-data]
        #[arg(long, env = "REMPART_DATA")]
        data: Option<PathBuf>,
    },
    /// List the names of the ingest tokens.
    List {
        /// Data directory [default: ./rempart-data]
        #[arg(long, env = "REMPART_DATA")]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key and print it once; only its SHA-256 digest is stored.
    Create {
        /// A name for the key (who uses it), e.g. `shop-lyon`
        name: String,
        /// What the key may do (repeat or separate with commas); `webhooks`: the subscription API
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Data directory [default: ./rempart-data]
        #[arg(long, env = "REMPART_DATA")]
        data: Option<PathBuf>,
    },
    /// Revoke the API key with this name (a running node refuses it within 2 s; its
    /// subscriptions stay, unreachable by any new key).
    Revoke {
        name: String,
        /// Data directory [default: ./rempart-data]
        #[arg(long, env = "REMPART_DATA")]
        data: Option<PathBuf>,
    },
    /// List the API keys: name, id and scopes.
    List {
        /// Data directory [default: ./rempart-data]
        #[arg(long, env = "REMPART_DATA")]
        data: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(*args),
        Command::Import { file, args } => import(&file, *args),
        Command::Token { command } => token(command),
        Command::Key { command } => key(command),
        Command::Siege(args) => rempart_siege::run(args),
        Command::Depot(args) => rempart_depot::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Not `anyhow`'s `Debug`, which returning the error from `main` would print: it adds
            // a backtrace when RUST_BACKTRACE is set.
            eprintln!("Error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `a: b: c`. A cause whose text the line already holds is
/// left out: the libraries' errors write their source into their own message (`cannot listen on
/// ADDR: {source}`), which `{:#}` would repeat.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    use rempart_server::tokens;
    let data_dir = |data: Option<PathBuf>| {
        data.unwrap_or_else(|| rempart_server::settings::StoreSettings::defaults().data)
    };
    match command {
        TokenCommand::Create {
            name,
            replace,
            data,
        } => {
            let data = data_dir(data);
            let (token, done) = match replace {
                true => (
                    tokens::replace(&data, &name)?,
                    "created (any older one replaced)",
                ),
                false => (tokens::create(&data, &name)?, "created"),
            };
            println!("{token}");
            eprintln!(
                "token {name:?} {done}; its digest is in {}. A running node accepts it within {} s. This token is shown only once.",
                data.join(tokens::TOKENS_FILE).display(),
                tokens::RELOAD_EVERY.as_secs()
            );
        }
        TokenCommand::Revoke { name, data } => {
            if !tokens::revoke(&data_dir(data), &name)? {
                anyhow::bail!("no token named {name:?}");
            }
            eprintln!(
                "token {name:?} revoked; a running node refuses it within {} s.",
                tokens::RELOAD_EVERY.as_secs()
            );
        }
        TokenCommand::List { data } => {
            for name in tokens::names(&data_dir(data))? {
                println!("{name}");
            }
        }
    }
    Ok(())
}

fn key(command: KeyCommand) -> anyhow::Result<()> {
    use rempart_server::push::keys::{self, Scope};
    let data_dir = |data: Option<PathBuf>| {
        data.unwrap_or_else(|| rempart_server::settings::StoreSettings::defaults().data)
    };
    match command {
        KeyCommand::Create { name, scope, data } => {
            let data = data_dir(data);
            let scopes = scope
                .iter()
                .map(|s| {
                    Scope::parse(s.trim())
                        .ok_or_else(|| anyhow::anyhow!("unknown scope {s:?} (known: webhooks)"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (key, entry) = keys::create(&data, &name, &scopes)?;
            println!("{key}");
            eprintln!(
                "API key {name:?} created (id {:016x}); its digest is in {}. A running node accepts it within {} s. This key is shown only once.",
                entry.id.0,
                data.join(keys::KEYS_FILE).display(),
                rempart_server::tokens::RELOAD_EVERY.as_secs()
            );
        }
        KeyCommand::Revoke { name, data } => {
            if !keys::revoke(&data_dir(data), &name)? {
                anyhow::bail!("no API key named {name:?}");
            }
            eprintln!(
                "API key {name:?} revoked; a running node refuses it within {} s.",
                rempart_server::tokens::RELOAD_EVERY.as_secs()
            );
        }
        KeyCommand::List { data } => {
            for entry in keys::list(&data_dir(data))? {
                let scopes: Vec<&str> = entry.scopes.iter().map(|s| s.as_str()).collect();
                println!("{}\t{:016x}\t{}", entry.name, entry.id.0, scopes.join(","));
            }
        }
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    rempart_server::init_logging(&settings);
    // The node binds its listeners before it opens the store: a port in use is reported before
    // anything is created on disk.
    rempart_server::run(settings, store_opener())?;
    Ok(())
}

/// Opens the store the settings name (on the caller's runtime).
fn store_opener() -> rempart_server::StoreOpener {
    Box::new(|settings: Settings| {
        Box::pin(async move {
            // The push side is the same store: its outbox is written in the events' commit.
            let capacity = settings.push.push_outbox_capacity.get();
            Ok(match &settings.store.store {
                // Creates the data directory as the store's parent; its errors name the path.
                StoreKind::Embedded => {
                    let store = Arc::new(rempart_store::embedded::EmbeddedStore::open(
                        &settings.events_dir(),
                        rempart_store::embedded::EmbeddedOptions {
                            outbox_capacity: capacity,
                            ..embedded_options(&settings.store)
                        },
                    )?);
                    rempart_server::Stores {
                        events: store.clone(),
                        push: Some(store),
                    }
                }
                StoreKind::Postgres(url) => {
                    let options = rempart_store_pg::PgOptions {
                        outbox_capacity: capacity,
                        ..rempart_store_pg::PgOptions::default()
                    };
                    let store = Arc::new(rempart_store_pg::PgStore::connect(url, options).await?);
                    rempart_server::Stores {
                        events: store.clone(),
                        push: Some(store),
                    }
                }
            })
        })
    })
}

fn import(file: &std::path::Path, args: ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let settings = Settings::resolve(args)?;
    rempart_server::init_logging(&settings);
    let input: Box<dyn std::io::BufRead> = match file.to_str() {
        Some("-") => Box::new(std::io::stdin().lock()),
        _ => Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
        )),
    };
    let started = std::time::Instant::now();
    let done = rempart_server::import::run(settings, store_opener(), input)?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "imported {} lines: {} events stored, {} duplicates, in {took:.1} s ({:.0} lines/s)",
        done.lines,
        done.accepted,
        done.duplicates,
        done.lines as f64 / took.max(1e-9)
    );
    Ok(())
}

/// The embedded store's memory bounds, from the settings.
fn embedded_options(
    s: &rempart_server::settings::StoreSettings,
) -> rempart_store::embedded::EmbeddedOptions {
    const MIB: u64 = 1 << 20;
    rempart_store::embedded::EmbeddedOptions {
        cache_bytes: s.store_cache_mb.get() * MIB,
        write_buffer_bytes: s.store_write_buffer_mb.get() * MIB,
        queue_bytes: s.store_queue_mb.get() * MIB,
        ..Default::default()
    }
}
