//! `traqq-bench`: generate the standard workload, or compare this project with traqq 0.2.
//!
//! ```text
//! traqq-bench gen --events 1000000 --seed 1 > events.ndjson
//! traqq-bench compare                      # 1,000,000 events, both ip modes, both engines
//! traqq-bench import --events 200000        # `traqq import` processes against traqq 0.2
//! traqq-bench distribution --events 200000  # what one `dst` adds to ingest and storage
//! traqq-bench cluster --events 200000       # Redis single node against 1-3 cluster masters
//! ```

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use traqq_bench::phase::{self, Engine, PhaseReport, PhaseSpec};
use traqq_bench::procfs::{cpus, load_average, mib};
use traqq_bench::verdict;
use traqq_bench::workload::{Ips, Workload, STANDARD_IPS};

#[derive(Debug, Parser)]
#[command(
    name = "traqq-bench",
    about = "traqq's standard workload and the traqq 0.2 comparison"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IpMode {
    /// 50,000 distinct ips (DESIGN §8).
    Standard,
    /// A new ip for every event.
    Distinct,
}

impl IpMode {
    fn ips(self) -> Ips {
        match self {
            IpMode::Standard => Ips::STANDARD,
            IpMode::Distinct => Ips::AllDistinct,
        }
    }
}

#[derive(Debug, clap::Args)]
struct WorkloadArgs {
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// End of the 7-day `ts` window, unix seconds (default: now). Fix it for byte-identical output.
    #[arg(long)]
    now: Option<i64>,
    /// Give every event a unique `"id":"e<number>"` (for `[event] id_field`).
    #[arg(long)]
    ids: bool,
}

impl WorkloadArgs {
    fn workload(&self, ips: Ips) -> Workload {
        Workload {
            seed: self.seed,
            ips,
            now: self.now.unwrap_or_else(unix_now),
            ids: self.ids,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Writes the standard workload as NDJSON to stdout.
    Gen {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Where ips come from.
        #[arg(long, value_enum, default_value_t = IpMode::Standard)]
        ips: IpMode,
    },
    /// Records the same events through traqq 0.2 and this project's memory backend (one
    /// thread, each phase in its own child process) and prints speed, memory and query time.
    Compare {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Lines per `record_json_lines` call of this project (traqq 0.2 records one at a time).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Skip traqq 0.2 (it takes about a minute per million events).
        #[arg(long)]
        skip_v02: bool,
    },
    /// The cost of exactly-once ingest: the same events (each with a unique id) recorded
    /// with and without `[event] id_field`, into memory and into RocksDB, each phase in its own
    /// process; prints speed, the ratio and the bytes each remembered id costs.
    Ids {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Lines per `record_json_lines` call.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
    /// What query-time calendars cost: `query_days(30)` in the store's zone against another
    /// zone (its days assembled from hours, and stored with `time.extra_zones`), and 90 days
    /// plain against grouped by month, on the memory store and RocksDB (the standard workload
    /// with hourly buckets).
    Zones {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// The other zone.
        #[arg(long, default_value = "America/New_York")]
        tz: String,
        /// Timed runs of each query (the median is reported).
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
    /// `traqq import` as whole processes, side by side with traqq 0.2 reading the same file:
    /// into memory with one worker and one per core, into RocksDB and sled with one per core
    /// (alternating runs, medians). Build the CLI first: `cargo build --release -p traqq-cli`.
    Import {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Runs of each contender.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The `traqq` binary (default: `traqq` beside this one).
        #[arg(long)]
        traqq: Option<std::path::PathBuf>,
        /// Skip traqq 0.2 (about 30 s per million events).
        #[arg(long)]
        skip_v02: bool,
    },
    /// What one distribution costs (issue 17): the standard workload recorded with the standard
    /// mapping and with it plus a `dst` of `amount` per `event~geo`, alternating runs into the
    /// memory store and RocksDB (thread CPU time, min and median, the ratio); then the `dst`
    /// keys' fields and bytes per label per day (packed-map and Redis estimates, RocksDB on disk
    /// compacted, Redis `MEMORY USAGE`).
    Distribution {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Timed runs of each mapping per store (after one untimed warm-up of each).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Skip the Redis `MEMORY USAGE` figures.
        #[arg(long)]
        skip_redis: bool,
    },
    /// Does a Redis Cluster add throughput with masters (issue 18)? The standard workload
    /// recorded (batches of 1,000) by 1 and 2 worker processes into a single plain
    /// `redis-server` and into clusters of 1, 2 and 3 masters, alternating runs: events/s, Redis
    /// CPU per event (all masters, `/proc/<pid>/stat`) and the workers' CPU, min and median.
    Cluster {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Timed runs of each setup and process count (after one untimed warm-up per setup).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// One recording process of `cluster`: its share of the workload, after `go` on stdin.
    #[command(hide = true)]
    ClusterWorker {
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Redis URLs, comma-separated (the single node, or the cluster's nodes).
        #[arg(long)]
        urls: String,
        /// The URLs are a Redis Cluster.
        #[arg(long)]
        cluster: bool,
        /// This worker records batches `i` with `i % parts == part`.
        #[arg(long, default_value_t = 0)]
        part: usize,
        /// Workers sharing the workload.
        #[arg(long, default_value_t = 1)]
        parts: usize,
    },
    /// traqq 0.2 importing an NDJSON file, line by line (one contender of `import`).
    #[command(hide = true)]
    V02Import { file: std::path::PathBuf },
    /// Runs one phase and prints its report as JSON (used by `compare`).
    #[command(hide = true)]
    Phase {
        #[arg(long)]
        engine: String,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[arg(long, value_enum)]
        ips: IpMode,
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Gen { workload, ips } => Ok(workload
            .workload(ips.ips())
            .write_ndjson(workload.events, &mut std::io::stdout().lock())?),
        Cmd::Phase {
            engine,
            workload,
            ips,
            batch,
        } => {
            let engine: Engine = engine.parse()?;
            let spec = PhaseSpec {
                engine,
                workload: workload.workload(ips.ips()),
                events: workload.events,
                batch,
                query_runs: 5,
            };
            let report = phase::run(&spec)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Cmd::Compare {
            workload,
            batch,
            skip_v02,
        } => compare(&workload, batch, skip_v02),
        Cmd::Ids { workload, batch } => ids(workload, batch),
        Cmd::Zones { workload, tz, runs } => zones(&workload, &tz, runs),
        Cmd::Import {
            workload,
            runs,
            traqq,
            skip_v02,
        } => traqq_bench::import::bench(
            &workload.workload(Ips::STANDARD),
            workload.events,
            runs,
            traqq,
            skip_v02,
        ),
        Cmd::Distribution {
            workload,
            runs,
            skip_redis,
        } => traqq_bench::distribution::bench(
            &workload.workload(Ips::STANDARD),
            workload.events,
            runs,
            !skip_redis,
        ),
        Cmd::Cluster { workload, runs } => {
            traqq_bench::cluster::bench(&workload.workload(Ips::STANDARD), workload.events, runs)
        }
        Cmd::ClusterWorker {
            workload,
            urls,
            cluster,
            part,
            parts,
        } => traqq_bench::cluster::worker(&traqq_bench::cluster::WorkerSpec {
            workload: workload.workload(Ips::STANDARD),
            events: workload.events,
            part,
            parts,
            urls: urls.split(',').map(str::to_owned).collect(),
            cluster,
        }),
        Cmd::V02Import { file } => {
            println!("{}", traqq_bench::import::v02_import(&file)?);
            Ok(())
        }
    }
}

fn run_child(
    engine: Engine,
    args: &WorkloadArgs,
    now: i64,
    ips: IpMode,
    batch: usize,
) -> anyhow::Result<PhaseReport> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let ips_name = match ips {
        IpMode::Standard => "standard",
        IpMode::Distinct => "distinct",
    };
    eprintln!("  running {} with {} ips ...", engine.name(), ips_name);
    let output = Command::new(exe)
        .args(["phase", "--engine", engine.name(), "--ips", ips_name])
        .args([
            "--events",
            &args.events.to_string(),
            "--seed",
            &args.seed.to_string(),
        ])
        .args(["--now", &now.to_string(), "--batch", &batch.to_string()])
        .args(args.ids.then_some("--ids"))
        .output()
        .context("starting a phase")?;
    if !output.status.success() {
        bail!(
            "phase {} failed: {}",
            engine.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("reading the report of phase {}: {line:?}", engine.name()))
}

fn opt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn opt_num<T: ToString>(x: Option<T>) -> String {
    x.map_or_else(|| "-".into(), |v| v.to_string())
}

fn compare(args: &WorkloadArgs, batch: usize, skip_v02: bool) -> anyhow::Result<()> {
    let now = args.now.unwrap_or_else(unix_now);
    if let Some([a, b, c]) = load_average() {
        eprintln!(
            "load average at the start: {a:.2} {b:.2} {c:.2} on {} CPUs",
            cpus()
        );
    }
    eprintln!(
        "traqq-bench compare: {} events, seed {}, now {now}, batch {batch}, one thread, each phase in its own process",
        args.events, args.seed
    );
    let mut rows: Vec<(IpMode, PhaseReport)> = Vec::new();
    for engine in [Engine::ParseValue, Engine::ParseEvent] {
        rows.push((
            IpMode::Standard,
            run_child(engine, args, now, IpMode::Standard, batch)?,
        ));
    }
    for ips in [IpMode::Standard, IpMode::Distinct] {
        rows.push((ips, run_child(Engine::Memory, args, now, ips, batch)?));
        if !skip_v02 {
            rows.push((ips, run_child(Engine::V02, args, now, ips, batch)?));
        }
    }

    println!();
    println!(
        "| phase | ips | events/s (wall) | events/s (CPU) | MB/s (CPU) | peak RSS MiB | RSS after MiB | query ms wall (min / median) | query ms CPU (median) | add/event total | unique ips (merged) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (ips, r) in &rows {
        let ips_text = match ips {
            IpMode::Standard => format!("{STANDARD_IPS} pool"),
            IpMode::Distinct => "all distinct".into(),
        };
        println!(
            "| {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {} / {} | {} | {} | {} |",
            r.engine.name(),
            ips_text,
            r.events_per_sec,
            opt_num(r.events_per_cpu_sec.map(|x| x.round() as u64)),
            r.bytes as f64 / r.cpu_seconds.unwrap_or(r.seconds).max(1e-9) / 1e6,
            mib(r.hwm_kib),
            mib(r.rss_after_kib),
            opt_ms(r.query_ms_min),
            opt_ms(r.query_ms_median),
            opt_ms(r.query_cpu_ms_median),
            opt_num(r.total_events),
            opt_num(r.unique_ips),
        );
    }
    if let Some([a, b, c]) = load_average() {
        println!(
            "\nload average at the end: {a:.2} {b:.2} {c:.2} on {} CPUs",
            cpus()
        );
    }
    println!();
    let find = |engine: Engine, ips: IpMode| {
        rows.iter()
            .find(|(i, r)| r.engine == engine && *i == ips)
            .map(|(_, r)| r)
    };
    let targets = Targets {
        memory: find(Engine::Memory, IpMode::Standard),
        memory_distinct: find(Engine::Memory, IpMode::Distinct),
        v02: find(Engine::V02, IpMode::Standard),
        v02_distinct: find(Engine::V02, IpMode::Distinct),
        parse_value: find(Engine::ParseValue, IpMode::Standard),
        parse_event: find(Engine::ParseEvent, IpMode::Standard),
    };
    targets.print(args.events);
    Ok(())
}

fn ids(mut args: WorkloadArgs, batch: usize) -> anyhow::Result<()> {
    args.ids = true;
    let now = args.now.unwrap_or_else(unix_now);
    eprintln!(
        "traqq-bench ids: {} events, each with a unique id, seed {}, now {now}, batch {batch}, one thread, each phase in its own process",
        args.events, args.seed
    );
    let mut rows = Vec::new();
    for engine in [Engine::Memory, Engine::MemoryIds, Engine::Rocks, Engine::RocksIds] {
        rows.push(run_child(engine, &args, now, IpMode::Standard, batch)?);
    }
    println!();
    println!("| phase | events/s (CPU) | events/s (wall) | RSS after MiB | disk MiB | add/event total |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {} | {} |",
            r.engine.name(),
            speed(r),
            r.events_per_sec,
            mib(r.rss_after_kib),
            r.disk_bytes
                .map_or_else(|| "-".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0)),
            opt_num(r.total_events),
        );
    }
    println!();
    let events = args.events as f64;
    for pair in rows.chunks(2) {
        let [plain, with_ids] = pair else { continue };
        let ratio = speed(plain) / speed(with_ids).max(1e-9);
        println!(
            "{}: with ids {ratio:.2}x the time without  [target <= 1.3x: {}]",
            plain.engine.name(),
            verdict(ratio <= 1.3)
        );
        let rss = (with_ids.rss_after_kib as f64 - plain.rss_after_kib as f64) * 1024.0 / events;
        println!("  memory per remembered id (RSS after, with - without): {rss:.1} bytes");
        if let (Some(a), Some(b)) = (plain.disk_bytes, with_ids.disk_bytes) {
            println!(
                "  disk per remembered id (store directory, with - without): {:.1} bytes",
                (b as f64 - a as f64) / events
            );
        }
    }
    Ok(())
}

fn zones(args: &WorkloadArgs, tz: &str, runs: usize) -> anyhow::Result<()> {
    let now = args.now.unwrap_or_else(unix_now);
    let zone: traqq_storage::traqq_core::bucket::Tz = tz
        .parse()
        .map_err(|_| anyhow::anyhow!("--tz {tz:?} is not an IANA time zone"))?;
    let events = usize::try_from(args.events).unwrap_or(usize::MAX);
    eprintln!(
        "traqq-bench zones: {events} events with hourly buckets, seed {}, now {now}, store zone UTC, other zone {tz}, median of {runs} runs (CPU ms)",
        args.seed
    );
    let dir = tempfile::tempdir()?;
    println!();
    println!(
        "| store | {tz}'s days | 30 days, UTC | 30 days, {tz} | ratio | (their hours alone) | 90 days | 90 days by month | ratio |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for (i, (name, stored_zone)) in [
        ("memory", false),
        ("memory", true),
        ("rocksdb", false),
        ("rocksdb", true),
    ]
    .into_iter()
    .enumerate()
    {
        let store: Box<dyn traqq_storage::Storage> = match name {
            "memory" => Box::new(traqq_storage::MemoryStorage::new()),
            _ => Box::new(traqq_rocks::RocksStorage::open(
                dir.path().join(format!("db{i}")),
                traqq_rocks::RocksConfig::default(),
            )?),
        };
        let t = traqq_bench::zones::measure(store, events, now, zone, stored_zone, runs)?;
        let (zone_ratio, month_ratio) = (t.other_zone_30 / t.own_zone_30, t.months_90 / t.plain_90);
        let source = if stored_zone {
            "stored (time.extra_zones)"
        } else {
            "from hours"
        };
        println!(
            "| {name} | {source} | {:.2} | {:.2} | {zone_ratio:.2}x | {:.2} | {:.2} | {:.2} | {month_ratio:.2}x |",
            t.own_zone_30, t.other_zone_30, t.hours_30, t.plain_90, t.months_90
        );
        verdicts.push(format!(
            "{name}, {tz}'s days {source}: another zone {zone_ratio:.2}x [target <= 3x: {}], by month {month_ratio:.2}x [target <= 2x: {}]",
            verdict(zone_ratio <= 3.0),
            verdict(month_ratio <= 2.0)
        ));
    }
    println!();
    for v in verdicts {
        println!("{v}");
    }
    println!();
    println!("| buckets stored | RocksDB bytes (compacted) | memory store keys |");
    println!("|---|---:|---:|");
    for (name, bytes, keys) in traqq_bench::zones::storage_cost(dir.path(), events, now, zone)? {
        println!("| {name} | {bytes} | {keys} |");
    }
    Ok(())
}

struct Targets<'a> {
    memory: Option<&'a PhaseReport>,
    memory_distinct: Option<&'a PhaseReport>,
    v02: Option<&'a PhaseReport>,
    v02_distinct: Option<&'a PhaseReport>,
    parse_value: Option<&'a PhaseReport>,
    parse_event: Option<&'a PhaseReport>,
}

/// Events per CPU-second where known (steadier on a shared machine), else per wall second.
fn speed(r: &PhaseReport) -> f64 {
    r.events_per_cpu_sec.unwrap_or(r.events_per_sec)
}

impl Targets<'_> {
    fn print(&self, events: u64) {
        let Some(m) = self.memory else { return };
        println!(
            "verdicts use events per CPU-second of the one recording thread (wall figures in the table)"
        );
        println!(
            "memory backend: {:.0} events/s ({:.0} wall)  [target >= 520,000: {}]",
            speed(m),
            m.events_per_sec,
            verdict(speed(m) >= 520_000.0)
        );
        if let Some(v) = self.v02 {
            let ratio = speed(m) / speed(v).max(1e-9);
            println!(
                "traqq 0.2: {:.0} events/s; memory / traqq 0.2 = {ratio:.1}x  [target >= 20x: {}]",
                speed(v),
                verdict(ratio >= 20.0)
            );
        }
        for (name, p) in [
            ("serde_json::Value", self.parse_value),
            ("IncomingEvent", self.parse_event),
        ] {
            if let Some(p) = p {
                let ratio = speed(p) / speed(m).max(1e-9);
                println!(
                    "parse-only into {name}: {:.0} events/s = {ratio:.2}x the memory backend  [target <= 2x: {}]",
                    speed(p),
                    verdict(ratio <= 2.0)
                );
            }
        }
        if let Some(d) = self.memory_distinct {
            println!(
                "memory backend, {events} all-distinct ips: peak RSS {:.1} MiB  [target <= 64 MiB: {}]",
                mib(d.hwm_kib),
                verdict(mib(d.hwm_kib) <= 64.0)
            );
        }
        if let Some(v) = self.v02_distinct {
            println!(
                "traqq 0.2, {events} all-distinct ips: peak RSS {:.1} MiB",
                mib(v.hwm_kib)
            );
        }
        if let Some(q) = m.query_cpu_ms_median.or(m.query_ms_median) {
            println!(
                "memory backend query_days(30) + {} merged finds: median {q:.2} ms CPU  [target <= 10 ms: {}]",
                traqq_bench::mapping::finds().len(),
                verdict(q <= 10.0)
            );
        }
    }
}
