//! `traqq config check FILE` and `traqq config example`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::FileConfig;

/// Validates `file` and prints the effective config.
pub(super) fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let config = FileConfig::load(file)?;
    print!("{}", config.to_toml());
    eprintln!("{}: ok", file.display());
    Ok(ExitCode::SUCCESS)
}

/// Prints the commented example config.
pub(super) fn example() -> anyhow::Result<ExitCode> {
    print!("{}", crate::config::example());
    Ok(ExitCode::SUCCESS)
}
