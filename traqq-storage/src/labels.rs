//! [`LabelIndex`]: the label cap ([`traqq_core::labels`]) for a store one process owns.
//!
//! RocksDB and sled write merge operands or log records without reading the keys they add to,
//! so they cannot see how many labels a key holds when they write. One process owns such a
//! store, so it can keep that knowledge itself: the index holds, for each capped key this
//! process has written, the (64-bit hashes of the) labels the key holds, loaded from the store
//! the first time the key is touched and kept up to date by every batch. Deciding under the
//! index's lock and writing after it keeps concurrent writers from passing a cap together.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;
use traqq_core::batch::{Batch, KeyEntry, KeyOps};
use traqq_core::labels::{cap_labels, field_labels, labels_in};
use traqq_core::read::{Read, ReadResult};
use xxhash_rust::xxh3::xxh3_64;

use crate::Result;

/// Keys the index keeps before it forgets those of the oldest buckets.
const MAX_KEYS: usize = 8192;

#[derive(Debug, Default)]
struct KeyLabels {
    /// Hashes of the labels the key holds, `(other)` left out.
    labels: HashSet<u64>,
    bucket_start: i64,
}

/// The labels of the capped keys a process writes (see the module docs).
#[derive(Debug, Default)]
pub struct LabelIndex {
    keys: Mutex<HashMap<String, KeyLabels>>,
    overflowed: AtomicU64,
}

impl LabelIndex {
    /// An empty index.
    pub fn new() -> Self {
        LabelIndex::default()
    }

    /// `batch` with the label cap of each of its keys applied: new labels past a key's cap
    /// moved to `(other)` ([`cap_labels`]). Borrowed when nothing had to move. `read` reads the
    /// store (a key's labels are loaded with it the first time the key is seen).
    pub fn apply_caps<'b>(
        &self,
        batch: &'b Batch,
        read: impl Fn(&[Read]) -> Result<Vec<ReadResult>>,
    ) -> Result<Cow<'b, Batch>> {
        if batch.iter().all(|(_, e)| e.max_labels == 0) {
            return Ok(Cow::Borrowed(batch));
        }
        let mut keys = self.keys.lock();
        let mut rewritten: Option<Batch> = None;
        for (key, entry) in batch.iter().filter(|(_, e)| e.max_labels > 0) {
            if !matches!(entry.ops, KeyOps::Hash(_) | KeyOps::Scores(_)) {
                continue;
            }
            if !keys.contains_key(key) {
                let loaded = load(key, &entry.ops, &read)?;
                if keys.len() >= MAX_KEYS {
                    forget_oldest(&mut keys);
                }
                keys.insert(
                    key.to_owned(),
                    KeyLabels {
                        labels: loaded,
                        bucket_start: entry.bucket_start,
                    },
                );
            }
            let Some(known) = keys.get_mut(key) else { continue };
            let labels = &mut known.labels;
            // A distribution's key has several fields per label (`LABEL:BIN`): count labels.
            // One hash per field, straight into the new ones (no set of label texts between).
            let fresh: HashSet<u64> = field_labels(labels_of(&entry.ops))
                .map(|l| xxh3_64(l.as_bytes()))
                .filter(|h| !labels.contains(h))
                .collect();
            if labels.len() + fresh.len() <= entry.max_labels {
                labels.extend(fresh);
                continue;
            }
            let mut ops = entry.ops.clone();
            let capped = cap_labels(&mut ops, entry.max_labels, labels.len(), |l| {
                labels.contains(&xxh3_64(l.as_bytes()))
            });
            labels.extend(capped.admitted.iter().map(|l| xxh3_64(l.as_bytes())));
            self.overflowed
                .fetch_add(capped.overflowed as u64, Ordering::Relaxed);
            let out = rewritten.get_or_insert_with(|| batch.clone());
            out.replace(key, KeyEntry { ops, ..entry.clone() });
        }
        Ok(rewritten.map_or(Cow::Borrowed(batch), Cow::Owned))
    }

    /// Forgets `keys` (deleted from the store).
    pub fn forget(&self, keys: &[String]) {
        let mut known = self.keys.lock();
        for key in keys {
            known.remove(key.as_str());
        }
    }

    /// New labels counted under `(other)` so far.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// The labels `ops` touches.
fn labels_of(ops: &KeyOps) -> Box<dyn Iterator<Item = &str> + '_> {
    match ops {
        KeyOps::Hash(fields) => Box::new(fields.keys()),
        KeyOps::Scores(members) => Box::new(members.keys()),
        KeyOps::Hll(_) | KeyOps::Members(_) => Box::new(std::iter::empty()),
    }
}

/// The hashes of the labels `key` holds in the store (`(other)` left out).
fn load(key: &str, ops: &KeyOps, read: &impl Fn(&[Read]) -> Result<Vec<ReadResult>>) -> Result<HashSet<u64>> {
    let request = match ops {
        KeyOps::Scores(_) => Read::Top {
            keys: vec![key.to_owned()],
            limit: usize::MAX,
        },
        _ => Read::Hash(key.to_owned()),
    };
    let labels: Vec<String> = match read(&[request])?.pop() {
        Some(ReadResult::Hash(fields)) => fields.into_iter().map(|(f, _)| f).collect(),
        Some(ReadResult::Top(members)) => members.into_iter().map(|(m, _)| m).collect(),
        _ => Vec::new(),
    };
    Ok(labels_in(labels.iter().map(String::as_str))
        .into_iter()
        .map(|l| xxh3_64(l.as_bytes()))
        .collect())
}

/// Drops the half of the keys with the oldest buckets (a write to one of them later loads it
/// again from the store).
fn forget_oldest(keys: &mut HashMap<String, KeyLabels>) {
    let mut starts: Vec<i64> = keys.values().map(|k| k.bucket_start).collect();
    starts.sort_unstable();
    let median = starts[starts.len() / 2];
    keys.retain(|_, k| k.bucket_start > median);
}
