//! Placeholder: filled in by its issue.

/// Arguments of `rempart siege`.
#[derive(clap::Args, Debug)]
pub struct SiegeArgs {}

/// Runs `rempart siege`.
pub fn run(_args: SiegeArgs) -> anyhow::Result<()> {
    anyhow::bail!("rempart siege is not built yet")
}
