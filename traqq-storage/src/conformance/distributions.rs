//! Distributions (`dst`) through op generation: a store's fields are exactly the bins of a
//! sketch built in the test from the raw values, a field-wise sum of days is their merged
//! sketch, and the label cap counts labels (not bins).

use std::collections::{BTreeMap, BTreeSet};

use traqq_core::config::{DistributionConfig, MappingConfig, TraqqConfig};
use traqq_core::distribution::{sketches_from_fields, DistSketch};
use traqq_core::event::IncomingEvent;
use traqq_core::labels::OTHER;
use traqq_core::ops::OpGenerator;
use traqq_core::read::{Read, ReadResult};

use super::{fresh_prefix, DAY};
use crate::storage::{Storage, StorageExt};

/// Every distribution check.
pub fn run_all(storage: &dyn Storage) {
    stored_bins_are_the_sketch_of_the_values(storage);
    a_distribution_is_capped_by_label(storage);
}

fn config(max_labels: usize) -> TraqqConfig {
    let mut config = TraqqConfig {
        mapping: MappingConfig {
            distribution: vec![DistributionConfig {
                key: "event~geo".into(),
                value_key: "ms".into(),
            }],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    config.limits.max_labels = max_labels;
    config
}

fn dst_key(prefix: &str, day: i64) -> String {
    format!("{prefix}:dst:d:{day}:ms:event~geo")
}

/// A spread of values: negative, zero, tiny, and several magnitudes, from a fixed sequence.
fn value(n: u64) -> f64 {
    let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    match n % 10 {
        0 => 0.0,
        1 => -((x % 5000) as f64) / 7.0,
        2 => (x % 1000) as f64 * 1e-6,
        _ => 1.0 + (x % 100_000) as f64 / 3.0,
    }
}

fn sketches(storage: &dyn Storage, read: Read) -> BTreeMap<String, DistSketch> {
    match storage.read(&[read]).unwrap().pop() {
        Some(ReadResult::Hash(fields)) => sketches_from_fields(fields).unwrap(),
        other => panic!("a hash read answered {other:?}"),
    }
}

fn bins(s: &DistSketch) -> Vec<(traqq_core::distribution::Bin, u64)> {
    s.bins().collect()
}

/// Two days, four labels, batches of different sizes: each label's stored bins equal a sketch
/// of its raw values, per day and summed over both days; the `:i` summary has the exact
/// count and sum.
pub fn stored_bins_are_the_sketch_of_the_values(storage: &dyn Storage) {
    let p = fresh_prefix("dst");
    let generator = OpGenerator::new(&config(0), &p).unwrap();
    let days = [DAY.1, DAY.1 + 86_400];
    let now = days[1] + 3_600;
    let mut truth: BTreeMap<(i64, String), DistSketch> = BTreeMap::new();
    let mut n = 0u64;
    for size in [1usize, 40, 7, 300, 2] {
        let mut builder = generator.batch();
        for _ in 0..size {
            let day = days[(n % 2) as usize];
            let label = ["click~US", "click~DE", "buy~US", "view~FR"][(n / 2 % 4) as usize];
            let (event, geo) = label.split_once('~').unwrap();
            let v = value(n);
            let json = format!(
                r#"{{"event":"{event}","geo":"{geo}","ms":{v},"ts":{}}}"#,
                day + 60
            );
            builder
                .add(&IncomingEvent::parse_str(&json).unwrap(), now)
                .unwrap();
            truth.entry((day, label.to_owned())).or_default().add(v);
            n += 1;
        }
        // A value that is not a number is not recorded.
        builder
            .add(
                &IncomingEvent::parse_str(&format!(
                    r#"{{"event":"x","geo":"US","ms":"abc","ts":{}}}"#,
                    days[0]
                ))
                .unwrap(),
                now,
            )
            .unwrap();
        storage.apply(&builder.finish()).unwrap();
    }
    let mut merged: BTreeMap<String, DistSketch> = BTreeMap::new();
    for day in days {
        let stored = sketches(storage, Read::Hash(dst_key(&p, day)));
        let expected: BTreeMap<&str, &DistSketch> = truth
            .iter()
            .filter(|((d, _), _)| *d == day)
            .map(|((_, l), s)| (l.as_str(), s))
            .collect();
        assert_eq!(
            stored.keys().map(String::as_str).collect::<Vec<_>>(),
            expected.keys().copied().collect::<Vec<_>>()
        );
        for (label, sketch) in &stored {
            let want = expected[label.as_str()];
            assert_eq!(bins(sketch), bins(want), "{label} on {day}");
            assert!((sketch.sum() - want.sum()).abs() <= 1e-6 * want.sum().abs().max(1.0));
            merged.entry(label.clone()).or_default().merge(want);
        }
        let summary = storage.read_hash(&format!("{}:i", dst_key(&p, day))).unwrap();
        let get = |f: &str| summary.iter().find(|(k, _)| k == f).map(|(_, v)| *v).unwrap();
        let count: u64 = expected.values().map(|s| s.count()).sum();
        assert_eq!(get("count").as_i64(), count as i64);
    }
    let summed = sketches(storage, Read::Sum(days.iter().map(|d| dst_key(&p, *d)).collect()));
    assert_eq!(summed.len(), merged.len());
    for (label, sketch) in &summed {
        assert_eq!(
            bins(sketch),
            bins(&merged[label]),
            "{label} summed over both days"
        );
    }
}

/// With `max_labels = 5`, twelve labels arriving over several batches: the key holds five
/// labels (however many bins each has) plus `(other)`, whose bins hold every value of the
/// labels past the cap; no value is lost.
pub fn a_distribution_is_capped_by_label(storage: &dyn Storage) {
    let p = fresh_prefix("dst_cap");
    let generator = OpGenerator::new(&config(5), &p).unwrap();
    let now = DAY.1 + 3_600;
    let mut all = DistSketch::new();
    let mut per_label: BTreeMap<String, DistSketch> = BTreeMap::new();
    let mut n = 0u64;
    for size in [3usize, 9, 1, 30, 5, 60] {
        let mut builder = generator.batch();
        for _ in 0..size {
            let geo = format!("G{}", (n * 7) % 12);
            let v = value(n + 3);
            let json = format!(r#"{{"event":"e","geo":"{geo}","ms":{v},"ts":{}}}"#, DAY.1 + 60);
            builder
                .add(&IncomingEvent::parse_str(&json).unwrap(), now)
                .unwrap();
            all.add(v);
            per_label.entry(format!("e~{geo}")).or_default().add(v);
            n += 1;
        }
        storage.apply(&builder.finish()).unwrap();
    }
    let stored = sketches(storage, Read::Hash(dst_key(&p, DAY.1)));
    let labels: BTreeSet<&str> = stored
        .keys()
        .map(String::as_str)
        .filter(|l| *l != OTHER)
        .collect();
    assert_eq!(labels.len(), 5, "five labels and (other): {:?}", stored.keys());
    assert!(stored.contains_key(OTHER), "{:?}", stored.keys());
    let mut rebuilt = DistSketch::new();
    for (label, sketch) in &stored {
        if label != OTHER {
            assert_eq!(
                bins(sketch),
                bins(&per_label[label]),
                "an admitted label keeps its own bins"
            );
        }
        rebuilt.merge(sketch);
    }
    assert_eq!(bins(&rebuilt), bins(&all), "every value is somewhere");
    let mut over = DistSketch::new();
    per_label
        .iter()
        .filter(|(l, _)| !labels.contains(l.as_str()))
        .for_each(|(_, s)| over.merge(s));
    assert_eq!(bins(&stored[OTHER]), bins(&over));
}
