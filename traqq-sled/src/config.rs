//! [`SledConfig`]: the options of a sled store.

use serde::{Deserialize, Serialize};
use traqq_storage::Durability;

/// Options of [`crate::SledStorage::open`]. Deserializes from the binary's `[storage]` table;
/// every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SledConfig {
    /// When a batch counts as written. sled can only make writes durable with a flush (which
    /// fsyncs), so `always` and `batch` both flush before acknowledging (concurrent writers
    /// share one flush); `none` leaves it to sled's background flush every `flush_every_ms`.
    pub sync: Durability,
    /// sled's page cache, in MiB.
    pub cache_mib: u64,
    /// sled's background flush interval (what `none` may lose on a crash).
    pub flush_every_ms: u64,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            sync: Durability::Batch,
            cache_mib: 256,
            flush_every_ms: 500,
        }
    }
}

impl SledConfig {
    /// The default options with durability `sync`.
    pub fn with_sync(sync: Durability) -> Self {
        SledConfig {
            sync,
            ..SledConfig::default()
        }
    }
}
