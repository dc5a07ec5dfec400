//! Golden bytes of the stored HyperLogLog format: sketches written by this version (sparse and
//! dense), committed under `tests/golden/`, must keep decoding to the same counts, and the same
//! values must keep encoding to the same bytes. A dependency update that changes either fails
//! here instead of silently breaking every stored sketch. (`hyperloglogplus` is pinned exactly
//! in the workspace for the same reason.)
//!
//! The files were written with `TRAQQ_WRITE_GOLDEN=1 cargo test -p traqq-core --test golden`;
//! without that variable a missing file is a failure, never a rewrite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use traqq_core::sketch::{hash_value, Sketch};

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
    let mut s = Sketch::new();
    for i in 0..n {
        s.insert(&format!("value-{i}"));
    }
    s
}

#[test]
fn stored_sketches_decode_to_the_same_counts_and_encode_to_the_same_bytes() {
    // (file, values inserted, the count this version reads from it)
    for (name, n, want) in [("sketch_sparse.bin", 10, 10), ("sketch_dense.bin", 100_000, 0)] {
        let mut fresh = sketch_of(n);
        let bytes = fresh.to_bytes();
        let stored = golden(name, &bytes);
        assert_eq!(
            bytes, stored,
            "{name}: this version encodes the same values differently"
        );
        let mut decoded = Sketch::from_bytes(&stored).unwrap();
        let count = decoded.count();
        if want > 0 {
            assert_eq!(count, want, "{name}");
        } else {
            assert_eq!(count, fresh.count(), "{name}");
            let error = (count as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(error < 0.02, "{name}: {count}");
        }
        // Stored sketches keep merging as they did.
        let mut merged = Sketch::from_bytes(&stored).unwrap();
        merged.merge(&sketch_of(5));
        assert!(merged.count() >= count);
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
