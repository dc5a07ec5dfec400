//! (b) `record_batch` on the standard workload, per backend: parse + ops + apply, one thread.
//!
//! `cargo bench -p traqq-bench --bench record`
//!
//! - `record/*/memory`: thread CPU time, 10,000 events per call; the store is reused across
//!   iterations, so the figures are steady state (keys and fields exist; the key space is bounded).
//! - `record_durable/batch_1000/{rocks,sled,redis}`: wall time (their work partly runs on other
//!   threads or in `redis-server`), `sync = "batch"`, batches of 1,000 fresh events streamed
//!   from the generator, one store per backend growing through the run. Redis uses
//!   `TRAQQ_REDIS_URL`, else starts `redis-server` from `PATH`, else is skipped with a note.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use traqq_bench::cpu::{criterion, ThreadCpu};
use traqq_bench::mapping::standard_config;
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

/// The durable backends, timed in wall time, each in its `"batch"` durability mode.
fn durable_backends() -> Vec<(&'static str, Open)> {
    vec![
        ("rocks", || {
            let dir = tempfile::tempdir().unwrap();
            let store = RocksStorage::open(dir.path().join("db"), RocksConfig::default()).unwrap();
            Some((Arc::new(store), Box::new(dir)))
        }),
        ("sled", || {
            let dir = tempfile::tempdir().unwrap();
            let store = SledStorage::open(dir.path().join("db"), SledConfig::default()).unwrap();
            Some((Arc::new(store), Box::new(dir)))
        }),
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

criterion_group! {
    name = benches;
    config = criterion();
    targets = record
}
criterion_group!(durable, record_durable);
criterion_main!(benches, durable);
