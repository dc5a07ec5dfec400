//! Golden bytes of the stored HyperLogLog formats (the `traqq_core::sketch` docs describe
//! them): sketches written by this version (format 1, sparse and dense) must keep decoding to
//! the same counts, and the same values must keep encoding to the same bytes; sketches written
//! before traqq owned its format (format 0, `hyperloglogplus` 0.4.1's serialized struct) must
//! keep reading as the registers their values set. A change to either fails here instead of
//! silently breaking every stored sketch.
//!
//! Format-1 files were written with `TRAQQ_WRITE_GOLDEN=1 cargo test -p traqq-core --test
//! golden`; without that variable a missing file is a failure, never a rewrite. Format-0 files
//! were written by traqq before 0.3's own format and are never rewritten.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use traqq_core::sketch::{hash_value, RawSketch, Sketch, SketchFamily};

fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("TRAQQ_WRITE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it once with TRAQQ_WRITE_GOLDEN=1 and commit it)",
            path.display()
        )
    })
}

fn sketch_of(n: u32) -> Sketch {
    sketch_in(SketchFamily::Traqq, n)
}

fn sketch_in(family: SketchFamily, n: u32) -> Sketch {
    let mut s = Sketch::new_in(family);
    for i in 0..n {
        s.insert(&format!("value-{i}"));
    }
    s
}

#[test]
fn stored_sketches_decode_to_the_same_counts_and_encode_to_the_same_bytes() {
    // (file, family, values inserted, the count this version reads from it)
    for (name, family, n, want) in [
        ("sketch_sparse.bin", SketchFamily::Traqq, 10, 10),
        ("sketch_dense.bin", SketchFamily::Traqq, 100_000, 99_600),
        ("sketch_redis_sparse.bin", SketchFamily::Redis, 10, 10),
        ("sketch_redis_dense.bin", SketchFamily::Redis, 100_000, 99_860),
    ] {
        let fresh = sketch_in(family, n);
        let bytes = fresh.to_bytes();
        let stored = golden(name, &bytes);
        assert_eq!(
            bytes, stored,
            "{name}: this version encodes the same values differently"
        );
        let decoded = Sketch::from_bytes(&stored).unwrap();
        assert_eq!(decoded, fresh, "{name}");
        assert_eq!(decoded.count(), want, "{name}: the estimate changed");
        let error = (want as f64 - f64::from(n)).abs() / f64::from(n);
        assert!(error < 0.02, "{name}: {want}");
        // Stored sketches keep merging as they did.
        let mut merged = Sketch::from_bytes(&stored).unwrap();
        merged.merge(&sketch_in(family, 5)).unwrap();
        assert!(merged.count() >= want);
    }
}

#[test]
fn sketches_stored_before_traqq_owned_the_format_read_as_their_values() {
    for (name, n) in [
        ("sketch_format0_sparse.bin", 10),
        ("sketch_format0_dense.bin", 100_000),
    ] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(stored[0], 14, "{name}: format 0 starts with its precision");
        // The same registers as the same values inserted today: old and new sketches union.
        assert_eq!(Sketch::from_bytes(&stored).unwrap(), sketch_of(n), "{name}");
    }
}

#[test]
fn the_value_hash_is_pinned() {
    // Stored sketches and RocksDB's pending hashes hold these: a change would count every value
    // again after an upgrade.
    assert_eq!(hash_value(""), 7_859_578_132_556_901_603);
    assert_eq!(hash_value("1.2.3.4"), hash_value("1.2.3.4"));
    let pinned: Vec<u64> = ["a", "1.2.3.4", "user-42"]
        .iter()
        .map(|v| hash_value(v))
        .collect();
    let stored: Vec<u64> = golden(
        "value_hashes.bin",
        &pinned.iter().flat_map(|h| h.to_le_bytes()).collect::<Vec<_>>(),
    )
    .chunks_exact(8)
    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
    .collect();
    assert_eq!(pinned, stored);
}

#[test]
fn redis_strings_of_a_sketch_are_pinned() {
    // What a dump of Redis's family moves: Redis's dense string of traqq's registers.
    let fresh = sketch_in(SketchFamily::Redis, 100_000);
    let raw = fresh.to_raw();
    assert_eq!(raw.family, SketchFamily::Redis);
    let stored = golden("sketch_redis_string.bin", &raw.bytes);
    assert_eq!(
        raw.bytes, stored,
        "this version writes Redis's string differently"
    );
    assert_eq!(&stored[..4], b"HYLL");
    let read = Sketch::from_raw(&RawSketch {
        family: SketchFamily::Redis,
        bytes: stored,
    })
    .unwrap();
    assert_eq!(read.count(), fresh.count());
    assert_eq!(read.to_raw(), raw);
}
