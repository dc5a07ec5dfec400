//! Stored HyperLogLog sketches (traqq-core `Sketch::from_bytes`, what traqq-sled reads back
//! and traqq-rocks merges, in traqq's own format or the older `hyperloglogplus` one) and
//! Redis's HyperLogLog strings (`Sketch::from_raw`, what a restore reads): a sketch
//! that decodes must count, merge, take inserts and round-trip through `to_bytes` byte for
//! byte, without panicking or allocating more than its bytes justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_core::sketch::{RawSketch, Sketch, SketchFamily};

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    // The same bytes as Redis's HyperLogLog string (what a dump of Redis's family moves).
    let raw = RawSketch {
        family: SketchFamily::Redis,
        bytes: data.to_vec(),
    };
    if let Ok(from_redis) = Sketch::from_raw(&raw) {
        exercise(from_redis);
    }
    let Ok(decoded) = Sketch::from_bytes(data) else {
        return;
    };
    let mut rebuilt = Sketch::new_in(decoded.family());
    rebuilt.merge(&decoded).expect("same family");
    assert_eq!(rebuilt, decoded, "a union with the empty sketch changed it");
    exercise(decoded);
}

fn exercise(mut sketch: Sketch) {
    let count = sketch.count();
    let mut twice = sketch.clone();
    twice.merge(&sketch).expect("same family");
    assert_eq!(twice, sketch, "a union with itself changed the sketch");
    let bytes = sketch.to_bytes();
    let back = Sketch::from_bytes(&bytes).expect("to_bytes output decodes");
    assert_eq!(back, sketch, "the sketch changed through to_bytes/from_bytes");
    assert_eq!(back.count(), count);
    let mut merged = Sketch::new_in(sketch.family());
    merged.merge_bytes(&bytes).expect("to_bytes output merges");
    assert_eq!(merged, sketch, "merge_bytes differs from from_bytes");
    // Merged into and out of a fresh sketch, and extended.
    let mut fresh = Sketch::new_in(sketch.family());
    fresh.insert("a");
    fresh.merge(&sketch).expect("same family");
    assert!(fresh.count() + 2 >= count);
    sketch.merge(&fresh).expect("same family");
    // Moved as export moves it (Redis's string for Redis's family): the same registers.
    let raw = sketch.to_raw();
    let moved = Sketch::from_raw(&raw).expect("to_raw output reads");
    assert_eq!(moved.count(), sketch.count(), "count changed through to_raw/from_raw");
    assert_eq!(Sketch::from_raw(&moved.to_raw()).expect("reads"), moved);
    for i in 0..64 {
        sketch.insert(&i.to_string());
    }
    let _ = sketch.count();
    assert_eq!(Sketch::from_bytes(&sketch.to_bytes()).expect("decodes"), sketch);
}
