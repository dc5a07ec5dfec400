//! # traqq-sled
//!
//! [`SledStorage`]: a persistent, embedded traqq store in a sled directory (pure Rust, no C++ build). It implements
//! `traqq_storage::Storage`, so the `Traqq` engine records into it and queries it like any
//! other backend, and it passes the whole conformance suite.
//!
//! ```
//! use traqq_sled::{SledConfig, SledStorage};
//! use traqq_storage::prelude::*;
//!
//! let dir = tempfile::tempdir()?;
//! let config = TraqqConfig {
//!     mapping: MappingConfig {
//!         bitmap: vec!["ip".into()],
//!         add: vec!["event".into()],
//!         ..MappingConfig::default()
//!     },
//!     ..TraqqConfig::default()
//! };
//! let store = SledStorage::open(dir.path().join("metrics"), SledConfig::default())?;
//! let traqq = Traqq::new(config.clone(), store, "myapp")?;
//! traqq.record_json(r#"{"event":"click","ip":"1.2.3.4"}"#)?;
//! drop(traqq);
//!
//! // Reopened, the data is still there.
//! let store = SledStorage::open(dir.path().join("metrics"), SledConfig::default())?;
//! let traqq = Traqq::new(config, store, "myapp")?;
//! let clicks = traqq.query_days(0)?.find_str("add/event");
//! assert_eq!(clicks[0].result, MetricData::Hash([("click".to_string(), 1)].into()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How it stores
//!
//! - One sled key per traqq key (store format 4; formats 2 and 3 open and are re-marked): a hash, leaderboard or key set is one packed
//!   map (field, then an integer, a float or nothing for a set member), sorted by field; a
//!   HyperLogLog is a serialized sketch. A read is one `get` per key.
//! - sled's merge operators cannot be part of an atomic batch (sled issue #1175), and a
//!   read-modify-write per batch is slow. So a `Storage` batch is written as one log record
//!   (one atomic `sled::Batch`, no reads) and kept in an in-memory overlay that reads add in;
//!   every 64 batches the overlay is folded into the data in one atomic `sled::Batch` that also
//!   removes the folded records: one `get` and one `insert` per touched key, its stored map
//!   merged with the sorted increments. Reopening replays what was not folded, so every batch
//!   counts exactly once.
//! - A store written by the one-key-per-field layout of earlier development builds (format 1)
//!   is refused on open with [`traqq_storage::Error::Open`] naming the path, never misread.
//! - sled loses un-flushed writes even on a plain process crash, so `batch` mode flushes before
//!   acknowledging; concurrent writers share one flush.
//!
//! ## Durability (`sync`)
//!
//! | `sync` | what `apply` waits for | survives |
//! |---|---|---|
//! | `always` | `flush()` (fsync), shared by concurrent writers | power loss |
//! | `batch` (default) | the same: sled has no cheaper way to make writes outlive the process | power loss |
//! | `none` | nothing; sled flushes every `flush_every_ms` (500) | a clean close |
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod backend;
mod codec;
mod config;
mod flush;
mod log;
mod overlay;

pub use backend::SledStorage;
pub use config::SledConfig;
pub use traqq_storage::Durability;

/// Hooks for the fuzz targets in `fuzz/` (`cargo fuzz` builds with `--cfg fuzzing`): the
/// crate-private decoders of stored data. Empty in every other build.
#[doc(hidden)]
#[allow(unexpected_cfgs)] // `fuzzing` is set only by cargo fuzz
pub mod fuzzing {
    #[cfg(fuzzing)]
    pub use hooks::*;

    #[cfg(fuzzing)]
    mod hooks {
        use traqq_core::batch::{Batch, KeyOps};

        /// Replays one logged batch (its chunks concatenated) as reopening does: the coalesced
        /// operations per key, or `None` where replay refuses the record.
        pub fn decode_log(bytes: &[u8]) -> Option<Vec<(String, KeyOps)>> {
            let mut overlay = crate::overlay::Overlay::default();
            crate::log::decode_into(bytes, &mut overlay)?;
            Some(
                overlay
                    .iter()
                    .map(|(k, ops)| (k.to_owned(), ops.clone()))
                    .collect(),
            )
        }

        /// The log chunks of `batch`.
        pub fn encode_log(batch: &Batch) -> Vec<Vec<u8>> {
            crate::log::encode(batch)
        }
    }
}
