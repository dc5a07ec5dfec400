//! `traqq query`: every metric per day (or hour) over a range, as a table or JSON.

use std::process::ExitCode;

use crate::args::{Format, QueryArgs};
use crate::config::FileConfig;
use crate::report::{emit, format, range_and_opts, table};
use crate::target::Target;

pub(super) fn query(config: &FileConfig, args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let (range, opts) = range_and_opts(config, &args.range)?;
    let mut target = Target::open(config, &args.target)?;
    let text = match format(&args.range) {
        // JSON stays the list of buckets (what scripts read); the table leads with totals.
        Format::Json => format!("{}\n", serde_json::to_string(&target.query(range, opts)?)?),
        Format::Table => table(&target.query_totals(range, opts)?),
    };
    emit(&text)
}
