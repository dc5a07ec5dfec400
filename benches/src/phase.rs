//! One measured run of the comparison: the same generated events through one engine.
//!
//! `traqq-bench compare` runs every phase in a fresh child process (`traqq-bench phase …`),
//! so each phase's peak resident memory (`VmHWM`) is its own. Events are generated in
//! chunks into a reused buffer and only the recording calls are timed, so neither the
//! generator's time nor a million-line input buffer shows up in the figures.

use std::str::FromStr;
use std::time::{Duration, Instant};

use traqq_core::result::{FindOptions, MetricData, MetricResult};
use traqq_storage::{ManualClock, MemoryStorage, Traqq};

use crate::mapping::{finds, standard_config, standard_config_v02};
use crate::procfs::{thread_cpu, Resident};
use crate::workload::{Chunk, Workload};

/// Errors of a phase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This project's engine failed.
    #[error("traqq: {0}")]
    Traqq(#[from] traqq_storage::Error),
    /// traqq 0.2 failed (it reports errors as strings).
    #[error("traqq 0.2: {0}")]
    V02(String),
    /// A generated line did not parse.
    #[error("generated line {index} does not parse: {message}")]
    Parse {
        /// Position of the line in the run.
        index: u64,
        /// The parser's message.
        message: String,
    },
    /// Unknown engine name.
    #[error("unknown engine {0:?} (expected memory, memory-ids, rocksdb, rocksdb-ids, v02, parse-value or parse-event)")]
    Engine(String),
    /// A temp dir for an on-disk store could not be made.
    #[error("temp dir: {0}")]
    TempDir(#[from] std::io::Error),
}

/// What a phase runs the events through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Engine {
    /// This project: `Traqq::record_json_lines` into `MemoryStorage` (parse + ops + apply).
    Memory,
    /// traqq 0.2 from crates.io: `serde_json::from_str` → `IncomingEvent::from_json` →
    /// `Traqq::record` into its `MemoryStorage`, one event at a time (its only API).
    V02,
    /// Parsing alone into `serde_json::Value`.
    ParseValue,
    /// Parsing alone into this project's borrowed `IncomingEvent` (the floor for ingest).
    ParseEvent,
    /// [`Engine::Memory`] with `[event] id_field = "id"`: every event's id is claimed.
    MemoryIds,
    /// This project into a RocksDB store in a temp dir.
    Rocks,
    /// [`Engine::Rocks`] with `[event] id_field = "id"`.
    RocksIds,
}

impl Engine {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Memory => "memory",
            Engine::V02 => "v02",
            Engine::ParseValue => "parse-value",
            Engine::ParseEvent => "parse-event",
            Engine::MemoryIds => "memory-ids",
            Engine::Rocks => "rocksdb",
            Engine::RocksIds => "rocksdb-ids",
        }
    }
}

impl FromStr for Engine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "memory" => Engine::Memory,
            "v02" => Engine::V02,
            "parse-value" => Engine::ParseValue,
            "memory-ids" => Engine::MemoryIds,
            "rocksdb" => Engine::Rocks,
            "rocksdb-ids" => Engine::RocksIds,
            "parse-event" => Engine::ParseEvent,
            other => return Err(Error::Engine(other.to_owned())),
        })
    }
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct PhaseSpec {
    /// The engine.
    pub engine: Engine,
    /// The events (seed, ips, now).
    pub workload: Workload,
    /// How many events.
    pub events: u64,
    /// Lines per `record_json_lines` call (traqq 0.2 records one at a time regardless).
    pub batch: usize,
    /// How many times to time the query (the report keeps the fastest and the median).
    pub query_runs: usize,
}

/// What a phase measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PhaseReport {
    /// Engine name.
    pub engine: Engine,
    /// Events recorded (or parsed).
    pub events: u64,
    /// Bytes of NDJSON processed (newlines included).
    pub bytes: u64,
    /// Seconds spent in the timed calls.
    pub seconds: f64,
    /// `events / seconds`.
    pub events_per_sec: f64,
    /// CPU time of this thread in the timed calls (leaves out waiting for a core), seconds.
    pub cpu_seconds: Option<f64>,
    /// `events / cpu_seconds`.
    pub events_per_cpu_sec: Option<f64>,
    /// Resident memory before the first event, KiB.
    pub rss_before_kib: u64,
    /// Resident memory after the last event, KiB.
    pub rss_after_kib: u64,
    /// Peak resident memory of the process, KiB.
    pub hwm_kib: u64,
    /// The first `query_days(30)` + merged finds right after the last event, milliseconds: a
    /// store that folds pending writes at read time (RocksDB) pays that here.
    #[serde(default)]
    pub query_ms_first: Option<f64>,
    /// Fastest `query_days(30)` + merged finds, milliseconds (none for parse-only phases).
    pub query_ms_min: Option<f64>,
    /// Median of the query runs, milliseconds.
    pub query_ms_median: Option<f64>,
    /// Median CPU time of the query runs, milliseconds.
    pub query_cpu_ms_median: Option<f64>,
    /// Merged `add/event` total: must equal `events`.
    pub total_events: Option<i64>,
    /// Merged unique `ip` count as the engine reports it over the range.
    pub unique_ips: Option<u64>,
    /// Bytes of the store's directory after the last event (flushed), for on-disk stores.
    #[serde(default)]
    pub disk_bytes: Option<u64>,
}

/// Runs one phase in this process.
pub fn run(spec: &PhaseSpec) -> Result<PhaseReport, Error> {
    let before = Resident::now();
    let mut runner = Runner::new(spec)?;
    let mut gen = spec.workload.generator();
    let mut chunk = Chunk::default();
    let mut spent = Duration::ZERO;
    let mut cpu = Some(Duration::ZERO);
    let mut bytes = 0u64;
    let mut left = spec.events;
    while left > 0 {
        let n = left.min(spec.batch.max(1) as u64);
        let first = gen.produced();
        gen.refill(&mut chunk, n as usize);
        bytes += chunk.bytes() as u64;
        let (start, cpu_start) = (Instant::now(), thread_cpu());
        runner.consume(&chunk, first)?;
        spent += start.elapsed();
        cpu = cpu
            .zip(cpu_start.zip(thread_cpu()))
            .map(|(sum, (a, b))| sum + b.saturating_sub(a));
        left -= n;
    }
    let after = Resident::now();
    let disk_bytes = runner.disk_bytes()?;
    let (mut query_ms, mut query_cpu_ms, mut total_events, mut unique_ips) =
        (Vec::new(), Vec::new(), None, None);
    for _ in 0..spec.query_runs {
        let (start, cpu_start) = (Instant::now(), thread_cpu());
        let found = runner.query()?;
        let elapsed = start.elapsed();
        if let Some(results) = found {
            query_ms.push(elapsed.as_secs_f64() * 1e3);
            if let (Some(a), Some(b)) = (cpu_start, thread_cpu()) {
                query_cpu_ms.push(b.saturating_sub(a).as_secs_f64() * 1e3);
            }
            total_events = Some(sum_hash(&results, "add", "event"));
            unique_ips = results
                .iter()
                .find(|r| r.metric_type == "bmp")
                .and_then(|r| match r.result {
                    MetricData::Count(n) => Some(n),
                    _ => None,
                });
        }
    }
    let query_ms_first = query_ms.first().copied();
    query_ms.sort_by(f64::total_cmp);
    query_cpu_ms.sort_by(f64::total_cmp);
    let seconds = spent.as_secs_f64();
    let cpu_seconds = cpu.map(|c| c.as_secs_f64());
    Ok(PhaseReport {
        engine: spec.engine,
        events: spec.events,
        bytes,
        seconds,
        events_per_sec: spec.events as f64 / seconds.max(1e-9),
        cpu_seconds,
        events_per_cpu_sec: cpu_seconds.map(|c| spec.events as f64 / c.max(1e-9)),
        rss_before_kib: before.map_or(0, |r| r.rss_kib),
        rss_after_kib: after.map_or(0, |r| r.rss_kib),
        hwm_kib: Resident::now().map_or(0, |r| r.hwm_kib),
        disk_bytes,
        query_ms_first,
        query_ms_min: query_ms.first().copied(),
        query_ms_median: query_ms.get(query_ms.len() / 2).copied(),
        query_cpu_ms_median: query_cpu_ms.get(query_cpu_ms.len() / 2).copied(),
        total_events,
        unique_ips,
    })
}

/// The mapping of `engine`: the standard one, with `[event] id_field = "id"` (remembered for
/// the workload's whole 7-day window) for the `-ids` engines.
fn config_for(engine: Engine) -> traqq_storage::prelude::TraqqConfig {
    let mut config = standard_config();
    if matches!(engine, Engine::MemoryIds | Engine::RocksIds) {
        config.event.id_field = Some("id".into());
        config.event.dedup_days = 9;
    }
    config
}

/// Bytes of the files below `dir`.
pub(crate) fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The merged results of every find, flattened to one common shape for the sanity columns.
#[derive(Debug)]
struct Found {
    metric_type: String,
    pattern: String,
    result: MetricData,
}

fn sum_hash(results: &[Found], metric: &str, pattern: &str) -> i64 {
    results
        .iter()
        .filter(|r| r.metric_type == metric && r.pattern == pattern)
        .map(|r| match &r.result {
            MetricData::Hash(h) => h.values().sum(),
            _ => 0,
        })
        .sum()
}

enum Runner {
    /// This project's engine, over any store (the temp dir of an on-disk one kept alive).
    Memory(Box<Traqq>, Option<tempfile::TempDir>),
    V02(Box<traqq02::Traqq>),
    ParseValue,
    ParseEvent,
}

impl Runner {
    fn new(spec: &PhaseSpec) -> Result<Self, Error> {
        Ok(match spec.engine {
            Engine::Memory | Engine::MemoryIds => Runner::Memory(
                Box::new(
                    Traqq::new(config_for(spec.engine), MemoryStorage::new(), "bench")?
                        .with_clock(ManualClock::new(spec.workload.now)),
                ),
                None,
            ),
            Engine::Rocks | Engine::RocksIds => {
                let dir = tempfile::tempdir()?;
                let store = traqq_rocks::RocksStorage::open(
                    dir.path().join("db"),
                    traqq_rocks::RocksConfig::default(),
                )?;
                Runner::Memory(
                    Box::new(
                        Traqq::new(config_for(spec.engine), store, "bench")?
                            .with_clock(ManualClock::new(spec.workload.now)),
                    ),
                    Some(dir),
                )
            }
            Engine::V02 => Runner::V02(Box::new(
                traqq02::Traqq::new(
                    standard_config_v02(),
                    Box::new(traqq02::storage::memory::MemoryStorage::new()),
                    "bench",
                )
                .map_err(Error::V02)?,
            )),
            Engine::ParseValue => Runner::ParseValue,
            Engine::ParseEvent => Runner::ParseEvent,
        })
    }

    fn consume(&mut self, chunk: &Chunk, first: u64) -> Result<(), Error> {
        let parse_error = |i: usize, e: &dyn std::fmt::Display| Error::Parse {
            index: first + i as u64,
            message: e.to_string(),
        };
        match self {
            Runner::Memory(t, _) => {
                let outcome = t.record_json_lines(chunk.lines())?;
                if let Some(r) = outcome.rejected.first() {
                    return Err(parse_error(r.index, &r.error));
                }
            }
            Runner::V02(t) => {
                for (i, line) in chunk.lines().enumerate() {
                    let value: serde_json::Value =
                        serde_json::from_str(line).map_err(|e| parse_error(i, &e))?;
                    let event = traqq02::IncomingEvent::from_json(value).map_err(Error::V02)?;
                    t.record(event).map_err(Error::V02)?;
                }
            }
            Runner::ParseValue => {
                for (i, line) in chunk.lines().enumerate() {
                    let value: serde_json::Value =
                        serde_json::from_str(line).map_err(|e| parse_error(i, &e))?;
                    std::hint::black_box(value);
                }
            }
            Runner::ParseEvent => {
                for (i, line) in chunk.lines().enumerate() {
                    let event =
                        traqq_core::event::IncomingEvent::parse_str(line).map_err(|e| parse_error(i, &e))?;
                    std::hint::black_box(event);
                }
            }
        }
        Ok(())
    }

    /// The size of an on-disk store's directory, flushed first.
    fn disk_bytes(&self) -> Result<Option<u64>, Error> {
        match self {
            Runner::Memory(t, Some(dir)) => {
                t.flush()?;
                Ok(Some(dir_bytes(dir.path())))
            }
            _ => Ok(None),
        }
    }

    /// `query_days(30)` and every merged find of the mapping.
    fn query(&self) -> Result<Option<Vec<Found>>, Error> {
        Ok(match self {
            Runner::Memory(t, _) => {
                let result = t.query_days(30)?;
                let mut out = Vec::new();
                for (metric_type, key, add_key) in finds() {
                    let found: Vec<MetricResult> = result.find(FindOptions {
                        metric_type: metric_type.into(),
                        key: key.into(),
                        add_key: add_key.map(Into::into),
                        merge: true,
                    });
                    out.extend(found.into_iter().map(|r| Found {
                        metric_type: metric_type.into(),
                        pattern: key.into(),
                        result: r.result,
                    }));
                }
                Some(out)
            }
            Runner::V02(t) => {
                let result = t.query_days(30).map_err(Error::V02)?;
                let mut out = Vec::new();
                for (metric_type, key, add_key) in finds() {
                    let found = result.find(traqq02::FindOptions {
                        metric_type: metric_type.into(),
                        key: key.into(),
                        add_key: add_key.map(Into::into),
                        merge: true,
                    });
                    out.extend(found.into_iter().map(|r| Found {
                        metric_type: metric_type.into(),
                        pattern: key.into(),
                        result: from_v02(r.result),
                    }));
                }
                Some(out)
            }
            Runner::ParseValue | Runner::ParseEvent => None,
        })
    }
}

/// traqq 0.2's result shapes in this project's types (only what the sanity columns read).
fn from_v02(data: traqq02::MetricData) -> MetricData {
    match data {
        traqq02::MetricData::Count(n) => MetricData::Count(n),
        traqq02::MetricData::Hash(h) => MetricData::Hash(h.into_iter().collect()),
        traqq02::MetricData::FloatHash(h) => MetricData::FloatHash(h.into_iter().collect()),
        traqq02::MetricData::Summary { sum, count } => MetricData::Summary { sum, count },
        traqq02::MetricData::Ranked(r) => MetricData::Ranked(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Ips;

    fn spec(engine: Engine, ips: Ips) -> PhaseSpec {
        PhaseSpec {
            engine,
            workload: Workload {
                seed: 5,
                ips,
                now: 1_764_288_000,
                ids: false,
            },
            events: 3_000,
            batch: 1_000,
            query_runs: 1,
        }
    }

    #[test]
    fn both_engines_count_every_event_and_agree_on_uniques() {
        let ours = run(&spec(Engine::Memory, Ips::AllDistinct)).unwrap();
        assert_eq!(ours.total_events, Some(3_000));
        // HLL p14: well within 2% at 3,000.
        let u = ours.unique_ips.unwrap() as f64;
        assert!((u - 3_000.0).abs() < 60.0, "{u}");

        let theirs = run(&spec(Engine::V02, Ips::AllDistinct)).unwrap();
        assert_eq!(theirs.total_events, Some(3_000));
        // traqq 0.2 puts every event in today's bucket and keeps exact sets.
        assert_eq!(theirs.unique_ips, Some(3_000));

        let parse = run(&spec(Engine::ParseEvent, Ips::STANDARD)).unwrap();
        assert_eq!(parse.events, 3_000);
        assert!(parse.query_ms_min.is_none());
    }
}
