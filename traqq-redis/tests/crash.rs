//! Exactly-once across a crash on a real Redis node: a child process recording batches of
//! events with ids is killed with SIGKILL, then every batch it sent is sent again; each event
//! counts exactly once (a batch's ids and its operations are one script call).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use traqq_storage::conformance::persistent::{
    crash_child, sigkill_then_a_retry_of_every_batch_counts_each_event_once, test_name,
};
use traqq_storage::{Durability, Storage};

/// The single node (the path only names the run's key prefix).
fn open(_: &Path, _: Durability) -> traqq_storage::Result<Box<dyn Storage>> {
    Ok(Box::new(common::single().unwrap()))
}

/// The child of the crash scenario (a no-op in a normal test run).
#[test]
fn redis_crash_child() {
    if common::single_url().is_some() {
        crash_child(&open);
    }
}

#[test]
fn sigkill_then_a_retry_of_every_batch_counts_each_event_once_on_redis() {
    if common::single_url().is_none() {
        return;
    }
    sigkill_then_a_retry_of_every_batch_counts_each_event_once(
        &open,
        &test_name(module_path!(), "redis_crash_child"),
    );
}
