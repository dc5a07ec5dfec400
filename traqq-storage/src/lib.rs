//! # traqq-storage
//!
//! The [`Storage`] trait every backend implements, the in-memory backend, and the [`Traqq`]
//! engine that records events into any store and answers queries with type-aware merging.
//!
//! ```
//! use traqq_storage::prelude::*;
//!
//! let config = TraqqConfig {
//!     mapping: MappingConfig {
//!         bitmap: vec!["ip".into()],
//!         add: vec!["event".into(), "event~geo".into()],
//!         add_value: vec![AddValueConfig { key: "event~geo".into(), add_key: "amount".into() }],
//!         top: vec!["geo".into()],
//!         distribution: vec![DistributionConfig { key: "event".into(), value_key: "amount".into() }],
//!     },
//!     ..TraqqConfig::default()
//! };
//! let traqq = Traqq::new(config, Box::new(MemoryStorage::new()), "myapp")?;
//! traqq.record(IncomingEvent::from_json(serde_json::json!({
//!     "event": "purchase", "ip": "1.2.3.4", "geo": "US", "amount": 99.99 }))?)?;
//! let result = traqq.query_days(7)?;
//! let adds = result.find(FindOptions { metric_type: "add".into(), key: "event".into(), add_key: None, merge: true });
//! let top_geos = result.find_str("top/geo");
//!
//! assert_eq!(adds[0].result, MetricData::Hash([("purchase".to_string(), 1)].into()));
//! assert_eq!(top_geos[0].result, MetricData::Ranked(vec![("US".to_string(), 1.0)]));
//! let sums = result.find_str("adv/event~geo/amount");
//! assert_eq!(sums[0].result, MetricData::FloatHash([("purchase~US".to_string(), 99.99)].into()));
//! # Ok::<(), traqq_storage::Error>(())
//! ```
//!
//! [`BufferedStorage`] puts an opt-in write buffer in front of any store: batches arriving
//! within a short delay reach it as one (several times faster on Redis; acknowledged writes
//! wait that long in memory).
//!
//! Backends live in their own crates (`traqq-rocks`, `traqq-sled`, `traqq-redis`); each runs
//! the conformance suite (module `traqq_storage::conformance`, feature `conformance`) against
//! its real store.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod buffered;
pub mod claim_index;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dump;
pub mod durability;
pub mod engine;
mod error;
pub mod format;
pub mod labels;
pub mod memory;
mod outcome;
pub mod packed;
pub mod retention;
pub mod storage;

pub use buffered::{BufferConfig, BufferStats, BufferedStorage};
pub use claim_index::ClaimIndex;
pub use clock::{Clock, ManualClock, SystemClock};
pub use durability::Durability;
pub use engine::Traqq;
pub use error::{Error, Result, Source};
pub use labels::LabelIndex;
pub use memory::MemoryStorage;
pub use outcome::{BatchOutcome, BatchReport, Recorded, Rejected, RejectedEvent};
pub use retention::{AutoPruneStatus, PruneReport};
pub use storage::{decode_sketch, Capabilities, Storage, StorageExt};
pub use traqq_core;

/// Everything a typical user needs: the engine, the memory store, and core's types.
pub mod prelude {
    pub use crate::{
        BatchOutcome, Capabilities, Clock, Durability, ManualClock, MemoryStorage, PruneReport, Recorded,
        Storage, StorageExt, SystemClock, Traqq,
    };
    pub use traqq_core::prelude::*;
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    #[test]
    fn memory_storage_passes_the_conformance_suite() {
        crate::conformance::run_all(&crate::MemoryStorage::new());
    }
}
