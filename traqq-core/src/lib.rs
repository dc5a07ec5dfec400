//! # traqq-core
//!
//! The pure heart of traqq: configuration, event parsing and sanitizing, compound patterns,
//! metric-op generation into coalesced batches, time buckets, the key format, query planning,
//! result types and type-aware merging, the HyperLogLog sketch and the distribution sketch.
//!
//! Nothing here does I/O, spawns threads or reads a clock: the caller passes `now`. Pair it
//! with `traqq-storage` for an engine that applies batches to a store and answers queries.
//!
//! ```
//! use traqq_core::prelude::*;
//!
//! let config = TraqqConfig {
//!     mapping: MappingConfig {
//!         bitmap: vec!["ip".into()],
//!         add: vec!["event".into(), "geo~event".into()],
//!         ..MappingConfig::default()
//!     },
//!     ..TraqqConfig::default()
//! };
//! let generator = OpGenerator::new(&config, "myapp")?;
//! let event = IncomingEvent::parse_str(r#"{"event":"click","ip":"1.2.3.4","geo":"US","ts":1700000000}"#)?;
//! let now = 1_700_000_100; // the caller passes the clock
//! let batch = generator.event_batch(&event, now)?;
//!
//! // Day buckets start at local midnight (UTC here): 1699920000 is 2023-11-14.
//! assert!(batch.get("myapp:add:d:1699920000:event~geo").is_some());
//! assert!(batch.get("myapp:bmp:d:1699920000:ip").is_some());
//! # Ok::<(), traqq_core::Error>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod batch;
pub mod bucket;
pub mod claim;
pub mod config;
pub mod distribution;
mod error;
pub mod event;
pub mod group;
pub mod key;
pub mod labels;
pub mod ops;
pub mod pattern;
pub mod plan;
pub mod read;
pub mod result;
pub mod sanitize;
pub mod sketch;
mod swar;

pub use error::{Error, Result};

/// The names most users need, in one import.
pub mod prelude {
    pub use crate::batch::{Batch, KeyEntry, KeyOps, Number};
    pub use crate::bucket::{BucketKind, Calendar};
    pub use crate::config::{
        AddValueConfig, DistributionConfig, EventConfig, LimitsConfig, MappingConfig, QueryConfig,
        RetentionConfig, TimeConfig, TraqqConfig,
    };
    pub use crate::event::{IncomingEvent, Scalar};
    pub use crate::group::{Group, GroupResult};
    pub use crate::key::{AdvPart, MetricKey, MetricType};
    pub use crate::ops::{BatchBuilder, OpGenerator};
    pub use crate::plan::{QueryOptions, QueryPlan, QueryRange};
    pub use crate::read::{Read, ReadResult};
    pub use crate::result::{DayResult, FindOptions, MetricData, MetricResult, QueryResult};
    pub use crate::sketch::Sketch;
    pub use crate::{Error, Result};
}
