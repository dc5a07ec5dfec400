//! Property tests of core invariants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::distribution::DistSketch;
use traqq_core::key::{AdvPart, MetricKey, MetricType};
use traqq_core::result::MetricData;
use traqq_core::sanitize::sanitize_value;
use traqq_core::sketch::{Sketch, SketchFamily};

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::btree_set("[a-z][a-z0-9_.]{0,6}", 1..4)
        .prop_map(|parts| parts.into_iter().collect::<Vec<_>>().join("~"))
}

fn metric_key() -> impl Strategy<Value = MetricKey> {
    (
        prop::sample::select(MetricType::ALL.to_vec()),
        prop::bool::ANY,
        -2_000_000_000i64..4_000_000_000,
        pattern(),
        "[a-z]{1,8}",
        prop::sample::select(vec![AdvPart::Sums, AdvPart::Summary, AdvPart::Counts]),
    )
        .prop_map(|(metric, hourly, timestamp, pattern, add_key, part)| {
            let valued = metric.has_value_key();
            let part = match (metric, part) {
                (MetricType::Adv, p) | (MetricType::Dst, p @ (AdvPart::Sums | AdvPart::Summary)) => p,
                _ => AdvPart::Sums,
            };
            MetricKey {
                metric,
                bucket: if hourly { BucketKind::Hour } else { BucketKind::Day },
                timestamp,
                pattern,
                add_key: valued.then_some(add_key),
                part,
            }
        })
}

const ZONES: [&str; 7] = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Santiago",
    "Pacific/Chatham",
];

/// A value of a distribution: spread over many magnitudes, both signs, and exact zeros.
fn dst_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-12.0f64..12.0).prop_map(|e| 10f64.powf(e)),
        3 => (-12.0f64..12.0).prop_map(|e| -10f64.powf(e)),
        1 => Just(0.0),
        1 => (-1000i64..1000).prop_map(|n| n as f64),
    ]
}

proptest! {
    #[test]
    fn distributions_merge_like_one_sketch_of_everything(
        values in prop::collection::vec(dst_value(), 0..300),
        cuts in prop::collection::vec(0usize..300, 0..6),
        seed in any::<u64>(),
    ) {
        let mut whole = DistSketch::new();
        values.iter().for_each(|v| whole.add(*v));
        // Split the values at the cuts, shuffle each part (order must not matter), sketch each
        // part alone and merge the parts in reverse.
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(values.len())).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([values.len()]) {
            let mut part = values[from..cut].to_vec();
            let mut state = seed;
            for i in (1..part.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                part.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut sketch = DistSketch::new();
            part.iter().for_each(|v| sketch.add(*v));
            parts.push(sketch);
            from = cut;
        }
        let mut merged = DistSketch::new();
        for p in parts.iter().rev() {
            merged.merge(p);
        }
        let bins = |s: &DistSketch| s.bins().collect::<Vec<_>>();
        prop_assert_eq!(bins(&merged), bins(&whole));
        prop_assert_eq!(merged.count(), values.len() as u64);
        let exact: f64 = values.iter().sum();
        prop_assert!((merged.sum() - exact).abs() <= 1e-9 * values.iter().map(|v| v.abs()).sum::<f64>().max(1.0));
    }

    #[test]
    fn key_encode_decode_round_trips(key in metric_key(), prefix in "[a-zA-Z0-9_.-]{1,10}") {
        let text = key.encode(&prefix);
        prop_assert_eq!(MetricKey::decode(&prefix, &text).unwrap(), key);
    }

    #[test]
    fn sanitizing_is_idempotent_and_removes_separators(value in "\\PC{0,40}", max in 1usize..30) {
        if let Some(once) = sanitize_value(&value, max) {
            prop_assert!(!once.contains(':') && !once.contains('~'), "{:?}", once);
            prop_assert!(once.chars().count() <= max);
            prop_assert!(!once.is_empty());
            let twice = sanitize_value(&once, max).map(|c| c.into_owned());
            prop_assert_eq!(Some(once.into_owned()), twice);
        }
    }

    #[test]
    fn every_timestamp_falls_in_its_bucket(
        zone in prop::sample::select(ZONES.to_vec()),
        ts in 946_684_800i64..2_208_988_800,
        kind in prop::sample::select(vec![BucketKind::Day, BucketKind::Hour, BucketKind::Quarter]),
    ) {
        let cal = Calendar::new(zone.parse().unwrap());
        let start = cal.bucket_start(kind, ts);
        let next = cal.next_bucket_start(kind, start);
        prop_assert!(start <= ts && ts < next, "{zone} {ts}: [{start}, {next})");
        prop_assert_eq!(cal.bucket_start(kind, start), start);
        prop_assert_eq!(cal.bucket_start(kind, next - 1), start);
        prop_assert_eq!(cal.bucket_start(kind, next), next);
        let len = next - start;
        match kind {
            BucketKind::Day => prop_assert!((22 * 3600..=26 * 3600).contains(&len), "day of {len}s"),
            BucketKind::Hour => prop_assert!((1800..=3600).contains(&len), "hour of {len}s"),
            BucketKind::Quarter => prop_assert_eq!(len, 900),
        }
        prop_assert_eq!(cal.prev_bucket_start(kind, next), start);
    }

    #[test]
    fn merge_is_associative_and_order_independent(parts in prop::collection::vec(metric_data_set(), 3..6)) {
        for kind in 0..4 {
            let items: Vec<MetricData> = parts.iter().map(|p| p[kind].clone()).collect();
            let fold = |order: &[usize]| {
                let mut acc = items[order[0]].clone();
                for &i in &order[1..] {
                    acc.merge(&items[i]).unwrap();
                }
                acc
            };
            let forward: Vec<usize> = (0..items.len()).collect();
            let backward: Vec<usize> = forward.iter().rev().copied().collect();
            let a = fold(&forward);
            prop_assert_eq!(&a, &fold(&backward));
            // (x + y) + rest == x + (y + rest)
            let mut right = items[1].clone();
            for item in &items[2..] {
                right.merge(item).unwrap();
            }
            let mut left = items[0].clone();
            left.merge(&right).unwrap();
            prop_assert_eq!(&a, &left);
        }
    }

    #[test]
    fn sketch_union_is_order_independent(
        sets in prop::collection::vec(prop::collection::vec(0u32..20_000, 0..3_000), 2..5),
        redis in any::<bool>(),
    ) {
        // Both families; unions that cross from sparse to dense (past 4,096 codes) too.
        let family = if redis { SketchFamily::Redis } else { SketchFamily::Traqq };
        let sketches: Vec<Sketch> = sets.iter().map(|s| {
            let mut sk = Sketch::new_in(family);
            s.iter().for_each(|v| sk.insert(&v.to_string()));
            sk
        }).collect();
        let mut fwd = Sketch::new_in(family);
        sketches.iter().for_each(|s| fwd.merge(s).unwrap());
        let mut back = Sketch::new_in(family);
        sketches.iter().rev().for_each(|s| back.merge_bytes(&s.to_bytes()).unwrap());
        prop_assert_eq!(&fwd, &back);
        prop_assert_eq!(fwd.to_bytes(), back.to_bytes());
        let mut all = Sketch::new_in(family);
        sets.iter().flatten().for_each(|v| all.insert(&v.to_string()));
        prop_assert_eq!(&all, &fwd);
        let distinct: std::collections::BTreeSet<u32> = sets.iter().flatten().copied().collect();
        let truth = distinct.len() as f64;
        // Unions of 1,000-9,000 values count within ~0.6% (one standard error; 0.81% at most,
        // 1.04 / sqrt(16,384)): 3.25% is over five of them, where 2% failed a run in ~20.
        prop_assert!((fwd.count() as f64 - truth).abs() <= (truth * 0.0325).max(2.0), "{} vs {}", fwd.count(), truth);
    }
}

/// One value of each mergeable kind; floats are whole numbers so sums are exact in any order.
fn metric_data_set() -> impl Strategy<Value = Vec<MetricData>> {
    let fields = prop::collection::btree_map("[a-e]", -50i64..50, 0..5);
    (fields.clone(), fields, -1000i64..1000, 0i64..100).prop_map(|(ints, floats, sum, count)| {
        let float_map: BTreeMap<String, f64> = floats.iter().map(|(k, v)| (k.clone(), *v as f64)).collect();
        let mut ranked: Vec<(String, f64)> = float_map.iter().map(|(k, v)| (k.clone(), v.abs())).collect();
        traqq_core::read::sort_ranked(&mut ranked);
        vec![
            MetricData::Hash(ints),
            MetricData::FloatHash(float_map),
            MetricData::Summary {
                sum: sum as f64,
                count,
            },
            MetricData::Ranked(ranked),
        ]
    })
}

/// Walks every hour and day of 2026 in each zone (every DST change included) and checks the
/// buckets tile time: no gap, no overlap, each bucket maps back to itself.
#[test]
fn buckets_tile_a_whole_year_in_every_zone() {
    for zone in ZONES {
        let cal = Calendar::new(zone.parse().unwrap());
        for kind in [BucketKind::Day, BucketKind::Hour] {
            let (from, to) = (1_767_225_600, 1_798_761_600); // 2026-01-01 .. 2027-01-01 UTC
            let starts = cal.buckets(kind, from, to, 10_000).unwrap();
            for w in starts.windows(2) {
                let (a, b) = (w[0], w[1]);
                assert!(a < b, "{zone} {kind}: {a} !< {b}");
                assert_eq!(cal.next_bucket_start(kind, a), b, "{zone} {kind} after {a}");
                for probe in [a, a + (b - a) / 2, b - 1] {
                    assert_eq!(
                        cal.bucket_start(kind, probe),
                        a,
                        "{zone} {kind}: {probe} not in [{a}, {b})"
                    );
                }
            }
            let days = starts.len();
            match kind {
                BucketKind::Day => assert!((365..=367).contains(&days), "{zone}: {days} days"),
                BucketKind::Hour => assert!((8760..=8800).contains(&days), "{zone}: {days} hours"),
                BucketKind::Quarter => assert!((35_040..=35_200).contains(&days), "{zone}: {days} quarters"),
            }
        }
    }
}
