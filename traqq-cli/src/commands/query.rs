//! `traqq query`: every metric per day (or hour) over a range, as a table or JSON.

use std::process::ExitCode;

use crate::args::{Format, QueryArgs};
use crate::config::FileConfig;
use crate::report::{emit, format, group_table, table, window};
use crate::target::Target;

pub(super) fn query(config: &FileConfig, args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let w = window(config, &args.range)?;
    let mut target = Target::open(config, &args.target)?;
    let group = args.group.group();
    if group != traqq_core::group::Group::Day {
        let groups = target.query_groups(w, group)?;
        let text = match format(&args.range) {
            Format::Json => format!("{}\n", serde_json::to_string(&groups)?),
            Format::Table => group_table(&groups),
        };
        return emit(&text);
    }
    let text = match format(&args.range) {
        // JSON stays the list of buckets (what scripts read); the table leads with totals.
        Format::Json => format!("{}\n", serde_json::to_string(&target.query(w)?)?),
        Format::Table => table(&target.query_totals(w)?),
    };
    emit(&text)
}
