//! The HyperLogLog sketch behind `bmp` metrics.
//!
//! Values are hashed with `xxh3` under a fixed seed; the 64-bit hash picks a register and a
//! rank ([`registers`]). The fixed seed matters: a sketch written by one process and extended by
//! another must hash the same value to the same bits, or counts drift after every restart.
//!
//! traqq owns the sketch: its registers, its estimate and its stored bytes (format 1, documented
//! in [`encoding`] and pinned by golden-bytes tests), so no dependency update can change what
//! is on disk. Sketches stored before (format 0, `hyperloglogplus`'s serialized struct) keep
//! reading and union with new ones: the register layout is the same.

mod encoding;
mod redis;
mod registers;

use serde::{Deserialize, Serialize};

use crate::Result;
use encoding::{Stored, SPARSE_MAX};
use registers::{register_of, register_of_code, sparse_code, REGISTERS};

/// Precision 14: 16,384 registers, about 0.8% standard error, 12 KiB dense
/// (and far less while sparse, as most per-day sketches are).
pub const PRECISION: u8 = 14;

/// Seed of the value hash. Changing it invalidates every stored sketch.
const SEED: u64 = 0x7472_6171_715f_686c; // "traqq_hl"

/// Hashes a value the way every sketch does.
pub fn hash_value(value: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), SEED)
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

/// Which HyperLogLog a store keeps: the hash that puts a value in a register, and so which
/// sketches can union. Sketches of one family move between any stores that keep it (`traqq
/// export` / `traqq restore`); between families they cannot be converted, since the registers
/// come from different hashes of values that are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SketchFamily {
    /// traqq's first family: xxh3 under a fixed seed, counted as HyperLogLog++ (linear counting
    /// over 2^25 while sparse). What memory, RocksDB and sled stores created before traqq 0.3's
    /// Redis-compatible sketches keep; moved as [`Sketch::to_bytes`].
    Traqq,
    /// Redis's HyperLogLog: MurmurHash64A (seed `0xadc83b19`), the same registers and the same
    /// estimator as `PFADD`/`PFCOUNT`, so counts agree with Redis exactly. Redis stores keep its
    /// string; memory, RocksDB and sled stores created since keep a [`Sketch`] of this family
    /// (its registers in another order); dumps move Redis's string.
    Redis,
}

impl SketchFamily {
    /// The name used in dumps, markers and messages: `traqq` or `redis`.
    pub fn as_str(self) -> &'static str {
        match self {
            SketchFamily::Traqq => "traqq",
            SketchFamily::Redis => "redis",
        }
    }

    /// The family named `name` (`traqq` or `redis`).
    pub fn from_name(name: &str) -> Option<SketchFamily> {
        match name {
            "traqq" => Some(SketchFamily::Traqq),
            "redis" => Some(SketchFamily::Redis),
            _ => None,
        }
    }

    /// The 64-bit hash a sketch of this family takes for `value` ([`Sketch::insert_hash`]).
    pub fn hash(self, value: &str) -> u64 {
        match self {
            SketchFamily::Traqq => hash_value(value),
            SketchFamily::Redis => redis::hash(value),
        }
    }
}

impl std::fmt::Display for SketchFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key's sketch as export moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSketch {
    /// Its family.
    pub family: SketchFamily,
    /// For [`SketchFamily::Traqq`], the bytes of [`Sketch::to_bytes`]; for
    /// [`SketchFamily::Redis`], Redis's HyperLogLog string (what `GET` returns).
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

/// A mergeable, serializable distinct-count sketch (HyperLogLog++ at [`PRECISION`]).
///
/// ```
/// use traqq_core::sketch::Sketch;
///
/// let (mut monday, mut tuesday) = (Sketch::new(), Sketch::new());
/// for user in ["ann", "bob", "cy"] {
///     monday.insert(user);
/// }
/// for user in ["bob", "dee"] {
///     tuesday.insert(user);
/// }
/// let mut week = Sketch::from_bytes(&monday.to_bytes())?;
/// week.merge_bytes(&tuesday.to_bytes())?;
/// assert_eq!(week.count(), 4);
/// # Ok::<(), traqq_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sketch {
    family: SketchFamily,
    repr: Repr,
}

/// The registers of a sketch: the sorted, distinct sparse codes of its values while there are
/// few, the dense registers after.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr {
    Sparse(Vec<u32>),
    Dense(Box<[u8]>),
}

impl Repr {
    /// A sketch of `codes` (any order, repeats allowed).
    fn sparse_from(mut codes: Vec<u32>) -> Repr {
        codes.sort_unstable();
        codes.dedup();
        let mut repr = Repr::Sparse(codes);
        repr.settle();
        repr
    }

    /// Turns dense once sparse holds more than [`SPARSE_MAX`] codes.
    fn settle(&mut self) {
        if matches!(self, Repr::Sparse(codes) if codes.len() > SPARSE_MAX) {
            self.dense_mut();
        }
    }

    /// The dense registers, turning a sparse sketch dense first.
    fn dense_mut(&mut self) -> &mut [u8] {
        if let Repr::Sparse(codes) = self {
            *self = Repr::Dense(dense_of(codes));
        }
        match self {
            Repr::Dense(dense) => dense,
            // Turned dense just above.
            Repr::Sparse(_) => &mut [],
        }
    }

    /// Unions sorted, distinct `more` codes in.
    fn add_codes(&mut self, more: &[u32]) {
        match self {
            Repr::Sparse(codes) => {
                *codes = union(codes, more);
                self.settle();
            }
            Repr::Dense(dense) => raise(dense, more),
        }
    }

    /// Unions `other` in.
    fn merge(&mut self, other: &Repr) {
        match other {
            Repr::Sparse(codes) => self.add_codes(codes),
            Repr::Dense(theirs) => {
                for (mine, theirs) in self.dense_mut().iter_mut().zip(theirs.iter()) {
                    *mine = (*mine).max(*theirs);
                }
            }
        }
    }
}

/// The dense registers of sparse `codes`.
fn dense_of(codes: &[u32]) -> Box<[u8]> {
    let mut dense = vec![0u8; REGISTERS].into_boxed_slice();
    raise(&mut dense, codes);
    dense
}

/// Raises dense registers to the ranks of `codes`.
fn raise(dense: &mut [u8], codes: &[u32]) {
    for &code in codes {
        if let Some((index, rank)) = register_of_code(code) {
            dense[index] = dense[index].max(rank);
        }
    }
}

/// The sorted union of two sorted, distinct lists.
fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketch {
    /// An empty sketch of [`SketchFamily::Traqq`].
    pub fn new() -> Self {
        Sketch::new_in(SketchFamily::Traqq)
    }

    /// An empty sketch of `family`.
    pub fn new_in(family: SketchFamily) -> Self {
        Sketch {
            family,
            repr: Repr::Sparse(Vec::new()),
        }
    }

    /// Its family.
    pub fn family(&self) -> SketchFamily {
        self.family
    }

    /// Adds a value.
    pub fn insert(&mut self, value: &str) {
        self.insert_hash(self.family.hash(value));
    }

    /// Adds a value already hashed with its family's [`SketchFamily::hash`].
    pub fn insert_hash(&mut self, hash: u64) {
        match &mut self.repr {
            Repr::Sparse(codes) => {
                let code = sparse_code(hash);
                if let Err(at) = codes.binary_search(&code) {
                    codes.insert(at, code);
                    self.repr.settle();
                }
            }
            Repr::Dense(dense) => {
                let (index, rank) = register_of(hash);
                dense[index] = dense[index].max(rank);
            }
        }
    }

    /// Estimated number of distinct values, rounded. [`SketchFamily::Redis`] counts as
    /// `PFCOUNT` does (Ertl's estimator over the registers, sparse or dense), so a count agrees
    /// with Redis's for the same values; [`SketchFamily::Traqq`] counts a sparse sketch by
    /// linear counting over its 2^25 sparse registers.
    pub fn count(&self) -> u64 {
        let estimate = match (&self.repr, self.family) {
            (Repr::Sparse(codes), SketchFamily::Traqq) => registers::sparse_estimate(codes.len()),
            (Repr::Sparse(_), SketchFamily::Redis) => registers::dense_estimate(&self.registers()),
            (Repr::Dense(dense), _) => registers::dense_estimate(dense),
        };
        estimate.round().max(0.0) as u64
    }

    /// The dense registers.
    fn registers(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.repr {
            Repr::Dense(dense) => std::borrow::Cow::Borrowed(dense),
            Repr::Sparse(codes) => std::borrow::Cow::Owned(dense_of(codes).into_vec()),
        }
    }

    /// Unions `other` into `self`; a sketch of another family is an error (its registers come
    /// from another hash).
    pub fn merge(&mut self, other: &Sketch) -> Result<()> {
        self.same_family(other.family)?;
        self.repr.merge(&other.repr);
        Ok(())
    }

    fn same_family(&self, other: SketchFamily) -> Result<()> {
        if other == self.family {
            Ok(())
        } else {
            Err(crate::Error::Sketch(format!(
                "a sketch of the {other} family cannot join one of the {} family",
                self.family
            )))
        }
    }

    /// The stored bytes (format 1, see the `encoding` module). Equal sketches give equal bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.repr {
            Repr::Sparse(codes) => encoding::write_sparse(self.family, codes, &mut out),
            Repr::Dense(dense) => encoding::write_dense(self.family, dense, &mut out),
        }
        out
    }

    /// The sketch as export moves it: [`Sketch::to_bytes`] for [`SketchFamily::Traqq`],
    /// Redis's string for [`SketchFamily::Redis`].
    pub fn to_raw(&self) -> RawSketch {
        let bytes = match self.family {
            SketchFamily::Traqq => self.to_bytes(),
            SketchFamily::Redis => redis::encode(&self.registers()),
        };
        RawSketch {
            family: self.family,
            bytes,
        }
    }

    /// The sketch a [`RawSketch`] holds, of its family; an error naming what is wrong.
    pub fn from_raw(raw: &RawSketch) -> Result<Sketch> {
        match raw.family {
            SketchFamily::Traqq => {
                let sketch = Sketch::from_bytes(&raw.bytes)?;
                sketch.same_family(SketchFamily::Traqq).map(|()| sketch)
            }
            SketchFamily::Redis => Ok(Sketch {
                family: SketchFamily::Redis,
                repr: Repr::Dense(redis::decode(&raw.bytes)?.into_boxed_slice()),
            }),
        }
    }

    /// Reads a sketch written by [`Sketch::to_bytes`] (format 1) or by traqq before it owned
    /// the format (format 0, [`SketchFamily::Traqq`]). Bytes that do not form a sketch a hash
    /// could produce are an error naming what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sketch> {
        let mut fresh = Sketch::new_in(encoding::family_of(bytes));
        fresh.merge_bytes(bytes)?;
        Ok(fresh)
    }

    /// Unions the sketch written as `bytes` into `self`: what [`Sketch::from_bytes`] then
    /// [`Sketch::merge`] do, without building the stored sketch (a union of many stored
    /// sketches, e.g. another zone's day from 24 hours, reads each once). On an error `self`
    /// may hold part of the union: discard it.
    pub fn merge_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let stored = encoding::parse(bytes)?;
        self.same_family(encoding::family_of(bytes))?;
        match stored {
            Stored::Sparse { count, deltas } => {
                let mut codes = Vec::with_capacity(count);
                encoding::each_code(count, deltas, |code| codes.push(code))?;
                self.repr.add_codes(&codes);
            }
            Stored::Dense(packed) => {
                let dense = self.repr.dense_mut();
                encoding::each_register(packed, |index, rank| {
                    dense[index] = dense[index].max(rank);
                })?;
            }
            Stored::Legacy(repr) => self.repr.merge(&repr),
        }
        Ok(())
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
        u.merge(&b).unwrap();
        let cu = u.count() as f64;
        assert!((cu - 50_000.0).abs() / 50_000.0 < 0.02, "{cu}");
        let bytes = u.to_bytes();
        let back = Sketch::from_bytes(&bytes).unwrap();
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
                s.merge(&other).unwrap();
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
            decoded.merge(&Sketch::from_bytes(&bytes).unwrap()).unwrap();
            direct.merge_bytes(&bytes).unwrap();
        }
        assert_eq!(direct.to_bytes(), decoded.to_bytes());
        assert!(direct.merge_bytes(b"garbage").is_err());
    }

    /// `hyperloglogplus` 0.4.1 with values hashed as traqq hashes them: what wrote format 0.
    fn legacy_bytes(hashes: &[u64]) -> (Vec<u8>, f64) {
        use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};

        #[derive(Clone, Copy, serde::Serialize)]
        struct PassThrough;
        #[derive(Default)]
        struct Hash64(u64);
        impl std::hash::Hasher for Hash64 {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, _: &[u8]) {}
            fn write_u64(&mut self, n: u64) {
                self.0 = n;
            }
        }
        impl std::hash::BuildHasher for PassThrough {
            type Hasher = Hash64;
            fn build_hasher(&self) -> Hash64 {
                Hash64(0)
            }
        }
        let mut old: HyperLogLogPlus<u64, PassThrough> =
            HyperLogLogPlus::new(PRECISION, PassThrough).unwrap();
        for h in hashes {
            old.insert(h);
        }
        let count = old.count();
        (postcard::to_allocvec(&old).unwrap(), count)
    }

    /// The dense registers of any sketch.
    fn registers(s: &Sketch) -> Vec<u8> {
        s.registers().into_owned()
    }

    #[test]
    fn format_0_sketches_read_as_the_registers_their_values_set() {
        for n in [0usize, 1, 10, 1_000, 4_000, 4_500, 6_000, 30_000, 300_000] {
            let hashes: Vec<u64> = (0..n).map(|i| hash_value(&format!("user-{i}"))).collect();
            let (bytes, old_count) = legacy_bytes(&hashes);
            assert_eq!(bytes[0], 14, "format 0 starts with the precision");
            let read = Sketch::from_bytes(&bytes).unwrap();
            let mut fresh = Sketch::new();
            hashes.iter().for_each(|&h| fresh.insert_hash(h));
            assert_eq!(registers(&read), registers(&fresh), "{n} values");
            if matches!(read.repr, Repr::Sparse(_)) || matches!(fresh.repr, Repr::Dense(_)) {
                assert_eq!(read, fresh, "{n} values");
            }
            // The estimate is traqq's own now: close to the old one, within the sketch's error.
            let (new, old) = (read.count() as f64, old_count.round());
            assert!((new - old).abs() <= (old * 0.01).max(1.0), "{n}: {new} vs {old}");
            assert!(
                (new - n as f64).abs() <= (n as f64 * 0.025).max(1.0),
                "{n}: {new}"
            );
            // Old and new sketches union.
            let mut both = Sketch::from_bytes(&bytes).unwrap();
            both.merge_bytes(&fresh.to_bytes()).unwrap();
            assert_eq!(registers(&both), registers(&fresh));
        }
    }

    #[test]
    fn bytes_no_sketch_writes_are_errors_naming_the_fault() {
        let mut dense = Sketch::new();
        (0..10_000).for_each(|i| dense.insert(&i.to_string()));
        let dense = dense.to_bytes();
        let mut high_rank = dense.clone();
        high_rank[2] = 63;
        let mut sparse = Sketch::new();
        (0..3).for_each(|i| sparse.insert(&i.to_string()));
        let sparse = sparse.to_bytes();
        let mut reversed = vec![1, 0, 2];
        reversed.extend([0x80, 0x80, 0x04, 0]);
        let cases: [(&[u8], &str); 8] = [
            (&[], "empty"),
            (&[7, 0, 0], "sketch format 7"),
            (&[1, 9], "unknown representation 9"),
            (&dense[..dense.len() - 1], "dense registers are 12287 bytes"),
            (&high_rank, "register rank 63"),
            (&[&sparse[..], &[5]].concat(), "bytes after the sparse codes"),
            (&reversed, "out of order"),
            (&[1, 0, 0x81, 0x20], "4097 sparse codes"),
        ];
        for (bytes, want) in cases {
            let err = Sketch::from_bytes(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
        // An unknown representation is named as such, whatever sketch it would join.
        let mut redis = Sketch::new_in(SketchFamily::Redis);
        assert!(redis
            .merge_bytes(&[1, 6, 0])
            .unwrap_err()
            .to_string()
            .contains("unknown representation 6"));
        assert!(Sketch::from_bytes(&sparse[..sparse.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("cut short"));
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
