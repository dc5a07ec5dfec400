//! `traqq import FILE`: backfill NDJSON events (each timed by its own event-time field) in
//! batches, with a progress bar on a terminal and a summary.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::ImportArgs;
use crate::config::FileConfig;
use crate::load::{open_input, Loader, Tally};
use crate::parallel;
use crate::target::Target;
use crate::UsageError;

pub(super) fn import(config: &FileConfig, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    if args.batch == Some(0) || args.workers == Some(0) {
        return Err(UsageError("--batch and --workers must be at least 1".into()).into());
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
    let totals = match &target {
        // A local store records on every core, straight from the input's blocks.
        Target::Local(traqq) => {
            let workers = args
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            let mut tally = Tally::new(progress);
            let plan = parallel::Plan {
                batch: args.batch.unwrap_or(10_000),
                workers,
                block_bytes: parallel::BLOCK_BYTES,
            };
            let result = parallel::import(traqq, &mut *input, plan, &mut tally).and_then(|()| target.flush());
            let totals = tally.finish();
            result?;
            totals
        }
        Target::Server { .. } => {
            let mut loader = Loader::new(&mut target, args.batch.unwrap_or(1000), progress);
            let result = loader.run(&mut input);
            let totals = loader.finish();
            result?;
            totals
        }
    };
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
