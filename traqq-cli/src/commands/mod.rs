//! One module per subcommand; [`run`] picks the one the command line names.

mod config_file;
mod dump;
mod find;
mod import;
mod prune;
mod query;
mod record;
mod serve;

use std::process::ExitCode;

use crate::args::{Cli, Command, ConfigCommand};
use crate::config;
use crate::UsageError;

/// Runs the command line's subcommand.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Serve(args) => {
            let mut config = config::load(file, &args.store)?;
            if let Some(tcp) = args.tcp {
                config.server.tcp = tcp;
            }
            if let Some(http) = args.http {
                config.server.http = http;
            }
            if args.auth_token.is_some() {
                config.server.auth_token = args.auth_token;
            }
            config.server.insecure = args.insecure;
            config.validate().map_err(UsageError)?;
            serve::serve(config)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Record(args) => {
            let config = config::load(file, &args.target.store)?;
            record::record(&config, &args)
        }
        Command::Import(args) => {
            let config = config::load(file, &args.target.store)?;
            import::import(&config, &args)
        }
        Command::Query(args) => {
            let config = config::load(file, &args.target.store)?;
            query::query(&config, &args)
        }
        Command::Find(args) => {
            let config = config::load(file, &args.target.store)?;
            find::find(&config, &args)
        }
        Command::Prune(args) => {
            let config = config::load(file, &args.store)?;
            prune::prune(&config)
        }
        Command::Migrate(args) => {
            let config = config::load(file, &args.store)?;
            prune::migrate(&config)
        }
        Command::Export(args) => {
            let config = config::load(file, &args.store)?;
            dump::export_store(&config, &args)
        }
        Command::Restore(args) => {
            let config = config::load(file, &args.store)?;
            dump::restore_store(&config, &args)
        }
        Command::Config(ConfigCommand::Check { file }) => config_file::check(&file),
        Command::Config(ConfigCommand::Example) => config_file::example(),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "traqq", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
