//! `traqq export`: a store's metrics as a dump (NDJSON, see `traqq_storage::dump`);
//! `traqq restore`: a dump into an empty store, of the same or another backend.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use traqq_core::bucket::Calendar;
use traqq_core::claim::IdPolicy;
use traqq_storage::dump::{export, restore, DumpSummary, ExportRange, RestoreOptions};

use crate::args::{ExportArgs, RestoreArgs};
use crate::config::FileConfig;
use crate::report::parse_time;
use crate::UsageError;

pub(super) fn export_store(config: &FileConfig, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let calendar = Calendar::new(config.time.zone().map_err(|e| UsageError(e.to_string()))?);
    let range = ExportRange {
        from: args
            .from
            .as_deref()
            .map(|t| parse_time(&calendar, t, false))
            .transpose()?,
        to: args
            .to
            .as_deref()
            .map(|t| parse_time(&calendar, t, true))
            .transpose()?,
    };
    let storage = config.open_store()?;
    let write = |out: &mut dyn Write| -> anyhow::Result<_> {
        let mut out = BufWriter::with_capacity(1 << 16, out);
        let summary = export(storage.as_ref(), &config.prefix, range, &mut out)?;
        // Flushed here, not on drop, which would swallow a full disk's error.
        out.flush().context("cannot write the dump")?;
        Ok(summary)
    };
    let summary = match args.output.as_deref().filter(|&p| p != Path::new("-")) {
        None => write(&mut std::io::stdout().lock())?,
        Some(path) => {
            let mut file = File::create(path)
                .with_context(|| format!("cannot create the dump file {}", path.display()))?;
            let summary = write(&mut file)?;
            // A backup is only one once it is on disk.
            file.sync_all()
                .with_context(|| format!("cannot write the dump file {}", path.display()))?;
            summary
        }
    };
    eprintln!("{}", moved("exported", "from", &summary, config));
    if summary.id_sets > 0 {
        eprintln!(
            "exported {} event ids of {} days ([event] id_field)",
            summary.ids, summary.id_sets
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn restore_store(config: &FileConfig, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let mut input: Box<dyn std::io::BufRead> = if args.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(&args.file)
            .map_err(|e| UsageError(format!("cannot open the dump {}: {e}", args.file)))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let storage = config.open_store()?;
    let traqq = config.traqq();
    let calendar = Calendar::new(traqq.time.zone().map_err(|e| UsageError(e.to_string()))?);
    let options = RestoreOptions {
        skip_sketches: args.skip_sketches,
        ids: IdPolicy::new(&traqq).map(|policy| (policy, calendar)),
    };
    let summary = restore(storage.as_ref(), &config.prefix, &mut input, options)?;
    storage.flush()?;
    println!("{}", moved("restored", "into", &summary, config));
    if summary.id_sets > 0 {
        println!(
            "claimed {} event ids of {} days ([event] id_field: a retry of an event sent before the move is still a duplicate)",
            summary.ids, summary.id_sets
        );
    }
    if summary.skipped_id_sets > 0 {
        println!(
            "left out {} days of event ids: this config sets no [event] id_field",
            summary.skipped_id_sets
        );
    }
    if summary.skipped_sketches > 0 {
        println!(
            "left out {} unique-count sketches of another family (--skip-sketches): their bmp metrics read 0 here",
            summary.skipped_sketches
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "exported 2450 keys (175 unique-count sketches) of 175 buckets under prefix "traqq" from
/// rocksdb at DIR": what a dump moved, and where.
fn moved(done: &str, direction: &str, summary: &DumpSummary, config: &FileConfig) -> String {
    format!(
        "{done} {} keys ({} unique-count sketches) of {} buckets under prefix {:?} {direction} {}",
        summary.keys,
        summary.sketches,
        summary.buckets,
        config.prefix,
        crate::store::describe(&config.storage)
    )
}
