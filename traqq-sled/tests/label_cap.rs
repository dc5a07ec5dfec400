//! The cardinality attack on real sled files: 1,000,000 events with random urls take about the
//! disk that 1,000,000 events over 1,000 urls take (each key keeps 1,000 labels and `(other)`),
//! and every event is counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Mutex;

use traqq_sled::{SledConfig, SledStorage};
use traqq_storage::conformance::labels::random_labels_grow_the_store_like_bounded_ones;
use traqq_storage::conformance::persistent::dir_bytes;
use traqq_storage::Storage;

#[test]
fn random_urls_take_the_disk_of_a_thousand_urls() {
    let root = tempfile::tempdir().unwrap();
    let opened: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let open = || -> Box<dyn Storage> {
        let mut opened = opened.lock().unwrap();
        let path = root.path().join(format!("db{}", opened.len()));
        opened.push(path.clone());
        Box::new(SledStorage::open(&path, SledConfig::default()).unwrap())
    };
    let size = |_: &dyn Storage| opened.lock().unwrap().last().map_or(0, |p| dir_bytes(p));
    let (random, bounded) = random_labels_grow_the_store_like_bounded_ones(&open, &size, 1_000_000);
    eprintln!("on disk: random urls {random} bytes, 1,000 urls {bounded} bytes");
    assert!(
        random <= 3 * bounded + 4 * 1024 * 1024,
        "random urls took {random} bytes, 1,000 urls {bounded}"
    );
}
