//! Records the standard workload into a fresh sled store and prints throughput and disk size.
//!
//! ```sh
//! cargo run --release -p traqq-sled --example sled_fill -- [events=1000000] [sync=batch] [threads=1]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/workload.rs"]
mod workload;

use std::sync::Arc;
use std::time::Instant;

use traqq_sled::{SledConfig, SledStorage};
use traqq_storage::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let sync: Durability = args.next().map_or(Ok(Durability::Batch), |a| a.parse())?;
    let threads: usize = args.next().map_or(Ok(1), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let store: Arc<dyn Storage> = Arc::new(SledStorage::open(&path, SledConfig::with_sync(sync))?);
    let traqq = Traqq::with_shared_storage(workload::config(), store, "bench")?
        .with_clock(ManualClock::new(workload::NOW));
    let per_thread = events / threads;
    // Generate first: only recording is timed.
    let batches: Vec<Vec<Vec<String>>> = (0..threads)
        .map(|t| {
            let mut w = workload::Workload::new(1 + t as u64);
            (0..per_thread.div_ceil(1_000)).map(|_| w.lines(1_000)).collect()
        })
        .collect();
    let load_before = workload::load_average();
    let cpu_start = workload::cpu_seconds();
    let start = Instant::now();
    std::thread::scope(|s| {
        for mine in &batches {
            let traqq = &traqq;
            s.spawn(move || {
                for batch in mine {
                    traqq.record_json_lines(batch.iter().map(String::as_str)).unwrap();
                }
            });
        }
    });
    traqq.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = workload::cpu_seconds() - cpu_start;
    let recorded = per_thread.div_ceil(1_000) * 1_000 * threads;
    println!(
        "sled sync={sync} threads={threads}: {recorded} events in {secs:.2} s = {:.0} events/s",
        recorded as f64 / secs
    );
    println!(
        "cpu: {cpu:.2} s of the process (all threads) = {:.0} events per CPU-second, {:.2} µs per event; \
         load average {load_before} before, {} after",
        recorded as f64 / cpu,
        cpu * 1e6 / recorded as f64,
        workload::load_average()
    );
    let q = Instant::now();
    let result = traqq.query(workload::NOW - 7 * 86_400, workload::NOW)?;
    println!(
        "query of 8 days: {} metrics in {:.1} ms",
        result.days.iter().map(|d| d.results.len()).sum::<usize>(),
        q.elapsed().as_secs_f64() * 1e3
    );
    drop(traqq);
    println!(
        "on disk after close: {:.1} MiB",
        workload::disk_usage(&path) as f64 / 1048576.0
    );
    Ok(())
}
