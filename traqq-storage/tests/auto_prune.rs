//! Automatic retention over the memory backend: the engine prunes on its first write and on the
//! first write of each new day by its clock, without anyone calling `prune`. The same scenario
//! runs on real files, with reopens, in `traqq_storage::conformance::persistent`
//! (`expired_buckets_disappear_on_open_and_when_the_day_changes`, run by traqq-rocks and traqq-sled).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use traqq_storage::conformance::Faulty;
use traqq_storage::prelude::*;

/// Midnight UTC, Monday 2023-11-20.
const DAY0: i64 = 1_700_438_400;
const DAY: i64 = 86_400;

fn config(daily_days: u32, hourly_days: u32) -> TraqqConfig {
    TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            ..MappingConfig::default()
        },
        retention: RetentionConfig {
            daily_days,
            hourly_days,
        },
        ..TraqqConfig::default()
    }
}

/// Event timestamps on the four days `DAY0 - 3d ..= DAY0`: `k + 2` events on day `k`, at
/// distinct hours, so days and hours carry different totals.
fn timestamps() -> Vec<i64> {
    (0..4)
        .flat_map(|k| (0..k + 2).map(move |i| DAY0 - (3 - k) * DAY + i * 3_600 + 60))
        .collect()
}

fn lines(ts: &[i64]) -> Vec<String> {
    ts.iter()
        .enumerate()
        .map(|(i, ts)| format!(r#"{{"event":"e","ip":"10.0.0.{}","ts":{ts}}}"#, i % 250))
        .collect()
}

fn record(traqq: &Traqq, ts: &[i64]) {
    let lines = lines(ts);
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(out.recorded, ts.len(), "{:?}", out.rejected);
}

/// `add/event` total per bucket start, buckets without data left out.
fn per_bucket(r: &QueryResult) -> BTreeMap<i64, i64> {
    r.days
        .iter()
        .filter_map(|d| {
            let n: i64 = d
                .results
                .iter()
                .filter(|m| m.pattern() == "event" && m.metric_type == MetricType::Add)
                .filter_map(|m| match &m.result {
                    MetricData::Hash(h) => h.get("e").copied(),
                    _ => None,
                })
                .sum();
            (n > 0).then_some((d.timestamp, n))
        })
        .collect()
}

/// The truth: events per day / per hour bucket among `ts` at or after `from`.
fn truth(ts: &[i64], size: i64, from: i64) -> BTreeMap<i64, i64> {
    let mut m = BTreeMap::new();
    for t in ts.iter().filter(|&&t| t >= from) {
        *m.entry(t - t.rem_euclid(size)).or_insert(0) += 1;
    }
    m
}

fn days(traqq: &Traqq) -> BTreeMap<i64, i64> {
    per_bucket(&traqq.query(DAY0 - 5 * DAY, DAY0 + 5 * DAY).unwrap())
}

fn hours(traqq: &Traqq) -> BTreeMap<i64, i64> {
    per_bucket(&traqq.query_hourly(DAY0 - 4 * DAY, DAY0 + 4 * DAY).unwrap())
}

fn buckets(ts: &[i64], size: i64, before: i64) -> usize {
    ts.iter()
        .filter(|&&t| t < before)
        .map(|t| t - t.rem_euclid(size))
        .collect::<BTreeSet<_>>()
        .len()
}

#[test]
fn writes_prune_on_first_use_and_when_the_day_changes() {
    let clock = Arc::new(ManualClock::new(DAY0 + 12 * 3_600));
    // The clock is set after `new`: the first write, not construction, prunes.
    let traqq = Traqq::new(config(2, 1), MemoryStorage::new(), "app")
        .unwrap()
        .with_clock(Arc::clone(&clock));
    assert_eq!(traqq.last_auto_prune(), None);
    let ts = timestamps();
    record(&traqq, &ts);
    let first = traqq.last_auto_prune().expect("the first write prunes");
    assert_eq!(first.at, DAY0 + 12 * 3_600);
    assert_eq!(
        first.outcome,
        Ok(PruneReport::default()),
        "nothing was stored yet"
    );
    // Backfilled days older than the retention stay until the next prune.
    assert_eq!(days(&traqq), truth(&ts, DAY, 0));
    assert_eq!(hours(&traqq), truth(&ts, 3_600, 0));

    // Later the same day: no second prune.
    clock.set(DAY0 + 23 * 3_600);
    record(&traqq, &[DAY0 + 23 * 3_600]);
    assert_eq!(traqq.last_auto_prune().unwrap().at, first.at);

    // The next day: queries do not prune, the first write does.
    let now = DAY0 + DAY + 3_600;
    clock.set(now);
    let mut all = ts.clone();
    all.push(DAY0 + 23 * 3_600);
    assert_eq!(days(&traqq), truth(&all, DAY, 0));
    record(&traqq, &[now]);
    all.push(now);
    let report = traqq.last_auto_prune().unwrap();
    assert_eq!(report.at, now);
    // daily_days = 2 keeps today and yesterday; hourly_days = 1 keeps today's hours.
    let expected = buckets(&all, DAY, DAY0) + buckets(&all, 3_600, DAY0 + DAY);
    assert_eq!(report.outcome.as_ref().map(|r| r.buckets), Ok(expected));
    assert_eq!(days(&traqq), truth(&all, DAY, DAY0));
    assert_eq!(hours(&traqq), truth(&all, 3_600, DAY0 + DAY));
}

#[test]
fn without_retention_or_with_auto_prune_off_nothing_is_deleted() {
    let ts = timestamps();
    for (config, off) in [(config(0, 0), false), (config(1, 1), true)] {
        let clock = Arc::new(ManualClock::new(DAY0));
        let mut traqq = Traqq::new(config, MemoryStorage::new(), "app").unwrap();
        if off {
            traqq = traqq.without_auto_prune();
        }
        let traqq = traqq.with_clock(Arc::clone(&clock));
        record(&traqq, &ts);
        clock.set(DAY0 + 3 * DAY);
        record(&traqq, &[DAY0 + 3 * DAY]);
        let mut all = ts.clone();
        all.push(DAY0 + 3 * DAY);
        assert_eq!(traqq.last_auto_prune(), None);
        assert_eq!(days(&traqq), truth(&all, DAY, 0));
        assert_eq!(hours(&traqq), truth(&all, 3_600, 0));
    }
}

/// The memory store behind the conformance fault switches, its reads slowed so concurrent
/// writers arrive while a prune runs; its set-member reads are prunes (the bucket registry).
fn watched() -> Arc<Faulty> {
    let store = Faulty::new(MemoryStorage::new());
    store.read_delay_ms.store(50, Ordering::SeqCst);
    Arc::new(store)
}

#[test]
fn concurrent_writers_prune_once_per_day() {
    let store = watched();
    let clock = Arc::new(ManualClock::new(DAY0));
    let traqq = Traqq::with_shared_storage(config(1, 1), store.clone(), "app")
        .unwrap()
        .with_clock(Arc::clone(&clock));
    record(&traqq, &[DAY0 + 60]);
    // The engine's first write also reads which extra zones' days are complete (and, listing
    // none, would remove any mark): one more set read, once per engine.
    assert_eq!(
        store.member_reads.load(Ordering::SeqCst),
        1 + 1,
        "the first write prunes"
    );
    assert_eq!(store.deletes.load(Ordering::SeqCst), 0, "nothing expired yet");
    clock.set(DAY0 + DAY);
    let start = std::sync::Barrier::new(8);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (traqq, start) = (&traqq, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..200 {
                    record(traqq, &[DAY0 + DAY + t * 60 + i]);
                }
            });
        }
    });
    // One prune: one read of the registry and one of the expired entries' key lists (a second
    // prune would read the registry again), one delete of the expired keys (their entries
    // leave the registry through `remove_members`).
    assert_eq!(store.member_reads.load(Ordering::SeqCst), 2 + 2);
    assert_eq!(store.deletes.load(Ordering::SeqCst), 1);
    let report = traqq.last_auto_prune().unwrap();
    assert_eq!(
        report.outcome.map(|r| r.buckets),
        Ok(2),
        "yesterday's day and hour bucket"
    );
    assert_eq!(days(&traqq), BTreeMap::from([(DAY0 + DAY, 1_600)]));
}

#[test]
fn a_failed_prune_does_not_fail_the_write_and_is_retried_a_minute_later() {
    let store = watched();
    let clock = Arc::new(ManualClock::new(DAY0));
    let traqq = Traqq::with_shared_storage(config(1, 0), store.clone(), "app")
        .unwrap()
        .with_clock(Arc::clone(&clock));
    record(&traqq, &[DAY0 + 60]);
    store.deletes_down.store(true, Ordering::SeqCst);
    clock.set(DAY0 + DAY);
    record(&traqq, &[DAY0 + DAY]);
    let failed = traqq.last_auto_prune().unwrap();
    assert!(
        failed
            .outcome
            .as_ref()
            .is_err_and(|e| e.contains("injected outage")),
        "{failed:?}"
    );
    store.deletes_down.store(false, Ordering::SeqCst);
    clock.set(DAY0 + DAY + 59);
    record(&traqq, &[DAY0 + DAY + 59]);
    assert_eq!(
        traqq.last_auto_prune().unwrap(),
        failed,
        "not retried within the minute"
    );
    clock.set(DAY0 + DAY + 60);
    record(&traqq, &[DAY0 + DAY + 60]);
    let retried = traqq.last_auto_prune().unwrap();
    assert_eq!(retried.at, DAY0 + DAY + 60);
    assert_eq!(retried.outcome.map(|r| r.buckets), Ok(1));
    assert_eq!(days(&traqq), BTreeMap::from([(DAY0 + DAY, 3)]));
}
