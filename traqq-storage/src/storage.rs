//! The [`Storage`] trait: the whole contract between the engine and a backend.

use std::fmt::Debug;
use std::sync::Arc;

use traqq_core::batch::Batch;
use traqq_core::claim::{Claims, Seen};
use traqq_core::read::{Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch, SketchFamily};

use crate::Result;

/// What a backend can do, where backends differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// A batch is applied all-or-nothing, also across a crash.
    pub atomic_batches: bool,
    /// Data survives a restart of the process.
    pub persistent: bool,
    /// The sketches [`Storage::read_sketches`] and [`Storage::write_sketches`] move (`None`:
    /// the store cannot export or restore its unique counts).
    pub sketches: Option<SketchFamily>,
}

impl Capabilities {
    /// Capabilities with every flag given.
    pub const fn new(atomic_batches: bool, persistent: bool) -> Self {
        Capabilities {
            atomic_batches,
            persistent,
            sketches: None,
        }
    }

    /// These capabilities, with sketches of `family` read and written whole.
    pub const fn with_sketches(mut self, family: SketchFamily) -> Self {
        self.sketches = Some(family);
        self
    }
}

/// A metrics store.
///
/// # Contract
///
/// - [`Storage::apply`] applies every operation of a [`Batch`]: hash fields are incremented
///   (integers stay integers, floats add as floats), HyperLogLog values are inserted, sorted-set
///   scores are incremented, set members are added. Missing keys start empty. A key with a
///   label cap (`max_labels`) never holds more labels than that plus `(other)`, also under
///   concurrent writers: [`traqq_core::labels::cap_labels`] is the rule. Where
///   [`Capabilities::atomic_batches`] is set, a batch is visible entirely or not at all, also
///   after a crash. Concurrent `apply` calls from many threads lose no increment.
/// - [`Storage::read`] answers each [`Read`] with the [`ReadResult`] of the same variant, in
///   the same order. Missing keys read as empty (empty hash, count 0, empty top, no members).
///   `Top` returns at most `limit` members, score descending, ties by member ascending.
///   `Count` of several keys is the distinct count of their union, never a sum.
/// - HyperLogLog sketches that are persisted hash values deterministically (the same in every
///   process), so counts stay right across restarts.
/// - [`Storage::apply_claimed`] applies a batch only if none of the event ids it claims was
///   claimed before, atomically with the check (see [`traqq_core::claim`]).
/// - [`Storage::delete`] removes whole keys (used for retention), id sets included.
/// - [`Storage::read_sketches`] returns each HyperLogLog key's sketch as stored, in the family
///   [`Capabilities::sketches`] names, and [`Storage::write_sketches`] stores such sketches so
///   that reading them back gives the same bytes and counts (export and restore).
/// - [`Storage::flush`] returns once everything applied so far is as durable as the backend's
///   durability mode promises.
///
/// The conformance suite (`traqq_storage::conformance`, feature `conformance`) checks all of
/// this; every backend runs it.
pub trait Storage: Send + Sync + Debug {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Applies a batch of coalesced operations.
    fn apply(&self, batch: &Batch) -> Result<()>;

    /// Applies a batch that the caller may send again, with the same `id`, after a failure
    /// whose outcome it cannot know (a timeout after the store had received it): the store
    /// applies each `id` at most once, so such a retry never counts twice. Callers use a new
    /// `id` for every batch and repeat one only to retry exactly that batch.
    ///
    /// The default is [`Storage::apply`], right for stores where a failed `apply` never took
    /// effect (memory, and the embedded stores whose write batches are atomic). A store
    /// reached over a network overrides it (Redis records the id with the batch, in the same
    /// script call, for an hour).
    fn apply_once(&self, id: &str, batch: &Batch) -> Result<()> {
        let _ = id;
        self.apply(batch)
    }

    /// Applies `batch` as the writes of events whose ids `claims` claims, in one atomic step:
    /// when no claimed id is in its day's set, adds every id to its set (which may expire at
    /// the set's `expire_at`) and applies the batch, and returns an empty list; otherwise
    /// applies nothing and returns the claims whose ids were already there. Concurrent calls,
    /// from this process or others sharing the store, never both succeed with the same id.
    /// Where [`Capabilities::atomic_batches`] is set, the ids and the batch survive a crash
    /// together or not at all.
    ///
    /// The default refuses ([`Error::Unsupported`](crate::Error::Unsupported)): a store must implement it to be used with
    /// `[event] id_field`.
    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        let _ = (batch, claims);
        Err(crate::Error::Unsupported {
            what: "exactly-once ingest (event.id_field)",
        })
    }

    /// New labels this store counted under `(other)` because their key held its cap
    /// ([`KeyEntry::max_labels`](traqq_core::batch::KeyEntry::max_labels), see
    /// [`traqq_core::labels`]), since it was opened by this process. Every backend of this
    /// project applies the cap; the default, for a store that does not, is 0.
    fn labels_overflowed(&self) -> u64 {
        0
    }

    /// What a write buffer in front of the store holds now (`None`: no buffer).
    fn buffer(&self) -> Option<crate::BufferStats> {
        None
    }

    /// The key sets (`prefix:k:d:ts`, `prefix:k:h:ts`, ...) this store holds under `prefix`,
    /// found by scanning the store: for data written without the bucket registry (traqq 0.2,
    /// trk2), which [`crate::Traqq::register_buckets`] registers so retention covers it.
    /// `None` for a store only this version writes (it registers every bucket itself): the
    /// default.
    fn key_sets(&self, prefix: &str) -> Result<Option<Vec<String>>> {
        let _ = prefix;
        Ok(None)
    }

    /// The stored sketches of the HyperLogLog keys `keys`, in order (`None`: no such key), in
    /// the family [`Capabilities::sketches`] names: what `traqq export` writes. The default,
    /// for a store without [`Capabilities::sketches`], refuses.
    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        let _ = keys;
        Err(crate::Error::Unsupported {
            what: "reading stored unique-count sketches (traqq export)",
        })
    }

    /// The ids held by each of the id sets `set_keys` (`prefix:ids:d:day`, see
    /// [`traqq_core::claim`]), in order (empty: no such set), in no particular order within a
    /// set: what `traqq export` writes of exactly-once ingest. They are written back with
    /// [`Storage::apply_claimed`]. The default refuses.
    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        let _ = set_keys;
        Err(crate::Error::Unsupported {
            what: "reading stored event ids (traqq export)",
        })
    }

    /// Stores sketches read by [`Storage::read_sketches`] from a store of the same family, each
    /// replacing what its key held: what `traqq restore` writes. A sketch of another family, or
    /// bytes that are not one, is an error naming the key, and nothing of the call is written.
    /// The default refuses.
    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        let _ = sketches;
        Err(crate::Error::Unsupported {
            what: "writing stored unique-count sketches (traqq restore)",
        })
    }

    /// Answers reads, in order.
    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>>;

    /// Deletes keys (missing keys are ignored).
    fn delete(&self, keys: &[String]) -> Result<()>;

    /// Removes `members` from the set `key` (missing members and a missing key are ignored;
    /// the key goes when its last member does). Members added concurrently by `apply` are never
    /// lost: every backend of this project does it atomically with respect to its writers.
    ///
    /// The default reads the set, deletes it and adds back the rest: correct without
    /// concurrent writers only. Used by retention for the bucket registry.
    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        let Some(ReadResult::Members(held)) = self.read(&[Read::Members(key.to_owned())])?.pop() else {
            return Ok(());
        };
        let gone: std::collections::HashSet<&str> = members.iter().map(String::as_str).collect();
        self.delete(&[key.to_owned()])?;
        let mut rest = Batch::new();
        // The bucket of a set is not known here; sets carry no expiry in any backend.
        let bucket = (traqq_core::bucket::BucketKind::Day, 0);
        for m in held.iter().filter(|m| !gone.contains(m.as_str())) {
            rest.sadd(key, bucket, m);
        }
        if rest.is_empty() {
            return Ok(());
        }
        self.apply(&rest)
    }

    /// Makes applied batches durable per the backend's mode.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

macro_rules! forward_storage {
    ($($ty:ty),*) => {$(
        impl<S: Storage + ?Sized> Storage for $ty {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn apply(&self, batch: &Batch) -> Result<()> {
                (**self).apply(batch)
            }
            fn apply_once(&self, id: &str, batch: &Batch) -> Result<()> {
                (**self).apply_once(id, batch)
            }
            fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
                (**self).apply_claimed(batch, claims)
            }
            fn labels_overflowed(&self) -> u64 {
                (**self).labels_overflowed()
            }
            fn key_sets(&self, prefix: &str) -> Result<Option<Vec<String>>> {
                (**self).key_sets(prefix)
            }
            fn buffer(&self) -> Option<crate::BufferStats> {
                (**self).buffer()
            }
            fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
                (**self).read(reads)
            }
            fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
                (**self).read_sketches(keys)
            }
            fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
                (**self).write_sketches(sketches)
            }
            fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
                (**self).read_ids(set_keys)
            }
            fn delete(&self, keys: &[String]) -> Result<()> {
                (**self).delete(keys)
            }
            fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
                (**self).remove_members(key, members)
            }
            fn flush(&self) -> Result<()> {
                (**self).flush()
            }
        }
    )*};
}

forward_storage!(&S, Box<S>, Arc<S>);

/// The [`Sketch`](traqq_core::sketch::Sketch) a [`KeySketch`] holds, for a store that keeps
/// `family` ([`Storage::write_sketches`]): another family, or bytes that do not decode, are an
/// error naming the key.
pub fn decode_sketch(
    backend: &'static str,
    family: SketchFamily,
    entry: &KeySketch,
) -> Result<traqq_core::sketch::Sketch> {
    if entry.sketch.family != family {
        return Err(crate::Error::backend(
            backend,
            format!(
                "key {:?}: a {} sketch cannot be stored here ({backend} keeps {family} sketches; the two \
                 hash values differently, so one cannot become the other)",
                entry.key, entry.sketch.family,
            ),
        ));
    }
    traqq_core::sketch::Sketch::from_raw(&entry.sketch).map_err(|e| {
        crate::Error::backend(
            backend,
            format!("key {:?}: the sketch to store does not decode: {e}", entry.key),
        )
    })
}

/// One-read conveniences over any [`Storage`].
pub trait StorageExt: Storage {
    /// All fields of a hash.
    fn read_hash(&self, key: &str) -> Result<Vec<(String, traqq_core::batch::Number)>> {
        match self.read(&[Read::Hash(key.to_owned())])?.pop() {
            Some(ReadResult::Hash(h)) => Ok(h),
            other => Err(unexpected("hash", other)),
        }
    }

    /// Distinct count of the union of HyperLogLog keys.
    fn count(&self, keys: &[&str]) -> Result<u64> {
        match self
            .read(&[Read::Count(keys.iter().map(|k| (*k).to_owned()).collect())])?
            .pop()
        {
            Some(ReadResult::Count(n)) => Ok(n),
            other => Err(unexpected("count", other)),
        }
    }

    /// The top `limit` members of a sorted set.
    fn top(&self, key: &str, limit: usize) -> Result<Vec<(String, f64)>> {
        match self
            .read(&[Read::Top {
                keys: vec![key.to_owned()],
                limit,
            }])?
            .pop()
        {
            Some(ReadResult::Top(t)) => Ok(t),
            other => Err(unexpected("top", other)),
        }
    }

    /// Members of a set.
    fn members(&self, key: &str) -> Result<Vec<String>> {
        match self.read(&[Read::Members(key.to_owned())])?.pop() {
            Some(ReadResult::Members(m)) => Ok(m),
            other => Err(unexpected("members", other)),
        }
    }
}

impl<S: Storage + ?Sized> StorageExt for S {}

/// The error for a store answering a read with the wrong kind of result (or none).
pub(crate) fn unexpected(want: &str, got: Option<ReadResult>) -> crate::Error {
    crate::Error::backend(
        "storage",
        format!(
            "answered a {} read where a {want} read was expected",
            got.as_ref().map_or("missing", ReadResult::kind)
        ),
    )
}
