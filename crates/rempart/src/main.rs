//! `rempart`: a thin shell that parses arguments, opens the chosen store and hands over to the
//! libraries.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rempart_server::{ServeArgs, Settings, StoreKind};
use rempart_store::EventStore;

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
    /// Manage ingest tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(*args),
        Command::Token { command } => token(command),
        Command::Siege(args) => rempart_siege::run(args),
        Command::Depot(args) => rempart_depot::run(args),
    }
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    use rempart_server::tokens;
    let data_dir = |data: Option<PathBuf>| {
        data.unwrap_or_else(|| PathBuf::from(rempart_server::config::DEFAULT_DATA_DIR))
    };
    match command {
        TokenCommand::Create { name, data } => {
            let data = data_dir(data);
            let token = tokens::create(&data, &name)?;
            println!("{token}");
            eprintln!(
                "token {name:?} created; its digest is in {}. A running node accepts it within {} s. This token is shown only once.",
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

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(args)?;
    rempart_server::init_logging(&settings);
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create data directory {}", settings.data.display()))?;
    let opener: rempart_server::StoreOpener = Box::new(|settings: Settings| {
        Box::pin(async move {
            let store: Arc<dyn EventStore> = match &settings.store {
                StoreKind::Embedded => Arc::new(rempart_store::embedded::EmbeddedStore::open(
                    &settings.events_dir(),
                    rempart_store::embedded::EmbeddedOptions::default(),
                )?),
                StoreKind::Postgres(url) => Arc::new(
                    rempart_store_pg::PgStore::connect(url, rempart_store_pg::PgOptions::default())
                        .await?,
                ),
            };
            Ok(store)
        })
    });
    rempart_server::run(settings, opener)?;
    Ok(())
}
