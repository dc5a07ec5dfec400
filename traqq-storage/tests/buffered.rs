//! The write buffer over the memory store: when buffered operations reach the store, and that
//! nothing is lost or counted twice on the way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use traqq_storage::conformance::Faulty;
use traqq_storage::prelude::*;
use traqq_storage::traqq_core::batch::{Batch, Number};
use traqq_storage::traqq_core::bucket::BucketKind;
use traqq_storage::traqq_core::read::Read;
use traqq_storage::{BufferConfig, BufferedStorage};

const DAY: (BucketKind, i64) = (BucketKind::Day, 1_700_000_000 - 1_700_000_000 % 86_400);
const LONG: Duration = Duration::from_secs(3600);

fn buffered(
    store: Arc<MemoryStorage>,
    max_delay: Duration,
    max_ops: usize,
) -> BufferedStorage<Arc<MemoryStorage>> {
    BufferedStorage::new(store, BufferConfig { max_delay, max_ops })
}

/// A batch adding 1 to `fields` distinct fields `f0…` of hash `key`.
fn batch(key: &str, fields: usize) -> Batch {
    let mut b = Batch::new();
    for i in 0..fields {
        b.incr(key, DAY, &format!("f{i}"), Number::Int(1));
    }
    b
}

/// Sum of a hash's integer fields, read straight from the store behind the buffer.
fn total(store: &MemoryStorage, key: &str) -> i64 {
    store
        .read_hash(key)
        .unwrap()
        .iter()
        .map(|(_, n)| n.as_i64())
        .sum()
}

/// Polls `check` for up to 10 s (the background writer runs on its own time).
fn eventually(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn passes_the_conformance_suite_with_a_long_delay_and_with_tiny_batches() {
    // Long delay: every read must write the buffer first to see the suite's own writes.
    traqq_storage::conformance::run_all(&buffered(Arc::new(MemoryStorage::new()), LONG, 1_000_000));
    // One operation per write: the background writer races the suite's writers and readers.
    traqq_storage::conformance::run_all(&buffered(
        Arc::new(MemoryStorage::new()),
        Duration::from_millis(1),
        1,
    ));
}

#[test]
fn applied_batches_wait_in_the_buffer_until_a_flush_and_are_coalesced() {
    let store = Arc::new(MemoryStorage::new());
    let b = buffered(Arc::clone(&store), LONG, 1_000_000);
    for _ in 0..10 {
        b.apply(&batch("p:add:d:1:event", 50)).unwrap();
    }
    assert_eq!(
        total(&store, "p:add:d:1:event"),
        0,
        "nothing reaches the store before it is due"
    );
    assert_eq!(
        b.pending_ops(),
        50,
        "ten batches on the same 50 fields coalesce to 50 operations"
    );
    b.flush().unwrap();
    assert_eq!(b.pending_ops(), 0);
    assert_eq!(total(&store, "p:add:d:1:event"), 500);
    let fields = store.read_hash("p:add:d:1:event").unwrap();
    assert_eq!(fields.len(), 50);
    assert!(fields.iter().all(|(_, n)| *n == Number::Int(10)), "{fields:?}");
}

#[test]
fn reads_and_deletes_through_the_buffer_see_its_writes() {
    let store = Arc::new(MemoryStorage::new());
    let b = buffered(Arc::clone(&store), LONG, 1_000_000);
    b.apply(&batch("p:add:d:1:a", 3)).unwrap();
    assert_eq!(b.read_hash("p:add:d:1:a").unwrap().len(), 3);
    b.apply(&batch("p:add:d:1:b", 2)).unwrap();
    b.delete(&["p:add:d:1:b".to_owned()]).unwrap();
    b.flush().unwrap();
    assert!(
        store.read_hash("p:add:d:1:b").unwrap().is_empty(),
        "a buffered write must not outlive a delete of its key"
    );
    assert_eq!(total(&store, "p:add:d:1:a"), 3);
}

#[test]
fn the_background_writer_writes_the_buffer_once_it_is_max_delay_old() {
    let store = Arc::new(MemoryStorage::new());
    let b = buffered(Arc::clone(&store), Duration::from_millis(30), 1_000_000);
    b.apply(&batch("p:add:d:1:event", 7)).unwrap();
    let applied = Instant::now();
    eventually("the delayed write", || total(&store, "p:add:d:1:event") == 7);
    assert!(
        applied.elapsed() >= Duration::from_millis(30),
        "written before it was due"
    );
    assert_eq!(b.pending_ops(), 0);
}

#[test]
fn a_full_buffer_is_written_without_waiting_for_the_delay() {
    let store = Arc::new(MemoryStorage::new());
    let b = buffered(Arc::clone(&store), LONG, 100);
    b.apply(&batch("p:add:d:1:x", 60)).unwrap();
    assert_eq!(b.pending_ops(), 60);
    b.apply(&batch("p:add:d:1:y", 60)).unwrap();
    eventually("the write of a full buffer", || {
        total(&store, "p:add:d:1:x") + total(&store, "p:add:d:1:y") == 120
    });
    // Far past twice the limit, writers write themselves: the buffer stays bounded.
    for i in 0..50 {
        b.apply(&batch(&format!("p:add:d:1:k{i}"), 90)).unwrap();
        assert!(
            b.pending_ops() < 2 * 100 + 90,
            "buffer grew to {}",
            b.pending_ops()
        );
    }
}

#[test]
fn dropping_the_buffer_writes_what_is_left() {
    let store = Arc::new(MemoryStorage::new());
    let b = buffered(Arc::clone(&store), LONG, 1_000_000);
    b.apply(&batch("p:add:d:1:event", 4)).unwrap();
    assert_eq!(total(&store, "p:add:d:1:event"), 0);
    drop(b);
    assert_eq!(total(&store, "p:add:d:1:event"), 4);
}

#[test]
fn many_threads_recording_through_the_engine_lose_nothing() {
    let store = Arc::new(MemoryStorage::new());
    let config = TraqqConfig {
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
        ..TraqqConfig::default()
    };
    let now = 1_700_000_000;
    let traqq = Arc::new(
        Traqq::new(
            config,
            buffered(Arc::clone(&store), Duration::from_millis(2), 500),
            "t",
        )
        .unwrap()
        .with_clock(ManualClock::new(now)),
    );
    const THREADS: usize = 4;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 50;
    let geos = ["US", "DE", "FR"];
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let traqq = Arc::clone(&traqq);
            s.spawn(move || {
                for b in 0..BATCHES {
                    let events: Vec<_> = (0..PER_BATCH)
                        .map(|i| {
                            let n = (t * BATCHES + b) * PER_BATCH + i;
                            IncomingEvent::from_json(json!({
                                "event": if n % 2 == 0 { "view" } else { "buy" },
                                "geo": geos[n % 3],
                                "ip": format!("10.0.{}.{}", n / 256 % 256, n % 256),
                                "amount": 0.5,
                                "ts": now,
                            }))
                            .unwrap()
                        })
                        .collect();
                    let outcome = traqq.record_batch(events).unwrap();
                    assert_eq!(outcome.recorded, PER_BATCH);
                }
            });
        }
    });
    let n = THREADS * BATCHES * PER_BATCH;
    let result = traqq.query_days(1).unwrap();
    let events = result.find_str("add/event");
    assert_eq!(
        events[0].result,
        MetricData::Hash(
            [
                ("view".to_string(), (n / 2) as i64),
                ("buy".to_string(), (n / 2) as i64)
            ]
            .into()
        )
    );
    let MetricData::Ranked(top) = &result.find_str("top/geo")[0].result else {
        panic!("top/geo")
    };
    let mut want: Vec<(String, f64)> = geos
        .iter()
        .enumerate()
        .map(|(g, geo)| (geo.to_string(), (0..n).filter(|k| k % 3 == g).count() as f64))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(top, &want);
    let MetricData::FloatHash(sums) = &result.find_str("adv/event/amount")[0].result else {
        panic!("adv")
    };
    assert_eq!(sums["view"], 0.5 * (n / 2) as f64);
    // Distinct ips: n (all different), within HLL error.
    let MetricData::Count(ips) = result.find_str("bmp/ip")[0].result else {
        panic!("bmp")
    };
    let err = (ips as f64 - n as f64).abs() / n as f64;
    assert!(err < 0.03, "{ips} distinct ips, truth {n}");
}

#[test]
fn an_unreachable_store_is_retried_every_max_delay_not_in_a_busy_loop() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(Faulty::default());
    store.down.store(true, SeqCst);
    // Three operations fill the buffer (but do not make the caller write it): without a pause
    // the writer would retry at once, forever.
    let b = BufferedStorage::new(
        Arc::clone(&store),
        BufferConfig {
            max_delay: Duration::from_millis(20),
            max_ops: 2,
        },
    );
    b.apply(&batch("p:add:d:1:event", 3)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let attempts = store.applies.load(SeqCst);
    assert!(
        (1..=40).contains(&attempts),
        "{attempts} attempts in 300 ms at one per 20 ms"
    );
    // The failure reaches the next caller; the operations wait in the buffer.
    let err = b.apply(&batch("p:add:d:1:other", 1)).unwrap_err();
    assert!(
        err.is_unavailable() && err.to_string().contains("kept in the buffer"),
        "{err}"
    );
    assert_eq!(b.pending_ops(), 3);
    store.down.store(false, SeqCst);
    eventually("the retried write", || {
        total(&store.inner, "p:add:d:1:event") == 3
    });
    b.flush().unwrap();
    assert_eq!(total(&store.inner, "p:add:d:1:event"), 3, "written once");
}

/// Issue 13 (3): a buffered write the store refused was handed to the next caller, so one
/// client's bad batch made an unrelated client's record fail. Now it is dropped, counted and
/// reported by `flush`; every other caller's writes go on.
#[test]
fn a_write_the_store_refuses_never_fails_another_callers_write() {
    let store = Arc::new(Faulty::default());
    store.refuse_keys_containing(Some("poison"));
    let b = BufferedStorage::new(
        Arc::clone(&store),
        BufferConfig {
            max_delay: Duration::from_millis(10),
            max_ops: 1_000,
        },
    );
    b.apply(&batch("p:add:d:1:poison", 1)).unwrap();
    eventually("the refused write", || b.dropped_writes() == 1);
    assert_eq!(b.pending_ops(), 0, "the refused write is not retried");
    // Another client: its writes, reads and deletes all go through.
    b.apply(&batch("p:add:d:1:event", 2)).unwrap();
    b.apply(&batch("p:add:d:1:event", 3)).unwrap();
    let read = b.read(&[Read::Hash("p:add:d:1:event".into())]).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(total(&store.inner, "p:add:d:1:event"), 5);
    // The operator sees it at the next flush, once.
    let err = b.flush().unwrap_err().to_string();
    assert!(err.contains("dropped") && err.contains("NaN"), "{err}");
    b.flush().unwrap();
    assert_eq!(b.dropped_writes(), 1);
    assert_eq!(total(&store.inner, "p:add:d:1:poison"), 0);
}
