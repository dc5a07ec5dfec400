//! Records the standard workload into a fresh RocksDB or sled store and prints throughput (per
//! wall-clock second and per CPU-second of the whole process), the query time and the size on
//! disk.
//!
//! ```sh
//! cargo run --release -p traqq-bench --example fill -- rocks|sled [events=1000000] [sync=batch] [threads=1]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use traqq_bench::mapping::standard_config;
use traqq_bench::procfs::{disk_usage, load_average, process_cpu};
use traqq_bench::workload::{Chunk, Workload, BENCH_NOW, BENCH_SEED};
use traqq_rocks::{RocksConfig, RocksStorage};
use traqq_sled::{SledConfig, SledStorage};
use traqq_storage::prelude::*;

const USAGE: &str = "usage: fill rocks|sled [events=1000000] [sync=batch] [threads=1]";
const BATCH: usize = 1_000;

fn open(
    backend: &str,
    path: &Path,
    sync: Durability,
) -> Result<Arc<dyn Storage>, Box<dyn std::error::Error>> {
    Ok(match backend {
        "rocks" => Arc::new(RocksStorage::open(path, RocksConfig::with_sync(sync))?),
        "sled" => Arc::new(SledStorage::open(path, SledConfig::with_sync(sync))?),
        other => return Err(format!("unknown backend {other:?}; {USAGE}").into()),
    })
}

/// The 1-minute load average, or `?`.
fn load() -> String {
    load_average().map_or_else(|| "?".into(), |l| format!("{:.2}", l[0]))
}

fn cpu_seconds() -> f64 {
    process_cpu().map_or(0.0, |d| d.as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().ok_or(USAGE)?;
    let events: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let sync: Durability = args.next().map_or(Ok(Durability::Batch), |a| a.parse())?;
    let threads: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    if threads == 0 {
        return Err(format!("threads must be at least 1; {USAGE}").into());
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let store = open(&backend, &path, sync)?;
    let traqq = Traqq::with_shared_storage(standard_config(), store, "bench")?
        .with_clock(ManualClock::new(BENCH_NOW));
    let per_thread = events / threads;
    // Generate first: only recording is timed. Each thread has its own seed.
    let batches: Vec<Vec<Chunk>> = (0..threads)
        .map(|t| {
            let mut generator = Workload::standard(BENCH_SEED + t as u64, BENCH_NOW).generator();
            (0..per_thread.div_ceil(BATCH))
                .map(|_| {
                    let mut chunk = Chunk::default();
                    generator.fill(&mut chunk, BATCH);
                    chunk
                })
                .collect()
        })
        .collect();
    let load_before = load();
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    std::thread::scope(|s| {
        for mine in &batches {
            let traqq = &traqq;
            s.spawn(move || {
                for batch in mine {
                    traqq.record_json_lines(batch.lines()).unwrap();
                }
            });
        }
    });
    traqq.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let recorded = per_thread.div_ceil(BATCH) * BATCH * threads;
    println!(
        "{backend} sync={sync} threads={threads}: {recorded} events in {secs:.2} s = {:.0} events/s",
        recorded as f64 / secs
    );
    println!(
        "cpu: {cpu:.2} s of the process (all threads) = {:.0} events per CPU-second, {:.2} µs per event; \
         load average {load_before} before, {} after",
        recorded as f64 / cpu,
        cpu * 1e6 / recorded as f64,
        load()
    );
    let q = Instant::now();
    let result = traqq.query(BENCH_NOW - 7 * 86_400, BENCH_NOW)?;
    println!(
        "query of 8 days: {} metrics in {:.1} ms",
        result.days.iter().map(|d| d.results.len()).sum::<usize>(),
        q.elapsed().as_secs_f64() * 1e3
    );
    drop(traqq);
    println!(
        "on disk after close: {:.1} MiB",
        disk_usage(&path) as f64 / 1048576.0
    );
    Ok(())
}
