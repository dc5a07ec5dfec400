//! `traqq find TYPE/PATTERN[/ADD_KEY]`: one metric over a range, per day or merged.

use std::fmt::Write as _;
use std::process::ExitCode;

use traqq_core::result::parse_find_path;

use crate::args::{FindArgs, Format};
use crate::config::FileConfig;
use crate::report::{data, emit, format, label, window};
use crate::target::Target;
use crate::UsageError;

pub(super) fn find(config: &FileConfig, args: &FindArgs) -> anyhow::Result<ExitCode> {
    let mut selector = parse_find_path(&args.path).map_err(|e| {
        UsageError(format!(
            "{} (e.g. bmp/ip, add/event~geo, adv/event/amount)",
            e.to_string().replace("invalid query: ", "")
        ))
    })?;
    selector.merge = args.merge;
    let w = window(config, &args.range)?;
    let mut target = Target::open(config, &args.target)?;
    let found = target.find(w, &selector)?;
    let text = match format(&args.range) {
        Format::Json => format!("{}\n", serde_json::to_string(&found)?),
        Format::Table => {
            let mut out = String::new();
            if found.is_empty() {
                out.push_str("(no data)\n");
            }
            for m in &found {
                let _ = writeln!(out, "{}  {}  {}", m.location, label(m), data(&m.result));
            }
            out
        }
    };
    emit(&text)
}
