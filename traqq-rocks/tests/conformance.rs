//! The whole conformance suite against a real store in a temp dir, in each durability mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use traqq_storage::Durability;

#[test]
fn conformance_suite_in_batch_mode() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(&dir.path().join("db"), Durability::Batch).unwrap();
    traqq_storage::conformance::run_all(&store);
}

#[test]
fn conformance_suite_in_always_and_none_modes() {
    for sync in [Durability::Always, Durability::None] {
        let dir = tempfile::tempdir().unwrap();
        let store = common::open(&dir.path().join("db"), sync).unwrap();
        traqq_storage::conformance::run_all(&store);
    }
}
