//! `Storage::apply_once`: a batch sent again under the same id (its reply was lost) is applied
//! once, on one node and on a cluster, and an id is recorded only with a fully applied batch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use traqq_redis::keys::{cluster_key, slot};
use traqq_redis::RedisStorage;
use traqq_storage::conformance::fresh_prefix;
use traqq_storage::prelude::*;

const DAY: (BucketKind, i64) = (BucketKind::Day, 1_700_006_400);
const METRICS: usize = 12;

fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}:add:d:{}:event{i}", DAY.1)
}

/// One increment of field `n` in each of `METRICS` keys (different slots on a cluster).
fn batch(prefix: &str) -> Batch {
    let mut b = Batch::new();
    for i in 0..METRICS {
        b.incr(&key(prefix, i), DAY, "n", Number::Int(1));
    }
    b
}

/// Field `n` of every key of the batch.
fn counts(storage: &RedisStorage, prefix: &str) -> Vec<i64> {
    (0..METRICS)
        .map(|i| {
            storage
                .read_hash(&key(prefix, i))
                .unwrap()
                .iter()
                .find(|(f, _)| f == "n")
                .map_or(0, |(_, n)| n.as_i64())
        })
        .collect()
}

fn a_repeated_id_is_applied_once(storage: &RedisStorage, prefix: &str) {
    let b = batch(prefix);
    storage.apply_once("write-1", &b).unwrap();
    // The same write again, as a retry after a lost reply would send it.
    storage.apply_once("write-1", &b).unwrap();
    assert_eq!(counts(storage, prefix), vec![1; METRICS]);
    storage.apply_once("write-2", &b).unwrap();
    assert_eq!(counts(storage, prefix), vec![2; METRICS]);
    // Without an id nothing is remembered: plain `apply` counts every call.
    storage.apply(&b).unwrap();
    storage.apply(&b).unwrap();
    assert_eq!(counts(storage, prefix), vec![4; METRICS]);
}

#[test]
fn single_node_applies_an_id_once_and_remembers_it_for_an_hour() {
    let (Some(storage), Some(url)) = (common::single(), common::single_url()) else {
        return;
    };
    let prefix = fresh_prefix("once");
    a_repeated_id_is_applied_once(&storage, &prefix);
    let mut plain = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:applied:write-1"))
        .query(&mut plain)
        .unwrap();
    assert!((1..=3600).contains(&ttl), "ttl {ttl}");
}

#[test]
fn cluster_applies_an_id_once_in_every_slot() {
    let Some(storage) = common::cluster() else {
        return;
    };
    let prefix = fresh_prefix("oncec");
    let slots: BTreeSet<u16> = (0..METRICS)
        .map(|i| slot(cluster_key(&key(&prefix, i)).unwrap().as_bytes()))
        .collect();
    assert!(slots.len() > 1, "the batch must span several slots: {slots:?}");
    a_repeated_id_is_applied_once(&storage, &prefix);
}

#[test]
fn a_refused_batch_does_not_record_its_id() {
    let (Some(storage), Some(url)) = (common::single(), common::single_url()) else {
        return;
    };
    let prefix = fresh_prefix("oncewt");
    let mut plain = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // A key of the wrong type: the whole batch is refused, nothing applied.
    redis::cmd("SET")
        .arg(key(&prefix, 3))
        .arg("not a hash")
        .query::<()>(&mut plain)
        .unwrap();
    let b = batch(&prefix);
    let err = storage.apply_once("write-1", &b).unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    redis::cmd("DEL")
        .arg(key(&prefix, 3))
        .query::<()>(&mut plain)
        .unwrap();
    assert_eq!(counts(&storage, &prefix), vec![0; METRICS]);
    // Sent again under the same id once the key is fixed: applied, then remembered.
    storage.apply_once("write-1", &b).unwrap();
    storage.apply_once("write-1", &b).unwrap();
    assert_eq!(counts(&storage, &prefix), vec![1; METRICS]);
}
