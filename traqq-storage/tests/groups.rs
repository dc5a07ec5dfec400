//! Week and month rollups (`Traqq::query_groups`) against ground truth computed from the raw
//! events with chrono-tz: counters add, unique counts are unions (weekly and monthly actives,
//! not sums of daily ones), leaderboards merge, and a range that cuts a week or month reports
//! the days it holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, TimeZone};
use chrono_tz::Tz;
use traqq_storage::prelude::*;

const ZONE: Tz = chrono_tz::Europe::Berlin;

fn config() -> TraqqConfig {
    TraqqConfig {
        time: TimeConfig {
            timezone: ZONE.name().into(),
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            top: vec!["geo".into()],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    }
}

/// 45 days of events from Mon 2026-09-28 (summer time ends on Sun 10-25 inside): 31 a day,
/// ips from a pool of 150 (each week and month meets most of them), three geos.
fn events() -> Vec<(i64, String, &'static str)> {
    let first = ZONE.with_ymd_and_hms(2026, 9, 28, 0, 0, 0).unwrap().timestamp();
    let mut x: u64 = 7;
    (0..45 * 31)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let day = i64::from(i / 31);
            let ts = first + day * 86_400 + 3_600 * 2 + ((x >> 33) % 72_000) as i64;
            (
                ts,
                format!("10.0.0.{}", (x >> 20) % 150),
                ["DE", "FR", "US"][((x >> 40) % 3) as usize],
            )
        })
        .collect()
}

/// Per group key (ISO week or month of the local date): events, distinct ips, geo counts.
type Truth = BTreeMap<(i32, u32), (i64, BTreeSet<String>, BTreeMap<&'static str, f64>)>;

fn truth(events: &[(i64, String, &'static str)], group: Group, min: i64, max: i64) -> Truth {
    let mut out = Truth::new();
    for (ts, ip, geo) in events.iter().filter(|e| (min..=max).contains(&e.0)) {
        let date = ZONE.timestamp_opt(*ts, 0).unwrap().date_naive();
        let key = match group {
            Group::Week => (date.iso_week().year(), date.iso_week().week()),
            _ => (date.year(), date.month()),
        };
        let entry = out.entry(key).or_default();
        entry.0 += 1;
        entry.1.insert(ip.clone());
        *entry.2.entry(*geo).or_default() += 1.0;
    }
    out
}

fn merged<'a>(results: &'a [MetricResult], metric: MetricType, key: &str) -> &'a MetricData {
    &results
        .iter()
        .find(|r| r.metric_type == metric && r.key == [key])
        .unwrap_or_else(|| panic!("no {metric:?} {key}"))
        .result
}

#[test]
fn weeks_and_months_merge_their_days_like_the_raw_events_say() {
    let events = events();
    let now = events.last().unwrap().0 + 3_600;
    let traqq = Traqq::new(config(), MemoryStorage::new(), "g")
        .unwrap()
        .with_clock(ManualClock::new(now));
    let lines: Vec<String> = events
        .iter()
        .map(|(ts, ip, geo)| format!(r#"{{"event":"e","ip":"{ip}","geo":"{geo}","ts":{ts}}}"#))
        .collect();
    assert_eq!(
        traqq
            .record_json_lines(lines.iter().map(String::as_str))
            .unwrap()
            .recorded,
        events.len()
    );

    // From Wed 2026-09-30 (cutting the first week) to Thu 2026-11-05 (cutting the last).
    let min = ZONE.with_ymd_and_hms(2026, 9, 30, 0, 0, 0).unwrap().timestamp();
    let max = ZONE
        .with_ymd_and_hms(2026, 11, 5, 23, 59, 59)
        .unwrap()
        .timestamp();
    for group in [Group::Week, Group::Month] {
        let groups = traqq
            .query_groups(QueryRange::MinMax(min, max), QueryOptions::default(), group)
            .unwrap();
        let truth = truth(&events, group, min, max);
        assert_eq!(groups.len(), truth.len(), "{group:?}");
        let mut group_uniques_summed = 0;
        for (g, (_, (count, ips, geos))) in groups.iter().zip(&truth) {
            assert_eq!(g.group, group);
            assert_eq!(
                merged(&g.results, MetricType::Add, "event"),
                &MetricData::Hash([("e".to_string(), *count)].into())
            );
            let MetricData::Count(unique) = merged(&g.results, MetricType::Bmp, "ip") else {
                panic!()
            };
            let error = (*unique as f64 - ips.len() as f64).abs() / ips.len() as f64;
            assert!(error < 0.02, "{group:?} {}: {unique} vs {}", g.date, ips.len());
            let MetricData::Ranked(ranked) = merged(&g.results, MetricType::Top, "geo") else {
                panic!()
            };
            let ranked: BTreeMap<&str, f64> = ranked.iter().map(|(m, s)| (m.as_str(), *s)).collect();
            assert_eq!(ranked, geos.iter().map(|(k, v)| (*k, *v)).collect());
            group_uniques_summed += unique;
        }
        // Unions, not sums: a week's actives are fewer than its days' actives added up.
        let daily: u64 = traqq
            .query(min, max)
            .unwrap()
            .days
            .iter()
            .flat_map(|d| d.results.iter())
            .filter_map(|r| match r.result {
                MetricData::Count(n) => Some(n),
                _ => None,
            })
            .sum();
        assert!(
            group_uniques_summed < daily,
            "{group:?}: {group_uniques_summed} vs {daily}"
        );
        // The range cuts the first and last group: they report the days they hold.
        let (first, last) = (&groups[0], &groups[groups.len() - 1]);
        assert_eq!(first.date, "2026-09-30");
        if group == Group::Week {
            assert_eq!((first.last_date.as_str(), first.days), ("2026-10-04", 5));
            assert_eq!(
                (last.date.as_str(), last.last_date.as_str(), last.days),
                ("2026-11-02", "2026-11-05", 4)
            );
            // The week of the DST change has 7 days, one of them 25 hours long.
            assert!(groups.iter().any(|g| g.date == "2026-10-19" && g.days == 7));
        } else {
            assert_eq!((first.last_date.as_str(), first.days), ("2026-09-30", 1));
            assert_eq!(groups[1].days, 31);
            assert_eq!(
                (last.date.as_str(), last.last_date.as_str(), last.days),
                ("2026-11-01", "2026-11-05", 5)
            );
        }
    }
    // Grouping merges days: hourly buckets are refused.
    let hourly = QueryOptions {
        bucket: BucketKind::Hour,
        ..QueryOptions::default()
    };
    let error = traqq
        .query_groups(QueryRange::MinMax(min, max), hourly, Group::Week)
        .unwrap_err();
    assert!(error.to_string().contains("needs daily buckets"), "{error}");
}
