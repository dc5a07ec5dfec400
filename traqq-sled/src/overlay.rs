//! The overlay: batches logged but not yet folded into the data, coalesced per key. Reads add
//! it to the folded data; the fold writes it out.

use hashbrown::HashMap;
use traqq_core::batch::{Batch, FieldMap, FieldSet, KeyEntry, KeyOps};
use traqq_core::bucket::BucketKind;

/// Coalesced operations per key (like a [`Batch`], but merged into one key lookup per key and
/// batch instead of one per field).
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    entries: HashMap<String, KeyEntry>,
}

impl Overlay {
    /// Adds every operation of `batch`.
    pub(crate) fn add(&mut self, batch: &Batch) {
        for (key, entry) in batch.iter() {
            match self.entries.get_mut(key) {
                None => {
                    self.entries.insert(key.to_owned(), entry.clone());
                }
                Some(mine) => match &entry.ops {
                    KeyOps::Hash(m) => m.iter().for_each(|(f, n)| mine.ops.incr(f, *n)),
                    KeyOps::Scores(m) => m.iter().for_each(|(f, s)| mine.ops.zincr(f, *s)),
                    KeyOps::Hll(s) | KeyOps::Members(s) => s.iter().for_each(|v| mine.ops.insert(v)),
                },
            }
        }
    }

    /// The operations of `key`, created empty by `empty` when missing (log replay).
    pub(crate) fn slot(
        &mut self,
        key: &str,
        bucket: (BucketKind, i64),
        empty: fn() -> KeyOps,
    ) -> &mut KeyOps {
        &mut self
            .entries
            .entry_ref(key)
            .or_insert_with(|| KeyEntry {
                bucket: bucket.0,
                bucket_start: bucket.1,
                ops: empty(),
                max_labels: 0,
            })
            .ops
    }

    /// The pending operations of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&KeyOps> {
        self.entries.get(key).map(|e| &e.ops)
    }

    /// Every key and its operations.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &KeyOps)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), &e.ops))
    }

    /// Distinct (key, field) operations held.
    pub(crate) fn op_count(&self) -> usize {
        self.entries.values().map(|e| e.ops.len()).sum()
    }

    /// The same operations as one [`Batch`] (tests).
    #[cfg(test)]
    pub(crate) fn to_batch(&self) -> Batch {
        let mut b = Batch::new();
        for (key, e) in &self.entries {
            let bucket = (e.bucket, e.bucket_start);
            match &e.ops {
                KeyOps::Hash(m) => m.iter().for_each(|(f, n)| b.incr(key, bucket, f, *n)),
                KeyOps::Scores(m) => m.iter().for_each(|(f, s)| b.zincr(key, bucket, f, *s)),
                KeyOps::Hll(s) => s.iter().for_each(|v| b.hll_insert(key, bucket, v)),
                KeyOps::Members(s) => s.iter().for_each(|v| b.sadd(key, bucket, v)),
            }
        }
        b
    }
}

/// An empty hash.
pub(crate) fn hash() -> KeyOps {
    KeyOps::Hash(FieldMap::new())
}

/// An empty leaderboard.
pub(crate) fn scores() -> KeyOps {
    KeyOps::Scores(FieldMap::new())
}

/// An empty HyperLogLog insert set.
pub(crate) fn hll() -> KeyOps {
    KeyOps::Hll(FieldSet::new())
}

/// An empty set-member set.
pub(crate) fn members() -> KeyOps {
    KeyOps::Members(FieldSet::new())
}
