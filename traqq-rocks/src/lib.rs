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
//! - Every hash field, leaderboard member and key-set member is its own RocksDB key
//!   (`key \0 field`); a read is one prefix scan. A HyperLogLog is one key holding a
//!   serialized sketch.
//! - Writes never read: counters, float sums and scores are **merge operands** that RocksDB adds
//!   up in the background (integers stay integers), and a batch's HyperLogLog inserts are one
//!   operand per key holding the values' 64-bit hashes, folded into the sketch on merge.
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

pub use backend::RocksStorage;
pub use config::RocksConfig;
pub use traqq_storage::Durability;
