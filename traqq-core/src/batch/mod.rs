//! The write side of the storage contract: a batch of coalesced metric operations.
//!
//! Increments to the same (key, field) are added together and HLL inserts and set members
//! are deduplicated as they arrive, so a batch of 10,000 events holds about as many
//! operations as there are distinct (key, field) pairs.

use hashbrown::HashMap;

use crate::bucket::BucketKind;

mod fields;
pub use fields::{FieldMap, FieldSet, Iter, Keys};

/// A hash-field increment: integer (`HINCRBY`) or float (`HINCRBYFLOAT`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// Integer counter.
    Int(i64),
    /// Float sum.
    Float(f64),
}

impl Number {
    /// The sum of two numbers; integers stay integers.
    pub fn plus(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Number::Int(a.saturating_add(b)),
            (a, b) => Number::Float(a.as_f64() + b.as_f64()),
        }
    }

    /// The value as `f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(n) => n as f64,
            Number::Float(x) => x,
        }
    }

    /// The value as `i64` (floats rounded).
    pub fn as_i64(self) -> i64 {
        match self {
            Number::Int(n) => n,
            Number::Float(x) => x.round() as i64,
        }
    }
}

/// What a batch does to one key. A key has exactly one type.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOps {
    /// Hash field increments (`add`, `adv`, `adv` summaries).
    Hash(FieldMap<Number>),
    /// Values inserted into a HyperLogLog (`bmp`).
    Hll(FieldSet),
    /// Sorted-set score increments (`top`).
    Scores(FieldMap<f64>),
    /// Members added to a set (the per-bucket key sets).
    Members(FieldSet),
}

impl KeyOps {
    fn new_hash() -> KeyOps {
        KeyOps::Hash(FieldMap::new())
    }
    fn new_hll() -> KeyOps {
        KeyOps::Hll(FieldSet::new())
    }
    fn new_scores() -> KeyOps {
        KeyOps::Scores(FieldMap::new())
    }
    fn new_members() -> KeyOps {
        KeyOps::Members(FieldSet::new())
    }

    /// Adds `by` to hash field `field` (ignored unless this is a hash).
    pub fn incr(&mut self, field: &str, by: Number) {
        if let KeyOps::Hash(m) = self {
            let slot = m.or_insert(
                field,
                match by {
                    Number::Int(_) => Number::Int(0),
                    Number::Float(_) => Number::Float(0.0),
                },
            );
            *slot = slot.plus(by);
        }
    }

    /// Sets hash field `field`, which the caller knows is not here yet, to `to`, or sorted-set
    /// member `field` to score `to` (ignored for the other types).
    pub fn add_new(&mut self, field: &str, to: Number) {
        match self {
            KeyOps::Hash(m) => m.insert_new(field, to),
            KeyOps::Scores(m) => m.insert_new(field, to.as_f64()),
            KeyOps::Hll(_) | KeyOps::Members(_) => {}
        }
    }

    /// Adds `by` to the score of `member` (ignored unless this is a sorted set).
    pub fn zincr(&mut self, member: &str, by: f64) {
        if let KeyOps::Scores(m) = self {
            *m.or_insert(member, 0.0) += by;
        }
    }

    /// Inserts a HyperLogLog value or set member (ignored for hashes and sorted sets).
    pub fn insert(&mut self, value: &str) {
        if let KeyOps::Hll(s) | KeyOps::Members(s) = self {
            s.insert(value);
        }
    }

    /// Folds another key's operations of the same type into these.
    pub fn fold(&mut self, other: KeyOps) {
        self.fold_from(&other);
    }

    /// Folds another key's operations of the same type into these, copying only the fields
    /// and values that are new here.
    pub fn fold_from(&mut self, other: &KeyOps) {
        match other {
            KeyOps::Hash(m) => m.iter().for_each(|(f, n)| self.incr(f, *n)),
            KeyOps::Hll(s) | KeyOps::Members(s) => s.iter().for_each(|v| self.insert(v)),
            KeyOps::Scores(m) => m.iter().for_each(|(f, n)| self.zincr(f, *n)),
        }
    }

    /// Makes room for `more` new fields, members or values at once.
    pub fn reserve(&mut self, more: usize) {
        match self {
            KeyOps::Hash(m) => m.reserve(more),
            KeyOps::Hll(s) | KeyOps::Members(s) => s.reserve(more),
            KeyOps::Scores(m) => m.reserve(more),
        }
    }

    /// [`KeyOps::reserve`] for `more` fields that [`KeyOps::add_new`] will add.
    pub fn reserve_new(&mut self, more: usize) {
        match self {
            KeyOps::Hash(m) => m.reserve_new(more),
            KeyOps::Scores(m) => m.reserve_new(more),
            KeyOps::Hll(s) | KeyOps::Members(s) => s.reserve(more),
        }
    }

    /// Number of (field/member/value) operations.
    pub fn len(&self) -> usize {
        match self {
            KeyOps::Hash(m) => m.len(),
            KeyOps::Hll(s) | KeyOps::Members(s) => s.len(),
            KeyOps::Scores(m) => m.len(),
        }
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The operations on one key, and the bucket the key belongs to (for retention/expiry).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    /// Bucket granularity of the key.
    pub bucket: BucketKind,
    /// Bucket start, unix seconds.
    pub bucket_start: i64,
    /// What to do.
    pub ops: KeyOps,
    /// Most distinct labels (hash fields, sorted-set members) the key may hold; a new label past
    /// it goes to the label `(other)`. `0` = no cap. See the `labels` module.
    pub max_labels: usize,
}

/// A set of coalesced operations, applied by a `Storage` in one go (atomically where it can).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    entries: HashMap<String, KeyEntry>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys and their operations, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &KeyEntry)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e))
    }

    /// The entry of `key`, if the batch touches it.
    pub fn get(&self, key: &str) -> Option<&KeyEntry> {
        self.entries.get(key)
    }

    /// Number of keys touched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the batch touches no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of coalesced (key, field) operations.
    pub fn op_count(&self) -> usize {
        self.entries.values().map(|e| e.ops.len()).sum()
    }

    fn entry(
        &mut self,
        key: &str,
        bucket: BucketKind,
        bucket_start: i64,
        empty: fn() -> KeyOps,
    ) -> &mut KeyOps {
        &mut self
            .entries
            .entry_ref(key)
            .or_insert_with(|| KeyEntry {
                bucket,
                bucket_start,
                ops: empty(),
                max_labels: 0,
            })
            .ops
    }

    /// Adds `by` to hash field `field` of `key`.
    pub fn incr(&mut self, key: &str, bucket: (BucketKind, i64), field: &str, by: Number) {
        self.entry(key, bucket.0, bucket.1, KeyOps::new_hash)
            .incr(field, by);
    }

    /// Inserts `value` into the HyperLogLog `key`.
    pub fn hll_insert(&mut self, key: &str, bucket: (BucketKind, i64), value: &str) {
        self.entry(key, bucket.0, bucket.1, KeyOps::new_hll).insert(value);
    }

    /// Adds `by` to the score of `member` in sorted set `key`.
    pub fn zincr(&mut self, key: &str, bucket: (BucketKind, i64), member: &str, by: f64) {
        self.entry(key, bucket.0, bucket.1, KeyOps::new_scores)
            .zincr(member, by);
    }

    /// Adds `member` to set `key`.
    pub fn sadd(&mut self, key: &str, bucket: (BucketKind, i64), member: &str) {
        self.entry(key, bucket.0, bucket.1, KeyOps::new_members)
            .insert(member);
    }

    /// Adds a whole entry; if the key is already present, its operations are folded in.
    pub fn put(&mut self, key: &str, entry: KeyEntry) {
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(key.to_owned(), entry);
            }
            Some(existing) => existing.ops.fold(entry.ops),
        }
    }

    /// Replaces the entry of `key` (adds it when the batch does not touch `key`).
    pub fn replace(&mut self, key: &str, entry: KeyEntry) {
        self.entries.insert(key.to_owned(), entry);
    }

    /// Folds `other` into `self`, coalescing as if its operations had been added here.
    pub fn merge(&mut self, other: Batch) {
        for (key, entry) in other.entries {
            self.put(&key, entry);
        }
    }

    /// Like [`Batch::merge`], for a batch the caller keeps: only keys and fields new here are
    /// copied.
    pub fn merge_from(&mut self, other: &Batch) {
        for (key, entry) in &other.entries {
            match self.entries.get_mut(key.as_str()) {
                Some(existing) => existing.ops.fold_from(&entry.ops),
                None => {
                    self.entries.insert(key.clone(), entry.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces() {
        let d = (BucketKind::Day, 0);
        let mut b = Batch::new();
        for _ in 0..3 {
            b.incr("k", d, "f", Number::Int(1));
            b.incr("s", d, "sum", Number::Float(0.5));
            b.hll_insert("h", d, "x");
            b.zincr("z", d, "m", 2.0);
            b.sadd("set", d, "a");
        }
        assert_eq!(b.len(), 5);
        assert_eq!(b.op_count(), 5);
        let KeyOps::Hash(m) = &b.get("k").unwrap().ops else {
            panic!()
        };
        assert_eq!(m.get("f"), Some(&Number::Int(3)));
        let KeyOps::Hash(m) = &b.get("s").unwrap().ops else {
            panic!()
        };
        assert_eq!(m.get("sum"), Some(&Number::Float(1.5)));
        let KeyOps::Scores(m) = &b.get("z").unwrap().ops else {
            panic!()
        };
        assert_eq!(m.get("m"), Some(&6.0));
    }

    #[test]
    fn merging_batches_equals_building_one() {
        let d = (BucketKind::Day, 0);
        let h = (BucketKind::Hour, 3600);
        let fill = |b: &mut Batch, n: i64| {
            b.incr("k", d, "f", Number::Int(n));
            b.incr("k", d, &format!("f{n}"), Number::Int(1));
            b.incr("s", h, "sum", Number::Float(0.25 * n as f64));
            b.hll_insert("h", d, &format!("ip{}", n % 3));
            b.zincr("z", d, "m", n as f64);
            b.sadd("set", d, &format!("a{n}"));
        };
        let mut whole = Batch::new();
        let mut by_merge = Batch::new();
        let mut by_merge_from = Batch::new();
        for n in 1..=5 {
            fill(&mut whole, n);
            let mut part = Batch::new();
            fill(&mut part, n);
            by_merge_from.merge_from(&part);
            by_merge.merge(part);
        }
        assert_eq!(by_merge, whole);
        assert_eq!(by_merge_from, whole);
        let KeyOps::Hash(m) = &whole.get("k").unwrap().ops else {
            panic!()
        };
        assert_eq!(m.get("f"), Some(&Number::Int(15)));
    }
}
