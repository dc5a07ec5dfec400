//! `traqq-bench import`: what users run to backfill, timed as whole processes side by side.
//! The same NDJSON file goes through `traqq import` (memory with one worker and with one per
//! core, RocksDB and sled with one per core) and through traqq 0.2 reading it line by line
//! (`traqq-bench v02-import FILE`, its only API: parse, then record one event at a time), in
//! alternating runs. Wall time and the child's CPU time (user + system, from this process's
//! `cutime`/`cstime`) per run; the report takes medians.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::mapping::{standard_config_v02, standard_mapping_toml};
use crate::procfs::{cpus, load_average};
use crate::verdict;
use crate::workload::Workload;

/// One way of importing the file.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Name in the report.
    pub name: String,
    /// The command (its output is discarded; a failure stops the bench).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// A directory emptied before each run (an on-disk store).
    pub data: Option<PathBuf>,
}

/// Medians of one contender's runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Wall seconds.
    pub wall: f64,
    /// CPU seconds of the process, all its threads.
    pub cpu: f64,
}

/// Runs every contender `runs` times, in turn, and returns the medians in the same order.
pub fn race(contenders: &[Contender], runs: usize) -> anyhow::Result<Vec<Timing>> {
    let mut samples: Vec<Vec<Timing>> = vec![Vec::new(); contenders.len()];
    for run in 0..runs.max(1) {
        for (i, c) in contenders.iter().enumerate() {
            eprintln!("  run {}: {} ...", run + 1, c.name);
            samples[i].push(time_one(c)?);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| Timing {
            wall: median(&mut s, |t| t.wall),
            cpu: median(&mut s, |t| t.cpu),
        })
        .collect())
}

fn median(samples: &mut [Timing], by: fn(&Timing) -> f64) -> f64 {
    samples.sort_by(|a, b| by(a).total_cmp(&by(b)));
    samples.get(samples.len() / 2).map_or(0.0, by)
}

fn time_one(c: &Contender) -> anyhow::Result<Timing> {
    if let Some(dir) = &c.data {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
        }
    }
    let before = children_cpu()?;
    let started = Instant::now();
    let out = Command::new(&c.program)
        .args(&c.args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {}", c.program.display()))?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        c.name,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Timing {
        wall,
        cpu: children_cpu()? - before,
    })
}

/// CPU seconds (user + system) of this process's waited-for children so far.
fn children_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // cutime and cstime are fields 16 and 17 (index 13 and 14 after the name), in clock ticks
    // of 1/100 s on Linux.
    Ok((ticks(13) + ticks(14)) / 100.0)
}

/// traqq 0.2 importing `file` as its users do: each line parsed into a `serde_json::Value`,
/// then `IncomingEvent::from_json` and `Traqq::record`. Returns the events recorded.
pub fn v02_import(file: &Path) -> anyhow::Result<u64> {
    let traqq = traqq02::Traqq::new(
        standard_config_v02(),
        Box::new(traqq02::storage::memory::MemoryStorage::new()),
        "bench",
    )
    .map_err(|e| anyhow::anyhow!("traqq 0.2: {e}"))?;
    let input =
        std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("{}", file.display()))?);
    let mut recorded = 0;
    for line in input.lines() {
        let line = line.context("reading input")?;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Ok(event) = traqq02::IncomingEvent::from_json(value) {
            if traqq.record(event).is_ok() {
                recorded += 1;
            }
        }
    }
    Ok(recorded)
}

/// `traqq-bench import`: see the module docs. Generates `events` events of `workload` into a
/// temp file, races the contenders `runs` times and prints the table and the verdicts.
pub fn bench(
    workload: &Workload,
    events: u64,
    runs: usize,
    traqq: Option<std::path::PathBuf>,
    skip_v02: bool,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let traqq = match traqq {
        Some(path) => path,
        None => exe.with_file_name("traqq"),
    };
    if !traqq.exists() {
        anyhow::bail!(
            "no traqq binary at {} (build it: cargo build --release -p traqq-cli, or give --traqq)",
            traqq.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.ndjson");
    workload.write_ndjson(
        events,
        &mut std::io::BufWriter::new(std::fs::File::create(&file)?),
    )?;
    let load = load_average().map_or(String::new(), |[a, b, c]| {
        format!(", load average {a:.2} {b:.2} {c:.2}")
    });
    eprintln!(
        "traqq-bench import: {} events (seed {}, now {}), {} runs each, {} CPUs{load}",
        events,
        workload.seed,
        workload.now,
        runs,
        cpus()
    );
    // Both sides record the standard mapping (traqq 0.2's is `standard_config_v02`).
    let config = dir.path().join("traqq.toml");
    std::fs::write(&config, standard_mapping_toml())?;
    let config_arg = config.display().to_string();
    let file_arg = file.display().to_string();
    let cores = cpus().to_string();
    let traqq_import = |name: &str, storage: &str, workers: &str| {
        let data = (storage != "memory").then(|| dir.path().join(storage));
        let mut args = vec![
            "--config".to_owned(),
            config_arg.clone(),
            "import".to_owned(),
            file_arg.clone(),
            "--storage".into(),
            storage.into(),
        ];
        if let Some(d) = &data {
            args.extend(["--data".into(), d.display().to_string()]);
        }
        args.extend(["--workers".into(), workers.into()]);
        Contender {
            name: name.into(),
            program: traqq.clone(),
            args,
            data,
        }
    };
    let mut contenders = vec![
        traqq_import("traqq import, memory, 1 worker", "memory", "1"),
        traqq_import("traqq import, memory, 1 worker per core", "memory", &cores),
        traqq_import("traqq import, rocksdb, 1 worker per core", "rocksdb", &cores),
        traqq_import("traqq import, sled, 1 worker per core", "sled", &cores),
    ];
    if !skip_v02 {
        contenders.push(Contender {
            name: "traqq 0.2, memory (parse + record per line)".into(),
            program: exe.clone(),
            args: vec!["v02-import".into(), file_arg.clone()],
            data: None,
        });
    }
    let times = race(&contenders, runs)?;
    let events = events as f64;
    println!();
    println!("| import | wall s | CPU s | events/s (wall) |");
    println!("|---|---:|---:|---:|");
    for (c, t) in contenders.iter().zip(&times) {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} |",
            c.name,
            t.wall,
            t.cpu,
            events / t.wall.max(1e-9)
        );
    }
    println!();
    let (one, all) = (times[0], times[1]);
    let scaling = one.wall / all.wall.max(1e-9);
    println!(
        "memory: 1 worker -> {cores} workers = {scaling:.2}x faster  [target >= 1.7x: {}]",
        verdict(scaling >= 1.7)
    );
    if let Some(v02) = times.get(4) {
        let ratio = v02.wall / all.wall.max(1e-9);
        println!(
            "memory, {cores} workers / traqq 0.2 = {ratio:.1}x  [target >= 25x: {}]",
            verdict(ratio >= 25.0)
        );
    }
    // The figures for `traqq import` before blocks and workers, same machine.
    for (i, name, before) in [(2, "rocksdb", 275_000.0), (3, "sled", 164_000.0)] {
        let rate = events / times[i].wall.max(1e-9);
        println!(
            "{name}: {rate:.0} events/s = {:.1}x the {before:.0} measured before  [target >= 1.6x: {}]",
            rate / before,
            verdict(rate / before >= 1.6)
        );
    }
    Ok(())
}
