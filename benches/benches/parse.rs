//! (d) JSON parsing alone of the standard workload's lines: the floor ingest cannot beat.
//!
//! `cargo bench -p traqq-bench --bench parse`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde::de::IgnoredAny;
use traqq_bench::cpu::{criterion, ThreadCpu};
use traqq_bench::workload::{Workload, BENCH_NOW, BENCH_SEED};
use traqq_core::event::IncomingEvent;

const EVENTS: usize = 10_000;

fn parse(c: &mut Criterion<ThreadCpu>) {
    let chunk = Workload::standard(BENCH_SEED, BENCH_NOW).chunk(EVENTS);
    let lines: Vec<&str> = chunk.lines().collect();

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(EVENTS as u64));
    // Only validates the JSON: the absolute floor for any parser built on serde_json.
    group.bench_function("ignored_any", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_str::<IgnoredAny>(l).unwrap());
            }
        })
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_str::<serde_json::Value>(l).unwrap());
            }
        })
    });
    // What `Traqq::record_json_lines` does before op generation.
    group.bench_function("incoming_event", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(IncomingEvent::parse_str(l).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = parse
}
criterion_main!(benches);
