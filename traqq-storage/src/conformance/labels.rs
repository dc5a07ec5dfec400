//! The cardinality guard ([`KeyEntry::max_labels`]): the store's half of `[limits] max_labels`.

use std::collections::{BTreeMap, BTreeSet};

use traqq_core::batch::{Batch, KeyEntry, Number};
use traqq_core::config::{AddValueConfig, MappingConfig, TraqqConfig};
use traqq_core::event::IncomingEvent;
use traqq_core::labels::OTHER;
use traqq_core::ops::OpGenerator;

use super::{fresh_prefix, key, DAY};
use crate::storage::{Storage, StorageExt};

/// Every label-cap check, in order.
pub fn run_all(storage: &dyn Storage) {
    a_capped_key_counts_new_labels_past_its_cap_under_other(storage);
    new_labels_are_admitted_in_byte_order_whatever_their_order(storage);
    concurrent_writers_never_pass_the_cap(storage);
    adv_sums_and_counts_keep_the_same_labels(storage);
}

/// A batch with `labels` (each incremented by `by`) for hash `hash_key` and sorted set
/// `top_key`, both capped at `cap`.
fn capped_batch(hash_key: &str, top_key: &str, cap: usize, labels: &[String], by: i64) -> Batch {
    let mut b = Batch::new();
    for label in labels {
        b.incr(hash_key, DAY, label, Number::Int(by));
        b.zincr(top_key, DAY, label, by as f64);
    }
    let mut capped = Batch::new();
    for (k, entry) in b.iter() {
        capped.put(
            k,
            KeyEntry {
                max_labels: cap,
                ..entry.clone()
            },
        );
    }
    capped
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn hash_of(storage: &dyn Storage, key: &str) -> BTreeMap<String, i64> {
    storage
        .read_hash(key)
        .unwrap()
        .into_iter()
        .map(|(f, n)| (f, n.as_i64()))
        .collect()
}

fn top_of(storage: &dyn Storage, key: &str) -> BTreeMap<String, f64> {
    storage.top(key, 1_000_000).unwrap().into_iter().collect()
}

/// Cap 3: `a b` fit; then `c d e a` bring three new labels for one free place: `c` (first in
/// byte order) gets it, `d` and `e` count under `(other)`, `a` keeps counting. The totals stay.
pub fn a_capped_key_counts_new_labels_past_its_cap_under_other(storage: &dyn Storage) {
    let p = fresh_prefix("cap");
    let (h, t) = (key(&p, "add", "event~url"), key(&p, "top", "url"));
    let before = storage.labels_overflowed();
    storage
        .apply(&capped_batch(&h, &t, 3, &labels(&["b", "a"]), 1))
        .unwrap();
    storage
        .apply(&capped_batch(&h, &t, 3, &labels(&["e", "d", "c", "a"]), 1))
        .unwrap();
    let want: BTreeMap<String, i64> = [("a", 2), ("b", 1), ("c", 1), (OTHER, 2)]
        .into_iter()
        .map(|(l, n)| (l.to_owned(), n))
        .collect();
    assert_eq!(hash_of(storage, &h), want);
    let top: BTreeMap<String, i64> = top_of(storage, &t)
        .into_iter()
        .map(|(l, s)| (l, s as i64))
        .collect();
    assert_eq!(top, want);
    // `(other)` is not a label of its own: a later new label still overflows, an old one counts.
    storage
        .apply(&capped_batch(&h, &t, 3, &labels(&["f", "b"]), 1))
        .unwrap();
    let after = hash_of(storage, &h);
    assert_eq!((after["b"], after[OTHER]), (2, 3));
    assert_eq!(
        after.values().sum::<i64>(),
        8,
        "every increment is counted somewhere"
    );
    assert!(
        storage.labels_overflowed() >= before + 2 * 3,
        "two keys, three overflowed labels each"
    );
    // Without a cap nothing is redirected.
    let (h2, t2) = (key(&p, "add", "free"), key(&p, "top", "free"));
    let many: Vec<String> = (0..50).map(|i| format!("l{i:02}")).collect();
    storage.apply(&capped_batch(&h2, &t2, 0, &many, 1)).unwrap();
    assert_eq!(hash_of(storage, &h2).len(), 50);
}

/// Cap 3, the key holding `A`: a batch bringing `é b B a A Z` (in that order: the batch keeps
/// its insertion order) has five new labels for two places. Byte order admits `B` and `Z`
/// (upper case before lower, `é` last), whatever order the fields come in and whatever a
/// locale's collation would say; `a b é` count under `(other)`. The same for a hash, a sorted
/// set, and a distribution's `LABEL:BIN` fields (capped by label, overflowing to `(other):BIN`).
/// (`A` comes first in byte order, so a store that coalesces the two batches admits the same.)
pub fn new_labels_are_admitted_in_byte_order_whatever_their_order(storage: &dyn Storage) {
    let p = fresh_prefix("cap_order");
    let (h, t, d) = (
        key(&p, "add", "event~url"),
        key(&p, "top", "url"),
        key(&p, "dst", "ms:event~url"),
    );
    let arriving = ["é", "b", "B", "a", "A", "Z"];
    let dst_batch = |labels: &[&str]| {
        let mut b = Batch::new();
        for (i, label) in labels.iter().enumerate() {
            b.incr(&d, DAY, &format!("{label}:s"), Number::Float(1.5));
            b.incr(&d, DAY, &format!("{label}:p{i}"), Number::Int(1));
        }
        let mut capped = Batch::new();
        for (k, entry) in b.iter() {
            capped.put(
                k,
                KeyEntry {
                    max_labels: 3,
                    ..entry.clone()
                },
            );
        }
        capped
    };
    storage
        .apply(&capped_batch(&h, &t, 3, &labels(&["A"]), 1))
        .unwrap();
    storage.apply(&dst_batch(&["A"])).unwrap();
    storage
        .apply(&capped_batch(&h, &t, 3, &labels(&arriving), 1))
        .unwrap();
    storage.apply(&dst_batch(&arriving)).unwrap();
    let want: BTreeMap<String, i64> = [("A", 2), ("B", 1), ("Z", 1), (OTHER, 3)]
        .into_iter()
        .map(|(l, n)| (l.to_owned(), n))
        .collect();
    assert_eq!(hash_of(storage, &h), want, "hash");
    let top: BTreeMap<String, i64> = top_of(storage, &t)
        .into_iter()
        .map(|(l, s)| (l, s as i64))
        .collect();
    assert_eq!(top, want, "sorted set");
    let dst: BTreeMap<String, Number> = storage.read_hash(&d).unwrap().into_iter().collect();
    let labels_of_dst: BTreeSet<&str> = dst.keys().map(|f| traqq_core::labels::label_of(f)).collect();
    assert_eq!(
        labels_of_dst,
        ["A", "B", "Z", OTHER].into_iter().collect(),
        "distribution: {dst:?}"
    );
    // `é` came first (bin p0), `b` second, `a` fourth: their bins moved to `(other)`.
    for bin in ["p0", "p1", "p3"] {
        assert_eq!(
            dst.get(&format!("{OTHER}:{bin}")),
            Some(&Number::Int(1)),
            "{bin}: {dst:?}"
        );
    }
    assert_eq!(
        dst.get(&format!("{OTHER}:s")).copied().map(Number::as_f64),
        Some(4.5),
        "{dst:?}"
    );
    assert_eq!(dst.get("A:s").copied().map(Number::as_f64), Some(3.0), "{dst:?}");
}

/// Eight writers adding 400 distinct labels each to keys capped at 100: never more than 100
/// labels plus `(other)`, and every increment is counted.
pub fn concurrent_writers_never_pass_the_cap(storage: &dyn Storage) {
    let p = fresh_prefix("cap_race");
    let (h, t) = (key(&p, "add", "event~url"), key(&p, "top", "url"));
    std::thread::scope(|s| {
        for w in 0..8 {
            let (h, t) = (&h, &t);
            s.spawn(move || {
                for round in 0..20 {
                    let batch: Vec<String> = (0..20).map(|i| format!("w{w}r{round}i{i}")).collect();
                    storage.apply(&capped_batch(h, t, 100, &batch, 1)).unwrap();
                }
            });
        }
    });
    let hash = hash_of(storage, &h);
    assert_eq!(hash.len(), 101, "100 labels and (other)");
    assert_eq!(hash.values().sum::<i64>(), 8 * 400);
    let top = top_of(storage, &t);
    assert_eq!(top.len(), 101);
    assert_eq!(top.values().sum::<f64>(), 8.0 * 400.0);
}

/// Through op generation: an `adv` metric's per-label sums and per-label counts (two keys that
/// always receive the same labels) keep the same labels under the cap, whatever the batches.
pub fn adv_sums_and_counts_keep_the_same_labels(storage: &dyn Storage) {
    let p = fresh_prefix("cap_adv");
    let mut config = TraqqConfig {
        mapping: MappingConfig {
            add: vec!["url".into()],
            add_value: vec![AddValueConfig {
                key: "url".into(),
                add_key: "ms".into(),
            }],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    config.limits.max_labels = 7;
    let generator = OpGenerator::new(&config, &p).unwrap();
    let ts = DAY.1 + 60;
    let mut n = 0;
    for size in [3, 1, 5, 2, 8, 4] {
        let mut builder = generator.batch();
        for _ in 0..size {
            let json = format!(
                r#"{{"event":"v","url":"/p{}","ms":{},"ts":{ts}}}"#,
                (n * 7919) % 97,
                n + 1
            );
            builder
                .add(&IncomingEvent::parse_str(&json).unwrap(), ts)
                .unwrap();
            n += 1;
        }
        storage.apply(&builder.finish()).unwrap();
    }
    let sums = hash_of(storage, &key(&p, "adv", "ms:url"));
    let counts = hash_of(storage, &format!("{}:c", key(&p, "adv", "ms:url")));
    let adds = hash_of(storage, &key(&p, "add", "url"));
    let names = |m: &BTreeMap<String, i64>| m.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&sums), names(&counts));
    assert_eq!(names(&sums), names(&adds));
    assert_eq!(sums.len(), 8, "7 labels and (other): {sums:?}");
    assert_eq!(counts.values().sum::<i64>(), n);
    assert_eq!(adds.values().sum::<i64>(), n);
}

/// The attack the cap is for, scaled to `events`: events whose `url` is random, mapping
/// `add = ["event~url"]`, `top = ["url"]`, cap 1,000. Recorded into a store from `open` (a fresh
/// prefix each time), then the same number of events with only 1,000 distinct urls. Checks that
/// every key holds at most 1,000 labels plus `(other)` and that the totals are exact, and
/// returns how much `size` (bytes on disk, resident memory, Redis `used_memory`, ...) grew in
/// each run: `(random urls, 1,000 urls)`.
pub fn random_labels_grow_the_store_like_bounded_ones(
    open: &dyn Fn() -> Box<dyn Storage>,
    size: &dyn Fn(&dyn Storage) -> u64,
    events: usize,
) -> (u64, u64) {
    let run = |distinct: Option<u64>| -> u64 {
        let store = open();
        let p = fresh_prefix("attack");
        let mut config = TraqqConfig {
            mapping: MappingConfig {
                add: vec!["event~url".into()],
                top: vec!["url".into()],
                ..MappingConfig::default()
            },
            ..TraqqConfig::default()
        };
        config.limits.max_labels = 1_000;
        let generator = OpGenerator::new(&config, &p).unwrap();
        let before = size(&*store);
        let ts = DAY.1 + 60;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for chunk in 0..events.div_ceil(5_000) {
            let mut builder = generator.batch();
            for _ in 0..5_000.min(events - chunk * 5_000) {
                // xorshift: a new url nearly every time, or one of `distinct`.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let url = distinct.map_or(x, |d| x % d);
                let json = format!(
                    r#"{{"event":"view","url":"https://shop.example.com/p/{url:x}?s={url:x}","ts":{ts}}}"#
                );
                builder
                    .add(&IncomingEvent::parse_str(&json).unwrap(), ts)
                    .unwrap();
            }
            store.apply(&builder.finish()).unwrap();
        }
        store.flush().unwrap();
        let grown = size(&*store).saturating_sub(before);
        let adds = hash_of(&*store, &key(&p, "add", "event~url"));
        assert!(adds.len() <= 1_001, "{} labels", adds.len());
        assert_eq!(adds.values().sum::<i64>(), events as i64, "every event counted");
        let top = top_of(&*store, &key(&p, "top", "url"));
        assert!(top.len() <= 1_001, "{} leaderboard members", top.len());
        assert_eq!(top.values().sum::<f64>(), events as f64);
        grown
    };
    (run(None), run(Some(1_000)))
}
