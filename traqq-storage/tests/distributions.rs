//! Distributions (`dst`) against exact quantiles computed from the raw values: 1,000,000 values
//! of a lognormal and 1,000,000 of a bimodal distribution, spread over 7 days and recorded by 3
//! writers at once; every reported quantile is within 1% of the exact one, per day and merged
//! over the week, and other quantiles can be asked for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use traqq_core::distribution::{quantile_name, Quantiles, RELATIVE_ACCURACY};
use traqq_storage::prelude::*;

const DAY0: i64 = 1_764_288_000; // 2025-11-28, UTC
const DAYS: i64 = 7;
const PER_LABEL: usize = 1_000_000;
const WRITERS: usize = 3;

fn config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            add: vec!["event".into()],
            distribution: vec![DistributionConfig {
                key: "event~geo".into(),
                value_key: "latency_ms".into(),
            }],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    }
}

/// A small deterministic generator: uniform in (0, 1) and standard normal (Box–Muller).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// `(label, day, value)` for every value: `api~US` lognormal (median e^3 ≈ 20 ms, σ = 1),
/// `api~DE` bimodal (60% around 40 ms, 40% around 900 ms, a few below zero).
fn values() -> Vec<(&'static str, i64, f64)> {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(2 * PER_LABEL);
    for i in 0..PER_LABEL {
        let day = (i as i64 * 7919) % DAYS;
        out.push(("api~US", day, (3.0 + rng.normal()).exp()));
        let v = if rng.uniform() < 0.6 {
            40.0 + 15.0 * rng.normal()
        } else {
            900.0 + 120.0 * rng.normal()
        };
        out.push(("api~DE", day, v));
    }
    out
}

fn exact(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

fn check(got: &Quantiles, mut raw: Vec<f64>, qs: &[f64], what: &str) {
    raw.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got.count, raw.len() as u64, "{what}: count");
    let sum: f64 = raw.iter().sum();
    assert!(
        (got.sum - sum).abs() <= 1e-9 * raw.iter().map(|v| v.abs()).sum::<f64>(),
        "{what}: sum"
    );
    let within = |got: f64, want: f64, name: &str| {
        assert!(
            (got - want).abs() <= RELATIVE_ACCURACY * want.abs() + 1e-12,
            "{what} {name}: reported {got}, exact {want}"
        );
    };
    for &q in qs {
        let name = quantile_name(q);
        within(got.quantiles[&name], exact(&raw, q), &name);
    }
    within(got.min, raw[0], "min");
    within(got.max, raw[raw.len() - 1], "max");
}

fn dst_of(results: &[MetricResult]) -> &BTreeMap<String, Quantiles> {
    let found = results
        .iter()
        .find(|r| r.metric_type == MetricType::Dst && !r.is_summary())
        .expect("a dst result");
    match &found.result {
        MetricData::Quantiles(q) => q,
        other => panic!("dst result {other:?}"),
    }
}

#[test]
fn quantiles_are_within_one_percent_per_day_and_merged_over_three_writers() {
    let values = values();
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let now = DAY0 + DAYS * 86_400;
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            let values = &values;
            s.spawn(move || {
                let traqq = Traqq::with_shared_storage(config(), store, "lat")
                    .unwrap()
                    .with_clock(ManualClock::new(now));
                let mine: Vec<String> = values
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % WRITERS == w)
                    .map(|(i, (label, day, v))| {
                        let (event, geo) = label.split_once('~').unwrap();
                        let ts = DAY0 + day * 86_400 + (i as i64 % 86_000);
                        format!(r#"{{"event":"{event}","geo":"{geo}","latency_ms":{v},"ts":{ts}}}"#)
                    })
                    .collect();
                for chunk in mine.chunks(10_000) {
                    let outcome = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
                    assert_eq!(outcome.recorded, chunk.len());
                }
            });
        }
    });
    let traqq = Traqq::with_shared_storage(config(), Arc::clone(&store), "lat")
        .unwrap()
        .with_clock(ManualClock::new(now));
    let qs = [0.5, 0.9, 0.95, 0.99];
    let result = traqq.query(DAY0, DAY0 + (DAYS - 1) * 86_400).unwrap();
    assert_eq!(result.days.len(), DAYS as usize);
    let raw = |label: &str, day: Option<i64>| -> Vec<f64> {
        values
            .iter()
            .filter(|(l, d, _)| *l == label && day.is_none_or(|day| *d == day))
            .map(|(_, _, v)| *v)
            .collect()
    };
    for (day, bucket) in result.days.iter().enumerate() {
        let dst = dst_of(&bucket.results);
        for label in ["api~US", "api~DE"] {
            check(
                &dst[label],
                raw(label, Some(day as i64)),
                &qs,
                &format!("{label} day {day}"),
            );
        }
    }
    let merged = result.find_str("dst/event~geo/latency_ms");
    assert_eq!(merged.len(), 1);
    let dst = dst_of(&merged);
    for label in ["api~US", "api~DE"] {
        check(&dst[label], raw(label, None), &qs, &format!("{label} merged"));
    }

    // Other quantiles, asked for in the query, merged over the week.
    let asked = [0.001, 0.25, 0.999];
    let opts = QueryOptions {
        quantiles: Some(asked.to_vec()),
        ..QueryOptions::default()
    };
    let week = traqq
        .query_range(QueryRange::MinMax(DAY0, DAY0 + (DAYS - 1) * 86_400), opts)
        .unwrap();
    let merged = week.find_str("dst/event~geo/latency_ms");
    let dst = dst_of(&merged);
    assert_eq!(dst["api~DE"].quantiles.len(), asked.len());
    check(
        &dst["api~DE"],
        raw("api~DE", None),
        &asked,
        "api~DE merged, asked quantiles",
    );
    // The summary is exact.
    let summary = week.find_str("dst:i/event~geo/latency_ms");
    let MetricData::Summary { count, .. } = summary[0].result else {
        panic!("{:?}", summary[0].result)
    };
    assert_eq!(count, 2 * PER_LABEL as i64);
}
