//! What the OS says about this process: resident memory (`/proc`), this thread's and the whole
//! process's CPU time, the machine's load, and the size of a store on disk. On a shared
//! machine, CPU time is the steadier figure: wall time also counts the time other processes
//! held the core.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// Resident set size now and at its peak, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resident {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size of the process so far.
    pub hwm_kib: u64,
}

impl Resident {
    /// Reads `/proc/self/status`; `None` where it does not exist (not Linux) or lacks the fields.
    pub fn now() -> Option<Resident> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&status)
    }

    /// Parses the `VmRSS` and `VmHWM` lines of a `/proc/<pid>/status` text.
    pub fn parse(status: &str) -> Option<Resident> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        Some(Resident {
            rss_kib: field("VmRSS:")?,
            hwm_kib: field("VmHWM:")?,
        })
    }
}

/// CPU time this thread has run so far (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, which,
/// unlike `/proc/thread-self/schedstat`, is exact between scheduler ticks); `None` where
/// the clock is unsupported.
pub fn thread_cpu() -> Option<Duration> {
    cpu_time::ThreadTime::try_now().ok().map(|t| t.as_duration())
}

/// CPU time (user + system) the whole process has used so far, all its threads
/// (`clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`), so an embedded store's background flushes and
/// compactions count; `None` where the clock is unsupported.
pub fn process_cpu() -> Option<Duration> {
    cpu_time::ProcessTime::try_now().ok().map(|t| t.as_duration())
}

/// Total size of the files under `path`, subdirectories included (0 for what cannot be read).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system, all threads) process `pid` has used, from `/proc/<pid>/stat`.
pub fn pid_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&stat).with_context(|| format!("no utime/stime in {path}"))
}

/// `utime + stime` of a `/proc/<pid>/stat` text, seconds.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 (state) has index 0, so utime (14) and stime (15) have 11 and 12.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        let text = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(
            Resident::parse(text),
            Some(Resident {
                rss_kib: 2048,
                hwm_kib: 12345
            })
        );
        assert_eq!(Resident::parse("Name:\tx\n"), None);
        if cfg!(target_os = "linux") {
            // The clock moves with work done on this thread.
            let a = thread_cpu().unwrap();
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_add(i * i));
            }
            assert!(thread_cpu().unwrap() > a, "{x}");
            // The process clock counts this thread too (read after it).
            let mine = thread_cpu().unwrap();
            assert!(process_cpu().unwrap() >= mine);
            assert!(load_average().is_some());
            let r = Resident::now().unwrap();
            assert!(r.rss_kib > 0 && r.hwm_kib >= r.rss_kib);
        }
    }

    #[test]
    fn disk_usage_sums_files_in_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).unwrap();
        assert_eq!(disk_usage(dir.path()), 123);
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
    }
}
