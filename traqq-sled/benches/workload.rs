//! The standard workload of DESIGN §8, small and deterministic (SplitMix64 from a seed), shared
//! by `benches/record.rs` and `examples/sled_fill.rs` of this crate.
#![allow(dead_code)]

use std::fmt::Write as _;

use traqq_storage::prelude::*;

/// The fixed "now" of every run: 2025-11-28T00:00:00Z. Events spread over the 7 days before.
pub(crate) const NOW: i64 = 1_764_288_000;

const EVENTS: [&str; 5] = [
    "offer_impression",
    "offer_impression",
    "offer_impression",
    "offer_click",
    "offer_conversion",
];
const CHANNELS: [&str; 5] = ["search", "social", "email", "display", "affiliate"];
const GEOS: [&str; 30] = [
    "US", "GB", "DE", "FR", "CA", "AU", "JP", "BR", "IN", "MX", "ES", "IT", "NL", "SE", "NO", "DK", "FI",
    "PL", "CH", "AT", "BE", "IE", "PT", "CZ", "KR", "SG", "NZ", "ZA", "AR", "CL",
];

/// The standard mapping.
pub(crate) fn config() -> TraqqConfig {
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

/// Deterministic event lines.
#[derive(Debug)]
pub(crate) struct Workload {
    state: u64,
}

impl Workload {
    /// A stream from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Workload { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self, out: &mut String, len: usize) {
        const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for _ in 0..len {
            out.push(char::from(ALNUM[self.below(ALNUM.len() as u64) as usize]));
        }
    }

    /// The next `n` events as JSON lines.
    pub(crate) fn lines(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.line()).collect()
    }

    /// The next event as a JSON line.
    pub(crate) fn line(&mut self) -> String {
        let mut s = String::with_capacity(400);
        let ip = self.below(50_000) as u32;
        let _ = write!(
            s,
            r#"{{"event":"{}","ip":"10.{}.{}.{}","offer":"offer{}","creative":"cr{}","channel":"{}","geo":"{}","host":"host{}.example.com","ts":{}"#,
            EVENTS[self.below(5) as usize],
            ip >> 16,
            (ip >> 8) & 255,
            ip & 255,
            self.below(20),
            self.below(10),
            CHANNELS[self.below(5) as usize],
            GEOS[self.below(30) as usize],
            self.below(100),
            NOW - 1 - self.below(7 * 86_400) as i64,
        );
        if self.below(100) < 30 {
            let cents = 1 + self.below(50_000);
            let _ = write!(s, r#","amount":{}.{:02}"#, cents / 100, cents % 100);
        }
        s.push_str(r#","ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/"#);
        self.text(&mut s, 20);
        s.push_str(r#"","url":"https://shop.example.com/p/"#);
        self.text(&mut s, 14);
        s.push_str(r#"","session":""#);
        self.text(&mut s, 32);
        s.push_str(r#"","ref":"https://ref.example.org/"#);
        self.text(&mut s, 6);
        s.push_str("\"}");
        s
    }
}

/// Total size of the files under `path`.
pub(crate) fn disk_usage(path: &std::path::Path) -> u64 {
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

/// CPU seconds (user + system) this process has used so far, all threads (Linux
/// `/proc/self/stat`; 0 elsewhere). Steadier than wall time on a loaded machine.
pub(crate) fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The 1-minute load average (Linux `/proc/loadavg`), to print next to wall-clock figures.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// A criterion measurement of the CPU time of the whole process (all threads, so the store's
/// background flushes and compactions count) instead of wall time: on a shared 2-core machine
/// wall time mostly measures the neighbours. Falls back to wall time where the clock is missing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessCpu;

static WALL: criterion::measurement::WallTime = criterion::measurement::WallTime;

fn process_cpu() -> Option<std::time::Duration> {
    cpu_time::ProcessTime::try_now().ok().map(|t| t.as_duration())
}

impl criterion::measurement::Measurement for ProcessCpu {
    type Intermediate = (std::time::Instant, Option<std::time::Duration>);
    type Value = std::time::Duration;

    fn start(&self) -> Self::Intermediate {
        (std::time::Instant::now(), process_cpu())
    }

    fn end(&self, (wall, cpu): Self::Intermediate) -> std::time::Duration {
        match (cpu, process_cpu()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall.elapsed(),
        }
    }

    fn add(&self, a: &std::time::Duration, b: &std::time::Duration) -> std::time::Duration {
        *a + *b
    }

    fn zero(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn to_f64(&self, value: &std::time::Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        // Nanoseconds, like wall time: the same formatting.
        criterion::measurement::Measurement::formatter(&WALL)
    }
}
