//! (c) `query_days(30)` + every merged `find` of the mapping on a store holding 1,000,000
//! events of the standard workload (7 days of data).
//!
//! `cargo bench -p traqq-bench --bench query`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use traqq_bench::cpu::{criterion, ThreadCpu};
use traqq_bench::mapping::{finds, standard_config};
use traqq_bench::workload::{Chunk, Workload, BENCH_NOW, BENCH_SEED};
use traqq_storage::prelude::*;

const FILL: usize = 1_000_000;

/// Backends to query; other backends add an entry as in `record.rs`.
type Open = fn() -> (Arc<dyn Storage>, Box<dyn std::any::Any>);

fn backends() -> Vec<(&'static str, Open)> {
    vec![("memory", || (Arc::new(MemoryStorage::new()), Box::new(())))]
}

fn filled(storage: Arc<dyn Storage>) -> Traqq {
    let traqq = Traqq::with_shared_storage(standard_config(), storage, "bench")
        .unwrap()
        .with_clock(ManualClock::new(BENCH_NOW));
    let mut g = Workload::standard(BENCH_SEED, BENCH_NOW).generator();
    let mut chunk = Chunk::default();
    for _ in 0..FILL / 10_000 {
        g.refill(&mut chunk, 10_000);
        traqq.record_json_lines(chunk.lines()).unwrap();
    }
    traqq
}

fn query_and_find(traqq: &Traqq) -> usize {
    let result = traqq.query_days(30).unwrap();
    let mut n = 0;
    for (metric_type, key, add_key) in finds() {
        n += result
            .find(FindOptions {
                metric_type: metric_type.into(),
                key: key.into(),
                add_key: add_key.map(Into::into),
                merge: true,
            })
            .len();
    }
    n
}

fn query(c: &mut Criterion<ThreadCpu>) {
    let mut group = c.benchmark_group("query");
    for (name, open) in backends() {
        let (storage, _guard) = open();
        let traqq = filled(storage);
        assert_eq!(query_and_find(&traqq), finds().len());
        group.bench_function(BenchmarkId::new("days30_and_merged_finds", name), |b| {
            b.iter(|| black_box(query_and_find(&traqq)))
        });
        group.bench_function(BenchmarkId::new("days30_only", name), |b| {
            b.iter(|| black_box(traqq.query_days(30).unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = query
}
criterion_main!(benches);
