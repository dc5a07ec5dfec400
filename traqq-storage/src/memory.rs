//! [`MemoryStorage`]: the in-process backend. Fast, bounded, not persistent.
//!
//! Unique counts are real HyperLogLog sketches (about 12 KiB per key at most), so memory stays
//! flat however many distinct values arrive. Keys are spread over 64 shards, each behind its
//! own lock: concurrent batches only wait for each other where they touch the same shard.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, MutexGuard};
use traqq_core::batch::{Batch, KeyEntry, KeyOps, Number};
use traqq_core::claim::{Claims, Seen};
use traqq_core::labels::{cap_labels, labels_in, OTHER};
use traqq_core::read::{top_ranked, FieldSums, Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch, Sketch, SketchFamily};

use crate::storage::{decode_sketch, Capabilities, Storage};
use crate::{Error, Result};

const SHARDS: usize = 64;

#[derive(Debug)]
enum Value {
    Hash(HashMap<String, Number>),
    Hll(Sketch),
    Scores(HashMap<String, f64>),
    Members(HashSet<String>),
    /// A day's claimed event ids ([`Storage::apply_claimed`]).
    Ids(HashSet<u128>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Hash(_) => "hash",
            Value::Hll(_) => "hyperloglog",
            Value::Scores(_) => "sorted set",
            Value::Members(_) => "set",
            Value::Ids(_) => "id set",
        }
    }

    fn empty_for(ops: &KeyOps, sketches: SketchFamily) -> Value {
        match ops {
            KeyOps::Hash(_) => Value::Hash(HashMap::new()),
            KeyOps::Hll(_) => Value::Hll(Sketch::new_in(sketches)),
            KeyOps::Scores(_) => Value::Scores(HashMap::new()),
            KeyOps::Members(_) => Value::Members(HashSet::new()),
        }
    }

    fn accepts(&self, ops: &KeyOps) -> bool {
        matches!(
            (self, ops),
            (Value::Hash(_), KeyOps::Hash(_))
                | (Value::Hll(_), KeyOps::Hll(_))
                | (Value::Scores(_), KeyOps::Scores(_))
                | (Value::Members(_), KeyOps::Members(_))
        )
    }

    /// `entry`'s operations with its label cap applied against what this value holds, and how
    /// many new labels went to `(other)`; `None` when they fit as they are.
    fn capped(&self, entry: &KeyEntry) -> Option<(KeyOps, usize)> {
        let cap = entry.max_labels;
        let (held, has_other) = match self {
            Value::Hash(h) => (h.len(), h.contains_key(OTHER)),
            Value::Scores(z) => (z.len(), z.contains_key(OTHER)),
            _ => return None,
        };
        let held = held - usize::from(has_other);
        // Fields are at least as many as labels: when they fit, the labels do.
        if cap == 0 || held + entry.ops.len() <= cap {
            return None;
        }
        let mut ops = entry.ops.clone();
        let capped = match self {
            // A distribution's fields are `LABEL:BIN`: the cap counts their labels.
            Value::Hash(h) if is_distribution(&entry.ops) => {
                let labels = labels_in(h.keys().map(String::as_str));
                cap_labels(&mut ops, cap, labels.len(), |label| labels.contains(label))
            }
            Value::Hash(h) => cap_labels(&mut ops, cap, held, |label| h.contains_key(label)),
            Value::Scores(z) => cap_labels(&mut ops, cap, held, |label| z.contains_key(label)),
            _ => return None,
        };
        Some((ops, capped.overflowed))
    }

    fn apply(&mut self, ops: &KeyOps) {
        match (self, ops) {
            (Value::Hash(h), KeyOps::Hash(incrs)) => {
                for (field, by) in incrs {
                    let slot = h.entry_ref(field).or_insert(match by {
                        Number::Int(_) => Number::Int(0),
                        Number::Float(_) => Number::Float(0.0),
                    });
                    *slot = slot.plus(*by);
                }
            }
            (Value::Hll(s), KeyOps::Hll(values)) => values.iter().for_each(|v| s.insert(v)),
            (Value::Scores(z), KeyOps::Scores(incrs)) => {
                for (member, by) in incrs {
                    *z.entry_ref(member).or_insert(0.0) += by;
                }
            }
            (Value::Members(s), KeyOps::Members(members)) => {
                for m in members {
                    if !s.contains(m) {
                        s.insert(m.to_owned());
                    }
                }
            }
            // `accepts` is checked for every key before anything is applied.
            _ => {}
        }
    }
}

type Shard = HashMap<String, Value>;
/// A batch's operations that fall in one shard.
type ShardOps<'b> = Vec<(&'b str, &'b KeyEntry)>;

/// The in-memory backend.
#[derive(Debug)]
pub struct MemoryStorage {
    shards: Vec<Mutex<Shard>>,
    hasher: hashbrown::DefaultHashBuilder,
    /// New labels counted under `(other)` ([`Storage::labels_overflowed`]).
    overflowed: AtomicU64,
    /// The sketch family of its unique counts.
    sketches: SketchFamily,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty store, counting uniques with the sketch family new stores keep
    /// ([`crate::format::NEW_STORE_SKETCHES`]: Redis's, so counts agree with a Redis store's).
    pub fn new() -> Self {
        Self::with_sketches(crate::format::NEW_STORE_SKETCHES)
    }

    /// An empty store counting uniques with sketches of `family` (to take a dump of a store
    /// of that family, sketches included).
    pub fn with_sketches(family: SketchFamily) -> Self {
        MemoryStorage {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            overflowed: AtomicU64::new(0),
            sketches: family,
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    /// Number of keys stored.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// The union of the leaderboards `keys`, cut to `limit`. The shards holding them are locked
    /// together (in index order, as [`Storage::apply`] does), so members are summed and ranked
    /// borrowed and only the `limit` returned are copied: a day of another zone merges 24 hours
    /// of up to thousands of members each.
    fn top(&self, keys: &[String], limit: usize) -> Result<ReadResult> {
        let (guards, guard_of_key) = self.lock_keys(keys);
        let mut boards = Vec::with_capacity(keys.len());
        for (key, &g) in keys.iter().zip(&guard_of_key) {
            match guards[g].get(key.as_str()) {
                None => {}
                Some(Value::Scores(z)) => boards.push(z),
                Some(other) => return Err(wrong_type(key, other)),
            }
        }
        // Sized for the union up front: growing rehashes every member added so far, and
        // hashing members is most of a union's time.
        let largest = boards.iter().map(|z| z.len()).max().unwrap_or(0);
        let mut scores: HashMap<&str, f64> = HashMap::with_capacity(largest * 2);
        for z in boards {
            for (m, s) in z {
                *scores.entry(m.as_str()).or_insert(0.0) += s;
            }
        }
        let mut list: Vec<(&str, f64)> = scores.into_iter().collect();
        top_ranked(&mut list, limit);
        Ok(ReadResult::Top(
            list.into_iter().map(|(m, s)| (m.to_owned(), s)).collect(),
        ))
    }
}

impl MemoryStorage {
    /// Locks the shards holding `keys` together, in index order (as [`Storage::apply`] does, so
    /// no deadlock): the guards, and for each key the position of its shard's guard.
    fn lock_keys<K: AsRef<str>>(&self, keys: &[K]) -> (Vec<MutexGuard<'_, Shard>>, Vec<usize>) {
        let shard_of_key: Vec<usize> = keys.iter().map(|k| self.shard_of(k.as_ref())).collect();
        let mut shards = shard_of_key.clone();
        shards.sort_unstable();
        shards.dedup();
        let guard_of_key = shard_of_key
            .iter()
            .map(|s| shards.binary_search(s).unwrap_or_default())
            .collect();
        (
            shards.into_iter().map(|i| self.shards[i].lock()).collect(),
            guard_of_key,
        )
    }
}

/// Whether hash operations are a distribution's (`dst`): its fields are `LABEL:BIN`, no other
/// metric's field holds a `:`.
fn is_distribution(ops: &KeyOps) -> bool {
    matches!(ops, KeyOps::Hash(m) if m.keys().next().is_some_and(|f| f.contains(':')))
}

fn wrong_type(key: &str, held: &Value) -> Error {
    Error::backend(
        "memory",
        format!(
            "key {key:?} holds a {}, not the type this operation needs",
            held.type_name()
        ),
    )
}

impl Storage for MemoryStorage {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, false).with_sketches(self.sketches)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        // Lock every shard the batch touches, in index order (no deadlock), so the whole batch
        // becomes visible at once; check types before changing anything.
        let mut by_shard: Vec<ShardOps<'_>> = vec![Vec::new(); SHARDS];
        for (key, entry) in batch.iter() {
            by_shard[self.shard_of(key)].push((key, entry));
        }
        let mut guards: Vec<(MutexGuard<'_, Shard>, &ShardOps<'_>)> = by_shard
            .iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(i, ops)| (self.shards[i].lock(), ops))
            .collect();
        for (shard, ops) in &guards {
            for (key, entry) in ops.iter() {
                if let Some(v) = shard.get(*key) {
                    if !v.accepts(&entry.ops) {
                        return Err(wrong_type(key, v));
                    }
                }
            }
        }
        let mut overflowed = 0;
        for (shard, ops) in &mut guards {
            for (key, entry) in ops.iter() {
                let value = shard
                    .entry_ref(*key)
                    .or_insert_with(|| Value::empty_for(&entry.ops, self.sketches));
                match value.capped(entry) {
                    None => value.apply(&entry.ops),
                    Some((ops, n)) => {
                        value.apply(&ops);
                        overflowed += n;
                    }
                }
            }
        }
        if overflowed > 0 {
            self.overflowed.fetch_add(overflowed as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        // The claim check and the id inserts happen under the id sets' shard locks (in index
        // order); the batch is applied after they are released (apply takes its own locks in
        // the same order, so holding both could not deadlock, but it need not wait). A batch
        // that then fails (a key of another type) takes its ids back.
        let mut shards: Vec<usize> = claims.sets().iter().map(|s| self.shard_of(&s.key)).collect();
        shards.sort_unstable();
        shards.dedup();
        {
            let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
                shards.iter().map(|&i| (i, self.shards[i].lock())).collect();
            let mut seen = Vec::new();
            for (set, claim) in claims.sets().iter().enumerate() {
                let Some((_, shard)) = guards.iter().find(|(i, _)| *i == self.shard_of(&claim.key)) else {
                    continue;
                };
                match shard.get(claim.key.as_str()) {
                    None => {}
                    Some(Value::Ids(held)) => seen.extend(
                        claim
                            .ids
                            .iter()
                            .filter(|id| held.contains(*id))
                            .map(|&id| Seen { set, id }),
                    ),
                    Some(other) => return Err(wrong_type(&claim.key, other)),
                }
            }
            if !seen.is_empty() {
                return Ok(seen);
            }
            for claim in claims.sets() {
                let shard = self.shard_of(&claim.key);
                if let Some((_, guard)) = guards.iter_mut().find(|(i, _)| *i == shard) {
                    if let Value::Ids(held) = guard
                        .entry_ref(claim.key.as_str())
                        .or_insert_with(|| Value::Ids(HashSet::new()))
                    {
                        held.extend(claim.ids.iter().copied());
                    }
                }
            }
        }
        if let Err(error) = self.apply(batch) {
            for claim in claims.sets() {
                if let Some(Value::Ids(held)) = self.shards[self.shard_of(&claim.key)]
                    .lock()
                    .get_mut(claim.key.as_str())
                {
                    claim.ids.iter().for_each(|id| {
                        held.remove(id);
                    });
                }
            }
            return Err(error);
        }
        Ok(Vec::new())
    }

    fn labels_overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        reads
            .iter()
            .map(|read| {
                Ok(match read {
                    Read::Hash(key) => {
                        ReadResult::Hash(match self.shards[self.shard_of(key)].lock().get(key.as_str()) {
                            None => Vec::new(),
                            Some(Value::Hash(h)) => h.iter().map(|(f, n)| (f.clone(), *n)).collect(),
                            Some(other) => return Err(wrong_type(key, other)),
                        })
                    }
                    Read::Sum(keys) => {
                        let mut sums = FieldSums::default();
                        for key in keys {
                            match self.shards[self.shard_of(key)].lock().get(key.as_str()) {
                                None => {}
                                Some(Value::Hash(h)) => h.iter().for_each(|(f, n)| sums.add(f, *n)),
                                Some(other) => return Err(wrong_type(key, other)),
                            }
                        }
                        sums.into_result()
                    }
                    Read::Count(keys) => {
                        let mut union = Sketch::new_in(self.sketches);
                        for key in keys {
                            match self.shards[self.shard_of(key)].lock().get(key.as_str()) {
                                None => {}
                                Some(Value::Hll(s)) => union
                                    .merge(s)
                                    .map_err(|e| Error::backend("memory", format!("key {key:?}: {e}")))?,
                                Some(other) => return Err(wrong_type(key, other)),
                            }
                        }
                        ReadResult::Count(union.count())
                    }
                    Read::Top { keys, limit } => self.top(keys, *limit)?,
                    Read::Members(key) => {
                        ReadResult::Members(match self.shards[self.shard_of(key)].lock().get(key.as_str()) {
                            None => Vec::new(),
                            Some(Value::Members(s)) => s.iter().cloned().collect(),
                            Some(Value::Ids(ids)) => ids.iter().map(|id| format!("{id:032x}")).collect(),
                            Some(other) => return Err(wrong_type(key, other)),
                        })
                    }
                })
            })
            .collect()
    }

    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        keys.iter()
            .map(
                |key| match self.shards[self.shard_of(key)].lock().get(key.as_str()) {
                    None => Ok(None),
                    Some(Value::Hll(s)) => Ok(Some(s.to_raw())),
                    Some(other) => Err(wrong_type(key, other)),
                },
            )
            .collect()
    }

    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        set_keys
            .iter()
            .map(
                |key| match self.shards[self.shard_of(key)].lock().get(key.as_str()) {
                    None => Ok(Vec::new()),
                    Some(Value::Ids(ids)) => Ok(ids.iter().copied().collect()),
                    Some(other) => Err(wrong_type(key, other)),
                },
            )
            .collect()
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        let decoded = sketches
            .iter()
            .map(|s| decode_sketch("memory", self.sketches, s))
            .collect::<Result<Vec<Sketch>>>()?;
        let keys: Vec<&str> = sketches.iter().map(|s| s.key.as_str()).collect();
        let (mut guards, guard_of_key) = self.lock_keys(&keys);
        for (key, &g) in keys.iter().zip(&guard_of_key) {
            match guards[g].get(*key) {
                None | Some(Value::Hll(_)) => {}
                Some(other) => return Err(wrong_type(key, other)),
            }
        }
        for ((key, &g), sketch) in keys.iter().zip(&guard_of_key).zip(decoded) {
            guards[g].insert((*key).to_owned(), Value::Hll(sketch));
        }
        Ok(())
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.shards[self.shard_of(key)].lock().remove(key.as_str());
        }
        Ok(())
    }

    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        let mut shard = self.shards[self.shard_of(key)].lock();
        match shard.get_mut(key) {
            None => Ok(()),
            Some(Value::Members(set)) => {
                members.iter().for_each(|m| {
                    set.remove(m.as_str());
                });
                if set.is_empty() {
                    shard.remove(key);
                }
                Ok(())
            }
            Some(other) => Err(wrong_type(key, other)),
        }
    }
}
