//! # traqq-redis
//!
//! [`Storage`](traqq_storage::Storage) on Redis (one node) or Redis Cluster, with Redis's own
//! types, so `redis-cli` users see the familiar layout: `HINCRBY`/`HINCRBYFLOAT` hashes for
//! `add`/`adv`, `PFADD` HyperLogLogs for `bmp`, `ZINCRBY` sorted sets for `top`, `SADD` sets
//! for the per-bucket key sets.
//!
//! ```no_run
//! use traqq_redis::{RedisConfig, RedisStorage};
//! use traqq_storage::prelude::*;
//!
//! let config = TraqqConfig {
//!     mapping: MappingConfig { bitmap: vec!["ip".into()], add: vec!["event".into()], ..MappingConfig::default() },
//!     ..TraqqConfig::default()
//! };
//! let redis = RedisConfig::single("redis://127.0.0.1:6379/0").with_retention(config.retention);
//! let traqq = Traqq::new(config, RedisStorage::connect(redis)?, "myapp")?;
//! traqq.record_json(r#"{"event":"click","ip":"1.2.3.4"}"#)?;
//! let uniques = traqq.query_days(7)?.find_str("bmp/ip");
//! # Ok::<(), traqq_storage::Error>(())
//! ```
//!
//! The runnable version of this example is the key-layout test (`tests/layout.rs`), which
//! needs a server; the part that runs anywhere:
//!
//! ```
//! use traqq_redis::{keys::cluster_key, RedisConfig};
//!
//! // TLS, trusting the CA that signed the server's certificate:
//! let tls = RedisConfig::single("rediss://:password@redis.internal:6380/0").with_tls_ca_file("/etc/redis/ca.pem");
//! assert!(tls.validate().is_ok() && tls.is_tls());
//! assert_eq!(cluster_key("myapp:bmp:d:1700000000:ip").as_deref(), Some("{myapp:bmp:ip}:d:1700000000"));
//! ```
//!
//! ## Writes: one round trip, atomic
//!
//! [`Storage::apply`](traqq_storage::Storage::apply) sends the whole coalesced batch as one
//! `EVALSHA` of a small Lua script (loaded on first use, and again after a server restart or
//! failover answers `NOSCRIPT`), which runs the native commands (`HINCRBY`, `HINCRBYFLOAT`,
//! variadic `PFADD` and `SADD`, `ZINCRBY`, one `EXPIREAT` per key) inside Redis: 1,000 events
//! cost one round trip and one command to encode, and the batch is visible entirely or not at
//! all. The script checks every key's type first, so a batch meeting a key of the wrong type
//! fails with an error naming that key and applies nothing. (A command refused later, such as
//! `PFADD` on a string that is not a HyperLogLog, stops the script there; Redis does not roll
//! back what came before, and the error says so.) On a cluster, a batch is split by hash slot
//! and each slot's part is its own script call (all sent at once): atomic per slot, not across
//! slots, so [`Capabilities::atomic_batches`](traqq_storage::Capabilities) is false there.
//!
//! ## Reads: pipelined
//!
//! All reads of one `read` call go in one pipeline (one per slot on a cluster, sent
//! concurrently): `HGETALL` (integer text reads back as an integer, anything else as a float),
//! `PFCOUNT`, `ZREVRANGE … WITHSCORES`, `SMEMBERS`. A leaderboard cut at `limit` whose last
//! score is shared with members beyond the cut needs a second round trip (`ZRANGEBYSCORE s s`),
//! because Redis ranks equal scores by member descending and the contract ascending. A
//! leaderboard over several days is one `ZUNION … WITHSCORES` (Redis 6.2 or newer), cut to
//! `limit` here. A union (`PFCOUNT k1 k2 …`) runs natively when
//! its keys share a slot, which the cluster layout guarantees for the buckets of one metric; a
//! union across slots copies the raw HyperLogLog strings (`GET`) under one temporary tag, counts
//! there and deletes them.
//!
//! ## Key layout
//!
//! Single node: exactly the traqq key format (`myapp:bmp:d:1700000000:ip`). Cluster: metric keys
//! carry a hash tag so all buckets of one metric share one slot, see [`keys`].
//!
//! ## Retention, reconnects, durability
//!
//! - With `retention.daily_days`/`hourly_days` set, every written key gets
//!   `EXPIREAT bucket_start + (days + 1) × 86400`: Redis drops old buckets itself.
//! - Connections use bounded connect and response timeouts; while Redis is down every call
//!   returns `Error::Unavailable` within about `connect_timeout_ms + response_timeout_ms`, and
//!   once it is back the same store works again (a new connection is made on demand). A batch
//!   that failed is never re-sent by this crate: one cut off mid-answer may or may not have been
//!   applied, and re-sending increments would count them twice. The caller decides. On a
//!   cluster, a batch refused while slots move (`MOVED`, `ASK`, `CLUSTERDOWN`) is
//!   `Error::Unavailable` too (nothing of that slot's part was applied), and the slot map is
//!   refreshed so the next batch goes to the new owner.
//! - Durability is Redis's own persistence (RDB snapshots, AOF): `flush` does nothing.
//!
//! ## Passwords and TLS
//!
//! `redis://:password@host/db` authenticates; `rediss://` uses TLS (rustls). The server's
//! certificate is checked against [`RedisConfig::tls_ca_file`] when given, else against the
//! system's roots or the PEM file named by `SSL_CERT_FILE`; `tls_cert_file` + `tls_key_file`
//! present a client certificate.
#![deny(missing_docs)]
#![warn(unreachable_pub, missing_debug_implementations)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod backend;
pub mod config;
pub mod keys;
mod script;
#[cfg(feature = "testing")]
pub mod testing;
mod values;

pub use backend::RedisStorage;
pub use config::RedisConfig;
pub use keys::KeyLayout;

/// Hooks for the fuzz targets in `fuzz/` (`cargo fuzz` builds with `--cfg fuzzing`): the
/// crate-private conversions of Redis replies. Empty in every other build.
#[doc(hidden)]
#[allow(unexpected_cfgs)] // `fuzzing` is set only by cargo fuzz
pub mod fuzzing {
    #[cfg(fuzzing)]
    pub use hooks::*;

    #[cfg(fuzzing)]
    mod hooks {
        use redis::Value;
        use traqq_core::batch::Number;
        use traqq_storage::Result;

        /// A stored hash number.
        pub fn number(key: &str, field: &str, text: &str) -> Result<Number> {
            crate::values::number(key, field, text)
        }
        /// An `HGETALL` reply.
        pub fn hash(key: &str, v: Value) -> Result<Vec<(String, Number)>> {
            crate::values::hash(key, v)
        }
        /// An `SMEMBERS` reply.
        pub fn strings(key: &str, v: Value) -> Result<Vec<String>> {
            crate::values::strings(key, v)
        }
        /// A `PFCOUNT` reply.
        pub fn count(key: &str, v: Value) -> Result<u64> {
            crate::values::count(key, v)
        }
        /// A `ZREVRANGE … WITHSCORES` reply.
        pub fn ranked(key: &str, v: Value) -> Result<Vec<(String, f64, String)>> {
            crate::values::ranked(key, v)
        }
        /// A `GET` reply of a key that may be missing.
        pub fn optional_bytes(key: &str, v: Value) -> Result<Option<Vec<u8>>> {
            crate::values::optional_bytes(key, v)
        }
    }
}
