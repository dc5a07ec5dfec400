//! Records the standard workload (DESIGN §8) through the engine into a local Redis, in batches
//! of 1,000 events, and prints events/s and Redis `used_memory`.
//!
//! `cargo bench -p traqq-redis` uses `TRAQQ_REDIS_URL` when set, else starts its own
//! `redis-server` (no persistence) on a free loopback port. `TRAQQ_BENCH_EVENTS` changes the
//! event count (default 1,000,000). A criterion benchmark of single 1,000-event batches follows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;
use traqq_storage::{BufferConfig, BufferedStorage};

const BATCH: usize = 1_000;
/// "Now" of the workload, fixed so runs are comparable.
const NOW: i64 = 1_764_000_000;

/// SplitMix64: small, deterministic, good enough for a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self, len: usize) -> String {
        const ABC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-";
        (0..len)
            .map(|_| ABC[self.below(ABC.len() as u64) as usize] as char)
            .collect()
    }
}

const GEOS: [&str; 30] = [
    "US", "DE", "FR", "GB", "BR", "JP", "IN", "CN", "CA", "AU", "ES", "IT", "NL", "SE", "NO", "PL", "MX",
    "AR", "ZA", "NG", "EG", "TR", "RU", "KR", "ID", "TH", "VN", "PH", "CH", "AT",
];

/// The standard workload as JSON lines (DESIGN §8), deterministic from `seed`.
fn workload(n: usize, seed: u64) -> Vec<String> {
    let mut r = Rng(seed);
    (0..n)
        .map(|_| {
            let event = match r.below(5) {
                0..=2 => "offer_impression",
                3 => "offer_click",
                _ => "offer_conversion",
            };
            let ip = r.below(50_000) as u32;
            let amount = if r.below(10) < 3 {
                format!(r#","amount":{:.2}"#, 0.01 + r.below(50_000) as f64 / 100.0)
            } else {
                String::new()
            };
            format!(
                r#"{{"event":"{event}","ip":"10.{}.{}.{}","offer":"offer{}","creative":"cr{}","channel":"ch{}","geo":"{}","host":"host{}.example","ts":{}{amount},"ua":"Mozilla/5.0 {}","url":"https://{}","session":"{}","ref":"https://{}"}}"#,
                ip >> 16,
                (ip >> 8) & 255,
                ip & 255,
                r.below(20),
                r.below(10),
                r.below(5),
                GEOS[r.below(30) as usize],
                r.below(100),
                NOW - r.below(7 * 86_400) as i64,
                r.text(68),
                r.text(32),
                r.text(32),
                r.text(22),
            )
        })
        .collect()
}

fn config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec![
                "event".into(),
                "event~offer".into(),
                "event~offer~creative".into(),
                "event~offer~channel".into(),
                "event~geo".into(),
            ],
            add_value: vec![AddValueConfig {
                key: "offer~event".into(),
                add_key: "amount".into(),
            }],
            top: vec![
                "geo".into(),
                "offer".into(),
                "geo~offer".into(),
                "offer~creative".into(),
                "offer~host".into(),
            ],
        },
        ..TraqqConfig::default()
    }
}

/// Our own server when no URL is given; killed on drop.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn server() -> (String, Server) {
    if let Ok(url) = std::env::var("TRAQQ_REDIS_URL") {
        return (url, Server(None));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (or set TRAQQ_REDIS_URL)");
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).unwrap();
    for _ in 0..100 {
        if client
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (url, Server(Some(child)))
}

fn used_memory(url: &str) -> u64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds used by this process so far (Linux `/proc`, 100 ticks per second), or 0.
fn own_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The 1-minute load average (Linux `/proc/loadavg`), or "?".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
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
    let (url, _server) = server();
    let n: usize = std::env::var("TRAQQ_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let prefix = format!("bench{}", std::process::id());
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
    let traqq = Traqq::new(config(), storage, &prefix).unwrap();

    let lines = workload(n, 42);
    let load_before = load_average();
    let before = used_memory(&url);
    let (cpu0, rcpu0) = (own_cpu(), redis_cpu(&url));
    let start = Instant::now();
    for chunk in lines.chunks(BATCH) {
        let out = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected.first());
    }
    let secs = start.elapsed().as_secs_f64();
    let (cpu, rcpu) = (own_cpu() - cpu0, redis_cpu(&url) - rcpu0);
    let load_after = load_average();

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
    let batch_lines = workload(BATCH, 7);
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
    let traqq = Traqq::new(self::config(), storage, &prefix).unwrap();
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
    let traqq = Traqq::new(config(), storage, &prefix).unwrap();
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
