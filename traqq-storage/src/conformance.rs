//! The backend conformance suite: the definition of a correct [`Storage`].
//!
//! Free functions over `&dyn Storage`; a backend's tests call [`run_all`] (or each function)
//! against the real store. Every function writes under its own fresh prefix, so they can run
//! in parallel against one shared server, and all keys follow the traqq key format (backends
//! may derive placement, such as Redis Cluster hash tags, from it).
//!
//! Persistent backends also run the file-level scenarios of [`persistent`] (restart, crash,
//! threads, automatic retention across reopens), each in its own temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use traqq_core::batch::{Batch, Number};
use traqq_core::bucket::BucketKind;
use traqq_core::config::{AddValueConfig, MappingConfig, RetentionConfig, TimeConfig, TraqqConfig};
use traqq_core::event::IncomingEvent;
use traqq_core::ops::OpGenerator;
use traqq_core::read::{Read, ReadResult};

use crate::storage::{Storage, StorageExt};

pub mod claims;
pub mod distributions;
pub mod dumps;
pub mod faulty;
pub mod hashes;
pub mod labels;
pub mod persistent;
pub mod zones;

pub use faulty::Faulty;
use hashes::hash_map;
pub use hashes::{float_sums, hash_increments, hash_sums};

const DAY: (BucketKind, i64) = (BucketKind::Day, 1_700_006_400);

/// Every check, in order.
pub fn run_all(storage: &dyn Storage) {
    hash_increments(storage);
    float_sums(storage);
    hash_sums(storage);
    hll_counts_and_unions(storage);
    top_ordering_and_ties(storage);
    key_sets(storage);
    missing_keys_read_empty(storage);
    reads_answer_in_order(storage);
    remove_members(storage);
    batch_coalescing_equivalence(storage);
    concurrent_batches(storage);
    reads_during_writes(storage);
    delete_keys(storage);
    retention_prunes_old_buckets(storage);
    claims::run_all(storage);
    labels::run_all(storage);
    distributions::run_all(storage);
    dumps::run_all(storage);
    zones::run_all(storage);
}

/// A prefix no other check (or earlier run against the same server) uses.
pub fn fresh_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "conf{}x{}x{}x{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

fn key(prefix: &str, kind: &str, pattern: &str) -> String {
    format!("{prefix}:{kind}:d:{}:{pattern}", DAY.1)
}

/// HLL counts are within 2% of the truth, unions count distinct values, repeats do not grow.
pub fn hll_counts_and_unions(storage: &dyn Storage) {
    let p = fresh_prefix("hll");
    let a = format!("{p}:bmp:d:1700006400:ip");
    let b = format!("{p}:bmp:d:1700092800:ip");
    let day2 = (BucketKind::Day, 1_700_092_800);
    for chunk in 0..4 {
        let mut batch = Batch::new();
        for i in (chunk * 2_500)..((chunk + 1) * 2_500) {
            batch.hll_insert(&a, DAY, &format!("10.0.{}.{}", i / 256, i % 256));
            batch.hll_insert(
                &b,
                day2,
                &format!("10.0.{}.{}", (i + 5_000) / 256, (i + 5_000) % 256),
            );
        }
        storage.apply(&batch).unwrap();
    }
    let within = |got: u64, want: f64| (got as f64 - want).abs() / want < 0.02;
    let ca = storage.count(&[&a]).unwrap();
    assert!(within(ca, 10_000.0), "count {ca}, want ~10000");
    let cu = storage.count(&[&a, &b]).unwrap();
    assert!(
        within(cu, 15_000.0),
        "union {cu}, want ~15000 (not the sum 20000)"
    );
    // Re-inserting known values does not grow the count.
    let mut again = Batch::new();
    for i in 0..2_000 {
        again.hll_insert(&a, DAY, &format!("10.0.{}.{}", i / 256, i % 256));
    }
    storage.apply(&again).unwrap();
    assert_eq!(storage.count(&[&a]).unwrap(), ca);
    let missing = format!("{p}:bmp:d:1:none");
    assert_eq!(storage.count(&[&missing]).unwrap(), 0);
    assert_eq!(storage.count(&[&a, &missing]).unwrap(), ca);
    // Small sets are exact.
    let small = key(&p, "bmp", "geo");
    let mut s = Batch::new();
    for v in ["US", "DE", "FR", "US"] {
        s.hll_insert(&small, DAY, v);
    }
    storage.apply(&s).unwrap();
    assert_eq!(storage.count(&[&small]).unwrap(), 3);
}

/// Top-N: scores add up, order is descending, ties go by member name, `limit` applies.
pub fn top_ordering_and_ties(storage: &dyn Storage) {
    let p = fresh_prefix("top");
    let k = key(&p, "top", "geo");
    let mut b = Batch::new();
    for (m, s) in [("US", 5.0), ("DE", 3.0), ("FR", 3.0), ("AT", 3.0), ("NL", 1.0)] {
        b.zincr(&k, DAY, m, s);
    }
    storage.apply(&b).unwrap();
    let mut b = Batch::new();
    b.zincr(&k, DAY, "NL", 4.5);
    storage.apply(&b).unwrap();
    let top = storage.top(&k, 10).unwrap();
    let names: Vec<&str> = top.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["NL", "US", "AT", "DE", "FR"], "{top:?}");
    assert_eq!(top[0].1, 5.5);
    assert_eq!(storage.top(&k, 2).unwrap().len(), 2);
    assert_eq!(storage.top(&k, 3).unwrap()[2].0, "AT");

    // The union of several days' sets adds scores per member, then ranks and cuts.
    let k2 = format!("{p}:top:d:1700092800:geo");
    let mut b = Batch::new();
    b.zincr(&k2, (BucketKind::Day, 1_700_092_800), "FR", 10.0);
    b.zincr(&k2, (BucketKind::Day, 1_700_092_800), "ZZ", 3.0);
    storage.apply(&b).unwrap();
    let missing = format!("{p}:top:d:1:geo");
    let union = storage
        .read(&[Read::Top {
            keys: vec![k.clone(), k2, missing],
            limit: 3,
        }])
        .unwrap();
    assert_eq!(
        union,
        vec![ReadResult::Top(vec![
            ("FR".into(), 13.0),
            ("NL".into(), 5.5),
            ("US".into(), 5.0)
        ])]
    );
}

/// Set members are deduplicated.
pub fn key_sets(storage: &dyn Storage) {
    let p = fresh_prefix("set");
    let k = format!("{p}:k:d:{}", DAY.1);
    let mut b = Batch::new();
    b.sadd(&k, DAY, "a");
    b.sadd(&k, DAY, "b");
    storage.apply(&b).unwrap();
    let mut b = Batch::new();
    b.sadd(&k, DAY, "b");
    b.sadd(&k, DAY, "c");
    storage.apply(&b).unwrap();
    let mut m = storage.members(&k).unwrap();
    m.sort();
    assert_eq!(m, ["a", "b", "c"]);
}

/// Missing keys read as empty values of the asked type.
pub fn missing_keys_read_empty(storage: &dyn Storage) {
    let p = fresh_prefix("missing");
    let answers = storage
        .read(&[
            Read::Hash(key(&p, "add", "x")),
            Read::Sum(vec![key(&p, "add", "x"), key(&p, "add", "y")]),
            Read::Count(vec![key(&p, "bmp", "x")]),
            Read::Top {
                keys: vec![key(&p, "top", "x")],
                limit: 5,
            },
            Read::Members(format!("{p}:k:d:1")),
        ])
        .unwrap();
    assert_eq!(
        answers,
        vec![
            ReadResult::Hash(vec![]),
            ReadResult::Hash(vec![]),
            ReadResult::Count(0),
            ReadResult::Top(vec![]),
            ReadResult::Members(vec![])
        ]
    );
}

/// Several reads in one call are answered in order, with matching variants.
pub fn reads_answer_in_order(storage: &dyn Storage) {
    let p = fresh_prefix("order");
    let (h, z) = (key(&p, "add", "event"), key(&p, "top", "geo"));
    let mut b = Batch::new();
    b.incr(&h, DAY, "x", Number::Int(7));
    b.zincr(&z, DAY, "US", 2.0);
    storage.apply(&b).unwrap();
    let answers = storage
        .read(&[
            Read::Top {
                keys: vec![z.clone()],
                limit: 1,
            },
            Read::Hash(h.clone()),
            Read::Top {
                keys: vec![z],
                limit: 1,
            },
        ])
        .unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0], ReadResult::Top(vec![("US".into(), 2.0)]));
    assert!(matches!(&answers[1], ReadResult::Hash(f) if f.len() == 1 && f[0].1.as_i64() == 7));
    assert_eq!(answers[2], answers[0]);
}

fn sample_config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into(), "geo".into()],
            add: vec!["event".into(), "event~geo".into(), "event~geo~offer".into()],
            add_value: vec![AddValueConfig {
                key: "event~offer".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into(), "offer~geo".into()],
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    }
}

/// A clock reading just after the last of [`sample_events`]' days.
const SAMPLE_NOW: i64 = 1_700_006_400 + 3 * 86_400;

fn sample_events(n: usize) -> Vec<IncomingEvent<'static>> {
    let events = ["view", "view", "click", "buy"];
    let geos = ["US", "DE", "FR", "BR", "JP"];
    (0..n)
        .map(|i| {
            let mut v = serde_json::json!({
                "event": events[i % 4],
                "ip": format!("10.1.{}.{}", i % 97, i % 13),
                "geo": geos[(i / 3) % 5],
                "offer": format!("o{}", i % 7),
                "ts": 1_700_006_400 + (i as i64 % 3) * 86_400 + (i as i64 * 37) % 86_400,
            });
            if i % 3 == 0 {
                v["amount"] = serde_json::json!((i % 50) as f64 + 0.25);
            }
            IncomingEvent::from_json(v).unwrap()
        })
        .collect()
}

fn snapshot(storage: &dyn Storage, batch: &Batch, prefix: &str, strip: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, entry) in batch.iter() {
        let value = match &entry.ops {
            traqq_core::batch::KeyOps::Hash(_) => format!("{:.6?}", hash_map(storage, key)),
            traqq_core::batch::KeyOps::Hll(_) => storage.count(&[key]).unwrap().to_string(),
            traqq_core::batch::KeyOps::Scores(_) => format!("{:?}", storage.top(key, 1_000).unwrap()),
            traqq_core::batch::KeyOps::Members(_) => {
                let mut m = storage.members(key).unwrap();
                m.iter_mut().for_each(|k| *k = k.replacen(prefix, strip, 1));
                m.sort();
                format!("{m:?}")
            }
        };
        out.insert(key.replacen(prefix, strip, 1), value);
    }
    out
}

/// Applying one coalesced batch of many events stores the same as applying them one by one.
pub fn batch_coalescing_equivalence(storage: &dyn Storage) {
    let (p1, p2) = (fresh_prefix("coalesced"), fresh_prefix("single"));
    let config = sample_config();
    let (g1, g2) = (
        OpGenerator::new(&config, &p1).unwrap(),
        OpGenerator::new(&config, &p2).unwrap(),
    );
    let events = sample_events(600);
    let now = SAMPLE_NOW;
    let mut builder = g1.batch();
    for e in &events {
        builder.add(e, now).unwrap();
    }
    let big = builder.finish();
    storage.apply(&big).unwrap();
    let mut last = Batch::new();
    for e in &events {
        let b = g2.event_batch(e, now).unwrap();
        storage.apply(&b).unwrap();
        last.merge(b);
    }
    assert!(
        big.op_count() < events.len() * 10,
        "batch is coalesced: {} ops",
        big.op_count()
    );
    let a = snapshot(storage, &big, &p1, "P");
    let b = snapshot(storage, &last, &p2, "P");
    assert_eq!(a.len(), b.len());
    assert_eq!(a, b);
}

/// Batches applied from 8 threads at once lose nothing.
pub fn concurrent_batches(storage: &dyn Storage) {
    let p = fresh_prefix("threads");
    let (h, z, s) = (
        key(&p, "add", "event"),
        key(&p, "top", "geo"),
        key(&p, "bmp", "ip"),
    );
    let (threads, batches) = (8, 50);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (h, z, s) = (&h, &z, &s);
            scope.spawn(move || {
                for i in 0..batches {
                    let mut b = Batch::new();
                    b.incr(h, DAY, "n", Number::Int(1));
                    b.incr(h, DAY, &format!("t{t}"), Number::Int(2));
                    b.incr(h, DAY, "f", Number::Float(0.5));
                    b.zincr(z, DAY, "all", 1.0);
                    b.hll_insert(s, DAY, &format!("{t}-{i}"));
                    storage.apply(&b).unwrap();
                }
            });
        }
    });
    let m = hash_map(storage, &h);
    assert_eq!(m["n"], (threads * batches) as f64);
    assert_eq!(m["f"], (threads * batches) as f64 * 0.5);
    for t in 0..threads {
        assert_eq!(m[&format!("t{t}")], (2 * batches) as f64);
    }
    assert_eq!(
        storage.top(&z, 1).unwrap(),
        vec![("all".to_owned(), (threads * batches) as f64)]
    );
    let c = storage.count(&[&s]).unwrap() as f64;
    assert!((c - 400.0).abs() / 400.0 < 0.02, "{c}");
}

/// Reads running while 4 threads apply batches see counts that only grow, and lose nothing
/// (a store may write back what a read folded, as RocksDB does: never over a newer write).
/// Deleted while readers run, the keys stay deleted.
pub fn reads_during_writes(storage: &dyn Storage) {
    let p = fresh_prefix("readwrite");
    let (h, z) = (key(&p, "add", "event"), key(&p, "top", "geo"));
    let (writers, batches) = (4, 100);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let read_n = || hash_map(storage, &h).get("n").copied().unwrap_or(0.0);
    std::thread::scope(|scope| {
        for _ in 0..writers {
            let (h, z, done) = (&h, &z, &done);
            scope.spawn(move || {
                for _ in 0..batches {
                    let mut b = Batch::new();
                    b.incr(h, DAY, "n", Number::Int(1));
                    b.zincr(z, DAY, "all", 1.0);
                    storage.apply(&b).unwrap();
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        for _ in 0..2 {
            let (z, done) = (&z, &done);
            scope.spawn(move || {
                let mut last = 0.0;
                while done.load(Ordering::SeqCst) < writers {
                    let n = read_n();
                    assert!(n >= last, "a read went back from {last} to {n}");
                    last = n;
                    storage.top(z, 1).unwrap();
                }
            });
        }
    });
    let total = (writers * batches) as f64;
    assert_eq!(read_n(), total);
    assert_eq!(storage.top(&z, 1).unwrap(), vec![("all".to_owned(), total)]);
    std::thread::scope(|scope| {
        scope.spawn(|| storage.delete(&[h.clone(), z.clone()]).unwrap());
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..20 {
                    read_n();
                }
            });
        }
    });
    assert_eq!(read_n(), 0.0, "a deleted key came back");
    assert!(storage.top(&z, 1).unwrap().is_empty());
}

/// `remove_members` removes the named members, keeps the rest, ignores missing members and
/// keys, and never loses a member that another thread adds meanwhile.
pub fn remove_members(storage: &dyn Storage) {
    let p = fresh_prefix("srem");
    let k = format!("{p}:k:buckets");
    let mut b = Batch::new();
    for i in 0..10 {
        b.sadd(&k, DAY, &format!("m{i}"));
    }
    storage.apply(&b).unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    storage.remove_members(&k, &names(&["m1", "m3", "nope"])).unwrap();
    let mut m = storage.members(&k).unwrap();
    m.sort();
    assert_eq!(m, names(&["m0", "m2", "m4", "m5", "m6", "m7", "m8", "m9"]));
    storage
        .remove_members(&format!("{p}:k:none"), &names(&["x"]))
        .unwrap();
    storage.remove_members(&k, &m).unwrap();
    assert!(storage.members(&k).unwrap().is_empty());

    // One thread adds `a0…`, one batch each, while another removes the `m*` members one by
    // one, over and over: every `a` must survive, every `m` must go.
    let mut b = Batch::new();
    for i in 0..50 {
        b.sadd(&k, DAY, &format!("m{i}"));
    }
    storage.apply(&b).unwrap();
    let adds = 200;
    std::thread::scope(|scope| {
        let k = &k;
        scope.spawn(move || {
            for i in 0..adds {
                let mut b = Batch::new();
                b.sadd(k, DAY, &format!("a{i}"));
                storage.apply(&b).unwrap();
            }
        });
        scope.spawn(move || {
            for round in 0..4 {
                for i in 0..50 {
                    storage.remove_members(k, &[format!("m{i}")]).unwrap();
                }
                if round < 3 {
                    std::thread::yield_now();
                }
            }
        });
    });
    let left: std::collections::BTreeSet<String> = storage.members(&k).unwrap().into_iter().collect();
    let want: std::collections::BTreeSet<String> = (0..adds).map(|i| format!("a{i}")).collect();
    assert_eq!(left, want);
}

/// Deleted keys read as missing; other keys stay.
pub fn delete_keys(storage: &dyn Storage) {
    let p = fresh_prefix("delete");
    let (h, s, keep) = (
        key(&p, "add", "event"),
        key(&p, "bmp", "ip"),
        key(&p, "add", "geo"),
    );
    let mut b = Batch::new();
    b.incr(&h, DAY, "x", Number::Int(1));
    b.hll_insert(&s, DAY, "v");
    b.incr(&keep, DAY, "x", Number::Int(1));
    storage.apply(&b).unwrap();
    storage
        .delete(&[h.clone(), s.clone(), format!("{p}:never")])
        .unwrap();
    assert!(storage.read_hash(&h).unwrap().is_empty());
    assert_eq!(storage.count(&[&s]).unwrap(), 0);
    assert_eq!(storage.read_hash(&keep).unwrap().len(), 1);
}

/// Retention: [`crate::retention::prune`] deletes day buckets older than `daily_days` and hour
/// buckets older than `hourly_days` (calendar days, today included), keeps the newer ones,
/// leaves other prefixes alone, keeps everything with 0, and a second prune finds nothing.
pub fn retention_prunes_old_buckets(storage: &dyn Storage) {
    use crate::retention::{prune, PruneReport};
    use traqq_core::key::{bucket_registry_key, key_set_key};

    let config = TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            ..TimeConfig::default()
        },
        ..sample_config()
    };
    let (p, other) = (fresh_prefix("retention"), fresh_prefix("retention_other"));
    let (g, g_other) = (
        OpGenerator::new(&config, &p).unwrap(),
        OpGenerator::new(&config, &other).unwrap(),
    );
    let calendar = *g.calendar();
    let today = 1_700_006_400 + 10 * 86_400; // a UTC midnight
    let now = today + 5 * 3_600;
    // Ten days of events, two hours each, written in one batch per prefix.
    let days: Vec<i64> = (0..10).map(|d| today - d * 86_400).collect();
    for gen in [&g, &g_other] {
        let mut builder = gen.batch();
        for (i, day) in days.iter().enumerate() {
            for (j, hour) in [1, 3].into_iter().enumerate() {
                let event = IncomingEvent::from_json(serde_json::json!({
                    "event": "view", "ip": format!("10.0.{i}.{j}"), "geo": "US", "offer": "o1",
                    "amount": 2.5, "ts": day + hour * 3_600,
                }))
                .unwrap();
                builder.add(&event, now).unwrap();
            }
        }
        storage.apply(&builder.finish()).unwrap();
    }
    let key_sets = |prefix: &str, kind: BucketKind, start: i64| {
        storage.members(&key_set_key(prefix, kind, start)).unwrap()
    };
    // Every bucket's data keys, as written, to check afterwards that they are really gone.
    let mut written: BTreeMap<(BucketKind, i64), Vec<String>> = BTreeMap::new();
    for day in &days {
        written.insert((BucketKind::Day, *day), key_sets(&p, BucketKind::Day, *day));
        for hour in [1, 3] {
            let h = day + hour * 3_600;
            written.insert((BucketKind::Hour, h), key_sets(&p, BucketKind::Hour, h));
        }
    }
    assert!(written.values().all(|keys| keys.len() >= 8), "{written:?}");
    let registered = storage.members(&bucket_registry_key(&p)).unwrap();
    assert_eq!(
        registered.len(),
        30,
        "10 day and 20 hour buckets registered: {registered:?}"
    );

    // 0 keeps everything.
    let forever = RetentionConfig::default();
    assert_eq!(
        prune(storage, &p, &calendar, &forever, now).unwrap(),
        PruneReport::default()
    );

    let retention = RetentionConfig {
        daily_days: 3,
        hourly_days: 1,
    };
    let report = prune(storage, &p, &calendar, &retention, now).unwrap();
    // Days kept: today, -1, -2. Hours kept: today's two.
    let kept = |kind: BucketKind, start: i64| match kind {
        BucketKind::Day => start >= today - 2 * 86_400,
        BucketKind::Hour | BucketKind::Quarter => start >= today,
    };
    let expired: Vec<&(BucketKind, i64)> = written.keys().filter(|(k, s)| !kept(*k, *s)).collect();
    assert_eq!(report.buckets, 7 + 18, "{report:?}");
    assert_eq!(report.buckets, expired.len());
    let expired_keys: usize = expired.iter().map(|b| written[b].len() + 1).sum();
    assert_eq!(report.keys, expired_keys, "{report:?}");
    for ((kind, start), keys) in &written {
        let set = key_sets(&p, *kind, *start);
        let dead = !kept(*kind, *start);
        assert_eq!(set.is_empty(), dead, "key set of {kind:?} bucket {start}");
        for key in keys {
            let empty = match key.split(':').nth(1) {
                Some("bmp") => storage.count(&[key]).unwrap() == 0,
                Some("top") => storage.top(key, 10).unwrap().is_empty(),
                _ => storage.read_hash(key).unwrap().is_empty(),
            };
            assert_eq!(empty, dead, "{key} after prune (expired: {dead})");
        }
    }
    let registered = storage.members(&bucket_registry_key(&p)).unwrap();
    assert_eq!(registered.len(), 3 + 2, "{registered:?}");
    // The other prefix is untouched; a second prune finds nothing.
    for day in &days {
        assert!(!key_sets(&other, BucketKind::Day, *day).is_empty());
    }
    assert_eq!(
        prune(storage, &p, &calendar, &retention, now).unwrap(),
        PruneReport::default()
    );
    // New writes after the prune register their buckets (today's day is known, the 05:00 hour
    // is new); a day later, day -2 and today's three hours expire.
    let again = g
        .event_batch(
            &IncomingEvent::parse_str(&format!(r#"{{"event":"view","ts":{now}}}"#)).unwrap(),
            now,
        )
        .unwrap();
    storage.apply(&again).unwrap();
    assert_eq!(storage.members(&bucket_registry_key(&p)).unwrap().len(), 6);
    assert_eq!(
        prune(storage, &p, &calendar, &retention, now + 86_400)
            .unwrap()
            .buckets,
        1 + 3
    );
}
