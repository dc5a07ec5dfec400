//! `traqq`: serve, record, query, find, import and check configs from the shell.
//!
//! Exit codes: 0 ok, 1 runtime error, 2 usage or config error. Errors go to stderr as one
//! sentence naming the file, line or field at fault.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod args;
mod commands;
mod config;
mod load;
mod parallel;
mod report;
mod store;
mod target;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

/// A usage or configuration error: exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let default_level = if matches!(cli.command, args::Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        args::LogFormat::Json => logs.json().init(),
        // Colour codes only for a person at a terminal, never into a file, a pipe or journald.
        args::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }

    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = std::io::stdout().flush();
            eprintln!("traqq: {}", describe(&e));
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// An error and its causes in one line. Errors that show their source in their own message
/// (the storage errors do) are not repeated.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_shown_are_not_repeated() {
        let inner = traqq_storage::Error::unavailable("redis", std::io::Error::other("refused"));
        let e = anyhow::Error::new(inner).context("cannot record");
        assert_eq!(
            describe(&e),
            "cannot record: redis storage is unavailable: refused"
        );
    }
}
