//! Retention: deleting buckets older than `retention.daily_days` / `retention.hourly_days`.
//!
//! Every batch registers the key set of each bucket it writes in the prefix's bucket registry
//! (`prefix:k:buckets`, see [`traqq_core::key::bucket_registry_key`]). Pruning reads the
//! registry, picks the expired buckets, reads their key sets, deletes every key they list plus
//! the key sets themselves through [`Storage::delete`], and rewrites the registry without them.
//! No backend has to scan its keys, and prefixes sharing a store never touch each other.
//!
//! Days are calendar days of the configured zone: with `daily_days = 7`, today and the six
//! previous days are kept. `hourly_days` counts the same way for hour buckets. `0` keeps
//! buckets forever.

use traqq_core::batch::Batch;
use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::config::RetentionConfig;
use traqq_core::key::{bucket_registry_key, decode_key_set_key};
use traqq_core::read::{Read, ReadResult};

use crate::storage::Storage;
use crate::{Error, Result};

/// What one prune did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Buckets (day or hour) deleted.
    pub buckets: usize,
    /// Storage keys deleted, key sets included.
    pub keys: usize,
}

/// The first bucket start kept for `kind`, or `None` when that kind is kept forever.
pub fn keep_from(
    calendar: &Calendar,
    retention: &RetentionConfig,
    kind: BucketKind,
    now: i64,
) -> Option<i64> {
    let days = match kind {
        BucketKind::Day => retention.daily_days,
        BucketKind::Hour => retention.hourly_days,
    };
    (days > 0).then(|| calendar.days_back(now, days - 1))
}

/// Deletes the buckets of `prefix` that `retention` no longer keeps at `now`.
pub fn prune(
    storage: &dyn Storage,
    prefix: &str,
    calendar: &Calendar,
    retention: &RetentionConfig,
    now: i64,
) -> Result<PruneReport> {
    let day_from = keep_from(calendar, retention, BucketKind::Day, now);
    let hour_from = keep_from(calendar, retention, BucketKind::Hour, now);
    if day_from.is_none() && hour_from.is_none() {
        return Ok(PruneReport::default());
    }
    let registry = bucket_registry_key(prefix);
    let registered = match storage.read(&[Read::Members(registry.clone())])?.pop() {
        Some(ReadResult::Members(m)) => m,
        other => return Err(unexpected(other)),
    };
    let (expired, kept): (Vec<String>, Vec<String>) =
        registered
            .into_iter()
            .partition(|set| match decode_key_set_key(prefix, set) {
                Some((BucketKind::Day, start)) => day_from.is_some_and(|from| start < from),
                Some((BucketKind::Hour, start)) => hour_from.is_some_and(|from| start < from),
                None => false,
            });
    if expired.is_empty() {
        return Ok(PruneReport::default());
    }
    let reads: Vec<Read> = expired.iter().map(|s| Read::Members(s.clone())).collect();
    let mut doomed: Vec<String> = Vec::new();
    for answer in storage.read(&reads)? {
        match answer {
            // Only keys of this prefix: a corrupt key set must not reach into another prefix.
            ReadResult::Members(keys) => doomed.extend(
                keys.into_iter()
                    .filter(|k| k.strip_prefix(prefix).is_some_and(|r| r.starts_with(':'))),
            ),
            other => return Err(unexpected(Some(other))),
        }
    }
    doomed.extend(expired.iter().cloned());
    storage.delete(&doomed)?;
    // The Storage trait has no set-member removal: rewrite the registry. A batch racing between
    // these two calls re-registers its buckets with its next write; at worst an idle bucket is
    // forgotten by the registry (kept, never deleted).
    storage.delete(std::slice::from_ref(&registry))?;
    if !kept.is_empty() {
        let mut batch = Batch::new();
        for set in &kept {
            if let Some(bucket) = decode_key_set_key(prefix, set) {
                batch.sadd(&registry, bucket, set);
            }
        }
        storage.apply(&batch)?;
    }
    Ok(PruneReport {
        buckets: expired.len(),
        keys: doomed.len(),
    })
}

fn unexpected(got: Option<ReadResult>) -> Error {
    Error::Backend {
        backend: "storage",
        message: format!(
            "answered a {} read where a members read was expected",
            got.as_ref().map_or("missing", ReadResult::kind)
        ),
    }
}
