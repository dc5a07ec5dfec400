//! Any time zone at query time (`Traqq::query_in_zone`): the same stored events queried with
//! the store's zone and with others, against ground truth computed from the raw events with
//! chrono-tz: exact counters and sums per local day, unique counts within HyperLogLog error,
//! merged uniques equal to the union (never the sum).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeZone;
use chrono_tz::Tz;
use traqq_storage::prelude::*;

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
        // Whole local days of `zone`, from 10-21 to 11-04.
        let min = zone.with_ymd_and_hms(2026, 10, 21, 0, 0, 0).unwrap().timestamp();
        let max = zone
            .with_ymd_and_hms(2026, 11, 4, 23, 59, 59)
            .unwrap()
            .timestamp();
        let result = traqq
            .query_in_zone(QueryRange::MinMax(min, max), QueryOptions::default(), zone)
            .unwrap();
        let truth = truth(&events, zone, min, max);
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
        let min = zone.with_ymd_and_hms(2026, 10, 21, 0, 0, 0).unwrap().timestamp();
        let max = zone
            .with_ymd_and_hms(2026, 11, 4, 23, 59, 59)
            .unwrap()
            .timestamp();
        let result = traqq
            .query_in_zone(QueryRange::MinMax(min, max), QueryOptions::default(), zone)
            .unwrap();
        let truth = truth(&events, zone, min, max);
        assert_eq!(result.days.len(), truth.len(), "{zone}");
        for day in &result.days {
            let want = &truth[&day.date];
            assert_eq!(
                data(&day.results, MetricType::Add, AdvPart::Sums),
                Some(&MetricData::Hash([("e".to_string(), want.events)].into())),
                "{zone} {}",
                day.date
            );
            let Some(MetricData::Count(unique)) = data(&day.results, MetricType::Bmp, AdvPart::Sums) else {
                panic!()
            };
            assert!(
                within_hll_error(*unique, want.ips.len()),
                "{zone} {}: {unique} vs {}",
                day.date,
                want.ips.len()
            );
        }
    }
}

#[test]
fn zones_the_hours_cannot_answer_are_refused_naming_why() {
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let traqq = engine(now);
    let kolkata = chrono_tz::Asia::Kolkata;
    let error = traqq
        .query_in_zone(QueryRange::Days(3), QueryOptions::default(), kolkata)
        .unwrap_err()
        .to_string();
    assert!(error.contains("Asia/Kolkata is not whole hours apart"), "{error}");
    assert!(error.contains("time.store_quarter_hours"), "{error}");
    // Without hourly buckets, another zone's days cannot be assembled.
    let mut daily_only = config();
    daily_only.time.store_hourly = false;
    let traqq = Traqq::new(daily_only, MemoryStorage::new(), "z").unwrap();
    let error = traqq
        .query_in_zone(
            QueryRange::Days(1),
            QueryOptions::default(),
            chrono_tz::Asia::Tokyo,
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("time.store_hourly = true"), "{error}");
    // Hours deleted by retention are named.
    let mut kept = config();
    kept.retention.hourly_days = 2;
    let traqq = Traqq::new(kept, MemoryStorage::new(), "z")
        .unwrap()
        .with_clock(ManualClock::new(now));
    let error = traqq
        .query_in_zone(
            QueryRange::Days(5),
            QueryOptions::default(),
            chrono_tz::Asia::Tokyo,
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("retention.hourly_days = 2"), "{error}");
}

/// A unique count `got` of `truth` distinct values, within the sketch's error: 2%, or two
/// values while few (two of 50 values can share one of 16,384 registers, as in Redis).
fn within_hll_error(got: u64, truth: usize) -> bool {
    (got as f64 - truth as f64).abs() <= (truth as f64 * 0.02).max(2.0)
}
