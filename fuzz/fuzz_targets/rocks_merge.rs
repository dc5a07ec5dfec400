//! traqq-rocks's merge operator and stored-value readers (`traqq-rocks/src/codec.rs`, compiled
//! into this crate from its source: it needs neither the `rocksdb` crate nor its C++ library).
//! The operator runs inside RocksDB's flushes, compactions and reads, where a panic aborts the
//! process: it must never panic, whatever the stored bytes.
//!
//! Input: values separated by `0xFE 0xFF`; the first is the existing value (absent when
//! empty), the rest are operands. The first input byte's low bit chooses a full merge.
#![no_main]

use libfuzzer_sys::fuzz_target;
use traqq_fuzz::{rocks_decode_sketch, rocks_encode_hashes, rocks_entries, rocks_merge};

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(2).position(|w| w == [0xFE, 0xFF]) {
        out.push(&rest[..i]);
        rest = &rest[i + 2..];
    }
    out.push(rest);
    out
}

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let full = mode & 1 == 1;
    let parts = split(rest);
    let (existing, operands) = parts
        .split_first()
        .map_or((None, &[][..]), |(e, ops)| ((!e.is_empty()).then_some(*e), ops));
    for part in &parts {
        let _ = rocks_entries(part);
        if let Ok(sketch) = rocks_decode_sketch(part) {
            let _ = sketch.count();
        }
    }
    let merged = rocks_merge(existing, operands, full);
    let readable = |v: &[u8]| v.is_empty() || rocks_entries(v).is_ok() || rocks_decode_sketch(v).is_ok();
    if existing.is_none_or(readable) {
        assert!(
            readable(&merged),
            "a merge of readable values is unreadable: {merged:?}"
        );
    } else {
        assert_eq!(
            Some(&merged[..]),
            existing,
            "an unreadable existing value was not kept"
        );
    }
    // Merging the result again (as a later compaction does) changes nothing: maps and sketches
    // (traqq's own encoding is canonical: equal registers, equal bytes) compare byte for byte.
    let again = rocks_merge(Some(&merged), &[], full);
    if full && !merged.is_empty() && readable(&merged) {
        assert_eq!(again, merged, "a full merge is not stable");
    }
    // An HLL operand of the parts' text, merged into the result.
    let values: Vec<String> = parts
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    for redis in [false, true] {
        let hashes = rocks_encode_hashes(&values, redis);
        let _ = rocks_merge(Some(&merged), &[&hashes], full);
    }
}
