//! The HyperLogLog sketch behind `bmp` metrics.
//!
//! Values are hashed with `xxh3` under a fixed seed and the 64-bit hash goes into
//! `hyperloglogplus` through a pass-through hasher. The fixed seed matters: a sketch written by
//! one process and extended by another must hash the same value to the same bits, or counts
//! drift after every restart.

use std::hash::{BuildHasher, Hasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Precision 14: 16,384 registers, about 0.8% standard error, 12 KiB dense
/// (and far less while sparse, as most per-day sketches are).
pub const PRECISION: u8 = 14;

/// Seed of the value hash. Changing it invalidates every stored sketch.
const SEED: u64 = 0x7472_6171_715f_686c; // "traqq_hl"

/// Hashes a value the way every sketch does.
pub fn hash_value(value: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), SEED)
}

/// A `BuildHasher` whose hasher returns the `u64` it was given: values arrive pre-hashed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PassThrough;

/// The hasher built by [`PassThrough`].
#[derive(Debug, Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Sketch`; fold anything else so it still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// The uncertainty of a distinct count read from a sketch: its relative standard error and a
/// 95% interval. Every store counts with HyperLogLog at [`PRECISION`] (the memory and embedded
/// stores with this crate's sketch, Redis with its own `PFCOUNT`), so the bound depends on the
/// count alone: linear counting's error while few registers are set, `1.04 / sqrt(m)` past
/// that. Small counts (below about 45) come out exact: their interval is the count itself.
///
/// ```
/// use traqq_core::sketch::CountError;
///
/// assert!(CountError::of(12).exact);
/// let big = CountError::of(1_000_000);
/// assert!((big.rse - 0.0081).abs() < 0.0001);
/// assert!(big.low < 1_000_000 && big.high > 1_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CountError {
    /// Relative standard error (0.0081 for a large count).
    pub rse: f64,
    /// Lower end of the 95% interval.
    pub low: u64,
    /// Upper end of the 95% interval.
    pub high: u64,
    /// The interval is the count itself.
    pub exact: bool,
}

impl CountError {
    /// The error bars of the count `n`.
    pub fn of(n: u64) -> CountError {
        let m = f64::from(1u32 << PRECISION);
        let x = n as f64;
        let rse = if n == 0 {
            0.0
        } else {
            // Linear counting over m registers (HyperLogLog's small range): the standard
            // deviation of the estimate is sqrt(m (e^t - t - 1)) at load t = n / m; past the
            // load where that exceeds HyperLogLog's own 1.04 / sqrt(m), the latter.
            let t = x / m;
            let linear = (m * (t.exp() - t - 1.0)).sqrt() / x;
            linear.min(1.04 / m.sqrt())
        };
        let half = 1.96 * rse * x;
        let low = (x - half).ceil().max(0.0) as u64;
        let high = (x + half).floor() as u64;
        let (low, high) = (low.min(n), high.max(n));
        CountError {
            rse,
            low,
            high,
            exact: low == n && high == n,
        }
    }
}

/// Which HyperLogLog a store keeps: the hash of the values and the encoding of the registers.
/// Sketches of one family move between stores byte for byte (`traqq export` / `traqq
/// restore`); between families they cannot be converted, since the registers come from
/// different hashes of values that are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SketchFamily {
    /// [`Sketch`]: xxh3 under a fixed seed into `hyperloglogplus`, stored as
    /// [`Sketch::to_bytes`] (memory, RocksDB and sled stores).
    Traqq,
    /// Redis's own HyperLogLog string (`PFADD`: MurmurHash64A, Redis's sparse/dense encoding).
    Redis,
}

impl SketchFamily {
    /// The name used in dumps and messages: `traqq` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            SketchFamily::Traqq => "traqq",
            SketchFamily::Redis => "redis",
        }
    }
}

impl std::fmt::Display for SketchFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key's sketch as its store holds it, for export and restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSketch {
    /// Whose encoding `bytes` are.
    pub family: SketchFamily,
    /// The stored bytes (for [`SketchFamily::Traqq`], those of [`Sketch::to_bytes`]).
    pub bytes: Vec<u8>,
}

/// A sketch to store under a key of a bucket (restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySketch {
    /// The traqq key (`prefix:bmp:...`).
    pub key: String,
    /// The bucket the key belongs to (for expiry and retention).
    pub bucket: (crate::bucket::BucketKind, i64),
    /// What the key holds.
    pub sketch: RawSketch,
}

/// A mergeable, serializable distinct-count sketch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sketch {
    inner: HyperLogLogPlus<u64, PassThrough>,
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Self {
        match HyperLogLogPlus::new(PRECISION, PassThrough) {
            Ok(inner) => Sketch { inner },
            // PRECISION is a constant inside the crate's accepted range (4..=18).
            Err(_) => unreachable!("precision {PRECISION} is valid"),
        }
    }

    /// Adds a value.
    pub fn insert(&mut self, value: &str) {
        self.insert_hash(hash_value(value));
    }

    /// Adds a value already hashed with [`hash_value`].
    pub fn insert_hash(&mut self, hash: u64) {
        self.inner.insert(&hash);
    }

    /// Estimated number of distinct values, rounded.
    pub fn count(&mut self) -> u64 {
        self.inner.count().round().max(0.0) as u64
    }

    /// Unions `other` into `self`.
    pub fn merge(&mut self, other: &Sketch) {
        // Both sides always use PRECISION, so the precision check cannot fail.
        let _ = self.inner.merge(&other.inner);
    }

    /// Serializes the sketch (postcard). Folds pending inserts first, so equal sketches give
    /// equal bytes.
    pub fn to_bytes(&mut self) -> Vec<u8> {
        self.inner.count();
        postcard::to_allocvec(&self.inner).unwrap_or_default()
    }

    /// The sketch as export moves it: [`SketchFamily::Traqq`], [`Sketch::to_bytes`].
    pub fn to_raw(&mut self) -> RawSketch {
        RawSketch {
            family: SketchFamily::Traqq,
            bytes: self.to_bytes(),
        }
    }

    /// Reads a sketch written by [`Sketch::to_bytes`]. Bytes that decode but do not form a
    /// consistent sketch are an error, never a panic or a huge allocation later.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch> {
        let mut fresh = Sketch::new();
        fresh.merge_bytes(bytes)?;
        fresh.inner.count();
        Ok(fresh)
    }

    /// Unions the sketch written as `bytes` (by [`Sketch::to_bytes`]) into `self`: what
    /// [`Sketch::from_bytes`] then [`Sketch::merge`] do, in one merge instead of two (a union
    /// of many stored sketches, e.g. another zone's day from 24 hours, decodes each once; a
    /// sparse sketch of thousands of values costs ~0.7 ms to rebuild alone). On an error
    /// `self` may hold part of the union: discard it.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let stored: HyperLogLogPlus<u64, PassThrough> =
            postcard::from_bytes(bytes).map_err(|e| Error::Sketch(e.to_string()))?;
        // `hyperloglogplus` trusts its own fields (register count, sparse-list sizes): a value
        // whose fields disagree with its data would panic, or allocate gigabytes, the next
        // time it is used. So the stored sketch is only ever merged into one whose fields are
        // its own (never used itself); the merge also checks the precision (which the crate
        // keeps private). A panic on the way is an error here.
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.merge(&stored)));
        match merged {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Sketch(format!("precision differs from {PRECISION}"))),
            Err(_) => Err(Error::Sketch("inconsistent sketch fields".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_unions_and_round_trips() {
        let mut a = Sketch::new();
        let mut b = Sketch::new();
        for i in 0..30_000 {
            a.insert(&format!("v{i}"));
        }
        for i in 20_000..50_000 {
            b.insert(&format!("v{i}"));
        }
        let ca = a.count() as f64;
        assert!((ca - 30_000.0).abs() / 30_000.0 < 0.02, "{ca}");
        let mut u = a.clone();
        u.merge(&b);
        let cu = u.count() as f64;
        assert!((cu - 50_000.0).abs() / 50_000.0 < 0.02, "{cu}");
        let bytes = u.to_bytes();
        let mut back = Sketch::from_bytes(&bytes).unwrap();
        assert_eq!(back.count(), u.count());
        assert_eq!(back.to_bytes(), bytes);
        assert!(Sketch::from_bytes(b"garbage").is_err());
    }

    /// Inputs the fuzzer found (fuzz/regressions/sketch): decoded fields that disagree with
    /// the data made the next insert or merge panic, or allocate 6.9 GB.
    #[test]
    fn inconsistent_stored_fields_cannot_hurt_later_use() {
        let zero_counts = [0x0e, 0, 0, 0, 0, 0, 0, 0, 0];
        let huge_registers = [0x0e, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 0, 0, 0, 0, 0, 0];
        for bytes in [&zero_counts[..], &huge_registers[..]] {
            if let Ok(mut s) = Sketch::from_bytes(bytes) {
                s.insert("a");
                s.insert_hash(0x1234_5678_9abc_def0);
                let mut other = Sketch::new();
                other.insert("b");
                s.merge(&other);
                assert!(s.count() <= 3, "{bytes:?}");
                let again = s.to_bytes();
                assert_eq!(Sketch::from_bytes(&again).unwrap().to_bytes(), again);
            }
        }
    }

    #[test]
    fn merging_bytes_is_merging_the_decoded_sketch() {
        let mut parts: Vec<Sketch> = (0..4)
            .map(|p| {
                let mut s = Sketch::new();
                for i in 0..[10, 3_000, 6_000, 40_000][p] {
                    s.insert(&format!("{p}-{}", i % 5_000));
                }
                s
            })
            .collect();
        let (mut decoded, mut direct) = (Sketch::new(), Sketch::new());
        for part in &mut parts {
            let bytes = part.to_bytes();
            decoded.merge(&Sketch::from_bytes(&bytes).unwrap());
            direct.merge_bytes(&bytes).unwrap();
        }
        assert_eq!(direct.to_bytes(), decoded.to_bytes());
        assert!(direct.merge_bytes(b"garbage").is_err());
    }

    #[test]
    fn small_counts_are_exact_enough() {
        let mut s = Sketch::new();
        for v in ["a", "b", "c", "a", "b"] {
            s.insert(v);
        }
        assert_eq!(s.count(), 3);
    }
}
