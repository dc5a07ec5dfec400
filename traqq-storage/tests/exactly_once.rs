//! Exactly-once ingest (`[event] id_field`) through the engine, on the memory store and the
//! conformance fault injector. Every backend runs the store's half in
//! `traqq_storage::conformance::claims`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proptest::prelude::*;
use traqq_storage::conformance::Faulty;
use traqq_storage::prelude::*;

/// Midnight UTC, Monday 2023-11-20, and an hour into it (the engine's clock).
const DAY0: i64 = 1_700_438_400;
const NOW: i64 = DAY0 + 3_600;
const DAY: i64 = 86_400;

fn config() -> TraqqConfig {
    TraqqConfig {
        mapping: MappingConfig {
            bitmap: vec!["ip".into()],
            add: vec!["event".into(), "event~geo".into()],
            add_value: vec![AddValueConfig {
                key: "event".into(),
                add_key: "amount".into(),
            }],
            top: vec!["geo".into()],
            distribution: Vec::new(),
        },
        event: EventConfig {
            id_field: Some("id".into()),
            ..EventConfig::default()
        },
        ..TraqqConfig::default()
    }
}

fn engine(store: Arc<dyn Storage>, now: i64) -> (Traqq, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now));
    let traqq = Traqq::with_shared_storage(config(), store, "x")
        .unwrap()
        .with_clock(Arc::clone(&clock));
    (traqq, clock)
}

fn event(id: &str, ts: i64) -> String {
    format!(
        r#"{{"event":"buy","id":"{id}","geo":"g{}","ip":"10.0.0.{}","amount":2,"ts":{ts}}}"#,
        id.len() % 3,
        id.len()
    )
}

/// `add:event` `buy` on the day of `ts`.
fn buys(traqq: &Traqq, ts: i64) -> i64 {
    let days = traqq.query(ts, ts).unwrap();
    days.days[0]
        .results
        .iter()
        .find(|r| r.metric_type == MetricType::Add && r.key == ["event"])
        .and_then(|r| match &r.result {
            MetricData::Hash(h) => h.get("buy").copied(),
            _ => None,
        })
        .unwrap_or(0)
}

#[test]
fn an_id_counts_once_within_a_batch_across_batches_and_as_a_single_record() {
    let (traqq, _) = engine(Arc::new(MemoryStorage::new()), NOW);
    let ts = DAY0 + 60;
    let lines = [event("a", ts), event("b", ts), event("a", ts), event("c", ts)];
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!((out.recorded, out.duplicates.clone()), (3, vec![2]));
    let lines = [event("c", ts), event("d", ts), event("b", ts)];
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!((out.recorded, out.duplicates.clone()), (1, vec![0, 2]));
    assert_eq!(out.report().duplicates, 2);
    assert_eq!(traqq.record_json(&event("d", ts)).unwrap(), Recorded::Duplicate);
    assert_eq!(traqq.record_json(&event("e", ts)).unwrap(), Recorded::Counted);
    assert_eq!(buys(&traqq, ts), 5, "a b c d e");
    // An integer id and its decimal text are one id.
    assert_eq!(
        traqq
            .record_json(&format!(r#"{{"event":"buy","id":7,"ts":{ts}}}"#))
            .unwrap(),
        Recorded::Counted
    );
    assert_eq!(traqq.record_json(&event("7", ts)).unwrap(), Recorded::Duplicate);
    // Events without an id count every time.
    let plain = format!(r#"{{"event":"buy","ts":{ts}}}"#);
    traqq.record_json(&plain).unwrap();
    traqq.record_json(&plain).unwrap();
    assert_eq!(buys(&traqq, ts), 8);
}

#[test]
fn a_bad_id_rejects_its_event_only() {
    let (traqq, _) = engine(Arc::new(MemoryStorage::new()), NOW);
    let ts = DAY0 + 60;
    let lines = [
        format!(r#"{{"event":"buy","id":"","ts":{ts}}}"#),
        format!(r#"{{"event":"buy","id":1.5,"ts":{ts}}}"#),
        format!(r#"{{"event":"buy","id":"{}","ts":{ts}}}"#, "x".repeat(300)),
        event("ok", ts),
        r#"{"event":"buy","id":"late","ts":"soon"}"#.to_string(),
    ];
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(out.recorded, 1);
    let errors: Vec<(usize, String)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.error.to_string()))
        .collect();
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1, 2, 4]);
    assert!(
        errors[0]
            .1
            .contains("invalid event id in field \"id\": it is empty"),
        "{errors:?}"
    );
    assert!(errors[1].1.contains("1.5 is not an integer"), "{errors:?}");
    assert!(
        errors[2].1.contains("more than limits.max_value_length"),
        "{errors:?}"
    );
    assert!(errors[3].1.contains("invalid event time"), "{errors:?}");
    let single = traqq.record_json(r#"{"event":"buy","id":false}"#).unwrap_err();
    assert!(
        single.to_string().contains("\"id\": false is a boolean"),
        "{single}"
    );
}

#[test]
fn a_batch_the_store_refused_is_not_marked_and_its_retry_counts() {
    let store = Arc::new(Faulty::new(MemoryStorage::new()));
    let (traqq, _) = engine(store.clone(), NOW);
    let ts = DAY0 + 60;
    let lines = [event("r1", ts), event("r2", ts)];
    // A first write, so the engine's one-time reads (extra zones) are behind it and the
    // refused batch below reaches the store.
    assert_eq!(traqq.record_json(&event("r0", ts)).unwrap(), Recorded::Counted);
    store.set_down(true);
    assert!(traqq.record_json_lines(lines.iter().map(String::as_str)).is_err());
    store.set_down(false);
    let out = traqq.record_json_lines(lines.iter().map(String::as_str)).unwrap();
    assert_eq!((out.recorded, out.duplicates.len()), (2, 0));
    // A batch refused for its contents takes its ids back too.
    store.refuse_keys_containing(Some(":add:"));
    assert!(traqq.record_json(&event("r3", ts)).is_err());
    store.refuse_keys_containing(None);
    assert_eq!(traqq.record_json(&event("r3", ts)).unwrap(), Recorded::Counted);
    assert_eq!(buys(&traqq, ts), 4);
    assert!(store.applies.load(Ordering::SeqCst) >= 5);
}

#[test]
fn ids_are_remembered_for_dedup_days_then_their_sets_are_pruned() {
    let store = Arc::new(MemoryStorage::new());
    let (traqq, clock) = engine(store.clone(), NOW);
    let yesterday = DAY0 - DAY + 60;
    let older = DAY0 - 2 * DAY + 60;
    for _ in 0..2 {
        traqq.record_json(&event("y", yesterday)).unwrap();
        traqq.record_json(&event("o", older)).unwrap();
    }
    assert_eq!(buys(&traqq, yesterday), 1, "yesterday is within dedup_days = 2");
    assert_eq!(buys(&traqq, older), 2, "older days are not deduplicated");
    let id_sets = |store: &MemoryStorage| {
        store
            .read(&[Read::Members("x:k:ids".into())])
            .map(|mut r| match r.pop() {
                Some(ReadResult::Members(m)) => m.len(),
                _ => 0,
            })
            .unwrap()
    };
    assert_eq!(id_sets(&store), 1, "only yesterday's set exists");
    // Two days later yesterday's set is past the window: the first write's prune drops it.
    clock.set(NOW + 2 * DAY);
    traqq.record_json(&event("t", NOW + 2 * DAY)).unwrap();
    let report = traqq.last_auto_prune().unwrap().outcome.unwrap();
    assert_eq!(report.id_sets, 1, "{report:?}");
    assert_eq!(id_sets(&store), 1, "today's set");
    assert!(store
        .read(&[Read::Members(format!("x:ids:d:{}", DAY0 - DAY))])
        .map(|r| r == vec![ReadResult::Members(Vec::new())])
        .unwrap());
}

#[test]
fn concurrent_writers_with_the_same_ids_count_each_once() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let (traqq, _) = engine(store, NOW);
    let ts = DAY0 + 60;
    let lines: Vec<String> = (0..500).map(|i| event(&format!("id{i}"), ts)).collect();
    let start = std::sync::Barrier::new(4);
    let duplicates: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (traqq, lines, start) = (&traqq, &lines, &start);
                s.spawn(move || {
                    start.wait();
                    let mut duplicates = 0;
                    // Each writer sends every id, in batches of its own size.
                    for chunk in lines.chunks(7 + t * 13) {
                        let out = traqq.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
                        duplicates += out.duplicates.len();
                    }
                    duplicates
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(duplicates, 3 * 500);
    assert_eq!(buys(&traqq, ts), 500);
}

/// Everything the store answers for the test's range, as comparable text.
fn snapshot(traqq: &Traqq) -> BTreeMap<String, String> {
    let result = traqq.query(DAY0 - DAY, DAY0).unwrap();
    let mut out = BTreeMap::new();
    for day in result.days {
        for r in day.results {
            out.insert(
                format!("{}:{:?}:{:?}", day.timestamp, r.metric_type, r.key),
                format!("{:?}", r.result),
            );
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Recording any interleaving of a multiset of events with ids, with arbitrary duplication
    /// and batch boundaries, gives the same store as recording each distinct id once.
    #[test]
    fn any_duplication_and_batching_gives_the_store_of_each_id_once(
        ids in prop::collection::vec((0u8..40, any::<bool>()), 1..80),
        cuts in prop::collection::vec(1usize..12, 1..40),
    ) {
        // An id always stands for the same event (a retry resends the same event).
        let line = |id: u8, yesterday: bool| {
            let ts = if yesterday { DAY0 - DAY + 60 } else { DAY0 + 60 };
            let ts = ts + i64::from(id) * 60;
            event(&format!("e{id}"), ts)
        };
        let lines: Vec<String> = ids.iter().map(|&(id, y)| line(id, y && id % 2 == 0)).collect();
        let (retried, _) = engine(Arc::new(MemoryStorage::new()), NOW);
        let mut rest = lines.as_slice();
        let mut sizes = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            retried.record_json_lines(chunk.iter().map(String::as_str)).unwrap();
            rest = tail;
        }
        let (once, _) = engine(Arc::new(MemoryStorage::new()), NOW);
        let mut distinct: Vec<&String> = Vec::new();
        for l in &lines {
            if !distinct.contains(&l) {
                distinct.push(l);
            }
        }
        for l in distinct {
            once.record_json(l).unwrap();
        }
        prop_assert_eq!(snapshot(&retried), snapshot(&once));
    }
}
