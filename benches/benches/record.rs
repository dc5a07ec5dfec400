//! (b) `record_batch` on the standard workload, per backend: parse + ops + apply, one thread.
//!
//! `cargo bench -p traqq-bench --bench record`
//!
//! - `record/*/memory`: thread CPU time, 10,000 events per call; the store is reused across
//!   iterations, so the figures are steady state (keys and fields exist; the key space is bounded).
//!   `json_lines_10k_distribution` is `json_lines_10k` with the mapping plus one distribution
//!   (issue 17; `traqq-bench distribution` measures the same on whole runs and RocksDB).
//! - `record_durable/batch_1000/{rocks,sled,redis}`: wall time (their work partly runs on other
//!   threads or in `redis-server`), `sync = "batch"`, batches of 1,000 fresh events streamed
//!   from the generator, one store per backend growing through the run. Redis uses
//!   `TRAQQ_REDIS_URL`, else starts `redis-server` from `PATH`, else is skipped with a note.
//! - `record_batch_1000/{rocks,sled}/{batch,always,none}`: the embedded stores in each
//!   durability mode, batches of 1,000 events cycling through 100 generated beforehand, one
//!   fresh store per backend and mode; first in wall time, then
//!   (`record_batch_1000_process_cpu/…`) in CPU time of the whole process, which a loaded
//!   machine distorts much less. `cargo bench -p traqq-bench --bench record -- record_batch_1000`
//!   runs just these; `cargo run --release -p traqq-bench --example fill` measures 1,000,000
//!   events and the size on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use traqq_bench::cpu::{criterion, ProcessCpu, ThreadCpu};
use traqq_bench::mapping::{distribution_config, standard_config};
use traqq_bench::redis_server::RedisServer;
use traqq_bench::workload::{Chunk, Ips, Workload, BENCH_NOW, BENCH_SEED};
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_rocks::{RocksConfig, RocksStorage};
use traqq_sled::{SledConfig, SledStorage};
use traqq_storage::prelude::*;

const EVENTS: usize = 10_000;

/// Events per durable batch (issues 3 and 4 measure batches of 1,000).
const DURABLE_BATCH: usize = 1_000;

/// A named way to open a fresh store. The returned guard (temp dir, server handle, …) must
/// outlive the store; `None` when the backend cannot run here (no Redis).
type Open = fn() -> Option<(Arc<dyn Storage>, Box<dyn std::any::Any>)>;

/// The in-memory backends, timed in thread CPU.
fn backends() -> Vec<(&'static str, Open)> {
    vec![("memory", || Some((Arc::new(MemoryStorage::new()), Box::new(()))))]
}

/// Opens an embedded store at a path in a durability mode.
type OpenAt = fn(&Path, Durability) -> Arc<dyn Storage>;

fn open_rocks(path: &Path, sync: Durability) -> Arc<dyn Storage> {
    Arc::new(RocksStorage::open(path, RocksConfig::with_sync(sync)).unwrap())
}

fn open_sled(path: &Path, sync: Durability) -> Arc<dyn Storage> {
    Arc::new(SledStorage::open(path, SledConfig::with_sync(sync)).unwrap())
}

/// The embedded stores.
fn embedded_backends() -> [(&'static str, OpenAt); 2] {
    [("rocks", open_rocks), ("sled", open_sled)]
}

/// A fresh embedded store in its default `"batch"` mode, and its temp dir.
fn fresh(open: OpenAt) -> Option<(Arc<dyn Storage>, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db"), Durability::Batch);
    Some((store, Box::new(dir)))
}

/// The durable backends, timed in wall time, each in its `"batch"` durability mode.
fn durable_backends() -> Vec<(&'static str, Open)> {
    vec![
        ("rocks", || fresh(open_rocks)),
        ("sled", || fresh(open_sled)),
        ("redis", || {
            let Some(server) = RedisServer::start() else {
                eprintln!("record_durable/redis skipped: no TRAQQ_REDIS_URL and no redis-server on PATH");
                return None;
            };
            let store = RedisStorage::connect(RedisConfig::single(server.url())).unwrap();
            // A fresh prefix per run, so a user's server keeps its data apart.
            Some((Arc::new(store), Box::new(server)))
        }),
    ]
}

fn engine(storage: Arc<dyn Storage>) -> Traqq {
    Traqq::with_shared_storage(standard_config(), storage, "bench")
        .unwrap()
        .with_clock(ManualClock::new(BENCH_NOW))
}

fn record(c: &mut Criterion<ThreadCpu>) {
    let standard = Workload::standard(BENCH_SEED, BENCH_NOW).chunk(EVENTS);
    let distinct = Workload {
        ips: Ips::AllDistinct,
        ..Workload::standard(BENCH_SEED, BENCH_NOW)
    }
    .chunk(EVENTS);

    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (name, open) in backends() {
        let Some((storage, _guard)) = open() else { continue };
        let traqq = engine(storage);
        // The target figure: JSON lines in, one storage batch of 10,000 events.
        group.bench_function(BenchmarkId::new("json_lines_10k", name), |b| {
            b.iter(|| {
                let outcome = traqq.record_json_lines(standard.lines()).unwrap();
                assert_eq!(outcome.recorded, EVENTS);
            })
        });
        // Issue 17: the same lines with one distribution (`dst` of `amount` per `event~geo`)
        // added to the mapping, into its own store (≤ 1.3× `json_lines_10k`).
        if let Some((storage, _guard)) = open() {
            let with_dst = Traqq::with_shared_storage(distribution_config(), storage, "bench")
                .unwrap()
                .with_clock(ManualClock::new(BENCH_NOW));
            group.bench_function(BenchmarkId::new("json_lines_10k_distribution", name), |b| {
                b.iter(|| {
                    let outcome = with_dst.record_json_lines(standard.lines()).unwrap();
                    assert_eq!(outcome.recorded, EVENTS);
                })
            });
        }
        group.bench_function(BenchmarkId::new("json_lines_10k_distinct_ips", name), |b| {
            b.iter(|| traqq.record_json_lines(distinct.lines()).unwrap())
        });
        // `record_batch` with events parsed beforehand (parsing not timed).
        let parsed: Vec<IncomingEvent<'_>> = standard
            .lines()
            .map(|l| IncomingEvent::parse_str(l).unwrap())
            .collect();
        group.bench_function(BenchmarkId::new("record_batch_preparsed_10k", name), |b| {
            b.iter_batched(
                || parsed.clone(),
                |events| traqq.record_batch(events).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn record_durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_durable");
    group.throughput(Throughput::Elements(DURABLE_BATCH as u64));
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    for (name, open) in durable_backends() {
        let Some((storage, _guard)) = open() else { continue };
        let traqq = Traqq::with_shared_storage(
            standard_config(),
            storage,
            &format!("bench{}", std::process::id()),
        )
        .unwrap()
        .with_clock(ManualClock::new(BENCH_NOW));
        // Fresh events each batch, as a real stream brings them; generating is not timed.
        let mut generator = Workload::standard(BENCH_SEED, BENCH_NOW).generator();
        group.bench_function(BenchmarkId::new("batch_1000", name), |b| {
            b.iter_batched_ref(
                || {
                    let mut chunk = Chunk::default();
                    generator.fill(&mut chunk, DURABLE_BATCH);
                    chunk
                },
                |chunk| {
                    let outcome = traqq.record_json_lines(chunk.lines()).unwrap();
                    assert_eq!(outcome.recorded, DURABLE_BATCH);
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// `record_json_lines` of 1,000-event batches into each embedded store in each durability mode.
fn record_batch<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut generator = Workload::standard(BENCH_SEED, BENCH_NOW).generator();
    let batches: Vec<Chunk> = (0..100)
        .map(|_| {
            let mut chunk = Chunk::default();
            generator.fill(&mut chunk, DURABLE_BATCH);
            chunk
        })
        .collect();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(DURABLE_BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (backend, open) in embedded_backends() {
        for sync in [Durability::Batch, Durability::Always, Durability::None] {
            let dir = tempfile::tempdir().unwrap();
            let traqq = engine(open(&dir.path().join("db"), sync));
            let mut next = 0;
            group.bench_function(BenchmarkId::new(backend, sync.as_str()), |b| {
                b.iter(|| {
                    let batch = &batches[next % batches.len()];
                    next += 1;
                    traqq.record_json_lines(batch.lines()).unwrap()
                })
            });
        }
    }
    group.finish();
}

fn record_batch_wall(c: &mut Criterion) {
    record_batch(c, "record_batch_1000");
}

fn record_batch_cpu(c: &mut Criterion<ProcessCpu>) {
    record_batch(c, "record_batch_1000_process_cpu");
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = record
}
criterion_group!(durable, record_durable, record_batch_wall);
criterion_group! {
    name = durable_cpu;
    config = Criterion::default().with_measurement(ProcessCpu);
    targets = record_batch_cpu
}
criterion_main!(benches, durable, durable_cpu);
