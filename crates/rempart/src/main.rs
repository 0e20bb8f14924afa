//! `rempart`: a thin shell that parses arguments and hands over to the libraries.

use clap::{Parser, Subcommand};

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
    /// Traffic generator: legitimate users, depot ingest and floods, against loopback only.
    Siege(rempart_siege::SiegeArgs),
    /// Store-and-forward client for depots: spool scans locally, forward them in batches.
    Depot(rempart_depot::DepotArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Siege(args) => rempart_siege::run(args),
        Command::Depot(args) => rempart_depot::run(args),
    }
}
