//! (b) `record_batch` on the standard workload, per backend: parse + ops + apply, one thread.
//!
//! `cargo bench -p traqq-bench --bench record`
//!
//! Each backend is one entry of [`backends`]; the store is reused across iterations, so the
//! figures are steady state (keys and fields exist; the workload's key space is bounded).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use traqq_bench::cpu::{criterion, ThreadCpu};
use traqq_bench::mapping::standard_config;
use traqq_bench::workload::{Ips, Workload, BENCH_NOW, BENCH_SEED};
use traqq_storage::prelude::*;

const EVENTS: usize = 10_000;

/// A named way to open a fresh store. The returned guard (temp dir, server handle, …) must
/// outlive the store.
type Open = fn() -> (Arc<dyn Storage>, Box<dyn std::any::Any>);

/// The backends to record into.
///
/// Other backends add themselves here as their crates land (add the crate under
/// `[dependencies]` in `benches/Cargo.toml`), e.g.
/// `("rocks", || { let dir = tempfile::tempdir().unwrap(); (Arc::new(RocksStorage::open(dir.path()).unwrap()), Box::new(dir)) })`.
fn backends() -> Vec<(&'static str, Open)> {
    vec![("memory", || (Arc::new(MemoryStorage::new()), Box::new(())))]
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
        let (storage, _guard) = open();
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

criterion_group! {
    name = benches;
    config = criterion();
    targets = record
}
criterion_main!(benches);
