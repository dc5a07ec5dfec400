//! Local imports on every core (`traqq import --data DIR` / `--storage`): the input is read in
//! large blocks cut at a newline, and worker threads record each block's lines straight from
//! the block (no per-line `String`), in batches of `--batch` lines. The store takes batches from
//! several threads at once (it does for the server's connections), and a block's results are
//! reported in input order, so rejected lines keep their line numbers and their order.
//!
//! Events are recorded in a different order than read, which changes nothing stored: counters,
//! sums and leaderboards add up, sketches union, and an event id is claimed atomically whoever
//! records it first. (Only `[limits] max_labels` depends on order: which labels come first when
//! a bucket's cap is reached.)

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use traqq_storage::Traqq;

use crate::load::{not_utf8, Tally};

/// Bytes read per block (its lines, cut at the last newline, go to one worker).
pub(crate) const BLOCK_BYTES: usize = 1 << 20;

/// Whole lines of the input.
struct Block {
    /// Position in the input, from 0.
    seq: usize,
    bytes: Vec<u8>,
}

/// What recording one block did.
#[derive(Default)]
struct Recorded {
    seq: usize,
    input_bytes: usize,
    lines: usize,
    recorded: usize,
    duplicates: usize,
    /// Newlines in the block: where the next block's line numbers start.
    newlines: usize,
    /// `(line number within the block, from 1, reason)`, in line order (numbered in input
    /// order by [`InOrder`], so the reader need not count lines).
    rejected: Vec<(usize, String)>,
    /// The block's buffer, back for the reader to fill again (a fresh megabyte per block cost
    /// page faults).
    buffer: Vec<u8>,
}

/// How a local import runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Lines per batch.
    pub(crate) batch: usize,
    /// Recording threads.
    pub(crate) workers: usize,
    /// Bytes read per block ([`BLOCK_BYTES`]).
    pub(crate) block_bytes: usize,
}

/// Reads `input` to its end and records every line into `traqq` as `plan` says; counts and
/// reports into `tally`.
pub(crate) fn import(
    traqq: &Arc<Traqq>,
    input: &mut dyn Read,
    plan: Plan,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let Plan {
        batch,
        workers,
        block_bytes,
    } = plan;
    let workers = workers.max(1);
    // Two blocks waiting per worker keep every core busy and memory bounded.
    let (to_workers, blocks) = mpsc::sync_channel::<Block>(workers * 2);
    // Only the workers hold the receiving end: when they are all gone, sending fails.
    let blocks = Arc::new(Mutex::new(blocks));
    let (to_main, results) = mpsc::channel::<anyhow::Result<Recorded>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (blocks, to_main, traqq) = (Arc::clone(&blocks), to_main.clone(), Arc::clone(traqq));
            scope.spawn(move || work(&traqq, &blocks, batch, &to_main));
        }
        drop((to_main, blocks));
        let mut order = InOrder {
            first_line: 1,
            ..InOrder::default()
        };
        let read = read_blocks(
            input,
            block_bytes.max(1),
            &to_workers,
            |done| order.take(done, tally),
            &results,
        );
        // No more blocks: the workers finish theirs and hang up.
        drop(to_workers);
        for done in results.iter() {
            if read.is_ok() {
                order.take(done, tally)?;
            }
        }
        read
    })
}

/// Hands blocks to the workers; between blocks, takes what they have finished.
fn read_blocks(
    input: &mut dyn Read,
    block_bytes: usize,
    to_workers: &SyncSender<Block>,
    mut take: impl FnMut(anyhow::Result<Recorded>) -> anyhow::Result<()>,
    results: &Receiver<anyhow::Result<Recorded>>,
) -> anyhow::Result<()> {
    // The unfinished last line of the block read before.
    let mut carry: Vec<u8> = Vec::new();
    // Buffers of recorded blocks, to read into again.
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut seq = 0;
    loop {
        let mut bytes = spare.pop().unwrap_or_default();
        bytes.clear();
        if carry.len() >= block_bytes {
            // A line longer than a block goes on in its own buffer (copying it into a fresh
            // one for every block it spans would be quadratic).
            std::mem::swap(&mut bytes, &mut carry);
        }
        // Room for the whole block first: growing while reading copied it again.
        bytes.reserve(carry.len() + block_bytes);
        bytes.append(&mut carry);
        // What came before holds no newline (a block's unfinished tail, or a long line's start).
        let read_from = bytes.len();
        let n = (&mut *input)
            .take(block_bytes as u64)
            .read_to_end(&mut bytes)
            .context("reading input")?;
        let end = if n == 0 {
            bytes.len()
        } else {
            match memchr::memrchr(b'\n', bytes.get(read_from..).unwrap_or_default()) {
                Some(last) => read_from + last + 1,
                // A line longer than a block: read on until it ends.
                None => {
                    carry = bytes;
                    continue;
                }
            }
        };
        carry.extend_from_slice(bytes.get(end..).unwrap_or_default());
        bytes.truncate(end);
        if !bytes.is_empty() {
            if to_workers.send(Block { seq, bytes }).is_err() {
                // Every worker is gone: an error waits in `results`.
                return Ok(());
            }
            seq += 1;
        }
        for mut done in results.try_iter() {
            if let Ok(recorded) = &mut done {
                spare.push(std::mem::take(&mut recorded.buffer));
            }
            take(done)?;
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// One worker: records blocks until there are none left or one fails.
fn work(
    traqq: &Traqq,
    blocks: &Mutex<Receiver<Block>>,
    batch: usize,
    to_main: &mpsc::Sender<anyhow::Result<Recorded>>,
) {
    loop {
        let next = blocks.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(block) = next else {
            return;
        };
        let done = record_block(traqq, block, batch);
        let failed = done.is_err();
        if to_main.send(done).is_err() || failed {
            return;
        }
    }
}

/// Records the lines of `block`, `batch` at a time, and gives its buffer back.
fn record_block(traqq: &Traqq, block: Block, batch: usize) -> anyhow::Result<Recorded> {
    let mut out = record_lines(traqq, &block, batch)?;
    out.buffer = block.bytes;
    Ok(out)
}

/// [`record_block`]'s recording.
fn record_lines(traqq: &Traqq, block: &Block, batch: usize) -> anyhow::Result<Recorded> {
    let mut out = Recorded {
        seq: block.seq,
        input_bytes: block.bytes.len(),
        ..Recorded::default()
    };
    let mut texts: Vec<&str> = Vec::with_capacity(batch);
    let mut numbers: Vec<usize> = Vec::with_capacity(batch);
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', &block.bytes).chain(std::iter::once(block.bytes.len()));
    for (i, end) in ends.enumerate() {
        let raw = block.bytes.get(start..end).unwrap_or_default();
        start = end + 1;
        // Every line but the one after the last newline ends with one.
        out.newlines = i;
        let line = i + 1;
        match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                out.lines += 1;
                texts.push(text.trim());
                numbers.push(line);
                if texts.len() >= batch {
                    record_batch(traqq, &mut texts, &mut numbers, &mut out)?;
                }
            }
            Err(e) => {
                out.lines += 1;
                out.rejected.push((line, not_utf8(&e)));
            }
        }
    }
    record_batch(traqq, &mut texts, &mut numbers, &mut out)?;
    out.rejected.sort_by_key(|r| r.0);
    Ok(out)
}

/// Records `texts` (lines `numbers`) as one batch into `out`, and empties them.
fn record_batch(
    traqq: &Traqq,
    texts: &mut Vec<&str>,
    numbers: &mut Vec<usize>,
    out: &mut Recorded,
) -> anyhow::Result<()> {
    if texts.is_empty() {
        return Ok(());
    }
    let report = traqq.record_json_lines(texts.iter().copied())?.report();
    out.recorded += report.recorded;
    out.duplicates += report.duplicates;
    out.rejected.extend(
        report
            .rejected
            .into_iter()
            .map(|r| (numbers.get(r.index).copied().unwrap_or(0), r.error)),
    );
    texts.clear();
    numbers.clear();
    Ok(())
}

/// Blocks finished out of order, reported in input order.
#[derive(Default)]
struct InOrder {
    next: usize,
    /// Line number of the first line of block `next`.
    first_line: usize,
    waiting: BTreeMap<usize, Recorded>,
}

impl InOrder {
    fn take(&mut self, done: anyhow::Result<Recorded>, tally: &mut Tally) -> anyhow::Result<()> {
        let done = done?;
        self.waiting.insert(done.seq, done);
        while let Some(done) = self.waiting.remove(&self.next) {
            self.next += 1;
            let totals = &mut tally.totals;
            totals.lines += done.lines;
            totals.recorded += done.recorded;
            totals.duplicates += done.duplicates;
            for (line, reason) in &done.rejected {
                tally.reject(self.first_line + line - 1, reason);
            }
            self.first_line += done.newlines;
            tally.progress.inc(done.input_bytes as u64);
            tally.show_rate();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::fmt::Write as _;

    use indicatif::ProgressBar;
    use traqq_core::config::{AddValueConfig, MappingConfig, TraqqConfig};
    use traqq_core::plan::{QueryOptions, QueryRange};
    use traqq_storage::{ManualClock, MemoryStorage};

    use super::*;
    use crate::load::Totals;

    const NOW: i64 = 1_764_288_000;

    fn engine() -> Arc<Traqq> {
        let traqq = Traqq::new(config(), MemoryStorage::new(), "p").unwrap();
        Arc::new(traqq.with_clock(ManualClock::new(NOW)))
    }

    fn config() -> TraqqConfig {
        TraqqConfig {
            mapping: MappingConfig {
                bitmap: vec!["ip".into()],
                add: vec!["event".into(), "event~geo".into()],
                add_value: vec![AddValueConfig {
                    key: "geo".into(),
                    add_key: "amount".into(),
                }],
                top: vec!["geo".into(), "host".into()],
                distribution: Vec::new(),
            },
            ..TraqqConfig::default()
        }
    }

    /// 6,000 lines over 5 days: good events, bad ones at known lines, blank lines, CRLF
    /// endings, one line longer than a small block, invalid UTF-8, no newline at the end.
    fn input() -> (Vec<u8>, Vec<usize>) {
        let mut text = String::new();
        let mut bad = Vec::new();
        for line in 1..=6_000usize {
            match line % 997 {
                13 => {
                    bad.push(line);
                    text.push_str("{\"event\":\"broken\"\n");
                    continue;
                }
                14 => {
                    text.push_str("   \n");
                    continue;
                }
                15 => {
                    bad.push(line);
                    text.push_str("[1,2]\r\n");
                    continue;
                }
                _ => {}
            }
            let x = (line as u64).wrapping_mul(2_654_435_761) % 1_000_003;
            let host = if line == 4_321 {
                "h".repeat(3_000)
            } else {
                format!("h{}", x % 40)
            };
            write!(
                text,
                "{{\"event\":\"e{}\",\"ip\":\"10.0.{}.{}\",\"geo\":\"g{}\",\"host\":\"{host}\",\"amount\":{}.25,\"ts\":{}}}",
                x % 3,
                x % 7,
                x % 250,
                x % 9,
                x % 100,
                NOW - (x as i64 % (5 * 86_400)),
            )
            .unwrap();
            text.push_str(if line % 2 == 0 { "\r\n" } else { "\n" });
        }
        let mut bytes = text.into_bytes();
        bad.push(6_001);
        bytes.extend_from_slice(b"{\"event\":\"\xff\"}\n");
        bytes.extend_from_slice(b"{\"event\":\"last\",\"ts\":1764280000}");
        (bytes, bad)
    }

    fn run(plan: Plan) -> (Arc<Traqq>, Totals, Vec<usize>) {
        let traqq = engine();
        let (bytes, _) = input();
        let mut tally = Tally::new(ProgressBar::hidden());
        import(&traqq, &mut bytes.as_slice(), plan, &mut tally).unwrap();
        let shown = std::mem::take(&mut tally.shown);
        (traqq, tally.finish(), shown)
    }

    #[test]
    fn many_workers_and_small_blocks_store_exactly_what_one_worker_does() {
        let (one, totals1, shown1) = run(Plan {
            batch: 10_000,
            workers: 1,
            block_bytes: BLOCK_BYTES,
        });
        // Blocks smaller than one line (line 4,321 holds 3,000 bytes) and than a batch.
        let (many, totals3, shown3) = run(Plan {
            batch: 50,
            workers: 3,
            block_bytes: 1_000,
        });
        let (_, bad) = input();
        for (totals, shown) in [(&totals1, &shown1), (&totals3, &shown3)] {
            assert_eq!(shown, &bad, "rejected lines by number, in order");
            assert_eq!(totals.rejected, bad.len());
            let blanks = (1..=6_000).filter(|line| line % 997 == 14).count();
            assert_eq!(totals.lines, 6_002 - blanks, "blank lines are not counted");
            assert_eq!(totals.recorded, totals.lines - bad.len());
        }
        let query = |t: &Traqq| {
            t.query_range(QueryRange::Days(6), QueryOptions::default())
                .unwrap()
        };
        let (a, b) = (query(&one), query(&many));
        assert_eq!(a.days, b.days, "counters, sums, leaderboards and uniques per day");
        assert_eq!(a.unions, b.unions);
        assert_eq!(a.top_unions, b.top_unions);
        let events: i64 = a
            .find_str("add/event")
            .iter()
            .filter_map(|r| match &r.result {
                traqq_core::result::MetricData::Hash(h) => Some(h.values().sum::<i64>()),
                _ => None,
            })
            .sum();
        assert_eq!(events as usize, totals1.recorded);
    }

    #[test]
    fn a_store_failure_stops_the_import_with_its_error() {
        let store = Arc::new(traqq_storage::conformance::Faulty::new(MemoryStorage::new()));
        let traqq = Traqq::with_shared_storage(config(), store.clone(), "p").unwrap();
        let traqq = Arc::new(traqq.with_clock(ManualClock::new(NOW)));
        store.set_down(true);
        let (bytes, _) = input();
        let mut tally = Tally::new(ProgressBar::hidden());
        let plan = Plan {
            batch: 100,
            workers: 2,
            block_bytes: 4_096,
        };
        let err = import(&traqq, &mut bytes.as_slice(), plan, &mut tally).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err:#}");
    }
}
