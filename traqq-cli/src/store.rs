//! Opening the configured store. Cargo features only forward to backend crates; `memory` is
//! always there.

use std::sync::Arc;

use traqq_storage::{MemoryStorage, Storage};

use crate::config::StorageConfig;
use crate::UsageError;

/// The backend used when the config names none.
pub(crate) const DEFAULT_BACKEND: &str = "memory";

/// Backends this binary can open.
pub(crate) const BACKENDS: &[&str] = &["memory"];

/// Checks that `storage.backend` is known and compiled in.
pub(crate) fn check_backend(config: &StorageConfig) -> Result<(), UsageError> {
    let name = config.backend.as_str();
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

/// Opens the store.
pub(crate) fn open(config: &StorageConfig) -> anyhow::Result<Arc<dyn Storage>> {
    check_backend(config)?;
    // Backends behind cargo features are matched here as they land; memory is the rest.
    Ok(Arc::new(MemoryStorage::new()))
}

/// Where the data lives, for humans.
pub(crate) fn describe(config: &StorageConfig) -> String {
    match config.backend.as_str() {
        "memory" => "in memory (not persistent: lost when the process exits)".into(),
        "redis" => format!("redis at {}", config.url),
        other => format!("{other} at {}", config.path.display()),
    }
}
