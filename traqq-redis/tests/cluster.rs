//! Redis Cluster: metrics spread over the nodes, each metric's buckets share one slot, and
//! merged uniques over several days are true unions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashSet};

use traqq_redis::keys::slot;
use traqq_redis::{RedisConfig, RedisStorage};
use traqq_storage::prelude::*;

const DAY0: i64 = 1_700_006_400;
const DAYS: i64 = 5;

/// Every key of every node whose name contains `needle`, by node URL.
fn keys_by_node(urls: &[String], needle: &str) -> BTreeMap<String, Vec<String>> {
    urls.iter()
        .map(|url| {
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("*{needle}*"))
                    .arg("COUNT")
                    .arg(1_000)
                    .query(&mut c)
                    .unwrap();
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            (url.clone(), keys)
        })
        .collect()
}

#[test]
fn cluster_spreads_metrics_and_unions_days_correctly() {
    let Some(urls) = common::cluster_urls() else {
        return;
    };
    let storage = RedisStorage::connect(RedisConfig::cluster(urls.clone())).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let p = format!("clu{}x{nanos}", std::process::id());
    let config = TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into(), "geo".into()],
            add: vec!["event".into(), "event~geo".into()],
            top: vec!["geo".into(), "ip".into()],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    let traqq = Traqq::new(config, storage, &p).unwrap();

    // Day d sees IPs d*1000 .. d*1000+3000: overlapping windows, so the week's uniques are
    // far fewer than the sum of the days'.
    let geos = ["US", "DE", "FR", "BR"];
    let mut truth_all = HashSet::new();
    let mut truth_day = vec![HashSet::new(); DAYS as usize];
    let mut clicks = 0i64;
    for d in 0..DAYS {
        let lines: Vec<String> = (0..3_000)
            .map(|i| {
                let ip = format!("10.{}.{}.1", (d * 1_000 + i) / 256, (d * 1_000 + i) % 256);
                truth_all.insert(ip.clone());
                truth_day[d as usize].insert(ip.clone());
                let event = if i % 3 == 0 { "click" } else { "view" };
                clicks += i64::from(event == "click");
                format!(
                    r#"{{"event":"{event}","ip":"{ip}","geo":"{}","ts":{}}}"#,
                    geos[i as usize % 4],
                    DAY0 + d * 86_400 + i
                )
            })
            .collect();
        for chunk in lines.chunks(1_000) {
            let out = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
            assert_eq!(out.recorded, chunk.len());
        }
    }

    let result = traqq.query(DAY0, DAY0 + (DAYS - 1) * 86_400).unwrap();
    assert_eq!(result.days.len(), DAYS as usize);
    let merged = match result.find_str("bmp/ip")[0].result {
        MetricData::Count(n) => n,
        ref other => panic!("{other:?}"),
    };
    let want = truth_all.len() as f64;
    let sum_of_days: usize = truth_day.iter().map(HashSet::len).sum();
    assert!(
        (merged as f64 - want).abs() / want < 0.02,
        "merged {merged}, truth {want}"
    );
    assert!(
        merged < sum_of_days as u64 * 3 / 4,
        "a union, not the sum {sum_of_days}"
    );
    let per_day = result.find(FindOptions {
        metric_type: "bmp".into(),
        key: "ip".into(),
        add_key: None,
        merge: false,
    });
    assert_eq!(per_day.len(), DAYS as usize);
    for (r, t) in per_day.iter().zip(&truth_day) {
        let MetricData::Count(n) = r.result else { panic!() };
        assert!(
            (n as f64 - t.len() as f64).abs() / (t.len() as f64) < 0.02,
            "{n} vs {}",
            t.len()
        );
    }
    assert_eq!(
        result.find_str("add/event")[0].result,
        MetricData::Hash([("click".into(), clicks), ("view".into(), DAYS * 3_000 - clicks)].into())
    );
    assert_eq!(result.find_str("bmp/geo")[0].result, MetricData::Count(4));

    // The keys landed on more than one node; all buckets of one metric on the same one.
    let by_node = keys_by_node(&urls, &p);
    let busy = by_node.values().filter(|k| !k.is_empty()).count();
    assert!(busy >= 2, "keys on {busy} node(s): {by_node:?}");
    let bmp_nodes: Vec<&String> = by_node
        .iter()
        .filter(|(_, keys)| keys.iter().any(|k| k.starts_with(&format!("{{{p}:bmp:ip}}"))))
        .map(|(url, _)| url)
        .collect();
    assert_eq!(bmp_nodes.len(), 1, "{by_node:?}");
    let bmp_keys = by_node[bmp_nodes[0]]
        .iter()
        .filter(|k| k.starts_with(&format!("{{{p}:bmp:ip}}")))
        .count();
    assert_eq!(bmp_keys, DAYS as usize);

    // Our slot function agrees with the server's.
    let mut c = redis::Client::open(urls[0].as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    for keys in by_node.values() {
        for k in keys.iter().take(5) {
            let server: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(k).query(&mut c).unwrap();
            assert_eq!(server, slot(k.as_bytes()), "{k}");
        }
    }

    // A union across slots (two different metrics) goes through temporary keys, which are
    // gone afterwards.
    let storage = traqq.storage();
    let ip0 = format!("{p}:bmp:d:{DAY0}:ip");
    let geo0 = format!("{p}:bmp:d:{DAY0}:geo");
    assert_ne!(
        slot(storage_key(&ip0).as_bytes()),
        slot(storage_key(&geo0).as_bytes())
    );
    let n = storage.count(&[&ip0, &geo0]).unwrap() as f64;
    let want = (truth_day[0].len() + 4) as f64;
    assert!((n - want).abs() / want < 0.02, "{n} vs {want}");
    // A leaderboard union across slots (two metrics) adds up sets read whole.
    let (geo_top, ip_top) = (format!("{p}:top:d:{DAY0}:geo"), format!("{p}:top:d:{DAY0}:ip"));
    assert_ne!(
        slot(storage_key(&geo_top).as_bytes()),
        slot(storage_key(&ip_top).as_bytes())
    );
    let both = storage
        .read(&[Read::Top {
            keys: vec![geo_top, ip_top],
            limit: 5,
        }])
        .unwrap();
    // Day 0: 3000 events over 4 geos (750 each) and 3000 distinct IPs (1 each).
    assert_eq!(
        both,
        vec![ReadResult::Top(vec![
            ("BR".into(), 750.0),
            ("DE".into(), 750.0),
            ("FR".into(), 750.0),
            ("US".into(), 750.0),
            ("10.0.0.1".into(), 1.0),
        ])]
    );
    // Merged leaderboards over the days are exact (equal scores rank by name).
    let mut want_geo: Vec<(String, f64)> = geos
        .iter()
        .map(|g| ((*g).to_owned(), (DAYS * 750) as f64))
        .collect();
    want_geo.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(result.find_str("top/geo")[0].result, MetricData::Ranked(want_geo));
    let leftovers = keys_by_node(&urls, "traqq-union");
    assert!(leftovers.values().all(Vec::is_empty), "{leftovers:?}");
}

fn storage_key(key: &str) -> String {
    traqq_redis::KeyLayout::ClusterTagged.physical(key).into_owned()
}

/// (node id, "host:port", owned slot ranges) of every master, from `CLUSTER NODES`.
/// A master: node id, `host:port`, slot ranges.
type Master = (String, String, Vec<(u16, u16)>);

fn masters(url: &str) -> Vec<Master> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).unwrap();
    nodes
        .lines()
        .filter(|l| l.contains("master"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f[1].split('@').next().unwrap().to_owned();
            let ranges = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (r.parse().unwrap(), r.parse().unwrap()),
                })
                .collect();
            (f[0].to_owned(), addr, ranges)
        })
        .collect()
}

fn node(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn slot_migration_fails_batches_as_unavailable_and_never_double_counts() {
    let Some(urls) = common::cluster_urls() else {
        return;
    };
    let storage = RedisStorage::connect(RedisConfig::cluster(urls.clone())).unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let key = format!("mig{}x{nanos}:add:d:{DAY0}:event", std::process::id());
    let s = slot(storage.redis_key(&key).as_bytes());
    let mut one = Batch::new();
    one.incr(&key, (BucketKind::Day, DAY0), "n", Number::Int(1));
    for _ in 0..3 {
        storage.apply(&one).unwrap();
    }

    // Move the key's slot to another master, the way `redis-cli --cluster reshard` does.
    let all = masters(&urls[0]);
    let owner = all
        .iter()
        .find(|(_, _, r)| r.iter().any(|(a, b)| (*a..=*b).contains(&s)))
        .unwrap();
    let target = all.iter().find(|(id, _, _)| *id != owner.0).unwrap();
    let (mut from, mut to) = (node(&owner.1), node(&target.1));
    let setslot = |c: &mut redis::Connection, state: &str, id: &str| {
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(s)
            .arg(state)
            .arg(id)
            .query::<()>(c)
            .unwrap()
    };
    setslot(&mut to, "IMPORTING", &owner.0);
    setslot(&mut from, "MIGRATING", &target.0);
    let keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(s)
        .arg(1_000)
        .query(&mut from)
        .unwrap();
    let (host, port) = target.1.split_once(':').unwrap();
    redis::cmd("MIGRATE")
        .arg(host)
        .arg(port)
        .arg("")
        .arg(0)
        .arg(5_000)
        .arg("KEYS")
        .arg(&keys)
        .query::<()>(&mut from)
        .unwrap();
    for (_, addr, _) in &all {
        setslot(&mut node(addr), "NODE", &target.0);
    }

    // The first batch may meet the old owner's MOVED: an Unavailable error, nothing applied.
    // The client refreshes its slot map in the background; callers try again later.
    let (mut applied, mut refused) = (0, 0);
    let start = std::time::Instant::now();
    while applied < 5 && start.elapsed() < std::time::Duration::from_secs(20) {
        match storage.apply(&one) {
            Ok(()) => applied += 1,
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                refused += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    assert_eq!(applied, 5, "{refused} refusals");
    eprintln!("slot {s} moved: {refused} batch(es) refused as unavailable, then 5 applied");
    assert_eq!(
        storage.read_hash(&key).unwrap(),
        vec![("n".to_owned(), Number::Int(3 + 5))]
    );
    let on_target: i64 = redis::cmd("HGET")
        .arg(storage.redis_key(&key))
        .arg("n")
        .query(&mut to)
        .unwrap();
    assert_eq!(on_target, 8);
}

/// Distributions on a cluster: one metric's days share a slot (the layout), so the test puts
/// two writers' prefixes on different nodes and merges across them. Each prefix's days hold the
/// bins of a sketch of its raw values; a field-wise sum over the keys of both prefixes and every
/// day — read from two nodes — is the sketch of all values together.
#[test]
fn distributions_merge_across_nodes() {
    use traqq_core::distribution::{sketches_from_fields, DistSketch};
    use traqq_core::read::{Read, ReadResult};

    let Some(urls) = common::cluster_urls() else {
        return;
    };
    let storage: std::sync::Arc<dyn Storage> =
        std::sync::Arc::new(RedisStorage::connect(RedisConfig::cluster(urls.clone())).unwrap());
    let config = || TraqqConfig {
        mapping: MappingConfig {
            distribution: vec![DistributionConfig {
                key: "event~geo".into(),
                value_key: "ms".into(),
            }],
            ..MappingConfig::default()
        },
        ..TraqqConfig::default()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let node_of = |prefix: &str| -> String {
        let found = keys_by_node(&urls, &format!("{prefix}:dst:"));
        let nodes: Vec<&String> = found
            .iter()
            .filter(|(_, k)| !k.is_empty())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(nodes.len(), 1, "one metric's keys share a node: {found:?}");
        nodes[0].clone()
    };
    // Writers whose distribution keys live on two different nodes.
    let mut writers: Vec<(String, String)> = Vec::new();
    for i in 0..40 {
        let prefix = format!("dst{}x{nanos}x{i}", std::process::id());
        let traqq = Traqq::with_shared_storage(config(), storage.clone(), &prefix).unwrap();
        traqq
            .record_json(&format!(r#"{{"event":"probe","geo":"ZZ","ms":1,"ts":{DAY0}}}"#))
            .unwrap();
        let node = node_of(&prefix);
        if writers.iter().all(|(_, n)| *n != node) {
            writers.push((prefix, node));
        }
        if writers.len() == 2 {
            break;
        }
    }
    assert_eq!(writers.len(), 2, "no two prefixes on different nodes in 40 tries");

    let mut truth: BTreeMap<(usize, i64, &str), DistSketch> = BTreeMap::new();
    for (w, (prefix, _)) in writers.iter().enumerate() {
        let traqq = Traqq::with_shared_storage(config(), storage.clone(), prefix).unwrap();
        let lines: Vec<String> = (0..3_000i64)
            .map(|i| {
                let day = i % 3;
                let label = ["get~US", "put~DE"][(i % 2) as usize];
                let (event, geo) = label.split_once('~').unwrap();
                let ms = ((i * 7_919 + w as i64 * 13) % 5_000) as f64 / 4.0 - 50.0;
                truth.entry((w, day, label)).or_default().add(ms);
                format!(
                    r#"{{"event":"{event}","geo":"{geo}","ms":{ms},"ts":{}}}"#,
                    DAY0 + day * 86_400 + 1 + i
                )
            })
            .collect();
        for chunk in lines.chunks(1_000) {
            assert_eq!(
                traqq
                    .record_json_lines(chunk.iter().map(String::as_str))
                    .unwrap()
                    .recorded,
                chunk.len()
            );
        }
        // Per writer and day: exactly the bins of its values (plus the probe on day 0).
        let result = traqq.query(DAY0, DAY0 + 2 * 86_400).unwrap();
        for (day, bucket) in result.days.iter().enumerate() {
            let dst = bucket
                .results
                .iter()
                .find_map(|r| match &r.result {
                    MetricData::Quantiles(q) => Some(q),
                    _ => None,
                })
                .unwrap();
            for label in ["get~US", "put~DE"] {
                let got: Vec<_> = dst[label].sketch().unwrap().bins().collect();
                let want: Vec<_> = truth[&(w, day as i64, label)].bins().collect();
                assert_eq!(got, want, "writer {w} day {day} {label}");
            }
        }
    }
    let keys: Vec<String> = writers
        .iter()
        .flat_map(|(prefix, _)| {
            (0..3).map(move |d| format!("{prefix}:dst:d:{}:ms:event~geo", DAY0 + d * 86_400))
        })
        .collect();
    let Some(ReadResult::Hash(fields)) = storage.read(&[Read::Sum(keys)]).unwrap().pop() else {
        panic!("a sum read answers a hash")
    };
    let summed = sketches_from_fields(fields).unwrap();
    for label in ["get~US", "put~DE"] {
        let mut all = DistSketch::new();
        truth
            .iter()
            .filter(|((_, _, l), _)| *l == label)
            .for_each(|(_, s)| all.merge(s));
        let got: Vec<_> = summed[label].bins().collect();
        assert_eq!(got, all.bins().collect::<Vec<_>>(), "{label} over both nodes");
        assert_eq!(summed[label].count(), 3_000);
    }
}
