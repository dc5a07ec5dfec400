//! The whole conformance suite (in each durability mode) and the persistent scenarios of
//! `traqq_storage::conformance::persistent` (restart and reopen, SIGKILL mid-stream, eight
//! writer threads, automatic retention across reopens) against real RocksDB files in temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use traqq_rocks::{RocksConfig, RocksStorage};
use traqq_storage::{Durability, Storage};

/// Opens the RocksDB store at `path` with durability `sync`.
fn open(path: &Path, sync: Durability) -> traqq_storage::Result<Box<dyn Storage>> {
    Ok(Box::new(RocksStorage::open(path, RocksConfig::with_sync(sync))?))
}

traqq_storage::persistent_tests!(open);
