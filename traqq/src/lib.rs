//! # traqq
//!
//! Event metrics for Rust services: send JSON events, get per-day and per-hour unique counts
//! (HyperLogLog), counters, value sums and top-N leaderboards, also for compound keys built
//! from property pairs (`event~geo`), stored in memory, RocksDB, sled or Redis and queried over
//! time ranges with type-aware merging.
//!
//! This crate is the one dependency most users need: it re-exports the engine and the memory
//! store, and each other store behind a feature:
//!
//! | feature | module | what |
//! |---|---|---|
//! | (always) | [`prelude`], [`core`], [`storage`] | config, events, the [`Traqq`] engine, [`MemoryStorage`] |
//! | `rocksdb` | `traqq::rocks` | persistent embedded store on RocksDB (a ~20-minute C++ build) |
//! | `sled` | `traqq::sled` | persistent embedded store on sled (pure Rust) |
//! | `redis` | `traqq::redis` | Redis and Redis Cluster |
//! | `server` | `traqq::server` | the TCP/HTTP server and its blocking client |
//!
//! The crates it re-exports (`traqq-core`, `traqq-storage`, `traqq-rocks`, ...) can be used on
//! their own too; the README's "Migrating from traqq 0.2" section maps the 0.2 API onto this one.
//!
//! ```
//! use traqq::prelude::*;
//!
//! let config = TraqqConfig {
//!     mapping: MappingConfig {
//!         bitmap: vec!["ip".into()],
//!         add: vec!["event".into(), "event~geo".into()],
//!         top: vec!["geo".into()],
//!         ..MappingConfig::default()
//!     },
//!     ..TraqqConfig::default()
//! };
//! let traqq = Traqq::new(config, MemoryStorage::new(), "myapp")?;
//! traqq.record_json(r#"{"event":"click","ip":"1.2.3.4","geo":"US"}"#)?;
//! traqq.record_json(r#"{"event":"click","ip":"5.6.7.8","geo":"DE"}"#)?;
//!
//! let today = traqq.query_days(0)?;
//! let by_geo = today.find_str("add/event~geo");
//! assert_eq!(
//!     by_geo[0].result,
//!     MetricData::Hash([("click~DE".to_string(), 1), ("click~US".to_string(), 1)].into())
//! );
//! # Ok::<(), traqq::Error>(())
//! ```
//!
//! A traqq 0.2 program keeps compiling with only its dependency line changed (`traqq = "0.3"`),
//! as long as it builds its config and its mapping with `..Default::default()` (0.3 has more
//! sections, and a fifth metric type, `distribution`) and lets
//! `?` box the errors (0.2's were strings):
//!
//! ```
//! use serde_json::json;
//! use traqq::prelude::*;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = TraqqConfig {
//!         mapping: MappingConfig {
//!             bitmap: vec!["ip".to_string()],
//!             add: vec!["event".to_string(), "event~geo".to_string()],
//!             add_value: vec![AddValueConfig { key: "event".to_string(), add_key: "amount".to_string() }],
//!             top: vec!["geo".to_string()],
//!             ..Default::default()
//!         },
//!         ..Default::default()
//!     };
//!     let traqq = Traqq::new(config, Box::new(MemoryStorage::new()), "myapp")?;
//!     let event = IncomingEvent::from_json(json!({"event": "purchase", "ip": "1.2.3.4", "geo": "US", "amount": 9.5}))?;
//!     traqq.record(event)?;
//!     let result = traqq.query_days(7)?;
//!     for m in result.find_str("add/event") {
//!         if let MetricData::Hash(counts) = &m.result {
//!             assert_eq!(counts.get("purchase"), Some(&1));
//!         }
//!     }
//!     Ok(())
//! }
//! ```
#![deny(missing_docs)]

pub use traqq_core as core;
pub use traqq_storage as storage;

pub use traqq_storage::{
    BatchOutcome, BufferConfig, BufferedStorage, Durability, Error, MemoryStorage, Recorded, Result, Storage,
    Traqq,
};

/// Persistent embedded store on RocksDB (feature `rocksdb`).
#[cfg(feature = "rocksdb")]
pub use traqq_rocks as rocks;

/// Persistent embedded store on sled (feature `sled`).
#[cfg(feature = "sled")]
pub use traqq_sled as sled;

/// Redis and Redis Cluster (feature `redis`).
#[cfg(feature = "redis")]
pub use traqq_redis as redis;

/// The TCP JSON-lines and HTTP server and its blocking client (feature `server`).
#[cfg(feature = "server")]
pub use traqq_server as server;

/// Everything a typical user needs, in one import: the engine, the memory store, config,
/// events, results.
pub mod prelude {
    pub use traqq_storage::prelude::*;
}
