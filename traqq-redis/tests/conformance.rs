//! The whole backend conformance suite against a real Redis node and a real Redis Cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[test]
fn single_node_passes_the_conformance_suite() {
    let Some(storage) = common::single() else { return };
    traqq_storage::conformance::run_all(&storage);
}

#[test]
fn cluster_passes_the_conformance_suite() {
    let Some(storage) = common::cluster() else { return };
    traqq_storage::conformance::run_all(&storage);
}
