//! Records the standard workload (DESIGN §8, `traqq_bench`'s generator and mapping, seed 1)
//! through the engine into a local Redis, in batches of 1,000 events, and prints events/s and
//! Redis `used_memory`; then the same through the write buffer.
//!
//! `cargo bench -p traqq-bench --bench redis` uses `TRAQQ_REDIS_URL` when set, else starts its own
//! `redis-server` (no persistence) on a free loopback port (`traqq_bench::redis_server`).
//! `TRAQQ_BENCH_EVENTS` changes the event count (default 1,000,000). A criterion benchmark of
//! single 1,000-event batches follows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use criterion::{Criterion, Throughput};
use traqq_bench::mapping::standard_config;
use traqq_bench::procfs::{load_average, process_cpu};
use traqq_bench::redis_server::RedisServer;
use traqq_bench::workload::{Workload, BENCH_NOW, BENCH_SEED};
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;
use traqq_storage::{BufferConfig, BufferedStorage};

const BATCH: usize = 1_000;
/// "Now" of the workload, fixed so runs are comparable.
const NOW: i64 = BENCH_NOW;

fn used_memory(url: &str) -> u64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds used by this process so far (all threads).
fn own_cpu() -> f64 {
    process_cpu().map_or(0.0, |t| t.as_secs_f64())
}

/// The 1-minute load average, or "?".
fn load() -> String {
    load_average().map_or_else(|| "?".to_owned(), |l| format!("{:.2}", l[0]))
}

/// CPU seconds Redis has used (`INFO cpu`).
fn redis_cpu(url: &str) -> f64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut c).unwrap();
    info.lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

fn main() {
    let Some(server) = RedisServer::start() else {
        eprintln!("traqq-redis record: no TRAQQ_REDIS_URL and no redis-server on PATH: nothing to measure");
        return;
    };
    let url = server.url().to_owned();
    let n: usize = std::env::var("TRAQQ_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let prefix = format!("bench{}", std::process::id());
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
    let traqq = Traqq::new(standard_config(), storage, &prefix).unwrap();

    let lines = Workload::standard(BENCH_SEED, NOW).lines(n);
    let load_before = load();
    let before = used_memory(&url);
    let (cpu0, rcpu0) = (own_cpu(), redis_cpu(&url));
    let start = Instant::now();
    for chunk in lines.chunks(BATCH) {
        let out = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu, rcpu) = (own_cpu() - cpu0, redis_cpu(&url) - rcpu0);
    let load_after = load();

    // Where the time goes: building batches (parse + op generation) vs applying them.
    let (mut build, mut apply, mut ops, mut keys) = (0.0, 0.0, 0usize, 0usize);
    for chunk in lines.chunks(BATCH).take(100) {
        let t = Instant::now();
        let mut builder = traqq.generator().batch();
        for line in chunk {
            builder
                .add(&IncomingEvent::parse_str(line).unwrap(), NOW)
                .unwrap();
        }
        let batch = builder.finish();
        build += t.elapsed().as_secs_f64();
        let t = Instant::now();
        traqq.storage().apply(&batch).unwrap();
        apply += t.elapsed().as_secs_f64();
        ops += batch.op_count();
        keys += batch.len();
    }
    println!(
        "traqq-redis record: per 1,000-event batch: build {:.2} ms, apply {:.2} ms; {} keys, {} ops",
        build * 10.0,
        apply * 10.0,
        keys / 100,
        ops / 100
    );
    let after = used_memory(&url);
    let uniques = traqq.query(NOW - 7 * 86_400, NOW).unwrap().find_str("bmp/ip");
    println!(
        "traqq-redis record: {n} events in batches of {BATCH} in {secs:.2} s = {:.0} events/s",
        n as f64 / secs
    );
    // On a shared machine wall time depends on the neighbours; CPU time does not. A single
    // client waits for each batch, so client + Redis CPU per event bounds the rate on an idle
    // machine.
    println!(
        "traqq-redis record: CPU per 1,000-event batch: client {:.2} ms, redis {:.2} ms => {:.0} events per CPU-second (client + redis)",
        cpu * 1e3 / (n / BATCH) as f64,
        rcpu * 1e3 / (n / BATCH) as f64,
        n as f64 / (cpu + rcpu)
    );
    println!(
        "traqq-redis record: per 1,000,000 events: redis {:.2} CPU-s, client {:.2} CPU-s; load average {load_before} at the start, {load_after} at the end (2 cores here)",
        rcpu * 1e6 / n as f64,
        cpu * 1e6 / n as f64,
    );
    println!(
        "traqq-redis record: redis used_memory {after} bytes ({:.1} MiB; +{:.1} MiB for this run); merged bmp/ip over the week = {:?} (truth ≤ 50000)",
        after as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / 1_048_576.0,
        uniques.first().map(|m| &m.result)
    );

    buffered_run(&url, &lines);

    if let Ok(urls) = std::env::var("TRAQQ_REDIS_CLUSTER_URLS") {
        let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
        cluster_run(&urls, &lines[..n.min(200_000)]);
    }

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let batch_lines = Workload::standard(7, NOW).lines(BATCH);
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("record_batch_1000", |b| {
        b.iter(|| {
            traqq
                .record_json_lines(batch_lines.iter().map(String::as_str))
                .unwrap()
        })
    });
    group.finish();
    c.final_summary();

    // Leave a shared server as we found it.
    drop_keys(&url, &prefix);
}

/// The same workload through a write buffer (`BufferConfig::default()`: written every 100 ms
/// or at 50,000 coalesced operations), so Redis gets fewer, larger batches; the clock stops
/// after the last buffered write is in Redis.
fn buffered_run(url: &str, lines: &[String]) {
    let prefix = format!("benchb{}", std::process::id());
    let config = BufferConfig::default();
    let storage = BufferedStorage::new(RedisStorage::connect(RedisConfig::single(url)).unwrap(), config);
    let traqq = Traqq::new(standard_config(), storage, &prefix).unwrap();
    let (cpu0, rcpu0) = (own_cpu(), redis_cpu(url));
    let start = Instant::now();
    for chunk in lines.chunks(BATCH) {
        let out = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    }
    traqq.flush().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let (cpu, rcpu) = (own_cpu() - cpu0, redis_cpu(url) - rcpu0);
    let n = lines.len();
    let uniques = traqq.query(NOW - 7 * 86_400, NOW).unwrap().find_str("bmp/ip");
    println!(
        "traqq-redis record, write buffer ({} ms / {} ops): {n} events in batches of {BATCH} in {secs:.2} s = {:.0} events/s; CPU per 1,000 events: client {:.2} ms (both threads), redis {:.2} ms; merged bmp/ip = {:?}",
        config.max_delay.as_millis(),
        config.max_ops,
        n as f64 / secs,
        cpu * 1e3 * 1_000.0 / n as f64,
        rcpu * 1e3 * 1_000.0 / n as f64,
        uniques.first().map(|m| &m.result)
    );
    drop_keys(url, &prefix);
}

/// Deletes the keys holding `needle` from one node (one at a time: on a cluster node, keys of
/// different slots cannot go in one DEL).
fn drop_keys(url: &str, needle: &str) {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("*{needle}*"))
            .arg("COUNT")
            .arg(10_000)
            .query(&mut conn)
            .unwrap();
        let mut pipe = redis::pipe();
        keys.iter().for_each(|k| {
            pipe.cmd("DEL").arg(k).ignore();
        });
        pipe.query::<()>(&mut conn).unwrap();
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// The same workload into a Redis Cluster (one script call per slot, sent concurrently).
fn cluster_run(urls: &[String], lines: &[String]) {
    let prefix = format!("benchc{}", std::process::id());
    let storage = RedisStorage::connect(RedisConfig::cluster(urls.iter().cloned())).unwrap();
    let traqq = Traqq::new(standard_config(), storage, &prefix).unwrap();
    let before: u64 = urls.iter().map(|u| used_memory(u)).sum();
    let (cpu0, rcpu0) = (own_cpu(), urls.iter().map(|u| redis_cpu(u)).sum::<f64>());
    let start = Instant::now();
    for chunk in lines.chunks(BATCH) {
        traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu, rcpu) = (
        own_cpu() - cpu0,
        urls.iter().map(|u| redis_cpu(u)).sum::<f64>() - rcpu0,
    );
    let after: u64 = urls.iter().map(|u| used_memory(u)).sum();
    let batches = (lines.len() / BATCH).max(1) as f64;
    println!(
        "traqq-redis record (cluster of {}): {} events in {secs:.2} s = {:.0} events/s; CPU per batch: client {:.2} ms, redis (all nodes) {:.2} ms; used_memory +{:.1} MiB",
        urls.len(),
        lines.len(),
        lines.len() as f64 / secs,
        cpu * 1e3 / batches,
        rcpu * 1e3 / batches,
        after.saturating_sub(before) as f64 / 1_048_576.0
    );
    for u in urls {
        drop_keys(u, &prefix);
    }
}
