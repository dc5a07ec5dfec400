//! Scenarios for persistent backends (traqq-rocks, traqq-sled): the whole conformance suite
//! in each durability mode, reopening, restarts, a crash (a child process killed with SIGKILL),
//! eight writer threads, and automatic retention across reopens.
//!
//! Each scenario makes its own temp dir and takes an [`Open`]: how the backend opens (or
//! reopens) its store at a path in a durability mode. A backend runs them all, one `#[test]`
//! each, with [`persistent_tests!`](crate::persistent_tests):
//!
//! ```ignore
//! // traqq-rocks/tests/conformance.rs
//! fn open(path: &Path, sync: Durability) -> traqq_storage::Result<Box<dyn Storage>> {
//!     Ok(Box::new(RocksStorage::open(path, RocksConfig::with_sync(sync))?))
//! }
//!
//! traqq_storage::persistent_tests!(open);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use traqq_core::config::{AddValueConfig, MappingConfig, RetentionConfig, TimeConfig, TraqqConfig};
use traqq_core::result::{MetricData, QueryResult};

use crate::{Durability, Error, ManualClock, Result, Storage, Traqq};

mod crash;
mod retention;

pub use crash::{
    crash_child, sigkill_loses_no_acknowledged_batch_and_splits_none,
    sigkill_then_a_retry_of_every_batch_counts_each_event_once, CRASH_CHILD_ENV,
};
pub use retention::*;

/// Opens (or reopens) the backend's store at a path, in a durability mode.
pub type Open = dyn Fn(&Path, Durability) -> Result<Box<dyn Storage>>;

/// One `#[test]` per scenario of [`crate::conformance::persistent`], each against the store
/// that `$open` (a `fn(&Path, Durability) -> traqq_storage::Result<Box<dyn Storage>>`) opens in
/// its own temp dir. Invoke it once in a test file (at its root or in a module): the crash
/// scenario re-runs that test binary as its child, filtered to the generated `crash_child`.
#[macro_export]
macro_rules! persistent_tests {
    ($open:expr) => {
        #[test]
        fn conformance_suite_in_batch_mode() {
            $crate::conformance::persistent::conformance_suite_in(&$open, $crate::Durability::Batch);
        }

        #[test]
        fn conformance_suite_in_always_and_none_modes() {
            for sync in [$crate::Durability::Always, $crate::Durability::None] {
                $crate::conformance::persistent::conformance_suite_in(&$open, sync);
            }
        }

        #[test]
        fn restart_keeps_every_result_and_uniques_do_not_grow() {
            $crate::conformance::persistent::restart_keeps_every_result_and_uniques_do_not_grow(&$open);
        }

        #[test]
        fn other_prefixes_and_options_reopen_the_same_store() {
            $crate::conformance::persistent::other_prefixes_and_options_reopen_the_same_store(&$open);
        }

        #[test]
        fn a_locked_store_is_an_open_error_naming_the_path() {
            $crate::conformance::persistent::a_locked_store_is_an_open_error_naming_the_path(&$open);
        }

        #[test]
        fn a_corrupt_store_is_an_open_error_naming_the_path() {
            $crate::conformance::persistent::a_corrupt_store_is_an_open_error_naming_the_path(&$open);
        }

        #[test]
        fn eight_threads_recording_into_one_store_lose_nothing() {
            $crate::conformance::persistent::eight_threads_recording_into_one_store_lose_nothing(&$open);
        }

        #[test]
        fn expired_buckets_disappear_on_open_and_when_the_day_changes() {
            $crate::conformance::persistent::expired_buckets_disappear_on_open_and_when_the_day_changes(
                &$open,
            );
        }

        /// The crash scenario's child: records batches forever when `TRAQQ_CRASH_CHILD` is set;
        /// a no-op in a normal test run.
        #[test]
        fn crash_child() {
            $crate::conformance::persistent::crash_child(&$open);
        }

        #[test]
        fn sigkill_in_batch_mode_loses_no_acknowledged_batch_and_splits_none() {
            $crate::conformance::persistent::sigkill_loses_no_acknowledged_batch_and_splits_none(
                &$open,
                $crate::Durability::Batch,
                &$crate::conformance::persistent::test_name(module_path!(), "crash_child"),
            );
        }

        #[test]
        fn sigkill_then_a_retry_of_every_batch_counts_each_event_once() {
            $crate::conformance::persistent::sigkill_then_a_retry_of_every_batch_counts_each_event_once(
                &$open,
                &$crate::conformance::persistent::test_name(module_path!(), "crash_child"),
            );
        }

        #[test]
        fn event_ids_survive_a_restart() {
            $crate::conformance::persistent::event_ids_survive_a_restart(&$open);
        }

        #[test]
        fn sigkill_in_always_mode_loses_no_acknowledged_batch_and_splits_none() {
            $crate::conformance::persistent::sigkill_loses_no_acknowledged_batch_and_splits_none(
                &$open,
                $crate::Durability::Always,
                &$crate::conformance::persistent::test_name(module_path!(), "crash_child"),
            );
        }
    };
}

/// Bytes of the files below `dir` (a store's size on disk).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The libtest name of test function `name` in the module at `module_path` (`module_path!()`
/// of a test binary starts with the binary's crate name, which test names leave out).
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    }
}

/// The whole conformance suite ([`crate::conformance::run_all`]) against a fresh store in a
/// temp dir, opened in durability mode `sync`.
pub fn conformance_suite_in(open: &Open, sync: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db"), sync).unwrap();
    super::run_all(&*store);
}

/// A Monday midnight UTC, three days after the first test event day.
const NOW: i64 = 1_700_006_400 + 3 * 86_400;

/// A mapping touching every metric type, with hourly buckets.
fn config() -> TraqqConfig {
    TraqqConfig {
        time: TimeConfig {
            store_hourly: true,
            ..TimeConfig::default()
        },
        mapping: MappingConfig {
            bitmap: vec!["ip".into(), "geo".into()],
            add: vec!["event".into(), "event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into(), "event~ip".into()],
            distribution: Vec::new(),
        },
        ..TraqqConfig::default()
    }
}

/// `n` deterministic JSON events spread over the three days before [`NOW`], named `name`.
fn events(name: &str, seed: u64, n: usize) -> Vec<String> {
    let geos = ["US", "DE", "FR", "BR", "JP", "IN"];
    (0..n as u64)
        .map(|i| {
            let x = (seed.wrapping_mul(6_364_136_223_846_793_005))
                .wrapping_add(i.wrapping_mul(1_442_695_040_888_963_407));
            let ts = NOW - 3 * 86_400 + (x % (3 * 86_400)) as i64;
            format!(
                r#"{{"event":"{name}","ip":"10.{}.{}.{}","geo":"{}","amount":{}.25,"ts":{ts}}}"#,
                (x >> 8) % 4,
                (x >> 16) % 256,
                (x >> 24) % 256,
                geos[((x >> 32) % 6) as usize],
                (x >> 40) % 100,
            )
        })
        .collect()
}

/// An engine over `store` under prefix `app`, its clock at [`NOW`].
fn engine(store: Box<dyn Storage>) -> Traqq {
    Traqq::new(config(), store, "app")
        .unwrap()
        .with_clock(ManualClock::new(NOW))
}

/// The whole three-day query, daily and hourly.
fn everything(traqq: &Traqq) -> (QueryResult, QueryResult) {
    (
        traqq.query(NOW - 3 * 86_400, NOW).unwrap(),
        traqq.query_hourly(NOW - 3 * 86_400, NOW - 1).unwrap(),
    )
}

/// The merged count of `add/event` field `name` (0 when absent).
fn event_count(traqq: &Traqq, name: &str) -> i64 {
    let r = traqq.query(NOW - 3 * 86_400, NOW).unwrap();
    r.find_str("add/event")
        .first()
        .and_then(|m| match &m.result {
            MetricData::Hash(h) => h.get(name).copied(),
            _ => None,
        })
        .unwrap_or(0)
}

// --- Restart and reopen safety.

/// Events with ids (`[event] id_field`), the store reopened, the same ids sent again: they
/// are duplicates, and only the new ones count.
pub fn event_ids_survive_a_restart(open: &Open) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut config = config();
    config.event.id_field = Some("id".into());
    config.event.dedup_days = 5;
    let engine = |store| {
        Traqq::new(config.clone(), store, "app")
            .unwrap()
            .with_clock(ManualClock::new(NOW))
    };
    let lines = |ids: std::ops::Range<usize>| -> Vec<String> {
        ids.map(|i| {
            format!(
                r#"{{"event":"buy","id":"o{i}","ip":"10.0.0.{}","ts":{}}}"#,
                i % 200,
                NOW - 3_600 - i as i64
            )
        })
        .collect()
    };
    let first = engine(open(&path, Durability::Batch).unwrap());
    let out = first
        .record_json_lines(lines(0..100).iter().map(String::as_str))
        .unwrap();
    assert_eq!((out.recorded, out.duplicates.len()), (100, 0));
    drop(first);
    let second = engine(open(&path, Durability::Batch).unwrap());
    let out = second
        .record_json_lines(lines(50..150).iter().map(String::as_str))
        .unwrap();
    assert_eq!(
        (out.recorded, out.duplicates.len()),
        (50, 50),
        "ids 50..100 were stored before"
    );
    drop(second);
    let third = engine(open(&path, Durability::Batch).unwrap());
    assert_eq!(event_count(&third, "buy"), 150);
}

/// 3,000 events recorded and the store reopened: identical daily and hourly results; the same
/// events recorded again (the new process hashes them the same) leave the unique counts as
/// they were and double the counters.
pub fn restart_keeps_every_result_and_uniques_do_not_grow(open: &Open) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let lines = events("view", 7, 3_000);
    let before = {
        let traqq = engine(open(&path, Durability::Batch).unwrap());
        for chunk in lines.chunks(1_000) {
            let outcome = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
            assert_eq!(outcome.recorded, chunk.len());
        }
        everything(&traqq)
    };
    // Sanity: the result is not empty and counts uniques.
    let unique_ips = before.0.find_str("bmp/ip");
    assert!(
        matches!(unique_ips[0].result, MetricData::Count(n) if n > 1_000),
        "{unique_ips:?}"
    );

    let traqq = engine(open(&path, Durability::Batch).unwrap());
    let after = everything(&traqq);
    assert_eq!(after, before, "identical results after reopening");

    // The same values again (a new process hashes them the same): uniques stay, counters double.
    for chunk in lines.chunks(1_000) {
        traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
    }
    let again = everything(&traqq);
    for path in ["bmp/ip", "bmp/geo"] {
        assert_eq!(again.0.find_str(path), before.0.find_str(path), "{path} daily");
        assert_eq!(again.1.find_str(path), before.1.find_str(path), "{path} hourly");
    }
    assert_eq!(event_count(&traqq, "view"), 6_000);
}

/// One store reopened in each durability mode and shared under two prefixes: each prefix
/// sees only its own events, before and after another reopen.
pub fn other_prefixes_and_options_reopen_the_same_store(open: &Open) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = open(&path, Durability::Always).unwrap();
        let traqq = engine(store);
        traqq
            .record_json_lines(events("a", 1, 100).iter().map(String::as_str))
            .unwrap();
    }
    {
        let store: Arc<dyn Storage> = Arc::from(open(&path, Durability::None).unwrap());
        let shared: Arc<dyn Storage> = store.clone();
        let other = Traqq::with_shared_storage(config(), shared, "other")
            .unwrap()
            .with_clock(ManualClock::new(NOW));
        other
            .record_json_lines(events("b", 2, 50).iter().map(String::as_str))
            .unwrap();
        other.flush().unwrap();
        assert_eq!(event_count(&other, "b"), 50);
        assert_eq!(event_count(&other, "a"), 0, "prefixes do not see each other");
    }
    let traqq = engine(open(&path, Durability::Batch).unwrap());
    assert_eq!(event_count(&traqq, "a"), 100);
    assert_eq!(event_count(&traqq, "b"), 0);
}

/// Opening a store another handle holds open is [`Error::Open`] naming the path.
pub fn a_locked_store_is_an_open_error_naming_the_path(open: &Open) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _first = open(&path, Durability::Batch).unwrap();
    let err = open(&path, Durability::Batch).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// A file where the store's directory should be, and a store whose files (all but `LOCK`)
/// were overwritten with garbage, are each [`Error::Open`] naming the path.
pub fn a_corrupt_store_is_an_open_error_naming_the_path(open: &Open) {
    // A file where the store's directory should be.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").unwrap();
    let err = open(&file, Durability::Batch).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");

    // A store whose files were overwritten with garbage.
    let path = dir.path().join("db");
    {
        let traqq = engine(open(&path, Durability::Batch).unwrap());
        traqq
            .record_json_lines(events("a", 1, 100).iter().map(String::as_str))
            .unwrap();
    }
    for entry in std::fs::read_dir(&path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() && !p.ends_with("LOCK") {
            std::fs::write(&p, b"\x00garbage, not a database file\xff").unwrap();
        }
    }
    let err = open(&path, Durability::Batch).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

// --- Threads.

/// Eight threads recording 10 batches of 100 events each (and one shared event per batch)
/// into one store: exact per-thread and shared counts, and the float sums add up.
pub fn eight_threads_recording_into_one_store_lose_nothing(open: &Open) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Storage> = Arc::from(open(&dir.path().join("db"), Durability::Batch).unwrap());
    let traqq = Arc::new(
        Traqq::with_shared_storage(config(), store, "app")
            .unwrap()
            .with_clock(ManualClock::new(NOW)),
    );
    let (threads, batches, per_batch) = (8, 10, 100);
    std::thread::scope(|s| {
        for t in 0..threads {
            let traqq = &traqq;
            s.spawn(move || {
                for b in 0..batches {
                    let lines = events(&format!("t{t}"), (t * 1_000 + b) as u64, per_batch);
                    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
                    assert_eq!(out.recorded, per_batch);
                    // Every thread also bumps one shared counter.
                    traqq
                        .record_json(r#"{"event":"shared","ip":"1.1.1.1","geo":"US","ts":1700200000}"#)
                        .unwrap();
                }
            });
        }
    });
    for t in 0..threads {
        assert_eq!(
            event_count(&traqq, &format!("t{t}")),
            (batches * per_batch) as i64
        );
    }
    assert_eq!(event_count(&traqq, "shared"), (threads * batches) as i64);
    // The float sums add up exactly too: every amount is n + 0.25.
    let r = traqq.query(NOW - 3 * 86_400, NOW).unwrap();
    let summary = r.find_str("adv:i/event/amount");
    let want: f64 = (0..threads)
        .flat_map(|t| (0..batches).map(move |b| (t, b)))
        .flat_map(|(t, b)| events(&format!("t{t}"), (t * 1_000 + b) as u64, per_batch))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            v["amount"].as_f64().unwrap()
        })
        .sum();
    match &summary[0].result {
        MetricData::Summary { sum, count } => {
            assert_eq!(*count, (threads * batches * per_batch) as i64);
            assert!((sum - want).abs() < 1e-6 * want, "{sum} vs {want}");
        }
        other => panic!("{other:?}"),
    }
}
