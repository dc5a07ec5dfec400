//! The engine end to end over the memory backend, checked against truth computed here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::TimeZone;
use serde_json::json;
use traqq_storage::prelude::*;

const T0: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

fn config(mapping: MappingConfig) -> TraqqConfig {
    TraqqConfig {
        mapping,
        ..TraqqConfig::default()
    }
}

fn engine(config: TraqqConfig, now: i64) -> Traqq {
    Traqq::new(config, MemoryStorage::new(), "t")
        .unwrap()
        .with_clock(ManualClock::new(now))
}

fn ev(v: serde_json::Value) -> IncomingEvent<'static> {
    IncomingEvent::from_json(v).unwrap()
}

fn merged(r: &QueryResult, path: &str) -> MetricData {
    let found = r.find_str(path);
    assert_eq!(found.len(), 1, "{path}: {found:?}");
    found[0].result.clone()
}

#[test]
fn all_four_metric_types_and_compound_keys() {
    let t = engine(
        config(MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into(), "geo~event".into(), "offer~event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event~geo".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into()],
            distribution: Vec::new(),
        }),
        T0,
    );
    let events = [
        json!({"event":"view","ip":"1.1.1.1","geo":"US","offer":"a"}),
        json!({"event":"view","ip":"2.2.2.2","geo":"US","offer":"b"}),
        json!({"event":"buy","ip":"1.1.1.1","geo":"US","offer":"a","amount":99.99}),
        json!({"event":"buy","ip":"3.3.3.3","geo":"DE","offer":"a","amount":"0.01"}),
        json!({"event":"buy","ip":"3.3.3.3","geo":"DE","amount":"free"}),
        json!({"event":"buy","ip":"4.4.4.4","geo":"DE","amount":null}),
    ];
    for e in events {
        t.record(ev(e)).unwrap();
    }
    let r = t.query(T0, T0).unwrap();
    assert_eq!(r.days.len(), 1);
    assert_eq!(merged(&r, "bmp/ip"), MetricData::Count(4));
    assert_eq!(
        merged(&r, "add/event"),
        MetricData::Hash(BTreeMap::from([("buy".into(), 4), ("view".into(), 2)]))
    );
    // Parts are sorted: event~geo, values in that order.
    assert_eq!(
        merged(&r, "add/event~geo"),
        MetricData::Hash(BTreeMap::from([
            ("buy~DE".into(), 3),
            ("buy~US".into(), 1),
            ("view~US".into(), 2)
        ]))
    );
    // 3-way: only events with all three parts.
    assert_eq!(
        merged(&r, "add/geo~offer~event"),
        MetricData::Hash(BTreeMap::from([
            ("buy~DE~a".into(), 1),
            ("buy~US~a".into(), 1),
            ("view~US~a".into(), 1),
            ("view~US~b".into(), 1)
        ]))
    );
    // Numeric strings count; "free" and null do not.
    let MetricData::FloatHash(sums) = merged(&r, "adv/event~geo/amount") else {
        panic!()
    };
    assert_eq!(sums.len(), 2);
    assert!(
        (sums["buy~US"] - 99.99).abs() < 1e-9 && (sums["buy~DE"] - 0.01).abs() < 1e-9,
        "{sums:?}"
    );
    let MetricData::Summary { sum, count } = merged(&r, "adv:i/event~geo/amount") else {
        panic!()
    };
    assert_eq!(count, 2);
    assert!((sum - 100.0).abs() < 1e-9);
    assert_eq!(
        merged(&r, "top/geo"),
        MetricData::Ranked(vec![("DE".into(), 3.0), ("US".into(), 3.0)])
    );
}

#[test]
fn find_chooses_adv_labels_or_summary_explicitly() {
    let t = engine(
        config(MappingConfig {
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            ..MappingConfig::default()
        }),
        T0,
    );
    t.record(ev(json!({"event":"buy","amount":5}))).unwrap();
    let r = t.query(T0, T0).unwrap();
    for _ in 0..20 {
        let labels = r.find(FindOptions {
            metric_type: "adv".into(),
            key: "event".into(),
            add_key: None,
            merge: false,
        });
        assert_eq!(labels.len(), 1);
        assert!(matches!(labels[0].result, MetricData::FloatHash(_)));
        let summary = r.find(FindOptions {
            metric_type: "adv:i".into(),
            key: "event".into(),
            add_key: Some("amount".into()),
            merge: false,
        });
        assert_eq!(summary[0].result, MetricData::Summary { sum: 5.0, count: 1 });
    }
    assert!(r.find_str("adv/event/other").is_empty());
    assert!(r
        .try_find(&FindOptions {
            metric_type: "nope".into(),
            ..FindOptions::default()
        })
        .is_err());
}

#[test]
fn values_are_sanitized_before_they_become_keys() {
    let t = engine(
        config(MappingConfig {
            add: vec!["page".into()],
            ..MappingConfig::default()
        }),
        T0,
    );
    for page in ["  /home ", "a:b~c", ":~", "   ", "x".repeat(300).as_str()] {
        t.record(ev(json!({"event":"v","page":page}))).unwrap();
    }
    t.record(ev(json!({"event":"v","page":42}))).unwrap();
    t.record(ev(json!({"event":"v","page":true}))).unwrap();
    let MetricData::Hash(h) = merged(&t.query(T0, T0).unwrap(), "add/page") else {
        panic!()
    };
    let want: BTreeSet<String> = [
        "/home".to_string(),
        "a_b_c".into(),
        "x".repeat(256),
        "42".into(),
        "true".into(),
    ]
    .into();
    assert_eq!(h.keys().cloned().collect::<BTreeSet<_>>(), want);
}

#[test]
fn fall_back_day_in_new_york_is_one_bucket_of_25_hours() {
    let mut cfg = config(MappingConfig {
        add: vec!["event".into()],
        ..MappingConfig::default()
    });
    cfg.time = TimeConfig {
        store_hourly: true,
        timezone: "America/New_York".into(),
        ..TimeConfig::default()
    };
    let ny = chrono_tz::America::New_York;
    let midnight = ny.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap().timestamp();
    let next_midnight = ny.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap().timestamp();
    assert_eq!(next_midnight - midnight, 25 * 3600);
    let t = engine(cfg, next_midnight + 10);
    // One event in each real hour of the day, including both 1 a.m. hours.
    let lines: Vec<String> = (0..25)
        .map(|h| json!({"event":"tick","ts": midnight + h * 3600 + 59}).to_string())
        .collect();
    let outcome = t.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(outcome.recorded, 25);
    let day = t.query(midnight, next_midnight - 1).unwrap();
    assert_eq!(day.days.len(), 1);
    assert_eq!(day.days[0].date, "2026-11-01");
    assert_eq!(day.days[0].timestamp, midnight);
    assert_eq!(
        merged(&day, "add/event"),
        MetricData::Hash(BTreeMap::from([("tick".into(), 25)]))
    );
    let hours = t.query_hourly(midnight, next_midnight - 1).unwrap();
    assert_eq!(hours.days.len(), 25);
    assert!(hours.days.iter().all(|d| d.results.len() == 1));
    let labels: Vec<&str> = hours.days.iter().map(|d| d.date.as_str()).collect();
    assert!(labels.contains(&"2026-11-01T01:00:00-04:00") && labels.contains(&"2026-11-01T01:00:00-05:00"));
    // query_days(0) on the next day sees nothing of it; query_days(1) sees the 25.
    assert!(t.query_days(0).unwrap().days[0].results.is_empty());
    assert_eq!(
        merged(&t.query_days(1).unwrap(), "add/event"),
        MetricData::Hash(BTreeMap::from([("tick".into(), 25)]))
    );
}

#[test]
fn merged_uniques_are_the_union_not_the_sum() {
    let day = 86_400;
    let t = engine(
        config(MappingConfig {
            bitmap: vec!["ip".into()],
            ..MappingConfig::default()
        }),
        T0 + 3 * day,
    );
    // Three days of 20,000 ips each, sliding by 10,000: 40,000 distinct, 60,000 daily uniques.
    let mut truth = BTreeSet::new();
    for d in 0..3i64 {
        let lines: Vec<String> = (0..20_000)
            .map(|i| {
                let ip = d * 10_000 + i;
                truth.insert(ip);
                json!({"event":"v","ip": format!("10.{}.{}.{}", ip >> 16, (ip >> 8) & 255, ip & 255), "ts": T0 + d * day}).to_string()
            })
            .collect();
        t.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    }
    let r = t.query(T0, T0 + 2 * day).unwrap();
    let daily: Vec<u64> = r
        .find(FindOptions {
            metric_type: "bmp".into(),
            key: "ip".into(),
            add_key: None,
            merge: false,
        })
        .iter()
        .map(|m| match m.result {
            MetricData::Count(c) => c,
            _ => panic!(),
        })
        .collect();
    assert_eq!(daily.len(), 3);
    let sum: u64 = daily.iter().sum();
    let MetricData::Count(union) = merged(&r, "bmp/ip") else {
        panic!()
    };
    let want = truth.len() as f64;
    assert!(
        (union as f64 - want).abs() / want < 0.02,
        "union {union}, truth {want}"
    );
    assert!(
        (sum as f64) > want * 1.4,
        "sum of dailies {sum} is clearly above the union"
    );
}

#[test]
fn eight_threads_record_exact_totals() {
    let t = Arc::new(engine(
        config(MappingConfig {
            add: vec!["event".into(), "event~thread".into()],
            top: vec!["thread".into()],
            ..MappingConfig::default()
        }),
        T0,
    ));
    std::thread::scope(|s| {
        for thread in 0..8 {
            let t = Arc::clone(&t);
            s.spawn(move || {
                for i in 0..10_000 {
                    let e = json!({"event": if i % 2 == 0 {"a"} else {"b"}, "thread": thread});
                    t.record(ev(e)).unwrap();
                }
            });
        }
    });
    let r = t.query(T0, T0).unwrap();
    assert_eq!(
        merged(&r, "add/event"),
        MetricData::Hash(BTreeMap::from([("a".into(), 40_000), ("b".into(), 40_000)]))
    );
    let MetricData::Hash(per) = merged(&r, "add/event~thread") else {
        panic!()
    };
    assert_eq!(per.len(), 16);
    assert!(per.values().all(|&n| n == 5_000));
    let MetricData::Ranked(top) = merged(&r, "top/thread") else {
        panic!()
    };
    assert_eq!(top.len(), 8);
    assert!(top.iter().all(|(_, s)| *s == 10_000.0));
}

#[test]
fn batch_outcome_names_bad_events_and_keeps_the_rest() {
    let t = engine(
        config(MappingConfig {
            add: vec!["event".into()],
            ..MappingConfig::default()
        }),
        T0,
    );
    let lines = [
        r#"{"event":"ok"}"#,
        r#"{"event":""}"#,
        r#"not json"#,
        r#"{"event":"ok","ts":"yesterday"}"#,
        r#"[1]"#,
        r#"{"event":"ok","ts":1700000001}"#,
    ];
    let out = t.record_json_lines(lines).unwrap();
    assert_eq!(out.recorded, 2);
    let idx: Vec<usize> = out.rejected.iter().map(|r| r.index).collect();
    assert_eq!(idx, [1, 2, 3, 4]);
    assert!(out.rejected[2].error.to_string().contains("\"ts\""));
    assert_eq!(
        merged(&t.query(T0, T0).unwrap(), "add/event"),
        MetricData::Hash(BTreeMap::from([("ok".into(), 2)]))
    );
}

#[test]
fn max_metrics_per_event_rejects_the_event_whole() {
    let mut cfg = config(MappingConfig {
        add: vec!["event".into(), "a".into(), "b".into()],
        ..MappingConfig::default()
    });
    cfg.limits.max_metrics_per_event = 2;
    let t = engine(cfg, T0);
    t.record(ev(json!({"event":"x","a":1}))).unwrap();
    let err = t
        .record(ev(json!({"event":"x","a":1,"b":2})))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_metrics_per_event") && err.contains('3'),
        "{err}"
    );
    assert_eq!(
        merged(&t.query(T0, T0).unwrap(), "add/event"),
        MetricData::Hash(BTreeMap::from([("x".into(), 1)]))
    );
}

/// Issue 13 (3): amounts of 1e308 made a day's sums infinite (`null`) for good. An amount too
/// large for sums to stay finite is rejected, naming the field; the sums stay exact.
#[test]
fn an_amount_that_could_overflow_a_sum_is_rejected_and_sums_stay_finite() {
    let t = engine(
        config(MappingConfig {
            add: vec!["event".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            ..MappingConfig::default()
        }),
        T0,
    );
    let limit = traqq_storage::traqq_core::ops::MAX_AMOUNT;
    t.record(ev(json!({"event":"buy","amount":limit}))).unwrap();
    t.record(ev(json!({"event":"buy","amount":-limit}))).unwrap();
    t.record(ev(json!({"event":"buy","amount":2.5}))).unwrap();
    for bad in [
        json!(1e308),
        json!(-1e308),
        json!(limit.next_up()),
        json!("1e300"),
    ] {
        let err = t
            .record(ev(json!({"event":"buy","amount":bad})))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"amount\"") && err.contains("overflow"),
            "{bad}: {err}"
        );
    }
    // A batch: the bad event is rejected, the others counted.
    let lines = [
        r#"{"event":"buy","amount":1e308}"#,
        r#"{"event":"buy","amount":1.5}"#,
        r#"{"event":"buy","amount":1e308}"#,
    ];
    let outcome = t.record_json_lines(lines).unwrap();
    assert_eq!(outcome.recorded, 1);
    assert_eq!(
        outcome.rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
        [0, 2]
    );
    let r = t.query(T0, T0).unwrap();
    assert_eq!(
        merged(&r, "adv/event/amount"),
        MetricData::FloatHash(BTreeMap::from([("buy".into(), 4.0)]))
    );
    assert_eq!(
        merged(&r, "add/event"),
        MetricData::Hash(BTreeMap::from([("buy".into(), 4)]))
    );
}

/// Issue 13 (7): event times anywhere in years 1..9999 let one writer grow the bucket registry
/// without bound. Times outside `[event] max_past_days` / `max_future_secs` are refused,
/// naming the setting; backfill inside the window is accepted.
#[test]
fn event_times_outside_the_window_are_refused_one_second_past_it() {
    let mut cfg = config(MappingConfig {
        add: vec!["event".into()],
        ..MappingConfig::default()
    });
    cfg.event.max_past_days = 30;
    cfg.event.max_future_secs = 3_600;
    let t = engine(cfg.clone(), T0);
    let oldest = T0 - 30 * 86_400;
    let latest = T0 + 3_600;
    for ts in [oldest, latest, T0] {
        t.record(ev(json!({"event":"ok","ts":ts}))).unwrap();
    }
    let err = t
        .record(ev(json!({"event":"no","ts":oldest - 1})))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("event.max_past_days = 30") && err.contains("\"ts\""),
        "{err}"
    );
    let err = t
        .record(ev(json!({"event":"no","ts":latest + 1})))
        .unwrap_err()
        .to_string();
    assert!(err.contains("event.max_future_secs = 3600"), "{err}");
    let err = t
        .record(ev(json!({"event":"no","ts":"9999-12-31T00:00:00Z"})))
        .unwrap_err()
        .to_string();
    assert!(err.contains("event time"), "{err}");
    // 0 days: no lower bound (any backfill).
    cfg.event.max_past_days = 0;
    let t = engine(cfg, T0);
    t.record(ev(json!({"event":"ok","ts":-30_000_000_000i64})))
        .unwrap();
}

#[test]
fn record_json_applies_the_configured_property_limits() {
    let mut cfg = config(MappingConfig {
        add: vec!["event".into()],
        ..MappingConfig::default()
    });
    cfg.limits.max_properties = 3;
    let t = engine(cfg, T0);
    t.record_json(r#"{"event":"a","b":1,"c":{"d":2}}"#).unwrap();
    let err = t
        .record_json(r#"{"event":"a","b":1,"c":{"d":2,"e":3}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("more than 3 properties (limits.max_properties)"),
        "{err}"
    );
    let outcome = t
        .record_json_lines([r#"{"event":"a","b":1,"c":2,"d":3}"#, r#"{"event":"a"}"#])
        .unwrap();
    assert_eq!((outcome.recorded, outcome.rejected.len()), (1, 1));
}

#[test]
fn config_errors_name_the_offender() {
    let check = |m: MappingConfig, want: &str| {
        let err = config(m).validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err} should contain {want}");
    };
    check(
        MappingConfig {
            add: vec!["geo~event".into(), "event~geo".into()],
            ..Default::default()
        },
        "mapping.add[1]",
    );
    check(
        MappingConfig {
            top: vec!["a~~b".into()],
            ..Default::default()
        },
        "a~~b",
    );
    check(
        MappingConfig {
            bitmap: vec!["".into()],
            ..Default::default()
        },
        "mapping.bitmap[0]",
    );
    check(
        MappingConfig {
            add: vec!["a:b".into()],
            ..Default::default()
        },
        "contains ':'",
    );
    let mut cfg = TraqqConfig::default();
    cfg.time.timezone = "Mars/Olympus".into();
    assert!(cfg.validate().unwrap_err().to_string().contains("time.timezone"));
    assert!(Traqq::new(TraqqConfig::default(), MemoryStorage::new(), "a:b").is_err());

    let parsed: TraqqConfig =
        toml::from_str("[time]\nstore_hourly = true\n[mapping]\nadd = [\"event\"]\n").unwrap();
    assert!(parsed.time.store_hourly && parsed.mapping.add == ["event"]);
    let err = toml::from_str::<TraqqConfig>("[mapping]\nadds = [\"event\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("adds"), "{err}");
}

#[test]
fn filters_limits_and_hourly_queries() {
    let mut cfg = config(MappingConfig {
        add: vec!["event".into(), "event~geo".into()],
        top: vec!["geo".into(), "geo~event".into()],
        ..MappingConfig::default()
    });
    cfg.time.store_hourly = true;
    let t = engine(cfg, T0);
    for (i, geo) in ["US", "US", "US", "DE", "DE", "FR"].iter().enumerate() {
        t.record(ev(json!({"event":"v","geo":geo,"ts": T0 + i as i64 * 3600})))
            .unwrap();
    }
    let names = |r: &QueryResult| -> BTreeSet<String> {
        r.days
            .iter()
            .flat_map(|d| &d.results)
            .map(|m| format!("{}:{}", m.metric_type, m.pattern()))
            .collect()
    };
    let opts = |accept: &[&str], ignore: &[&str]| QueryOptions {
        min: T0,
        max: T0 + 6 * 3600,
        accept: accept.iter().map(|s| s.to_string()).collect(),
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
        ..QueryOptions::default()
    };
    let all = t.query_with(&opts(&[], &[])).unwrap();
    assert_eq!(names(&all).len(), 4);
    let no_compound_top = t.query_with(&opts(&[], &["top:*~*"])).unwrap();
    assert_eq!(
        names(&no_compound_top),
        ["add:event".to_string(), "add:event~geo".into(), "top:geo".into()].into()
    );
    let only_add = t.query_with(&opts(&["add:*"], &["*~*"])).unwrap();
    assert_eq!(names(&only_add), ["add:event".to_string()].into());
    assert!(t
        .query_with(&opts(&["[bad"], &[]))
        .unwrap_err()
        .to_string()
        .contains("[bad"));

    let limited = t
        .query_with(&QueryOptions {
            limit: Some(1),
            ..opts(&[], &[])
        })
        .unwrap();
    assert_eq!(
        merged(&limited, "top/geo"),
        MetricData::Ranked(vec![("US".into(), 3.0)])
    );

    let hourly = t.query_hourly(T0, T0 + 5 * 3600).unwrap();
    assert_eq!(hourly.days.len(), 6);
    let us_hours = hourly
        .find(FindOptions {
            metric_type: "top".into(),
            key: "geo".into(),
            add_key: None,
            merge: false,
        })
        .iter()
        .filter(|m| matches!(&m.result, MetricData::Ranked(r) if r[0].0 == "US"))
        .count();
    assert_eq!(us_hours, 3);
    assert!(t.query(T0 + 10, T0).unwrap_err().to_string().contains("after"));
    // Absurd ranges are errors, never panics.
    assert!(t
        .query_days(u32::MAX)
        .unwrap_err()
        .to_string()
        .contains("max_buckets"));
    assert!(t.query(i64::MIN, i64::MAX).is_err());
    let err = t
        .record_json(r#"{"event":"v","ts":9223372036854775807}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside"), "{err}");
}

/// `adv:c` holds how many events each label's sum holds, so sum / count is the label's
/// average: per day and merged, for a packed pattern and for a 4-part one (text-keyed).
#[test]
fn adv_counts_per_label_give_averages() {
    let day = 86_400;
    let now = T0 + 2 * day;
    let t = engine(
        config(MappingConfig {
            add_value: vec![
                AddValueConfig {
                    key: "offer".into(),
                    add_key: "amount".into(),
                },
                AddValueConfig {
                    key: "a~b~c~offer".into(),
                    add_key: "amount".into(),
                },
            ],
            ..MappingConfig::default()
        }),
        now,
    );
    // Truth per (day index, label): (sum, count).
    let mut truth: BTreeMap<(i64, String), (f64, i64)> = BTreeMap::new();
    let mut events = Vec::new();
    for i in 0..300i64 {
        let d = i % 3;
        let offer = format!("o{}", (i * 7) % 5);
        let amount = ((i * 37) % 101) as f64 / 4.0;
        let e = truth.entry((d, offer.clone())).or_insert((0.0, 0));
        e.0 += amount;
        e.1 += 1;
        // Every fifth amount comes as a numeric string; those count too.
        let amount_json = if i % 5 == 0 {
            json!(amount.to_string())
        } else {
            json!(amount)
        };
        events.push(ev(json!({"event":"e","offer":offer,"a":"x","b":"y","c":"z",
            "amount":amount_json,"ts":T0 + d * day + i})));
    }
    // A non-numeric amount is ignored by sums and counts alike.
    events.push(ev(
        json!({"event":"e","offer":"o1","a":"x","b":"y","c":"z","amount":"n/a","ts":T0}),
    ));
    let (first, rest) = events.split_at(100);
    for e in first {
        t.record(e.clone()).unwrap();
    }
    t.record_batch(rest.to_vec()).unwrap();

    let r = t.query(T0, now).unwrap();
    assert_eq!(r.days.len(), 3);
    for (d, bucket) in r.days.iter().enumerate() {
        let counts = bucket
            .results
            .iter()
            .find(|m| m.find_type() == "adv:c" && m.pattern() == "offer")
            .unwrap();
        let MetricData::Hash(counts) = &counts.result else {
            panic!("adv:c is not a Hash: {counts:?}")
        };
        let want: BTreeMap<String, i64> = truth
            .iter()
            .filter(|((day, _), _)| *day == d as i64)
            .map(|((_, label), (_, n))| (label.clone(), *n))
            .collect();
        assert_eq!(counts, &want, "day {d}");
    }
    for (pattern, label_of) in [("offer", None), ("a~b~c~offer", Some("x~y~z~"))] {
        let sums = merged(&r, &format!("adv/{pattern}/amount"));
        let counts = merged(&r, &format!("adv:c/{pattern}/amount"));
        let (MetricData::FloatHash(sums), MetricData::Hash(counts)) = (sums, counts) else {
            panic!("unexpected shapes for {pattern}")
        };
        let mut want: BTreeMap<String, (f64, i64)> = BTreeMap::new();
        for ((_, label), (s, n)) in &truth {
            let label = format!("{}{label}", label_of.unwrap_or(""));
            let w = want.entry(label).or_insert((0.0, 0));
            w.0 += s;
            w.1 += n;
        }
        assert_eq!(counts.len(), want.len(), "{pattern}");
        for (label, (s, n)) in &want {
            assert_eq!(counts[label], *n, "{pattern} {label}");
            let average = sums[label] / counts[label] as f64;
            assert!((average - s / *n as f64).abs() < 1e-9, "{pattern} {label}");
        }
        // The summary's count is the sum of the per-label counts.
        let MetricData::Summary { count, .. } = merged(&r, &format!("adv:i/{pattern}/amount")) else {
            panic!("no summary")
        };
        assert_eq!(count, counts.values().sum::<i64>());
    }
}

/// A range's totals: every metric merged once over all days, unique counts as unions.
#[test]
fn totals_merge_every_metric_over_the_range() {
    let t = engine(
        config(MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            top: vec!["geo".into()],
            ..MappingConfig::default()
        }),
        T0,
    );
    // The same two ips on three days, a third on the last.
    for day in 0..3 {
        for ip in ["1.1.1.1", "2.2.2.2"] {
            t.record(ev(
                json!({"event":"view","ip":ip,"geo":"US","ts":T0 - day * 86_400}),
            ))
            .unwrap();
        }
    }
    t.record(ev(json!({"event":"buy","ip":"3.3.3.3","geo":"DE","ts":T0})))
        .unwrap();
    let r = t.query(T0 - 2 * 86_400, T0).unwrap();
    let totals = r.totals().unwrap();
    assert_eq!(totals.len(), 3, "{totals:?}");
    let get = |kind: &str| {
        totals
            .iter()
            .find(|m| m.find_type() == kind)
            .map(|m| m.result.clone())
            .unwrap()
    };
    assert_eq!(get("bmp"), MetricData::Count(3), "a union, not 2+2+3");
    assert_eq!(
        get("add"),
        MetricData::Hash(BTreeMap::from([("view".into(), 6), ("buy".into(), 1)]))
    );
    assert_eq!(
        get("top"),
        MetricData::Ranked(vec![("US".into(), 6.0), ("DE".into(), 1.0)])
    );
}
