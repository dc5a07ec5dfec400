//! [`ClaimIndex`]: exactly-once ingest ([`Storage::apply_claimed`](crate::Storage)) for a store
//! one process owns (RocksDB, sled).
//!
//! A batch's claimed ids are written as one chunk per day's set, in the batch's own atomic
//! write (`traqq_core::claim::id_chunk_key`: the set key, a zero byte, a stamp; the ids as the
//! value), so after a crash the ids and the operations are both there or neither is. Checking
//! 10,000 ids one point read at a time cost more than the batch itself; since one process owns
//! the store, the ids of each set it has touched are kept in memory instead (loaded from the
//! set's chunks the first time, about 40 bytes an id) and checked there, under a lock held
//! from the check to the end of the write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, MutexGuard};
use traqq_core::claim::{decode_ids, encode_ids, id_chunk_key, Claims, Seen};

use crate::{Error, Result};

/// The ids of the sets a process has touched (see the module docs).
#[derive(Debug)]
pub struct ClaimIndex {
    sets: Mutex<HashMap<String, HashSet<u128>>>,
    /// High half of every chunk stamp: when the store was opened (distinct across runs).
    opened: u64,
    /// Low half: chunks written since.
    written: AtomicU64,
}

impl Default for ClaimIndex {
    fn default() -> Self {
        ClaimIndex::new()
    }
}

impl ClaimIndex {
    /// An empty index.
    pub fn new() -> Self {
        let opened = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        ClaimIndex {
            sets: Mutex::new(HashMap::new()),
            opened,
            written: AtomicU64::new(0),
        }
    }

    /// Holds the index from a batch's check to the end of its write.
    pub fn lock(&self) -> ClaimGuard<'_> {
        ClaimGuard {
            index: self,
            sets: self.sets.lock(),
        }
    }

    /// Forgets the sets among `keys` (deleted from the store).
    pub fn forget(&self, keys: &[String]) {
        let mut sets = self.sets.lock();
        for key in keys {
            sets.remove(key.as_str());
        }
    }
}

/// The ids of the id set `set_key` held by its stored chunks (their values); an error names
/// the set when a chunk is not whole ids. What the index loads, and what `traqq export` reads.
pub fn decode_chunks(set_key: &str, chunks: &[Vec<u8>]) -> Result<Vec<u128>> {
    let mut ids = Vec::new();
    for chunk in chunks {
        let decoded = decode_ids(chunk).ok_or_else(|| {
            Error::corrupt(
                "claims",
                set_key.to_owned(),
                format!("an id chunk of {} bytes (not a multiple of 16)", chunk.len()),
            )
        })?;
        ids.extend(decoded);
    }
    Ok(ids)
}

/// The index, held by one claimed batch.
#[derive(Debug)]
pub struct ClaimGuard<'a> {
    index: &'a ClaimIndex,
    sets: MutexGuard<'a, HashMap<String, HashSet<u128>>>,
}

impl ClaimGuard<'_> {
    /// The claims of `claims` already stored. A set not seen before is loaded first:
    /// `load(set_key)` returns the values of its stored chunks.
    pub fn seen(
        &mut self,
        claims: &Claims,
        mut load: impl FnMut(&str) -> Result<Vec<Vec<u8>>>,
    ) -> Result<Vec<Seen>> {
        let mut seen = Vec::new();
        for (set, claim) in claims.sets().iter().enumerate() {
            if !self.sets.contains_key(claim.key.as_str()) {
                let ids = decode_chunks(&claim.key, &load(&claim.key)?)?;
                self.sets.insert(claim.key.clone(), ids.into_iter().collect());
            }
            if let Some(held) = self.sets.get(claim.key.as_str()) {
                seen.extend(
                    claim
                        .ids
                        .iter()
                        .filter(|id| held.contains(*id))
                        .map(|&id| Seen { set, id }),
                );
            }
        }
        Ok(seen)
    }

    /// The chunks to write with the batch: one `(key, value)` per day's set.
    pub fn chunks(&self, claims: &Claims) -> Vec<(Vec<u8>, Vec<u8>)> {
        claims
            .sets()
            .iter()
            .filter(|s| !s.ids.is_empty())
            .map(|s| {
                let stamp = (u128::from(self.index.opened) << 64)
                    | u128::from(self.index.written.fetch_add(1, Ordering::Relaxed));
                (id_chunk_key(&s.key, stamp), encode_ids(&s.ids))
            })
            .collect()
    }

    /// Records that `claims` were written.
    pub fn commit(&mut self, claims: &Claims) {
        for set in claims.sets() {
            self.sets
                .entry_ref(set.key.as_str())
                .or_default()
                .extend(set.ids.iter().copied());
        }
    }
}
