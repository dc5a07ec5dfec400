//! The batch builder's lookup caches: interned property values and the last buckets seen.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::bucket::{BucketKind, Calendar};

/// The id of no value (an event's property not looked up yet, or an interner past `u32`).
pub(super) const NO_ID: u32 = u32::MAX;

/// The distinct values of one property within a batch, numbered in order of arrival.
#[derive(Debug, Clone, Default)]
pub(super) struct Interner {
    table: HashTable<u32>,
    texts: Vec<Box<str>>,
}

impl Interner {
    pub(super) fn id(&mut self, hasher: &DefaultHashBuilder, value: &str) -> u32 {
        let hash = hasher.hash_one(value);
        let texts = &self.texts;
        if let Some(&id) = self.table.find(hash, |&id| &*texts[id as usize] == value) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).unwrap_or(NO_ID);
        self.texts.push(value.into());
        let texts = &self.texts;
        self.table
            .insert_unique(hash, id, |&id| hasher.hash_one(&*texts[id as usize]));
        id
    }

    pub(super) fn text(&self, id: u64) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }
}

/// A bucket of a batch: its size, its start, and which calendar it belongs to (0: the
/// store's own zone, `i`: extra zone `i - 1`, whose keys have their own prefix).
pub(super) type BucketId = (BucketKind, i64, u8);

/// The last few buckets looked up, so most events skip the time-zone arithmetic.
#[derive(Debug, Default)]
pub(super) struct BucketCache {
    /// `[start, end)` and the bucket's number in the batch.
    entries: [(i64, i64, usize); 8],
    next: usize,
}

impl BucketCache {
    /// The batch-local number of the `kind` bucket of calendar number `index` holding `ts`,
    /// adding it to `buckets` when new.
    pub(super) fn number(
        &mut self,
        (index, calendar): (u8, &Calendar),
        kind: BucketKind,
        ts: i64,
        buckets: &mut Vec<BucketId>,
    ) -> usize {
        if let Some(&(_, _, number)) = self.entries.iter().find(|(s, e, _)| *s <= ts && ts < *e) {
            return number;
        }
        let start = calendar.bucket_start(kind, ts);
        let number = match buckets.iter().position(|&b| b == (kind, start, index)) {
            Some(n) => n,
            None => {
                buckets.push((kind, start, index));
                buckets.len() - 1
            }
        };
        self.entries[self.next] = (start, calendar.next_bucket_start(kind, start), number);
        self.next = (self.next + 1) % self.entries.len();
        number
    }
}
