//! Hashes: integer counters and float sums add up exactly, and a [`Read::Sum`] adds several
//! hashes field by field.

use std::collections::BTreeMap;

use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::BucketKind;
use traqq_core::read::{Read, ReadResult};

use super::{fresh_prefix, key, DAY};
use crate::storage::{Storage, StorageExt};

pub(super) fn hash_map(storage: &dyn Storage, key: &str) -> BTreeMap<String, f64> {
    storage
        .read_hash(key)
        .unwrap()
        .into_iter()
        .map(|(f, n)| (f, n.as_f64()))
        .collect()
}

/// Integer hash increments add up exactly across batches.
pub fn hash_increments(storage: &dyn Storage) {
    let p = fresh_prefix("hash");
    let k = key(&p, "add", "event");
    for i in 0..5 {
        let mut b = Batch::new();
        b.incr(&k, DAY, "click", Number::Int(1));
        b.incr(&k, DAY, "view", Number::Int(i));
        storage.apply(&b).unwrap();
    }
    let h = storage.read_hash(&k).unwrap();
    let get = |f: &str| h.iter().find(|(n, _)| n == f).map(|(_, v)| *v);
    assert_eq!(get("click").map(Number::as_i64), Some(5), "{h:?}");
    assert_eq!(get("view").map(Number::as_i64), Some(10), "{h:?}");
    assert_eq!(h.len(), 2);
    assert!(
        matches!(get("click"), Some(Number::Int(5))),
        "integer fields read back as integers: {h:?}"
    );
}

/// Float increments sum as floats; integer and float fields coexist in one hash.
pub fn float_sums(storage: &dyn Storage) {
    let p = fresh_prefix("float");
    let k = key(&p, "adv", "amount:event:i");
    for _ in 0..10 {
        let mut b = Batch::new();
        b.incr(&k, DAY, "sum", Number::Float(0.1));
        b.incr(&k, DAY, "count", Number::Int(1));
        b.incr(&k, DAY, "neg", Number::Float(-2.25));
        storage.apply(&b).unwrap();
    }
    let h = hash_map(storage, &k);
    assert!((h["sum"] - 1.0).abs() < 1e-9, "{h:?}");
    assert_eq!(h["count"], 10.0);
    assert!((h["neg"] + 22.5).abs() < 1e-9, "{h:?}");
}

/// A [`Read::Sum`] adds the fields of several hashes (days apart, so on a cluster they may
/// live on different nodes): integers stay integers, floats add as floats, missing keys and
/// fields count as empty, and no keys at all answer an empty hash.
pub fn hash_sums(storage: &dyn Storage) {
    let p = fresh_prefix("sums");
    let days: Vec<i64> = (0..3).map(|d| DAY.1 + d * 86_400).collect();
    let keys: Vec<String> = days.iter().map(|ts| format!("{p}:add:d:{ts}:event")).collect();
    let mut truth: BTreeMap<String, f64> = BTreeMap::new();
    for (i, (k, ts)) in keys.iter().zip(&days).enumerate() {
        let mut b = Batch::new();
        for f in 0..=i {
            let by = (i * 10 + f) as i64;
            b.incr(k, (BucketKind::Day, *ts), &format!("n{f}"), Number::Int(by));
            *truth.entry(format!("n{f}")).or_default() += by as f64;
        }
        b.incr(
            k,
            (BucketKind::Day, *ts),
            "amount",
            Number::Float(0.25 + i as f64),
        );
        *truth.entry("amount".into()).or_default() += 0.25 + i as f64;
        storage.apply(&b).unwrap();
    }
    let mut asked = keys.clone();
    asked.insert(1, format!("{p}:add:d:1:missing"));
    let answers = storage.read(&[Read::Sum(asked), Read::Sum(Vec::new())]).unwrap();
    let ReadResult::Hash(fields) = &answers[0] else {
        panic!("a sum answered {:?}", answers[0]);
    };
    let got: BTreeMap<String, f64> = fields.iter().map(|(f, n)| (f.clone(), n.as_f64())).collect();
    assert_eq!(got.len(), truth.len(), "{got:?}");
    for (field, want) in &truth {
        assert!(
            (got[field] - want).abs() < 1e-9,
            "{field}: {got:?} against {truth:?}"
        );
    }
    for (field, n) in fields {
        assert_eq!(
            matches!(n, Number::Int(_)),
            field.starts_with('n'),
            "integer fields stay integers, float ones floats: {fields:?}"
        );
    }
    assert_eq!(answers[1], ReadResult::Hash(Vec::new()));
}
