//! What Redis users see: the documented keys hold the expected values (read back with a plain
//! Redis connection), retention sets `EXPIREAT`, and the store works inside a tokio runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use redis::Commands;
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;

/// 2023-11-15 00:00 UTC.
const DAY: i64 = 1_700_006_400;

fn unique_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}{}x{}", std::process::id(), nanos % 1_000_000_000)
}

fn mapping() -> MappingConfig {
    MappingConfig {
        bitmap: vec!["ip".into()],
        add: vec!["event".into(), "geo~event".into()],
        add_value: vec![AddValueConfig {
            key: "event".into(),
            add_key: "amount".into(),
        }],
        top: vec!["geo".into()],
        distribution: Vec::new(),
    }
}

const EVENTS: [&str; 3] = [
    r#"{"event":"click","ip":"1.1.1.1","geo":"US","amount":2.5,"ts":1700010000}"#,
    r#"{"event":"click","ip":"1.1.1.2","geo":"US","amount":1,"ts":1700020000}"#,
    r#"{"event":"view","ip":"1.1.1.1","geo":"DE","ts":1700030000}"#,
];

fn hgetall(conn: &mut redis::Connection, key: &str) -> BTreeMap<String, String> {
    conn.hgetall(key).unwrap()
}

#[test]
fn documented_keys_hold_the_expected_values() {
    let Some(url) = common::single_url() else { return };
    let p = unique_prefix("layout");
    let traqq = Traqq::new(
        TraqqConfig {
            mapping: mapping(),
            ..TraqqConfig::default()
        },
        RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap(),
        &p,
    )
    .unwrap();
    let out = traqq.record_json_lines(EVENTS).unwrap();
    assert_eq!((out.recorded, out.rejected.len()), (3, 0));

    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let s = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        hgetall(&mut conn, &format!("{p}:add:d:{DAY}:event")),
        s(&[("click", "2"), ("view", "1")])
    );
    assert_eq!(
        hgetall(&mut conn, &format!("{p}:add:d:{DAY}:event~geo")),
        s(&[("click~US", "2"), ("view~DE", "1")]),
        "patterns are stored with sorted parts"
    );
    assert_eq!(
        hgetall(&mut conn, &format!("{p}:adv:d:{DAY}:amount:event")),
        s(&[("click", "3.5")])
    );
    assert_eq!(
        hgetall(&mut conn, &format!("{p}:adv:d:{DAY}:amount:event:i")),
        s(&[("count", "2"), ("sum", "3.5")])
    );
    assert_eq!(
        hgetall(&mut conn, &format!("{p}:adv:d:{DAY}:amount:event:c")),
        s(&[("click", "2")]),
        "per-label counts"
    );
    let uniques: u64 = redis::cmd("PFCOUNT")
        .arg(format!("{p}:bmp:d:{DAY}:ip"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(uniques, 2);
    let top: Vec<(String, f64)> = conn
        .zrevrange_withscores(format!("{p}:top:d:{DAY}:geo"), 0, -1)
        .unwrap();
    assert_eq!(top, vec![("US".to_owned(), 2.0), ("DE".to_owned(), 1.0)]);
    let members: BTreeSet<String> = conn.smembers(format!("{p}:k:d:{DAY}")).unwrap();
    let want: BTreeSet<String> = [
        "bmp:d:{DAY}:ip",
        "add:d:{DAY}:event",
        "add:d:{DAY}:event~geo",
        "adv:d:{DAY}:amount:event",
        "adv:d:{DAY}:amount:event:i",
        "adv:d:{DAY}:amount:event:c",
        "top:d:{DAY}:geo",
    ]
    .iter()
    .map(|k| format!("{p}:{}", k.replace("{DAY}", &DAY.to_string())))
    .collect();
    assert_eq!(members, want);
    // No retention configured: nothing expires.
    let ttl: i64 = conn.ttl(format!("{p}:add:d:{DAY}:event")).unwrap();
    assert_eq!(ttl, -1);

    // And the engine reads the same values back.
    let r = traqq.query(DAY, DAY).unwrap();
    assert_eq!(r.find_str("bmp/ip")[0].result, MetricData::Count(2));
    assert_eq!(
        r.find_str("top/geo")[0].result,
        MetricData::Ranked(vec![("US".into(), 2.0), ("DE".into(), 1.0)])
    );
    assert_eq!(
        r.find_str("adv:i/event/amount")[0].result,
        MetricData::Summary { sum: 3.5, count: 2 }
    );
}

#[test]
fn retention_sets_expireat_from_the_bucket_start() {
    let Some(url) = common::single_url() else { return };
    let retention = RetentionConfig {
        daily_days: 30,
        hourly_days: 2,
    };
    let config = TraqqConfig {
        mapping: mapping(),
        time: TimeConfig {
            store_hourly: true,
            ..TimeConfig::default()
        },
        retention,
        ..TraqqConfig::default()
    };
    let p = unique_prefix("retention");
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str()).with_retention(retention)).unwrap();
    let traqq = Traqq::new(config, storage, &p).unwrap();
    let now = traqq.now();
    let line = format!(
        r#"{{"event":"click","ip":"1.2.3.4","geo":"US","amount":1,"ts":{}}}"#,
        now - 3_600
    );
    let event = IncomingEvent::parse_str(&line).unwrap();
    let batch = traqq.generator().event_batch(&event, now).unwrap();
    traqq.storage().apply(&batch).unwrap();

    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let (mut days, mut hours) = (0, 0);
    for (key, entry) in batch.iter() {
        let keep = match entry.bucket {
            BucketKind::Day => {
                days += 1;
                30
            }
            BucketKind::Hour | BucketKind::Quarter => {
                hours += 1;
                2
            }
        };
        let at: i64 = redis::cmd("EXPIRETIME").arg(key).query(&mut conn).unwrap();
        assert_eq!(at, entry.bucket_start + (keep + 1) * 86_400, "{key}");
    }
    assert!(days >= 6 && hours >= 6, "{days} day keys, {hours} hour keys");

    // A backfill older than the retention is dropped by Redis at once.
    let line = format!(r#"{{"event":"click","ip":"1.2.3.4","ts":{}}}"#, now - 40 * 86_400);
    let old = IncomingEvent::parse_str(&line).unwrap();
    let batch = traqq.generator().event_batch(&old, now).unwrap();
    traqq.storage().apply(&batch).unwrap();
    for (key, _) in batch.iter() {
        let exists: bool = conn.exists(key).unwrap();
        assert!(!exists, "{key} is past retention");
    }
}

#[test]
fn works_inside_tokio_runtimes() {
    let Some(url) = common::single_url() else { return };
    let key = format!("{}:add:d:{DAY}:event", unique_prefix("tokio"));
    let mut b = Batch::new();
    b.incr(&key, (BucketKind::Day, DAY), "x", Number::Int(1));

    // Straight from async code on a current-thread runtime: no "runtime within a runtime"
    // panic, and dropping the store there is fine too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
        storage.apply(&b).unwrap();
        assert_eq!(
            storage.read_hash(&key).unwrap(),
            vec![("x".to_owned(), Number::Int(1))]
        );
        drop(storage);
    });

    // The recommended way on a multi-thread runtime: spawn_blocking.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let storage = std::sync::Arc::new(RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap());
    let (s, k) = (storage.clone(), key.clone());
    let got = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            s.apply(&b).unwrap();
            s.read_hash(&k).unwrap()
        })
        .await
        .unwrap()
    });
    assert_eq!(got, vec![("x".to_owned(), Number::Int(2))]);
    drop(rt);
    assert_eq!(storage.read_hash(&key).unwrap()[0].1, Number::Int(2));
}

#[test]
fn bad_urls_fail_with_errors_naming_them() {
    let e = RedisStorage::connect(RedisConfig::single("http://:hunter2@localhost:6380")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("rediss://") && msg.contains("storage.url") && !msg.contains("hunter2"),
        "{msg}"
    );
    // Nobody listens there: a prompt Open error, not a hang (with TLS too).
    let port = common::free_port();
    for scheme in ["redis", "rediss"] {
        let mut c = RedisConfig::single(format!("{scheme}://:hunter2@127.0.0.1:{port}/"));
        c.connect_timeout_ms = 300;
        c.response_timeout_ms = 300;
        let e = RedisStorage::connect(c).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, traqq_storage::Error::Open { .. })
                && msg.contains(&port.to_string())
                && !msg.contains("hunter2"),
            "{msg}"
        );
    }
}

#[test]
fn wrong_types_are_errors_naming_the_key() {
    let Some(storage) = common::single() else { return };
    let p = unique_prefix("wrongtype");
    let key = format!("{p}:add:d:{DAY}:event");
    let mut b = Batch::new();
    b.incr(&key, (BucketKind::Day, DAY), "x", Number::Int(1));
    storage.apply(&b).unwrap();
    // A batch whose commands for one key hit a key of another type: the error names that
    // key, whichever position its commands had in the transaction.
    let others: Vec<String> = (0..5).map(|i| format!("{p}:add:d:{DAY}:other{i}")).collect();
    let mut bad = Batch::new();
    for o in &others {
        for f in ["a", "b", "c"] {
            bad.incr(o, (BucketKind::Day, DAY), f, Number::Int(1));
        }
    }
    bad.hll_insert(&key, (BucketKind::Day, DAY), "v");
    let e = storage.apply(&bad).unwrap_err();
    assert!(matches!(e, traqq_storage::Error::Backend { .. }), "{e}");
    assert!(
        e.to_string().contains("WRONGTYPE") && e.to_string().contains(&format!("{key:?}")),
        "{e}"
    );
    assert!(e.to_string().contains("nothing of this batch was applied"), "{e}");
    let e = storage.count(&[&key]).unwrap_err();
    assert!(
        e.to_string().contains(&key) && e.to_string().contains("WRONGTYPE"),
        "{e}"
    );
    // Types are checked before anything is written: nothing of the refused batch counted,
    // the hash is untouched, and the store still works.
    assert_eq!(
        storage.read_hash(&key).unwrap(),
        vec![("x".to_owned(), Number::Int(1))]
    );
    for o in &others {
        assert!(storage.read_hash(o).unwrap().is_empty(), "{o} was written");
    }
    let mut fixed = Batch::new();
    fixed.incr(&others[0], (BucketKind::Day, DAY), "a", Number::Int(5));
    storage.apply(&fixed).unwrap();
    assert_eq!(
        storage.read_hash(&others[0]).unwrap(),
        vec![("a".to_owned(), Number::Int(5))]
    );
}

#[test]
fn a_flushed_script_cache_is_reloaded_and_counts_once() {
    // Its own server: a SCRIPT FLUSH on the shared one would race the other tests' batches.
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = common::OwnServer::durable(common::free_port(), dir.path(), &[]) else {
        return;
    };
    let url = server.url();
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
    let key = format!("{}:add:d:{DAY}:event", unique_prefix("noscript"));
    let mut b = Batch::new();
    b.incr(&key, (BucketKind::Day, DAY), "x", Number::Int(3));
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // As after a restart or a failover: the server no longer knows the batch script.
    for _ in 0..2 {
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut conn).unwrap();
        storage.apply(&b).unwrap();
    }
    storage.apply(&b).unwrap();
    assert_eq!(hgetall(&mut conn, &key).get("x").map(String::as_str), Some("9"));
}

#[test]
fn large_parts_are_applied_whole() {
    let Some(url) = common::single_url() else { return };
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
    let p = unique_prefix("large");
    let (hll, set, hash, top) = (
        format!("{p}:bmp:d:{DAY}:ip"),
        format!("{p}:k:d:{DAY}"),
        format!("{p}:add:d:{DAY}:event"),
        format!("{p}:top:d:{DAY}:geo"),
    );
    // More values per key than one Lua call takes at once (the script sends them in chunks).
    let n = 10_000;
    let mut b = Batch::new();
    for i in 0..n {
        let v = format!("v{i}");
        b.hll_insert(&hll, (BucketKind::Day, DAY), &v);
        b.sadd(&set, (BucketKind::Day, DAY), &v);
        b.incr(&hash, (BucketKind::Day, DAY), &v, Number::Int(i));
        b.zincr(&top, (BucketKind::Day, DAY), &v, 0.5);
    }
    storage.apply(&b).unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let members: usize = conn.scard(&set).unwrap();
    let fields: usize = conn.hlen(&hash).unwrap();
    let scores: usize = conn.zcard(&top).unwrap();
    let last: i64 = conn.hget(&hash, format!("v{}", n - 1)).unwrap();
    let score: f64 = conn.zscore(&top, "v17").unwrap();
    assert_eq!(
        (members, fields, scores, last, score),
        (10_000, 10_000, 10_000, n - 1, 0.5)
    );
    let uniques: u64 = redis::cmd("PFCOUNT").arg(&hll).query(&mut conn).unwrap();
    assert!((9_800..=10_200).contains(&uniques), "{uniques}");
    let _: () = conn.del(&[&hll, &set, &hash, &top]).unwrap();
}

#[test]
fn a_command_refused_after_the_type_check_names_its_key() {
    let Some(url) = common::single_url() else { return };
    let storage = RedisStorage::connect(RedisConfig::single(url.as_str())).unwrap();
    let p = unique_prefix("refused");
    let hll = format!("{p}:bmp:d:{DAY}:ip");
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    // A string passes the type check (HyperLogLogs are strings) but is no HyperLogLog.
    let _: () = conn.set(&hll, "not a sketch").unwrap();
    let mut b = Batch::new();
    b.hll_insert(&hll, (BucketKind::Day, DAY), "1.2.3.4");
    let e = storage.apply(&b).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, traqq_storage::Error::Backend { .. }), "{msg}");
    assert!(
        msg.contains(&format!("{hll:?}")) && msg.contains("HyperLogLog") && msg.contains("roll back"),
        "{msg}"
    );
    let kept: String = conn.get(&hll).unwrap();
    assert_eq!(kept, "not a sketch");
    let _: () = conn.del(&hll).unwrap();
}
