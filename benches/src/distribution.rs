//! `traqq-bench distribution` (issue 17): what one distribution costs on top of the standard
//! workload.
//!
//! **Ingest.** The same generated events (batches of 10,000 lines, generated before any timing)
//! are recorded with the standard mapping and with the standard mapping plus one `dst` of
//! `amount` per `event~geo` ([`distribution_config`]), into a fresh store per run: the memory
//! store and RocksDB in a temp dir. Runs alternate (standard, distribution, then the other way
//! round), so drift on a shared machine hits both alike. Only the `record_json_lines` calls are
//! timed: CPU time of the recording thread (as `compare` and `ids` measure), the process's CPU
//! time (RocksDB's background threads included) and wall time. The target compares the medians
//! of the recording thread's CPU time.
//!
//! **Storage.** The distribution variant is recorded once more into the memory store, and each
//! day's `dst` key (`PREFIX:dst:d:DAY:amount:event~geo`) is read whole (`Read::Hash`); its
//! fields `LABEL:BIN` and `LABEL:s` are grouped by label. Bytes per label are counted as the
//! stores lay them out: RocksDB/sled packed maps (`varint(len) field kind 8-byte number`), and
//! Redis's payload (field bytes plus the value as the decimal text `HINCRBY`/`HINCRBYFLOAT`
//! leave). Then, measured: both mappings into RocksDB, compacted, directory sizes subtracted; and
//! Redis's `MEMORY USAGE` of each day's key (a throwaway `redis-server` from `PATH`, or
//! `TRAQQ_REDIS_URL`; skipped with a note when neither is there).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use traqq_core::batch::Number;
use traqq_core::bucket::BucketKind;
use traqq_core::config::TraqqConfig;
use traqq_core::distribution::{FIELD_SEPARATOR, SUM_SUFFIX};
use traqq_core::key::{AdvPart, KeyRef, MetricType};
use traqq_core::read::{Read, ReadResult};
use traqq_storage::{ManualClock, MemoryStorage, Storage, Traqq};

use crate::mapping::{distribution_config, standard_config, DISTRIBUTION};
use crate::phase::dir_bytes;
use crate::procfs::{cpus, load_average, process_cpu, thread_cpu};
use crate::redis_server::RedisServer;
use crate::stats::{median, min};
use crate::verdict;
use crate::workload::{Chunk, Workload, WINDOW_SECS};

/// Lines per `record_json_lines` call (as `compare`'s default).
const BATCH: usize = 10_000;

/// The prefix every store is written under.
const PREFIX: &str = "bench";

/// The ingest target of issue 17: at most this many times the standard workload's cost.
const TARGET: f64 = 1.3;

/// Where a run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// [`MemoryStorage`].
    Memory,
    /// `traqq_rocks::RocksStorage` in a fresh temp dir, default options.
    Rocks,
}

impl Store {
    /// The name printed.
    pub fn name(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::Rocks => "rocksdb",
        }
    }
}

/// One timed run, seconds.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// CPU time of the recording thread (wall time where that clock is missing).
    pub thread_cpu: f64,
    /// CPU time of the whole process, all threads (wall time where that clock is missing).
    pub process_cpu: f64,
    /// Wall time.
    pub wall: f64,
}

/// Opens a fresh store; the temp dir (for RocksDB) must outlive it.
fn open(store: Store) -> anyhow::Result<(Arc<dyn Storage>, Option<tempfile::TempDir>)> {
    Ok(match store {
        Store::Memory => (Arc::new(MemoryStorage::new()), None),
        Store::Rocks => {
            let dir = tempfile::tempdir()?;
            let rocks =
                traqq_rocks::RocksStorage::open(dir.path().join("db"), traqq_rocks::RocksConfig::default())?;
            (Arc::new(rocks), Some(dir))
        }
    })
}

/// Records every chunk through `config` into `storage`, checking that no line is rejected.
fn record(
    config: TraqqConfig,
    storage: Arc<dyn Storage>,
    chunks: &[Chunk],
    now: i64,
) -> anyhow::Result<Traqq> {
    let traqq = Traqq::with_shared_storage(config, storage, PREFIX)?.with_clock(ManualClock::new(now));
    for chunk in chunks {
        let outcome = traqq.record_json_lines(chunk.lines())?;
        if let Some(r) = outcome.rejected.first() {
            bail!("line {} rejected: {}", r.index, r.error);
        }
    }
    Ok(traqq)
}

/// One timed run: `chunks` recorded through `config` into a fresh `store`. Opening the store
/// and building the engine are not timed.
pub fn run(store: Store, config: TraqqConfig, chunks: &[Chunk], now: i64) -> anyhow::Result<Sample> {
    let (storage, _dir) = open(store)?;
    let traqq = Traqq::with_shared_storage(config, storage, PREFIX)?.with_clock(ManualClock::new(now));
    let (wall, thread, process) = (Instant::now(), thread_cpu(), process_cpu());
    for chunk in chunks {
        let outcome = traqq.record_json_lines(chunk.lines())?;
        if let Some(r) = outcome.rejected.first() {
            bail!("line {} rejected: {}", r.index, r.error);
        }
    }
    let wall = wall.elapsed().as_secs_f64();
    let since = |start: Option<std::time::Duration>, now: Option<std::time::Duration>| {
        start
            .zip(now)
            .map_or(wall, |(a, b)| b.saturating_sub(a).as_secs_f64())
    };
    let sample = Sample {
        thread_cpu: since(thread, thread_cpu()),
        process_cpu: since(process, process_cpu()),
        wall,
    };
    traqq.flush()?;
    Ok(sample)
}

/// The `dst` key of `day_start` (daily bucket).
pub fn dst_key(day_start: i64) -> String {
    let mut key = String::new();
    KeyRef {
        metric: MetricType::Dst,
        bucket: BucketKind::Day,
        timestamp: day_start,
        pattern: DISTRIBUTION.0,
        add_key: Some(DISTRIBUTION.1),
        part: AdvPart::Sums,
    }
    .write_to(PREFIX, &mut key);
    key
}

/// What one day's `dst` key holds.
#[derive(Debug, Clone, Default)]
pub struct DayFigures {
    /// Start of the day, unix seconds.
    pub day_start: i64,
    /// Labels (`event~geo` values) with at least one value.
    pub labels: usize,
    /// Hash fields of the key: bins and sums.
    pub fields: usize,
    /// Most fields one label has.
    pub max_fields: usize,
    /// Values recorded (sum of the bin counts).
    pub values: i64,
    /// Field bytes alone (label, `:`, bin or `s`).
    pub field_bytes: usize,
    /// Bytes of the entries in a packed map (RocksDB, sled): per field `varint(len)` (1 byte
    /// below 128), the field, a kind byte and 8 bytes of number.
    pub packed_bytes: usize,
    /// Redis payload: field bytes plus each value as decimal text.
    pub redis_payload_bytes: usize,
}

/// Reads the `dst` key of `day_start` from `storage` and counts what it holds.
pub fn day_figures(storage: &dyn Storage, day_start: i64) -> anyhow::Result<DayFigures> {
    let key = dst_key(day_start);
    let results = storage.read(&[Read::Hash(key.clone())])?;
    let Some(ReadResult::Hash(fields)) = results.into_iter().next() else {
        bail!("reading {key} did not answer a hash");
    };
    let mut per_label: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = DayFigures {
        day_start,
        fields: fields.len(),
        ..DayFigures::default()
    };
    for (field, n) in &fields {
        let Some((label, suffix)) = field.rsplit_once(FIELD_SEPARATOR) else {
            bail!("field {field:?} of {key} has no label");
        };
        *per_label.entry(label).or_insert(0) += 1;
        if suffix != SUM_SUFFIX {
            out.values += n.as_i64();
        }
        let value_text = match n {
            Number::Int(i) => i.to_string(),
            Number::Float(x) => x.to_string(),
        };
        out.field_bytes += field.len();
        out.packed_bytes += varint_len(field.len()) + field.len() + 1 + 8;
        out.redis_payload_bytes += field.len() + value_text.len();
    }
    out.labels = per_label.len();
    out.max_fields = per_label.values().copied().max().unwrap_or(0);
    Ok(out)
}

fn varint_len(mut n: usize) -> usize {
    let mut bytes = 1;
    while n >= 0x80 {
        n >>= 7;
        bytes += 1;
    }
    bytes
}

/// The starts of the 7 days the workload's events fall in (`now` at midnight UTC: 7 whole days).
fn days(now: i64) -> Vec<i64> {
    let last = now.div_euclid(86_400) * 86_400;
    let first = (now - WINDOW_SECS).div_euclid(86_400) * 86_400;
    (0..)
        .map(|i| first + i * 86_400)
        .take_while(|d| *d <= last && *d < now)
        .collect()
}

/// `traqq-bench distribution`: see the module docs.
pub fn bench(workload: &Workload, events: u64, runs: usize, redis: bool) -> anyhow::Result<()> {
    let now = workload.now;
    let mut generator = workload.generator();
    let mut chunks = Vec::new();
    let mut left = events;
    while left > 0 {
        let n = left.min(BATCH as u64);
        let mut chunk = Chunk::default();
        generator.refill(&mut chunk, n as usize);
        chunks.push(chunk);
        left -= n;
    }
    let load = load_average().map_or(String::new(), |[a, b, c]| {
        format!(", load average {a:.2} {b:.2} {c:.2}")
    });
    println!(
        "traqq-bench distribution: {events} events (seed {}, now {now}), batches of {BATCH}, {runs} alternating runs per store, one recording thread, {} CPUs{load}",
        workload.seed,
        cpus()
    );
    println!(
        "mappings: standard (DESIGN §8) vs standard + distribution [{{ key = \"{}\", value_key = \"{}\" }}]",
        DISTRIBUTION.0, DISTRIBUTION.1
    );

    // Ingest.
    let runs = runs.max(1);
    let mut verdicts = Vec::new();
    let mut table = Vec::new();
    for store in [Store::Memory, Store::Rocks] {
        // One untimed warm-up of each (page faults of the allocator, RocksDB's first files).
        run(store, standard_config(), &chunks, now)?;
        run(store, distribution_config(), &chunks, now)?;
        let (mut plain, mut dst) = (Vec::new(), Vec::new());
        for i in 0..runs {
            if i % 2 == 0 {
                plain.push(run(store, standard_config(), &chunks, now)?);
                dst.push(run(store, distribution_config(), &chunks, now)?);
            } else {
                dst.push(run(store, distribution_config(), &chunks, now)?);
                plain.push(run(store, standard_config(), &chunks, now)?);
            }
            eprintln!(
                "  {} run {}: thread CPU standard {:.3} s, with distribution {:.3} s",
                store.name(),
                i + 1,
                plain[i].thread_cpu,
                dst[i].thread_cpu
            );
        }
        let col = |s: &[Sample], f: fn(&Sample) -> f64| s.iter().map(f).collect::<Vec<f64>>();
        for (name, samples) in [("standard", &plain), ("standard + dst", &dst)] {
            let t = col(samples, |s| s.thread_cpu);
            table.push(format!(
                "| {} | {name} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |",
                store.name(),
                min(&t),
                median(&t),
                events as f64 / median(&t).max(1e-9),
                median(&col(samples, |s| s.process_cpu)),
                median(&col(samples, |s| s.wall)),
            ));
        }
        let ratio_of = |f: fn(&Sample) -> f64| median(&col(&dst, f)) / median(&col(&plain, f)).max(1e-9);
        let ratio = ratio_of(|s| s.thread_cpu);
        let min_ratio = min(&col(&dst, |s| s.thread_cpu)) / min(&col(&plain, |s| s.thread_cpu)).max(1e-9);
        let paired: Vec<f64> = plain
            .iter()
            .zip(&dst)
            .map(|(p, d)| d.thread_cpu / p.thread_cpu.max(1e-9))
            .collect();
        verdicts.push(format!(
            "{}: with the distribution {ratio:.3}x the standard workload's thread CPU time (medians; mins {min_ratio:.3}x, median of paired runs {:.3}x, process CPU {:.3}x, wall {:.3}x)  [target <= {TARGET}x: {}]",
            store.name(),
            median(&paired),
            ratio_of(|s| s.process_cpu),
            ratio_of(|s| s.wall),
            verdict(ratio <= TARGET)
        ));
    }
    println!();
    println!("Ingest, seconds per run of {events} events (record_json_lines calls only; each run into a fresh store):");
    println!();
    println!("| store | mapping | thread CPU min | thread CPU median | events/CPU-s (median) | process CPU median | wall median |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for row in &table {
        println!("{row}");
    }
    println!();
    for v in &verdicts {
        println!("{v}");
    }

    // Storage.
    storage(&chunks, now, redis)?;
    if let Some([a, b, c]) = load_average() {
        println!(
            "\nload average at the end: {a:.2} {b:.2} {c:.2} on {} CPUs",
            cpus()
        );
    }
    Ok(())
}

/// The storage half of the bench: see the module docs.
fn storage(chunks: &[Chunk], now: i64, redis: bool) -> anyhow::Result<()> {
    let days = days(now);
    let memory = Arc::new(MemoryStorage::new());
    record(distribution_config(), memory.clone(), chunks, now)?;
    let figures = days
        .iter()
        .map(|d| day_figures(memory.as_ref(), *d))
        .collect::<anyhow::Result<Vec<DayFigures>>>()?;
    println!();
    println!("Storage of the distribution per day (daily buckets; the dst key of each day read whole with Read::Hash from the memory store):");
    println!();
    println!("| day (UTC start) | labels | values | fields | fields/label avg | fields/label max | packed bytes/label | Redis payload bytes/label |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in &figures {
        let l = f.labels.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {:.1} | {} | {:.0} | {:.0} |",
            f.day_start,
            f.labels,
            f.values,
            f.fields,
            f.fields as f64 / l,
            f.max_fields,
            f.packed_bytes as f64 / l,
            f.redis_payload_bytes as f64 / l
        );
    }
    let labels: usize = figures.iter().map(|f| f.labels).sum();
    let sum =
        |g: fn(&DayFigures) -> usize| figures.iter().map(g).sum::<usize>() as f64 / labels.max(1) as f64;
    let values: i64 = figures.iter().map(|f| f.values).sum();
    println!();
    println!(
        "over {} days: {labels} label-days, {:.1} values per label per day; per label per day {:.1} fields (= bins + 1 sum field), {:.0} bytes of field names, {:.0} bytes in a packed map (RocksDB/sled, uncompressed: per field 1 length byte + name + 1 kind byte + 8-byte number), {:.0} bytes of Redis payload (name + value as decimal text, before Redis's per-field overhead)",
        figures.len(),
        values as f64 / labels.max(1) as f64,
        sum(|f| f.fields),
        sum(|f| f.field_bytes),
        sum(|f| f.packed_bytes),
        sum(|f| f.redis_payload_bytes),
    );
    println!(
        "  plus per day and distribution (not per label): the {} summary key (sum, count) and the key's entry in the day's key set",
        AdvPart::Summary.suffix()
    );

    // RocksDB on disk, compacted: with the distribution minus without.
    let dir = tempfile::tempdir()?;
    let mut sizes = Vec::new();
    for (name, config) in [
        ("standard", standard_config()),
        ("standard + dst", distribution_config()),
    ] {
        let path = dir.path().join(name.replace([' ', '+'], ""));
        let rocks = Arc::new(traqq_rocks::RocksStorage::open(
            &path,
            traqq_rocks::RocksConfig::default(),
        )?);
        record(config, rocks.clone(), chunks, now)?;
        if name != "standard" {
            let back: Vec<usize> = days
                .iter()
                .map(|d| day_figures(rocks.as_ref(), *d).map(|f| f.fields))
                .collect::<anyhow::Result<_>>()?;
            let memory_fields: Vec<usize> = figures.iter().map(|f| f.fields).collect();
            if back != memory_fields {
                bail!("RocksDB holds other dst fields than the memory store: {back:?} vs {memory_fields:?}");
            }
        }
        rocks.compact()?;
        drop(rocks);
        sizes.push((name, dir_bytes(&path)));
    }
    println!();
    for (name, bytes) in &sizes {
        println!("RocksDB directory after a full compaction (LZ4), {name}: {bytes} bytes");
    }
    if let [(_, a), (_, b)] = sizes[..] {
        println!(
            "  difference / label-days: {:.0} bytes per label per day on disk (includes the {} keys, key-set entries and SST index/filter overhead; LZ4-compressed)",
            (b as f64 - a as f64) / labels.max(1) as f64,
            AdvPart::Summary.suffix()
        );
    }

    if redis {
        redis_usage(chunks, now, &days, &figures)?;
    }
    Ok(())
}

/// Records the distribution variant into Redis and reads `MEMORY USAGE` of each day's key.
fn redis_usage(chunks: &[Chunk], now: i64, days: &[i64], figures: &[DayFigures]) -> anyhow::Result<()> {
    let Some(server) = RedisServer::start() else {
        println!("\nRedis skipped: no TRAQQ_REDIS_URL and no redis-server on PATH");
        return Ok(());
    };
    let store = traqq_redis::RedisStorage::connect(traqq_redis::RedisConfig::single(server.url()))?;
    record(distribution_config(), Arc::new(store), chunks, now)?;
    let mut total = 0u64;
    let mut rows = Vec::new();
    for day in days {
        let key = dst_key(*day);
        let output = Command::new("redis-cli")
            .args(["-u", server.url(), "MEMORY", "USAGE", &key, "SAMPLES", "0"])
            .output()
            .context("running redis-cli (on PATH?)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let bytes: u64 = text
            .trim()
            .parse()
            .with_context(|| format!("MEMORY USAGE {key} answered {text:?}"))?;
        let encoding = Command::new("redis-cli")
            .args(["-u", server.url(), "OBJECT", "ENCODING", &key])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        total += bytes;
        rows.push((*day, bytes, encoding));
    }
    let labels: usize = figures.iter().map(|f| f.labels).sum();
    println!();
    println!("Redis MEMORY USAGE of each day's dst key (SAMPLES 0: every field counted), default hash-max-listpack settings:");
    println!();
    println!("| day | bytes | encoding | bytes/label |");
    println!("|---|---:|---|---:|");
    for ((day, bytes, encoding), f) in rows.iter().zip(figures) {
        println!(
            "| {day} | {bytes} | {encoding} | {:.0} |",
            *bytes as f64 / f.labels.max(1) as f64
        );
    }
    println!(
        "  over all days: {:.0} bytes per label per day in Redis memory",
        total as f64 / labels.max(1) as f64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_fills_the_dst_keys_and_counts_every_amount() {
        let now = crate::workload::BENCH_NOW;
        let chunk = Workload::standard(3, now).chunk(2_000);
        let storage = Arc::new(MemoryStorage::new());
        record(
            distribution_config(),
            storage.clone(),
            std::slice::from_ref(&chunk),
            now,
        )
        .unwrap();
        let days = days(now);
        assert_eq!(days.len(), 7);
        let figures: Vec<DayFigures> = days
            .iter()
            .map(|d| day_figures(storage.as_ref(), *d).unwrap())
            .collect();
        let amounts = chunk.lines().filter(|l| l.contains("\"amount\"")).count() as i64;
        assert_eq!(figures.iter().map(|f| f.values).sum::<i64>(), amounts);
        for f in &figures {
            assert!(f.labels > 0 && f.labels <= 90, "{f:?}");
            // Every label has its sum field and at least one bin.
            assert!(f.fields >= 2 * f.labels, "{f:?}");
            assert!(f.packed_bytes > f.redis_payload_bytes / 2, "{f:?}");
        }
        let sample = run(
            Store::Memory,
            distribution_config(),
            std::slice::from_ref(&chunk),
            now,
        )
        .unwrap();
        assert!(sample.thread_cpu > 0.0 && sample.wall > 0.0);
    }

    #[test]
    fn varints_and_days() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(days(86_400 * 10), (3..10).map(|d| d * 86_400).collect::<Vec<_>>());
        assert_eq!(days(86_400 * 10 + 5).len(), 8);
    }
}
