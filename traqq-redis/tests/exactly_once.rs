//! Exactly-once ingest (`[event] id_field`) on Redis: two engines (as two `traqq serve`
//! processes would be) sharing one node or one cluster count each id once, also when they
//! receive the same ids at the same moment; on a cluster, a batch that fails after its ids were
//! claimed gives them back, so its retry counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use traqq_redis::RedisStorage;
use traqq_storage::conformance::fresh_prefix;
use traqq_storage::prelude::*;

fn config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into()],
            ..MappingConfig::default()
        },
        event: EventConfig {
            id_field: Some("id".into()),
            ..EventConfig::default()
        },
        ..TraqqConfig::default()
    }
}

fn lines(n: usize, now: i64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"event":"buy","id":"order-{i}","ip":"10.0.{}.{}","ts":{now}}}"#,
                i / 250,
                i % 250
            )
        })
        .collect()
}

fn buys(traqq: &Traqq, now: i64) -> i64 {
    let result = traqq.query(now, now).unwrap();
    result.days[0]
        .results
        .iter()
        .find(|r| r.metric_type == MetricType::Add && r.key == ["event"])
        .and_then(|r| match &r.result {
            MetricData::Hash(h) => h.get("buy").copied(),
            _ => None,
        })
        .unwrap_or(0)
}

/// Two engines on `connect()`'s store, four writers each, every writer sending every id.
fn two_engines_count_each_id_once(connect: impl Fn() -> RedisStorage) {
    let prefix = fresh_prefix("once");
    let engines: Vec<Traqq> = (0..2)
        .map(|_| Traqq::new(config(), connect(), &prefix).unwrap())
        .collect();
    let now = engines[0].now();
    let lines = lines(600, now);
    let start = std::sync::Barrier::new(8);
    let (recorded, duplicates) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (traqq, lines, start) = (&engines[w % 2], &lines, &start);
                s.spawn(move || {
                    start.wait();
                    let (mut recorded, mut duplicates) = (0, 0);
                    for chunk in lines.chunks(40 + w * 7) {
                        let out = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
                        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
                        recorded += out.recorded;
                        duplicates += out.duplicates.len();
                    }
                    (recorded, duplicates)
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert_eq!((recorded, duplicates), (600, 7 * 600));
    assert_eq!(buys(&engines[0], now), 600);
    assert_eq!(buys(&engines[1], now), 600);
    // A later retry of everything, by either engine: all duplicates.
    let again = engines[1]
        .record_json_lines(lines.iter().map(String::as_str))
        .unwrap();
    assert_eq!((again.recorded, again.duplicates.len()), (0, 600));
    assert_eq!(buys(&engines[0], now), 600);
}

#[test]
fn two_engines_on_one_node_count_each_id_once() {
    if common::single_url().is_none() {
        return;
    }
    two_engines_count_each_id_once(|| common::single().unwrap());
}

#[test]
fn two_engines_on_a_cluster_count_each_id_once() {
    if common::cluster_urls().is_none() {
        return;
    }
    two_engines_count_each_id_once(|| common::cluster().unwrap());
}

/// On a cluster the ids are claimed in their set's slot before the metrics are written in
/// theirs. When the metric write fails, the claims are taken back: the retry counts once.
#[test]
fn a_cluster_batch_that_fails_after_its_claims_gives_them_back() {
    let Some(storage) = common::cluster() else { return };
    let storage = Arc::new(storage);
    let prefix = fresh_prefix("unclaim");
    let traqq = Traqq::with_shared_storage(config(), storage.clone(), &prefix).unwrap();
    let now = traqq.now();
    let day = traqq.generator().calendar().day_start(now);
    // A metric key of the wrong type makes the metric step fail.
    let metric_key = storage.redis_key(&format!("{prefix}:add:d:{day}:event"));
    let urls = common::cluster_urls().unwrap();
    let client = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg(&metric_key)
        .arg("not a hash")
        .query::<()>(&mut conn)
        .unwrap();
    let lines = lines(5, now);
    let error = traqq
        .record_json_lines(lines.iter().map(String::as_str))
        .unwrap_err();
    assert!(error.to_string().contains("WRONGTYPE"), "{error}");
    redis::cmd("DEL").arg(&metric_key).query::<()>(&mut conn).unwrap();
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(
        (out.recorded, out.duplicates.len()),
        (5, 0),
        "the claims were given back"
    );
    assert_eq!(buys(&traqq, now), 5);
}
