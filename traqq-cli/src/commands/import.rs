//! `traqq import FILE`: backfill NDJSON events (each timed by its own event-time field) in
//! batches, with a progress bar on a terminal and a summary.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::ImportArgs;
use crate::config::FileConfig;
use crate::load::{open_input, Loader};
use crate::target::Target;
use crate::UsageError;

pub(super) fn import(config: &FileConfig, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    if args.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    let (mut input, len) = open_input(&args.file)?;
    let mut target = Target::open(config, &args.target)?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = match len {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut loader = Loader::new(&mut target, args.batch, progress);
    let result = loader.run(&mut input);
    let totals = loader.finish();
    result?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {} events, rejected {} lines, skipped {} duplicates, in {secs:.2} s ({:.0} events/s)",
        totals.recorded,
        totals.rejected,
        totals.duplicates,
        totals.recorded as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
