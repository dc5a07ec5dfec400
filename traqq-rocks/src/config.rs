//! [`RocksConfig`]: the options of a RocksDB store.

use serde::{Deserialize, Serialize};
use traqq_storage::Durability;

/// Options of [`crate::RocksStorage::open`]. Deserializes from the binary's `[storage]` table;
/// every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RocksConfig {
    /// When a batch counts as written: `always` (WAL fsynced, survives power loss), `batch`
    /// (WAL written to the OS, survives `kill -9`), `none` (WAL buffered in the process and
    /// written every `none_flush_ms`; a crash may lose that much).
    pub sync: Durability,
    /// Memtable size in MiB (RocksDB `write_buffer_size`).
    pub write_buffer_mib: usize,
    /// In `none` mode, the longest time a write stays in the in-process WAL buffer.
    pub none_flush_ms: u64,
    /// A key that took this many merge operands (one per batch that touched it) since its last
    /// fold is folded on a background thread, so reads find it folded; `0` turns the thread
    /// off (reads, writes and compactions still fold).
    pub fold_after_operands: u32,
}

impl Default for RocksConfig {
    fn default() -> Self {
        RocksConfig {
            sync: Durability::Batch,
            write_buffer_mib: 64,
            none_flush_ms: 100,
            fold_after_operands: 4,
        }
    }
}

impl RocksConfig {
    /// The default options with durability `sync`.
    pub fn with_sync(sync: Durability) -> Self {
        RocksConfig {
            sync,
            ..RocksConfig::default()
        }
    }
}
