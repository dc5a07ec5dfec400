//! `soak`: runs the real `traqq serve` binary for N minutes under mixed load and checks that it
//! stays flat.
//!
//! Load, all at once: TCP `record_batch` ingest clients and HTTP `POST /v1/events` (NDJSON)
//! ingest clients counting the events the server acknowledged; a dashboard client (`GET
//! /v1/query?days=7`, merged `find`s of every metric type, a TCP `query_days`) every ~200 ms;
//! a bad-input client (malformed JSON, oversize lines, wrong types, unknown commands, bad HTTP
//! requests), each expecting its error and the connection to survive; connection churn (TCP
//! and HTTP connections opened and dropped, some in the middle of a request).
//!
//! Every `--sample-secs` it prints the server's RSS and open fds, the dashboard latency
//! percentiles of the interval and the ingest rate. At the end it checks that the `add`
//! counter of `event` equals the sum of acknowledged events, that RSS and fds flattened and
//! that query p99 did not drift more than 2×; it exits 1 when a check fails.
//!
//! ```sh
//! CARGO_TARGET_DIR=/var/tmp/bench-target cargo build --release -p traqq-bench -p traqq-cli
//! /var/tmp/bench-target/release/soak --backend rocksdb --minutes 30 \
//!     --traqq /var/tmp/bench-target/release/traqq
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde_json::Value;
use traqq_bench::workload::Workload;
use traqq_redis::testing::{free_port, OwnServer};

mod clients;
mod measure;
mod serve;
mod wire;
use clients::*;
use measure::*;
use serve::*;
use wire::*;

/// `server.max_line_bytes` of the soak config: the bad-input client sends lines past it.
const MAX_LINE_BYTES: usize = 256 * 1024;
/// `server.max_body_bytes` of the soak config.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Events per ingest batch.
const BATCH: usize = 100;
/// Socket timeout: a reply slower than this is an error.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Rocksdb,
    Redis,
    Sled,
    Memory,
}

/// Soak `traqq serve` under mixed load; sample RSS, fds and latency; check it stays flat.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// Store behind the server.
    #[arg(long, value_enum, default_value = "rocksdb")]
    backend: Backend,
    /// How long to run the load.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The `traqq` binary to run (`traqq serve`).
    #[arg(long, default_value = "/var/tmp/bench-target/release/traqq")]
    traqq: PathBuf,
    /// Target ingest rate of all ingest clients together, events/s (0 = as fast as they can).
    #[arg(long, default_value_t = 4000)]
    rate: u64,
    /// TCP `record_batch` clients.
    #[arg(long, default_value_t = 4)]
    tcp_clients: usize,
    /// HTTP `POST /v1/events` clients.
    #[arg(long, default_value_t = 2)]
    http_clients: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10.0)]
    sample_secs: f64,
    /// Minutes between rows of the final curve (default: 5, or a sixth of a run under 30 min).
    #[arg(long)]
    curve_every: Option<f64>,
}

/// What the clients share: the stop flag and their counts.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Events the server acknowledged (`recorded` of each reply).
    acked: AtomicU64,
    /// Batches sent whose reply never came (the events may or may not be stored).
    uncertain: AtomicU64,
    /// Unexpected failures (a wrong reply, a refused connection, ...).
    errors: AtomicU64,
    /// The first unexpected failures, for the report.
    first_errors: Mutex<Vec<String>>,
    /// Dashboard latencies: (seconds since start, milliseconds).
    latencies: Mutex<Vec<(f64, f64)>>,
    /// Bad inputs answered with the expected error.
    bad_refused: AtomicU64,
    /// Connections opened and dropped by the churn client.
    churned: AtomicU64,
    /// Dashboard requests answered.
    queries: AtomicU64,
}

impl Shared {
    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 20 {
            eprintln!("error: {what}");
            first.push(what);
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early when stopped.
    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(100)));
        }
    }
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("traqq-soak-").tempdir()?;
    let redis = match args.backend {
        Backend::Redis => Some(
            OwnServer::ephemeral(free_port().ok_or_else(|| anyhow::anyhow!("no free port"))?)
                .ok_or_else(|| anyhow::anyhow!("could not start redis-server"))?,
        ),
        _ => None,
    };
    let storage = match args.backend {
        Backend::Rocksdb => format!(
            "[storage]\nbackend = \"rocksdb\"\npath = \"{}\"",
            dir.path().join("data").display()
        ),
        Backend::Sled => format!(
            "[storage]\nbackend = \"sled\"\npath = \"{}\"",
            dir.path().join("data").display()
        ),
        Backend::Memory => "[storage]\nbackend = \"memory\"".to_owned(),
        Backend::Redis => format!(
            "[storage]\nbackend = \"redis\"\nurl = \"{}\"",
            redis.as_ref().expect("started").url()
        ),
    };
    let config = dir.path().join("soak.toml");
    std::fs::write(&config, config_text(&storage))?;
    let mut serve = Serve::start(&args.traqq, &config, dir.path())?;
    let pid = serve.pid();
    let redis_pid = redis.as_ref().and_then(OwnServer::pid);
    println!(
        "soak: backend {:?}, {} min, traqq pid {pid} (tcp {}, http {}){}, rate target {} events/s, \
         {} TCP + {} HTTP ingest clients, load average {}",
        args.backend,
        args.minutes,
        serve.tcp,
        serve.http,
        redis_pid
            .map(|p| format!(", redis-server pid {p}"))
            .unwrap_or_default(),
        args.rate,
        args.tcp_clients,
        args.http_clients,
        load_average(),
    );

    // A pool of standard-workload events (ts over the 7 days before now) that clients cycle.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let pool: Arc<Vec<String>> = Arc::new(Workload::standard(20, now).lines(20_000));
    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let ingest_clients = args.tcp_clients + args.http_clients;
    let per_client = if args.rate == 0 || ingest_clients == 0 {
        0.0
    } else {
        args.rate as f64 / ingest_clients as f64
    };

    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    for id in 0..args.tcp_clients {
        let (addr, pool, shared) = (serve.tcp.clone(), pool.clone(), shared.clone());
        handles.push(std::thread::spawn(move || {
            tcp_ingest(id, &addr, &pool, &shared, per_client)
        }));
    }
    for id in 0..args.http_clients {
        let (addr, pool, shared) = (serve.http.clone(), pool.clone(), shared.clone());
        let id = args.tcp_clients + id;
        handles.push(std::thread::spawn(move || {
            http_ingest(id, &addr, &pool, &shared, per_client)
        }));
    }
    {
        let (tcp, http, shared) = (serve.tcp.clone(), serve.http.clone(), shared.clone());
        handles.push(std::thread::spawn(move || dashboard(&tcp, &http, &shared, start)));
    }
    {
        let (tcp, http, shared) = (serve.tcp.clone(), serve.http.clone(), shared.clone());
        handles.push(std::thread::spawn(move || bad_input(&tcp, &http, &shared)));
    }
    {
        let (tcp, http, shared) = (serve.tcp.clone(), serve.http.clone(), shared.clone());
        handles.push(std::thread::spawn(move || churn(&tcp, &http, &shared)));
    }

    // Sampling.
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let every = Duration::from_secs_f64(args.sample_secs);
    let mut samples: Vec<Sample> = Vec::new();
    let (mut last_t, mut last_acked) = (0.0, 0u64);
    println!(
        "{:>7} {:>9} {:>5} {:>9} {:>8} {:>8} {:>6} {:>9} {:>11} {:>6} {:>6}",
        "t_s", "rss_MiB", "fds", "redis_MiB", "p50_ms", "p99_ms", "n_q", "events/s", "acked", "bad", "churn"
    );
    let mut next = start + every;
    let mut server_died = false;
    while start.elapsed() < total {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next += every;
        let t = start.elapsed().as_secs_f64();
        if let Some(status) = serve.exited() {
            shared.error(format!("traqq serve exited during the soak: {status}"));
            server_died = true;
            break;
        }
        let acked = shared.acked.load(Ordering::Relaxed);
        let mut lat = latencies_between(&shared, last_t, t);
        let sample = Sample {
            t,
            rss_kib: rss_kib(pid).unwrap_or(0),
            fds: open_fds(pid),
            redis_rss_kib: redis_pid.and_then(rss_kib),
            p50: quantile(&mut lat, 0.50),
            p99: quantile(&mut lat, 0.99),
            queries: lat.len(),
            events_per_sec: (acked - last_acked) as f64 / (t - last_t),
            acked,
        };
        println!(
            "{:>7.0} {:>9.1} {:>5} {:>9} {:>8.2} {:>8.2} {:>6} {:>9.0} {:>11} {:>6} {:>6}",
            sample.t,
            sample.rss_kib as f64 / 1024.0,
            sample.fds,
            sample
                .redis_rss_kib
                .map(|k| format!("{:.1}", k as f64 / 1024.0))
                .unwrap_or_else(|| "-".into()),
            sample.p50,
            sample.p99,
            sample.queries,
            sample.events_per_sec,
            sample.acked,
            shared.bad_refused.load(Ordering::Relaxed),
            shared.churned.load(Ordering::Relaxed),
        );
        (last_t, last_acked) = (t, acked);
        samples.push(sample);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let load_at_end = load_average();

    // Stop the clients and wait for their last replies.
    shared.stop.store(true, Ordering::Relaxed);
    for h in handles {
        if h.join().is_err() {
            shared.error("a client thread panicked".into());
        }
    }

    let acked = shared.acked.load(Ordering::Relaxed);
    let uncertain = shared.uncertain.load(Ordering::Relaxed);
    let stored = if server_died {
        None
    } else {
        match stored_count(&serve.tcp) {
            Ok(n) => Some(n),
            Err(e) => {
                shared.error(format!("final count query: {e}"));
                None
            }
        }
    };
    let recorded_metric = if server_died {
        None
    } else {
        metrics_recorded(&serve.http).ok()
    };
    let exit = if server_died { None } else { serve.terminate() };

    // Checks.
    let mut ok = true;
    println!();
    println!(
        "summary: {:?}, {:.1} min, load average at the end {load_at_end}",
        args.backend,
        elapsed / 60.0
    );
    println!(
        "  acknowledged {acked} events ({:.0} events/s), {} dashboard requests, {} bad inputs refused, \
         {} connections churned, {uncertain} batches without a reply, {} unexpected errors",
        acked as f64 / elapsed,
        shared.queries.load(Ordering::Relaxed),
        shared.bad_refused.load(Ordering::Relaxed),
        shared.churned.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
    );
    let count_ok = stored == Some(acked) && uncertain == 0;
    ok &= count_ok;
    println!(
        "  count: stored add/event = {} vs acknowledged {acked} (traqq_events_recorded_total {}): {}",
        stored.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
        recorded_metric
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into()),
        verdict(count_ok)
    );

    // Flattening: the last third against the middle third.
    let third = elapsed / 3.0;
    let middle: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= third && s.t < 2.0 * third)
        .collect();
    let last: Vec<&Sample> = samples.iter().filter(|s| s.t >= 2.0 * third).collect();
    let max_of = |v: &[&Sample], f: &dyn Fn(&Sample) -> u64| v.iter().map(|s| f(s)).max();
    let flat = |name: &str, f: &dyn Fn(&Sample) -> u64, unit: f64, abs: f64, check: bool| {
        let (Some(m), Some(l)) = (max_of(&middle, f), max_of(&last, f)) else {
            println!("  {name}: too few samples");
            return !check;
        };
        let (m, l) = (m as f64 / unit, l as f64 / unit);
        let pass = l <= m * 1.10 || l - m <= abs;
        println!(
            "  {name}: max of the middle third {m:.1}, of the last third {l:.1} ({:+.1}%; bound: +10% or +{abs}){}",
            (l / m.max(1e-9) - 1.0) * 100.0,
            if check {
                format!(": {}", verdict(pass))
            } else {
                " (information)".into()
            }
        );
        pass || !check
    };
    ok &= flat("RSS MiB", &|s| s.rss_kib, 1024.0, 16.0, true);
    ok &= flat("open fds", &|s| s.fds, 1.0, 10.0, true);
    if redis_pid.is_some() {
        flat(
            "redis-server RSS MiB",
            &|s| s.redis_rss_kib.unwrap_or(0),
            1024.0,
            16.0,
            false,
        );
    }

    // Latency drift: p99 of the last sixth (the last 5 min of 30) against the second sixth
    // (minutes 5-10 of 30).
    let sixth = elapsed / 6.0;
    let mut base = latencies_between(&shared, sixth, 2.0 * sixth);
    let mut end = latencies_between(&shared, elapsed - sixth, elapsed + 1.0);
    let (b99, e99) = (quantile(&mut base, 0.99), quantile(&mut end, 0.99));
    let drift_ok = !base.is_empty() && !end.is_empty() && e99 <= 2.0 * b99;
    ok &= drift_ok;
    println!(
        "  query p99: minutes {:.1}-{:.1} {b99:.2} ms ({} requests), last {:.1} min {e99:.2} ms ({} requests), ratio {:.2} (bound 2.0): {}",
        sixth / 60.0,
        2.0 * sixth / 60.0,
        base.len(),
        sixth / 60.0,
        end.len(),
        e99 / b99.max(1e-9),
        verdict(drift_ok)
    );
    let errors_ok = shared.errors.load(Ordering::Relaxed) == 0;
    ok &= errors_ok;
    println!(
        "  unexpected errors: {} {}",
        shared.errors.load(Ordering::Relaxed),
        verdict(errors_ok)
    );
    for e in shared.first_errors.lock().unwrap().iter() {
        println!("    {e}");
    }
    let exit_ok = exit.is_some_and(|s| s.success());
    ok &= exit_ok;
    println!(
        "  SIGTERM: {}: {}",
        exit.map(|s| s.to_string()).unwrap_or_else(|| "no exit".into()),
        verdict(exit_ok)
    );

    // The curve, for the README.
    let step = args
        .curve_every
        .unwrap_or(if args.minutes >= 30.0 {
            5.0
        } else {
            args.minutes / 6.0
        })
        .max(args.sample_secs / 60.0);
    println!();
    println!(
        "curve ({:?}; each row: the sample at that minute, latency and rate over the {step:.1} min before it)",
        args.backend
    );
    let redis_col = redis_pid.is_some();
    println!(
        "| minute | traqq RSS MiB | fds |{} query p50 ms | query p99 ms | events/s |",
        if redis_col { " redis RSS MiB |" } else { "" }
    );
    println!(
        "|---:|---:|---:|{}---:|---:|---:|",
        if redis_col { "---:|" } else { "" }
    );
    let mut at = step * 60.0;
    while at <= elapsed + args.sample_secs {
        let Some(s) = samples
            .iter()
            .min_by(|a, b| (a.t - at).abs().total_cmp(&(b.t - at).abs()))
        else {
            break;
        };
        let from = at - step * 60.0;
        let mut lat = latencies_between(&shared, from, s.t);
        let before = samples
            .iter()
            .rev()
            .find(|x| x.t <= from + 0.5)
            .map(|x| (x.t, x.acked))
            .unwrap_or((0.0, 0));
        let rate = (s.acked - before.1) as f64 / (s.t - before.0).max(1e-9);
        println!(
            "| {:.1} | {:.1} | {} |{} {:.2} | {:.2} | {:.0} |",
            s.t / 60.0,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            if redis_col {
                format!(" {:.1} |", s.redis_rss_kib.unwrap_or(0) as f64 / 1024.0)
            } else {
                String::new()
            },
            quantile(&mut lat, 0.5),
            quantile(&mut lat, 0.99),
            rate
        );
        at += step * 60.0;
    }
    println!();
    println!("verdict: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        if !tail.is_empty() {
            println!("last lines of the server log:");
            for l in tail.iter().rev() {
                println!("  {l}");
            }
        }
    }
    drop(redis);
    Ok(ok)
}
