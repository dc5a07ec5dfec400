//! Stored HyperLogLog sketches (traqq-core `Sketch::from_bytes`, what traqq-sled reads back
//! and traqq-rocks merges): a sketch that decodes must count, merge, take inserts and
//! round-trip through `to_bytes`, without panicking or allocating more than its bytes justify.
//!
//! Both the decoded sketch and a fresh sketch with the decoded one merged in (which trusts only
//! the stored registers and hash codes, not the stored sizes) are exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_core::sketch::Sketch;

fuzz_target!(|data: &[u8]| traqq_fuzz::run_checked(|| check(data)));

fn check(data: &[u8]) {
    let Ok(decoded) = Sketch::from_bytes(data) else {
        return;
    };
    let mut rebuilt = Sketch::new();
    rebuilt.merge(&decoded);
    exercise(rebuilt);
    exercise(decoded);
}

fn exercise(mut sketch: Sketch) {
    let count = sketch.count();
    let mut twice = sketch.clone();
    twice.merge(&sketch);
    let merged = twice.count();
    // A union with itself is itself (up to the estimator's rounding when the merge changes
    // representation).
    assert!(
        merged.abs_diff(count) <= count / 50 + 2,
        "merging a sketch with itself changed its count from {count} to {merged}"
    );
    let bytes = sketch.to_bytes();
    let mut back = Sketch::from_bytes(&bytes).expect("to_bytes output decodes");
    assert_eq!(back.count(), count, "count changed through to_bytes/from_bytes");
    assert_eq!(back.to_bytes(), bytes, "to_bytes is not stable");
    // Merged into and out of a fresh sketch, and extended.
    let mut fresh = Sketch::new();
    fresh.insert("a");
    fresh.merge(&sketch);
    let _ = fresh.count();
    sketch.merge(&fresh);
    for i in 0..64 {
        sketch.insert(&i.to_string());
    }
    let _ = sketch.count();
    let _ = sketch.to_bytes();
}
