//! Opening the configured store. Cargo features only forward to backend crates; `memory` is
//! always there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use traqq_storage::{BufferConfig, BufferedStorage, Durability, MemoryStorage, Storage};

use serde::{Deserialize, Serialize};
use traqq_core::config::RetentionConfig;

use crate::UsageError;

/// `[storage]`: which backend, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageConfig {
    /// `memory`, or a backend compiled in (`rocksdb`, `sled`, `redis`).
    pub(crate) backend: String,
    /// Directory of an embedded store.
    pub(crate) path: PathBuf,
    /// Redis URL (one node).
    pub(crate) url: String,
    /// Redis Cluster seed nodes; non-empty selects cluster mode.
    pub(crate) cluster_urls: Vec<String>,
    /// Durability of embedded stores: `always`, `batch` or `none` (backend default when absent).
    pub(crate) sync: Option<String>,
    /// PEM CA certificate(s) trusted for `rediss://` URLs (instead of the system's roots).
    pub(crate) tls_ca_file: Option<PathBuf>,
    /// PEM client certificate for Redis servers that check clients; needs `tls_key_file`.
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Write buffer: hold applied batches up to this long and write them as one (0: off).
    pub(crate) write_buffer_ms: u64,
    /// Write the buffer early once it holds this many coalesced operations.
    pub(crate) write_buffer_ops: usize,
    /// Redis: replicas that must hold a batch before it is acknowledged (`WAIT`; 0: off).
    pub(crate) redis_replicas_ack: u32,
    /// Redis: how long a batch waits for them, in milliseconds.
    pub(crate) redis_replicas_ack_timeout_ms: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: DEFAULT_BACKEND.into(),
            path: PathBuf::from("./traqq-data"),
            url: "redis://127.0.0.1:6379".into(),
            cluster_urls: Vec::new(),
            sync: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            write_buffer_ms: 0,
            write_buffer_ops: traqq_storage::BufferConfig::default().max_ops,
            redis_replicas_ack: 0,
            redis_replicas_ack_timeout_ms: 1_000,
        }
    }
}

/// The backend used when the config names none: the embedded persistent store built in
/// (RocksDB, else sled), else memory.
#[cfg(feature = "rocksdb")]
pub(crate) const DEFAULT_BACKEND: &str = "rocksdb";
/// The backend used when the config names none.
#[cfg(all(feature = "sled", not(feature = "rocksdb")))]
pub(crate) const DEFAULT_BACKEND: &str = "sled";
/// The backend used when the config names none.
#[cfg(not(any(feature = "sled", feature = "rocksdb")))]
pub(crate) const DEFAULT_BACKEND: &str = "memory";

/// Backends this binary can open.
pub(crate) const BACKENDS: &[&str] = &[
    "memory",
    #[cfg(feature = "rocksdb")]
    "rocksdb",
    #[cfg(feature = "sled")]
    "sled",
    #[cfg(feature = "redis")]
    "redis",
];

/// Checks that `storage.backend` is known and compiled in.
pub(crate) fn check_backend(config: &StorageConfig) -> Result<(), UsageError> {
    let name = config.backend.as_str();
    if let Some(sync) = &config.sync {
        sync.parse::<Durability>()
            .map_err(|e| UsageError(e.to_string()))?;
    }
    if config.write_buffer_ms > 0 && config.write_buffer_ops == 0 {
        return Err(UsageError(
            "storage.write_buffer_ops = 0: the write buffer needs room for at least one operation".into(),
        ));
    }
    if BACKENDS.contains(&name) {
        return Ok(());
    }
    let known = ["memory", "rocksdb", "sled", "redis"];
    Err(UsageError(if known.contains(&name) {
        format!(
            "storage.backend = {name:?}: this traqq binary was built without it \
             (rebuild with `--features {name}`); available: {}",
            BACKENDS.join(", ")
        )
    } else {
        format!(
            "storage.backend = {name:?} is not a backend (expected one of {})",
            known.join(", ")
        )
    }))
}

/// Opens the store of `config`, behind a write buffer when `write_buffer_ms` is set.
pub(crate) fn open(storage: &StorageConfig, retention: RetentionConfig) -> anyhow::Result<Arc<dyn Storage>> {
    let store = open_backend(storage, retention)?;
    Ok(match storage.write_buffer_ms {
        0 => store,
        ms => Arc::new(BufferedStorage::new(
            store,
            BufferConfig {
                max_delay: Duration::from_millis(ms),
                max_ops: storage.write_buffer_ops,
            },
        )),
    })
}

// `retention` is for Redis (EXPIRE); builds without Redis do not use it.
#[cfg_attr(not(feature = "redis"), allow(unused_variables))]
fn open_backend(storage: &StorageConfig, retention: RetentionConfig) -> anyhow::Result<Arc<dyn Storage>> {
    check_backend(storage)?;
    Ok(match storage.backend.as_str() {
        #[cfg(feature = "redis")]
        "redis" => {
            let redis = traqq_redis::RedisConfig {
                url: storage.cluster_urls.is_empty().then(|| storage.url.clone()),
                cluster_urls: storage.cluster_urls.clone(),
                retention,
                tls_ca_file: storage.tls_ca_file.clone(),
                tls_cert_file: storage.tls_cert_file.clone(),
                tls_key_file: storage.tls_key_file.clone(),
                replicas_ack: storage.redis_replicas_ack,
                replicas_ack_timeout_ms: storage.redis_replicas_ack_timeout_ms,
                ..traqq_redis::RedisConfig::default()
            };
            redis.validate().map_err(|e| UsageError(e.to_string()))?;
            Arc::new(traqq_redis::RedisStorage::connect(redis)?)
        }
        #[cfg(feature = "rocksdb")]
        "rocksdb" => {
            let mut rocks = traqq_rocks::RocksConfig::default();
            if let Some(sync) = &storage.sync {
                rocks.sync = sync
                    .parse()
                    .map_err(|e: traqq_storage::Error| UsageError(e.to_string()))?;
            }
            Arc::new(traqq_rocks::RocksStorage::open(&storage.path, rocks)?)
        }
        #[cfg(feature = "sled")]
        "sled" => {
            let mut sled = traqq_sled::SledConfig::default();
            if let Some(sync) = &storage.sync {
                sled.sync = sync
                    .parse()
                    .map_err(|e: traqq_storage::Error| UsageError(e.to_string()))?;
            }
            Arc::new(traqq_sled::SledStorage::open(&storage.path, sled)?)
        }
        _ => Arc::new(MemoryStorage::new()),
    })
}

/// Where the data lives, for humans (no passwords: URLs are shown without their user info).
pub(crate) fn describe(config: &StorageConfig) -> String {
    let place = describe_backend(config);
    match config.write_buffer_ms {
        0 => place,
        ms => format!(
            "{place}; write buffer: up to {ms} ms or {} operations (a crash loses what it holds)",
            config.write_buffer_ops
        ),
    }
}

fn describe_backend(config: &StorageConfig) -> String {
    match config.backend.as_str() {
        "memory" => "in memory (not persistent: lost when the process exits)".into(),
        "redis" if !config.cluster_urls.is_empty() => format!(
            "redis cluster via {}",
            config
                .cluster_urls
                .iter()
                .map(|u| redact(u))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "redis" => format!("redis at {}", redact(&config.url)),
        other => format!(
            "{other} at {} (durability: {})",
            config.path.display(),
            config.sync.as_deref().unwrap_or("batch")
        ),
    }
}

/// A Redis URL fit for output: passwords hidden (one rule for the whole project).
#[cfg(feature = "redis")]
fn redact(url: &str) -> String {
    traqq_redis::config::redact(url)
}

/// Without Redis support no Redis URL is in use; show none.
#[cfg(not(feature = "redis"))]
fn redact(_url: &str) -> String {
    "<url>".into()
}
