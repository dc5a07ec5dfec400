//! Stored HyperLogLog sketches (traqq-core `Sketch::from_bytes`, what traqq-sled reads back
//! and traqq-rocks merges, in traqq's own format or the older `hyperloglogplus` one): a sketch
//! that decodes must count, merge, take inserts and round-trip through `to_bytes` byte for
//! byte, without panicking or allocating more than its bytes justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_core::sketch::Sketch;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let Ok(decoded) = Sketch::from_bytes(data) else {
        return;
    };
    let mut rebuilt = Sketch::new();
    rebuilt.merge(&decoded);
    assert_eq!(rebuilt, decoded, "a union with the empty sketch changed it");
    exercise(decoded);
}

fn exercise(mut sketch: Sketch) {
    let count = sketch.count();
    let mut twice = sketch.clone();
    twice.merge(&sketch);
    assert_eq!(twice, sketch, "a union with itself changed the sketch");
    let bytes = sketch.to_bytes();
    let back = Sketch::from_bytes(&bytes).expect("to_bytes output decodes");
    assert_eq!(back, sketch, "the sketch changed through to_bytes/from_bytes");
    assert_eq!(back.count(), count);
    let mut merged = Sketch::new();
    merged.merge_bytes(&bytes).expect("to_bytes output merges");
    assert_eq!(merged, sketch, "merge_bytes differs from from_bytes");
    // Merged into and out of a fresh sketch, and extended.
    let mut fresh = Sketch::new();
    fresh.insert("a");
    fresh.merge(&sketch);
    assert!(fresh.count() + 2 >= count);
    sketch.merge(&fresh);
    for i in 0..64 {
        sketch.insert(&i.to_string());
    }
    let _ = sketch.count();
    assert_eq!(Sketch::from_bytes(&sketch.to_bytes()).expect("decodes"), sketch);
}
