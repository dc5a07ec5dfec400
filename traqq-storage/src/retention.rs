//! Retention: deleting buckets older than `retention.daily_days` / `retention.hourly_days`.
//!
//! Every batch registers the key set of each bucket it writes in the prefix's bucket registry
//! (`prefix:k:buckets`, see [`traqq_core::key::bucket_registry_key`]). Pruning reads the
//! registry, picks the expired buckets, reads their key sets, deletes every key they list plus
//! the key sets themselves through [`Storage::delete`], and removes them from the registry
//! ([`Storage::remove_members`]).
//! No backend has to scan its keys, and prefixes sharing a store never touch each other.
//!
//! Days are calendar days of the configured zone: with `daily_days = 7`, today and the six
//! previous days are kept. `hourly_days` counts the same way for hour buckets. `0` keeps
//! buckets forever.
//!
//! The engine prunes by itself when retention is configured (see [`crate::Traqq`]): the first
//! write after it is built prunes once, and so does the first write after its clock enters a
//! new calendar day. Checking costs writes one atomic load; the write that prunes pays for it,
//! and concurrent writers do not wait for it or prune a second time.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use parking_lot::Mutex;
use traqq_core::bucket::{BucketKind, Calendar};
use traqq_core::claim::IdPolicy;
use traqq_core::config::RetentionConfig;
use traqq_core::key::{bucket_registry_key, decode_id_set_key, decode_key_set_key, id_registry_key};
use traqq_core::read::{Read, ReadResult};

use crate::storage::{unexpected, Storage, StorageExt};
use crate::Result;

/// What one prune did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Buckets (day or hour) deleted.
    pub buckets: usize,
    /// Storage keys deleted, key sets included.
    pub keys: usize,
    /// Id sets (`[event] id_field`) deleted because their day is past `dedup_days`.
    pub id_sets: usize,
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
        // Quarter hours are kept as long as hours.
        BucketKind::Hour | BucketKind::Quarter => retention.hourly_days,
    };
    (days > 0).then(|| calendar.days_back(now, days - 1))
}

/// Deletes the id sets of `prefix` whose days `ids` no longer remembers at `now` (listed in
/// the id registry, [`id_registry_key`]); returns how many.
pub fn prune_id_sets(
    storage: &dyn Storage,
    prefix: &str,
    calendar: &Calendar,
    ids: &IdPolicy,
    now: i64,
) -> Result<usize> {
    let registry = id_registry_key(prefix);
    let registered = storage.members(&registry)?;
    let from = ids.remembered_from(calendar, now);
    let expired: Vec<String> = registered
        .into_iter()
        .filter(|key| decode_id_set_key(prefix, key).is_some_and(|day| day < from))
        .collect();
    if expired.is_empty() {
        return Ok(0);
    }
    storage.delete(&expired)?;
    storage.remove_members(&registry, &expired)?;
    Ok(expired.len())
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
    let registered = storage.members(&registry)?;
    let expired: Vec<String> = registered
        .into_iter()
        .filter(|set| match decode_key_set_key(prefix, set) {
            Some((BucketKind::Day, start)) => day_from.is_some_and(|from| start < from),
            Some((BucketKind::Hour | BucketKind::Quarter, start)) => {
                hour_from.is_some_and(|from| start < from)
            }
            None => false,
        })
        .collect();
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
            other => return Err(unexpected("members", Some(other))),
        }
    }
    doomed.extend(expired.iter().cloned());
    storage.delete(&doomed)?;
    // Only the expired entries leave the registry: a batch registering a new bucket meanwhile
    // keeps its entry (the backends remove members atomically with respect to writers).
    storage.remove_members(&registry, &expired)?;
    Ok(PruneReport {
        buckets: expired.len(),
        keys: doomed.len(),
        id_sets: 0,
    })
}

/// The outcome of an engine's last automatic prune ([`crate::Traqq::last_auto_prune`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoPruneStatus {
    /// The engine's clock when it ran (unix seconds).
    pub at: i64,
    /// What it deleted, or why it failed (the failure is retried a minute of clock time later;
    /// the write that triggered it was recorded anyway).
    pub outcome: std::result::Result<PruneReport, String>,
}

/// When the engine prunes by itself: the clock time from which the next write prunes first.
#[derive(Debug)]
pub(crate) struct AutoPrune {
    /// `i64::MIN` before the first prune; `i64::MAX` when automatic pruning is off.
    next_at: AtomicI64,
    /// Held by the one writer that prunes, so concurrent writers neither wait nor prune twice.
    running: AtomicBool,
    last: Mutex<Option<AutoPruneStatus>>,
}

/// Clock seconds before a failed automatic prune is tried again.
const RETRY_AFTER: i64 = 60;

impl AutoPrune {
    /// On (due at the first write) when `retention` deletes anything or event ids are
    /// remembered (their sets are dropped after `dedup_days`), off otherwise.
    pub(crate) fn new(retention: &RetentionConfig, ids: bool) -> Self {
        let on = retention.daily_days > 0 || retention.hourly_days > 0 || ids;
        AutoPrune {
            next_at: AtomicI64::new(if on { i64::MIN } else { i64::MAX }),
            running: AtomicBool::new(false),
            last: Mutex::new(None),
        }
    }

    /// Turns automatic pruning off (it stays off even when retention is configured).
    pub(crate) fn turn_off(&self) {
        self.next_at.store(i64::MAX, Ordering::Release);
    }

    /// Whether a write at `now` should prune first: the hot path's only cost, one atomic load.
    #[inline]
    pub(crate) fn due(&self, now: i64) -> bool {
        now >= self.next_at.load(Ordering::Relaxed)
    }

    /// Runs `prune` unless another writer is already pruning or just did, then schedules the
    /// next run at the start of the next calendar day (or a minute later after a failure).
    pub(crate) fn run(&self, now: i64, calendar: &Calendar, prune: impl FnOnce() -> Result<PruneReport>) {
        if self
            .running
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // Another writer may have pruned between our `due` and taking the flag.
        if now >= self.next_at.load(Ordering::Acquire) {
            let outcome = prune();
            let next = match &outcome {
                Ok(_) => calendar.next_bucket_start(BucketKind::Day, calendar.day_start(now)),
                Err(_) => now.saturating_add(RETRY_AFTER),
            };
            // `turn_off` may have run meanwhile: never switch pruning back on.
            let _ = self
                .next_at
                .fetch_update(Ordering::Release, Ordering::Acquire, |cur| {
                    (cur != i64::MAX).then_some(next)
                });
            *self.last.lock() = Some(AutoPruneStatus {
                at: now,
                outcome: outcome.map_err(|e| e.to_string()),
            });
        }
        self.running.store(false, Ordering::Release);
    }

    /// The last automatic prune, if any ran.
    pub(crate) fn last(&self) -> Option<AutoPruneStatus> {
        self.last.lock().clone()
    }
}
