//! Data written by traqq 0.2 or trk2 (key sets, no bucket registry) on a real Redis node:
//! `Traqq::register_buckets` (`traqq migrate`) registers its buckets, after which retention
//! prunes them like any other; before, it could not see them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use traqq_storage::conformance::fresh_prefix;
use traqq_storage::prelude::*;

#[test]
fn buckets_written_without_a_registry_are_registered_and_then_pruned() {
    let Some(url) = common::single_url() else { return };
    let store = common::single().unwrap();
    let prefix = fresh_prefix("old");
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    // What traqq 0.2 wrote for one event on 2023-11-14 (UTC): the metric and its day's key set.
    let day = 1_699_920_000;
    let metric = format!("{prefix}:add:d:{day}:event");
    let key_set = format!("{prefix}:k:d:{day}");
    redis::cmd("HINCRBY")
        .arg(&metric)
        .arg("click")
        .arg(1)
        .query::<()>(&mut conn)
        .unwrap();
    redis::cmd("SADD")
        .arg(&key_set)
        .arg(&metric)
        .query::<()>(&mut conn)
        .unwrap();

    let config = TraqqConfig {
        retention: RetentionConfig {
            daily_days: 7,
            hourly_days: 0,
        },
        ..TraqqConfig::default()
    };
    let now = day + 30 * 86_400;
    let traqq = Traqq::new(config, store, &prefix)
        .unwrap()
        .with_clock(ManualClock::new(now))
        .without_auto_prune();
    assert_eq!(
        traqq.prune(now).unwrap().buckets,
        0,
        "without a registry retention sees nothing"
    );
    assert_eq!(
        traqq.query(day, day).unwrap().find_str("add/event").len(),
        1,
        "queries do see it"
    );
    assert_eq!(traqq.register_buckets().unwrap(), Some(1));
    assert_eq!(traqq.register_buckets().unwrap(), Some(1), "idempotent");
    let report = traqq.prune(now).unwrap();
    assert_eq!(
        (report.buckets, report.keys),
        (1, 2),
        "the day's metric and its key set"
    );
    let left: i64 = redis::cmd("EXISTS")
        .arg(&metric)
        .arg(&key_set)
        .query(&mut conn)
        .unwrap();
    assert_eq!(left, 0);
}
