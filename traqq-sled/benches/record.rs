//! `record_batch` throughput on a real sled store: the standard workload (DESIGN §8) in
//! batches of 1,000 events, in each durability mode. Criterion reports events/s as
//! "thrpt": first per wall-clock second, then (`…_process_cpu`) per CPU-second of the whole
//! process, which a loaded machine distorts much less. For throughput over 1,000,000 events and the size on disk, run
//! `cargo run --release -p traqq-sled --example sled_fill`.
//!
//! ```sh
//! cargo bench -p traqq-sled --bench record
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "workload.rs"]
mod workload;

use std::time::Duration;

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use traqq_sled::{SledConfig, SledStorage};
use traqq_storage::prelude::*;

const BATCH: usize = 1_000;

fn record_batch<M: Measurement>(c: &mut Criterion<M>, name: &str) {
    let mut w = workload::Workload::new(1);
    let batches: Vec<Vec<String>> = (0..100).map(|_| w.lines(BATCH)).collect();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for sync in [Durability::Batch, Durability::Always, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path().join("db"), SledConfig::with_sync(sync)).unwrap();
        let traqq = Traqq::new(workload::config(), store, "bench")
            .unwrap()
            .with_clock(ManualClock::new(workload::NOW));
        let mut next = 0;
        group.bench_function(sync.as_str(), |b| {
            b.iter(|| {
                let batch = &batches[next % batches.len()];
                next += 1;
                traqq.record_json_lines(batch.iter().map(String::as_str)).unwrap()
            })
        });
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    record_batch(c, "sled/record_batch_1000");
}

fn cpu(c: &mut Criterion<workload::ProcessCpu>) {
    record_batch(c, "sled/record_batch_1000_process_cpu");
}

criterion_group!(walls, wall);
criterion_group! {
    name = cpus;
    config = Criterion::default().with_measurement(workload::ProcessCpu);
    targets = cpu
}
criterion_main!(walls, cpus);
