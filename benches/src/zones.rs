//! `traqq-bench zones`: what query-time calendars cost. The standard workload with hourly
//! buckets, then, per store: `query_days(30)` in the store's zone against the same in another
//! zone (assembled from hours), and a 90-day query against the same grouped by month.

use std::time::Instant;

use traqq_storage::prelude::*;
use traqq_storage::traqq_core::bucket::Tz;

use crate::mapping::standard_config;
use crate::procfs::thread_cpu;
use crate::workload::Workload;

/// Medians of the timed queries of one store, milliseconds of CPU time (wall time where the
/// thread's CPU time cannot be read).
#[derive(Debug, Clone, Copy)]
pub struct ZoneTimes {
    /// `query_days(30)`, the store's zone.
    pub own_zone_30: f64,
    /// `query_days(30)` in another zone.
    pub other_zone_30: f64,
    /// The hourly query of the same 30 days (what the other zone's days are assembled from).
    pub hours_30: f64,
    /// `query_days(90)`.
    pub plain_90: f64,
    /// `query_days(90)` grouped by month.
    pub months_90: f64,
}

/// Records `events` events of the standard workload ending at `now` into `store` (hourly
/// buckets on; with `stored_zone`, `zone` in `time.extra_zones` too) and times the queries,
/// `runs` times each.
pub fn measure(
    store: Box<dyn Storage>,
    events: usize,
    now: i64,
    zone: Tz,
    stored_zone: bool,
    runs: usize,
) -> traqq_storage::Result<ZoneTimes> {
    let mut config = standard_config();
    config.time.store_hourly = true;
    if stored_zone {
        config.time.extra_zones = vec![zone.name().to_owned()];
    }
    let traqq = Traqq::new(config, store, "bench")?.with_clock(ManualClock::new(now));
    fill(&traqq, events, now)?;
    traqq.flush()?;
    let time = |f: &dyn Fn() -> traqq_storage::Result<()>| -> traqq_storage::Result<f64> {
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let (wall, cpu) = (Instant::now(), thread_cpu());
            f()?;
            let ms = match (cpu, thread_cpu()) {
                (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1e3,
                _ => wall.elapsed().as_secs_f64() * 1e3,
            };
            samples.push(ms);
        }
        samples.sort_by(f64::total_cmp);
        Ok(samples[samples.len() / 2])
    };
    let opts = QueryOptions::default;
    Ok(ZoneTimes {
        own_zone_30: time(&|| traqq.query_range(QueryRange::Days(30), opts()).map(drop))?,
        other_zone_30: time(&|| traqq.query_in_zone(QueryRange::Days(30), opts(), zone).map(drop))?,
        hours_30: time(&|| {
            let (min, max) = traqq.days_range(30);
            traqq
                .query_with(&QueryOptions {
                    min,
                    max,
                    bucket: BucketKind::Hour,
                    ..opts()
                })
                .map(drop)
        })?,
        plain_90: time(&|| traqq.query_range(QueryRange::Days(90), opts()).map(drop))?,
        months_90: time(&|| {
            traqq
                .query_groups(QueryRange::Days(90), opts(), Group::Month)
                .map(drop)
        })?,
    })
}

/// What storing finer buckets costs: `events` events of the standard workload recorded into
/// RocksDB (compacted afterwards) and into the memory store, with daily buckets only, with hours,
/// with hours and quarter hours, and with hours and the days of `zone` (`time.extra_zones`).
/// Per option: bytes on disk and keys held.
pub fn storage_cost(
    dir: &std::path::Path,
    events: usize,
    now: i64,
    zone: Tz,
) -> traqq_storage::Result<Vec<(&'static str, u64, usize)>> {
    let options = [
        ("days", false, false, false),
        ("days + hours", true, false, false),
        ("days + hours + quarters", true, true, false),
        ("days + hours + the other zone's days", true, false, true),
    ];
    let mut out = Vec::new();
    for (i, (name, hourly, quarters, stored_zone)) in options.into_iter().enumerate() {
        let mut config = standard_config();
        config.time.store_hourly = hourly;
        config.time.store_quarter_hours = quarters;
        if stored_zone {
            config.time.extra_zones = vec![zone.name().to_owned()];
        }
        let path = dir.join(format!("cost{i}"));
        let rocks = std::sync::Arc::new(traqq_rocks::RocksStorage::open(
            &path,
            traqq_rocks::RocksConfig::default(),
        )?);
        let memory = std::sync::Arc::new(MemoryStorage::new());
        for store in [rocks.clone() as std::sync::Arc<dyn Storage>, memory.clone()] {
            let traqq =
                Traqq::with_shared_storage(config.clone(), store, "bench")?.with_clock(ManualClock::new(now));
            fill(&traqq, events, now)?;
        }
        rocks.compact()?;
        out.push((name, crate::phase::dir_bytes(&path), memory.key_count()));
    }
    Ok(out)
}

/// Records `events` events of the standard workload ending at `now`, 10,000 per batch.
fn fill(traqq: &Traqq, events: usize, now: i64) -> traqq_storage::Result<()> {
    let mut generator = Workload::standard(1, now).generator();
    let mut chunk = crate::workload::Chunk::default();
    let mut left = events;
    while left > 0 {
        let n = left.min(10_000);
        generator.refill(&mut chunk, n);
        traqq.record_json_lines(chunk.lines())?;
        left -= n;
    }
    Ok(())
}
