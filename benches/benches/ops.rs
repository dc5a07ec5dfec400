//! (a) Op generation in traqq-core: parsed events → one coalesced `Batch`, no storage.
//!
//! `cargo bench -p traqq-bench --bench ops`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use traqq_bench::cpu::{criterion, ThreadCpu};
use traqq_bench::mapping::standard_config;
use traqq_bench::workload::{Workload, BENCH_NOW, BENCH_SEED};
use traqq_core::prelude::*;

const EVENTS: usize = 10_000;

fn ops(c: &mut Criterion<ThreadCpu>) {
    let chunk = Workload::standard(BENCH_SEED, BENCH_NOW).chunk(EVENTS);
    let events: Vec<IncomingEvent<'_>> = chunk
        .lines()
        .map(|l| IncomingEvent::parse_str(l).unwrap())
        .collect();
    let generator = OpGenerator::new(&standard_config(), "bench").unwrap();

    let mut group = c.benchmark_group("ops");
    group.throughput(Throughput::Elements(EVENTS as u64));
    // The engine's path: one builder for a batch of 10,000 events, then the key sets.
    group.bench_function("batch_of_10k_events", |b| {
        b.iter(|| {
            let mut builder = generator.batch();
            for e in &events {
                builder.add(e, BENCH_NOW).unwrap();
            }
            black_box(builder.finish())
        })
    });
    // One event per batch (what `Traqq::record` does), 10,000 times.
    group.bench_function("single_event_batches", |b| {
        b.iter(|| {
            for e in &events {
                black_box(generator.event_batch(e, BENCH_NOW).unwrap());
            }
        })
    });
    // The dropping of the finished batch, separately (it frees every coalesced string).
    group.bench_function("batch_of_10k_events_without_drop", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut builder = generator.batch();
                for e in &events {
                    builder.add(e, BENCH_NOW).unwrap();
                }
                builder.finish()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = ops
}
criterion_main!(benches);
