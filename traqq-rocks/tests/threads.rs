//! Eight threads recording into one store: exact totals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{event_count, events, open};
use traqq_storage::prelude::*;

#[test]
fn eight_threads_recording_into_one_store_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Storage> = Arc::new(open(&dir.path().join("db"), Durability::Batch).unwrap());
    let traqq = Arc::new(
        Traqq::with_shared_storage(common::config(), store, "app")
            .unwrap()
            .with_clock(ManualClock::new(common::NOW)),
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
    let r = traqq.query(common::NOW - 3 * 86_400, common::NOW).unwrap();
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
