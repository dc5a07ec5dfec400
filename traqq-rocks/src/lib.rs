//! # traqq-rocks
//!
//! [`RocksStorage`]: a persistent, embedded traqq store in a RocksDB directory. It implements
//! `traqq_storage::Storage`, so the `Traqq` engine records into it and queries it like any
//! other backend, and it passes the whole conformance suite.
//!
//! ```
//! use traqq_rocks::{RocksConfig, RocksStorage};
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
//! let store = RocksStorage::open(dir.path().join("metrics"), RocksConfig::default())?;
//! let traqq = Traqq::new(config.clone(), store, "myapp")?;
//! traqq.record_json(r#"{"event":"click","ip":"1.2.3.4"}"#)?;
//! drop(traqq);
//!
//! // Reopened, the data is still there.
//! let store = RocksStorage::open(dir.path().join("metrics"), RocksConfig::default())?;
//! let traqq = Traqq::new(config, store, "myapp")?;
//! let clicks = traqq.query_days(0)?.find_str("add/event");
//! assert_eq!(clicks[0].result, MetricData::Hash([("click".to_string(), 1)].into()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How it stores
//!
//! - One RocksDB key per traqq key. A hash, leaderboard or key set is one packed map (field,
//!   then an integer, a float or nothing for a set member), sorted by field; a HyperLogLog is a
//!   serialized sketch. A read is one point lookup per key.
//! - Writes never read: a batch writes **one merge operand per key**, a packed map of all its
//!   increments (or members) for that key, and the merge operator folds them (numbers add,
//!   integers stay integers; members union). A batch's HyperLogLog inserts are one operand per
//!   key holding the values' 64-bit hashes, folded into the sketch on merge. So a batch of
//!   1,000 events costs ~120 memtable inserts (its keys), not several thousand (its fields).
//! - Reads fold a key's pending operands; a thread of the store folds the keys that took
//!   `fold_after_operands` (4) operands since their last fold while writes go on, and a read
//!   writes back what it had to fold, so queries mostly find plain values.
//! - The store records its layout (format 4) and the sketch family it keeps under reserved
//!   keys. A format-2 or format-3 store (the same layout; sketches in the encoding
//!   `hyperloglogplus` serialized, which still reads, or in traqq's own) is marked format 4 when
//!   opened and keeps traqq's first sketch family; a store written by the one-key-per-field layout of earlier
//!   development builds (format 1) is refused on open with [`traqq_storage::Error::Open`]
//!   naming the path, never misread.
//! - A `Storage` batch is one `WriteBatch`: after a crash it is there entirely or not at all.
//! - Leaderboards are read whole and cut to the requested top N by partial selection (per
//!   bucket they hold at most a few thousand members; a score index would need a
//!   read-modify-write per increment).
//!
//! ## Durability (`sync`)
//!
//! | `sync` | what `apply` waits for | survives |
//! |---|---|---|
//! | `always` | WAL written and fsynced (concurrent writers share an fsync) | power loss |
//! | `batch` (default) | WAL written to the OS | `kill -9` of the process |
//! | `none` | WAL kept in a process buffer, written every `none_flush_ms` (100) | a clean close |
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod backend;
mod codec;
mod config;
mod fold_back;
mod folder;

pub use backend::RocksStorage;
pub use config::RocksConfig;
pub use traqq_storage::Durability;
