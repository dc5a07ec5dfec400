//! [`RocksStorage`]: the [`Storage`] implementation over RocksDB.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hashbrown::HashMap;
use parking_lot::RwLock;
use rocksdb::{
    DBCompressionType, MergeOperands, Options, ReadOptions, SnapshotWithThreadMode, WriteBatch, WriteOptions,
    DB,
};
use traqq_core::batch::{Batch, KeyOps, Number};
use traqq_core::claim::{id_range, is_id_set_key, Claims, Seen};
use traqq_core::read::{top_ranked, FieldSums, Read, ReadResult};
use traqq_core::sketch::{KeySketch, RawSketch, Sketch, SketchFamily};
use traqq_storage::claim_index::decode_chunks;
use traqq_storage::packed::{self, Entry, MapWriter};
use traqq_storage::{
    decode_sketch, Capabilities, ClaimIndex, Durability, Error, LabelIndex, Result, Storage,
};

use crate::codec::{self, FORMAT, FORMAT_KEY, MERGE_OPERATOR, UPGRADES_IN_PLACE};
use crate::config::RocksConfig;
use crate::fold_back::{self, Folds};
use crate::folder::{Folder, Key};
use traqq_storage::format::{sketch_family, NEW_STORE_SKETCHES, SKETCH_FAMILY_KEY};

const BACKEND: &str = "rocksdb";

/// A traqq store in a RocksDB directory. Cheap to share: wrap it in an `Arc` (it is
/// `Send + Sync`; concurrent batches are fine).
pub struct RocksStorage {
    db: Arc<DB>,
    path: PathBuf,
    config: RocksConfig,
    write: WriteOptions,
    /// `none` mode: the thread writing the in-process WAL buffer out; stopped on drop.
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    /// Held by every write that changes data: shared by batch writers and deletes (their
    /// writes commute), exclusive for a read-modify-write (`remove_members`, a read's
    /// write-back of folded values, the background folder), which must not lose a write made
    /// in between.
    writers: Arc<RwLock<()>>,
    /// Folds keys that took several operands in the background (`fold_after_operands`);
    /// stopped first on drop.
    folder: Option<Folder>,
    /// The claimed event ids of the sets this process touched (`apply_claimed`).
    claims: ClaimIndex,
    /// The labels of the capped keys written (`[limits] max_labels`).
    labels: LabelIndex,
    /// The sketch family the store keeps (its marker).
    sketches: SketchFamily,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The one place RocksDB errors become traqq errors.
fn backend_error(e: rocksdb::Error) -> Error {
    Error::backend(BACKEND, e)
}

/// Calls `f` with each field of the packed map `value` of `key` (borrowed from `value`).
fn each_entry<'v>(key: &str, value: &'v [u8], f: impl FnMut(&'v str, Entry) -> Result<()>) -> Result<()> {
    // A sketch is named as one (rather than "not a packed map").
    codec::entries(value).map_err(|m| corrupt(key, m))?;
    packed::each_field(value, f, |m| corrupt(key, m))
}

fn corrupt(key: &str, message: impl Into<String>) -> Error {
    Error::corrupt(BACKEND, key, message.into())
}

fn full_merge(key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let merged = guarded_merge(existing, operands, true);
    if let Some(value) = merged.as_deref().filter(|_| !operands.is_empty()) {
        fold_back::offer(key, value);
    }
    merged
}

fn partial_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    guarded_merge(existing, operands, false)
}

/// The merge callbacks run inside RocksDB's C++ code, where a panic cannot unwind (the process
/// would abort). `codec::merge` returns no error and checks what it decodes; should a bug (or
/// a dependency's) panic anyway, the existing value is kept as it is and the operands are
/// dropped, so reads report the key instead of the store going down.
fn guarded_merge(existing: Option<&[u8]>, operands: &MergeOperands, full: bool) -> Option<Vec<u8>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        codec::merge(existing, operands.iter(), full)
    }))
    .ok()
    .or_else(|| Some(existing.map(<[u8]>::to_vec).unwrap_or_default()))
}

/// Refuses a store written with another layout; marks a new (empty) store, or one of a layout
/// this version reads as its own ([`UPGRADES_IN_PLACE`]), with this one. Then the sketch family
/// the store keeps: its marker's, or for a new store [`NEW_STORE_SKETCHES`] (marked).
fn check_format(db: &DB, path: &Path) -> Result<SketchFamily> {
    let created = check_layout(db, path)?;
    let refuse = |message: String| Error::open(BACKEND, path.display().to_string(), message);
    let marker = db.get(SKETCH_FAMILY_KEY).map_err(|e| refuse(e.into_string()))?;
    if marker.is_none() && created {
        let mut write = WriteOptions::default();
        write.set_sync(true);
        db.put_opt(SKETCH_FAMILY_KEY, NEW_STORE_SKETCHES.as_str(), &write)
            .map_err(|e| refuse(e.into_string()))?;
        return Ok(NEW_STORE_SKETCHES);
    }
    sketch_family(marker.as_deref()).map_err(refuse)
}

/// The layout half of [`check_format`]; whether the store was created by this open.
fn check_layout(db: &DB, path: &Path) -> Result<bool> {
    let refuse = |message: String| Error::open(BACKEND, path.display().to_string(), message);
    let mark = || {
        let mut write = WriteOptions::default();
        write.set_sync(true);
        db.put_opt(FORMAT_KEY, FORMAT, &write)
            .map_err(|e| refuse(e.into_string()))
    };
    match db.get(FORMAT_KEY).map_err(|e| refuse(e.into_string()))? {
        Some(v) if v == FORMAT => Ok(false),
        Some(v) if UPGRADES_IN_PLACE.contains(&&*v) => mark().map(|()| false),
        Some(v) => Err(refuse(traqq_storage::format::other_format_message(
            "traqq-rocks",
            &v,
            FORMAT,
        ))),
        None => {
            let mut it = db.raw_iterator();
            it.seek_to_first();
            if it.valid() {
                return Err(refuse(
                    "written with traqq-rocks store format 1 (one key per field); this version reads \
                     formats 2 to 4 only: record the data again into a new store"
                        .into(),
                ));
            }
            it.status().map_err(|e| refuse(e.into_string()))?;
            mark().map(|()| true)
        }
    }
}

/// Merge operands of one key kept in the memtable before a write folds them.
const MAX_SUCCESSIVE_MERGES: usize = 16;

impl RocksStorage {
    /// Opens the store at `path`, creating it when missing. Any store written by traqq opens,
    /// whatever prefixes or options it was written with. A locked (already open), unreadable
    /// or corrupt store is an [`Error::Open`] naming the path.
    pub fn open(path: impl AsRef<Path>, config: RocksConfig) -> Result<RocksStorage> {
        let path = path.as_ref().to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Registered on every open: RocksDB cannot read merge operands without it.
        opts.set_merge_operator(MERGE_OPERATOR, full_merge, partial_merge);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_write_buffer_size(config.write_buffer_mib.max(1) << 20);
        opts.set_keep_log_file_num(4);
        // Claimed event ids (`apply_claimed`) are point reads that mostly miss: bloom filters in
        // the tables and the memtable answer a miss without searching.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_manual_wal_flush(config.sync == Durability::None);
        // A bucket's keys take one merge operand per batch; a read folds every operand still in
        // the memtable. Past this many, the write folds them instead, so a query right after a
        // fill reads folded values (a 30-day query after 200,000 events: 48 ms -> 16 ms).
        opts.set_max_successive_merges(MAX_SUCCESSIVE_MERGES);
        let db = DB::open(&opts, &path).map_err(|e| Error::open(BACKEND, path.display().to_string(), e))?;
        let sketches = check_format(&db, &path)?;
        let db = Arc::new(db);
        let mut write = WriteOptions::default();
        // `always`: RocksDB's write group shares one WAL fsync among concurrent writers.
        write.set_sync(config.sync == Durability::Always);
        let flusher = (config.sync == Durability::None).then(|| {
            let (stop, stopped) = mpsc::channel::<()>();
            let db = Arc::clone(&db);
            let every = Duration::from_millis(config.none_flush_ms.max(1));
            // Ticks until the sender is dropped (on close).
            let handle = std::thread::spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    // A failed write-out is retried next tick; `flush` reports errors.
                    let _ = db.flush_wal(false);
                }
            });
            (stop, handle)
        });
        let writers = Arc::new(RwLock::new(()));
        let folder = match config.fold_after_operands {
            0 => None,
            threshold => {
                let (db, writers) = (Arc::clone(&db), Arc::clone(&writers));
                let fold = move |keys: &[Key]| fold_now(&db, &writers, keys);
                let folder = Folder::spawn(threshold, fold)
                    .map_err(|e| Error::open(BACKEND, path.display().to_string(), e))?;
                Some(folder)
            }
        };
        Ok(RocksStorage {
            db,
            path,
            config,
            write,
            flusher,
            writers,
            folder,
            claims: ClaimIndex::new(),
            labels: LabelIndex::new(),
            sketches,
        })
    }

    /// The values of the stored chunks of the id set `set` (see [`ClaimIndex`]).
    fn id_chunks(&self, set: &str) -> Result<Vec<Vec<u8>>> {
        let (start, end) = id_range(set);
        let mut it = self.db.raw_iterator();
        it.seek(&start);
        let mut chunks = Vec::new();
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if key >= end.as_slice() {
                break;
            }
            chunks.push(value.to_vec());
            it.next();
        }
        it.status().map_err(backend_error)?;
        Ok(chunks)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it was opened with.
    pub fn config(&self) -> &RocksConfig {
        &self.config
    }

    /// Compacts the whole store (folds merge operands, drops deleted data). Slow; for
    /// maintenance and measurements.
    pub fn compact(&self) -> Result<()> {
        self.db.flush().map_err(backend_error)?;
        self.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    fn read_options(&self, snapshot: &SnapshotWithThreadMode<'_, DB>) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snapshot);
        ro
    }

    /// All `reads` at one snapshot: they see the same set of applied batches.
    fn read_at_snapshot(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        let snapshot = self.db.snapshot();
        reads.iter().map(|r| self.read_one(&snapshot, r)).collect()
    }

    /// The sketches of `keys` at one snapshot.
    fn read_sketches_at_snapshot(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        let snapshot = self.db.snapshot();
        let options = self.read_options(&snapshot);
        keys.iter()
            .map(|key| {
                let Some(value) = self
                    .db
                    .get_pinned_opt(key.as_bytes(), &options)
                    .map_err(backend_error)?
                else {
                    return Ok(None);
                };
                let sketch = codec::decode_sketch(&value).map_err(|m| corrupt(key, m))?;
                Ok(Some(sketch.to_raw()))
            })
            .collect()
    }

    /// Runs the read `read`, then writes back the values it folded from merge operands (see
    /// [`fold_back`]), so that the next read of those keys folds nothing.
    fn keeping_folds<T>(&self, read: impl FnOnce() -> Result<T>) -> Result<T> {
        // Taken before the read's snapshot: equal at write-back time means nothing was
        // written since, so every captured fold is still the key's value.
        let seen = self.db.latest_sequence_number();
        let capture = fold_back::Capture::start();
        let out = read();
        let folds = capture.finish();
        if out.is_ok() {
            self.write_back(seen, folds);
        }
        out
    }

    /// Writes `folds` over their keys' operands unless the store was written after sequence
    /// number `seen`: a fold older than a write would undo it. Every write that changes data
    /// holds `writers` (shared), so none can slip in between the check and this write (see
    /// [`put_folds`]).
    fn write_back(&self, seen: u64, folds: Folds) {
        if folds.is_empty() {
            return;
        }
        let _exclusive = self.writers.write();
        if self.db.latest_sequence_number() != seen {
            return;
        }
        put_folds(&self.db, &folds);
    }

    /// Counts the operands `batch` (just written) gave its keys, for the background folder.
    fn count_operands(&self, batch: &Batch) {
        if let Some(folder) = &self.folder {
            folder.wrote(batch.iter().map(|(key, _)| key.as_bytes()));
        }
    }

    /// Calls `f(field, entry)` for every entry of the packed map at `key`, in byte order (none
    /// when the key is absent).
    fn entries(
        &self,
        snapshot: &SnapshotWithThreadMode<'_, DB>,
        key: &str,
        f: impl FnMut(&str, Entry) -> Result<()>,
    ) -> Result<()> {
        let value = self
            .db
            .get_pinned_opt(key.as_bytes(), &self.read_options(snapshot))
            .map_err(backend_error)?;
        match value {
            Some(value) => each_entry(key, &value, f),
            None => Ok(()),
        }
    }

    /// The union of the leaderboards `keys`, cut to `limit`. Every key's (folded) value stays
    /// pinned while members are summed and ranked borrowed from them; only the `limit`
    /// returned are copied (a day of another zone merges 24 hours of up to thousands each).
    fn top(
        &self,
        snapshot: &SnapshotWithThreadMode<'_, DB>,
        keys: &[String],
        limit: usize,
    ) -> Result<ReadResult> {
        let options = self.read_options(snapshot);
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(value) = self
                .db
                .get_pinned_opt(key.as_bytes(), &options)
                .map_err(backend_error)?
            {
                values.push((key, value));
            }
        }
        let mut scores: HashMap<&str, f64> = HashMap::new();
        for (key, value) in &values {
            each_entry(key, value, |member, entry| match entry {
                Entry::Number(n) => {
                    *scores.entry(member).or_insert(0.0) += n.as_f64();
                    Ok(())
                }
                Entry::Member => Err(corrupt(key, format!("member {member:?} has no score"))),
            })?;
        }
        let mut members: Vec<(&str, f64)> = scores.into_iter().collect();
        top_ranked(&mut members, limit);
        Ok(ReadResult::Top(
            members.into_iter().map(|(m, s)| (m.to_owned(), s)).collect(),
        ))
    }

    fn read_one(&self, snapshot: &SnapshotWithThreadMode<'_, DB>, read: &Read) -> Result<ReadResult> {
        Ok(match read {
            Read::Hash(key) => {
                let mut fields = Vec::new();
                self.entries(snapshot, key, |field, entry| match entry {
                    Entry::Number(n) => {
                        fields.push((field.to_owned(), n));
                        Ok(())
                    }
                    Entry::Member => Err(corrupt(key, format!("field {field:?} is not a number"))),
                })?;
                ReadResult::Hash(fields)
            }
            Read::Sum(keys) => {
                let mut sums = FieldSums::default();
                for key in keys {
                    self.entries(snapshot, key, |field, entry| match entry {
                        Entry::Number(n) => {
                            sums.add(field, n);
                            Ok(())
                        }
                        Entry::Member => Err(corrupt(key, format!("field {field:?} is not a number"))),
                    })?;
                }
                sums.into_result()
            }
            Read::Count(keys) => {
                let mut union = Sketch::new_in(self.sketches);
                for key in keys {
                    let value = self
                        .db
                        .get_pinned_opt(key.as_bytes(), &self.read_options(snapshot))
                        .map_err(backend_error)?;
                    if let Some(bytes) = value {
                        codec::merge_sketch_into(&mut union, &bytes).map_err(|m| corrupt(key, m))?;
                    }
                }
                ReadResult::Count(union.count())
            }
            // Leaderboards are read whole and cut to the top `limit` by partial selection (per
            // bucket they hold at most a few thousand members; a score index would need a
            // read-modify-write per increment). Several keys add up per member.
            Read::Top { keys, limit } => self.top(snapshot, keys, *limit)?,
            Read::Members(key) => {
                let mut members = Vec::new();
                self.entries(snapshot, key, |member, entry| match entry {
                    Entry::Member => {
                        members.push(member.to_owned());
                        Ok(())
                    }
                    Entry::Number(_) => Err(corrupt(key, format!("{member:?} is not a set member"))),
                })?;
                ReadResult::Members(members)
            }
        })
    }
}

/// Writes folded values over their keys' operands, without the WAL: a folded value is what the
/// key's operands already add up to, so losing it in a crash loses nothing (the operands are
/// still there), and it costs no fsync. Failing to write it costs the next read a fold.
/// The caller holds the writers' lock exclusively.
fn put_folds(db: &DB, folds: &Folds) {
    if folds.is_empty() {
        return;
    }
    let mut wb = WriteBatch::default();
    for (key, value) in folds {
        wb.put(key, value);
    }
    let mut options = WriteOptions::default();
    options.disable_wal(true);
    let _ = db.write_opt(wb, &options);
}

/// The background folder's work: reads `keys` under the writers' lock (exclusive, so no write
/// comes between the read and the write-back) and writes back what the reads folded.
fn fold_now(db: &DB, writers: &RwLock<()>, keys: &[Key]) {
    let _exclusive = writers.write();
    let capture = fold_back::Capture::start();
    for key in keys {
        // A failed read folds nothing, and the key is folded by a later read.
        let _ = db.get_pinned(key);
    }
    put_folds(db, &capture.finish());
}

/// The write batch of `batch`: one merge operand per key.
fn write_batch(batch: &Batch, sketches: SketchFamily) -> WriteBatch {
    let mut wb = WriteBatch::default();
    let mut op = MapWriter::default();
    // One merge operand per key: a packed map of all its increments (or members) in this
    // batch, so a batch costs as many memtable inserts as it has keys, not fields.
    for (key, entry) in batch.iter() {
        op.start();
        match &entry.ops {
            KeyOps::Hash(fields) => {
                if fields.is_empty() {
                    continue;
                }
                fields.iter().for_each(|(field, by)| op.number(field, *by));
            }
            KeyOps::Scores(members) => {
                if members.is_empty() {
                    continue;
                }
                members
                    .iter()
                    .for_each(|(member, by)| op.number(member, Number::Float(*by)));
            }
            KeyOps::Members(members) => {
                if members.is_empty() {
                    continue;
                }
                members.iter().for_each(|member| op.member(member));
            }
            KeyOps::Hll(values) => {
                if !values.is_empty() {
                    wb.merge(key.as_bytes(), codec::encode_hashes(sketches, values.iter()));
                }
                continue;
            }
        }
        wb.merge(key.as_bytes(), op.bytes());
    }
    wb
}

impl Storage for RocksStorage {
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(true, true).with_sketches(self.sketches)
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        let batch = self
            .labels
            .apply_caps(batch, |reads| self.read_at_snapshot(reads))?;
        let wb = write_batch(&batch, self.sketches);
        // One WriteBatch: the whole batch is in the WAL record or none of it is.
        {
            let _shared = self.writers.read();
            self.db.write_opt(wb, &self.write).map_err(backend_error)?;
        }
        self.count_operands(&batch);
        Ok(())
    }

    /// The ids go into the batch's own `WriteBatch` as one chunk per day (see
    /// [`ClaimIndex`]), so after a crash the ids and the operations are both there or neither
    /// is; the check is in memory.
    fn apply_claimed(&self, batch: &Batch, claims: &Claims) -> Result<Vec<Seen>> {
        let batch = self
            .labels
            .apply_caps(batch, |reads| self.read_at_snapshot(reads))?;
        let mut index = self.claims.lock();
        let seen = index.seen(claims, |set| self.id_chunks(set))?;
        if !seen.is_empty() {
            return Ok(seen);
        }
        let mut wb = write_batch(&batch, self.sketches);
        for (key, value) in index.chunks(claims) {
            wb.put(key, value);
        }
        {
            let _shared = self.writers.read();
            self.db.write_opt(wb, &self.write).map_err(backend_error)?;
        }
        index.commit(claims);
        self.count_operands(&batch);
        Ok(Vec::new())
    }

    fn read(&self, reads: &[Read]) -> Result<Vec<ReadResult>> {
        self.keeping_folds(|| self.read_at_snapshot(reads))
    }

    fn labels_overflowed(&self) -> u64 {
        self.labels.overflowed()
    }

    fn read_sketches(&self, keys: &[String]) -> Result<Vec<Option<RawSketch>>> {
        self.keeping_folds(|| self.read_sketches_at_snapshot(keys))
    }

    fn read_ids(&self, set_keys: &[String]) -> Result<Vec<Vec<u128>>> {
        set_keys
            .iter()
            .map(|key| decode_chunks(key, &self.id_chunks(key)?))
            .collect()
    }

    fn write_sketches(&self, sketches: &[KeySketch]) -> Result<()> {
        let decoded = sketches
            .iter()
            .map(|entry| decode_sketch(BACKEND, self.sketches, entry))
            .collect::<Result<Vec<Sketch>>>()?;
        // Exclusive: the type check and the write see the same value.
        let _exclusive = self.writers.write();
        let mut wb = WriteBatch::default();
        for (entry, sketch) in sketches.iter().zip(decoded) {
            if let Some(held) = self.db.get_pinned(entry.key.as_bytes()).map_err(backend_error)? {
                codec::decode_sketch(&held).map_err(|m| {
                    Error::backend(BACKEND, format!("key {:?} cannot take a sketch: {m}", entry.key))
                })?;
            }
            wb.put(entry.key.as_bytes(), codec::encode_sketch(&sketch.to_bytes()));
        }
        self.db.write_opt(wb, &self.write).map_err(backend_error)
    }

    fn delete(&self, keys: &[String]) -> Result<()> {
        self.labels.forget(keys);
        self.claims.forget(keys);
        let mut wb = WriteBatch::default();
        for key in keys {
            wb.delete(key.as_bytes());
            // A day's id set is one key per claimed batch (see `apply_claimed`).
            if is_id_set_key(key) {
                let (start, end) = id_range(key);
                wb.delete_range(start, end);
            }
        }
        // Shared: a read's write-back (exclusive) must not put a deleted key back.
        let _shared = self.writers.read();
        self.db.write_opt(wb, &self.write).map_err(backend_error)
    }

    fn remove_members(&self, key: &str, members: &[String]) -> Result<()> {
        // Exclusive: no batch merges a member in between the read and the write.
        let _exclusive = self.writers.write();
        let Some(value) = self.db.get_pinned(key.as_bytes()).map_err(backend_error)? else {
            return Ok(());
        };
        let kept = packed::without_fields(&value, members).map_err(|m| corrupt(key, m.message()))?;
        drop(value);
        let mut wb = WriteBatch::default();
        match kept {
            Some(map) => wb.put(key.as_bytes(), map),
            None => wb.delete(key.as_bytes()),
        }
        self.db.write_opt(wb, &self.write).map_err(backend_error)
    }

    /// Writes and fsyncs the WAL, in every mode.
    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(backend_error)
    }
}

impl Drop for RocksStorage {
    fn drop(&mut self) {
        // Joined before the flusher and the close: its last fold's write is done.
        drop(self.folder.take());
        if let Some((stop, handle)) = self.flusher.take() {
            drop(stop);
            let _ = handle.join();
        }
        // `none` mode: hand the buffered WAL tail to the OS before closing.
        let _ = self.db.flush_wal(false);
    }
}

#[cfg(test)]
mod tests {
    use traqq_core::bucket::BucketKind;
    use traqq_storage::StorageExt;

    use super::*;

    const DAY: (BucketKind, i64) = (BucketKind::Day, 1_700_006_400);
    const KEY: &str = "app:add:d:1700006400:event";

    fn add_one(store: &RocksStorage) {
        let mut b = Batch::new();
        b.incr(KEY, DAY, "n", Number::Int(1));
        store.apply(&b).unwrap();
    }

    /// What a read of `KEY` folds from operands (nothing is written back).
    fn folds_of_a_read(store: &RocksStorage) -> Folds {
        let capture = fold_back::Capture::start();
        store.read_at_snapshot(&[Read::Hash(KEY.into())]).unwrap();
        capture.finish()
    }

    fn n(store: &RocksStorage) -> i64 {
        let hash = store.read_hash(KEY).unwrap();
        assert_eq!(hash.len(), 1, "{hash:?}");
        hash[0].1.as_i64()
    }

    /// The default options, without the background folder (these tests fold by reading).
    fn config_folding_on_reads() -> RocksConfig {
        RocksConfig {
            fold_after_operands: 0,
            ..RocksConfig::default()
        }
    }

    /// A new store in a temp dir whose `KEY` holds ten merge operands (in the memtable).
    fn store_with_ten_operands() -> (tempfile::TempDir, RocksStorage) {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStorage::open(dir.path().join("db"), config_folding_on_reads()).unwrap();
        for _ in 0..10 {
            add_one(&store);
        }
        (dir, store)
    }

    /// Polls until a read of `KEY` folds nothing (the folder wrote its fold back), or panics.
    fn wait_until_folded(store: &RocksStorage) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !folds_of_a_read(store).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the folder never folded {KEY}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn the_folder_folds_a_key_that_took_its_threshold_of_operands() {
        let dir = tempfile::tempdir().unwrap();
        let config = RocksConfig {
            fold_after_operands: 3,
            ..RocksConfig::default()
        };
        let store = RocksStorage::open(dir.path().join("db"), config.clone()).unwrap();
        add_one(&store);
        add_one(&store);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(folds_of_a_read(&store).len(), 1, "two operands are not due yet");
        add_one(&store);
        wait_until_folded(&store);
        assert_eq!(n(&store), 3);
        assert_eq!(store.folder.as_ref().unwrap().pending(), (0, 0));
        // Operands after the fold add to it, and are folded in turn.
        for _ in 0..3 {
            add_one(&store);
        }
        wait_until_folded(&store);
        assert_eq!(n(&store), 6);
        drop(store);
        let store = RocksStorage::open(dir.path().join("db"), config).unwrap();
        assert_eq!(n(&store), 6, "the folds, written without the WAL, lost nothing");
    }

    #[test]
    fn a_read_writes_back_what_it_folded_and_the_next_read_folds_nothing() {
        let (dir, store) = store_with_ten_operands();
        assert_eq!(
            folds_of_a_read(&store).len(),
            1,
            "ten operands wait in the memtable"
        );
        assert_eq!(n(&store), 10);
        assert!(
            folds_of_a_read(&store).is_empty(),
            "the read above wrote its fold back"
        );
        assert_eq!(n(&store), 10);
        add_one(&store);
        assert_eq!(n(&store), 11, "a batch after a write-back counts once");
        drop(store);
        let store = RocksStorage::open(dir.path().join("db"), config_folding_on_reads()).unwrap();
        assert_eq!(n(&store), 11);
    }

    #[test]
    fn a_fold_older_than_a_write_is_not_written_back() {
        let (_dir, store) = store_with_ten_operands();
        let seen = store.db.latest_sequence_number();
        let folds = folds_of_a_read(&store);
        assert_eq!(folds.len(), 1);
        add_one(&store);
        store.write_back(seen, folds.clone());
        assert_eq!(n(&store), 11, "the stale fold would have put back 10");
        // A deleted key stays deleted.
        let seen = store.db.latest_sequence_number();
        store.delete(&[KEY.to_owned()]).unwrap();
        store.write_back(seen, folds);
        assert!(store.read_hash(KEY).unwrap().is_empty());
    }
}
