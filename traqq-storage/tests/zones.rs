//! Any time zone at query time (`Traqq::query_in_zone`): the same stored events queried with
//! the store's zone and with others, against ground truth computed from the raw events with
//! chrono-tz: exact counters and sums per local day, unique counts within HyperLogLog error,
//! merged uniques equal to the union (never the sum).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeZone;
use chrono_tz::Tz;
use traqq_storage::prelude::*;
use traqq_storage::traqq_core::bucket::MIN_TIMESTAMP;

const STORE: Tz = chrono_tz::Europe::Berlin;

fn config() -> TraqqConfig {
    TraqqConfig {
        time: TimeConfig {
            timezone: STORE.name().into(),
            store_hourly: true,
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into()],
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    }
}

/// 18 days from 2026-10-19 (UTC), 60 events a day at spread-out instants: Berlin leaves summer
/// time on 10-25, New York on 11-01. Amounts are quarters (exact in binary).
fn events() -> Vec<(i64, String, &'static str, f64)> {
    let first = chrono::Utc
        .with_ymd_and_hms(2026, 10, 19, 0, 0, 0)
        .unwrap()
        .timestamp();
    let mut x: u64 = 11;
    (0..18 * 60)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let ts = first + (i64::from(i) * 86_400) / 60 + ((x >> 33) % 1_200) as i64;
            let ip = format!("10.0.{}.{}", (x >> 16) % 2, (x >> 24) % 120);
            let geo = ["DE", "FR", "US", "JP"][((x >> 40) % 4) as usize];
            (ts, ip, geo, ((x >> 48) % 40) as f64 * 0.25)
        })
        .collect()
}

#[derive(Debug, Default)]
struct Day {
    events: i64,
    ips: BTreeSet<String>,
    geos: BTreeMap<String, f64>,
    amount: f64,
}

/// The events per local date of `zone` whose instant lies in `[min, max]`.
fn truth(events: &[(i64, String, &'static str, f64)], zone: Tz, min: i64, max: i64) -> BTreeMap<String, Day> {
    let mut out: BTreeMap<String, Day> = BTreeMap::new();
    for (ts, ip, geo, amount) in events.iter().filter(|e| (min..=max).contains(&e.0)) {
        let date = zone.timestamp_opt(*ts, 0).unwrap().date_naive().to_string();
        let day = out.entry(date).or_default();
        day.events += 1;
        day.ips.insert(ip.clone());
        *day.geos.entry((*geo).to_owned()).or_default() += 1.0;
        day.amount += amount;
    }
    out
}

/// The first instant of 2026-`from` and the last of 2026-`to` in `zone` (month, day).
fn whole_days(zone: Tz, from: (u32, u32), to: (u32, u32)) -> (i64, i64) {
    let min = zone.with_ymd_and_hms(2026, from.0, from.1, 0, 0, 0).unwrap();
    let max = zone.with_ymd_and_hms(2026, to.0, to.1, 23, 59, 59).unwrap();
    (min.timestamp(), max.timestamp())
}

/// [`config`] with `zones` in `time.extra_zones`.
fn listing(zones: &[Tz]) -> TraqqConfig {
    let mut config = config();
    config.time.extra_zones = zones.iter().map(|z| z.name().to_owned()).collect();
    config
}

/// Why `traqq` refuses a query of `range` in `zone`.
fn refusal(traqq: &Traqq, range: QueryRange, zone: Tz) -> String {
    traqq
        .query_in_zone(range, QueryOptions::default(), zone)
        .unwrap_err()
        .to_string()
}

fn data(results: &[MetricResult], metric: MetricType, part: AdvPart) -> Option<&MetricData> {
    results
        .iter()
        .find(|r| r.metric_type == metric && r.adv_part() == part)
        .map(|r| &r.result)
}

fn engine(now: i64) -> Traqq {
    engine_with(config(), now)
}

fn engine_with(config: TraqqConfig, now: i64) -> Traqq {
    let traqq = Traqq::new(config, MemoryStorage::new(), "z")
        .unwrap()
        .with_clock(ManualClock::new(now));
    let lines: Vec<String> = events()
        .iter()
        .map(|(ts, ip, geo, amount)| {
            format!(r#"{{"event":"e","ip":"{ip}","geo":"{geo}","amount":{amount},"ts":{ts}}}"#)
        })
        .collect();
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(out.recorded, lines.len());
    traqq
}

#[test]
fn days_of_any_whole_hour_zone_match_the_raw_events() {
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let traqq = engine(now);
    let zones = [
        STORE,
        chrono_tz::UTC,
        chrono_tz::Pacific::Kiritimati, // UTC+14
        chrono_tz::Pacific::Pago_Pago,  // UTC-11
        chrono_tz::America::New_York,   // leaves summer time on 2026-11-01, inside the range
        chrono_tz::Asia::Tokyo,
    ];
    for zone in zones {
        let (min, max) = whole_days(zone, (10, 21), (11, 4));
        let result = traqq
            .query_in_zone(QueryRange::MinMax(min, max), QueryOptions::default(), zone)
            .unwrap();
        assert_matches_truth(&result, &truth(&events, zone, min, max), zone);
    }
    // New York's 2026-11-01 has 25 hours, all of them in the day.
    let ny = chrono_tz::America::New_York;
    let day = ny.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap().timestamp();
    let result = traqq
        .query_in_zone(QueryRange::MinMax(day, day), QueryOptions::default(), ny)
        .unwrap();
    let want = truth(&events, ny, day, day + 25 * 3_600 - 1);
    assert_eq!(
        data(&result.days[0].results, MetricType::Add, AdvPart::Sums),
        Some(&MetricData::Hash(
            [("e".to_string(), want["2026-11-01"].events)].into()
        ))
    );
    // Hourly buckets keep their instants and are labelled in the query's zone.
    let hours = traqq
        .query_in_zone(
            QueryRange::MinMax(day, day + 3_599),
            QueryOptions {
                bucket: BucketKind::Hour,
                ..QueryOptions::default()
            },
            chrono_tz::Asia::Tokyo,
        )
        .unwrap();
    assert_eq!(hours.days[0].date, "2026-11-01T13:00:00+09:00");
}

/// Zones at :30 and :45 from the store's: their days come from 15-minute buckets
/// (`time.store_quarter_hours`).
#[test]
fn days_of_half_and_quarter_hour_zones_come_from_quarter_hours() {
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let mut config = config();
    config.time.store_quarter_hours = true;
    let traqq = engine_with(config, now);
    for zone in [
        chrono_tz::Asia::Kolkata,       // +5:30
        chrono_tz::Asia::Kathmandu,     // +5:45
        chrono_tz::America::St_Johns,   // -3:30, leaves summer time on 2026-11-01
        chrono_tz::Australia::Adelaide, // +10:30 (summer time)
    ] {
        let (min, max) = whole_days(zone, (10, 21), (11, 4));
        let result = traqq
            .query_in_zone(QueryRange::MinMax(min, max), QueryOptions::default(), zone)
            .unwrap();
        assert_matches_truth(&result, &truth(&events, zone, min, max), zone);
    }
}

#[test]
fn zones_the_hours_cannot_answer_are_refused_naming_why() {
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let traqq = engine(now);
    let kolkata = chrono_tz::Asia::Kolkata;
    let error = refusal(&traqq, QueryRange::Days(3), kolkata);
    assert!(error.contains("Asia/Kolkata is not whole hours apart"), "{error}");
    assert!(error.contains("time.store_quarter_hours"), "{error}");
    // Without hourly buckets, another zone's days cannot be assembled.
    let mut daily_only = config();
    daily_only.time.store_hourly = false;
    let traqq = Traqq::new(daily_only, MemoryStorage::new(), "z").unwrap();
    let error = refusal(&traqq, QueryRange::Days(1), chrono_tz::Asia::Tokyo);
    assert!(error.contains("time.store_hourly = true"), "{error}");
    // Hours deleted by retention are named.
    let mut kept = config();
    kept.retention.hourly_days = 2;
    let traqq = Traqq::new(kept, MemoryStorage::new(), "z")
        .unwrap()
        .with_clock(ManualClock::new(now));
    let error = refusal(&traqq, QueryRange::Days(5), chrono_tz::Asia::Tokyo);
    assert!(error.contains("retention.hourly_days = 2"), "{error}");
}

/// Zones of `time.extra_zones` have their own stored days: read as they are, with no hourly
/// buckets needed, even at :30 from the store's zone.
#[test]
fn days_of_extra_zones_are_stored_and_match_the_raw_events() {
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let zones = [
        chrono_tz::Asia::Tokyo,
        chrono_tz::America::New_York, // leaves summer time on 2026-11-01, inside the range
        chrono_tz::Asia::Kolkata,     // +5:30: hours could not tile its days
    ];
    let mut config = listing(&zones);
    config.time.store_hourly = false;
    let traqq = engine_with(config, now);
    for zone in zones {
        // A store that held nothing when the zone was listed has all of its days.
        assert_eq!(
            traqq.extra_zone_since(zone).unwrap(),
            Some(MIN_TIMESTAMP),
            "{zone}"
        );
        let (min, max) = whole_days(zone, (10, 21), (11, 4));
        let result = traqq
            .query_in_zone(QueryRange::MinMax(min, max), QueryOptions::default(), zone)
            .unwrap();
        assert_matches_truth(&result, &truth(&events, zone, min, max), zone);
        // Weeks of the zone merge its stored days.
        let weeks = traqq
            .query_groups_in(
                QueryRange::MinMax(min, max),
                QueryOptions::default(),
                Group::Week,
                Some(zone),
            )
            .unwrap();
        let truth = truth(&events, zone, min, max);
        assert_eq!(weeks.iter().map(|w| w.days).sum::<usize>(), truth.len(), "{zone}");
        for week in &weeks {
            let events: i64 = truth
                .range(week.date.clone()..=week.last_date.clone())
                .map(|(_, d)| d.events)
                .sum();
            assert_eq!(
                data(&week.results, MetricType::Add, AdvPart::Sums),
                Some(&MetricData::Hash([("e".to_string(), events)].into())),
                "{zone} {}",
                week.date
            );
        }
    }
    // Zones not listed are still assembled from hours, which this store does not keep.
    let error = refusal(&traqq, QueryRange::Days(3), chrono_tz::Europe::London);
    assert!(error.contains("time.store_hourly = true"), "{error}");
}

/// A store that already held events when a zone was listed has that zone's days only from the
/// zone's next day on (after `event.max_future_secs`); earlier days, or any day once a writer
/// that does not list the zone has written, come from hours (here: refused, no hours kept) and
/// never from incomplete stored days.
#[test]
fn extra_zone_days_count_from_when_every_writer_stores_them() {
    for hourly in [false, true] {
        zone_marks(hourly);
    }
}

/// The scenario above, with and without hours: with them, a range that starts before the
/// mark is answered from hours up to it and from the stored days after it.
fn zone_marks(hourly: bool) {
    let tokyo = chrono_tz::Asia::Tokyo;
    let events = events();
    let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(MemoryStorage::new());
    let mut plain = config();
    plain.time.store_hourly = hourly;
    let mut with_tokyo = listing(&[tokyo]);
    with_tokyo.time.store_hourly = hourly;
    let line = |(ts, ip, geo, amount): &(i64, String, &str, f64)| {
        format!(r#"{{"event":"e","ip":"{ip}","geo":"{geo}","amount":{amount},"ts":{ts}}}"#)
    };
    let record = |config: &TraqqConfig, now: i64, events: &[(i64, String, &'static str, f64)]| {
        let traqq = Traqq::with_shared_storage(config.clone(), storage.clone(), "z")
            .unwrap()
            .with_clock(ManualClock::new(now));
        let lines: Vec<String> = events.iter().map(line).collect();
        let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(out.recorded, lines.len());
        traqq
    };
    // The first 4 days are recorded by a writer that does not list Tokyo ...
    let split = events
        .iter()
        .position(|e| e.0 >= events[0].0 + 4 * 86_400)
        .unwrap();
    record(&plain, events[split].0, &events[..split]);
    // ... the rest by ones that do, a day at a time, as they happen.
    let now = events[split + 59].0;
    let traqq = record(&with_tokyo, now, &events[split..split + 60]);
    for day in events[split + 60..].chunks(60) {
        record(&with_tokyo, day[day.len() - 1].0, day);
    }
    let since = traqq.extra_zone_since(tokyo).unwrap().unwrap();
    let later = tokyo.timestamp_opt(now + 86_400, 0).unwrap().date_naive() + chrono::Days::new(1);
    let want = tokyo
        .from_local_datetime(&later.and_hms_opt(0, 0, 0).unwrap())
        .unwrap();
    assert_eq!(since, want.timestamp());
    let last = events.last().unwrap().0;
    let result = traqq
        .query_in_zone(QueryRange::MinMax(since, last), QueryOptions::default(), tokyo)
        .unwrap();
    assert_matches_truth(&result, &truth(&events, tokyo, since, last), tokyo);
    let (first, _) = whole_days(tokyo, (10, 21), (10, 21));
    let across = QueryRange::MinMax(first, last);
    if hourly {
        let result = traqq
            .query_in_zone(across, QueryOptions::default(), tokyo)
            .unwrap();
        assert_matches_truth(&result, &truth(&events, tokyo, first, last), tokyo);
        for day in &result.days {
            let location = &day.results[0].location;
            let stored = location.starts_with("z@Asia/Tokyo:");
            assert_eq!(
                stored,
                day.timestamp >= since,
                "{} read from {location}",
                day.date
            );
        }
        // A month holding days on both sides of the mark (a Monday here) adds both up.
        let months = traqq
            .query_groups_in(across, QueryOptions::default(), Group::Month, Some(tokyo))
            .unwrap();
        let truth = truth(&events, tokyo, first, last);
        let mark = tokyo.timestamp_opt(since, 0).unwrap().date_naive().to_string();
        assert!(months.iter().any(|m| m.timestamp < since && m.last_date >= mark));
        for month in &months {
            let days = || truth.range(month.date.clone()..=month.last_date.clone());
            let events: i64 = days().map(|(_, d)| d.events).sum();
            let ips: BTreeSet<&String> = days().flat_map(|(_, d)| d.ips.iter()).collect();
            let Some(MetricData::Count(unique)) = data(&month.results, MetricType::Bmp, AdvPart::Sums) else {
                panic!()
            };
            assert!(
                within_hll_error(*unique, ips.len()),
                "{}: {unique} vs {}",
                month.date,
                ips.len()
            );
            assert_eq!(
                data(&month.results, MetricType::Add, AdvPart::Sums),
                Some(&MetricData::Hash([("e".to_string(), events)].into())),
                "{}",
                month.date
            );
        }
    } else {
        let error = refusal(&traqq, across, tokyo);
        assert!(error.contains("time.store_hourly = true"), "{error}");
    }
    // A writer that does not list Tokyo: the stored Tokyo days are incomplete from now on.
    record(&plain, last, &events[events.len() - 1..]);
    assert_eq!(traqq.extra_zone_since(tokyo).unwrap(), None);
    if hourly {
        let result = traqq
            .query_in_zone(QueryRange::MinMax(since, last), QueryOptions::default(), tokyo)
            .unwrap();
        assert!(
            result
                .days
                .iter()
                .all(|d| d.results[0].location.starts_with("z:")),
            "{result:?}"
        );
    } else {
        let error = refusal(&traqq, QueryRange::MinMax(since, last), tokyo);
        assert!(error.contains("time.store_hourly = true"), "{error}");
    }
    // A writer listing it again starts over from its next day.
    let again = record(&with_tokyo, last, &[]);
    assert_eq!(
        again.extra_zone_since(tokyo).unwrap(),
        None,
        "nothing written, nothing marked"
    );
    let again = record(&with_tokyo, last, &events[events.len() - 1..]);
    assert!(again.extra_zone_since(tokyo).unwrap().unwrap() > last);
}

/// `retention.daily_days` deletes an extra zone's old days with the store's own.
#[test]
fn retention_prunes_extra_zone_days() {
    let tokyo = chrono_tz::Asia::Tokyo;
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let mut config = listing(&[tokyo]);
    config.time.store_hourly = false;
    config.retention.daily_days = 5;
    let traqq = engine_with(config, now).without_auto_prune();
    let registry = |prefix: &str| -> usize {
        match traqq
            .storage()
            .read(&[Read::Members(format!("{prefix}:k:buckets"))])
            .unwrap()
            .pop()
        {
            Some(ReadResult::Members(m)) => m.len(),
            other => panic!("{other:?}"),
        }
    };
    let tokyo_days = truth(&events, tokyo, i64::MIN, i64::MAX).len();
    assert_eq!(registry("z@Asia/Tokyo"), tokyo_days);
    let report = traqq.prune(now).unwrap();
    // The same number of days stays in each zone.
    assert_eq!(registry("z@Asia/Tokyo"), 5);
    assert_eq!(registry("z"), 5);
    assert!(report.buckets >= 2 * (tokyo_days - 6), "{report:?}");
    let (min, _) = whole_days(tokyo, (10, 21), (10, 21));
    let old = traqq
        .query_in_zone(QueryRange::MinMax(min, min), QueryOptions::default(), tokyo)
        .unwrap();
    assert!(
        data(&old.days[0].results, MetricType::Add, AdvPart::Sums).is_none(),
        "{old:?}"
    );
}

/// `result` (one zone's days) against the raw events' `truth`: dates, exact counters, sums and
/// leaderboards per day, unique counts within HyperLogLog error; merged over the range, the
/// union of every day's uniques (never their sum) and the exact leaderboard.
fn assert_matches_truth(result: &QueryResult, truth: &BTreeMap<String, Day>, zone: Tz) {
    let dates: Vec<&str> = result.days.iter().map(|d| d.date.as_str()).collect();
    assert_eq!(
        dates,
        truth.keys().map(String::as_str).collect::<Vec<_>>(),
        "{zone}"
    );
    for day in &result.days {
        let want = &truth[&day.date];
        let r = &day.results;
        assert_eq!(
            data(r, MetricType::Add, AdvPart::Sums),
            Some(&MetricData::Hash([("e".to_string(), want.events)].into())),
            "{zone} {}",
            day.date
        );
        let Some(MetricData::Count(unique)) = data(r, MetricType::Bmp, AdvPart::Sums) else {
            panic!()
        };
        assert!(
            within_hll_error(*unique, want.ips.len()),
            "{zone} {}: {unique} uniques, truth {}",
            day.date,
            want.ips.len()
        );
        let Some(MetricData::Ranked(top)) = data(r, MetricType::Top, AdvPart::Sums) else {
            panic!()
        };
        let top: BTreeMap<String, f64> = top.iter().cloned().collect();
        assert_eq!(top, want.geos, "{zone} {}", day.date);
        let Some(MetricData::Summary { sum, count }) = data(r, MetricType::Adv, AdvPart::Summary) else {
            panic!()
        };
        assert_eq!((*sum, *count), (want.amount, want.events), "{zone} {}", day.date);
    }
    // Merged over the range: the union of every day, never the sum of the days.
    let all: BTreeSet<&String> = truth.values().flat_map(|d| d.ips.iter()).collect();
    let merged = result.find_str("bmp/ip");
    let MetricData::Count(union) = merged[0].result else {
        panic!()
    };
    assert!(
        (union as f64 - all.len() as f64).abs() / (all.len() as f64) < 0.02,
        "{zone}: {union} vs {}",
        all.len()
    );
    let summed: u64 = result
        .days
        .iter()
        .filter_map(|d| match data(&d.results, MetricType::Bmp, AdvPart::Sums) {
            Some(MetricData::Count(n)) => Some(*n),
            _ => None,
        })
        .sum();
    assert!(union < summed, "{zone}");
    // The merged leaderboard is exact: the store's days inside the range stand for their
    // hours, and no event is counted twice or left out at the range's edges.
    let mut geos: BTreeMap<String, f64> = BTreeMap::new();
    for (geo, n) in truth.values().flat_map(|d| d.geos.iter()) {
        *geos.entry(geo.clone()).or_default() += n;
    }
    let MetricData::Ranked(top) = &result.find_str("top/geo")[0].result else {
        panic!()
    };
    assert_eq!(top.iter().cloned().collect::<BTreeMap<_, _>>(), geos, "{zone}");
}

/// A unique count `got` of `truth` distinct values, within the sketch's error: 2%, or two
/// values while few (two of 50 values can share one of 16,384 registers, as in Redis).
fn within_hll_error(got: u64, truth: usize) -> bool {
    (got as f64 - truth as f64).abs() <= (truth as f64 * 0.02).max(2.0)
}

/// A restored store's buckets were not written with any extra zone's days: a restore forgets
/// any mark saying they are complete, so the next writer listing the zone counts from its
/// next day.
#[test]
fn a_restore_forgets_which_extra_zone_days_are_complete() {
    use traqq_storage::dump::{export, restore, ExportRange, RestoreOptions};
    let tokyo = chrono_tz::Asia::Tokyo;
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let config = listing(&[tokyo]);
    let source = engine_with(config.clone(), now);
    let mut dump = Vec::new();
    export(&**source.storage(), "z", ExportRange::default(), &mut dump).unwrap();
    // An empty store that says Tokyo's days are complete from the beginning of time.
    let target: std::sync::Arc<dyn Storage> = std::sync::Arc::new(MemoryStorage::new());
    let mut mark = Batch::new();
    mark.sadd(
        "z:k:zones",
        (BucketKind::Day, 0),
        &format!("Asia/Tokyo={MIN_TIMESTAMP}"),
    );
    target.apply(&mark).unwrap();
    let traqq = Traqq::with_shared_storage(config, target.clone(), "z")
        .unwrap()
        .with_clock(ManualClock::new(now));
    assert_eq!(traqq.extra_zone_since(tokyo).unwrap(), Some(MIN_TIMESTAMP));
    restore(&*target, "z", &mut dump.as_slice(), RestoreOptions::default()).unwrap();
    assert_eq!(traqq.extra_zone_since(tokyo).unwrap(), None);
    // Restored days come from hours, as they are: exact.
    let (min, max) = whole_days(tokyo, (10, 21), (11, 4));
    let result = traqq
        .query_in_zone(QueryRange::MinMax(min, max), QueryOptions::default(), tokyo)
        .unwrap();
    assert_matches_truth(&result, &truth(&events, tokyo, min, max), tokyo);
    traqq
        .record_json(&format!(r#"{{"event":"e","ts":{now}}}"#))
        .unwrap();
    assert!(traqq.extra_zone_since(tokyo).unwrap().unwrap() > now);
}

/// Days a writer listing a zone stored before its mark was taken away are not pruned by
/// writers not listing it: a store whose own buckets are all gone still holds them, so it is
/// not taken for an empty one (whose zone days would all count).
#[test]
fn a_zone_with_leftover_days_counts_from_its_next_day() {
    let tokyo = chrono_tz::Asia::Tokyo;
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let storage: std::sync::Arc<dyn Storage> = std::sync::Arc::new(MemoryStorage::new());
    let engine = |config: TraqqConfig, now: i64| {
        Traqq::with_shared_storage(config, storage.clone(), "z")
            .unwrap()
            .with_clock(ManualClock::new(now))
            .without_auto_prune()
    };
    let listing_engine = engine(listing(&[tokyo]), now);
    let line = format!(r#"{{"event":"e","ts":{now}}}"#);
    listing_engine.record_json(&line).unwrap();
    assert_eq!(
        listing_engine.extra_zone_since(tokyo).unwrap(),
        Some(MIN_TIMESTAMP)
    );
    // A writer not listing Tokyo takes the mark away, and later prunes every bucket of its own.
    let mut plain = config();
    plain.retention.daily_days = 1;
    plain.retention.hourly_days = 1;
    let later = now + 30 * 86_400;
    let plain_engine = engine(plain, now);
    plain_engine.record_json(&line).unwrap();
    assert_eq!(plain_engine.extra_zone_since(tokyo).unwrap(), None);
    plain_engine.prune(later).unwrap();
    let registry = |prefix: &str| {
        storage
            .read(&[Read::Members(format!("{prefix}:k:buckets"))])
            .unwrap()
    };
    assert_eq!(registry("z"), [ReadResult::Members(Vec::new())]);
    assert_ne!(registry("z@Asia/Tokyo"), [ReadResult::Members(Vec::new())]);
    let again = engine(listing(&[tokyo]), later);
    again
        .record_json(&format!(r#"{{"event":"e","ts":{later}}}"#))
        .unwrap();
    assert!(again.extra_zone_since(tokyo).unwrap().unwrap() > later);
}
