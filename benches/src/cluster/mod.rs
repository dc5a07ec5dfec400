//! `traqq-bench cluster` (issue 18, item 6): does a Redis Cluster add throughput with masters?
//!
//! **Setups.** A single plain `redis-server` (no cluster mode), then Redis Clusters of 1, 2 and
//! 3 masters without replicas (`OwnServer::cluster_node`, joined by `create_cluster` —
//! `redis-cli --cluster create` — for 3 masters; `redis-cli` refuses fewer than 3, so 1 and 2
//! masters get the same even slot split by hand: `CLUSTER ADDSLOTSRANGE` + `CLUSTER MEET`). All
//! setups run at once, idle between their turns, and no server persists anything.
//!
//! **Runs.** The standard workload (seed-derived, the same events in every run) recorded in
//! batches of [`BATCH`] lines (as the README's other Redis figures) with the standard mapping by
//! 1 and by 2 `traqq` processes: each is this binary's hidden `cluster-worker` subcommand, which
//! generates the events, keeps its share (every other batch with 2 processes), connects, says
//! `ready` and waits for `go` on stdin. Wall time runs from the `go` to both processes' reports
//! (each after its last batch and `flush()`), so process start, generation and connecting are
//! not timed. Redis CPU is `utime + stime` of every master (`/proc/<pid>/stat`) before and
//! after; the workers report their own process CPU time (all threads, over the recording only).
//! Runs alternate over setups (the starting setup rotates, 1 and 2 processes swap order), and
//! every run starts from empty servers (`FLUSHALL` on every master after it), under the fixed
//! prefix [`PREFIX`] — the hash tags hold the prefix, so a fixed one keeps each metric on the
//! same master in every run.
//!
//! **Checks.** After every run, `query_days(30)` through a fresh connection must count every
//! recorded event in `add/event`, so a broken cluster run cannot pass as a fast one.
//!
//! **Where the work goes.** For each cluster, the metrics of the standard mapping and the
//! coalesced updates of the first ten batches are assigned to the master that owns their slot
//! (from `CLUSTER NODES`), with the number of script calls (distinct slots) per batch.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use traqq_core::event::IncomingEvent;
use traqq_core::result::MetricData;
use traqq_redis::keys::slot;
use traqq_redis::testing::{create_cluster, free_cluster_port, free_port, OwnServer};
use traqq_redis::{KeyLayout, RedisConfig, RedisStorage};
use traqq_storage::{ManualClock, MemoryStorage, Traqq};

use crate::mapping::standard_config;
use crate::procfs::{cpus, load_average, pid_cpu_seconds, process_cpu};
use crate::stats::{max, median, min};
use crate::verdict;
use crate::workload::{Chunk, Workload};

mod deployment;
pub use deployment::*;

/// Lines per `record_json_lines` call (as the README's Redis figures).
pub const BATCH: usize = 1_000;

/// The prefix every run records under (fixed: see the module docs).
pub const PREFIX: &str = "bench";

/// Masters of the clusters measured.
pub const MASTERS: [usize; 3] = [1, 2, 3];

/// Target (a): Redis CPU per event of 3 masters (all together) at most this times the single
/// node's.
pub const CPU_TARGET: f64 = 1.15;

/// Target (b): events/s of 3 masters with one `traqq` process at least this times the single
/// node's.
pub const SPEED_TARGET: f64 = 1.6;

/// The workload's events in batches of [`BATCH`], keeping batch `i` when `i % parts == part`.
pub fn chunks(workload: &Workload, events: u64, part: usize, parts: usize) -> Vec<Chunk> {
    let mut generator = workload.generator();
    let mut out = Vec::new();
    let mut left = events;
    let mut i = 0usize;
    while left > 0 {
        let n = left.min(BATCH as u64);
        let mut chunk = Chunk::default();
        generator.refill(&mut chunk, n as usize);
        if i % parts.max(1) == part {
            out.push(chunk);
        }
        left -= n;
        i += 1;
    }
    out
}

/// What a worker reports after recording its share.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct WorkerReport {
    /// Events recorded.
    pub events: u64,
    /// Wall seconds of the recording (from `go` to after `flush()`).
    pub wall: f64,
    /// CPU seconds of the worker process over the recording, all threads.
    pub cpu: f64,
}

/// Where a worker records, and which share.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The events.
    pub workload: Workload,
    /// How many events the whole workload has.
    pub events: u64,
    /// This worker's share: batches `i` with `i % parts == part`.
    pub part: usize,
    /// How many workers share the workload.
    pub parts: usize,
    /// Redis URLs: the single node, or the cluster's nodes.
    pub urls: Vec<String>,
    /// Cluster mode.
    pub cluster: bool,
}

/// `traqq-bench cluster-worker`: records its share when told `go` on stdin, then prints a
/// [`WorkerReport`] as JSON (see the module docs).
pub fn worker(spec: &WorkerSpec) -> anyhow::Result<()> {
    let chunks = chunks(&spec.workload, spec.events, spec.part, spec.parts);
    let config = if spec.cluster {
        RedisConfig::cluster(spec.urls.iter().cloned())
    } else {
        RedisConfig::single(spec.urls.concat())
    };
    let storage = RedisStorage::connect(config)?;
    let traqq =
        Traqq::new(standard_config(), storage, PREFIX)?.with_clock(ManualClock::new(spec.workload.now));
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go)?;
    if go.trim() != "go" {
        bail!("expected `go` on stdin, got {go:?}");
    }
    let (start, cpu0) = (Instant::now(), process_cpu());
    let mut events = 0u64;
    for chunk in &chunks {
        let outcome = traqq.record_json_lines(chunk.lines())?;
        if let Some(r) = outcome.rejected.first() {
            bail!("line {} rejected: {}", r.index, r.error);
        }
        events += outcome.recorded as u64;
    }
    traqq.flush()?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu0
        .zip(process_cpu())
        .map_or(wall, |(a, b)| b.saturating_sub(a).as_secs_f64());
    writeln!(
        stdout,
        "{}",
        serde_json::to_string(&WorkerReport { events, wall, cpu })?
    )?;
    stdout.flush()?;
    Ok(())
}

/// One timed run.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Wall seconds from `go` to the last report.
    pub wall: f64,
    /// Events recorded (all workers).
    pub events: u64,
    /// Redis CPU seconds per master over the run.
    pub redis: Vec<f64>,
    /// CPU seconds of the workers, summed.
    pub client: f64,
}

impl Sample {
    /// Events per wall second.
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall.max(1e-9)
    }

    /// Redis CPU of all masters, µs per event.
    pub fn redis_us_per_event(&self) -> f64 {
        self.redis.iter().sum::<f64>() * 1e6 / self.events.max(1) as f64
    }

    /// Worker CPU, µs per event.
    pub fn client_us_per_event(&self) -> f64 {
        self.client * 1e6 / self.events.max(1) as f64
    }

    /// The events/s this run's CPU figures allow on `cores` cores with `procs` workers, each
    /// recording batch after batch: one worker waits for Redis after building each batch, so
    /// a batch takes at least its client CPU plus the busiest master's share or all masters'
    /// share spread over the cores, whichever is longer; with several workers, all CPU spread
    /// over the cores or the busiest master, whichever is longer.
    pub fn cpu_bound(&self, cores: usize, procs: usize) -> f64 {
        let events = self.events.max(1) as f64;
        let cores = cores.max(1) as f64;
        let redis: f64 = self.redis.iter().sum();
        let busiest = self.redis.iter().copied().fold(0.0, f64::max);
        let secs = if procs <= 1 {
            self.client + busiest.max(redis / cores)
        } else {
            ((self.client + redis) / cores).max(busiest)
        };
        events / secs.max(1e-9)
    }
}

/// A started worker, waiting for `go`.
struct Running {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn fail(child: Child, what: &str) -> anyhow::Error {
    match child.wait_with_output() {
        Ok(o) => anyhow::anyhow!("worker {what}: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => anyhow::anyhow!("worker {what}: {e}"),
    }
}

/// Records the workload into `dep` with `procs` worker processes; checks the count and empties
/// the servers afterwards.
pub fn run(dep: &Deployment, workload: &Workload, events: u64, procs: usize) -> anyhow::Result<Sample> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut running = Vec::new();
    for part in 0..procs {
        let mut child = Command::new(&exe)
            .arg("cluster-worker")
            .args(dep.worker_args())
            .args(["--events", &events.to_string()])
            .args(["--seed", &workload.seed.to_string()])
            .args(["--now", &workload.now.to_string()])
            .args(["--part", &part.to_string(), "--parts", &procs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a worker")?;
        let Some(stdout) = child.stdout.take() else {
            bail!("worker without stdout");
        };
        running.push(Running {
            child,
            out: BufReader::new(stdout),
        });
    }
    let mut ready = Vec::new();
    for mut r in running {
        let mut line = String::new();
        r.out.read_line(&mut line)?;
        if line.trim() != "ready" {
            return Err(fail(r.child, "did not get ready"));
        }
        ready.push(r);
    }
    let before = dep.cpu_seconds()?;
    let start = Instant::now();
    for r in &mut ready {
        let Some(stdin) = r.child.stdin.as_mut() else {
            bail!("worker without stdin");
        };
        writeln!(stdin, "go")?;
        stdin.flush()?;
    }
    let mut reports = Vec::new();
    for r in &mut ready {
        let mut line = String::new();
        r.out.read_line(&mut line)?;
        reports.push(line);
    }
    let wall = start.elapsed().as_secs_f64();
    let after = dep.cpu_seconds()?;
    let mut sample = Sample {
        wall,
        events: 0,
        redis: after.iter().zip(&before).map(|(a, b)| a - b).collect(),
        client: 0.0,
    };
    for (r, line) in ready.into_iter().zip(reports) {
        let Ok(report) = serde_json::from_str::<WorkerReport>(line.trim()) else {
            return Err(fail(r.child, &format!("answered {line:?}")));
        };
        let status = r.child.wait_with_output()?;
        if !status.status.success() {
            bail!("worker failed: {}", String::from_utf8_lossy(&status.stderr));
        }
        sample.events += report.events;
        sample.client += report.cpu;
    }
    if sample.events != events {
        bail!(
            "{}: recorded {} events of {events}",
            dep.setup.name(),
            sample.events
        );
    }
    check(dep, workload.now, events)?;
    dep.flush_all()?;
    Ok(sample)
}

/// `add/event` over the last 30 days, read through a fresh connection, must equal `events`.
pub fn check(dep: &Deployment, now: i64, events: u64) -> anyhow::Result<()> {
    let storage = RedisStorage::connect(dep.config())?;
    let traqq = Traqq::new(standard_config(), storage, PREFIX)?.with_clock(ManualClock::new(now));
    let result = traqq.query_days(30)?;
    let counted: i64 = result
        .find_str("add/event")
        .iter()
        .map(|r| match &r.result {
            MetricData::Hash(h) => h.values().sum::<i64>(),
            _ => 0,
        })
        .sum();
    if counted != events as i64 {
        bail!(
            "{}: add/event counts {counted} events, {events} were recorded",
            dep.setup.name()
        );
    }
    Ok(())
}

/// The hash tag of a physical key (`{...}`), or the whole key when it has none.
fn tag(physical: &str) -> &str {
    physical
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or(physical, |(t, _)| t)
}

/// Where the updates of the first ten batches go: per master the metric tags, updates and keys,
/// and the script calls (distinct slots) per batch.
pub fn spread(dep: &Deployment, chunks: &[Chunk], now: i64) -> anyhow::Result<Vec<String>> {
    let traqq = Traqq::new(standard_config(), MemoryStorage::new(), PREFIX)?;
    let masters = dep.servers.len();
    let mut updates = vec![0usize; masters];
    let mut tags: Vec<BTreeSet<String>> = vec![BTreeSet::new(); masters];
    let mut key_sets = vec![0usize; masters];
    let (mut calls, mut batches, mut keys) = (0usize, 0usize, 0usize);
    for chunk in chunks.iter().take(10) {
        let mut builder = traqq.generator().batch();
        for line in chunk.lines() {
            builder.add(&IncomingEvent::parse_str(line)?, now)?;
        }
        let batch = builder.finish();
        let mut slots = BTreeSet::new();
        for (key, entry) in batch.iter() {
            let physical = KeyLayout::ClusterTagged.physical(key);
            let s = slot(physical.as_bytes());
            slots.insert(s);
            let owner = dep.owner(s).context("slot without owner")?;
            if let Some(u) = updates.get_mut(owner) {
                *u += entry.ops.len();
            }
            let t = tag(&physical);
            if t.len() < physical.len() {
                if let Some(set) = tags.get_mut(owner) {
                    set.insert(t.strip_prefix(&format!("{PREFIX}:")).unwrap_or(t).to_owned());
                }
            } else if let Some(k) = key_sets.get_mut(owner) {
                *k += 1;
            }
            keys += 1;
        }
        calls += slots.len();
        batches += 1;
    }
    let total: usize = updates.iter().sum::<usize>().max(1);
    let b = batches.max(1) as f64;
    let mut out = vec![format!(
        "{}: per {BATCH}-event batch {:.1} keys, {:.0} coalesced updates, {:.1} script calls (distinct slots; the single node makes 1)",
        dep.setup.name(),
        keys as f64 / b,
        total as f64 / b,
        calls as f64 / b
    )];
    for (i, s) in dep.servers.iter().enumerate() {
        out.push(format!(
            "  master {} (port {}, slots {}): {} metrics, {:.1}% of the updates, {:.1} untagged key-set keys per batch: {}",
            i + 1,
            s.port,
            dep.ranges_text(i),
            tags.get(i).map_or(0, BTreeSet::len),
            updates.get(i).copied().unwrap_or(0) as f64 * 100.0 / total as f64,
            key_sets.get(i).copied().unwrap_or(0) as f64 / b,
            tags.get(i)
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn load_text() -> String {
    load_average().map_or_else(|| "unknown".into(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"))
}

/// `traqq-bench cluster`: see the module docs.
pub fn bench(workload: &Workload, events: u64, runs: usize) -> anyhow::Result<()> {
    let runs = runs.max(1);
    let now = workload.now;
    println!(
        "traqq-bench cluster: {events} events (seed {}, now {now}), batches of {BATCH}, standard mapping, {runs} alternating runs per setup and process count, {} CPUs",
        workload.seed,
        cpus()
    );
    println!("load average at the start: {}", load_text());
    let all_chunks = chunks(workload, events, 0, 1);

    let mut setups = vec![Setup::Single];
    setups.extend(MASTERS.iter().map(|&n| Setup::Cluster(n)));
    let mut deps = Vec::new();
    for setup in &setups {
        eprintln!("  starting {} ...", setup.name());
        let dep = Deployment::start(*setup)?;
        dep.flush_all()?;
        deps.push(dep);
    }
    println!();
    for dep in deps.iter().skip(1) {
        for line in spread(dep, &all_chunks, now)? {
            println!("{line}");
        }
    }
    drop(all_chunks);

    // One untimed warm-up per setup (also the first correctness check).
    for dep in &deps {
        eprintln!("  warm-up: {} ...", dep.setup.name());
        run(dep, workload, events, 1)?;
    }

    let procs_list = [1usize, 2];
    let mut samples: BTreeMap<(usize, usize), Vec<Sample>> = BTreeMap::new();
    for r in 0..runs {
        for k in 0..deps.len() {
            let d = (k + r) % deps.len();
            let Some(dep) = deps.get(d) else { continue };
            let order: Vec<usize> = if (r + k) % 2 == 0 {
                procs_list.to_vec()
            } else {
                procs_list.iter().rev().copied().collect()
            };
            for procs in order {
                let s = run(dep, workload, events, procs)?;
                eprintln!(
                    "  run {}: {}, {procs} traqq: {:.2} s, {} events/s, Redis {:.2} s [{}], traqq {:.2} s",
                    r + 1,
                    dep.setup.name(),
                    s.wall,
                    thousands(s.events_per_sec()),
                    s.redis.iter().sum::<f64>(),
                    s.redis
                        .iter()
                        .map(|x| format!("{x:.2}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    s.client
                );
                samples.entry((d, procs)).or_default().push(s);
            }
        }
    }

    let col = |d: usize, p: usize, f: fn(&Sample) -> f64| -> Vec<f64> {
        samples
            .get(&(d, p))
            .map(|v| v.iter().map(f).collect())
            .unwrap_or_default()
    };
    println!();
    println!("| Redis | traqq processes | events/s (wall), median | min–max | × single node | Redis CPU µs/event (all masters), min / median | × single node | traqq CPU µs/event, median | Redis CPU share per master, median | CPU bound on {} cores, events/s (median) |", cpus());
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in procs_list {
        let base_speed = median(&col(0, p, Sample::events_per_sec));
        let base_cpu = median(&col(0, p, Sample::redis_us_per_event));
        for (d, dep) in deps.iter().enumerate() {
            let speed = col(d, p, Sample::events_per_sec);
            let cpu = col(d, p, Sample::redis_us_per_event);
            let masters = dep.servers.len();
            let shares: Vec<String> = (0..masters)
                .map(|m| {
                    let per: Vec<f64> = samples
                        .get(&(d, p))
                        .map(|v| {
                            v.iter()
                                .map(|s| {
                                    s.redis.get(m).copied().unwrap_or(0.0) * 100.0
                                        / s.redis.iter().sum::<f64>().max(1e-9)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("{:.0}%", median(&per))
                })
                .collect();
            let bound: Vec<f64> = samples
                .get(&(d, p))
                .map(|v| v.iter().map(|s| s.cpu_bound(cpus(), p)).collect())
                .unwrap_or_default();
            println!(
                "| {} | {p} | {} | {}–{} | {:.2}× | {:.2} / {:.2} | {:.2}× | {:.2} | {} | {} |",
                dep.setup.name(),
                thousands(median(&speed)),
                thousands(min(&speed)),
                thousands(max(&speed)),
                median(&speed) / base_speed.max(1e-9),
                min(&cpu),
                median(&cpu),
                median(&cpu) / base_cpu.max(1e-9),
                median(&col(d, p, Sample::client_us_per_event)),
                shares.join(" / "),
                thousands(median(&bound))
            );
        }
    }
    println!();
    println!("load average at the end: {}", load_text());
    println!();
    let three = deps
        .iter()
        .position(|d| d.setup == Setup::Cluster(3))
        .unwrap_or(0);
    for p in procs_list {
        let cpu_ratio = median(&col(three, p, Sample::redis_us_per_event))
            / median(&col(0, p, Sample::redis_us_per_event)).max(1e-9);
        let min_ratio = min(&col(three, p, Sample::redis_us_per_event))
            / min(&col(0, p, Sample::redis_us_per_event)).max(1e-9);
        let line = format!(
            "(a) Redis CPU per event, 3 masters / single node, {p} traqq process{}: {cpu_ratio:.3}× (medians; mins {min_ratio:.3}×)",
            if p == 1 { "" } else { "es" }
        );
        if p == 1 {
            println!(
                "{line}  [target <= {CPU_TARGET}×: {}]",
                verdict(cpu_ratio <= CPU_TARGET)
            );
        } else {
            println!("{line}");
        }
    }
    for p in procs_list {
        let ratio = median(&col(three, p, Sample::events_per_sec))
            / median(&col(0, p, Sample::events_per_sec)).max(1e-9);
        let best =
            max(&col(three, p, Sample::events_per_sec)) / max(&col(0, p, Sample::events_per_sec)).max(1e-9);
        let bound = |d: usize| {
            median(
                &samples
                    .get(&(d, p))
                    .map(|v| v.iter().map(|s| s.cpu_bound(cpus(), p)).collect::<Vec<f64>>())
                    .unwrap_or_default(),
            )
        };
        let line = format!(
            "(b) events/s, 3 masters / single node, {p} traqq process{}: {ratio:.2}× (medians; best runs {best:.2}×; CPU bounds {:.2}×)",
            if p == 1 { "" } else { "es" },
            bound(three) / bound(0).max(1e-9)
        );
        if p == 1 {
            println!(
                "{line}  [target >= {SPEED_TARGET}×: {}]",
                verdict(ratio >= SPEED_TARGET)
            );
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ranges_match_redis_cli() {
        assert_eq!(slot_range(0, 1), (0, 16_383));
        assert_eq!(slot_range(0, 2), (0, 8_191));
        assert_eq!(slot_range(1, 2), (8_192, 16_383));
        assert_eq!(slot_range(0, 3), (0, 5_460));
        assert_eq!(slot_range(1, 3), (5_461, 10_922));
        assert_eq!(slot_range(2, 3), (10_923, 16_383));
    }

    #[test]
    fn stat_cpu_and_helpers() {
        let stat = "1234 (redis-server *:1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4";
        assert_eq!(crate::procfs::parse_stat_cpu(stat), Some(3.0));
        assert_eq!(thousands(1_234_567.8), "1,234,568");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(tag("{bench:add:event}:d:1"), "bench:add:event");
        assert_eq!(tag("bench:k:d:1"), "bench:k:d:1");
        let w = Workload::standard(1, crate::workload::BENCH_NOW);
        let all = chunks(&w, 2_500, 0, 1);
        assert_eq!(
            all.iter().map(Chunk::len).collect::<Vec<_>>(),
            [1_000, 1_000, 500]
        );
        let odd = chunks(&w, 2_500, 1, 2);
        assert_eq!(odd.len(), 1);
        assert_eq!(odd.first().map(Chunk::text), all.get(1).map(Chunk::text));
    }
}
