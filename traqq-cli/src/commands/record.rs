//! `traqq record`: one event (`--event JSON`) or JSON lines from stdin (`-`).

use std::io::{BufReader, Read};
use std::process::ExitCode;

use indicatif::ProgressBar;

use crate::args::RecordArgs;
use crate::config::FileConfig;
use crate::load::Loader;
use crate::target::Target;
use crate::UsageError;

pub(super) fn record(config: &FileConfig, args: &RecordArgs) -> anyhow::Result<ExitCode> {
    let mut input: Box<dyn Read> = match (&args.event, args.input.as_deref()) {
        (Some(event), None) => Box::new(std::io::Cursor::new(
            event.replace(['\n', '\r'], " ").into_bytes(),
        )),
        (None, Some("-")) => Box::new(std::io::stdin()),
        (None, Some(other)) => {
            return Err(UsageError(format!(
                "unexpected argument {other:?}: give --event JSON, or - to read JSON lines from stdin"
            ))
            .into())
        }
        _ => return Err(UsageError("give --event JSON, or - to read JSON lines from stdin".into()).into()),
    };
    let mut target = Target::open(config, &args.target)?;
    let mut loader = Loader::new(&mut target, 1000, ProgressBar::hidden());
    loader.run(&mut BufReader::new(&mut input))?;
    let totals = loader.finish();
    if totals.rejected > 0 {
        anyhow::bail!(
            "{} of {} events rejected (see above); {} recorded",
            totals.rejected,
            totals.lines,
            totals.recorded
        );
    }
    if totals.lines != 1 {
        eprintln!("recorded {} events", totals.recorded);
    }
    if totals.duplicates > 0 {
        eprintln!(
            "skipped {} duplicates (their event ids were recorded before)",
            totals.duplicates
        );
    }
    Ok(ExitCode::SUCCESS)
}
