//! Extra zones' stored days (`time.extra_zones`): keys under a second prefix holding `@` and
//! `/` (`prefix@Asia/Tokyo`), which every backend must store, read, register and prune like
//! the store's own.

use std::collections::BTreeMap;

use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::config::{RetentionConfig, TimeConfig, TraqqConfig};
use traqq_core::key::{bucket_registry_key, key_set_key};
use traqq_core::ops::OpGenerator;
use traqq_core::read::{Read, ReadResult};

use super::{fresh_prefix, sample_config, sample_events, SAMPLE_NOW};
use crate::storage::{Storage, StorageExt};

/// Every check, in order.
pub fn run_all(storage: &dyn Storage) {
    extra_zone_days_equal_their_hours(storage);
}

/// Each stored Tokyo day holds exactly what the store's own hours inside it hold (the same
/// events, written once): counters and sums equal the hours' sums, the unique count equals
/// the union of the hours' sketches, the leaderboard their union. Retention prunes the zone's
/// days under its own prefix.
pub fn extra_zone_days_equal_their_hours(storage: &dyn Storage) {
    let tokyo: traqq_core::bucket::Tz = "Asia/Tokyo".parse().unwrap();
    let config = TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            extra_zones: vec![tokyo.name().into()],
            ..TimeConfig::default()
        },
        ..sample_config()
    };
    let p = fresh_prefix("zones");
    let g = OpGenerator::new(&config, &p).unwrap();
    let zone_prefix = traqq_core::key::extra_zone_prefix(&p, tokyo);
    let mut builder = g.batch();
    for event in sample_events(600) {
        builder.add(&event, SAMPLE_NOW).unwrap();
    }
    storage.apply(&builder.finish()).unwrap();

    let (own, zone) = (*g.calendar(), Calendar::new(tokyo));
    let mut days = storage.members(&bucket_registry_key(&zone_prefix)).unwrap();
    days.sort();
    assert_eq!(
        days.len(),
        3,
        "the sample's 3 UTC mornings are 3 Tokyo days: {days:?}"
    );
    let zone_day = |set: &str| traqq_core::key::decode_key_set_key(&zone_prefix, set).unwrap().1;
    let days_first = zone_day(&days[0]);
    for set in &days {
        let day = zone_day(set);
        assert_eq!(zone.day_start(day), day, "{set}");
        let end = zone.next_bucket_start(BucketKind::Day, day);
        let hours = own.buckets(BucketKind::Hour, day, end - 1, 100).unwrap();
        // `rest` is `type:pattern` (with `adv`'s value key): the key of one bucket.
        let keys = |prefix: &str, kind: BucketKind, start: i64, rest: &str| {
            let (metric, pattern) = rest.split_once(':').unwrap_or((rest, ""));
            format!("{prefix}:{metric}:{kind}:{start}:{pattern}")
        };
        let hour_keys = |rest: &str| -> Vec<String> {
            hours
                .iter()
                .map(|&h| keys(&p, BucketKind::Hour, h, rest))
                .collect()
        };
        let day_key = |rest: &str| keys(&zone_prefix, BucketKind::Day, day, rest);
        for rest in [
            "add:event~geo",
            "adv:amount:event~offer",
            "adv:amount:event~offer:i",
        ] {
            let summed = match storage.read(&[Read::Sum(hour_keys(rest))]).unwrap().pop() {
                Some(ReadResult::Hash(h)) => h,
                other => panic!("{other:?}"),
            };
            let as_map = |h: Vec<(String, traqq_core::batch::Number)>| -> BTreeMap<String, String> {
                h.into_iter()
                    .map(|(f, n)| (f, format!("{:.6}", n.as_f64())))
                    .collect()
            };
            let stored = as_map(storage.read_hash(&day_key(rest)).unwrap());
            // (The sample's amounts all fall on its first day.)
            assert!(
                !stored.is_empty() || rest.starts_with("adv") && day != days_first,
                "{}",
                day_key(rest)
            );
            assert_eq!(stored, as_map(summed), "{}", day_key(rest));
        }
        let hour_ips = hour_keys("bmp:ip");
        let hour_ips: Vec<&str> = hour_ips.iter().map(String::as_str).collect();
        assert_eq!(
            storage.count(&[&day_key("bmp:ip")]).unwrap(),
            storage.count(&hour_ips).unwrap(),
            "{set}"
        );
        let union = match storage
            .read(&[Read::Top {
                keys: hour_keys("top:geo"),
                limit: 10,
            }])
            .unwrap()
            .pop()
        {
            Some(ReadResult::Top(t)) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(storage.top(&day_key("top:geo"), 10).unwrap(), union, "{set}");
        assert!(storage
            .members(&key_set_key(&zone_prefix, BucketKind::Day, day))
            .unwrap()
            .contains(&day_key("top:geo")));
    }
    // At the last second of the sample's last UTC day it is the next morning in Tokyo: keeping
    // two days keeps that (empty) day and the sample's last.
    let retention = RetentionConfig {
        daily_days: 2,
        hourly_days: 0,
    };
    let pruned = crate::retention::prune(storage, &zone_prefix, &zone, &retention, SAMPLE_NOW - 1).unwrap();
    assert_eq!(pruned.buckets, 2, "{pruned:?}");
    assert_eq!(
        storage.members(&bucket_registry_key(&zone_prefix)).unwrap(),
        [days[2].clone()]
    );
    assert!(storage
        .read_hash(&format!("{zone_prefix}:add:d:{days_first}:event~geo"))
        .unwrap()
        .is_empty());
}
