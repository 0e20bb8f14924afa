//! Placeholder: filled in by its issue.

/// Arguments of `rempart depot`.
#[derive(clap::Args, Debug)]
pub struct DepotArgs {}

/// Runs `rempart depot`.
pub fn run(_args: DepotArgs) -> anyhow::Result<()> {
    anyhow::bail!("rempart depot is not built yet")
}
