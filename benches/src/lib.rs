//! # traqq-bench
//!
//! The standard workload of DESIGN §8 (deterministic NDJSON events from a seed), its mapping
//! for this project and for traqq 0.2, and the measured phases behind `traqq-bench compare`.
//! The criterion benches in `benches/` use the same generator, so every figure in the README
//! can be reproduced from a seed.
//!
//! ```
//! use traqq_bench::mapping::standard_config;
//! use traqq_bench::workload::Workload;
//! use traqq_storage::prelude::*;
//!
//! let now = 1_764_288_000;
//! let lines = Workload::standard(1, now).lines(1_000);
//! let traqq = Traqq::new(standard_config(), MemoryStorage::new(), "bench")?.with_clock(ManualClock::new(now));
//! let outcome = traqq.record_json_lines(lines.iter().map(String::as_str))?;
//! assert_eq!(outcome.recorded, 1_000);
//!
//! let result = traqq.query_days(30)?;
//! let events = result.find_str("add/event");
//! let MetricData::Hash(counts) = &events[0].result else { unreachable!() };
//! assert_eq!(counts.values().sum::<i64>(), 1_000);
//! # Ok::<(), traqq_storage::Error>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod cluster;
pub mod cpu;
pub mod distribution;
pub mod import;
pub mod mapping;
pub mod phase;
pub mod procfs;
pub mod redis_server;
pub mod stats;
pub mod workload;
pub mod zones;

/// `MET` or `MISSED`, as the bench commands print a target's verdict.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}
