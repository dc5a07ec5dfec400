//! The cardinality attack on a real Redis node: 1,000,000 events with random urls grow Redis's
//! `used_memory` by about what 1,000,000 events over 1,000 urls do (each key keeps 1,000 labels
//! and `(other)`), and every event is counted. Alone in its binary, so no other test of this
//! crate writes to the node while it measures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use traqq_storage::conformance::labels::random_labels_grow_the_store_like_bounded_ones;
use traqq_storage::Storage;

#[test]
fn random_urls_take_the_memory_of_a_thousand_urls() {
    let Some(url) = common::single_url() else { return };
    let client = redis::Client::open(url).unwrap();
    let used_memory = |_: &dyn Storage| -> u64 {
        let mut conn = client.get_connection().unwrap();
        let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let open = || -> Box<dyn Storage> { Box::new(common::single().unwrap()) };
    let (random, bounded) = random_labels_grow_the_store_like_bounded_ones(&open, &used_memory, 1_000_000);
    eprintln!("redis used_memory grown: random urls {random} bytes, 1,000 urls {bounded} bytes");
    assert!(
        random <= 3 * bounded + 2 * 1024 * 1024,
        "random urls grew Redis by {random} bytes, 1,000 urls by {bounded}"
    );
}
