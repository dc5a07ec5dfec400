//! Restart and reopen safety against real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{engine, event_count, events, everything, open};
use traqq_storage::prelude::*;
use traqq_storage::Error;

#[test]
fn restart_keeps_every_result_and_uniques_do_not_grow() {
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

#[test]
fn other_prefixes_and_options_reopen_the_same_store() {
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
        let store = std::sync::Arc::new(open(&path, Durability::None).unwrap());
        let shared: std::sync::Arc<dyn Storage> = store.clone();
        let other = Traqq::with_shared_storage(common::config(), shared, "other")
            .unwrap()
            .with_clock(ManualClock::new(common::NOW));
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

#[test]
fn a_locked_store_is_an_open_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _first = open(&path, Durability::Batch).unwrap();
    let err = open(&path, Durability::Batch).unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn a_corrupt_store_is_an_open_error_naming_the_path() {
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
