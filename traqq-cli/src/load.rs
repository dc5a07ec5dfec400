//! Loading JSON lines into a target (`traqq record`, `traqq import`): sent in batches, bad
//! lines reported by their line number, totals counted.

use std::fs::File;
use std::io::{BufRead, BufReader};

use anyhow::Context;
use indicatif::ProgressBar;

use crate::target::Target;
use crate::UsageError;

/// Largest request line sent to a server (its default `max_line_bytes` is 1 MiB).
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// Bad lines reported one by one; past this, only counted.
const MAX_REPORTED: usize = 100;

#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) lines: usize,
    pub(crate) recorded: usize,
    pub(crate) rejected: usize,
    /// Events not counted again: their id (`[event] id_field`) was recorded before.
    pub(crate) duplicates: usize,
}

/// The totals of a load and what the user sees of them: rejected lines by number (the first
/// [`MAX_REPORTED`]) and the progress bar's rate.
pub(crate) struct Tally {
    pub(crate) totals: Totals,
    pub(crate) progress: ProgressBar,
    /// Line numbers of the rejected lines shown, in the order shown.
    pub(crate) shown: Vec<usize>,
}

impl Tally {
    pub(crate) fn new(progress: ProgressBar) -> Self {
        Tally {
            totals: Totals::default(),
            progress,
            shown: Vec::new(),
        }
    }

    /// The totals, and the progress bar cleared.
    pub(crate) fn finish(&mut self) -> Totals {
        self.progress.finish_and_clear();
        std::mem::take(&mut self.totals)
    }

    /// Counts a rejected line and reports it (in line order: callers sort).
    pub(crate) fn reject(&mut self, line: usize, reason: &str) {
        self.totals.rejected += 1;
        if self.totals.rejected <= MAX_REPORTED {
            self.shown.push(line);
            self.progress.suspend(|| eprintln!("line {line}: {reason}"));
        } else if self.totals.rejected == MAX_REPORTED + 1 {
            self.progress
                .suspend(|| eprintln!("(more rejected lines are counted, not shown)"));
        }
    }

    /// Shows the rate so far on the progress bar.
    pub(crate) fn show_rate(&self) {
        if !self.progress.is_hidden() {
            let secs = self.progress.elapsed().as_secs_f64().max(1e-3);
            self.progress.set_message(format!(
                "{} events, {:.0} events/s",
                self.totals.recorded,
                self.totals.recorded as f64 / secs
            ));
        }
    }
}

/// Why a line that is not UTF-8 is rejected.
pub(crate) fn not_utf8(e: &std::str::Utf8Error) -> String {
    format!("not valid UTF-8 (invalid byte at offset {})", e.valid_up_to())
}

/// Reads lines, sends them in batches, reports rejected ones with their line numbers.
pub(crate) struct Loader<'a> {
    target: &'a mut Target,
    batch: usize,
    texts: Vec<String>,
    line_numbers: Vec<usize>,
    /// Lines rejected before sending (not UTF-8), reported with the batch to keep line order.
    early: Vec<(usize, String)>,
    bytes: usize,
    tally: Tally,
}

impl<'a> Loader<'a> {
    /// A loader sending batches of `batch` lines to `target`, showing `progress`.
    pub(crate) fn new(target: &'a mut Target, batch: usize, progress: ProgressBar) -> Self {
        Loader {
            target,
            batch,
            texts: Vec::new(),
            line_numbers: Vec::new(),
            early: Vec::new(),
            bytes: 0,
            tally: Tally::new(progress),
        }
    }

    /// The totals so far, and the progress bar cleared.
    pub(crate) fn finish(&mut self) -> Totals {
        self.tally.finish()
    }

    fn push(&mut self, line_number: usize, raw: &[u8]) -> anyhow::Result<()> {
        self.tally.totals.lines += 1;
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.trim(),
            Err(e) => {
                self.early.push((line_number, not_utf8(&e)));
                return Ok(());
            }
        };
        if text.is_empty() {
            self.tally.totals.lines -= 1;
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
            self.tally.totals.recorded += outcome.recorded;
            self.tally.totals.duplicates += outcome.duplicates;
            let numbers = std::mem::take(&mut self.line_numbers);
            rejected.extend(
                outcome
                    .rejected
                    .into_iter()
                    .map(|r| (numbers.get(r.index).copied().unwrap_or(0), r.error)),
            );
        }
        rejected.sort_by_key(|r| r.0);
        for (line, reason) in rejected {
            self.tally.reject(line, &reason);
        }
        self.texts.clear();
        self.bytes = 0;
        self.tally.show_rate();
        Ok(())
    }

    /// Reads every line of `input`, sends them, flushes the target.
    pub(crate) fn run(&mut self, input: &mut dyn BufRead) -> anyhow::Result<()> {
        let mut line = Vec::with_capacity(4096);
        let mut number = 0;
        loop {
            line.clear();
            let n = input.read_until(b'\n', &mut line).context("reading input")?;
            if n == 0 {
                break;
            }
            number += 1;
            self.tally.progress.inc(n as u64);
            self.push(number, &line)?;
        }
        self.send()?;
        self.target.flush()
    }
}

pub(crate) fn open_input(name: &str) -> anyhow::Result<(Box<dyn BufRead>, Option<u64>)> {
    if name == "-" {
        return Ok((Box::new(BufReader::new(std::io::stdin())), None));
    }
    let file = File::open(name).map_err(|e| UsageError(format!("cannot open {name}: {e}")))?;
    let len = file.metadata().ok().map(|m| m.len());
    Ok((Box::new(BufReader::with_capacity(1 << 16, file)), len))
}
