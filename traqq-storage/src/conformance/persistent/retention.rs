//! Automatic retention on real files, across reopens.

use super::*;

/// Midnight UTC, Monday 2023-11-20.
const DAY0: i64 = 1_700_438_400;
const DAY: i64 = 86_400;

fn prune_engine(store: Box<dyn Storage>, clock: &Arc<ManualClock>) -> Traqq {
    let config = TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            top: vec!["ip".into()],
            ..MappingConfig::default()
        },
        retention: RetentionConfig {
            daily_days: 2,
            hourly_days: 1,
        },
        ..TraqqConfig::default()
    };
    Traqq::new(config, store, "app")
        .unwrap()
        .with_clock(Arc::clone(clock))
}

fn record(traqq: &Traqq, ts: &[i64]) {
    let lines: Vec<String> = ts
        .iter()
        .map(|ts| {
            format!(
                r#"{{"event":"e","ip":"10.0.{}.{}","ts":{ts}}}"#,
                ts / 3_600 % 256,
                ts % 256
            )
        })
        .collect();
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(out.recorded, ts.len(), "{:?}", out.rejected);
}

/// `add/event` total and unique ips per bucket start, buckets without data left out.
fn per_bucket(r: &QueryResult) -> BTreeMap<i64, (i64, u64)> {
    r.days
        .iter()
        .filter_map(|d| {
            let mut total = 0;
            let mut uniques = 0;
            for m in &d.results {
                match (&m.result, m.pattern().as_str()) {
                    (MetricData::Hash(h), "event") => total += h.get("e").copied().unwrap_or(0),
                    (MetricData::Count(n), "ip") => uniques += n,
                    _ => {}
                }
            }
            (total > 0 || uniques > 0).then_some((d.timestamp, (total, uniques)))
        })
        .collect()
}

/// The truth for events `ts` in buckets of `size` seconds starting at or after `from`: the
/// events and distinct ips per bucket (each test event has its own ip).
fn truth(ts: &[i64], size: i64, from: i64) -> BTreeMap<i64, (i64, u64)> {
    let mut m = BTreeMap::new();
    for t in ts.iter().filter(|&&t| t - t.rem_euclid(size) >= from) {
        let e = m.entry(t - t.rem_euclid(size)).or_insert((0, 0));
        e.0 += 1;
        e.1 += 1;
    }
    m
}

fn days(traqq: &Traqq) -> BTreeMap<i64, (i64, u64)> {
    per_bucket(&traqq.query(DAY0 - 5 * DAY, DAY0 + 5 * DAY).unwrap())
}

fn hours(traqq: &Traqq) -> BTreeMap<i64, (i64, u64)> {
    per_bucket(&traqq.query_hourly(DAY0 - 4 * DAY, DAY0 + 5 * DAY).unwrap())
}

/// Automatic retention (2 days, hourly 1): the engine prunes on its first write after opening
/// and on the first write of each new day by its clock, nobody calls `prune`; queries and
/// empty batches do not prune; the deletions survive a reopen.
pub fn expired_buckets_disappear_on_open_and_when_the_day_changes(open: &Open) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Three events on each of the five days DAY0 - 3d ..= DAY0 + 1d, at distinct hours.
    let ts: Vec<i64> = (-3..=1)
        .flat_map(|d| (0..3).map(move |h| DAY0 + d * DAY + h * 3_600 + 7))
        .collect();
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * 3_600));
    {
        let traqq = prune_engine(open(&path, Durability::Batch).unwrap(), &clock);
        record(&traqq, &ts);
        // Backfilled days older than the retention stay until the next prune.
        assert_eq!(days(&traqq), truth(&ts, DAY, 0));
        assert_eq!(hours(&traqq), truth(&ts, 3_600, 0));

        // The next day, by the engine's clock: the first write prunes, nobody calls `prune`.
        clock.set(DAY0 + DAY + 60);
        assert_eq!(days(&traqq), truth(&ts, DAY, 0), "queries do not prune");
        record(&traqq, &[]);
        assert_eq!(days(&traqq), truth(&ts, DAY, 0), "an empty batch writes nothing");
        record(&traqq, &[DAY0 + DAY + 60]);
        let mut all = ts.clone();
        all.push(DAY0 + DAY + 60);
        // daily_days = 2 keeps today and yesterday; hourly_days = 1 keeps today's hours.
        assert_eq!(days(&traqq), truth(&all, DAY, DAY0));
        assert_eq!(hours(&traqq), truth(&all, 3_600, DAY0 + DAY));
        let report = traqq.last_auto_prune().unwrap();
        assert_eq!(
            report.outcome.map(|r| r.buckets),
            Ok(3 + 12),
            "3 days, the hours of 4 days"
        );
    }

    // Reopened two days later: the first write after opening prunes.
    clock.set(DAY0 + 3 * DAY + 60);
    {
        let traqq = prune_engine(open(&path, Durability::Batch).unwrap(), &clock);
        record(&traqq, &[DAY0 + 3 * DAY + 60]);
        assert_eq!(
            days(&traqq),
            BTreeMap::from([(DAY0 + 3 * DAY, (1, 1))]),
            "only today is left"
        );
        assert_eq!(hours(&traqq), BTreeMap::from([(DAY0 + 3 * DAY, (1, 1))]));
    }

    // The deletions are durable: a reader that never prunes sees the same.
    let traqq = prune_engine(open(&path, Durability::Batch).unwrap(), &clock).without_auto_prune();
    assert_eq!(days(&traqq), BTreeMap::from([(DAY0 + 3 * DAY, (1, 1))]));
    assert_eq!(traqq.last_auto_prune(), None);
}
