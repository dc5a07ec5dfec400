//! The cardinality attack on the memory store: 1,000,000 events with random urls grow the
//! process by about what 1,000,000 events over 1,000 urls do (each key keeps 1,000 labels and
//! `(other)`), and every event is counted. Alone in its binary: it measures the process's
//! resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use traqq_storage::conformance::labels::random_labels_grow_the_store_like_bounded_ones;
use traqq_storage::prelude::*;

/// Resident memory of this process, bytes.
fn rss(_: &dyn Storage) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn random_urls_grow_the_memory_store_like_a_thousand_urls() {
    let open = || -> Box<dyn Storage> { Box::new(MemoryStorage::new()) };
    let (random, bounded) = random_labels_grow_the_store_like_bounded_ones(&open, &rss, 1_000_000);
    eprintln!("resident memory grown: random urls {random} bytes, 1,000 urls {bounded} bytes");
    // Without the cap the random run keeps 200,000 labels in two keys (tens of MiB).
    assert!(
        random <= 3 * bounded + 8 * 1024 * 1024,
        "random urls grew the process by {random} bytes, 1,000 urls by {bounded}"
    );
}
