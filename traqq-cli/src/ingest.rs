//! `traqq record` and `traqq import`: JSON lines in batches, bad lines reported by number.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{ImportArgs, RecordArgs};
use crate::config::FileConfig;
use crate::target::Target;
use crate::UsageError;

/// Largest request line sent to a server (its default `max_line_bytes` is 1 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Bad lines reported one by one; past this, only counted.
const MAX_REPORTED: usize = 100;

#[derive(Debug, Default)]
struct Totals {
    lines: usize,
    recorded: usize,
    rejected: usize,
}

/// Reads lines, sends them in batches, reports rejected ones with their line numbers.
struct Loader<'a> {
    target: &'a mut Target,
    batch: usize,
    texts: Vec<String>,
    line_numbers: Vec<usize>,
    /// Lines rejected before sending (not UTF-8), reported with the batch to keep line order.
    early: Vec<(usize, String)>,
    bytes: usize,
    totals: Totals,
    progress: ProgressBar,
}

impl Loader<'_> {
    fn reject(&mut self, line: usize, reason: &str) {
        self.totals.rejected += 1;
        if self.totals.rejected <= MAX_REPORTED {
            self.progress.suspend(|| eprintln!("line {line}: {reason}"));
        } else if self.totals.rejected == MAX_REPORTED + 1 {
            self.progress
                .suspend(|| eprintln!("(more rejected lines are counted, not shown)"));
        }
    }

    fn push(&mut self, line_number: usize, raw: &[u8]) -> anyhow::Result<()> {
        self.totals.lines += 1;
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.trim(),
            Err(e) => {
                self.early.push((
                    line_number,
                    format!("not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()),
                ));
                return Ok(());
            }
        };
        if text.is_empty() {
            self.totals.lines -= 1;
            return Ok(());
        }
        self.bytes += text.len();
        self.texts.push(text.to_owned());
        self.line_numbers.push(line_number);
        if self.texts.len() >= self.batch || self.bytes >= MAX_BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> anyhow::Result<()> {
        let mut rejected = std::mem::take(&mut self.early);
        if !self.texts.is_empty() {
            let refs: Vec<&str> = self.texts.iter().map(String::as_str).collect();
            let outcome = self.target.record_lines(&refs)?;
            self.totals.recorded += outcome.recorded;
            let numbers = std::mem::take(&mut self.line_numbers);
            rejected.extend(
                outcome
                    .rejected
                    .into_iter()
                    .map(|(index, reason)| (numbers.get(index).copied().unwrap_or(0), reason)),
            );
        }
        rejected.sort_by_key(|r| r.0);
        for (line, reason) in rejected {
            self.reject(line, &reason);
        }
        self.texts.clear();
        self.bytes = 0;
        if !self.progress.is_hidden() {
            let secs = self.progress.elapsed().as_secs_f64().max(1e-3);
            self.progress.set_message(format!(
                "{} events, {:.0} events/s",
                self.totals.recorded,
                self.totals.recorded as f64 / secs
            ));
        }
        Ok(())
    }

    fn run(&mut self, input: &mut dyn BufRead) -> anyhow::Result<()> {
        let mut line = Vec::with_capacity(4096);
        let mut number = 0;
        loop {
            line.clear();
            let n = input.read_until(b'\n', &mut line).context("reading input")?;
            if n == 0 {
                break;
            }
            number += 1;
            self.progress.inc(n as u64);
            self.push(number, &line)?;
        }
        self.send()?;
        self.target.flush()
    }
}

fn open_input(name: &str) -> anyhow::Result<(Box<dyn BufRead>, Option<u64>)> {
    if name == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None));
    }
    let file = File::open(name).map_err(|e| UsageError(format!("cannot open {name}: {e}")))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 16, file)), len))
}

pub(crate) fn import(config: &FileConfig, args: &ImportArgs) -> anyhow::Result<ExitCode> {
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
    let mut loader = Loader {
        target: &mut target,
        batch: args.batch,
        texts: Vec::new(),
        line_numbers: Vec::new(),
        early: Vec::new(),
        bytes: 0,
        totals: Totals::default(),
        progress,
    };
    let result = loader.run(&mut input);
    loader.progress.finish_and_clear();
    let totals = std::mem::take(&mut loader.totals);
    result?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {} events, rejected {} lines, in {secs:.2} s ({:.0} events/s)",
        totals.recorded,
        totals.rejected,
        totals.recorded as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn record(config: &FileConfig, args: &RecordArgs) -> anyhow::Result<ExitCode> {
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
    let mut loader = Loader {
        target: &mut target,
        batch: 1000,
        texts: Vec::new(),
        line_numbers: Vec::new(),
        early: Vec::new(),
        bytes: 0,
        totals: Totals::default(),
        progress: ProgressBar::hidden(),
    };
    loader.run(&mut BufReader::new(&mut input))?;
    let totals = std::mem::take(&mut loader.totals);
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
    Ok(ExitCode::SUCCESS)
}
